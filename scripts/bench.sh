#!/usr/bin/env bash
# Talkbell's benchmarks (issue 5), in one command: installs what they need, builds in
# release mode, runs every benchmark inside a private desktop session and writes
# docs/BENCHMARKS.md (with the hand-written docs/benchmarks-notes.md woven in) and
# docs/benchmarks.json (every figure).
#
#   bash scripts/bench.sh             # the issue's sizes (about 15 minutes on 2 cores, after the build)
#   bash scripts/bench.sh --quick     # a short smoke run; any talkbell-bench flag passes through,
#   bash scripts/bench.sh --only idle,start --out /tmp/b.md     e.g. these (the JSON goes beside --out)
#   bash scripts/bench.sh --only cluster   # the relay nodes on Redis and SQLite: no desktop app or session
#
# A run of some benchmarks keeps the other sections of the report it rewrites.
# Needs root (or sudo) for the packages: scripts/install-deps.sh core gui bench.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# `--only cluster` (alone) needs neither the desktop app nor a desktop session.
headless=false
prev=
for arg in "$@"; do
  if [ "$prev" = --only ] && [ "$arg" = cluster ] || [ "$arg" = --only=cluster ]; then headless=true; fi
  prev=$arg
done

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
bin="${CARGO_TARGET_DIR:-target}/release/talkbell-bench"
if $headless; then
  bash scripts/install-deps.sh core
  cargo build --release --locked -p talkbell-bench -p talkbell-relay
else
  bash scripts/install-deps.sh core gui bench
  cargo build --release --locked -p talkbell-bench -p talkbell -p talkbell-relay --features talkbell/delivery-trace
fi

# The relay benchmark holds 10,000 WebSocket connections open, the cluster benchmark as many
# as the hard limit allows per process: one descriptor each in the relay and in the clients.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
  echo "bench: warning: only $(ulimit -n) open files allowed; the 10,000-client benchmark will fail" >&2
fi

if $headless; then
  exec "$bin" "$@"
fi
exec bash scripts/desktop-session.sh "$bin" "$@"
