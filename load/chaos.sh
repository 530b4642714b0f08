#!/usr/bin/env bash
# `make chaos`: the fault suite. For each load (nominal 50 reserves/s, tenx 500/s) it runs every
# experiment of load/faults against a system started afresh for it (compose/run-local.sh): the local
# cluster keeps only so much per partition (5 MiB before its own build raised it to 64), so at 10x a
# few experiments on one cluster filled a changelog partition past it, and the next ones tested the
# refusal of truncated changelogs instead (seen on 2026-11-27); and each experiment should start
# from the same state anyway.
# Results: load/results/faults/.
#   LOADS        which loads (default "50 500")
#   EXPERIMENTS  which experiments (default: all, in the order below)
#   RUN_SECONDS  length of each experiment (default 40), fault at 10 s
# The new table goes on top of load/results/faults/README.md; what the file held before, from its
# first table on, is kept below it under "Earlier runs".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
run="$root/.run"
out="$root/load/results/faults"
mkdir -p "$run/logs" "$out"
LOADS=${LOADS:-50 500}
EXPERIMENTS=${EXPERIMENTS:-processor-empty-state processor-kill processor-rolling processor-handover gateway-rolling gateway-kill malformed-commands broker-down processor-kill-loop leader-move}
SECONDS_PER_RUN=${RUN_SECONDS:-40}

if [ -s "$run/endpoints" ]; then
  echo "a system is already running (.run/endpoints): stop it first; the suite starts its own for each experiment" >&2
  exit 1
fi
echo "building the fault suite (Release)..."
dotnet build load/faults/SlotCapacity.Faults.csproj -c Release -v quiet -nologo >"$run/logs/faults-build.log" 2>&1 \
  || { cat "$run/logs/faults-build.log"; exit 1; }
faults="$root/load/faults/bin/Release/net10.0/slot-faults.dll"

system_pid=""
stop_system() {
  if [ -n "$system_pid" ] && kill -0 "$system_pid" 2>/dev/null; then
    kill -TERM "$system_pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$system_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  system_pid=""
}
trap stop_system EXIT INT TERM

summary="$out/README.md"
# The previous results stay below the new table: everything from its first table on, appended once,
# when the suite ends or stops.
earlier=""
if [ -s "$summary" ]; then
  earlier=$(awk '/^\| experiment/ { keep = 1 } keep' "$summary")
  # A checkout's file times say nothing: the commit that last wrote it dates the runs, unless it was
  # changed since.
  earlier_from="as it was before this run"
  if git diff --quiet -- "$summary" 2>/dev/null && committed=$(TZ=UTC git log -1 --format=%cd --date=format-local:'%F %H:%M' -- "$summary" 2>/dev/null) && [ -n "$committed" ]; then
    earlier_from="as committed $committed UTC"
  fi
fi
keep_earlier() {
  [ -n "$earlier" ] || return 0
  printf '\n## Earlier runs (this file %s, kept by `make chaos`)\n\n%s\n' "$earlier_from" "$earlier" >>"$summary"
  earlier=""
}
trap 'stop_system; keep_earlier' EXIT
{
  echo "# Fault suite results"
  echo
  echo "\`make chaos\` on $(date -u +%F), $(nproc) cores, everything co-located (local cluster, 2 processors,"
  echo "2 gateways, the fault client). Each run: rate x ${SECONDS_PER_RUN} s reserves, the rate climbing from zero over the first 5 s, through both gateways by a"
  echo "client that retries like checkout (same reservation id on the other gateway; a new id once the"
  echo "engine says the old one was abandoned), the fault at 10 s, then an audit once abandons and views"
  echo "have settled. *Phantom bookings*: orders the engine holds beyond the accepts callers were told"
  echo "(negative: accepts it does not hold). *Recovery*: from the fault to the last attempt that got no"
  echo "definite answer. *Client lag*: how far the fault client itself fell behind its schedule (over 1 s, the"
  echo "run measured the saturated client and machine as well). Per-experiment details, CSV and plots are beside this file."
  echo
  echo "| experiment | rate/s | calls | definite answers | accepted | retried | lost | phantom bookings | oversold slots | recovery (s) | client lag (s) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
} >"$summary"

start_system() { # $1 = brokers of the local cluster
  echo "== starting the system ($1 broker(s)) for $rate reserves/s"
  LOCAL_CLUSTER_BROKERS=$1 bash compose/run-local.sh >"$run/logs/chaos-system.log" 2>&1 &
  system_pid=$!
  for _ in $(seq 1 1800); do grep -q "Ctrl-C stops everything" "$run/logs/chaos-system.log" && break; kill -0 "$system_pid" || break; sleep 0.1; done
  grep -q "Ctrl-C stops everything" "$run/logs/chaos-system.log" || { echo "the system did not start: see $run/logs/chaos-system.log"; exit 1; }
}
run_experiment() {
  echo "== $1 at $rate reserves/s"
  # Every process of the system up and both gateways ready before the next fault.
  sleep 10
  if dotnet "$faults" "$1" --rate "$rate" --seconds "$SECONDS_PER_RUN" --at 10 --out "$out" --run "$run" | tee "$run/logs/chaos-$1-$rate.log"; then :; else failed=1; fi
  grep -E "^\| $1 \|" "$run/logs/chaos-$1-$rate.log" >>"$summary" || echo "| $1 | $rate | did not finish: see .run/logs/chaos-$1-$rate.log |" >>"$summary"
}

failed=0
for rate in $LOADS; do
  for experiment in $EXPERIMENTS; do
    # Leaders can only move between brokers: that experiment gets a local cluster of 3.
    if [ "$experiment" = leader-move ]; then start_system 3; else start_system 1; fi
    run_experiment "$experiment"
    stop_system
  done
done
keep_earlier
echo
awk '/^## Earlier runs/ { exit } { print }' "$summary"
exit "$failed"
