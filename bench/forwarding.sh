#!/usr/bin/env bash
# Long-polling without sticky sessions (issue #16): what forwarding a request to the node
# that owns its session costs. Two Volley nodes (`volley-redis` example `bench-node`, the
# bench application on a Redis adapter with `forward_sessions`) share a redis-server this
# script starts on a free port. The load generator's polling scenario runs twice per round,
# interleaved:
#
# - `affinity`: every request of a session goes to the node that issued it;
# - `spread`: the handshake goes to node A, then each GET and each POST goes to the next of
#   A and B in turn, as through a round-robin balancer with no affinity, so half of the
#   requests are forwarded to the owner over Redis.
#
#   bench/forwarding.sh [rounds] [--duration S] [--warmup S] [--clients N] [--no-build]
#
# Server CPU counts both nodes and Redis. One JSON line per run on stdout, also appended to
# bench/results/forwarding.jsonl. Everything listens on 127.0.0.1; every run is bounded by
# `timeout 120`, and every process is killed at the end.
set -euo pipefail
script="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$script")/.."

rounds=3
duration=4
warmup=1
clients=${POLLING_CLIENTS:-50}
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$script" | sed '$d'; exit 0 ;;
    [0-9]*) rounds=$1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

command -v redis-server >/dev/null || { echo "redis-server is required (scripts/test.sh installs it)" >&2; exit 1; }
if [ "$build" = 1 ]; then
  cargo build --release -p volley-redis --example bench-node
  cargo build --release -p volley-bench --bin loadgen
fi
bin=target/release
for f in examples/bench-node loadgen; do
  [ -x "$bin/$f" ] || { echo "missing $bin/$f: build first" >&2; exit 1; }
done

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  exit 1
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
redis_pid=$!
pids+=("$redis_pid")
wait_port "$redis_port"

port_a=$(free_port)
port_b=$(free_port)
REDIS_URL="redis://127.0.0.1:$redis_port" PORT=$port_a "$bin/examples/bench-node" >/dev/null &
pid_a=$!
pids+=("$pid_a")
REDIS_URL="redis://127.0.0.1:$redis_port" PORT=$port_b "$bin/examples/bench-node" >/dev/null &
pid_b=$!
pids+=("$pid_b")
wait_port "$port_a"
wait_port "$port_b"

mkdir -p bench/results
out=bench/results/forwarding.jsonl
for round in $(seq "$rounds"); do
  for mode in affinity spread; do
    spread=()
    [ "$mode" = spread ] && spread=(--spread "$port_b")
    line=$(timeout 120 "$bin/loadgen" polling --port "$port_a" "${spread[@]}" \
      --target "$mode" --clients "$clients" --server-pid "$pid_a" \
      --also-pids "$pid_b,$redis_pid" --duration "$duration" --warmup "$warmup")
    echo "{\"round\":$round,${line#\{}" | tee -a "$out"
  done
done
