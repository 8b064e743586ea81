//! `notify` against a real notification daemon: dunst on Xvfb in the private session of
//! scripts/desktop-session.sh, observed with `dunstctl`. Run with
//!
//! ```text
//! scripts/desktop-session.sh cargo test -p talkbell-core --test notify_dunst -- --include-ignored
//! ```
//!
//! Outside that session these tests fail on purpose (they are ignored by default).

mod support_bus;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support_bus::{run_bounded, BareBus};

use talkbell_core::notify::{
    DesktopNotifier, Notification, NotificationKind, Notifier, NotifyError, NotifyGate, NotifySettings, PopupAction,
};
use talkbell_core::protocol::{Person, ServerFrame, UserId};
use talkbell_testkit::desktop::require_session;
use talkbell_testkit::dunst::{self, Popup};
use talkbell_testkit::stand_in::StandIn;
use talkbell_testkit::wait::Poll;
use tokio::sync::Mutex;

/// One dunst for all tests: they take turns, so counts and positions are theirs.
static DUNST: Mutex<()> = Mutex::const_new(());

/// Generous: a loaded CI machine may be slow to show and expire a popup.
const BOUND: Duration = Duration::from_secs(30);

const SAMPLE: &str = r#"{"form":{"id":2,"name":"wang2","talk":"hello"},"to":{"id":1,"name":"wang1"}}"#;

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{what} {}-{nanos}", std::process::id())
}

fn dunstctl(args: &[&str]) -> String {
    dunst::dunstctl(args).expect("dunstctl runs")
}

/// Every popup in dunst's history (closed or expired ones), newest first.
fn history() -> Vec<Popup> {
    dunst::history().expect("dunstctl history")
}

fn displayed() -> u64 {
    dunst::displayed().expect("a count")
}

fn count(summary: &str, body: &str) -> usize {
    history().iter().filter(|p| p.summary == summary && p.body == body).count()
}

/// Polls `check` every 100 ms until it holds or `BOUND` passes.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    if Poll::up_to(BOUND).check_async(|| check().then_some(())).await.is_none() {
        panic!("not within {BOUND:?}: {what}\nhistory: {:#?}", history());
    }
}

/// Popups that expire quickly into dunst's history, where the tests read them.
fn quick_notifier() -> DesktopNotifier {
    DesktopNotifier::new().with_timeout(Duration::from_millis(500))
}

