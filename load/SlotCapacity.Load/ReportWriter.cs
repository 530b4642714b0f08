using System.Globalization;
using System.Text;
using System.Text.Json;

namespace SlotCapacity.Load;

/// <summary>Writes a scenario's report.json, summary.md and latency plots, and the index of all scenarios.</summary>
public static class ReportWriter
{
    public static void Write(ScenarioReport report, string dir)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "report.json"), JsonSerializer.Serialize(report, ScenarioReport.Json) + "\n");
        var plots = LatencyPlot.Write(report, dir);
        File.WriteAllText(Path.Combine(dir, "summary.md"), Markdown(report, plots));
    }

    internal static string F(double v) => v.ToString(v >= 100 ? "0" : v >= 10 ? "0.0" : "0.00", CultureInfo.InvariantCulture);
    private static string R(double? v) => v is null ? "n/a" : v.Value.ToString("0.00", CultureInfo.InvariantCulture) + "x";

    public static string Markdown(ScenarioReport r, IReadOnlyList<string> plots)
    {
        var sb = new StringBuilder();
        var m = r.Machine;
        sb.AppendLine(CultureInfo.InvariantCulture, $"# Scenario `{r.Scenario}`");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"{r.Description}. Run {r.StartedUtc:yyyy-MM-dd HH:mm} UTC, commit `{m.GitCommit ?? "unknown"}`.");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Machine: {m.Cores} cores ({m.CpuModel}), {m.MemoryMib / 1024.0:0.0} GiB memory, {m.Os}, {m.Dotnet}; everything (system or peer, and this load generator) on it. Load average when the scenario started (1/5/15 min; includes the previous scenario and any other work on the machine): {m.LoadAverage}.");
        var shape = r.Settings.Multipliers.Count > 1
            ? string.Create(CultureInfo.InvariantCulture, $"steps of {r.Settings.StepSeconds:0} s at {string.Join(", ", r.Settings.Multipliers.Select(x => x + "x"))} nominal, stopping at the first step with p99 > {r.Settings.P99LimitMs:0} ms, errors > {r.Settings.ErrorRateLimit:P1} or an oversell.")
            : string.Create(CultureInfo.InvariantCulture, $"{r.Settings.DurationSeconds:0} s measured.");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Open-loop arrivals at a fixed rate, latency measured from each call's intended send time; warm-up excluded ({r.Settings.WarmupSeconds:0} s each at a quarter, half and all of the first step's rate); {shape}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Nominal = {r.Settings.NominalReservesPerSecond:0} reservation attempts/s + {r.Settings.NominalReadsPerSecond:0} availability reads/s. Latencies in ms.");
        sb.AppendLine("'harness lag' is how late the load generator itself sent calls (CPU shared with the system under test); it is part of every latency, as a client's own stalls would be.");
        sb.AppendLine();
        sb.AppendLine("| target | step | offered res/s | done res/s | reserve p50 | p99 | p99.9 | max | offered reads/s | read p50 | p99 | p99.9 | max | accepted | rejected | errors | retried | lost | harness lag p99 | held |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        foreach (var t in r.Targets)
        {
            if (t.Error is not null || t.NotRun is not null)
            {
                var why = t.NotRun is not null ? $"not run: {t.NotRun}" : $"failed: {t.Error!.Replace('|', '/')}";
                sb.AppendLine(CultureInfo.InvariantCulture, $"| {t.Target} | {why} |{string.Concat(Enumerable.Repeat(" |", 18))}");
                continue;
            }
            foreach (var s in t.Steps)
            {
                var rejected = s.Reserve.Rejected.Values.Sum();
                var errors = s.Reserve.Errors.Values.Sum() + s.Read.Errors.Values.Sum();
                sb.AppendLine(CultureInfo.InvariantCulture,
                    $"| {t.Target} | {s.Label} | {s.ReservesPerSecondTarget:0} | {s.Reserve.PerSecond:0} | {F(s.Reserve.LatencyMs.P50)} | {F(s.Reserve.LatencyMs.P99)} | {F(s.Reserve.LatencyMs.P999)} | {F(s.Reserve.LatencyMs.Max)} " +
                    $"| {s.ReadsPerSecondTarget:0} | {F(s.Read.LatencyMs.P50)} | {F(s.Read.LatencyMs.P99)} | {F(s.Read.LatencyMs.P999)} | {F(s.Read.LatencyMs.Max)} " +
                    $"| {s.Reserve.Accepted} | {rejected} | {errors} | {s.Reserve.Retried + s.Read.Retried} | {s.Reserve.Lost + s.Read.Lost} | {F(s.DispatchLagMs.P99)} | {(s.Held ? "yes" : "no: " + s.FailedBecause)} |");
            }
        }
        sb.AppendLine();
        sb.AppendLine("'retried': calls sent again after a transport failure (same request, the next gateway, up to 3 attempts, as checkout's client would); 'lost': calls with no definite answer after their retries. Errors include UNAVAILABLE answers (a definite \"not held\").");
        foreach (var t in r.Targets)
        {
            var causes = t.Steps.SelectMany(s => new[] { s.Reserve, s.Read, s.Confirm, s.Release })
                .SelectMany(o => o?.RetriedBecause ?? new Dictionary<string, long>())
                .GroupBy(c => c.Key).Select(g => $"{g.Key}: {g.Sum(c => c.Value)}").ToList();
            if (causes.Count > 0) sb.AppendLine(CultureInfo.InvariantCulture, $"Retries on {t.Target}, by the first attempt's failure: {string.Join(", ", causes)}.");
        }
        Checkout(sb, r);
        Cpu(sb, r);
        sb.AppendLine();
        sb.AppendLine("## Highest rate held");
        sb.AppendLine();
        sb.AppendLine("| target | highest step held | reserves/s | reads/s | reserve p99 | read p99 | within design latency (reserve p99 < " +
                      $"{r.Settings.DesignReserveP99Ms:0} ms, read p99 < {r.Settings.DesignReadP99Ms:0} ms) |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---|");
        foreach (var t in r.Targets.Where(t => t.Error is null && t.NotRun is null))
        {
            var h = t.HighestHeld;
            sb.AppendLine(h is null
                ? $"| {t.Target} | none | | | | | |"
                : string.Create(CultureInfo.InvariantCulture, $"| {t.Target} | {h.Label} | {h.Reserve.PerSecond:0} | {h.Read.PerSecond:0} | {F(h.Reserve.LatencyMs.P99)} | {F(h.Read.LatencyMs.P99)} | {(h.MeetsDesignLatency ? "yes" : "no")} |"));
        }
        sb.AppendLine();
        sb.AppendLine("## Audit (after the run: accepted units within capacity, every accept recorded, no phantom booking)");
        sb.AppendLine();
        sb.AppendLine("Live at the end: reservations still holding capacity once holds left alone expired and the gateways' abandons were applied; 'caller holds' = booked, or held and confirmed, as the caller was told. A phantom holds capacity though the caller was told otherwise (refused, UNAVAILABLE, released, left to expire) or got no answer; 'missing' was told booked but holds nothing; 'uncertain' are confirms/releases without a definite answer, allowed either way.");
        sb.AppendLine();
        sb.AppendLine("| target | passed | read back from | accepted (told to harness) | recorded by target | missing | counters checked | oversold counters | oversold units | live at end (target) | caller holds | uncertain | phantoms | of which unanswered | missing live | slots differing |");
        sb.AppendLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var t in r.Targets)
        {
            var a = t.Audit;
            var p = a?.Phantoms;
            var live = p is null ? "| n/a | | | | | | " : $"| {p.LiveByTarget} | {p.LiveByCaller} | {p.UncertainByCaller} | {p.Phantoms} | {p.PhantomsAfterNoAnswer} | {p.MissingLive} | {p.SlotsMismatched} of {p.SlotsChecked} ";
            sb.AppendLine(a is null
                ? $"| {t.Target} | no (not run) | | | | | | | | | | | | | | |"
                : $"| {t.Target} | {(a.Passed ? "yes" : "**NO**")} | {a.Source} | {a.AcceptedByHarness} | {a.RecordedByTarget} | {a.MissingAccepted} | {a.CountersChecked} | {a.OversoldCounters} | {a.OversoldUnits} {live}|");
        }
        foreach (var t in r.Targets.Where(t => t.Audit is { Passed: false }))
        {
            sb.AppendLine();
            sb.AppendLine(CultureInfo.InvariantCulture, $"Violations for {t.Target}:");
            foreach (var v in t.Audit!.Violations) sb.AppendLine(CultureInfo.InvariantCulture, $"- {v}");
        }
        if (r.Comparisons.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine("## This system divided by each peer");
            sb.AppendLine();
            sb.AppendLine("Throughput ratio above 1 = the system held more; latency ratio above 1 = the system is slower.");
            sb.AppendLine();
            sb.AppendLine("| peer | compared steps | held reserves/s | reserve p50 | reserve p99 | read p99 |");
            sb.AppendLine("|---|---|---:|---:|---:|---:|");
            foreach (var c in r.Comparisons)
                sb.AppendLine(CultureInfo.InvariantCulture, $"| {c.Peer} | {c.Step} | {R(c.HeldReservesPerSecondRatio)} | {R(c.ReserveP50Ratio)} | {R(c.ReserveP99Ratio)} | {R(c.ReadP99Ratio)} |");
        }
        sb.AppendLine();
        sb.AppendLine("## Setup of each target");
        sb.AppendLine();
        foreach (var t in r.Targets)
            sb.AppendLine(CultureInfo.InvariantCulture, $"- **{t.Target}** ({t.Endpoint}): {t.Notes}. {t.Slots} slots in {t.Hubs} hubs, {t.SlotCapacityOrders} orders of fleet capacity in all.");
        if (plots.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine("## p99 latency per second");
            sb.AppendLine();
            foreach (var p in plots) sb.AppendLine(CultureInfo.InvariantCulture, $"![{Path.GetFileNameWithoutExtension(p)}]({p})");
        }
        sb.AppendLine();
        sb.AppendLine("HDR histograms (percentile distributions, ms) per target, step and operation are in `histograms/`; the full numbers, per-second timeline included, are in `report.json`.");
        return sb.ToString();
    }

    private static void Checkout(StringBuilder sb, ScenarioReport r)
    {
        var steps = r.Targets.SelectMany(t => t.Steps.Where(s => s.Confirm is not null || s.Release is not null).Select(s => (t.Target, Step: s))).ToList();
        if (steps.Count == 0) return;
        var shape = r.Settings.Checkout;
        sb.AppendLine();
        sb.AppendLine("## Checkout follow-ups (confirm, release)");
        sb.AppendLine();
        if (shape is not null)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"Every reserve is a hold of {shape.HoldSeconds} s; {shape.ConfirmShare:P0} are confirmed {shape.ConfirmAfterMinSeconds:0}-{shape.ConfirmAfterMaxSeconds:0} s after the hold, {shape.ReleaseShare:P0} released {shape.ReleaseAfterMinSeconds:0}-{shape.ReleaseAfterMaxSeconds:0} s after, the rest left to expire. Latency from the send (a customer's pace is not the target's).");
        sb.AppendLine();
        sb.AppendLine("| target | step | call | count | accepted | rejected | errors | retried | lost | p50 | p99 | max |");
        sb.AppendLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var (target, s) in steps)
        {
            foreach (var (name, op) in new[] { ("confirm", s.Confirm), ("release", s.Release) })
            {
                if (op is null) continue;
                sb.AppendLine(CultureInfo.InvariantCulture,
                    $"| {target} | {s.Label} | {name} | {op.Count} | {op.Accepted} | {op.Rejected.Values.Sum()} | {op.Errors.Values.Sum()} | {op.Retried} | {op.Lost} | {F(op.LatencyMs.P50)} | {F(op.LatencyMs.P99)} | {F(op.LatencyMs.Max)} |");
            }
        }
    }

    private static string Cores(IEnumerable<ProcessCpuUse> uses) => string.Join(", ", uses.Select(u => string.Create(CultureInfo.InvariantCulture, $"{u.Name} {u.Cores:0.000}")));

    private static void Cpu(StringBuilder sb, ScenarioReport r)
    {
        if (!r.Targets.Any(t => t.Idle is not null || t.Cost is not null || t.Steps.Any(s => s.Cpu is not null))) return;
        sb.AppendLine();
        sb.AppendLine("## CPU");
        sb.AppendLine();
        sb.AppendLine("From /proc (utime + stime) of each process of the target (the system: local cluster, each processor, each gateway; redis-server; the postmaster with its backends) and of this harness. Cores = CPU seconds / wall seconds. µs per call = CPU ms per 1,000 calls. Idle: no traffic, the quietest 3 s (--idle) of the first 12 s after preparing (right after a plan is applied the target is still working through it).");
        sb.AppendLine();
        sb.AppendLine("| target | stretch | seconds | target cores | each process (cores) | target µs per call | harness cores | harness µs per call |");
        sb.AppendLine("|---|---|---:|---:|---|---:|---:|---:|");
        foreach (var t in r.Targets)
        {
            if (t.Idle is { } idle)
                sb.AppendLine(CultureInfo.InvariantCulture,
                    $"| {t.Target} | idle | {idle.Seconds:0.0} | {idle.TargetCores:0.000} | {Cores(idle.Processes)} | | {idle.HarnessCores:0.000} | |");
            foreach (var s in t.Steps.Where(s => s.Cpu is not null))
            {
                var c = s.Cpu!;
                var missing = c.Missing.Count > 0 ? $" (gone during the step: {string.Join(", ", c.Missing)})" : "";
                sb.AppendLine(CultureInfo.InvariantCulture,
                    $"| {t.Target} | {s.Label} | {c.WallSeconds:0.0} | {c.TargetCores:0.000} | {Cores(c.Target)}{missing} | {c.TargetUsPerCall:0.0} | {c.Harness.Cores:0.000} | {c.HarnessUsPerCall:0.0} |");
            }
        }
        var costs = r.Targets.Where(t => t.Cost is not null).ToList();
        if (costs.Count == 0) return;
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"CPU per kind of call, from a reserves-only then a reads-only phase of {r.Settings.CostSeconds:0} s each at the step's rates: with the idle cost included (as in production), and above idle (less the idle cores measured before the run, over the phase). In checkout scenarios a reserve's confirm or release is part of its cost. µs per call = CPU ms per 1,000 calls.");
        sb.AppendLine();
        sb.AppendLine("| target | µs per reserve (all processes) | µs per read (all processes) | above idle: per reserve / per read | each process: per reserve / per read | harness µs per reserve | harness µs per read |");
        sb.AppendLine("|---|---:|---:|---:|---|---:|---:|");
        foreach (var t in costs)
        {
            var c = t.Cost!;
            var each = string.Join(", ", c.Processes.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Name} {p.UsPerReserve:0} / {p.UsPerRead:0}")));
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {t.Target} | {c.TargetUsPerReserve:0} | {c.TargetUsPerRead:0} | {c.TargetUsPerReserveAboveIdle:0} / {c.TargetUsPerReadAboveIdle:0} | {each} | {c.HarnessUsPerReserve:0} | {c.HarnessUsPerRead:0} |");
        }
    }

    /// <summary>
    /// The performance targets of DESIGN.md, judged per target from the ramped scenarios: 60x nominal
    /// with reserve p99 &lt; 50 ms and read p99 &lt; 5 ms; one hot slot at >= 3,000 reserves/s with p99 &lt; 50 ms;
    /// no oversell and no lost accept in any scenario.
    /// </summary>
    private static void DesignTargets(StringBuilder sb, IReadOnlyList<ScenarioReport> reports)
    {
        var ramp = reports.FirstOrDefault(r => r.Scenario == "breaking-point");
        var hot = reports.FirstOrDefault(r => r.Scenario == "hot-slot-breaking-point");
        var targets = reports.SelectMany(r => r.Targets.Select(t => t.Target)).Distinct().ToList();
        if (targets.Count == 0) return;
        sb.AppendLine();
        sb.AppendLine("## Design targets (DESIGN.md, \"Performance targets\")");
        sb.AppendLine();
        sb.AppendLine("| target | 60x nominal: reserve p99 < 50 ms, read p99 < 5 ms | hot slot: >= 3,000 reserves/s at p99 < 50 ms | zero oversell, zero lost accepts (every scenario run) |");
        sb.AppendLine("|---|---|---|---|");
        foreach (var name in targets)
        {
            string sixty = "not run";
            if (ramp?.Targets.FirstOrDefault(t => t.Target == name) is { Error: null } rt)
            {
                var step = rt.Steps.FirstOrDefault(s => s.Multiplier >= 60);
                var best = rt.Steps.Where(s => s.MeetsDesignLatency).Select(s => s.Multiplier).DefaultIfEmpty(0).Max();
                sixty = step is null
                    ? $"not met: ramp stopped before 60x; highest step within these latencies {(best > 0 ? best + "x" : "none")}"
                    : string.Create(CultureInfo.InvariantCulture, $"{(step.MeetsDesignLatency ? "met" : "not met")}: reserve p99 {F(step.Reserve.LatencyMs.P99)} ms, read p99 {F(step.Read.LatencyMs.P99)} ms");
            }
            string hotSlot = "not run";
            if (hot?.Targets.FirstOrDefault(t => t.Target == name) is { Error: null } ht)
            {
                var within = ht.Steps.Where(s => s.Held && s.Reserve.LatencyMs.P99 < 50).ToList();
                var rate = within.Count == 0 ? 0 : within.Max(s => s.Reserve.PerSecond);
                hotSlot = string.Create(CultureInfo.InvariantCulture, $"{(rate >= 3000 ? "met" : "not met")}: {rate:0} reserves/s held at p99 < 50 ms");
            }
            var audits = reports.SelectMany(r => r.Targets.Where(t => t.Target == name && t.NotRun is null)).ToList();
            var clean = audits.All(t => t.Audit is { Passed: true });
            var integrity = clean
                ? $"met in {audits.Count} scenario runs"
                : $"**not met or not shown**: {audits.Count(t => t.Audit is not { Passed: true })} of {audits.Count} runs failed or were not audited";
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {name} | {sixty} | {hotSlot} | {integrity} |");
        }
    }

    /// <summary>Every scenario's report.json directly under the results dir, in the scenarios' order.</summary>
    public static List<ScenarioReport> ScenarioReports(string resultsDir)
    {
        var order = Scenario.All.Select(s => s.Name).ToList();
        // Scenario reports only: the self-check's report.json has its own schema.
        return Directory.GetDirectories(resultsDir)
            .Select(d => Path.Combine(d, "report.json"))
            .Where(File.Exists)
            .Select(f => File.ReadAllText(f))
            .Where(json => JsonDocument.Parse(json).RootElement.TryGetProperty("schema", out var schema) && schema.GetString() == ScenarioReport.SchemaName)
            .Select(json => JsonSerializer.Deserialize<ScenarioReport>(json, ScenarioReport.Json)!)
            .OrderBy(r => order.IndexOf(r.Scenario) is var i && i < 0 ? int.MaxValue : i)
            .ToList();
    }

    /// <summary>One table over every scenario's report.json under the results dir.</summary>
    public static string Index(string resultsDir)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Load results");
        sb.AppendLine();
        sb.AppendLine("Generated by `slot-load summarize` from each scenario's `report.json`. Latencies in ms, from the intended send time (open loop).");
        sb.AppendLine();
        // A single run on a shared 2-core machine does not reproduce: the reference is the last
        // `make bench` set, and each row below is only the latest `make load` of its scenario.
        if (File.Exists(Path.Combine(resultsDir, "bench", "README.md")))
        {
            sb.AppendLine("**The reference figures are [`bench/README.md`](bench/README.md)** (`make bench`: three consecutive runs on fresh systems, with the peers). " +
                          "Each row below is the latest single `make load` run of its scenario written here, with its date: older rows predate later changes.");
            sb.AppendLine();
        }
        sb.AppendLine("CPU: µs of CPU per reserve and per read summed over the target's processes (= CPU ms per 1,000 calls; from the reserves-only and reads-only phases of fixed-rate runs), the target's idle cores just before the run, and the harness's own cores during the highest step held. Blank: not measured by that run (reports older than the CPU accounting, or ramps).");
        sb.AppendLine();
        sb.AppendLine("| scenario | target | highest step held | reserves/s | reads/s | reserve p50 | p99 | p99.9 | read p50 | p99 | p99.9 | CPU µs/reserve | µs/read | idle cores | harness cores | phantoms | audit | run (UTC) | machine (load average at start) |");
        sb.AppendLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|");
        var reports = ScenarioReports(resultsDir);
        foreach (var r in reports)
        {
            foreach (var t in r.Targets)
            {
                var h = t.HighestHeld;
                var audit = t.Audit is null ? "not run" : t.Audit.Passed ? "passed"
                    : $"**FAILED** ({t.Audit.OversoldUnits} oversold units, {t.Audit.MissingAccepted} lost, {t.Audit.Phantoms?.Phantoms ?? 0} phantom)";
                // The 1-minute load average: on a shared machine, how much else was running.
                var machine = $"{r.Machine.Cores} cores, {r.Machine.MemoryMib / 1024.0:0} GiB ({r.Machine.LoadAverage.Split(' ')[0]})";
                var harnessStep = h ?? (t.Steps.Count > 0 ? t.Steps[^1] : null);
                var cpu = string.Create(CultureInfo.InvariantCulture,
                    $"| {(t.Cost is { } c ? c.TargetUsPerReserve.ToString("0", CultureInfo.InvariantCulture) : "")} | {(t.Cost is { } d ? d.TargetUsPerRead.ToString("0", CultureInfo.InvariantCulture) : "")} " +
                    $"| {(t.Idle is { } i ? i.TargetCores.ToString("0.000", CultureInfo.InvariantCulture) : "")} | {(harnessStep?.Cpu is { } hc ? hc.Harness.Cores.ToString("0.00", CultureInfo.InvariantCulture) : "")} " +
                    $"| {(t.Audit?.Phantoms is { } p ? p.Phantoms.ToString(CultureInfo.InvariantCulture) : "")} ");
                if (t.NotRun is not null)
                    sb.AppendLine(CultureInfo.InvariantCulture, $"| [{r.Scenario}]({r.Scenario}/summary.md) | {t.Target} | not run: {t.NotRun} | | | | | | | | {cpu}| | {r.StartedUtc:yyyy-MM-dd HH:mm} | {machine} |");
                else if (t.Error is not null)
                    sb.AppendLine(CultureInfo.InvariantCulture, $"| [{r.Scenario}]({r.Scenario}/summary.md) | {t.Target} | failed: {t.Error.Replace('|', '/')} | | | | | | | | {cpu}| {audit} | {r.StartedUtc:yyyy-MM-dd HH:mm} | {machine} |");
                else if (h is null)
                    sb.AppendLine(CultureInfo.InvariantCulture, $"| [{r.Scenario}]({r.Scenario}/summary.md) | {t.Target} | none (first step failed: {(t.Steps.Count > 0 ? t.Steps[0].FailedBecause : "not run")}) | | | | | | | | {cpu}| {audit} | {r.StartedUtc:yyyy-MM-dd HH:mm} | {machine} |");
                else
                    sb.AppendLine(CultureInfo.InvariantCulture,
                        $"| [{r.Scenario}]({r.Scenario}/summary.md) | {t.Target} | {h.Label} | {h.Reserve.PerSecond:0} | {h.Read.PerSecond:0} | {F(h.Reserve.LatencyMs.P50)} | {F(h.Reserve.LatencyMs.P99)} | {F(h.Reserve.LatencyMs.P999)} " +
                        $"| {F(h.Read.LatencyMs.P50)} | {F(h.Read.LatencyMs.P99)} | {F(h.Read.LatencyMs.P999)} {cpu}| {audit} | {r.StartedUtc:yyyy-MM-dd HH:mm} | {machine} |");
            }
        }
        DesignTargets(sb, reports);
        SelfCheckLine(sb, resultsDir);
        return sb.ToString();
    }

    private static void SelfCheckLine(StringBuilder sb, string resultsDir)
    {
        var file = Path.Combine(resultsDir, "self-check", "report.json");
        if (!File.Exists(file)) return;
        var r = JsonSerializer.Deserialize<SelfCheckReport>(File.ReadAllText(file), ScenarioReport.Json)!;
        var at10 = r.Steps.FirstOrDefault(s => s.Multiplier == 10);
        sb.AppendLine();
        sb.AppendLine("## Harness self-check ([summary](self-check/summary.md))");
        sb.AppendLine();
        var highest = r.HighestMultiplierWithinLateness is { } h ? $"{h}x nominal" : "none";
        var tenx = at10 is null ? "." : string.Create(CultureInfo.InvariantCulture,
            $"; at 10x the harness used {at10.Cpu.Harness.Cores:0.000} cores ({at10.Cpu.HarnessUsPerCall:0.0} µs per call), p99 lateness {F(at10.LatenessMs.P99)} ms.");
        sb.AppendLine(CultureInfo.InvariantCulture,
            $"Against a trivial gRPC server ({r.Channels}), {r.StartedUtc:yyyy-MM-dd HH:mm} UTC: highest rate with p99 lateness < {r.LatenessLimitMs:0} ms: {highest}{tenx}");
    }
}
