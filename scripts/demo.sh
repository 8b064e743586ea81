#!/usr/bin/env bash
# The README's run command: installs what is needed, builds, starts a relay with two demo
# users, signs the app in as one of them, starts the tray app with its window, and has
# the other user talk to it every few seconds.
#
# On a desktop (a D-Bus session with a Secret Service and a notification daemon) the
# popups appear on your screen and the token goes into your keyring, under the demo
# server's URL. Without one (SSH, a container), it runs inside a private session
# (scripts/desktop-session.sh) and prints each popup dunst shows.
#
#   bash scripts/demo.sh              # until Ctrl-C
#   DEMO_SECONDS=30 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ -z "${TALKBELL_DEMO_INNER:-}" ]; then
  bash scripts/install-deps.sh core gui
  cargo build --locked -p talkbell -p talkbell-relay
  export TALKBELL_DEMO_INNER=1
  if [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] && { [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; }; then
    exec bash "$0" "$@"
  fi
  echo "demo: no desktop session here; running in a private one (popups are printed below)"
  exec bash scripts/desktop-session.sh bash "$0" "$@"
fi

bin="$root/target/debug"
demo="$root/.tmp/demo"
rm -rf "$demo"
mkdir -p "$demo"
# The demo's config and history live beside the checkout, not in your own dirs.
export TALKBELL_CONFIG_DIR="$demo/config" TALKBELL_DATA_DIR="$demo/data"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
server="ws://127.0.0.1:$port/"
token_me=$("$bin/talkbell-relay" add-user --users "$demo/users.toml" --id 1 --name wang1)
token_friend=$("$bin/talkbell-relay" add-user --users "$demo/users.toml" --id 2 --name wang2)

"$bin/talkbell-relay" serve --listen "127.0.0.1:$port" --users "$demo/users.toml" --db "$demo/relay.db" \
  2>"$demo/relay.log" &
pids+=($!)
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

printf '%s' "$token_me" | "$bin/talkbell" login --server "$server"

# In a private session there is no tray: give the icon a plain XEmbed one to sit in.
if [ -n "${TALKBELL_DESKTOP_SESSION:-}" ] && command -v trayer >/dev/null; then
  trayer --edge bottom --align right --widthtype pixel --width 120 --heighttype pixel --height 32 \
    --SetDockType true >/dev/null 2>&1 &
  pids+=($!)
fi

# The tray app, with its window open (DEMO_HIDDEN=1: tray only). Its log: $demo/app.log.
"$bin/talkbell" ${DEMO_HIDDEN:+--hidden} 2>"$demo/app.log" &
app_pid=$!
pids+=("$app_pid")

# wang2 talks to wang1 every few seconds.
(
  n=0
  lines=("hello" "are you there?" "lunch at noon?" "the build is green" "see you tomorrow")
  while true; do
    sleep 4
    text="${lines[$((n % ${#lines[@]}))]}"
    n=$((n + 1))
    TALKBELL_TOKEN="$token_friend" "$bin/talkbell-relay" send --server "$server" --to 1 "$text" >/dev/null \
      && echo "demo: wang2 → wang1: $text"
  done
) &
pids+=($!)

# In a private session nobody sees the screen: print what dunst shows instead.
if [ -n "${TALKBELL_DESKTOP_SESSION:-}" ] && command -v dunstctl >/dev/null; then
  (
    seen=0
    while true; do
      sleep 1
      count=$(dunstctl history | jq '.data[0] | length' 2>/dev/null || echo 0)
      if [ "$count" -gt "$seen" ]; then
        dunstctl history | jq -r ".data[0][0:$((count - seen))] | reverse[] | \"popup: \(.summary.data): \(.body.data)\""
        seen=$count
      fi
    done
  ) &
  pids+=($!)
fi

echo "demo: relay on $server; signed in as wang1; Ctrl-C to stop."
echo "demo: history so far: TALKBELL_DATA_DIR=$demo/data $bin/talkbell history"
if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
  "$bin/talkbell" history
else
  # Until Ctrl-C, or Quit in the tray menu.
  wait "$app_pid"
fi
