#!/usr/bin/env bash
# Load benchmarks: Volley on tokio, Volley on smol and the reference server, interleaved,
# every scenario several rounds; writes the generated part of bench/RESULTS.md and the raw
# JSON lines to bench/results/last-run.jsonl.
#
#   bench/run.sh [rounds] [--duration S] [--warmup S] [--scenarios "echo ack …"]
#                [--targets "tokio smol reference"] [--no-build] [--quiet-load L]
#
# rounds: default 3. Each run starts a fresh server, measures --warmup (default 1 s) then
# --duration (default 4 s) seconds, and is killed after at most 120 s whatever happens. The
# default full run (8 scenarios x 3 targets x 3 rounds) takes about 8 minutes on 2 cores plus
# the build. Longer runs: `bench/run.sh 5 --duration 15 --warmup 3` (about 40 minutes).
# --quiet-load L waits (up to 10 minutes) for the 1-minute load average to fall below L
# before starting, so that other work on the machine does not skew the figures.
#
# Scenarios: echo echo-light ack broadcast connect idle-memory polling echo-1core. `echo-light`
# is echo far from saturation (10 clients, 1 in flight each), for latency without queueing;
# `echo-1core` pins the server to core 0 (`taskset -c 0`) and the load generator to core 1,
# for the 2-core ÷ 1-core ratio. Not in the default run: `echo-upgraded` and
# `broadcast-upgraded`, echo and broadcast with every client session opened over
# long-polling and upgraded to WebSocket, as the official client does by default (the
# reference opens its WebSockets directly). Knobs for each scenario's size, from the environment:
# ECHO_CLIENTS (100), INFLIGHT (10), SIZE (100), BROADCAST_RECEIVERS (1000),
# BROADCAST_WINDOW (8), CONNECTORS (32), IDLE_CLIENTS (10000), POLLING_CLIENTS (50).
#
# The cost of metrics: VOLLEY_BENCH_METRICS=1 makes the tokio bench-server install a
# Prometheus recorder (every series recorded), so compare
#   bench/run.sh 5 --scenarios echo --targets tokio
#   VOLLEY_BENCH_METRICS=1 bench/run.sh 5 --scenarios echo --targets tokio --no-build
# (echo throughput with metrics on should stay within 3 % of off).
set -euo pipefail
script="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$script")/.."

rounds=3
duration=4
warmup=1
scenarios="echo echo-light ack broadcast connect idle-memory polling echo-1core"
targets="tokio smol reference"
build=1
quiet_load=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --targets) targets=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --quiet-load) quiet_load=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$script" | sed '$d'; exit 0 ;;
    [0-9]*) rounds=$1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

ECHO_CLIENTS=${ECHO_CLIENTS:-100}
INFLIGHT=${INFLIGHT:-10}
SIZE=${SIZE:-100}
BROADCAST_RECEIVERS=${BROADCAST_RECEIVERS:-1000}
BROADCAST_WINDOW=${BROADCAST_WINDOW:-8}
CONNECTORS=${CONNECTORS:-32}
IDLE_CLIENTS=${IDLE_CLIENTS:-10000}
POLLING_CLIENTS=${POLLING_CLIENTS:-50}

# 10 000 idle connections need as many descriptors in the server and in the load generator.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CLIENTS + 512)) ]; then
  echo "warning: ulimit -n is $(ulimit -n), below what $IDLE_CLIENTS idle clients need" >&2
fi

if [ "$build" = 1 ]; then
  # Three builds, so that no feature one needs is unified into another's dependencies.
  cargo build --release -p volley-tokio --example bench-server
  cargo build --release -p volley-smol --example smol-bench-server
  cargo build --release -p volley-bench --bins
fi
bin=target/release
for f in examples/bench-server examples/smol-bench-server loadgen reference report; do
  [ -x "$bin/$f" ] || { echo "missing $bin/$f: build first" >&2; exit 1; }
done

if [ -n "$quiet_load" ]; then
  for _ in $(seq 120); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    awk -v l="$load" -v q="$quiet_load" 'BEGIN { exit !(l < q) }' && break
    echo "waiting for a quiet machine: load $load, want < $quiet_load" >&2
    sleep 5
  done
fi

mkdir -p bench/results
out=bench/results/last-run.jsonl
: > "$out"
log=bench/results/last-run.log
: > "$log"
notes=$(mktemp)
loads=$(mktemp)

load_before=$(cat /proc/loadavg)
top_before=$(top -bn1 | sed -n '1,3p;7,12p')
started=$(date +%s)
port=3200
server_pid=""

stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server; rm -f "$notes" "$loads"' EXIT