async fn show(notifier: &DesktopNotifier, n: Notification) -> Result<(), NotifyError> {
    let notifier = notifier.clone();
    tokio::task::spawn_blocking(move || notifier.show(&n)).await.expect("show does not panic")
}

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn a_notification_reaches_dunst_with_its_title_and_body() {
    require_session();
    let _turn = DUNST.lock().await;
    let (title, body) = (unique("title"), unique("the body"));
    show(
        &quick_notifier(),
        Notification {
            title: title.clone(),
            body: body.clone(),
            kind: NotificationKind::Talk { row: 1 },
            sound: true,
            sender: None,
        },
    )
    .await
    .expect("shown");
    eventually("the popup is in dunst's history", || count(&title, &body) == 1).await;
    let popup = history().into_iter().find(|p| p.summary == title).expect("found");
    assert_eq!(popup.app, "Talkbell");
    assert_eq!(popup.default_action, "default", "a click has something to do");
    assert_eq!(popup.category, "im.received");
}

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn markup_in_a_talk_is_shown_as_text() {
    require_session();
    let _turn = DUNST.lock().await;
    let title = unique("markup");
    let text = "<b>not bold</b> & <a href=\"x\">no link</a>";
    show(
        &quick_notifier(),
        Notification {
            title: title.clone(),
            body: text.into(),
            kind: NotificationKind::Talk { row: 1 },
            sound: true,
            sender: None,
        },
    )
    .await
    .expect("shown");
    eventually("the popup is in dunst's history", || history().iter().any(|p| p.summary == title)).await;
    let popup = history().into_iter().find(|p| p.summary == title).expect("found");
    // dunst renders `message` as Pango markup: escaped, the tags show as the characters.
    assert!(
        popup.message.ends_with("&lt;b&gt;not bold&lt;/b&gt; &amp; &lt;a href=\"x\"&gt;no link&lt;/a&gt;"),
        "{popup:?}"
    );
}

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn the_sample_talk_pops_up_once_for_user_1_and_never_for_user_3() {
    require_session();
    let _turn = DUNST.lock().await;
    let ServerFrame::Talk(talk) = ServerFrame::parse(SAMPLE).expect("the sample parses") else {
        panic!("the sample is a talk")
    };
    let before = count("wang2", "hello");

    // Signed in as user 1: the talk is for me.
    let gate = NotifyGate::spawn(Arc::new(quick_notifier()), NotifySettings::default());
    gate.talk(talk.clone(), 1, talk.is_for(&UserId::from(1)));
    // A later talk as a marker: the gate works in order, so once the marker is up, whatever
    // the sample talk caused is up too.
    let marker = unique("marker one");
    let mut later = talk.clone();
    later.talk = marker.clone();
    gate.talk(later, 2, true);
    eventually("the marker popup", || count("wang2", &marker) == 1).await;
    eventually("the sample popup", || count("wang2", "hello") == before + 1).await;
    let stats = gate.stats().await;
    assert_eq!((stats.shown, stats.not_for_me), (2, 0));
    gate.shutdown();

    // Signed in as user 3: the same talk is someone else's.
    let gate = NotifyGate::spawn(Arc::new(quick_notifier()), NotifySettings::default());
    gate.talk(talk.clone(), 3, talk.is_for(&UserId::from(3)));
    let marker = unique("marker three");
    let mut later = talk.clone();
    later.talk = marker.clone();
    gate.talk(later, 4, true);
    eventually("the second marker popup", || count("wang2", &marker) == 1).await;
    assert_eq!(count("wang2", "hello"), before + 1, "no popup for a talk to user 1 when signed in as user 3");
    let stats = gate.stats().await;
    assert_eq!((stats.shown, stats.not_for_me), (1, 1));
    gate.shutdown();
}

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn a_burst_reaches_dunst_as_two_popups_and_a_summary() {
    require_session();
    let _turn = DUNST.lock().await;
    let ServerFrame::Talk(talk) = ServerFrame::parse(SAMPLE).expect("the sample parses") else {
        panic!("the sample is a talk")
    };
    let tag = unique("burst");
    let before = history().len();
    let gate = NotifyGate::spawn(Arc::new(quick_notifier()), NotifySettings::default());
    for i in 0..50 {
        let mut t = talk.clone();
        t.talk = format!("{tag} #{i}");
        gate.talk(t, i, true);
    }
    let summary_text = "48 new messages from wang2";
    eventually("the summary popup", || history().iter().any(|p| p.body == summary_text)).await;
    // One more talk, a burst of its own: the gate shows in order, so once it is up,
    // everything the first burst was going to show is up too.
    let after = format!("{tag} after");
    let mut t = talk.clone();
    t.talk = after.clone();
    gate.talk(t, 50, true);
    eventually("the talk after the burst", || history().iter().any(|p| p.body == after)).await;
    let ours: Vec<Popup> = history()
        .into_iter()
        .take(history().len() - before)
        .filter(|p| (p.body.starts_with(&tag) && p.body != after) || p.body == summary_text)
        .collect();
    assert_eq!(ours.len(), 3, "{ours:#?}");
    let stats = gate.stats().await;
    assert_eq!((stats.shown, stats.summaries, stats.summarised), (4, 1, 48));
}

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn a_click_on_the_popup_calls_back_with_what_it_shows() {
    require_session();
    let _turn = DUNST.lock().await;
    dunstctl(&["close-all"]);
    eventually("no popup on screen", || displayed() == 0).await;

    let (tx, rx) = std::sync::mpsc::channel();
    let notifier = DesktopNotifier::new().with_timeout(Duration::from_secs(60)).on_action(move |action| {
        let _ = tx.send(action);
    });
    let title = unique("click me");
    show(
        &notifier,
        Notification {
            title: title.clone(),
            body: "x".into(),
            kind: NotificationKind::Talk { row: 42 },
            sound: true,
            sender: None,
        },
    )
    .await
    .expect("shown");
    eventually("the popup is on screen", || displayed() == 1).await;
    // What a left click does with scripts/dunstrc: the default action.
    dunstctl(&["action", "0"]);
    let clicked = tokio::task::spawn_blocking(move || rx.recv_timeout(BOUND)).await.expect("join");
    assert_eq!(clicked, Ok(PopupAction::Open(NotificationKind::Talk { row: 42 })));
    dunstctl(&["close-all"]);
}

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn a_popup_offers_mark_read_and_mute_and_each_does_what_it_says() {
    require_session();
    let _turn = DUNST.lock().await;
    dunstctl(&["close-all"]);
    eventually("no popup on screen", || displayed() == 0).await;
    let (tx, rx) = std::sync::mpsc::channel();
    let notifier = DesktopNotifier::new().with_timeout(Duration::from_secs(60)).on_action(move |action| {
        let _ = tx.send(action);
    });
    let wang2 = Person { id: 2.into(), name: "wang2".into() };
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for (label, row, want) in [
        ("#Mute wang2 for 1 hour", 7, PopupAction::MuteHour(wang2.clone())),
        ("#Mark read", 8, PopupAction::MarkRead(NotificationKind::Talk { row: 8 })),
    ] {
        let title = unique("act on me");
        let n = Notification {
            title: title.clone(),
            body: "x".into(),
            kind: NotificationKind::Talk { row },
            sound: true,
            sender: Some(wang2.clone()),
        };
        show(&notifier, n).await.expect("shown");
        eventually("the popup is on screen", || displayed() == 1).await;
        // The context menu, as a person opens it and picks an entry (scripts/dunst-pick.sh).
        dunst::pick(label).expect("the context menu opens");
        let rx = rx.clone();
        let picked = tokio::task::spawn_blocking(move || rx.lock().unwrap().recv_timeout(BOUND)).await.expect("join");
        assert_eq!(picked, Ok(want), "{label}");
        dunstctl(&["close-all"]);
        eventually("no popup on screen", || displayed() == 0).await;
        let popup = history().into_iter().find(|p| p.summary == title).expect("in the history");
        assert_eq!(popup.category, "im.received");
    }
}

