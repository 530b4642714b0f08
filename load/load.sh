#!/usr/bin/env bash
# `make load SCENARIO=tenx DURATION=60s`: runs one scenario (or `all`) of the load harness against
# the system that `make run` started; when nothing answers on 127.0.0.1:5101 it starts the system
# itself with compose/run-local.sh for the length of the run, and stops it afterwards.
#   SCENARIO  nominal | tenx | breaking-point | hot-slot | hot-slot-breaking-point | checkout | checkout-hot-slot | all   (default tenx)
#   DURATION  measured time of a fixed-rate scenario (default 60s); STEP: ramp step (default 10s)
#   WARMUP    excluded warm-up (default 5s); TARGETS: system,redis,postgres (default system)
#   MAX_MULTIPLIER  highest ramp step in multiples of nominal (default 100)
#   GATEWAY_PORTS   the system's gateway ports, as for run-local.sh (default "5101 5102"): another
#                   checkout's system may hold the default ones on a shared machine
# Results go to load/results/<scenario>/ and load/results/README.md. Exit code 1 = an audit failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
run="$root/.run"
mkdir -p "$run/logs"

SCENARIO=${SCENARIO:-tenx}
DURATION=${DURATION:-60s}
STEP=${STEP:-10s}
WARMUP=${WARMUP:-5s}
TARGETS=${TARGETS:-system}
MAX_MULTIPLIER=${MAX_MULTIPLIER:-100}
OUT=${OUT:-load/results}

echo "building the load harness (Release)..."
dotnet build load/SlotCapacity.Load/SlotCapacity.Load.csproj -c Release -v quiet -nologo >"$run/logs/load-build.log" 2>&1 \
  || { cat "$run/logs/load-build.log"; exit 1; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
export GATEWAY_PORTS=${GATEWAY_PORTS:-5101 5102}
first_port=${GATEWAY_PORTS%% *}

system_pid=""
stop_system() {
  if [ -n "$system_pid" ] && kill -0 "$system_pid" 2>/dev/null; then
    echo "stopping the system this run started (pid $system_pid)..."
    kill -TERM "$system_pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$system_pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
trap stop_system EXIT INT TERM

if [[ ",$TARGETS," == *",system,"* ]]; then
  if answers "$first_port"; then
    echo "using the system already answering on 127.0.0.1:$first_port"
  else
    echo "nothing answers on 127.0.0.1:$first_port: starting the system with compose/run-local.sh (log .run/logs/load-run-local.log)"
    rm -f "$run/endpoints"
    bash compose/run-local.sh >"$run/logs/load-run-local.log" 2>&1 &
    system_pid=$!
    # Ready once run-local.sh has applied its demo plan and printed its banner.
    for _ in $(seq 1 1800); do
      [ -s "$run/endpoints" ] && grep -q "Slot capacity service is running" "$run/logs/load-run-local.log" && break
      if ! kill -0 "$system_pid" 2>/dev/null; then
        # run-local.sh is stopping its processes itself: let it finish rather than interrupt it.
        wait "$system_pid" || true
        system_pid=""
        echo "the system did not start:"; tail -20 "$run/logs/load-run-local.log"; exit 1
      fi
      sleep 0.1
    done
    grep -q "Slot capacity service is running" "$run/logs/load-run-local.log" \
      || { echo "the system did not become ready in 180 s: see .run/logs/"; exit 1; }
  fi
  if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ] && [ -s "$run/bootstrap" ]; then
    export KAFKA_BOOTSTRAP_SERVERS=$(cat "$run/bootstrap")
  fi
  [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ] || echo "warning: KAFKA_BOOTSTRAP_SERVERS unknown: the audit cannot read the topics and will fail"
  if [ -z "${LOAD_GATEWAYS:-}" ]; then
    if [ -s "$run/endpoints" ]; then
      export LOAD_GATEWAYS=$(paste -sd, "$run/endpoints")
    else
      export LOAD_GATEWAYS=$(for p in $GATEWAY_PORTS; do printf 'http://127.0.0.1:%s\n' "$p"; done | paste -sd,)
    fi
  fi
fi

set +e
dotnet load/SlotCapacity.Load/bin/Release/net10.0/slot-load.dll run --scenario "$SCENARIO" --targets "$TARGETS" \
  --duration "$DURATION" --step "$STEP" --warmup "$WARMUP" --max-multiplier "$MAX_MULTIPLIER" --out "$OUT"
status=$?
set -e
exit $status
