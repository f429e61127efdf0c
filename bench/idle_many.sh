#!/usr/bin/env bash
# Many idle WebSocket connections on one server (issue #13): N clients (default 100 000) join
# `/` and stay idle; per target, the time to connect them all, the connect rate and the
# server's RSS per connection. One JSON line per target on stdout, also appended to
# bench/results/idle-many.jsonl.
#
#   bench/idle_many.sh [N] [--targets "tokio smol reference"] [--concurrency C]
#                      [--settle S] [--no-build]
#
# Limits, checked before anything starts:
# - Open files. The server needs one descriptor per connection plus a margin of 100. The
#   script raises its `ulimit -n` to N + 100 when the hard limit allows it or the process
#   may raise the hard limit (CAP_SYS_RESOURCE, up to /proc/sys/fs/nr_open), else to the
#   hard limit; when N does not fit, N is lowered to the hard limit minus 100 and the reason
#   is printed (and recorded as `capped_by` in the JSON line).
# - Load generator processes: each holds at most LOADGEN_PER_PROC connections (environment,
#   default 19 000, within the 20 000 descriptors that are a common hard limit) and never
#   more than the limit allows; the script starts as many as N needs and merges their lines.
# - Ephemeral ports: 127.0.0.1 alone has only the ports of ip_local_port_range to connect
#   from, so clients are spread round-robin over the source addresses 127.0.0.1 ..
#   127.0.0.SOURCES (environment; default: enough addresses to use at most 20 000 ports of
#   each, and at least 2).
# Servers: the tokio bench-server and smol-bench-server with VOLLEY_BENCH_MAX_CONNECTIONS=N+100
# (their cap is 10 000 by default; the per-address limit is off by default), the reference
# (no cap). Everything listens and connects on 127.0.0.x only. Each target's run is bounded:
# load generators under `timeout 300`, the whole run given up after 300 s, every process
# killed after it.
#
# The merged line: `clients` asked, `held` (joined and still open when the server's RSS is
# read), `failed`, `dropped` (closed by the server after joining), `timed_out` (still
# connecting after 240 s), `connect_s` (first part started → last part connected),
# `connects_per_s`, `rss_before_kib` (before any client), `rss_after_kib` (every part
# connected and settled for `--settle` seconds), `bytes_per_conn`, and the limits of the run.
set -euo pipefail
script="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$script")/.."

requested=100000
targets="tokio reference"
concurrency=100
settle=2
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --targets) targets=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$script" | sed '$d'; exit 0 ;;
    [0-9]*) requested=$1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

# Descriptors kept free in each process besides the sockets (listener, epoll, stdio, ...).
margin=100
run_limit=300

# ---- open files ----
nr_open=$(cat /proc/sys/fs/nr_open)
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=$nr_open
need=$((requested + margin))
[ "$need" -gt "$nr_open" ] && need=$nr_open
if [ "$hard" -lt "$need" ] && (ulimit -n "$need") 2>/dev/null; then
  hard=$need
fi
ulimit -n "$hard"
fit=$((hard - margin))
n=$requested
capped_by=none
if [ "$n" -gt "$fit" ]; then
  capped_by="open-files hard limit $hard"
  echo "note: $requested connections do not fit: one server process may hold at most $hard" \
    "open files (ulimit -Hn), so at most $fit connections beside a margin of $margin." >&2
  echo "note: raising the hard limit needs CAP_SYS_RESOURCE, which this process lacks" \
    "(/proc/sys/fs/nr_open is $nr_open); running with $fit connections instead." >&2
  n=$fit
fi
per_proc=${LOADGEN_PER_PROC:-19000}
[ "$per_proc" -gt "$fit" ] && per_proc=$fit
procs=$(((n + per_proc - 1) / per_proc))

# ---- source addresses and ephemeral ports ----
read -r port_lo port_hi </proc/sys/net/ipv4/ip_local_port_range
ports=$((port_hi - port_lo + 1))
per_source=20000
[ "$per_source" -gt "$ports" ] && per_source=$ports
sources=${SOURCES:-$(((n + per_source - 1) / per_source))}
[ "$sources" -lt 2 ] && [ -z "${SOURCES:-}" ] && sources=2
if [ "$sources" -gt 254 ]; then
  echo "$n connections need $sources source addresses, more than 127.0.0.1-254" >&2
  exit 1
fi
if [ $((sources * ports)) -lt "$n" ]; then
  echo "$n connections do not fit $sources source addresses x $ports ports: raise SOURCES" >&2
  exit 1
fi
echo "idle-many: $n connections ($requested asked), $procs load generator process(es)," \
  "$sources source addresses, open-files limit $hard, ports $port_lo-$port_hi" >&2

if [ "$build" = 1 ]; then
  cargo build --release -p volley-tokio --example bench-server
  case " $targets " in *" smol "*) cargo build --release -p volley-smol --example smol-bench-server ;; esac
  cargo build --release -p volley-bench --bin loadgen --bin reference
fi
bin=${CARGO_TARGET_DIR:-target}/release
for f in loadgen reference examples/bench-server; do
  [ -x "$bin/$f" ] || { echo "missing $bin/$f: build first" >&2; exit 1; }
