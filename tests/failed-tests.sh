#!/usr/bin/env bash
# Lists the failed tests of the given .trx files, one line each with the first line of the failure
# message: `FAILED <test>: <message>`.
awk '
  function text(s) {
    gsub(/&quot;/, "\"", s); gsub(/&apos;/, "'\''", s); gsub(/&lt;/, "<", s); gsub(/&gt;/, ">", s); gsub(/&amp;/, "\\&", s)
    return s
  }
  /<UnitTestResult / {
    name = ""; failed = ($0 ~ /outcome="Failed"/)
    if (match($0, /testName="[^"]*"/)) name = text(substr($0, RSTART + 10, RLENGTH - 11))
  }
  failed && /<Message>/ {
    message = $0; sub(/.*<Message>/, "", message); sub(/<\/Message>.*/, "", message)
    printf "FAILED %s: %s\n", name, substr(text(message), 1, 400)
    failed = 0
  }
' "$@"
