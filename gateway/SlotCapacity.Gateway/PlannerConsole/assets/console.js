// The planners' console. Everything it draws is a function of a UtilisationReply (protobuf JSON,
// every field present, int64 as strings): renderHeatmap(reply) and renderUtilisation(reply) draw
// any reply, live or rebuilt for a past instant. Every request goes through request().
"use strict";

// The one place requests leave the page: an Authorization header would be added here.
// The caller's bearer token (viewer reads, planner changes): from the URL's #token= (make run prints
// such a link; a fragment never reaches a server) or the token box, kept for this tab only.
const tokenKey = "slot-console-token";
(function takeTokenFromUrl() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!match) return;
  sessionStorage.setItem(tokenKey, decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + location.search);
})();

function requestHeaders() {
  const token = sessionStorage.getItem(tokenKey);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function request(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...requestHeaders(), ...(options.headers || {}) } });
  if (response.status === 401) showSignIn("Sign in: paste a viewer or planner token (make run prints a console link with one).");
  return response;
}

function showSignIn(why) {
  const form = document.getElementById("sign-in");
  if (!form) return;
  form.hidden = false;
  document.getElementById("sign-in-why").textContent = why;
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("sign-in");
  if (!form) return;
  form.addEventListener("submit", e => {
    e.preventDefault();
    const token = document.getElementById("sign-in-token").value.trim();
    if (token) { sessionStorage.setItem(tokenKey, token); location.reload(); }
  });
});

async function api(path, options) {
  const response = await request(path, options);
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const fallback = response.status === 401 ? "not signed in: no valid token"
      : response.status === 403 ? "this token's role may not do that: changes need role planner"
      : `${response.status} ${response.statusText}`;
    const error = new Error(body && body.error ? body.error : fallback);
    error.body = body;
    throw error;
  }
  return body;
}

const n = v => Number(v || 0);
const $ = id => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
};
// replaceChildren without the nulls of optional parts (it would print "null").
const put = (container, ...children) => container.replaceChildren(...children.filter(c => c != null));
const utcDate = ms => new Date(ms).toISOString().slice(0, 10);
const utcTime = ms => new Date(ms).toISOString().slice(11, 16);
const pct = x => `${Math.round(x * 100)}%`;

