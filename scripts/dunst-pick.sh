#!/usr/bin/env bash
# dunst's "dmenu" in the session of scripts/desktop-session.sh. dunst 1.9 runs it for its
# context menu (`dunstctl context`, `dunstctl action`), writes the menu's entries on its
# standard input, one a line (an action reads `#<label> (<summary>) [<id>,<key>]`), and
# invokes what it prints. It prints the first entry holding the text of the file
# $TALKBELL_DESKTOP_DIR/dunst-pick, as a person picking from the menu would; nothing
# (the menu dismissed) when there is no such file or entry. Every menu goes to
# $TALKBELL_DESKTOP_DIR/dunst-menus.log, for a test that wants to know what was offered.
set -u
menu="$(cat)"
printf '%s\n--\n' "$menu" >>"$TALKBELL_DESKTOP_DIR/dunst-menus.log"
pick="$(cat "$TALKBELL_DESKTOP_DIR/dunst-pick" 2>/dev/null)" || exit 1
[ -n "$pick" ] || exit 1
printf '%s\n' "$menu" | grep -F -m1 -- "$pick"
