#!/usr/bin/env bash
# `make bench`: every scenario against the system and its peers (Redis Lua, PostgreSQL conditional
# UPDATE), same arrival process, one after another, RUNS times in a row (default 3); run N goes to
# OUT/run-N/ (default OUT=load/results/bench) and the runs' table side by side to OUT/README.md.
# Needs the peers installed (`make bench-deps`). Each run starts its own system (so every run
# measures a fresh one) unless something already answers on 127.0.0.1:5101.
#   DURATION (default 30s), STEP (default 10s), WARMUP (default 5s), RUNS (default 3),
#   TARGETS (default system,redis,postgres,postgres-async), SCENARIO (default all)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
  || { echo "the peers are not installed: run \`make bench-deps\` (load/bench-deps.sh) first"; exit 1; }
RUNS=${RUNS:-3}
OUT=${OUT:-load/results/bench}
export SCENARIO=${SCENARIO:-all} DURATION=${DURATION:-30s} TARGETS=${TARGETS:-system,redis,postgres,postgres-async}
# The runs table reads every run-N under OUT: a longer earlier set must not mix with this one.
if compgen -G "$OUT/run-*" >/dev/null; then echo "bench: replacing the earlier runs in $OUT"; rm -rf "$OUT"/run-*; fi
failed=0
for n in $(seq 1 "$RUNS"); do
  echo "bench: run $n of $RUNS -> $OUT/run-$n ($(date -u +%H:%M:%S) UTC)"
  OUT="$OUT/run-$n" bash load/load.sh || { echo "bench: run $n failed (exit $?: an audit found a violation or a target could not run)"; failed=1; }
done
dotnet load/SlotCapacity.Load/bin/Release/net10.0/slot-load.dll runs --out "$OUT"
exit $failed
