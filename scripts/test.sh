#!/usr/bin/env bash
# Installs what the suite needs when it is missing, then runs every check and test.
# Idempotent: a second run on the same machine installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

# System packages the integration suites drive: redis-server, redis-sentinel and redis-cli (the
# Redis tests start servers, Sentinels and a Redis Cluster on free ports of their own; the
# cluster is created with redis-cli), and Chromium for the conformance suite's browser test.
missing=()
need redis-server || missing+=(redis-server)
need redis-sentinel || missing+=(redis-sentinel)
need redis-cli || missing+=(redis-tools)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if ! need node || ! need npm; then
  echo "node and npm are required for the conformance suite" >&2
  exit 1
fi
# The official JavaScript clients for the conformance suite, and the Node servers, adapters and
# emitter the Redis interop tests run beside Volley, and the Admin UI's client and dashboard,
# each pinned by its lockfile.
for dir in conformance adapter-redis/tests/node admin/tests/node; do
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "== npm ci ($dir)"
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
done

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked
