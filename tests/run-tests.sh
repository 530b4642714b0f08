#!/usr/bin/env bash
# Builds the solution and runs every test project, then prints one plain closing line
# "N passed, N failed, N skipped" summed over all test assemblies.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run
log=.run/test.log
: > "$log"

# The console's browser tests drive Debian's Chromium through its chromedriver (no browser download).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver for the console's browser tests..."
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo -n"; fi
  if ! { $sudo_cmd apt-get update -qq && $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >>"$log" 2>&1; then
    echo "could not install chromium and chromium-driver (see $log): the console's browser tests will fail"
  fi
fi

echo "building (Release)..."
dotnet build Streams.sln -c Release >>"$log" 2>&1
build=$?
grep -E ": error |Build succeeded|Time Elapsed" "$log" | sort -u | head -40
if [ "$build" -ne 0 ]; then
  echo "build failed: see $log"
  echo "0 passed, 1 failed"
  exit 1
fi

# Test assemblies run one after another: several of them start processes and clusters, and two
# cores shared by parallel suites would turn their waits into flakiness.
rm -rf .run/TestResults
dotnet test Streams.sln -c Release --no-build -m:1 --results-directory .run/TestResults \
  --logger "trx" --logger "console;verbosity=normal" 2>&1 | tee -a "$log" \
  | grep -E "^\s*(Passed|Failed|Skipped) |\[test-broker\]|Total tests|error" || true
status=${PIPESTATUS[0]}

# Each test assembly writes one .trx file; add up their counters.
read -r passed failed skipped < <(cat .run/TestResults/*.trx 2>/dev/null | grep -o '<Counters [^>]*>' | awk '
  { for (i = 1; i <= NF; i++) { split($i, kv, "=\""); v = kv[2]; sub(/".*/, "", v);
      if (kv[1] == "passed") p += v; if (kv[1] == "failed") f += v; if (kv[1] == "notExecuted") s += v;
      if (kv[1] == "error" || kv[1] == "timeout" || kv[1] == "aborted") f += v } }
  END { printf "%d %d %d\n", p, f, s }')
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # A test host that crashed reports no failed test; count it as a failure.
  echo "dotnet test exited with $status: see $log"
  failed=1
fi
# Whoever reads only the end of this output (CI shows its tail) still sees what failed and why.
if [ "$failed" -gt 0 ]; then
  tests/failed-tests.sh .run/TestResults/*.trx
fi
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
