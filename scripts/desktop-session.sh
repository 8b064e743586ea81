#!/usr/bin/env bash
# Runs a command inside a private, throw-away desktop session:
#
#   scripts/desktop-session.sh CMD [ARGS...]
#   scripts/desktop-session.sh cargo test -p talkbell-core --test secrets_keyring -- --include-ignored
#
# What the command gets:
#   - its own D-Bus session bus (dbus-run-session)           DBUS_SESSION_BUS_ADDRESS
#   - an X server (Xvfb, on the first free display)         DISPLAY
#   - gnome-keyring-daemon as the Secret Service, with a brand-new `login` keyring that is
#     the default collection and is UNLOCKED with a known password
#                                                           TALKBELL_KEYRING_PASSWORD
#                                                           GNOME_KEYRING_CONTROL (its control socket dir)
#   - dunst as the notification daemon, with scripts/dunstrc (history kept: `dunstctl history`);
#     its context menu picks what the file $TALKBELL_DESKTOP_DIR/dunst-pick names
#     (scripts/dunst-pick.sh), so a test can choose a popup's action.
#     TALKBELL_DESKTOP_NOTIFICATIONS=none starts none: org.freedesktop.Notifications is
#     left to the command (a test's own stand-in service).
#   - fresh XDG_DATA_HOME / XDG_CONFIG_HOME / XDG_CACHE_HOME / XDG_STATE_HOME /
#     XDG_RUNTIME_DIR in a temp dir, so nothing of the machine's own session is used or touched
#                                                           TALKBELL_DESKTOP_DIR (that temp dir)
#   - TALKBELL_DESKTOP_SESSION=1, which the desktop tests require.
#
# The bus's activation environment has no DISPLAY, on purpose: a keyring unlock prompt
# (gcr-prompter) cannot open a window, so it counts as dismissed at once instead of waiting
# forever for a click nobody makes.
#
# Everything started here is stopped on exit (its own process group, then anything still
# carrying this session's TALKBELL_DESKTOP_DIR), and the temp dir is removed
# (TALKBELL_KEEP_DESKTOP_DIR=1 keeps it, with the daemons' logs). The exit code is CMD's.
# Works as root, without a desktop, without stdin, and any number of times in a row or at
# once. Needs the packages of scripts/install-deps.sh.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
self="$here/$(basename "${BASH_SOURCE[0]}")"

log() { printf 'desktop-session: %s\n' "$*" >&2; }

# Polls CONDITION (a shell command) every 0.1 s for at most SECONDS seconds.
wait_for() {
  local seconds=$1; shift
  local tries=$((seconds * 10))
  while [ "$tries" -gt 0 ]; do
    if eval "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
    tries=$((tries - 1))
  done
  return 1
}

bus_has_owner() {
  dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner "string:$1" 2>/dev/null | grep -q "boolean true"
}

