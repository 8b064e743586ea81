//! `talkbell login`, `talkbell daemon` and `talkbell history` as a user runs them: real
//! relay process, real Secret Service (gnome-keyring), real notification daemon (dunst),
//! real SQLite file. Run inside scripts/desktop-session.sh.

mod common;

use common::*;

const DESKTOP: &str = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)";

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn login_keeps_the_token_in_the_keyring_only_and_a_talk_pops_up_once() {
    require_desktop_session();
    let _ = DESKTOP;
    // Like the original servers: every talk goes to everyone, and the app picks its own.
    let relay = Relay::start_with(&["--deliver-to-all"]);
    let app = App::new();
    let token = relay.token(1).to_owned();

    let out = app.login(&relay.url(), &token, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "login failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("as user 1"), "{stdout}");
    assert_eq!(secret_tool_lookup(&relay.url()).as_deref(), Some(token.as_str()));

    let mut daemon = app.daemon();
    daemon.wait_connected(1);
    // Headless means headless: the process became talkbell-daemon and maps no GUI library.
    let pid = daemon.pid().expect("the daemon runs");
    let exe = talkbell_testkit::procfs::exe(pid).unwrap();
    assert!(exe.ends_with("talkbell-daemon"), "the daemon runs as {}", exe.display());
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    for lib in ["libwebkit2gtk", "libgtk-3", "libjavascriptcoregtk"] {
        assert!(!maps.contains(lib), "the headless daemon maps {lib}");
    }
    let marker = format!("hello from the test {}", std::process::id());
    relay.send(2, 1, &marker);
    eventually("the popup", || (popups_with(&marker) == 1).then_some(()));
    let shown = dunst_history();
    let (title, body) = shown.iter().find(|(_, b)| b.contains(&marker)).unwrap();
    assert_eq!(title, "wang2");
    assert_eq!(body, &marker);

    // A talk for someone else reaches this app too (see above): kept in the history,
    // never a popup.
    let other = format!("for wang3 only {}", std::process::id());
    relay.send(2, 3, &other);
    let after = format!("second for wang1 {}", std::process::id());
    relay.send(2, 1, &after);
    eventually("the second popup", || (popups_with(&after) == 1).then_some(()));
    assert_eq!(popups_with(&other), 0);
    assert_eq!(popups_with(&marker), 1, "the first talk popped up twice");

    let texts = app.history_texts();
    assert_eq!(texts, [after.clone(), other.clone(), marker.clone()], "newest first, nothing else");
    let theirs = app.history_json(&["--search", "wang3 only"]);
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["to"]["name"], "wang3");
    let found = app.history_json(&["--search", "second"]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["talk"], after.as_str());
    assert_eq!(found[0]["from"]["name"], "wang2");
    assert!(app.history_json(&["--search", "nowhere-to-be-found"]).is_empty());

    daemon.stop();
    assert_eq!(app.files_containing(&token), Vec::<std::path::PathBuf>::new(), "token on disk");
    assert!(!daemon.log.text().contains(&token), "token in the log");
    assert!(!relay.log.text().contains(&token), "token in the relay's log");
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn the_daemon_comes_back_after_the_relay_is_killed_and_catches_up_after_its_own_restart() {
    require_desktop_session();
    let mut relay = Relay::start();
    let app = App::new();
    let mut daemon = app.signed_in_daemon(&relay);
    relay.send(2, 1, "before the crash");
    eventually("the first talk", || app.history_texts().contains(&"before the crash".to_owned()).then_some(()));

    relay.kill();
    relay.spawn();
    daemon.wait_connected(2);
    relay.send(2, 1, "after the crash");
    eventually("the talk after the restart", || {
        app.history_texts().contains(&"after the crash".to_owned()).then_some(())
    });

    // Talks sent while the app is not running are replayed when it starts again.
    daemon.stop();
    relay.send(2, 1, "while you were away");
    let mut daemon = app.daemon();
    daemon.wait_connected(1);
    eventually("the replayed talk", || app.history_texts().contains(&"while you were away".to_owned()).then_some(()));
    let texts = app.history_texts();
    assert_eq!(texts, ["while you were away", "after the crash", "before the crash"]);
    daemon.stop();
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn a_refused_token_or_a_dead_server_fails_login_clearly_and_stores_nothing() {
    require_desktop_session();
    let relay = Relay::start();
    let app = App::new();

    let out = app.login(&relay.url(), "not-a-real-token", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("refused"), "{stderr}");
    assert_eq!(secret_tool_lookup(&relay.url()), None);

    let dead = format!("ws://127.0.0.1:{}/", free_port());
    let out = app.login(&dead, relay.token(1), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("could not reach"), "{stderr}");
    assert_eq!(secret_tool_lookup(&dead), None);

    let out = app.login("http://example.invalid/", relay.token(1), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("URL"));

    // Logging out removes the token again.
    assert!(app.login(&relay.url(), relay.token(1), &[]).status.success());
    assert!(secret_tool_lookup(&relay.url()).is_some());
    let out = app.command().arg("logout").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(secret_tool_lookup(&relay.url()), None);
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn another_account_on_the_same_server_gets_all_its_talks_and_its_own_resume() {
    require_desktop_session();
    let relay = Relay::start();
    let app = App::new();
    let mut daemon = app.signed_in_daemon(&relay);
    for i in 1..=3 {
        relay.send(2, 1, &format!("to wang1 #{i}"));
    }
    eventually("wang1's talks", || (app.history_texts().len() == 3).then_some(()));
    daemon.stop();

    // wang3 on the same device and server: the relay numbers wang3's talks from 1 again,
    // and they must not be taken for repeats of wang1's.
    let out = app.login(&relay.url(), relay.token(3), &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("as user 3"), "{}", String::from_utf8_lossy(&out.stderr));
    let mut daemon = app.daemon();
    daemon.wait_connected(1);
    relay.send(2, 3, "to wang3 #1");
    relay.send(2, 3, "to wang3 #2");
    let theirs = || app.history_texts().into_iter().filter(|t| t.starts_with("to wang3")).count();
    eventually("wang3's two talks", || (theirs() == 2).then_some(()));
    daemon.stop();

    // And wang3's own resume: a talk sent while the daemon is down comes on its return.
    relay.send(2, 3, "to wang3 while away");
    let mut daemon = app.daemon();
    daemon.wait_connected(1);
    eventually("the talk queued while away", || (theirs() == 3).then_some(()));
    daemon.stop();
    assert_eq!(app.history_texts().len(), 6);
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn a_relay_that_lost_its_database_gets_its_new_talks_through_and_the_user_is_told() {
    require_desktop_session();
    let mut relay = Relay::start();
    let app = App::new();
    let mut daemon = app.signed_in_daemon(&relay);
    let tag = std::process::id();
    let before = [format!("first of the old queue {tag}"), format!("second of the old queue {tag}")];
    for text in &before {
        relay.send(2, 1, text);
    }
    eventually("the old queue's talks", || (popups_with(&before[1]) == 1).then_some(()));

    // The operator loses the relay's database: its seqs start at 1 again, in a new epoch.
    relay.kill();
    let db = relay.dir.path().join("relay.db");
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        if file.exists() {
            std::fs::remove_file(&file).unwrap();
        }
    }
    relay.spawn();
    daemon.wait_connected(2);
    let after = format!("first of the new queue {tag}");
    assert_eq!(relay.send(2, 1, &after), 1, "a new queue numbers from 1");

    // Seq 1 again is not taken for a repeat of the old seq 1: stored, popped up, and the
    // log says that talks may be missing.
    eventually("the new queue's talk", || (popups_with(&after) == 1).then_some(()));
    let texts = app.history_texts();
    assert_eq!(texts, [after.as_str(), before[1].as_str(), before[0].as_str()]);
    assert_eq!(daemon.log.count("the server lost its queue"), 1, "{}", daemon.log.text());

    // Acking the new queue did not make the relay forget anything it had not delivered,
    // and the next start resumes in the new epoch: nothing is replayed twice.
    daemon.stop();
    let away = format!("while you were away {tag}");
    relay.send(2, 1, &away);
    let daemon = app.daemon();
    daemon.wait_connected(1);
    eventually("the replayed talk", || app.history_texts().contains(&away).then_some(()));
    assert_eq!(app.history_texts().len(), 4, "{:?}", app.history_texts());
    assert_eq!(daemon.log.count("the server lost its queue"), 0, "{}", daemon.log.text());
}

/// The local time of day `minutes` from now, `HH:MM`, as the daemon's clock reads it.
fn local_hh_mm(minutes: u32) -> String {
    let out = std::process::Command::new("date").args(["-d", &format!("+{minutes} min"), "+%H:%M"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn a_popups_mark_read_and_mute_are_done_by_the_daemon_itself() {
    require_desktop_session();
    // Before its popups show: no other test closes them before they are picked.
    let screen = picking_from_popups();
    // A sender's name no other test's popup has: dunst's menu lists every popup on screen.
    let name = format!("li{}", std::process::id());
    let relay = Relay::start_with_users(&[], &[(1, "wang1"), (2, &name), (3, "wang3")]);
    let app = App::new();
    let mut daemon = app.signed_in_daemon(&relay);
    let stored = |marker: &str| {
        eventually("the talk is stored", || app.history_texts().contains(&marker.to_owned()).then_some(()));
    };

    let first = format!("read me from the popup {}", std::process::id());
    relay.send(2, 1, &first);
    stored(&first);
    // Picked from the popup's menu (again, until it is on screen and done).
    eventually("marked read", || {
        dunst::pick(&format!("Mark read ({name})")).expect("the popup's menu");
        let entry = app.history_json(&["--search", "popup"]).into_iter().find(|e| e["talk"] == first.as_str())?;
        (entry["read"] == true).then_some(())
    });
    screen.close_all();

    let second = format!("then mute me {}", std::process::id());
    relay.send(2, 1, &second);
    stored(&second);
    eventually("the mute is saved", || {
        dunst::pick(&format!("Mute {name} for 1 hour ({name})")).expect("the popup's menu");
        let config = talkbell_core::config::Config::load_or_create(&app.config_file()).ok()?;
        config.notifications.mutes.iter().any(|m| m.sender == 2.into() && m.until.is_some()).then_some(())
    });
    screen.close_all();

    let muted = format!("muted talk {}", std::process::id());
    let after = format!("from someone else {}", std::process::id());
    relay.send(2, 1, &muted);
    relay.send(3, 1, &after);
    eventually("the other sender's popup", || (screen.closed_popups_with(&after) == 1).then_some(()));
    assert_eq!(screen.closed_popups_with(&muted), 0, "a muted sender popped up");
    let stored = app.history_json(&["--search", "muted"]);
    assert_eq!((stored.len(), &stored[0]["read"]), (1, &serde_json::Value::Bool(false)), "stored, unread");
    daemon.stop();
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn talks_in_quiet_hours_pop_up_as_one_when_they_end() {
    require_desktop_session();
    let name = format!("zhao{}", std::process::id());
    let relay = Relay::start_with_users(&[], &[(1, "wang1"), (2, &name)]);
    let app = App::new();
    let out = app.login(&relay.url(), relay.token(1), &[]);
    assert!(out.status.success(), "login failed: {}", String::from_utf8_lossy(&out.stderr));
    // Quiet from this minute for one to two minutes.
    let (from, to) = (local_hh_mm(0), local_hh_mm(2));
    app.edit_config(|c| {
        c.notifications.quiet_hours =
            Some(talkbell_core::notify::quiet::QuietHours { from: from.parse().unwrap(), to: to.parse().unwrap() })
    });
    let mut daemon = app.daemon();
    daemon.wait_connected(1);
    let (one, two) = (format!("quiet one {}", std::process::id()), format!("quiet two {}", std::process::id()));
    relay.send(2, 1, &one);
    relay.send(2, 1, &two);
    eventually("both stored", || (app.history_texts().len() == 2).then_some(()));
    let summary = format!("2 new messages from {name}");
    Poll::up_to(std::time::Duration::from_secs(240))
        .until("the popup at the end of quiet hours", || (closed_popups_with(&summary) == 1).then_some(()));
    assert_eq!(closed_popups_with(&one) + closed_popups_with(&two), 0, "a talk popped up in quiet hours");
    daemon.stop();
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn in_chinese_a_talk_pops_up_as_wang2_said_it_and_a_burst_reads_as_a_native_speaker_writes_it() {
    require_desktop_session();
    let relay = Relay::start();
    let app = App::in_locale("zh_CN.UTF-8");
    let out = app.login(&relay.url(), relay.token(1), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), format!("已登录到 {}，用户 1；令牌保存在密钥环中。", relay.url()));
    let mut daemon = app.daemon();
    daemon.wait_connected(1);

    // Six talks at once: the first two pop up one by one, the other four as one summary
    // (three from wang2, one from wang3).
    let tag = std::process::id();
    let talks = [(2, "一"), (2, "二"), (2, "三"), (3, "四"), (2, "五"), (2, "六")];
    for (from, text) in talks {
        relay.send(from, 1, &format!("{text} {tag}"));
    }
    let summary = "wang2 等 2 人发来 4 条消息";
    eventually("the summary", || dunst_history().iter().any(|(_, body)| body == summary).then_some(()));
    let shown = dunst_history();
    for text in ["一", "二"] {
        let body = format!("{text} {tag}");
        assert!(shown.contains(&("wang2 对你说".to_owned(), body.clone())), "{body}: {shown:?}");
    }
    assert!(shown.contains(&("新消息".to_owned(), summary.to_owned())), "{shown:?}");
    assert_eq!(popups_with(&format!("三 {tag}")), 0, "summarised, not shown: {shown:?}");

    let out = app.command().arg("status").output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.lines().any(|l| l.starts_with("状态：") && l.ends_with(" 已连接")), "{status}");
    daemon.stop();
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn a_popups_open_on_the_daemon_hands_the_profile_to_the_tray_app_at_that_talk() {
    require_desktop_session();
    // Before its popups show: no other test closes them before they are picked.
    let screen = picking_from_popups();
    // A sender's name no other test's popup has: dunst's menu lists every popup on screen.
    let name = format!("zhao{}", std::process::id());
    let relay = Relay::start_with_users(&[], &[(1, "wang1"), (2, &name)]);
    let app = App::new();
    let mut daemon = app.signed_in_daemon(&relay);
    let marker = format!("open me at this talk {}", std::process::id());
    relay.send(2, 1, &marker);
    let row = eventually("the talk is stored", || {
        app.history_json(&["--search", "open"]).into_iter().find(|e| e["talk"] == marker.as_str())?["id"].as_i64()
    });
    // Picked from the popup's menu (again, until it is on screen and the daemon goes).
    let ended = eventually("the daemon stops", || {
        dunst::pick(&format!("#Open ({name})")).expect("the popup's menu");
        daemon.exit_status()
    });
    assert!(ended.success(), "the daemon hands the profile over and exits cleanly: {ended}");
    let tray = eventually("the tray app holds the profile", || {
        let status = app.status_json();
        (status["process"]["kind"] == "tray-app").then(|| status["process"]["pid"].as_u64()).flatten()
    });
    let tray = u32::try_from(tray).unwrap();
    let args = std::fs::read(format!("/proc/{tray}/cmdline")).unwrap();
    let args: Vec<String> = args.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    assert!(args[0].ends_with("/talkbell"), "{args:?}");
    assert_eq!(args[1..].iter().filter(|a| !a.is_empty()).collect::<Vec<_>>(), ["--open-talk", &row.to_string()]);
    signal(tray, "TERM");
    let gone = || !matches!(talkbell_testkit::procfs::stat(tray), Some(s) if s.state != 'Z');
    eventually("the tray app ends", || gone().then_some(()));
    screen.close_all();
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn without_the_tray_app_installed_the_daemons_popups_offer_no_open() {
    require_desktop_session();
    // Before its popups show: no other test closes them before they are picked.
    let screen = picking_from_popups();
    let name = format!("qian{}", std::process::id());
    let relay = Relay::start_with_users(&[], &[(1, "wang1"), (2, &name)]);
    let app = App::new();
    let out = app.login(&relay.url(), relay.token(1), &[]);
    assert!(out.status.success(), "login failed: {}", String::from_utf8_lossy(&out.stderr));
    // The daemon's binary alone, as a package without the desktop app would install it.
    let alone = tempfile::tempdir().unwrap();
    let bin = alone.path().join("talkbell-daemon");
    std::fs::copy(talkbell_daemon_bin(), &bin).unwrap();
    let mut daemon = Daemon::spawn(app.command_of(&bin));
    daemon.wait_connected(1);
    let marker = format!("nothing to open {}", std::process::id());
    relay.send(2, 1, &marker);
    // Its menu, opened and dismissed (nothing picked), until the popup is in it.
    eventually("the popup's menu", || {
        dunst::pick("no such entry").expect("the popup's menu");
        dunst::menus().expect("the menus").contains(&format!("#Mark read ({name})")).then_some(())
    });
    let menus = dunst::menus().expect("the menus");
    assert!(!menus.contains(&format!("#Open ({name})")), "Open with no window to open: {menus}");
    assert!(daemon.is_running(), "the daemon goes on");
    daemon.stop();
    screen.close_all();
}