// Fill steps: light to dark blue; the legend shows the same steps.
const STEPS = [[0, "#f4f6f8", "#52606d"], [0.01, "#dbeafe", "#1e3a8a"], [0.25, "#93c5fd", "#102a43"], [0.5, "#3b82f6", "#fff"], [0.75, "#1d4ed8", "#fff"], [0.9, "#1e3a8a", "#fff"]];
const stepOf = fill => STEPS.filter(s => fill >= s[0]).pop();
const HUB_COLOURS = ["#1d4ed8", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#b91c1c"];

/** Totals of one slot snapshot: booked (used minus held), held, capacity, over all fleet counters. */
function slotTotals(slot) {
  let capacity = 0, used = 0, held = 0;
  for (const f of slot.fleet || []) { capacity += n(f.capacityOrders); used += n(f.usedOrders); held += n(f.heldOrders); }
  return { capacity, used, held, booked: used - held, fill: capacity ? used / capacity : (used ? 1 : 0) };
}

/** Hub x day x slot heat map of a UtilisationReply (with slots). */
function renderHeatmap(container, reply, { selected, onSelect, flash = new Set() } = {}) {
  const slots = reply.slots || [];
  const hubs = [...new Set(slots.map(s => s.hub).concat((reply.days || []).map(d => d.hub)))].sort();
  const times = [...new Set(slots.map(s => utcTime(n(s.startUnixMs))))].sort();
  const dates = [...new Set(slots.map(s => utcDate(n(s.startUnixMs))).concat((reply.days || []).map(d => d.date)))].sort();
  const bySlot = new Map(slots.map(s => [`${s.hub}|${utcDate(n(s.startUnixMs))}|${utcTime(n(s.startUnixMs))}`, s]));
  const byDay = new Map((reply.days || []).map(d => [`${d.hub}|${d.date}`, d]));
  if (!slots.length) { container.replaceChildren(el("p", { class: "hint", text: "No slot configured in this range: upload a plan below." })); return; }
  const table = el("table", { class: "heat", id: "heat" });
  const head1 = el("tr", {}, el("th"));
  const head2 = el("tr", {}, el("th", { class: "day", text: "day · start (UTC)" }));
  for (const hub of hubs) {
    head1.append(el("th", { class: "hub", colspan: times.length + 1, text: hub }));
    // Windows start on the hour: "08" is 08:00-10:00 UTC (the full time is in each cell's tooltip).
    times.forEach((t, i) => head2.append(el("th", { class: i === 0 ? "hub" : "", title: `${t} UTC, two hours`, text: t.slice(0, 2) })));
    head2.append(el("th", { text: "day" }));
  }
  table.append(el("thead", {}, head1, head2));
  const body = el("tbody");
  for (const date of dates) {
    const weekday = new Date(date + "T00:00:00Z").toLocaleDateString("en-GB", { weekday: "short", timeZone: "UTC" });
    const row = el("tr", {}, el("th", { class: "day" + (/Sat|Sun/.test(weekday) ? " weekend" : ""), text: `${weekday} ${date.slice(5)}` }));
    for (const hub of hubs) {
      times.forEach((time, i) => {
        const slot = bySlot.get(`${hub}|${date}|${time}`);
        const td = el("td", { class: i === 0 ? "first" : "" });
        if (!slot) { td.append(el("div", { class: "empty", title: "no slot" })); row.append(td); return; }
        const t = slotTotals(slot);
        const [, bg, fg] = stepOf(t.fill);
        const cell = el("div", {
          class: "cell" + (slot.open ? "" : " closed") + (slot.overCommitted ? " over" : "") + (slot.slot === selected ? " selected" : "") + (flash.has(slot.slot) ? " flash" : ""),
          "data-slot": slot.slot, "data-used": t.used, "data-held": t.held, "data-booked": t.booked, "data-capacity": t.capacity,
          "data-open": String(!!slot.open), "data-over": String(!!slot.overCommitted),
          title: `${slot.slot}\nbooked ${t.booked}, held ${t.held}, capacity ${t.capacity} (${pct(t.fill)})${slot.open ? "" : "\nCLOSED"}${slot.overCommitted ? "\nOVER-COMMITTED: a counter holds more than its capacity" : ""}`,
          style: `background:${bg};color:${fg}`,
          text: slot.open ? String(t.used) : "×",
        });
        if (t.held && t.capacity) cell.append(el("span", { class: "held", style: `width:${Math.min(100, 100 * t.held / t.capacity)}%` }));
        if (onSelect) cell.addEventListener("click", () => onSelect(slot.slot));
        td.append(cell);
        row.append(td);
      });
      const day = byDay.get(`${hub}|${date}`);
      row.append(el("td", { class: "daytotal", title: day ? `${hub} ${date}: ${n(day.usedOrders)} of ${n(day.capacityOrders)} orders, ${n(day.heldOrders)} held, ${day.closedSlots || 0} closed, ${day.overCommittedSlots || 0} over-committed` : "", text: day ? pct(n(day.utilisation)) : "" }));
    }
    body.append(row);
  }
  table.append(body);
  container.replaceChildren(table);
}

function renderLegend(container) {
  const items = STEPS.map(([from, bg], i) => el("span", {}, el("span", { class: "swatch", style: `background:${bg}` }),
    i === 0 ? "empty" : `${Math.round(from * 100)}%${i < STEPS.length - 1 ? "–" + Math.round(STEPS[i + 1][0] * 100) + "%" : "+"}`));
  container.replaceChildren(el("strong", { text: "Fill (booked + held) / capacity, number = orders taken:" }), ...items,
    el("span", {}, el("span", { class: "swatch", style: "background:#fff" }, el("span", { class: "held", style: "position:absolute;left:0;bottom:0;height:4px;width:60%;background:var(--held)" })), "held share"),
    el("span", {}, el("span", { class: "swatch", style: "background:repeating-linear-gradient(135deg,#e4e7eb 0 4px,#cbd2d9 4px 8px)" }), "closed (×)"),
    el("span", {}, el("span", { class: "swatch", style: "box-shadow:inset 0 0 0 2px var(--over)" }), "over-committed (!)"),
    el("span", { class: "hint", text: "day = hub's day utilisation; times UTC" }));
}

/** A line chart in inline SVG. series: [{name, colour, points: [[x, y]]}]. */
function lineChart(container, series, { xMin, xMax, yMax, xTicks, xLabel, yLabel, yFormat = v => v, reverseX = false, capacityLines = [] }) {
  const W = 520, H = 220, L = 40, R = 10, T = 10, B = 34;
  const sx = x => { const f = (x - xMin) / ((xMax - xMin) || 1); return L + (reverseX ? 1 - f : f) * (W - L - R); };
  const sy = y => T + (1 - y / (yMax || 1)) * (H - T - B);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("width", "100%");
  const add = (tag, attrs, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text != null) e.textContent = text; svg.append(e); return e; };
  for (let i = 0; i <= 4; i++) {
    const y = yMax * i / 4;
    add("line", { class: "grid", x1: L, x2: W - R, y1: sy(y), y2: sy(y) });
    add("text", { x: L - 4, y: sy(y) + 3, "text-anchor": "end" }, yFormat(y));
  }
  for (const [x, label] of xTicks) add("text", { x: sx(x), y: H - B + 13, "text-anchor": "middle" }, label);
  add("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B });
  add("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B });
  add("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, xLabel);
  add("text", { x: 10, y: T + (H - T - B) / 2, transform: `rotate(-90 10 ${T + (H - T - B) / 2})`, "text-anchor": "middle" }, yLabel);
  for (const c of capacityLines) add("line", { x1: L, x2: W - R, y1: sy(c.y), y2: sy(c.y), stroke: c.colour, "stroke-dasharray": "4 3", "stroke-width": 1 });
  for (const s of series) {
    if (!s.points.length) continue;
    add("polyline", { points: s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" "), fill: "none", stroke: s.colour, "stroke-width": 1.8, "stroke-linejoin": "round" });
    for (const [x, y] of s.points.length < 40 ? s.points : []) add("circle", { cx: sx(x), cy: sy(y), r: 2, fill: s.colour });
  }
  const legend = el("div", { class: "chart-legend" }, ...series.map(s => el("span", {}, el("i", { style: `background:${s.colour}` }), s.name)));
  container.replaceChildren(svg, legend);
}

/** Utilisation per hub and day, from the reply's days. */
function renderUtilisation(container, reply) {
  const days = reply.days || [];
  const dates = [...new Set(days.map(d => d.date))].sort();
  if (!dates.length) { container.replaceChildren(el("p", { class: "hint", text: "No data in this range." })); return; }
  const hubs = [...new Set(days.map(d => d.hub))].sort();
  const series = hubs.map((hub, i) => ({ name: hub, colour: HUB_COLOURS[i % HUB_COLOURS.length],
    points: days.filter(d => d.hub === hub).map(d => [dates.indexOf(d.date), n(d.capacityOrders) ? n(d.usedOrders) / n(d.capacityOrders) : 0]) }));
  const every = Math.max(1, Math.ceil(dates.length / 10));
  const yMax = Math.max(1, ...series.flatMap(s => s.points.map(p => p[1])));
  lineChart(container, series, { xMin: 0, xMax: Math.max(1, dates.length - 1), yMax, xTicks: dates.map((d, i) => [i, d.slice(5)]).filter((_, i) => i % every === 0),
    xLabel: "day (UTC)", yLabel: "utilisation", yFormat: v => pct(v) });
}

/** Orders taken by hours before the start, one line per slot of a hub's day. */
function renderFillCurve(container, curves) {
  if (!curves.slots.length) { container.replaceChildren(el("p", { class: "hint", text: "No slot that day." })); return; }
  const series = curves.slots.map((c, i) => ({ name: utcTime(n(c.startUnixMs)), colour: HUB_COLOURS[i % HUB_COLOURS.length],
    points: c.points.map(p => [Math.max(0, p.leadHours), p.used]) }));
  const xMax = Math.max(1, ...series.flatMap(s => s.points.map(p => p[0])));
  const yMax = Math.max(1, ...curves.slots.map(c => c.capacity), ...series.flatMap(s => s.points.map(p => p[1])));
  const ticks = [0, 0.25, 0.5, 0.75, 1].map(f => [xMax * f, xMax * f >= 48 ? `${Math.round(xMax * f / 24)}d` : `${Math.round(xMax * f)}h`]);
  lineChart(container, series, { xMin: 0, xMax, yMax, xTicks: ticks, reverseX: true, xLabel: "lead time: before the slot starts (right = start)", yLabel: "orders taken",
    yFormat: v => Math.round(v), capacityLines: [...new Set(curves.slots.map(c => c.capacity))].map(c => ({ y: c, colour: "#9aa5b1" })) });
  if (curves.incomplete) container.append(el("div", { class: "message warn", text: "History may be incomplete: " + curves.incomplete }));
}

// ---- the live page ----
const state = { reply: { days: [], slots: [] }, selected: null, plan: null, flash: new Set(), stream: null };

function rangeQuery() {
  const from = $("from").value, days = Number($("days").value);
  const to = new Date(Date.parse(from + "T00:00:00Z") + days * 86400000).toISOString().slice(0, 10);
  return `hub=${encodeURIComponent($("hub").value)}&from=${from}&to=${to}`;
}

function draw() {
  renderHeatmap($("heatmap"), state.reply, { selected: state.selected, onSelect: selectSlot, flash: state.flash });
  renderUtilisation($("chart-utilisation"), state.reply);
  state.flash = new Set();
}

function showError(message) { const e = $("error"); e.textContent = message || ""; e.hidden = !message; }

/** The instant picked in "As of" (UTC), or null for the live view. */
function asOf() {
  const value = $("as-of").value;
  return value ? new Date(value + "Z").toISOString() : null;
}

async function load() {
  const at = asOf();
  $("as-of-now").hidden = !at;
  if (at) return loadPast(at);
  try {
    state.reply = await api(`/console/api/utilisation?${rangeQuery()}`);
    showError(null);
    $("lag").textContent = `view lag ${n(state.reply.viewLagMs)} ms`;
    const hubs = [...new Set(state.reply.slots.map(s => s.hub))].sort();
    const select = $("hub");
    for (const hub of hubs) if (![...select.options].some(o => o.value === hub)) select.append(el("option", { value: hub, text: hub }));
    draw();
  } catch (e) { showError(e.message); }
  follow();
}

/** Time travel: the view rebuilt from the events topic as it was at an instant; no live updates. */
async function loadPast(at) {
  state.stream = null;
  const live = $("live");
  live.className = "live off"; live.textContent = `rebuilding as of ${at.slice(0, 16).replace("T", " ")} UTC…`;
  try {
    state.reply = await api(`/console/api/history?${rangeQuery()}&at=${encodeURIComponent(at)}`);
    showError(null);
    live.textContent = `as of ${at.slice(0, 16).replace("T", " ")} UTC (from the events)`;
    $("lag").textContent = "";
    draw();
  } catch (e) { live.textContent = "as of: failed"; showError(e.message); }
}

/** Merges an update (changed slots and their days) into the current reply. */
function merge(reply, update) {
  const slots = new Map(reply.slots.map(s => [s.slot, s]));
  for (const s of update.slots || []) slots.set(s.slot, s);
  const days = new Map(reply.days.map(d => [`${d.hub}|${d.date}`, d]));
  for (const d of update.days || []) days.set(`${d.hub}|${d.date}`, d);
  const bySlot = (a, b) => n(a.startUnixMs) - n(b.startUnixMs) || a.hub.localeCompare(b.hub);
  return { ...reply, slots: [...slots.values()].sort(bySlot), days: [...days.values()].sort((a, b) => a.hub.localeCompare(b.hub) || a.date.localeCompare(b.date)) };
}

/** Server-sent events read through request() (EventSource cannot carry an Authorization header). */
async function follow() {
  const generation = {};
  state.stream = generation;
  const live = $("live");
  while (state.stream === generation) {
    try {
      const response = await request(`/console/api/stream?${rangeQuery()}`);
      if (!response.ok) throw new Error((await response.json()).error);
      live.className = "live on"; live.textContent = "live";
      const reader = response.body.getReader(), decoder = new TextDecoder();
      let buffer = "";
      while (state.stream === generation) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end); buffer = buffer.slice(end + 2);
          const data = frame.split("\n").filter(l => l.startsWith("data: ")).map(l => l.slice(6)).join("\n");
          if (!data) continue;
          const update = JSON.parse(data);
          state.reply = merge(state.reply, update);
          for (const s of update.slots || []) state.flash.add(s.slot);
          draw();
          if (state.selected && (update.slots || []).some(s => s.slot === state.selected)) {
            renderCounters(state.reply.slots.find(s => s.slot === state.selected));
            refreshEventsSoon(state.selected);
          }
        }
      }
      reader.cancel().catch(() => {});
    } catch (e) { live.title = e.message; }
    if (state.stream !== generation) return;
    live.className = "live off"; live.textContent = "reconnecting";
    await new Promise(r => setTimeout(r, 2000));
  }
}

