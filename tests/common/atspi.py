"""Reads and works the Talkbell app as assistive technology (a screen reader) does, over
AT-SPI. Needs Debian's python3-gi and gir1.2-atspi-2.0. Prints JSON.

  atspi.py PID history      the talks the window shows, top first (null: no window)
  atspi.py PID menu         the open tray menu's items: [[name, enabled], ...] (null: none)
  atspi.py PID click NAME   clicks the open tray menu's item NAME: true, or false if absent
"""

import json
import sys

import gi

gi.require_version("Atspi", "2.0")
from gi.repository import Atspi  # noqa: E402


def find(node, pred, depth=0):
    if node is None or depth > 40:
        return None
    if pred(node):
        return node
    for i in range(node.get_child_count()):
        hit = find(node.get_child_at_index(i), pred, depth + 1)
        if hit is not None:
            return hit
    return None


def find_all(node, pred, depth=0, found=None):
    found = [] if found is None else found
    if node is None or depth > 40:
        return found
    if pred(node):
        found.append(node)
    for i in range(node.get_child_count()):
        find_all(node.get_child_at_index(i), pred, depth + 1, found)
    return found


def text_of(node):
    return Atspi.Text.get_text(node, 0, -1) if node.get_text_iface() is not None else ""


def app_of(pid):
    desktop = Atspi.get_desktop(0)
    for i in range(desktop.get_child_count()):
        app = desktop.get_child_at_index(i)
        if app is not None and app.get_process_id() == pid:
            return app
    return None


def history(app):
    talks = find(app, lambda n: n.get_name() == "Talks, newest first")
    if talks is None:
        return None
    shown = []
    for i in range(talks.get_child_count()):
        para = find(talks.get_child_at_index(i), lambda n: n.get_role() == Atspi.Role.PARAGRAPH)
        # A day's heading ("Today") has no paragraph: it is not a talk.
        if para is not None:
            shown.append(text_of(para))
    return shown


def menu_items(app):
    menu = find(app, lambda n: n.get_role() == Atspi.Role.MENU and n.get_parent().get_role() == Atspi.Role.WINDOW)
    if menu is None:
        return None
    roles = (Atspi.Role.MENU_ITEM, Atspi.Role.MENU)
    return find_all(menu, lambda n: n.get_role() in roles and n is not menu)


def enabled(node):
    return node.get_state_set().contains(Atspi.StateType.SENSITIVE)


def main():
    pid, what = int(sys.argv[1]), sys.argv[2]
    app = app_of(pid)
    if what == "history":
        print(json.dumps(history(app) if app is not None else None))
    elif what == "menu":
        items = menu_items(app) if app is not None else None
        print(json.dumps(None if items is None else [[n.get_name(), enabled(n)] for n in items]))
    elif what == "click":
        items = (menu_items(app) if app is not None else None) or []
        item = next((n for n in items if n.get_name() == sys.argv[3]), None)
        if item is not None:
            Atspi.Action.do_action(item, 0)
        print(json.dumps(item is not None))
    else:
        sys.exit(f"unknown request {what!r}")


if __name__ == "__main__":
    main()
