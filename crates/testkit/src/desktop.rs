//! The private desktop session of scripts/desktop-session.sh (Xvfb, a D-Bus session bus,
//! gnome-keyring, dunst), which sets `TALKBELL_DESKTOP_SESSION`.

use std::path::PathBuf;

/// Whether this process runs inside the private desktop session.
pub fn in_session() -> bool {
    std::env::var_os("TALKBELL_DESKTOP_SESSION").is_some()
}

/// Panics outside the private desktop session: a desktop test must fail loudly there
/// rather than pass without having tested anything.
pub fn require_session() {
    assert!(
        in_session(),
        "this test needs the private desktop session: run it through scripts/desktop-session.sh \
         (e.g. `bash scripts/desktop-session.sh cargo test … -- --include-ignored`)"
    );
}

/// `name` on `PATH`, if it is there.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// trayer's flags for a plain XEmbed tray at the bottom right, as a desktop has one.
pub const TRAYER_ARGS: &[&str] = &[
    "--edge",
    "bottom",
    "--align",
    "right",
    "--widthtype",
    "pixel",
    "--width",
    "120",
    "--heighttype",
    "pixel",
    "--height",
    "32",
    "--SetDockType",
    "true",
];