// ---- slot detail and actions ----
let detailEvents = null;

async function selectSlot(key) {
  state.selected = key;
  draw();
  const slot = state.reply.slots.find(s => s.slot === key);
  renderCounters(slot);
  $("detail-events").replaceChildren(el("p", { class: "hint", text: "reading the slot's recent events…" }));
  const [hub, start] = key.split("@");
  $("curve-title").textContent = `· ${hub} ${start.slice(0, 10)}`;
  await loadEvents(key);
  try {
    renderFillCurve($("chart-curve"), await api(`/console/api/fill-curve?hub=${encodeURIComponent(hub)}&date=${start.slice(0, 10)}`));
  } catch (e) { $("chart-curve").replaceChildren(el("div", { class: "message error", text: e.message })); }
}

async function loadEvents(key) {
  try {
    const detail = await api(`/console/api/slot?key=${encodeURIComponent(key)}`);
    if (state.selected !== key) return;
    detailEvents = detail;
    renderEvents(detail);
  } catch (e) { if ($("detail-events")) $("detail-events").replaceChildren(el("div", { class: "message error", text: e.message })); }
}

// A live change of the selected slot re-reads its events, at most once a second.
let eventsRefresh = null;
function refreshEventsSoon(key) {
  if (eventsRefresh) return;
  eventsRefresh = setTimeout(() => { eventsRefresh = null; if (state.selected === key) loadEvents(key); }, 1000);
}

