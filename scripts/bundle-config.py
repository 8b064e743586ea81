#!/usr/bin/env python3
"""Prints the Tauri config that scripts/package.sh merges in (`tauri bundle --config`):
the .deb's Depends, computed from the binaries given (dpkg-shlibdeps), and its changelog
gzipped where Debian keeps it (the bundler's own changelog option puts it under the
product name, /usr/share/doc/Talkbell, where lintian does not look).

    bundle-config.py CHANGELOG_GZ BINARY...

The bundler adds three names of its own, unversioned: libwebkit2gtk-4.1-0, libgtk-3-0
and, for the tray, libayatana-appindicator3-1, which libappindicator-sys opens at run
time (dlopen), so that no dpkg-shlibdeps can see it. The versioned names from here are
the binding ones."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

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
    sys.exit("bundle-config: dpkg-shlibdeps printed no shlibs:Depends")


def main():
    if len(sys.argv) < 3 or not shutil.which("dpkg-shlibdeps"):
        sys.exit("usage: bundle-config.py CHANGELOG_GZ BINARY... (needs dpkg-shlibdeps, from dpkg-dev)")
    changelog, binaries = os.path.abspath(sys.argv[1]), sys.argv[2:]
    deb = {
        "depends": shlibs_depends(binaries),
        "files": {"/usr/share/doc/talkbell/changelog.gz": changelog},
    }
    print(json.dumps({"bundle": {"linux": {"deb": deb}}}))


if __name__ == "__main__":
    main()
