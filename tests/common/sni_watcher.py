"""A stand-in StatusNotifierWatcher: what KDE Plasma, GNOME's AppIndicator extension and
other StatusNotifier hosts provide on the session bus. It owns the watcher's name, says a
host is there, and prints each item that registers as a JSON line on standard output:
{"sender": ":1.42", "service": "/org/ayatana/NotificationItem/..."}. Runs until killed.
Needs Debian's python3-gi."""

import json

from gi.repository import GLib
from stand_in import serve

XML = """
<node>
  <interface name="org.kde.StatusNotifierWatcher">
    <method name="RegisterStatusNotifierItem"><arg name="service" type="s" direction="in"/></method>
    <method name="RegisterStatusNotifierHost"><arg name="service" type="s" direction="in"/></method>
    <property name="RegisteredStatusNotifierItems" type="as" access="read"/>
    <property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
    <property name="ProtocolVersion" type="i" access="read"/>
    <signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
    <signal name="StatusNotifierItemUnregistered"><arg type="s"/></signal>
    <signal name="StatusNotifierHostRegistered"/>
  </interface>
</node>
"""

items = []


def on_call(conn, sender, path, iface, method, params, invocation):
    if method == "RegisterStatusNotifierItem":
        service = params.unpack()[0]
        items.append(f"{sender}{service}" if service.startswith("/") else service)
        print(json.dumps({"sender": sender, "service": service}), flush=True)
        conn.emit_signal(None, path, iface, "StatusNotifierItemRegistered", GLib.Variant("(s)", (items[-1],)))
    invocation.return_value(None)


def on_get(conn, sender, path, iface, prop):
    return {
        "RegisteredStatusNotifierItems": GLib.Variant("as", items),
        "IsStatusNotifierHostRegistered": GLib.Variant("b", True),
        "ProtocolVersion": GLib.Variant("i", 0),
    }[prop]


serve("org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher", XML, on_call, on_get)