function bar(used, held, capacity) {
  const over = used > capacity;
  const w = v => capacity ? Math.min(100, 100 * v / capacity) : (v ? 100 : 0);
  return el("div", { class: "bar" + (over ? " over" : "") }, el("span", { style: `width:${w(used)}%` }), el("span", { class: "h", style: `left:${w(used - held)}%;width:${w(held)}%` }));
}

function renderCounters(slot) {
  const aside = $("detail");
  if (!slot) { aside.replaceChildren(el("p", { class: "hint", text: "This slot is not in the view any more." })); return; }
  const t = slotTotals(slot);
  // A live redraw of the same slot keeps what the planner typed and the last action's answer.
  const same = aside.dataset.slot === slot.slot;
  const typed = same ? [...aside.querySelectorAll("input[data-dirty]")].map(i => [i.dataset.kind, i.dataset.name, i.value]) : [];
  const message = same && $("detail-message") ? $("detail-message") : el("div", { id: "detail-message" });
  aside.dataset.slot = slot.slot;
  const toggle = el("button", { id: "toggle-open", class: slot.open ? "danger" : "primary", text: slot.open ? "Close slot" : "Open slot",
    onclick: () => act(message, "/console/api/slot/open", { slot: slot.slot, open: !slot.open }, slot.open ? "Slot closed" : "Slot opened") });
  const input = (kind, name, value) => {
    const field = el("input", { type: "number", min: "0", step: "1", value, "data-kind": kind, "data-name": name });
    field.addEventListener("input", () => field.setAttribute("data-dirty", ""));
    const kept = typed.find(([k, nm]) => k === kind && nm === name);
    if (kept) { field.value = kept[2]; field.setAttribute("data-dirty", ""); }
    return field;
  };
  const fleet = el("table", { class: "counters" }, el("tr", {}, ...["fleet counter", "zones · carries", "booked", "held", "capacity", ""].map(h => el("th", { text: h }))));
  for (const f of slot.fleet || []) fleet.append(el("tr", {}, el("td", { text: f.name }), el("td", { class: "hint", text: `${(f.zones || []).join("+") || "any"} · ${(f.carries || []).join("+") || "-"}` }),
    el("td", { class: "num", text: n(f.usedOrders) - n(f.heldOrders) }), el("td", { class: "num", text: n(f.heldOrders) }), el("td", {}, input("fleet", f.name, n(f.capacityOrders))), el("td", {}, bar(n(f.usedOrders), n(f.heldOrders), n(f.capacityOrders)))));
  const shared = el("table", { class: "counters" }, el("tr", {}, ...["shared counter", "measure", "used", "held", "capacity", ""].map(h => el("th", { text: h }))));
  for (const s of slot.shared || []) shared.append(el("tr", {}, el("td", { text: s.name }), el("td", { class: "hint", text: s.measure }), el("td", { class: "num", text: n(s.used) }),
    el("td", { class: "num", text: n(s.held) }), el("td", {}, input("shared", s.name, n(s.capacity))), el("td", {}, bar(n(s.used), n(s.held), n(s.capacity)))));
  const zones = el("table", { class: "counters" }, el("tr", {}, ...["zone", "rule", "used", "max orders"].map(h => el("th", { text: h }))));
  for (const z of slot.zones || []) zones.append(el("tr", {}, el("td", { text: z.zone }), el("td", { text: z.closed ? "closed" : (z.maxOrders != null ? "limited" : "open") }),
    el("td", { class: "num", text: n(z.usedOrders) }), el("td", {}, z.closed ? "" : input("zones", z.zone, z.maxOrders != null ? n(z.maxOrders) : ""))));
  const save = el("button", { id: "save-capacity", class: "primary", text: "Save capacities", onclick: () => {
    const change = { slot: slot.slot, fleet: {}, shared: {}, zones: {} };
    for (const i of aside.querySelectorAll("input[data-kind]")) change[i.dataset.kind][i.dataset.name] = i.value === "" ? null : Number(i.value);
    act(message, "/console/api/slot/capacity", change, "Capacities saved");
  } });
  const cutoff = n(slot.cutoffUnixMs) ? new Date(n(slot.cutoffUnixMs)).toISOString().slice(0, 16).replace("T", " ") + "Z" : "none";
  put(aside,
    el("h2", { text: slot.slot }),
    el("div", {}, el("span", { class: slot.open ? "status-open" : "status-closed", id: "slot-status", text: slot.open ? "open" : "closed" }),
      ` · booked ${t.booked}, held ${t.held} of ${t.capacity} (${pct(t.fill)}) · cut-off ${cutoff}`, slot.overCommitted ? el("span", { class: "tag over", text: " over-committed" }) : null),
    el("div", { style: "margin:8px 0" }, toggle, " ", save), message,
    el("h3", { text: "Fleet counters (orders)" }), fleet, el("h3", { text: "Shared counters" }), shared,
    (slot.zones || []).length ? el("h3", { text: "Zone rules" }) : null, (slot.zones || []).length ? zones : null,
    el("h3", { text: "Recent events (slot-events)" }), el("div", { id: "detail-events" }));
  if (detailEvents && detailEvents.slot && detailEvents.slot.slot === slot.slot) renderEvents(detailEvents);
}

