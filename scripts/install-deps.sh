#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Talkbell needs to build and to run its tests.
#
#   scripts/install-deps.sh            # the `core` group (the default)
#   scripts/install-deps.sh core gui   # several groups
#
# Idempotent and fast when everything is there: it asks dpkg first, and only runs
# `apt-get update` + `apt-get install` when a package is missing. Needs root (or sudo).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# ---- package groups ------------------------------------------------------------------
# core: building talkbell-core and running its tests inside scripts/desktop-session.sh
#       (private D-Bus session, gnome-keyring as the Secret Service, dunst under Xvfb).
CORE_PACKAGES=(
  pkg-config build-essential ca-certificates
  dbus dbus-x11            # dbus-daemon, dbus-run-session, dbus-send
  gnome-keyring            # gnome-keyring-daemon: the Secret Service
  libsecret-tools          # secret-tool: the tests look at what was stored
  dunst                    # a notification daemon; `dunstctl history` shows what popped up
  xvfb xauth               # a headless X server for dunst
  fonts-dejavu-core        # the font scripts/dunstrc draws popups with
  libnotify-bin            # notify-send, to try the daemon by hand
  procps util-linux        # ps (process groups) and setsid, used by desktop-session.sh
  jq                       # the demo reads dunst's history with it
  redis-server redis-tools # the relay's Redis broker tests start redis-server; redis-cli
  haproxy                  # the relay soak runs three nodes behind a real HAProxy
)

# gui: the Tauri desktop shell (src-tauri) and its tests on a real desktop.
GUI_PACKAGES=(
  libwebkit2gtk-4.1-dev          # the web view (WebKitGTK) Tauri 2 renders into
  libayatana-appindicator3-dev   # the tray icon on StatusNotifier desktops
  librsvg2-dev                   # SVG icons
  webkit2gtk-driver              # WebKitWebDriver, for driving the real window in tests
  trayer                         # a plain XEmbed tray host for the tests
  openbox wmctrl xdotool         # a window manager, so tests close the window and click as a user does
  x11-utils                      # xwininfo: the tests find the tray icon in the tray host
  at-spi2-core python3-gi gir1.2-atspi-2.0  # the tests read the window as a screen reader does
  imagemagick                    # `import`: screenshots of the window, tray and popups
  fonts-noto-cjk                 # Chinese glyphs for the window, the tray and popups in zh-CN
)

# package: building the .deb/.rpm (scripts/package.sh) and checking them as a distribution
#          would (tests/packages.rs).
PACKAGE_PACKAGES=(
  dpkg-dev fakeroot              # dpkg-shlibdeps and dpkg-deb, used by cargo-deb
  rpm                            # rpm -qpl / -qp --requires: what the .rpm holds and needs
  lintian                        # Debian's package checker
  desktop-file-utils             # desktop-file-validate
  appstream                      # appstreamcli validate
  systemd                        # systemd-analyze verify, for the units (no systemd runs here)
  adduser passwd                 # the relay package's postinst/postrm make its system user
  util-linux                     # runuser: a unit's ExecStart run as the unit's user
)

# bench: the benchmarks (crates/bench); the browser baseline runs bench/baseline.html in it.
BENCH_PACKAGES=(
  chromium                       # Debian's Chromium, run --headless as the original browser client
  procps                         # kill (of a process group), used to stop the baseline's Chromium
)
# ---------------------------------------------------------------------------------------

groups=("$@")
[ ${#groups[@]} -eq 0 ] && groups=(core)

wanted=()
for g in "${groups[@]}"; do
  case "$g" in
    core) wanted+=("${CORE_PACKAGES[@]}") ;;
    gui)  wanted+=("${GUI_PACKAGES[@]}") ;;
    package) wanted+=("${PACKAGE_PACKAGES[@]}") ;;
    bench) wanted+=("${BENCH_PACKAGES[@]}") ;;
    *) echo "install-deps: unknown group '$g' (known: core gui package bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${wanted[@]}"; do
  # "install ok installed" only; a removed-but-configured package counts as missing.
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#wanted[@]} packages of group(s) ${groups[*]} are installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -E"; else
    echo "install-deps: missing ${missing[*]} and not root (no sudo)" >&2; exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The downloaded .debs are not needed once installed; a small disk needs the room.
$SUDO apt-get clean
echo "install-deps: done"
