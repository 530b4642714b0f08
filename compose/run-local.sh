#!/usr/bin/env bash
# `make run`: builds, then starts the local cluster (unless KAFKA_BOOTSTRAP_SERVERS names a real
# one), 2 processors and 2 gateways, applies the demo capacity plan and prints the endpoints.
# A processor or gateway that exits is started again (with backoff, keeping its state directory);
# the local cluster lives in memory, so if it exits everything stops. Ctrl-C stops every process
# it started. Logs go to .run/logs/, the pid of each running process to .run/pids/<name>.pid.
# Callers need tokens: a local signing key is generated once in .run/auth/ (never committed) and
# tokens for each role are written to .run/tokens/ (README "Security").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
run="$root/.run"
logs="$run/logs"
pidfiles="$run/pids"
mkdir -p "$logs"
rm -rf "$pidfiles" && mkdir -p "$pidfiles"
: >"$logs/supervisor.log"
GATEWAY_PORTS=(${GATEWAY_PORTS:-5101 5102})
PROCESSORS=${PROCESSORS:-2}
# One broker: the mock does not replicate, and every broker adds a fetch loop to every consumer
# (idle CPU halved, measured in load/README.md). LOCAL_CLUSTER_BROKERS=3 for leader moves.
LOCAL_CLUSTER_BROKERS=${LOCAL_CLUSTER_BROKERS:-1}

pids=()
# Where the processors keep their state when it lives in memory (below); empty: under .run/.
memory_state=""

# supervise NAME COMMAND...: compose/supervise.sh.
source "$root/compose/supervise.sh"

