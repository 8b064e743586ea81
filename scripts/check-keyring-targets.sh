#!/usr/bin/env bash
# Asserts that talkbell-core's keyring has a persistent store on every desktop target:
# the Credential Manager on Windows, the Keychain on macOS, the Secret Service on Linux.
# Without one, keyring 3 falls back to an in-memory mock and the token would be lost at
# every restart. No cross-compilation is needed: `cargo tree` only resolves features.
set -euo pipefail
cd "$(dirname "$0")/.."

check() {
    local target=$1 feature=$2 tree
    if ! tree=$(cargo tree -p talkbell-core --target "$target" -e features -i keyring 2>&1); then
        echo "check-keyring-targets: cargo tree failed for $target:" >&2
        echo "$tree" >&2
        return 1
    fi
    if grep -q "keyring feature \"$feature\"" <<<"$tree"; then
        echo "check-keyring-targets: $target: keyring feature \"$feature\" enabled"
    else
        echo "check-keyring-targets: $target: keyring feature \"$feature\" is NOT enabled:" >&2
        echo "$tree" >&2
        return 1
    fi
}

status=0
check x86_64-pc-windows-msvc windows-native || status=1
check aarch64-pc-windows-msvc windows-native || status=1
check aarch64-apple-darwin apple-native || status=1
check x86_64-apple-darwin apple-native || status=1
check x86_64-unknown-linux-gnu async-secret-service || status=1
exit $status