// ---- hostile text ------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn a_nul_in_a_talk_or_a_name_still_pops_up_cleaned() {
    require_session();
    let _turn = DUNST.lock().await;
    let tag = unique("nul");
    let frame = serde_json::json!({
        "form": {"id": 2, "name": "wa\u{0}ng\u{202e}2", "talk": format!("{tag} a\u{0}b\u{1b}]0;pwned\u{7}c")},
        "to": {"id": 1, "name": "wang1"},
    })
    .to_string();
    let ServerFrame::Talk(talk) = ServerFrame::parse(&frame).expect("the frame parses") else { panic!("a talk") };
    assert!(talk.talk.contains('\0') && talk.from.name.contains('\0'), "the talk itself keeps its NUL");
    let gate = NotifyGate::spawn(Arc::new(quick_notifier()), NotifySettings::default());
    gate.talk(talk, 1, true);
    let body = format!("{tag} a\u{fffd}b\u{fffd}]0;pwned\u{fffd}c");
    eventually("the cleaned popup", || count("wa\u{fffd}ng2", &body) == 1).await;
    let stats = gate.stats().await;
    assert_eq!((stats.shown, stats.failed), (1, 0), "{:?}", stats.last_error);
    gate.shutdown();
}

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn every_popup_is_held_to_the_limits_even_one_made_elsewhere() {
    require_session();
    let _turn = DUNST.lock().await;
    let title = format!("{} {}", unique("t"), "n".repeat(300));
    let body = format!("{} {}", unique("b"), "字".repeat(1000));
    show(
        &quick_notifier(),
        Notification {
            title: title.clone(),
            body: body.clone(),
            kind: NotificationKind::Talk { row: 1 },
            sound: true,
            sender: None,
        },
    )
    .await
    .expect("shown");
    let prefix: String = title.chars().take(20).collect();
    eventually("the popup", || history().iter().any(|p| p.summary.starts_with(&prefix))).await;
    let popup = history().into_iter().find(|p| p.summary.starts_with(&prefix)).expect("found");
    assert_eq!(popup.summary.chars().count(), 100, "{popup:?}");
    assert_eq!(popup.body.chars().count(), 300, "{popup:?}");
    assert!(popup.summary.ends_with('…') && popup.body.ends_with('…'));
}