const KIND = k => (k || "").replace("SLOT_EVENT_KIND_", "").toLowerCase().replace(/_/g, " ");

/** What a SLOT_CONFIGURED event set: open or closed, and the fleet's total capacity. */
const configSummary = c => `: ${c.open ? "open" : "closed"}, ${(c.fleet || []).reduce((sum, f) => sum + n(f.capacityOrders), 0)} orders`;

function renderEvents(detail) {
  const box = $("detail-events");
  if (!box) return;
  const table = el("table", { class: "events" }, el("tr", {}, ...["when (UTC)", "what", "reservation", "order", "fleet", "±"].map(h => el("th", { text: h }))));
  for (const e of detail.events) table.append(el("tr", {}, el("td", { text: new Date(n(e.occurredUnixMs)).toISOString().slice(5, 19).replace("T", " ") }),
    el("td", { text: KIND(e.kind) + (e.reason && !KIND(e.kind).endsWith(e.reason) ? ` (${e.reason})` : "") + (e.config ? configSummary(e.config) : "") + (e.changedBy ? ` by ${e.changedBy}` : "") }), el("td", { text: e.reservationId }), el("td", { text: e.orderId }),
    el("td", { text: e.fleetCounter }), el("td", { class: "num", text: n(e.fleetUnits) ? (n(e.fleetUnits) > 0 ? "+" : "") + n(e.fleetUnits) : "" })));
  put(box,
    el("div", { class: "hint", text: `${detail.eventsFound} events found in the last ${detail.recordsScanned} records of the slot's partition${detail.eventsFound > detail.events.length ? `, newest ${detail.events.length} shown` : ""}` }),
    detail.incomplete ? el("div", { class: "message warn", id: "history-incomplete", text: "History may be incomplete: " + detail.incomplete }) : null,
    detail.events.length ? table : el("p", { class: "hint", text: "No event for this slot in that window." }));
}

