#!/usr/bin/env bash
# Runs every fuzz target (built by `make fuzz-build`) for SECONDS each.
#   fuzz/run.sh SECONDS          what `make fuzz` runs: new inputs are kept
#                                in fuzz/corpus/<target> (not committed)
#   fuzz/run.sh --smoke SECONDS  what `make test` runs: from the checked-in
#                                seeds only, into a throwaway corpus
# A crash (a panic, a failed invariant, a timeout, a leak of memory past
# 2 GiB) is written to fuzz/artifacts/<target>/ and fails the run; turn it
# into a unit test (docs/testing.md#fuzzing). Ends with one summary line in
# cargo's format, which CI adds to its count.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false
if [ "${1:-}" = "--smoke" ]; then
  smoke=true
  shift
fi
seconds=${1:?usage: fuzz/run.sh [--smoke] SECONDS}
host=$(rustc -vV | sed -n 's/^host: //p')
bin=fuzz/target/$host/release
targets=(config policy request answers cache_entry bridge feed condition regex service template faults)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

passed=0
failed=0
for t in "${targets[@]}"; do
  if $smoke; then
    corpus=$scratch/$t
  else
    corpus=fuzz/corpus/$t
  fi
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  log=$scratch/$t.log
  if "$bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 \
      "$corpus" "fuzz/seeds/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "fuzz $t: ${runs:-?} inputs in ${seconds} s, ${cov:-cov: ?}, no crash"
    passed=$((passed + 1))
  else
    echo "fuzz $t: FAILED; the input is in fuzz/artifacts/$t/:"
    grep -v '^#\|^INFO\|^stat::' "$log" | tail -30
    failed=$((failed + 1))
  fi
done
result=ok
[ "$failed" = 0 ] || result=FAILED
echo "test result: $result. $passed passed; $failed failed; 0 ignored; 0 measured; 0 filtered out (fuzz targets, ${seconds} s each)"
[ "$failed" = 0 ]
