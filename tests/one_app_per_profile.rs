//! One Talkbell per profile, and `talkbell status`, as a user meets them: real daemons and
//! tray apps on one profile's dirs, the real relay, gnome-keyring and dunst. Run inside
//! scripts/desktop-session.sh.

mod common;

use std::process::{Output, Stdio};

use common::*;
use serde_json::{json, Value};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The exit code of a tray app or daemon that found its profile held
/// (talkbell_core::app::EXIT_ALREADY_RUNNING).
const ALREADY_RUNNING: i32 = 75;

/// A second daemon on `app`'s profile, run to its end: it must refuse, naming `pid`.
fn assert_refused_by_daemon(out: &Output, pid: u32) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(ALREADY_RUNNING), "{err}");
    assert!(err.contains("talkbell-daemon is already running for this profile"), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains("systemctl --user stop talkbell-daemon"), "{err}");
    assert!(!err.contains("state=\"connect"), "the second one connected: {err}");
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn a_second_daemon_on_a_profile_says_which_one_runs_and_exits_and_the_first_carries_on() {
    require_desktop_session();
    let relay = Relay::start();
    let app = App::new();
    let mut first = app.signed_in_daemon(&relay);
    let pid = first.pid().unwrap();

    // Both ways a daemon starts: `talkbell daemon` (which becomes talkbell-daemon) and
    // the binary itself, as the systemd unit runs it.
    assert_refused_by_daemon(&output_within_patience(app.command().arg("daemon")), pid);
    assert_refused_by_daemon(&output_within_patience(&mut app.daemon_bin_command()), pid);
    assert!(first.is_running(), "the first daemon ended: {}", first.log.text());

    // The first one still pops up each talk, once.
    let marker = format!("still here {}", std::process::id());
    relay.send(2, 1, &marker);
    eventually("the popup", || (popups_with(&marker) == 1).then_some(()));
    let after = format!("and again {}", std::process::id());
    relay.send(2, 1, &after);
    eventually("the second popup", || (popups_with(&after) == 1).then_some(()));
    assert_eq!(popups_with(&marker), 1, "the first talk popped up twice");
    assert_eq!(first.log.count("state=\"connected\""), 1, "the first daemon reconnected");

    // Another profile is another app: its daemon runs beside the first.
    let other = App::new();
    assert!(other.login(&relay.url(), relay.token(3), &[]).status.success());
    let mut beside = other.daemon();
    beside.wait_connected(1);
    assert!(beside.is_running() && first.is_running());
    beside.stop();

    // SIGKILL: no goodbye, and the OS releases the lock with the process.
    first.kill();
    let mut next = app.daemon();
    next.wait_connected(1);
    let status = app.status_json();
    assert_eq!(status["process"], json!({"kind": "daemon", "pid": next.pid().unwrap()}));
    next.stop();
}

