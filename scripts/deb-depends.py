#!/usr/bin/env python3
"""Prints the Tauri config fragment with the desktop app's Debian Depends, computed from
the binaries given (dpkg-shlibdeps), for `tauri bundle --config`.

The appindicator library is added by name: libappindicator-sys opens it at run time
(dlopen), so no linker and no dpkg-shlibdeps can see it, yet the tray needs it. The
bundler itself adds libwebkit2gtk-4.1-0 and libgtk-3-0 unversioned; the versioned ones
below are the binding ones."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

RUNTIME_LOADED = ["libayatana-appindicator3-1"]


def shlibs_depends(binaries):
    # dpkg-shlibdeps reads debian/control of the package being built: give it a minimal one.
    with tempfile.TemporaryDirectory() as work:
        os.makedirs(os.path.join(work, "debian"))
        with open(os.path.join(work, "debian", "control"), "w") as f:
            f.write("Source: talkbell\n\nPackage: talkbell\nArchitecture: any\n")
        args = ["dpkg-shlibdeps", "-O"] + ["-e" + os.path.abspath(b) for b in binaries]
        out = subprocess.run(args, cwd=work, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("shlibs:Depends="):
            return [d.strip() for d in line.split("=", 1)[1].split(",") if d.strip()]
    sys.exit("deb-depends: dpkg-shlibdeps printed no shlibs:Depends")


def main():
    if len(sys.argv) < 2 or not shutil.which("dpkg-shlibdeps"):
        sys.exit("usage: deb-depends.py BINARY... (needs dpkg-shlibdeps, from dpkg-dev)")
    depends = shlibs_depends(sys.argv[1:]) + RUNTIME_LOADED
    print(json.dumps({"bundle": {"linux": {"deb": {"depends": depends}}}}))


if __name__ == "__main__":
    main()
