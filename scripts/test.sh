#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds, and runs every test —
# the ones that need a desktop (D-Bus, gnome-keyring, dunst under Xvfb; the window's tests
# add openbox, trayer and tauri-driver) inside a private session made by
# scripts/desktop-session.sh, so nothing of the machine's own is touched.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh core gui

# tauri-driver: the WebDriver server the window's tests drive the app through (it starts
# WebKitWebDriver, from webkit2gtk-driver). A crate, so cargo installs it, once.
TAURI_DRIVER_VERSION=2.1.0
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! tauri-driver --help 2>/dev/null | grep -q "tauri-driver"; then
  cargo install tauri-driver --locked --version "$TAURI_DRIVER_VERSION"
fi

# Build first, outside the timed desktop session, so its slowness shows where it belongs.
cargo build --workspace --all-targets --locked

# --include-ignored: the desktop tests are ignored by a plain `cargo test`, because they
# fail loudly outside a desktop session; here they run.
exec bash scripts/desktop-session.sh cargo test --workspace --locked --no-fail-fast -- --include-ignored