stop_all() {
  # A second Ctrl-C while stopping must not leave processes behind. Under `make run | tee log`
  # Ctrl-C has ended the reader of stdout too: no SIGPIPE, and the messages go to stderr.
  trap '' INT TERM PIPE
  trap - EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    echo >&2 || true
    echo "stopping ${#pids[@]} processes..." >&2 || true
    # Gateways and processors first (graceful: SIGTERM), the cluster last.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; sleep 0.2; done
    for pid in "${pids[@]}"; do
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    done
    # A supervised command that outlived its supervisor's grace period.
    for pidfile in "$pidfiles"/*.pid; do [ -e "$pidfile" ] && { kill -KILL "$(cat "$pidfile")" 2>/dev/null || true; }; done
  fi
  rm -f "$run/bootstrap" "$run/endpoints"
  rm -rf "$pidfiles" "$run/tokens"
  # In memory, the state goes with the cluster (and the links to it from .run/).
  [ -n "$memory_state" ] && rm -rf "$memory_state" "$run"/processor-*
  return 0
}
trap stop_all EXIT
trap "stop_all; exit 0" INT TERM

echo "building (Release)..."
for project in compose/LocalCluster/SlotCapacity.LocalCluster.csproj \
               processors/SlotCapacity.Processor/SlotCapacity.Processor.csproj \
               gateway/SlotCapacity.Gateway/SlotCapacity.Gateway.csproj \
               processors/SlotCapacity.Warehouse/SlotCapacity.Warehouse.csproj; do
  dotnet build "$project" -c Release -v quiet -nologo >"$logs/build.log" 2>&1 || { cat "$logs/build.log"; exit 1; }
done
# The gateways and processors run ReadyToRun-compiled (less to JIT at start and on the first calls):
# under 50 reserves/s a restarted gateway was ready in 2.2-3.1 s instead of 2.8-3.6, and a processor's
# restart is its partitions' whole outage (README, "Faults and recovery", twelfth and thirteenth
# sessions). Incremental: seconds when nothing changed, ~45 s each the first time.
publish_r2r() {
  dotnet publish "$1" -c Release --use-current-runtime --no-self-contained \
    -p:PublishReadyToRun=true -p:UseAppHost=false -o "$2" -v quiet -nologo >"$logs/build.log" 2>&1 || { cat "$logs/build.log"; exit 1; }
}
gateway_bin="$run/bin/gateway"
publish_r2r gateway/SlotCapacity.Gateway/SlotCapacity.Gateway.csproj "$gateway_bin"
processor_bin="$run/bin/processor"
publish_r2r processors/SlotCapacity.Processor/SlotCapacity.Processor.csproj "$processor_bin"
bin() { echo "$root/$1/bin/Release/net10.0/$2.dll"; }
gateway_cli() { dotnet "$(bin gateway/SlotCapacity.Gateway SlotCapacity.Gateway)" "$@"; }

# Gateways validate tokens with this key unless another key or an OpenID Connect authority is configured.
if [ -z "${GATEWAY_JWT_SIGNING_KEY_FILE:-}" ] && [ -z "${GATEWAY_JWT_AUTHORITY:-}" ]; then
  export GATEWAY_JWT_SIGNING_KEY_FILE="$run/auth/signing-key"
  if [ ! -s "$GATEWAY_JWT_SIGNING_KEY_FILE" ]; then
    (umask 077 && mkdir -p "$run/auth" && head -c 32 /dev/urandom | base64 >"$GATEWAY_JWT_SIGNING_KEY_FILE")
    echo "generated a local token signing key: .run/auth/signing-key"
  fi
fi
rm -rf "$run/tokens"
if [ -n "${GATEWAY_JWT_SIGNING_KEY_FILE:-}" ]; then
  (umask 077 && mkdir -p "$run/tokens")
  for role in checkout planner viewer; do
    (umask 077 && gateway_cli token --role "$role" --subject "local-$role" --ttl 12h >"$run/tokens/$role")
  done
fi

if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  echo "using Kafka at $KAFKA_BOOTSTRAP_SERVERS"
  dotnet "$(bin compose/LocalCluster SlotCapacity.LocalCluster)" provision --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" >"$logs/provision.log"
else
  rm -f "$run/bootstrap"
  # The local cluster starts empty every time; state left by an earlier run would not match it.
  rm -rf "$run"/processor-* "$run"/gateway-* "$run"/warehouse.duckdb*
  # The cluster lives in memory, so the processors' state need not outlive it either: it goes to
  # tmpfs when there is one (.run/processor-N links there), where opening a task's RocksDB store
  # and flushing it for a checkpoint wait for no disk sync (README "Faults and recovery", tenth
  # session). One directory per checkout, removed when the system stops or starts again.
  if [ -z "${PROCESSOR_STATE_ON_DISK:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    memory_state="/dev/shm/slot-capacity-$(printf %s "$root" | md5sum | cut -c1-12)"
    rm -rf "$memory_state"
  fi
  # The mock with fetches that do not walk every batch of a partition (compose/LocalCluster/mock/);
  # LOCAL_CLUSTER_LIBRDKAFKA=stock keeps Confluent.Kafka's own, for comparison.
  mock_library=${LOCAL_CLUSTER_LIBRDKAFKA:-}
  if [ "$mock_library" = stock ]; then
    mock_library=""
  elif [ -z "$mock_library" ]; then
    mock_library=$(bash compose/LocalCluster/mock/build.sh) || { echo "the local cluster's librdkafka did not build (above); LOCAL_CLUSTER_LIBRDKAFKA=stock runs the stock mock"; exit 1; }
  fi
  if [ -n "$mock_library" ]; then
    # This mock answers a waiting fetch as soon as data arrives, like a real broker: a longer wait
    # only saves idle fetches. The stock mock always waits it out, hence the 5 ms defaults.
    export PROCESSOR_FETCH_WAIT_MS=${PROCESSOR_FETCH_WAIT_MS:-100}
    export GATEWAY_REPLY_FETCH_WAIT_MS=${GATEWAY_REPLY_FETCH_WAIT_MS:-100}
    export GATEWAY_VIEW_FETCH_WAIT_MS=${GATEWAY_VIEW_FETCH_WAIT_MS:-100}
  fi
  LOCAL_CLUSTER_LIBRDKAFKA="$mock_library" dotnet "$(bin compose/LocalCluster SlotCapacity.LocalCluster)" --brokers "$LOCAL_CLUSTER_BROKERS" --bootstrap-file "$run/bootstrap" --control-file "$run/cluster-control" --retain-seconds "${LOCAL_CLUSTER_RETAIN_SECONDS:-60}" ${LOCAL_CLUSTER_DEBUG:+--debug "$LOCAL_CLUSTER_DEBUG"} >"$logs/local-cluster.log" 2>&1 &
  pids+=($!)
  cluster=$!
  echo "$cluster" >"$pidfiles/local-cluster.pid"
  for _ in $(seq 1 300); do [ -s "$run/bootstrap" ] && break; kill -0 "${pids[0]}" 2>/dev/null || { cat "$logs/local-cluster.log"; exit 1; }; sleep 0.1; done
  [ -s "$run/bootstrap" ] || { echo "the local cluster did not start: see $logs/local-cluster.log"; exit 1; }
  export KAFKA_BOOTSTRAP_SERVERS=$(cat "$run/bootstrap")
  # Static members (KIP-345, mock.patch change 7): a crashed or restarted processor takes its own
  # partitions back without a rebalance, so the other never stops serving; the session (6 s, real
  # Kafka's group.min.session.timeout.ms by default) must outlast a restart. Under SIGKILL at 50/s its
  # partitions were back in 2.1-3.4 s against 2.7-3.9 s for dynamic members with a 1.5 s session
  # (README, "Faults and recovery", thirteenth session). PROCESSOR_STATIC_MEMBERSHIP=false goes back to
  # those: the local cluster enforces no minimum session timeout, so a crashed dynamic member's
  # partitions move 1.5 s after it stopped heartbeating (1 s was no better).
  export PROCESSOR_STATIC_MEMBERSHIP=${PROCESSOR_STATIC_MEMBERSHIP:-true}
  if [ "$PROCESSOR_STATIC_MEMBERSHIP" = true ]; then
    export PROCESSOR_SESSION_TIMEOUT_MS=${PROCESSOR_SESSION_TIMEOUT_MS:-6000}
  else
    export PROCESSOR_SESSION_TIMEOUT_MS=${PROCESSOR_SESSION_TIMEOUT_MS:-1500}
  fi
  # A member learns of a rebalance from its next heartbeat, and the rebalance waits for it: a survivor
  # heartbeating every 375 ms (a quarter of the session) joins later than one at 100 ms, and with the
  # stock mock (LOCAL_CLUSTER_LIBRDKAFKA=stock), which closes the join window after the session less
  # 1 s (0.5 s), it could miss it and cost another rebalance ("Faults and recovery", eighth session).
  export PROCESSOR_HEARTBEAT_INTERVAL_MS=${PROCESSOR_HEARTBEAT_INTERVAL_MS:-100}
  echo "local cluster (librdkafka mock, $LOCAL_CLUSTER_BROKERS broker(s), in memory) at $KAFKA_BOOTSTRAP_SERVERS"
fi

# A warm spare beside each static processor (PROCESSOR_STANDBY=false: none): started, its topics read
# and its topology rehearsed, it takes the processor's place the moment that one exits, so a crash
# costs a join and a restore instead of a process start (seconds on a busy machine).
processor_standby=""
if [ "${PROCESSOR_STATIC_MEMBERSHIP:-false}" = true ] && [ "${PROCESSOR_STANDBY:-true}" = true ]; then processor_standby=PROCESSOR_STANDBY_FOR; fi
for n in $(seq 1 "$PROCESSORS"); do
  if [ -n "$memory_state" ]; then
    mkdir -p "$memory_state/processor-$n" && ln -sfn "$memory_state/processor-$n" "$run/processor-$n"
  else
    mkdir -p "$run/processor-$n"
  fi
  # The state directory outlives restarts: a restarted processor restores from its checkpoint.
  # The ready file holds the processor's pid while it serves (a rolling restart waits for it).
  PROCESSOR_STATE_DIR="$run/processor-$n" PROCESSOR_INSTANCE="processor-$n" PROCESSOR_READY_FILE="$pidfiles/processor-$n.ready" \
    HANDOVER_VARIABLE=PROCESSOR_TAKE_OVER_FROM STANDBY_VARIABLE=$processor_standby STANDBY_READY_FILE="$pidfiles/processor-$n.ready.standby" supervise "processor-$n" dotnet "$processor_bin/SlotCapacity.Processor.dll"
  echo "processor-$n started (supervised${processor_standby:+, with a standby}, log .run/logs/processor-$n.log)"
done

# The warehouse loader: slot-events into .run/warehouse.duckdb, exactly once by event id.
WAREHOUSE_DB="$run/warehouse.duckdb" WAREHOUSE_BATCH_WINDOW_MS=${WAREHOUSE_BATCH_WINDOW_MS:-5000} supervise warehouse dotnet "$(bin processors/SlotCapacity.Warehouse SlotCapacity.Warehouse)"
echo "warehouse loader started (supervised, log .run/logs/warehouse.log, database .run/warehouse.duckdb)"

endpoints=()
for i in "${!GATEWAY_PORTS[@]}"; do
  port=${GATEWAY_PORTS[$i]}
  # A fixed share of the reply partitions (no reply-group rebalance when the other gateway restarts),
  # and a view checkpoint that outlives restarts (a restarted gateway reads only what is newer).
  mkdir -p "$run/gateway-$((i + 1))"
  GATEWAY_INSTANCE="gateway-$((i + 1))" GATEWAY_ORDINAL=$i GATEWAY_COUNT=${#GATEWAY_PORTS[@]} \
    GATEWAY_VIEW_CHECKPOINT="$run/gateway-$((i + 1))/availability-view" \
    supervise "gateway-$((i + 1))" dotnet "$gateway_bin/SlotCapacity.Gateway.dll" --urls "http://127.0.0.1:$port"
  endpoints+=("http://127.0.0.1:$port")
  echo "gateway-$((i + 1)) started (supervised, log .run/logs/gateway-$((i + 1)).log)"
done

# The stable entry point for the printed examples: works from any directory.
cli="$root/slot"
echo "waiting for the gateways to be ready..."
for endpoint in "${endpoints[@]}"; do
  ready=""
  for _ in $(seq 1 600); do
    admin="http://127.0.0.1:$((${endpoint##*:} + 1000))"
    if curl -sf "$admin/health" >/dev/null 2>&1; then ready=yes; break; fi
    if [ -n "${cluster:-}" ] && ! kill -0 "$cluster" 2>/dev/null; then echo "the local cluster exited during start-up: see $logs/local-cluster.log"; exit 1; fi
    sleep 0.1
  done
  [ -n "$ready" ] || { echo "$endpoint did not become ready in 60 s: see $logs"; exit 1; }
done
printf '%s\n' "${endpoints[@]}" > "$run/endpoints"

# The demo plan is the sample plan's shape (5 hubs x 14 days x 7 slots) from tomorrow on, so its
# cut-offs are always ahead; gateway/plans/sample-plan.csv is the same for fixed dates.
from=$(date -u -d tomorrow +%F)
echo "applying the demo capacity plan (5 hubs x 14 days x 7 slots from $from)..."
# A plan that does not fully apply leaves the system running: the planner can apply it again.
planner_token=$(cat "$run/tokens/planner" 2>/dev/null || echo "${SLOT_PLANNER_TOKEN:-}")
gateway_cli plan sample --from "$from" --days 14 | gateway_cli plan apply - --gateway "${endpoints[0]}" --token "$planner_token" | tail -3 \
  || echo "warning: the demo plan did not fully apply; run: $cli plan apply gateway/plans/sample-plan.csv --gateway ${endpoints[0]} --token \"\$(cat .run/tokens/planner)\""

cat <<EOT

Slot capacity service is running.
  gRPC (h2c, token needed):   ${endpoints[*]}
  health, metrics (HTTP/1.1): http://127.0.0.1:$((GATEWAY_PORTS[0] + 1000))/health   http://127.0.0.1:$((GATEWAY_PORTS[0] + 1000))/metrics
  planners' console:          http://127.0.0.1:$((GATEWAY_PORTS[0] + 1000))/console#token=$(cat "$run/tokens/planner")
                              (every gateway serves it on its admin port; the token after # stays in the browser)
  logs:                       .run/logs/   (restarts: .run/logs/supervisor.log)
  pids:                       .run/pids/   (kill -9 \$(cat .run/pids/processor-1.pid): it is started again)
  tokens (12 h, signed with .run/auth/signing-key): .run/tokens/checkout, .run/tokens/planner, .run/tokens/viewer
    more: GATEWAY_JWT_SIGNING_KEY_FILE=.run/auth/signing-key $cli token --role planner --subject alice --ttl 8h
Example calls (from another terminal; --token TOKEN, or export SLOT_TOKEN=...):
  $cli reserve --gateway ${endpoints[0]} --token "\$(cat .run/tokens/checkout)" --hub LON1 --start ${from}T10:00Z --zone north --items 12 --hold 600
  $cli availability --gateway ${endpoints[0]} --token "\$(cat .run/tokens/checkout)" --hub LON1 --from $from --days 1 --zone north --items 12
  $cli plan utilisation --gateway ${endpoints[0]} --token "\$(cat .run/tokens/viewer)" --hub LON1 --from $from --days 3
  KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS $cli replay --hub LON1 --at $(date -u +%FT%TZ) --from $from --days 3   (as it was now)
  dotnet $(realpath --relative-to="$root" "$(bin processors/SlotCapacity.Warehouse SlotCapacity.Warehouse)") query --db .run/warehouse.duckdb "SELECT kind, COUNT(*) FROM slot_events GROUP BY kind"
  grpcurl -plaintext -H "authorization: Bearer \$(cat .run/tokens/viewer)" ${endpoints[0]#http://} list
  make load SCENARIO=tenx DURATION=60s
Ctrl-C stops everything.
EOT

# Runs until Ctrl-C. Supervisors restart processors and gateways; the in-memory cluster cannot be.
while true; do
  if [ -n "${cluster:-}" ] && ! kill -0 "$cluster" 2>/dev/null; then
    echo "the local cluster exited (its data was in memory): stopping everything; see $logs/local-cluster.log"
    exit 1
  fi
  sleep 1
done