done

mkdir -p bench/results
out=bench/results/idle-many.jsonl
log=bench/results/idle-many.log
: >"$log"
work=$(mktemp -d)
port=3500
server_pid=""
loadgen_pids=()

stop_all() {
  for pid in "${loadgen_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  loadgen_pids=()
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_all; rm -rf "$work"' EXIT

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# A numeric field of a flat JSON line.
field() { sed -n "s/.*\"$2\":\\([0-9.]*\\).*/\\1/p" <<<"$1"; }

run_target() { # target
  local target=$1 cmd started
  case "$target" in
    tokio) cmd=$bin/examples/bench-server ;;
    smol) cmd=$bin/examples/smol-bench-server ;;
    reference) cmd=$bin/reference ;;
    *) echo "unknown target $target" >&2; return 1 ;;
  esac
  [ -x "$cmd" ] || { echo "missing $cmd: build first" >&2; return 1; }
  port=$((port + 1))
  started=$(date +%s)
  VOLLEY_BENCH_MAX_CONNECTIONS=$((n + margin)) PORT=$port "$cmd" >>"$log" 2>&1 &
  server_pid=$!
  local up=0
  for _ in $(seq 200); do
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then up=1; break; fi
    sleep 0.05
  done
  if [ "$up" = 0 ]; then
    echo "$target: the server did not listen on $port" >&2
    stop_all
    return 1
  fi
  local before
  before=$(rss_kib "$server_pid")
  local i share left=$n
  for i in $(seq 0 $((procs - 1))); do
    share=$(((left + procs - i - 1) / (procs - i)))
    left=$((left - share))
    timeout "$run_limit" "$bin/loadgen" idle-many --port "$port" --target "$target" \
      --clients "$share" --sources "$sources" --concurrency "$concurrency" \
      --settle "$settle" --duration "$run_limit" --server-pid "$server_pid" \
      >"$work/$target.$i" 2>>"$log" &
    loadgen_pids+=($!)
  done
  # Wait for every part's line (it comes once its clients are connected and settled).
  local done_parts=0
  while [ $(($(date +%s) - started)) -lt "$run_limit" ]; do
    done_parts=0
    for i in $(seq 0 $((procs - 1))); do
      if [ -s "$work/$target.$i" ] || ! kill -0 "${loadgen_pids[$i]}" 2>/dev/null; then
        done_parts=$((done_parts + 1))
      fi
    done
    [ "$done_parts" = "$procs" ] && break
    sleep 0.2
  done
  local after
  after=$(rss_kib "$server_pid")
  local server_fds
  server_fds=$(find "/proc/$server_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  stop_all
  local parts
  parts=$(cat "$work/$target".* 2>/dev/null || true)
  if [ -z "$parts" ]; then
    echo "$target: no load generator reported (see $log)" >&2
    return 1
  fi
  local held=0 failed=0 dropped=0 timed_out=0 first=0 last=0 line v
  while IFS= read -r line; do
    held=$((held + $(field "$line" held)))
    failed=$((failed + $(field "$line" failed)))
    dropped=$((dropped + $(field "$line" dropped)))
    timed_out=$((timed_out + $(field "$line" timed_out)))
    v=$(field "$line" started_unix_ms)
    { [ "$first" = 0 ] || [ "$v" -lt "$first" ]; } && first=$v
    v=$(field "$line" connected_unix_ms)
    [ "$v" -gt "$last" ] && last=$v
  done <<<"$parts"
  local reported
  reported=$(wc -l <<<"$parts")
  awk -v target="$target" -v requested="$requested" -v n="$n" -v held="$held" \
    -v failed="$failed" -v dropped="$dropped" -v timed_out="$timed_out" \
    -v ms=$((last - first)) -v before="$before" -v after="$after" -v procs="$procs" \
    -v reported="$reported" -v sources="$sources" -v hard="$hard" -v capped="$capped_by" \
    -v fds="$server_fds" -v conc="$concurrency" 'BEGIN {
      s = ms / 1000
      printf "{\"scenario\":\"idle-many\",\"target\":\"%s\",\"requested\":%d,\"clients\":%d,", target, requested, n
      printf "\"held\":%d,\"failed\":%d,\"dropped\":%d,\"timed_out\":%d,", held, failed, dropped, timed_out
      printf "\"connect_s\":%.2f,\"connects_per_s\":%.0f,", s, (s > 0 ? held / s : 0)
      printf "\"rss_before_kib\":%d,\"rss_after_kib\":%d,\"bytes_per_conn\":%.0f,", before, after, (held > 0 ? (after - before) * 1024 / held : 0)
      printf "\"server_fds\":%d,\"loadgen_procs\":%d,\"parts_reported\":%d,\"sources\":%d,", fds, procs, reported, sources
      printf "\"concurrency\":%d,\"fd_hard_limit\":%d,\"capped_by\":\"%s\"}\n", conc, hard, capped
    }' | tee -a "$out"
}

for target in $targets; do
  run_target "$target" || echo "$target: FAILED (see $log)" >&2
done
