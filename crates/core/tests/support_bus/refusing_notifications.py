"""A stand-in notification service that refuses every popup: it owns
org.freedesktop.Notifications on the session bus, answers GetCapabilities and
GetServerInformation, and answers Notify with the D-Bus error
org.example.Talkbell.Error.Refused ("refused by the test"). Prints {"ready": name} as a
JSON line once it owns the name. Runs until killed. Needs Debian's python3-gi."""

from gi.repository import GLib
from stand_in import serve

XML = """
<node>
  <interface name="org.freedesktop.Notifications">
    <method name="Notify">
      <arg type="s" direction="in"/><arg type="u" direction="in"/><arg type="s" direction="in"/>
      <arg type="s" direction="in"/><arg type="s" direction="in"/><arg type="as" direction="in"/>
      <arg type="a{sv}" direction="in"/><arg type="i" direction="in"/><arg type="u" direction="out"/>
    </method>
    <method name="GetCapabilities"><arg type="as" direction="out"/></method>
    <method name="GetServerInformation">
      <arg type="s" direction="out"/><arg type="s" direction="out"/>
      <arg type="s" direction="out"/><arg type="s" direction="out"/>
    </method>
    <method name="CloseNotification"><arg type="u" direction="in"/></method>
  </interface>
</node>
"""


def on_call(conn, sender, path, iface, method, params, invocation):
    if method == "Notify":
        invocation.return_dbus_error("org.example.Talkbell.Error.Refused", "refused by the test")
    elif method == "GetCapabilities":
        invocation.return_value(GLib.Variant("(as)", (["body", "actions"],)))
    elif method == "GetServerInformation":
        invocation.return_value(GLib.Variant("(ssss)", ("refuser", "talkbell-tests", "1", "1.2")))
    else:
        invocation.return_value(None)


serve("org.freedesktop.Notifications", "/org/freedesktop/Notifications", XML, on_call)
