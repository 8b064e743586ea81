#!/usr/bin/env bash
# Builds Talkbell's packages into target/packages/:
#   talkbell_<version>_amd64.deb, talkbell-<version>-1.x86_64.rpm   the desktop app (Tauri bundler)
#   talkbell-relay_<version>-1_amd64.deb                           the relay (cargo-deb)
#
#   bash scripts/package.sh           # release build, what you ship
#   bash scripts/package.sh --debug   # debug build (the test command uses it: no second
#                                     # optimised build of everything on 2 cores)
#
# Installs what it needs first: the build's Debian packages, the Tauri CLI from the npm
# registry (pinned in packaging/package-lock.json; a prebuilt binary, so no long
# `cargo install tauri-cli`) and cargo-deb from crates.io. AppImage is not built: its
# tools are downloads from outside the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
tauri_flags=()
deb_flags=()
case "${1:-}" in
  "") ;;
  --debug) profile=debug; tauri_flags=(--debug); deb_flags=(--profile dev) ;;
  *) echo "usage: scripts/package.sh [--debug]" >&2; exit 2 ;;
esac

bash scripts/install-deps.sh core gui package
if ! command -v npm >/dev/null 2>&1; then
  echo "package: installing Node.js and npm (for the Tauri CLI)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
fi

CARGO_DEB_VERSION=3.8.0
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
(cd packaging && npm ci --no-audit --no-fund --loglevel=error)

target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
out="$target/packages"
rm -rf "$out" "$target/$profile/bundle"
mkdir -p "$out"

# The desktop app: both binaries of the app's package, the desktop entry, icons, AppStream
# metainfo and the daemon's user unit (tauri.conf.json's bundle section). Built first,
# then stripped (lintian: no symbols shipped), then bundled with the Depends computed from
# what the two binaries link and the changelog (scripts/bundle-config.py).
tauri=packaging/node_modules/.bin/tauri
"$tauri" build "${tauri_flags[@]}" --no-bundle --ci
bins=("$target/$profile/talkbell" "$target/$profile/talkbell-daemon")
strip --remove-section=.comment --remove-section=.note "${bins[@]}"
mkdir -p "$target/packaging"
gzip -9n -c packaging/linux/changelog > "$target/packaging/changelog.gz"
config=$(python3 scripts/bundle-config.py "$target/packaging/changelog.gz" "${bins[@]}")
"$tauri" bundle "${tauri_flags[@]}" --bundles deb,rpm --ci --config "$config"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cp "$target/$profile"/bundle/deb/*.deb "$out/talkbell_${version}_amd64.deb"
cp "$target/$profile"/bundle/rpm/*.rpm "$out/talkbell-${version}-1.x86_64.rpm"

# The relay: crates/relay/Cargo.toml's [package.metadata.deb].
cargo deb -p talkbell-relay --locked "${deb_flags[@]}" --output "$out/"

echo "package: built"
ls -l "$out"
