//! Hostile input against the real binaries (issue 10, the client's side): `talkbell login`
//! and `talkbell-daemon` at `RUST_LOG=trace` never log the token (nor its hex, as
//! tungstenite writes frames); a talk with a NUL and escape sequences pops up cleaned, is
//! kept verbatim in the history, and reaches the terminal escaped. Run inside
//! scripts/desktop-session.sh (real relay, gnome-keyring, dunst).

mod common;

use common::*;

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Whether `log` shows `token` in any form a logger writes bytes in.
fn shows(log: &str, token: &str) -> Option<&'static str> {
    let spaced: String = token.bytes().map(|b| format!("{b:02x} ")).collect();
    let decimal: String = token.bytes().map(|b| format!("{b}, ")).collect();
    [("plain", token.to_owned()), ("hex", hex(token)), ("spaced hex", spaced), ("decimal bytes", decimal)]
        .into_iter()
        .find(|(_, form)| log.contains(form.trim_end_matches([' ', ','])))
        .map(|(what, _)| what)
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn at_trace_level_no_log_shows_the_token_login_keyring_write_and_daemon_included() {
    require_desktop_session();
    let relay = Relay::start();
    let app = App::new();
    let token = relay.token(1).to_owned();

    let mut login = app.command();
    login.env("RUST_LOG", "trace").args(["login", "--server", &relay.url()]);
    let out = {
        use std::io::Write;
        let mut child = login
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "login failed: {stderr}");
    // RUST_LOG is followed (the capped libraries aside, little logs at trace).
    assert!(stderr.contains(" DEBUG "), "RUST_LOG=trace is followed: {stderr}");
    assert_eq!(secret_tool_lookup(&relay.url()).as_deref(), Some(token.as_str()), "the keyring write happened");
    assert_eq!(shows(&stderr, &token), None, "login's log shows the token:\n{stderr}");

    let mut cmd = app.daemon_bin_command();
    cmd.env("RUST_LOG", "trace,tungstenite::protocol=trace,zbus::connection=trace");
    let mut daemon = Daemon::spawn(cmd);
    daemon.wait_connected(1);
    let marker = format!("trace marker {}", std::process::id());
    relay.send(2, 1, &marker);
    eventually("the popup", || (closed_popups_with(&marker) == 1).then_some(()));
    daemon.stop();
    let log = daemon.log.text();
    assert!(log.contains(" DEBUG "), "RUST_LOG=trace is followed: {log}");
    assert_eq!(shows(&log, &token), None, "the daemon's log shows the token:\n{log}");
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn a_talk_with_a_nul_and_escapes_pops_up_cleaned_is_kept_verbatim_and_printed_escaped() {
    require_desktop_session();
    let relay = Relay::start();
    let app = App::new();
    let mut daemon = app.signed_in_daemon(&relay);

    let tag = format!("hostile {}", std::process::id());
    let text = format!("{tag} a\u{0}b\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}H end");
    relay.post(2, 1, &text).expect("the relay takes the talk");
    let cleaned = format!("{tag} a\u{fffd}b\u{fffd}]0;pwned\u{fffd}\u{fffd}[2J\u{fffd}H end");
    eventually("the cleaned popup", || (closed_popups_with(&cleaned) == 1).then_some(()));

    // The history keeps the talk as it came.
    assert_eq!(app.history_texts(), std::slice::from_ref(&text));
    // `history --json` is JSON: every control character is escaped, and it reads back.
    let out = app.command().args(["history", "--json"]).output().unwrap();
    assert!(out.status.success());
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(!json.chars().any(|c| c.is_control() && c != '\n'), "{json:?}");
    // And the text output escapes them.
    let out = app.command().arg("history").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!printed.chars().any(|c| c.is_control() && c != '\n'), "{printed:?}");
    assert!(
        printed.contains(&format!("{tag} a\\u{{0}}b\\u{{1b}}]0;pwned\\u{{7}}\\u{{1b}}[2J\\u{{9b}}H end")),
        "{printed}"
    );
    daemon.stop();
}