// ---- no notification service ----------------------------------------------------------

/// Runs `child_without_a_service` in a child process with a broken or bare session bus
/// (changing this process's environment would race with the other tests).
#[test]
#[ignore = "needs scripts/desktop-session.sh"]
fn without_a_notification_service_show_is_an_error_not_a_hang() {
    require_session();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dead = tmp.path().join("dead-bus");
    drop(std::os::unix::net::UnixListener::bind(&dead).expect("bind"));
    let bare = BareBus::start(tmp.path(), true);
    let mute = BareBus::start(tmp.path(), false);
    // A bus whose notification service answers Notify with a D-Bus error.
    let refusing_bus = BareBus::start(tmp.path(), true);
    let _refuser = refusing_service(&refusing_bus.address);
    let cases = [
        ("refused", format!("unix:path={}", dead.display())),
        ("missing", format!("unix:path={}", tmp.path().join("no-such-socket").display())),
        ("no-daemon", bare.address.clone()),
        ("mute", mute.address.clone()),
        ("refusing", refusing_bus.address.clone()),
    ];
    for (case, address) in cases {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.args(["--exact", "child_without_a_service", "--include-ignored", "--nocapture", "--test-threads=1"])
            .env("TALKBELL_NOTIFY_CHILD", case)
            .env("DBUS_SESSION_BUS_ADDRESS", address);
        let (status, stdout, stderr) = run_bounded(cmd, Duration::from_secs(120));
        assert!(
            status == Some(true) && stdout.contains(&format!("CHILD OK {case}")),
            "case {case}: child failed ({}):\n{stdout}\n{stderr}",
            if status.is_none() { "did not exit in time" } else { "exit" }
        );
    }
}

/// Only does something as the child of the test above.
#[test]
#[ignore = "a helper of without_a_notification_service_show_is_an_error_not_a_hang"]
fn child_without_a_service() {
    let Ok(case) = std::env::var("TALKBELL_NOTIFY_CHILD") else {
        return;
    };
    let after = Duration::from_secs(2);
    let notifier = DesktopNotifier::new().with_call_timeout(after);
    let n = Notification {
        title: "nobody".into(),
        body: "listens".into(),
        kind: NotificationKind::Talk { row: 1 },
        sound: true,
        sender: None,
    };
    let started = Instant::now();
    for attempt in 0..3 {
        match (case.as_str(), notifier.show(&n)) {
            ("mute", Err(NotifyError::NoAnswer { after: a })) => assert_eq!(a, after),
            ("refused" | "missing", Err(e @ NotifyError::Bus { .. })) => {
                assert!(e.to_string().contains("D-Bus session bus"), "{e}");
                println!("{case}: {e}");
            }
            ("no-daemon", Err(e @ NotifyError::NoService { .. })) => println!("{case}: {e}"),
            ("refusing", Err(NotifyError::Refused { name, message })) => {
                assert_eq!(
                    (name.as_str(), message.as_str()),
                    ("org.example.Talkbell.Error.Refused", "refused by the test")
                );
                let text = NotifyError::Refused { name, message }.to_string();
                assert!(!text.contains("no notification service"), "{text}");
                println!("{case}: {text}");
            }
            (_, other) => panic!("{case} attempt {attempt}: got {other:?}"),
        }
    }
    // A stuck service costs one call timeout, not one per popup.
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    println!("CHILD OK {case}");
}

/// tests/support_bus/refusing_notifications.py on the bus at `address`, killed on drop.
fn refusing_service(address: &str) -> StandIn {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support_bus/refusing_notifications.py");
    StandIn::start(&script, Some(address), Duration::from_secs(30)).expect("the stand-in service starts")
}
