#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for a bounded time each.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      SECONDS per target, default 60
#
# Environment:
#   SANITIZER=none|address   default none (see below)
#   JOBS=N                   fuzzers at once, default 1 (this project's machines have 2 cores)
#
# The fuzzer's finds go to fuzz/work/corpus/<target>/ (ignored by git), seeded from the
# curated fuzz/corpus/<target>/, which the fuzzer only reads. Crashes land in
# fuzz/artifacts/<target>/; minimise one with `cargo fuzz tmin <target> <file>`, then copy it
# into fuzz/corpus/<target>/ so that `cargo test -p volley-fuzz-checks` replays it forever.
# Logs go to fuzz/work/logs/<target>.log; a summary (runs, cov, ft, crashes) ends the run.
#
# Why RUSTC_BOOTSTRAP=1: cargo-fuzz targets nightly, and these machines only have the stable
# toolchain (no other can be fetched). The instrumentation flags cargo-fuzz passes for
# `-s none` (`-Cpasses=sancov-module`, `-Cllvm-args=...`, `--cfg fuzzing`) are stable, but the
# address sanitizer is `-Zsanitizer=address`, an unstable flag that stable rustc accepts
# only with RUSTC_BOOTSTRAP=1. Setting it for both keeps one build recipe. It is set for the
# fuzz build alone, never for the workspace's ordinary builds.
#
# Why `-s none` by default: the core forbids `unsafe`, so a sanitizer only watches the
# dependencies' unsafe code (bytes, httparse, serde_json), at about an eighth of the speed;
# panics, hangs (-timeout) and memory blow-ups (-rss_limit_mb) are caught either way. Run
# with SANITIZER=address now and then.
set -euo pipefail

cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
sanitizer=${SANITIZER:-none}
jobs=${JOBS:-1}

export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: installing it from crates.io" >&2
    cargo install cargo-fuzz --locked
fi

echo "building (sanitizer: $sanitizer)" >&2
if [ "$#" -gt 0 ]; then
    targets=("$@")
    for target in "${targets[@]}"; do
        cargo fuzz build -s "$sanitizer" "$target"
    done
else
    mapfile -t targets < <(cargo fuzz list)
    cargo fuzz build -s "$sanitizer"
fi

mkdir -p work/logs
run_one() {
    local target=$1
    mkdir -p "work/corpus/$target" "corpus/$target"
    # -timeout: one input running this long is a hang; -rss_limit_mb: a blow-up.
    cargo fuzz run -s "$sanitizer" "$target" "work/corpus/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        >"work/logs/$target.log" 2>&1
}

status=0
running=0
for target in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
    echo "fuzzing $target for ${seconds}s" >&2
    run_one "$target" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done

printf '%-12s %12s %8s %8s  %s\n' target runs cov ft result
for target in "${targets[@]}"; do
    log="work/logs/$target.log"
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || true)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
    ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
    if grep -q -E 'panicked|ERROR: libFuzzer|SUMMARY: ' "$log"; then
        result="CRASH: see $log and artifacts/$target/"
        status=1
    else
        result=ok
    fi
    printf '%-12s %12s %8s %8s  %s\n' "$target" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$result"
done
exit "$status"
