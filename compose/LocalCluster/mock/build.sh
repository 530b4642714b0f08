#!/usr/bin/env bash
# Builds the librdkafka that `make run`'s local cluster hosts its mock brokers in: librdkafka 2.15.1
# from the npm registry (its source ships in @confluentinc/kafka-javascript 1.10.1, checked against a
# pinned SHA-256), with mock.patch applied: a fetch finds its offset from the nearer end of the
# partition (the stock mock walked every batch from the oldest: 82 % of the local cluster's CPU at
# 10x), a delayed empty fetch is answered as soon as one of its partitions gets data (the stock
# mock always waited fetch.wait.max.ms), a fetch gets every whole batch that fits its byte limits
# (the stock mock sent one batch per partition), and a partition keeps LOCAL_CLUSTER_PARTITION_MAX_MB
# (64 MiB by default, read when the cluster starts) instead of 5 MiB, a commit is accepted while a
# group prepares a rebalance, and a rebalance ends once every member has rejoined (and a member expires
# at its session timeout), a restarted static member gets its partitions back without a rebalance,
# and a waiting fetch is answered with the data that woke it and waits for its fetch.min.bytes.
# Only the local cluster host loads this library
# (LOCAL_CLUSTER_LIBRDKAFKA); the processors, gateways and tests use Confluent.Kafka's own.
# Prints the path of the built library; builds once, then reuses it (about a minute on 2 cores).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version=2.15.1
package=kafka-javascript-1.10.1.tgz
sha256=ada7d703bb1d3237e2292bfabf438d663b6160c9f1ac2a2406b5dc4257c81b66
url="https://registry.npmjs.org/@confluentinc/kafka-javascript/-/$package"
patch_sum=$(sha256sum "$here/mock.patch" | cut -c1-16)
out="$(cd "$here/.." && pwd)/bin/mock/librdkafka-$version-$patch_sum.so"
if [ -s "$out" ]; then echo "$out"; exit 0; fi

missing=()
for tool in cc make python3 curl patch; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing build tools for the local cluster's librdkafka (missing: ${missing[*]})" >&2
    apt-get update -qq >&2 && apt-get install -y -qq build-essential python3 curl patch >&2
  else
    echo "cannot build the local cluster's librdkafka: missing ${missing[*]} (Debian: apt-get install build-essential python3 curl patch)" >&2
    exit 1
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Every failure ends with one line naming the step, so a test or CI log that shows only the last
# line still says what went wrong.
fail() { echo "build.sh: $1" >&2; exit 1; }
echo "building the local cluster's librdkafka $version with $(basename "$here")/mock.patch (once, about a minute)" >&2
# The verified package is kept in the user's cache, so clean clones on one machine download it once.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/slot-capacity"
archive="$cache/$package"
if ! echo "$sha256  $archive" | sha256sum -c --quiet - >/dev/null 2>&1; then
  curl -fsSL --retry 5 --retry-all-errors --retry-delay 3 --connect-timeout 30 --max-time 600 -o "$work/$package" "$url" \
    || fail "downloading $url failed (curl exit $?)"
  echo "$sha256  $work/$package" | sha256sum -c --quiet - >&2 || fail "$url does not have the pinned SHA-256 $sha256"
  archive="$work/$package"
  if mkdir -p "$cache" 2>/dev/null && cp "$archive" "$cache/$package.$$" 2>/dev/null; then mv "$cache/$package.$$" "$cache/$package"; fi
fi
tar -xzf "$archive" -C "$work" package/deps/librdkafka || fail "unpacking $archive failed"
src="$work/package/deps/librdkafka"
patch -s -p1 -d "$src" <"$here/mock.patch" >&2 || fail "mock.patch does not apply to librdkafka $version"
# The mock needs none of the optional dependencies; leaving them out keeps the build to cc and make.
(cd "$src" && ./configure --no-download --disable-zlib --disable-zstd --disable-ssl --disable-gssapi \
  --disable-curl --disable-lz4-ext --disable-regex-ext --disable-syslog >"$work/configure.log" 2>&1) \
  || { tail -20 "$work/configure.log" >&2; fail "librdkafka's configure failed (its log's tail is above)"; }
make -s -j"$(nproc)" -C "$src/src" librdkafka.so >"$work/make.log" 2>&1 \
  || { grep -E "error|Error" "$work/make.log" | head -20 >&2; tail -10 "$work/make.log" >&2; fail "compiling librdkafka failed (its errors are above)"; }
mkdir -p "$(dirname "$out")"
# A build running at the same time writes its own temporary file; the rename makes either one win whole.
cp "$src/src/librdkafka.so.1" "$out.$$" && mv "$out.$$" "$out" || fail "cannot write $out"
echo "$out"
