//! Issue 10, point 11: a locked keyring does not stop the daemon. The real daemon binary,
//! the real relay, gnome-keyring and dunst in the private session of
//! scripts/desktop-session.sh: the login keyring is locked before the daemon starts, and
//! unlocked through gnome-keyring's control socket as PAM does at login.
//!
//! The test locks the keyring the whole session shares: it is the only test of this
//! binary, and cargo runs test binaries one after the other.

mod common;
#[path = "../crates/core/tests/support_keyring/mod.rs"]
mod keyring;

use common::*;
use keyring::{keyring_password, lock_login, login_is_locked, unlock_login, UnlockOnDrop};

const LOCKED: &str = "the keyring is locked: unlock it to connect";

/// Lines of `log` at WARN that contain `text`.
fn warnings_with(log: &Log, text: &str) -> usize {
    log.lines().iter().filter(|l| l.contains("WARN") && l.contains(text)).count()
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn with_the_keyring_locked_the_daemon_runs_signed_out_says_why_and_connects_once_unlocked() {
    require_desktop_session();
    let relay = Relay::start();
    let app = App::new();
    let token = relay.token(1).to_owned();
    let out = app.login(&relay.url(), &token, &[]);
    assert!(out.status.success(), "login: {}", String::from_utf8_lossy(&out.stderr));

    let _unlock = UnlockOnDrop;
    lock_login();
    assert!(login_is_locked());
    let mut daemon = app.daemon();
    let status = eventually("`talkbell status` to say the keyring is locked", || {
        let status = app.status_json();
        (status["reason"] == LOCKED).then_some(status)
    });
    assert_eq!(status["state"], "signed-out", "{status}");
    assert_eq!(status["reason_kind"], "keyring-locked", "{status}");
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["process"]["kind"], "daemon", "{status}");
    assert!(app.status_text().contains(&format!("Reason:   {LOCKED}\n")), "{}", app.status_text());
    eventually("the warning in the daemon's log", || (warnings_with(&daemon.log, LOCKED) == 1).then_some(()));
    assert!(daemon.is_running(), "the daemon exited:\n{}", daemon.log.text());
    assert_eq!(daemon.log.count("state=\"connected\""), 0);

    assert_eq!(unlock_login(&keyring_password()).expect("control socket"), 0, "unlocked");
    daemon.wait_connected(1);
    eventually("`talkbell status` to say connected", || {
        let status = app.status_json();
        (status["state"] == "connected").then_some(status)
    });
    let marker = format!("after the unlock {}", std::process::id());
    relay.post(2, 1, &marker).expect("POST /v1/talk");
    eventually("the popup", || (closed_popups_with(&marker) == 1).then_some(()));

    assert_eq!(warnings_with(&daemon.log, LOCKED), 1, "the reason is logged once:\n{}", daemon.log.text());
    daemon.stop();
    assert!(!daemon.log.text().contains(&token), "token in the log");
}
