"""Prints, as JSON, the talks the Talkbell window shows, as assistive technology (a screen
reader) reads them over AT-SPI: the text of each item of the list "Talks, newest first",
top first. Usage: atspi_texts.py PID. Needs Debian's python3-gi and gir1.2-atspi-2.0."""

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


def text_of(node):
    return Atspi.Text.get_text(node, 0, -1) if node.get_text_iface() is not None else ""


def main():
    pid = int(sys.argv[1])
    desktop = Atspi.get_desktop(0)
    apps = [desktop.get_child_at_index(i) for i in range(desktop.get_child_count())]
    app = next((a for a in apps if a is not None and a.get_process_id() == pid), None)
    if app is None:
        print(json.dumps(None))
        return
    talks = find(app, lambda n: n.get_name() == "Talks, newest first")
    if talks is None:
        print(json.dumps(None))
        return
    shown = []
    for i in range(talks.get_child_count()):
        item = talks.get_child_at_index(i)
        para = find(item, lambda n: n.get_role() == Atspi.Role.PARAGRAPH)
        shown.append(text_of(para) if para is not None else "")
    print(json.dumps(shown))


if __name__ == "__main__":
    main()
