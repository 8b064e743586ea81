"""What every stand-in D-Bus service of the tests does (talkbell_testkit::stand_in starts
them with this folder on PYTHONPATH): own a name on the session bus, serve one object
there, print {"ready": name} as a JSON line once the name is owned, exit if it is lost,
and run until killed. Needs Debian's python3-gi."""

import json
import sys

from gi.repository import Gio, GLib


def serve(name, path, xml, on_call, on_get=None):
    """Serves the interface of introspection `xml` at `path` under `name`: `on_call`
    answers its methods, `on_get` reads its properties. Never returns."""
    info = Gio.DBusNodeInfo.new_for_xml(xml).interfaces[0]

    def on_bus(conn, _name):
        conn.register_object(path, info, on_call, on_get, None)

    def on_name(_conn, owned):
        print(json.dumps({"ready": owned}), flush=True)

    def on_lost(_conn, lost):
        sys.exit(f"could not own {lost}")

    Gio.bus_own_name(Gio.BusType.SESSION, name, Gio.BusNameOwnerFlags.NONE, on_bus, on_name, on_lost)
    GLib.MainLoop().run()