# ---------------------------------------------------------------------------------------
# Inside dbus-run-session: start the daemons, run CMD, stop the daemons.
# ---------------------------------------------------------------------------------------
inner() {
  local dir=$TALKBELL_DESKTOP_DIR
  local pids=()
  ps -o pgid= -p $$ | tr -d ' ' >"$dir/pgid"

  stop_daemons() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
      # Give each a moment, then insist.
      wait_for 3 "! kill -0 $p" || kill -KILL "$p" 2>/dev/null
      wait "$p" 2>/dev/null
    done
  }
  trap stop_daemons EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM HUP

  fail() {
    log "$1"
    local f
    for f in "$dir"/*.log; do
      [ -s "$f" ] && { echo "----- $(basename "$f")" >&2; tail -n 20 "$f" >&2; }
    done
    exit 70
  }

  # X server. -displayfd makes it pick a free display and write its number when ready.
  Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp -noreset \
    3>"$dir/display" >"$dir/xvfb.log" 2>&1 &
  pids+=($!)
  wait_for 15 "[ -s '$dir/display' ]" || fail "Xvfb did not start"
  local display=":$(tr -d '[:space:]' <"$dir/display")"

  # Secret Service. --unlock reads the password on stdin and, as XDG_DATA_HOME is new,
  # creates the `login` keyring with it, unlocked, as the default collection.
  # --foreground keeps it our child, so that we can stop it.
  printf '%s' "$TALKBELL_KEYRING_PASSWORD" |
    gnome-keyring-daemon --foreground --unlock --components=secrets \
      >"$dir/keyring.out" 2>"$dir/keyring.log" &
  pids+=($!)
  wait_for 15 bus_has_owner org.freedesktop.secrets || fail "gnome-keyring-daemon did not take org.freedesktop.secrets"
  export GNOME_KEYRING_CONTROL="$XDG_RUNTIME_DIR/keyring"

  # Check that the keyring really stores and returns a secret, without a prompt.
  local probe="probe-$$-$RANDOM"
  printf '%s' "$probe" | timeout 20 secret-tool store --label="desktop-session probe" talkbell-probe "$$" \
    2>>"$dir/keyring.log" || fail "secret-tool store failed: the login keyring is not usable"
  [ "$(timeout 20 secret-tool lookup talkbell-probe "$$" 2>>"$dir/keyring.log")" = "$probe" ] ||
    fail "secret-tool lookup did not return what was stored"
  timeout 20 secret-tool clear talkbell-probe "$$" 2>>"$dir/keyring.log"

  # Notification daemon, on our X server. It is started by us, not by bus activation
  # (the bus has no DISPLAY).
  # Its context menu's "dmenu" is scripts/dunst-pick.sh, which picks what a test asks for.
  if [ "${TALKBELL_DESKTOP_NOTIFICATIONS:-dunst}" = none ]; then
    log "no notification daemon (TALKBELL_DESKTOP_NOTIFICATIONS=none)"
  else
    sed "s|@DMENU@|$here/dunst-pick.sh|" "$here/dunstrc" >"$dir/dunstrc"
    DISPLAY=$display dunst -config "$dir/dunstrc" >"$dir/dunst.log" 2>&1 &
    pids+=($!)
    wait_for 15 bus_has_owner org.freedesktop.Notifications || fail "dunst did not take org.freedesktop.Notifications"
    wait_for 10 "dunstctl count history" || fail "dunstctl does not answer"
  fi

  export DISPLAY=$display
  export TALKBELL_DESKTOP_SESSION=1
  log "ready: DISPLAY=$DISPLAY, keyring unlocked, notifications: ${TALKBELL_DESKTOP_NOTIFICATIONS:-dunst} (dir $dir)"

  local rc=0
  "$@" || rc=$?
  exit "$rc"
}

if [ "${1:-}" = "--inner" ]; then
  shift
  inner "$@"
fi

# ---------------------------------------------------------------------------------------
# Outside: fresh dirs and environment, then dbus-run-session in a process group of its own.
# ---------------------------------------------------------------------------------------
if [ $# -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

missing=()
for tool in dbus-run-session dbus-send Xvfb gnome-keyring-daemon secret-tool dunst dunstctl setsid ps timeout; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "missing ${missing[*]}: run scripts/install-deps.sh first"
  exit 69
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/talkbell-desktop.XXXXXX")" || { log "mktemp failed"; exit 70; }
chmod 700 "$dir"
mkdir -p "$dir/data" "$dir/config" "$dir/cache" "$dir/state" "$dir/runtime"
chmod 700 "$dir/runtime"

# Nothing of a session this may have been started from leaks in.
unset DISPLAY WAYLAND_DISPLAY DBUS_SESSION_BUS_ADDRESS GNOME_KEYRING_CONTROL SSH_AUTH_SOCK \
  XDG_SESSION_ID XDG_SESSION_TYPE XDG_CURRENT_DESKTOP DESKTOP_SESSION
export XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config" XDG_CACHE_HOME="$dir/cache" \
  XDG_STATE_HOME="$dir/state" XDG_RUNTIME_DIR="$dir/runtime"
export TALKBELL_KEYRING_PASSWORD="${TALKBELL_KEYRING_PASSWORD:-talkbell-test-password}"
export TALKBELL_DESKTOP_DIR="$dir"

session_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  # The session's own process group: dbus-daemon, the daemons, anything the bus started.
  local pgid=""
  [ -s "$dir/pgid" ] && pgid="$(cat "$dir/pgid")"
  if [ -n "$pgid" ] && [ "$pgid" != "$(ps -o pgid= -p $$ | tr -d ' ')" ]; then
    kill -TERM -- "-$pgid" 2>/dev/null
  elif [ -n "$session_pid" ]; then
    kill -TERM "$session_pid" 2>/dev/null
  fi
  # Anything that left the group (a daemon that forked itself away) still carries our
  # marker in its environment. Our own children here must not carry it.
  export -n TALKBELL_DESKTOP_DIR
  local marker="TALKBELL_DESKTOP_DIR=$dir" p leftovers=()
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = "$$" ] && continue
    if { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null | grep -qxF "$marker"; then
      leftovers+=("$p")
    fi
  done
  if [ ${#leftovers[@]} -gt 0 ]; then
    kill -TERM "${leftovers[@]}" 2>/dev/null
    sleep 1
    kill -KILL "${leftovers[@]}" 2>/dev/null
  fi
  if [ "${TALKBELL_KEEP_DESKTOP_DIR:-0}" = 1 ]; then
    log "kept $dir"
  else
    rm -rf "$dir"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# The bus daemon's own chatter (e.g. "Failed to set fd limit" as root) goes to a log.
printf '#!/bin/sh\nexec dbus-daemon "$@" 2>>"%s/dbus.log"\n' "$dir" >"$dir/dbus-daemon"
chmod 700 "$dir/dbus-daemon"

# setsid: a new process group, so that cleanup can stop everything the session started.
setsid --wait dbus-run-session --dbus-daemon="$dir/dbus-daemon" -- bash "$self" --inner "$@" &
session_pid=$!
wait "$session_pid"
rc=$?
exit "$rc"
