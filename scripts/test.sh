#!/usr/bin/env bash
# The README's test command: installs what the tests need, builds, checks the code's form and lints,
# builds the packages, and runs every test — the ones that need a desktop (D-Bus,
# gnome-keyring, dunst under Xvfb; the window's tests add openbox, trayer and
# tauri-driver) inside a private session made by scripts/desktop-session.sh, so nothing
# of the machine's own is touched. tests/packages.rs installs the packages on this machine
# with apt-get and purges them again (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."

# One build from scratch: incremental state would only cost disk (several GB over the
# workspace's test binaries), and CI machines have had little of it.
export CARGO_INCREMENTAL=0
df -h . | sed 's/^/disk: /'

bash scripts/install-deps.sh core gui package

# tauri-driver: the WebDriver server the window's tests drive the app through (it starts
# WebKitWebDriver, from webkit2gtk-driver). A crate, so cargo installs it, once.
TAURI_DRIVER_VERSION=2.1.0
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! tauri-driver --help 2>/dev/null | grep -q "tauri-driver"; then
  cargo install tauri-driver --locked --version "$TAURI_DRIVER_VERSION"
fi

cargo fmt --all --check
# The lints (the crates' own attributes deny unwrap/expect and truncating casts outside
# tests); a check build of every target, apart from the build below.
cargo clippy --workspace --all-targets --locked -- -D warnings

# The keyring has a persistent store on Windows and macOS too (no cross-compilation here:
# cargo tree resolves the features each target gets).
bash scripts/check-keyring-targets.sh

# Build first, outside the timed desktop session, so its slowness shows where it belongs.
cargo build --workspace --all-targets --locked

# The .deb and .rpm (debug profile: no second, optimised build of everything on 2 cores),
# into target/packages for tests/packages.rs.
bash scripts/package.sh --debug

# --include-ignored: the desktop tests are ignored by a plain `cargo test`, because they
# fail loudly outside a desktop session; here they run.
exec bash scripts/desktop-session.sh cargo test --workspace --locked --no-fail-fast -- --include-ignored
