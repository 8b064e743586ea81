#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds, and runs every test —
# the ones that need a desktop (D-Bus, gnome-keyring, dunst under Xvfb) inside a private
# session made by scripts/desktop-session.sh, so nothing of the machine's own is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

# Build first, outside the timed desktop session, so its slowness shows where it belongs.
cargo build --workspace --all-targets --locked

# --include-ignored: the desktop tests are ignored by a plain `cargo test`, because they
# fail loudly outside a desktop session; here they run.
exec bash scripts/desktop-session.sh cargo test --workspace --locked --no-fail-fast -- --include-ignored