start_server() { # target pin
  local target=$1 pin=$2 cmd
  case "$target" in
    tokio) cmd=$bin/examples/bench-server ;;
    smol) cmd=$bin/examples/smol-bench-server ;;
    reference) cmd=$bin/reference ;;
  esac
  port=$((port + 1))
  if [ "$pin" = 1 ]; then
    PORT=$port taskset -c 0 "$cmd" >>"$log" 2>&1 &
  else
    PORT=$port "$cmd" >>"$log" 2>&1 &
  fi
  server_pid=$!
  for _ in $(seq 200); do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then return 0; fi
    sleep 0.05
  done
  echo "server $target did not start on $port" >&2
  return 1
}

run_one() { # scenario target round
  local scenario=$1 target=$2 pin=0 cores=all args
  case "$scenario" in
    echo) args="echo --clients $ECHO_CLIENTS --inflight $INFLIGHT --size $SIZE" ;;
    echo-light) args="echo --clients 10 --inflight 1 --size $SIZE"; cores=light ;;
    echo-1core) args="echo --clients $ECHO_CLIENTS --inflight $INFLIGHT --size $SIZE"; pin=1; cores=1 ;;
    ack) args="ack --clients $ECHO_CLIENTS --inflight $INFLIGHT --size $SIZE" ;;
    broadcast) args="broadcast --clients $BROADCAST_RECEIVERS --window $BROADCAST_WINDOW --size $SIZE" ;;
    # Sessions opened over long-polling and upgraded, as the official client does by default
    # (the reference, which speaks no long-polling, opens its WebSockets directly).
    echo-upgraded) args="echo --clients $ECHO_CLIENTS --inflight $INFLIGHT --size $SIZE --transport upgrade" ;;
    broadcast-upgraded) args="broadcast --clients $BROADCAST_RECEIVERS --window $BROADCAST_WINDOW --size $SIZE --transport upgrade" ;;
    connect) args="connect --clients $CONNECTORS" ;;
    idle-memory) args="idle-memory --clients $IDLE_CLIENTS --concurrency 100 --settle 2 --duration 1" ;;
    polling) args="polling --clients $POLLING_CLIENTS --inflight $INFLIGHT --size $SIZE" ;;
    *) echo "unknown scenario $scenario" >&2; return 1 ;;
  esac
  cut -d' ' -f1 /proc/loadavg >>"$loads"
  start_server "$target" "$pin" || return 0
  local loadgen=("$bin/loadgen")
  [ "$pin" = 1 ] && loadgen=(taskset -c 1 "$bin/loadgen")
  # shellcheck disable=SC2086
  if line=$(timeout 120 "${loadgen[@]}" $args --port "$port" --target "$target" --cores "$cores" \
      --server-pid "$server_pid" --duration "$duration" --warmup "$warmup" 2>>"$log"); then
    echo "$line" >>"$out"
    echo "$scenario $target round $3: $line"
  else
    echo "$scenario $target round $3: FAILED (see $log)" | tee -a "$log" >&2
  fi
  stop_server
}

read -r -a target_list <<<"$targets"
ntargets=${#target_list[@]}
for scenario in $scenarios; do
  for round in $(seq "$rounds"); do
    # Interleaved, and each round starts with another target, so that drift in the
    # machine's load does not favour one.
    for i in $(seq 0 $((ntargets - 1))); do
      run_one "$scenario" "${target_list[$(((i + round - 1) % ntargets))]}" "$round"
    done
  done
done

elapsed=$(($(date +%s) - started))
load_after=$(cat /proc/loadavg)
load_range=$(sort -n "$loads" | sed -n '1p;$p' | paste -sd' ' | awk '{print $1 " – " $2}')
{
  echo "## Last run: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r)."
  echo "- Command: \`bench/run.sh $rounds --duration $duration --warmup $warmup\`; scenarios: $scenarios; $rounds rounds, $elapsed s in all."
  echo "- Sizes: echo/ack $ECHO_CLIENTS clients × $INFLIGHT in flight, $SIZE-byte padding; broadcast $BROADCAST_RECEIVERS receivers, window $BROADCAST_WINDOW; connect $CONNECTORS workers; idle $IDLE_CLIENTS connections; polling $POLLING_CLIENTS clients × $INFLIGHT in flight."
  echo "- Load average before: \`$load_before\`; after: \`$load_after\`; 1-minute load at the start of each run: $load_range (the benchmark itself adds about 2)."
  echo "- Top before the run:"
  echo
  echo '```'
  echo "$top_before"
  echo '```'
} >"$notes"
"$bin/report" "$out" bench/RESULTS.md "$notes"
echo "wrote bench/RESULTS.md ($elapsed s)"
