#!/usr/bin/env bash
# Heap allocations per connect and per long-polling request in the tokio bench-server,
# counted with heaptrack (a profile, not a benchmark: the figures are counts, not times).
#
#   bench/heap-allocs.sh [--no-build] [--duration S] [connect] [polling]
#
# For each scenario (default: both) the server runs under heaptrack while `loadgen` drives it
# for --duration seconds (default 3) with no warm-up; then every allocation the server made
# (start-up included, a few hundred) is divided by what loadgen counted: connects for
# `connect` (32 workers: open a WebSocket, Engine.IO and Socket.IO handshake to `/`, close),
# HTTP requests for `polling` (50 clients x 10 messages in flight, 100-byte padding). Needs
# heaptrack and heaptrack_print; writes its files under ${TMPDIR:-/tmp}/volley-heap-allocs.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
duration=3
scenarios=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    --duration) duration=$2; shift 2 ;;
    connect|polling) scenarios+=("$1"); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=(connect polling)
for tool in heaptrack heaptrack_print; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

if [ "$build" = 1 ]; then
  cargo build --release -p volley-tokio --example bench-server
  cargo build --release -p volley-bench --bin loadgen
fi
bin=${CARGO_TARGET_DIR:-target}/release
for f in examples/bench-server loadgen; do
  [ -x "$bin/$f" ] || { echo "missing $bin/$f: build first" >&2; exit 1; }
done
out=${TMPDIR:-/tmp}/volley-heap-allocs
mkdir -p "$out"

server=""
stop() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    server=""
  fi
}
trap stop EXIT

for scenario in "${scenarios[@]}"; do
  case "$scenario" in
    connect) args=(connect --clients 32); unit=connect ;;
    polling) args=(polling --clients 50 --inflight 10 --size 100); unit="HTTP request" ;;
  esac
  port=$((3700 + RANDOM % 200))
  rm -f "$out/$scenario".*
  PORT=$port heaptrack -o "$out/$scenario" "$bin/examples/bench-server" >"$out/$scenario.log" 2>&1 &
  wrapper=$!
  for _ in $(seq 200); do
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && break
    sleep 0.05
  done
  line=$(timeout 120 "$bin/loadgen" "${args[@]}" --port "$port" --target tokio --cores all \
    --duration "$duration" --warmup 0)
  # heaptrack runs the server as its child: stop that one, and let heaptrack write its file.
  server=$(pgrep -P "$wrapper" -f bench-server | head -1 || true)
  stop
  wait "$wrapper" || true
  heaptrack_print -f "$out/$scenario.zst" -F "$out/$scenario.folded" \
    --flamegraph-cost-type allocations >/dev/null 2>&1
  total=$(awk '{s += $NF} END {print s}' "$out/$scenario.folded")
  count=$(echo "$line" | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d.get("requests") or d["msgs"])')
  awk -v t="$total" -v n="$count" -v s="$scenario" -v u="$unit" \
    'BEGIN { printf "%s: %.1f allocations per %s (%d allocations, %d counted by loadgen)\n", s, t / n, u, t, n }'
done
echo "call sites: heaptrack_print -f $out/<scenario>.zst, or the folded stacks in $out/<scenario>.folded"
