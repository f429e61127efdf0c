#!/usr/bin/env bash
# The reliability scenario: `--cycles` times, `--clients` WebSocket clients join `/` of the
# tokio bench server, idle and leave, with the server's RSS read with them connected and after
# they left. Once per allocator set-up of the same binary:
#   glibc      the default allocator;
#   glibc-trim glibc told to give memory back sooner (MALLOC_TRIM_THRESHOLD_=131072,
#              MALLOC_ARENA_MAX=2);
#   jemalloc   Debian's libjemalloc2 through LD_PRELOAD (skipped when not installed).
# Raw lines go to bench/results/churn.jsonl; RESULTS.md quotes them.
#
#   bench/churn.sh [--cycles N] [--clients N] [--settle S] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

cycles=20
clients=10000
settle=2
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --cycles) cycles=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$build" = 1 ]; then
  cargo build --release -p volley-tokio --example bench-server
  cargo build --release -p volley-bench --bin loadgen
fi
bin=target/release
mkdir -p bench/results
out=bench/results/churn.jsonl
: > "$out"
jemalloc=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
port=3400
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true' EXIT

for variant in glibc glibc-trim jemalloc; do
  env=()
  case "$variant" in
    glibc) ;;
    glibc-trim) env=(MALLOC_TRIM_THRESHOLD_=131072 MALLOC_ARENA_MAX=2) ;;
    jemalloc)
      if [ ! -e "$jemalloc" ]; then
        echo "jemalloc: skipped ($jemalloc not installed: apt-get install libjemalloc2)" >&2
        continue
      fi
      env=(LD_PRELOAD="$jemalloc") ;;
  esac
  port=$((port + 1))
  env "${env[@]}" PORT=$port "$bin/examples/bench-server" >/dev/null 2>&1 &
  server_pid=$!
  for _ in $(seq 200); do
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && break
    sleep 0.05
  done
  line=$(timeout 900 "$bin/loadgen" churn --port "$port" --target "$variant" \
    --clients "$clients" --cycles "$cycles" --settle "$settle" --concurrency 100 \
    --server-pid "$server_pid")
  echo "$line" | tee -a "$out"
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
done
