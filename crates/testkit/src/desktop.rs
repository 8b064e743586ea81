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

/// `xwininfo -root -tree` of the session's X screen, one line a window, indented by depth
/// (empty if xwininfo fails).
pub fn x_tree() -> Vec<String> {
    let out = std::process::Command::new("xwininfo").args(["-root", "-tree"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect()).unwrap_or_default()
}

/// The absolute geometry (w, h, x, y) of the first window whose line in [`x_tree`]
/// contains `needle` (e.g. `("panel" "trayer")`, its class).
pub fn x_window(needle: &str) -> Option<(u32, u32, i32, i32)> {
    let line = x_tree().into_iter().find(|l| l.contains(needle))?;
    // "...  32x30+0+0  +1246+769"
    let mut fields = line.split_whitespace().rev();
    let abs = fields.next()?;
    let rel = fields.next()?;
    let (w, h) = rel.split_once('+')?.0.split_once('x')?;
    let abs = abs.strip_prefix('+').unwrap_or(abs);
    let (x, y) = abs.split_once('+').or_else(|| abs.split_once('-'))?;
    Some((w.parse().ok()?, h.parse().ok()?, x.parse().ok()?, y.parse().ok()?))
}

/// What `TALKBELL_DESKTOP_NOTIFICATIONS=none` tells scripts/desktop-session.sh: start no
/// notification daemon, leaving `org.freedesktop.Notifications` to the test.
const NO_NOTIFICATION_DAEMON: (&str, &str) = ("TALKBELL_DESKTOP_NOTIFICATIONS", "none");

/// For a test that brings its own notification service (e.g.
/// [`crate::notifications::NotificationService`]): the desktop session runs dunst, which
/// owns the service's name, so the test runs again, alone, in a private desktop session
/// of its own without one. Returns true in that inner run (the test goes on); in the
/// outer one it runs the inner, panics unless it passed, and returns false (the test
/// ends there). `test` is the test's name as `cargo test --exact` takes it.
pub fn without_notification_daemon(test: &str) -> bool {
    let (var, none) = NO_NOTIFICATION_DAEMON;
    if std::env::var(var).is_ok_and(|v| v == none) {
        require_session();
        return no_notification_daemon_here();
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/desktop-session.sh");
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("this test's binary: {e}"));
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg(exe)
        .args(["--exact", test, "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(var, none)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/desktop-session.sh: {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} in a session without a notification daemon failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    false
}

/// True; panics if dunst runs after all (the inner run would test dunst instead of the
/// test's service).
fn no_notification_daemon_here() -> bool {
    let dunst = std::process::Command::new("dunstctl").arg("count").output();
    assert!(!dunst.is_ok_and(|o| o.status.success()), "dunst runs in a session that should have none");
    true
}
