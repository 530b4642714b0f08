# Sourced by compose/run-local.sh (and its tests): the supervisor of `make run`'s processes.
# Needs bash 5.1 or later (`wait -n -p`) and, from its caller, $logs and $pidfiles (directories) and
# a pids array, to which each supervisor's pid is added.

# supervise NAME COMMAND...: runs COMMAND (log .run/logs/NAME.log, pid .run/pids/NAME.pid) and starts
# it again whenever it exits, at once, then after 0.2 s, doubling up to 30 s while it keeps failing
# within a minute.
# A TERM or INT to the supervisor stops the command gracefully and ends the supervision. With
# HANDOVER_VARIABLE set (the processors: PROCESSOR_TAKE_OVER_FROM), a USR1 to the supervisor (its pid
# is in .run/pids/NAME.supervisor.pid) starts a successor with that variable naming the running
# command's pid; the successor stops its predecessor once it is ready to take over, and is supervised
# from then on: a rolling restart that starts the new process before it stops the old one.
# With STANDBY_VARIABLE set (the processors: PROCESSOR_STANDBY_FOR), a second process runs beside the
# command with that variable naming its pid (.run/pids/NAME.standby.pid): a warm spare that takes the
# command's place the moment it exits, instead of a cold start. It is started STANDBY_DELAY seconds
# (default 10) after the command, so that its own start does not take the cores from the command's.
# With STANDBY_READY_FILE set (the processors: the ready file's path + .standby), a standby that holds
# its pid in that file is warm, and a USR1 hands over to it: the command is stopped (TERM) and the
# standby takes its place as it exits; the new process was started before the old one stopped, and
# is warm already. Without a warm standby, a USR1 starts a successor as above.
supervise() {
  local name=$1
  shift
  local handover_variable=${HANDOVER_VARIABLE:-}
  local standby_variable=${STANDBY_VARIABLE:-}
  local standby_delay=${STANDBY_DELAY:-10}
  local standby_ready_file=${STANDBY_READY_FILE:-}
  : >"$logs/$name.log"
  (
    child=""
    successor=""
    standby=""
    standby_timer=""
    stopping=""
    handover=""
    standby_failures=0
    trap 'stopping=yes; for p in $child $successor $standby $standby_timer; do kill -TERM "$p" 2>/dev/null; done' TERM INT
    # Without a handover variable a USR1 is ignored (its default would end the supervision).
    if [ -n "$handover_variable" ]; then trap 'handover=yes' USR1; else trap ':' USR1; fi
    echo "$BASHPID" >"$pidfiles/$name.supervisor.pid"
    note() { echo "$(date -u +%FT%TZ) $name$*" | tee -a "$logs/supervisor.log"; }
    # A spare that keeps failing is given up after three tries: the command itself still runs.
    start_standby() {
      standby_timer=""
      [ -n "$standby_variable" ] && [ -z "$standby" ] && [ -z "$successor" ] && [ -z "$stopping" ] && [ "$standby_failures" -lt 3 ] || return 0
      env "$standby_variable=$child" "$@" >>"$logs/$name.log" 2>&1 &
      standby=$!
      echo "$standby" >"$pidfiles/$name.standby.pid"
      note ": pid $standby stands by for pid $child"
    }
    # Sets exited and status for the first of the given pids to end. One that ended while the
    # supervisor was busy (a successor stops its predecessor within milliseconds) may already be
    # reaped and dropped from the job table, which `wait -n` then skips ("no such job") and waits
    # for the others instead: the supervisor hung until its successor exited. `wait PID` still has
    # its status.
    wait_any() {
      exited=""
      status=0
      local pid
      for pid in "$@"; do
        if ! kill -0 "$pid" 2>/dev/null; then
          exited=$pid
          wait "$pid" 2>/dev/null || status=$?
          return 0
        fi
      done
      wait -n -p exited "$@" || status=$?
    }
    stop_standby() {
      [ -n "$standby" ] || return 0
      kill -TERM "$standby" 2>/dev/null || true
      wait "$standby" 2>/dev/null || true
      note ": standby pid $standby stopped"
      standby=""
      rm -f "$pidfiles/$name.standby.pid"
    }
    # At once the first time (a crashed static processor's partitions wait for it), then 0.2 s,
    # doubling to 30 s while it keeps failing within a minute.
    delay_ms=0
    while [ -z "$stopping" ]; do
      started=$(date +%s)
      if [ -n "$successor" ]; then
        child=$successor
        successor=""
      else
        "$@" >>"$logs/$name.log" 2>&1 &
        child=$!
      fi
      echo "$child" >"$pidfiles/$name.pid"
      if [ -n "$standby_variable" ] && [ -z "$standby" ]; then
        sleep "$standby_delay" &
        standby_timer=$!
      fi
      # Until the command exits: a trapped signal ends `wait` early (and leaves exited unset).
      code=0
      while :; do
        wait_any $child $successor $standby $standby_timer
        if [ "${exited:-}" = "$child" ]; then
          code=$status
          break
        elif [ -n "${exited:-}" ] && [ "${exited:-}" = "$standby_timer" ]; then
          start_standby "$@"
        elif [ -n "${exited:-}" ] && [ "${exited:-}" = "$successor" ]; then
          note ": successor pid $successor exited with code $status before it took over; pid $child keeps running"
          successor=""
        elif [ -n "${exited:-}" ] && [ "${exited:-}" = "$standby" ]; then
          standby=""
          rm -f "$pidfiles/$name.standby.pid"
          if [ -z "$stopping" ]; then
            standby_failures=$((standby_failures + 1))
            note ": standby pid $exited exited with code $status while pid $child runs"
            start_standby "$@"
          fi
        fi
        if [ -n "$handover" ] && [ -z "$successor" ] && [ -z "$stopping" ]; then
          if [ -n "$standby" ] && [ -n "$standby_ready_file" ] && [ "$(cat "$standby_ready_file" 2>/dev/null)" = "$standby" ]; then
            note " (pid $child) hands over to warm standby pid $standby: stopping it"
            kill -TERM "$child" 2>/dev/null || true
          else
            # The spare would take over too when the successor stops its predecessor.
            stop_standby
            env "$handover_variable=$child" "$@" >>"$logs/$name.log" 2>&1 &
            successor=$!
            note " (pid $child) is being replaced by pid $successor, which stops it once it is ready to take over"
          fi
        fi
        handover=""
      done
      if [ -n "$standby_timer" ]; then
        kill "$standby_timer" 2>/dev/null || true
        wait "$standby_timer" 2>/dev/null || true
        standby_timer=""
      fi
      if [ -n "$stopping" ]; then
        [ -n "$standby" ] && { wait "$standby" 2>/dev/null || true; }
        break
      fi
      if [ -n "$successor" ] && kill -0 "$successor" 2>/dev/null; then
        note " (pid $child) exited with code $code; pid $successor took over"
        continue
      fi
      successor=""
      if [ -n "$standby" ] && kill -0 "$standby" 2>/dev/null; then
        note " (pid $child) exited with code $code; standby pid $standby takes over"
        successor=$standby
        standby=""
        standby_failures=0
        rm -f "$pidfiles/$name.standby.pid"
        continue
      fi
      ran=$(($(date +%s) - started))
      [ "$ran" -ge 60 ] && delay_ms=0
      delay=$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))
      note " (pid $child) exited with code $code after ${ran}s; starting it again in ${delay}s"
      if [ "$delay_ms" -gt 0 ]; then
        sleep "$delay" &
        wait $! || true
      fi
      delay_ms=$((delay_ms == 0 ? 200 : delay_ms * 2 > 30000 ? 30000 : delay_ms * 2))
    done
    if [ -n "$successor" ]; then wait "$successor" 2>/dev/null || true; fi
    rm -f "$pidfiles/$name.pid" "$pidfiles/$name.supervisor.pid" "$pidfiles/$name.standby.pid"
  ) &
  pids+=($!)
}
