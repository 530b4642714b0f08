#!/usr/bin/env bash
# `make bench`: every scenario against the system and its peers (Redis Lua, PostgreSQL conditional
# UPDATE), same arrival process, one after another; results in load/results/. Needs the peers
# installed (`make bench-deps`). Starts the system itself when nothing answers on 127.0.0.1:5101.
#   DURATION (default 30s), STEP (default 10s), WARMUP (default 5s),
#   TARGETS (default system,redis,postgres,postgres-async)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
  || { echo "the peers are not installed: run \`make bench-deps\` (load/bench-deps.sh) first"; exit 1; }
SCENARIO=${SCENARIO:-all} DURATION=${DURATION:-30s} TARGETS=${TARGETS:-system,redis,postgres,postgres-async} exec bash load/load.sh