async function act(message, path, body, done) {
  message.replaceChildren(el("div", { class: "hint", text: "sending…" }));
  try {
    const result = await api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    message.replaceChildren(result.applied
      ? el("div", { class: "message ok", text: done })
      : el("div", { class: "message error", text: `Refused: ${(result.reason || "").replace("REJECT_REASON_", "")} ${result.detail || ""}` }));
  } catch (e) { message.replaceChildren(el("div", { class: "message error", text: "Refused: " + e.message })); }
}

// ---- plan upload: dry run, then apply ----
async function sendPlan(kind) {
  const file = $("plan-file").files[0], out = $("plan-result");
  if (!file) { out.replaceChildren(el("div", { class: "message error", text: "Choose a plan file first." })); return; }
  const text = await file.text();
  $("plan-apply").disabled = true;
  out.replaceChildren(el("div", { class: "hint", text: kind === "preview" ? "computing the dry run…" : "applying…" }));
  try {
    const result = await api(`/console/api/plan/${kind}?name=${encodeURIComponent(file.name)}`, { method: "POST", headers: { "Content-Type": "text/plain" }, body: text });
    if (kind === "preview") { renderDiff(out, result); $("plan-apply").disabled = false; }
    else {
      const failed = (result.results || []).filter(r => !r.applied);
      out.replaceChildren(el("div", { class: failed.length ? "message warn" : "message ok", id: "plan-applied", text: `Applied ${result.applied || 0} slots, ${result.failed || 0} failed.` }),
        ...failed.slice(0, 50).map(r => el("div", { class: "message error", text: `${r.slot.hub} ${r.slot.start}: ${(r.reason || "").replace("REJECT_REASON_", "")} ${r.detail}` })));
    }
  } catch (e) {
    if (e.body && e.body.problems) renderDiff(out, e.body);
    else out.replaceChildren(el("div", { class: "message error", text: e.message }));
  }
}