/// `talkbell status --json` until `pred` holds for it.
fn wait_status(app: &App, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually(what, || Some(app.status_json()).filter(|s| pred(s)))
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn status_tells_the_state_why_the_server_user_and_unread_and_never_believes_a_dead_daemon() {
    require_desktop_session();
    let mut relay = Relay::start();
    let app = App::new();
    assert!(app.login(&relay.url(), relay.token(1), &[]).status.success());
    let url = relay.url();

    // Nothing runs: the server and user come from the config.
    let expect_idle = json!({"running": false, "process": null, "state": "not-running", "reason": null,
        "reason_kind": null, "offline_reason": null, "retry_at_ms": null, "server": url, "user": "1", "user_name": null, "user_unknown": false, "unread": 0});
    assert_eq!(app.status_json(), expect_idle);
    let text = app.status_text();
    assert!(text.starts_with("State:    not running\n"), "{text}");
    assert!(text.contains(&format!("Server:   {url}\n")), "{text}");

    let mut daemon = app.daemon();
    daemon.wait_connected(1);
    let pid = daemon.pid().unwrap();
    for i in 1..=3 {
        relay.send(2, 1, &format!("unread #{i}"));
    }
    eventually("the three talks", || (app.history_texts().len() == 3).then_some(()));
    let connected = wait_status(&app, "connected", |s| s["state"] == "connected" && s["unread"] == 3);
    assert_eq!(
        connected,
        json!({"running": true, "process": {"kind": "daemon", "pid": pid}, "state": "connected", "reason": null,
            "reason_kind": null, "offline_reason": null, "retry_at_ms": null, "server": url, "user": "1", "user_name": "wang1", "user_unknown": false, "unread": 3})
    );
    let text = app.status_text();
    for line in [
        "State:    connected\n".to_owned(),
        format!("Process:  talkbell-daemon, pid {pid}\n"),
        format!("Server:   {url}\n"),
        "User:     wang1 (id 1)\n".to_owned(),
        "Unread:   3\n".to_owned(),
    ] {
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }

    // The relay goes away: offline, and why.
    relay.kill();
    let offline = wait_status(&app, "offline", |s| s["state"] == "offline");
    let reason = offline["reason"].as_str().unwrap_or_else(|| panic!("no reason: {offline}")).to_owned();
    assert!(!reason.is_empty());
    // The daemon publishes why, typed; the words are this process's.
    let kind = offline["offline_reason"]["kind"].as_str().unwrap_or_else(|| panic!("no typed reason: {offline}"));
    assert!(["refused", "closed", "lost", "heartbeat-timeout"].contains(&kind), "{offline}");
    assert!(offline["retry_at_ms"].is_u64(), "{offline}");
    assert_eq!((&offline["server"], &offline["user"], &offline["unread"]), (&json!(url), &json!("1"), &json!(3)));
    let text = app.status_text();
    assert!(text.contains("State:    offline\n") && text.contains("Next try: in "), "{text}");
    let said = text.lines().find_map(|l| l.strip_prefix("Reason:   ")).unwrap_or_else(|| panic!("{text}"));
    assert!(!said.is_empty(), "{text}");

    // Killed: its last status file stays behind, and is not believed.
    daemon.kill();
    let left: Value = serde_json::from_slice(&std::fs::read(app.data_dir().join("status.json")).unwrap()).unwrap();
    assert_eq!((&left["state"], &left["process"]["pid"]), (&json!("offline"), &json!(pid)), "{left}");
    assert_eq!(
        app.status_json(),
        json!({"running": false, "process": null, "state": "not-running", "reason": null,
        "reason_kind": null, "offline_reason": null, "retry_at_ms": null, "server": url, "user": "1", "user_name": null, "user_unknown": false, "unread": 3})
    );
    assert!(app.status_text().starts_with("State:    not running\n"));
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn status_of_a_daemon_with_no_account_is_signed_out() {
    require_desktop_session();
    let app = App::new();
    let mut daemon = app.daemon();
    let pid = daemon.pid().unwrap();
    let status = wait_status(&app, "signed out", |s| s["state"] == "signed-out");
    assert_eq!(
        status,
        json!({"running": true, "process": {"kind": "daemon", "pid": pid}, "state": "signed-out", "reason": null,
            "reason_kind": null, "offline_reason": null, "retry_at_ms": null, "server": null, "user": null, "user_name": null, "user_unknown": false, "unread": 0})
    );
    let text = app.status_text();
    assert!(
        text.contains("State:    signed out\nReason:   not signed in: run `talkbell login --server URL`\n"),
        "{text}"
    );
    daemon.stop();
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst, Xvfb)"]
fn the_tray_app_and_the_daemon_refuse_each_others_profile_and_say_so() {
    require_desktop_session();
    let relay = Relay::start();
    let app = App::new();
    let mut daemon = app.signed_in_daemon(&relay);
    let pid = daemon.pid().unwrap();

    // From the app menu there is no terminal: the refusal is a popup as well.
    let out = output_within_patience(app.command().arg("--hidden"));
    assert_refused_by_daemon(&out, pid);
    assert_eq!(closed_popups_with(&format!("talkbell-daemon is already running for this profile (pid {pid}")), 1);
    let shown = dunst_history();
    let (title, body) = shown.iter().find(|(_, b)| b.contains(&format!("pid {pid}"))).unwrap();
    assert_eq!(title, "Talkbell is already running");
    assert!(body.contains("systemctl --user stop talkbell-daemon"), "{body}");
    assert!(daemon.is_running());
    daemon.stop();

    // The tray app holds the profile: a daemon is refused, naming it; a second tray app
    // still hands over to the first (its single-instance check comes before the lock).
    let mut tray = app.command().arg("--hidden").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let tray_pid = tray.id();
    let status = wait_status(&app, "the tray app connected", |s| s["state"] == "connected");
    assert_eq!(status["process"], json!({"kind": "tray-app", "pid": tray_pid}));
    let out = output_within_patience(&mut app.daemon_bin_command());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(ALREADY_RUNNING), "{err}");
    assert!(
        err.contains(&format!("the Talkbell tray app is already running for this profile (pid {tray_pid}")),
        "{err}"
    );
    assert!(err.contains("Quit it from its tray menu (Quit)"), "{err}");
    let second = output_within_patience(app.command().arg("--hidden"));
    assert!(second.status.success(), "the second tray app: {}", stderr(&second));
    assert!(!stderr(&second).contains("already running for this profile"), "{}", stderr(&second));
    assert!(tray.try_wait().unwrap().is_none(), "the tray app ended");
    let _ = tray.kill();
    let _ = tray.wait();
}

#[test]
fn both_binaries_speak_the_language_of_the_locale_or_of_the_setting() {
    let chinese = App::in_locale("zh_CN.UTF-8");
    let about = [(talkbell_bin(), "有人对你说话时提醒你。"), (talkbell_daemon_bin(), "无窗口的 Talkbell")];
    for (bin, words) in &about {
        let out = output_within_patience(chinese.command_of(bin).arg("--help"));
        assert!(String::from_utf8_lossy(&out.stdout).contains(words), "{}: {}", bin.display(), stderr(&out));
    }
    let out = output_within_patience(chinese.command().args(["history", "--limit", "0"]));
    assert_eq!(stderr(&out).trim(), "talkbell：--limit 至少为 1");
    // The setting wins over the locale, both ways.
    let english = App::new();
    let dir = english.config_home().join("talkbell");
    std::fs::create_dir_all(&dir).unwrap();
    let config = "device_uuid = \"5f0c2b1e-1111-4222-8333-444455556666\"\nlanguage = \"zh-CN\"\n";
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let out = output_within_patience(english.command().arg("history"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "（还没有消息）", "{}", stderr(&out));
    let dir = chinese.config_home().join("talkbell");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), config.replace("zh-CN", "en")).unwrap();
    let out = output_within_patience(chinese.command().arg("history"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "(no talks yet)", "{}", stderr(&out));
}

#[test]
fn both_binaries_print_the_package_version_and_help() {
    let version = env!("CARGO_PKG_VERSION");
    let app = App::new();
    for (bin, name) in [(talkbell_bin(), "talkbell"), (talkbell_daemon_bin(), "talkbell-daemon")] {
        let out = output_within_patience(app.command_of(&bin).arg("--version"));
        assert!(out.status.success(), "{name} --version: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{name} {version}\n"));
        let out = output_within_patience(app.command_of(&bin).arg("--help"));
        assert!(out.status.success(), "{name} --help: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("Usage: {name}")), "{name} --help");
    }
    let help = output_within_patience(app.command_of(&talkbell_daemon_bin()).arg("--help"));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("TALKBELL_DATA_DIR") && help.contains("One Talkbell runs per profile"), "{help}");
}
