#!/usr/bin/env bash
# make bench: build what the benchmark needs, then run bench/bench.py
# (see docs/performance.md). Everything listens on 127.0.0.1; every process
# started here is killed on exit. Settings: see the top of bench/bench.py.
set -euo pipefail

cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO=sudo
fi

PIDFILE=$(mktemp)
export BENCH_PIDFILE=$PIDFILE

cleanup() {
  local pid
  while read -r pid; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
    fi
  done <"$PIDFILE"
  rm -f "$PIDFILE"
}
trap cleanup EXIT

start=$(date +%s)
# The 10-minute budget counts from the start of `make bench` (its `setup`
# prerequisite included) when make is what started this script.
parent_age=0
if [ "$(ps -o comm= -p "$PPID" 2>/dev/null)" = make ]; then
  parent_age=$(ps -o etimes= -p "$PPID" | tr -d ' ')
fi
export BENCH_STARTED=$((start - parent_age))

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq wrk >/dev/null
fi
if ! command -v taskset >/dev/null; then
  echo "bench: taskset (util-linux) not found: processes will not be pinned" >&2
fi
if [ ! -x "$VENV/bin/envoy" ]; then
  echo "bench: $VENV/bin/envoy not found: run make setup first" >&2
  exit 1
fi
if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  echo "bench: installing matplotlib into $VENV (for the chart)"
  "$VENV/bin/pip" install -q matplotlib || echo "bench: no matplotlib: no chart" >&2
fi

echo "bench: building the filter, the command, the token service, the echo upstream, the minimal filter and bench/hotpath"
make --no-print-directory wasm
make --no-print-directory native
cargo build --release -p token-service -p echo-upstream -p oauthv2info-check
cargo build --manifest-path bench/minimal-filter/Cargo.toml --target wasm32-unknown-unknown --release
cargo build --release --manifest-path bench/hotpath/Cargo.toml
if ! command -v valgrind >/dev/null; then
  echo "bench: installing valgrind (instructions per warm hit)"
  $SUDO apt-get install -y -qq valgrind >/dev/null || echo "bench: no valgrind: no instruction counts" >&2
fi

echo "bench: builds done in $(($(date +%s) - start)) s"
"$VENV/bin/python" bench/bench.py
echo "bench: make bench took $(($(date +%s) - BENCH_STARTED)) s in all"