function renderDiff(out, preview) {
  if (preview.problems.length) {
    out.replaceChildren(el("div", { class: "message error", id: "plan-problems", text: "The plan is refused, nothing was applied:\n" + preview.problems.join("\n") }));
    return;
  }
  const table = el("table", { class: "diff", id: "plan-diff" }, el("tr", {}, ...["slot", "from", "change", "what changes", "over-committed after"].map(h => el("th", { text: h }))));
  for (const s of preview.slots.filter(s => s.change !== "unchanged" || s.overCommitted.length))
    table.append(el("tr", { class: s.overCommitted.length ? "over" : "" }, el("td", { text: s.slot }), el("td", { class: "hint", text: s.source }),
      el("td", {}, el("span", { class: "tag " + s.change, text: s.change })), el("td", { text: s.changes.join("; ") }), el("td", { text: s.overCommitted.join("; ") })));
  out.replaceChildren(el("div", { class: preview.overCommitted ? "message warn" : "message ok", id: "plan-summary",
    text: `Dry run: ${preview.new} new, ${preview.changed} changed, ${preview.unchanged} unchanged; ${preview.overCommitted} would be over-committed. Nothing is applied until you press Apply plan.` }), table);
}

if (typeof document !== "undefined" && $("heatmap")) {
  // ?hub=LON1&from=2026-12-01&days=7 opens the page on that range (a link a planner can share).
  const query = new URLSearchParams(location.search);
  $("from").value = query.get("from") || new Date().toISOString().slice(0, 10);
  if (query.get("days")) $("days").value = query.get("days");
  if (query.get("hub")) { $("hub").append(el("option", { value: query.get("hub"), text: query.get("hub") })); $("hub").value = query.get("hub"); }
  for (const id of ["hub", "from", "days", "as-of"]) $(id).addEventListener("change", load);
  $("as-of-now").addEventListener("click", () => { $("as-of").value = ""; load(); });
  $("plan-preview").addEventListener("click", () => sendPlan("preview"));
  $("plan-apply").addEventListener("click", () => sendPlan("apply"));
  $("plan-file").addEventListener("change", () => { $("plan-apply").disabled = true; $("plan-result").replaceChildren(); });
  renderLegend($("legend"));
  load();
}
