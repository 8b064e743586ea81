//! A reply written in the popup itself, on a notification service with `inline-reply`
//! (KDE Plasma, swaync): a stand-in service on the session bus (talkbell-testkit's
//! `notifications`) takes the popups and sends `NotificationReplied`, and the real relay
//! delivers the reply to the other user. Once from the engine as the tray app wires it,
//! once from the headless daemon. Each runs in a private desktop session of its own
//! without dunst, which would own the service's name.

mod common;

use std::sync::{Arc, OnceLock};

use common::*;
use talkbell_core::config::Paths;
use talkbell_core::engine::{Engine, IfUserUnknown};
use talkbell_core::history::{History, HistoryEntry, HistoryQuery};
use talkbell_core::notify::DesktopNotifier;
use talkbell_core::protocol::{Person, Token, MAX_SEND_TALK_CHARS};
use talkbell_core::session::outbox::{Outgoing, ReplyError};
use talkbell_core::session::{SessionHandle, SessionState, Timing};
use talkbell_testkit::desktop::without_notification_daemon;
use talkbell_testkit::notifications::{NotificationService, Notified};

const CAPABILITIES: &[&str] = &["actions", "body", "inline-reply"];

/// The popup whose body holds `text`, once the service has it.
fn popup_with(service: &NotificationService, text: &str) -> Notified {
    eventually(&format!("a popup with {text:?}"), || service.notified().into_iter().find(|n| n.body.contains(text)))
}

/// A popup of one talk on this service: a reply field, not the window's Reply.
fn assert_reply_field(popup: &Notified) {
    assert_eq!(popup.action("inline-reply"), Some("Reply"), "{popup:?}");
    assert_eq!(popup.hints.get("x-kde-reply-placeholder-text").map(String::as_str), Some("Reply to wang2"));
    assert_eq!(popup.action("reply"), None, "no second Reply that opens a window: {popup:?}");
}

/// The entries of `history` with `text`.
fn entries(history: &History, text: &str) -> Vec<HistoryEntry> {
    let all = history.list(&HistoryQuery { limit: 10_000, ..Default::default() }).unwrap();
    all.into_iter().filter(|e| e.talk == text).collect()
}

/// Waits until `history` holds a talk `text` from user `from`.
fn received(history: &History, text: &str, from: u64) {
    eventually(&format!("{text:?} received"), || {
        entries(history, text).iter().any(|e| e.from.id == from.into() && e.outgoing.is_none()).then_some(())
    });
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring)"]
fn a_reply_written_in_the_popup_goes_out_from_the_app_engine() {
    if !without_notification_daemon("a_reply_written_in_the_popup_goes_out_from_the_app_engine") {
        return;
    }
    let service = NotificationService::start(CAPABILITIES).expect("the stand-in owns the name");
    let relay = Relay::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _in_runtime = runtime.enter();
    let wang2 = Peer::start(&relay, 2, Timing::default());
    let dir = tempfile::tempdir().unwrap();
    let engine = runtime.block_on(signed_in_engine(&relay, &Paths::in_dir(dir.path())));
    let history = engine.history().clone();

    relay.send(2, 1, "lunch at noon?");
    let popup = popup_with(&service, "lunch at noon?");
    assert_reply_field(&popup);
    service.reply(popup.id, "on my way").unwrap();
    received(&wang2.history, "on my way", 1);
    let kept = eventually("the reply sent", || {
        entries(&history, "on my way").into_iter().find(|e| e.outgoing == Some(Outgoing::Sent))
    });
    assert_eq!((kept.from.id, kept.to.id), (1.into(), 2.into()));
    let talk = entries(&history, "lunch at noon?").remove(0);
    assert!(talk.read, "a talk answered from its popup is read");

    // Over PROTOCOL.md's cap: nothing goes out, cut or whole, and a popup says why.
    relay.send(2, 1, "and tomorrow?");
    let popup = popup_with(&service, "and tomorrow?");
    let long = "字".repeat(MAX_SEND_TALK_CHARS + 1);
    service.reply(popup.id, &long).unwrap();
    let why = ReplyError::TooLong { chars: MAX_SEND_TALK_CHARS + 1 }.to_string();
    let said = eventually("the popup saying so", || service.notified().into_iter().find(|n| n.body == why));
    assert_eq!(said.summary, "Your reply to wang2 was not sent");
    // The relay delivers in order: once a later reply is in, the long one would be too.
    runtime.block_on(engine.session().reply(Person { id: 2.into(), name: "wang2".into() }, "later".into())).unwrap();
    received(&wang2.history, "later", 1);
    let long_anywhere = |h: &History| {
        h.list(&HistoryQuery { limit: 10_000, ..Default::default() }).unwrap().iter().any(|e| e.talk.contains('字'))
    };
    assert!(!long_anywhere(&wang2.history) && !long_anywhere(&history), "the long reply went somewhere");
    runtime.block_on(async {
        engine.shutdown().await;
        wang2.session.shutdown().await;
    });
}

/// The engine as the tray app wires it (src-tauri/gui/mod.rs): popups through the
/// desktop notifier, Reply offered while the server takes replies, and the popup's
/// actions handed to the engine. Signed in to `relay` as wang1, connected.
async fn signed_in_engine(relay: &Relay, paths: &Paths) -> Arc<Engine> {
    let session = Arc::new(OnceLock::<SessionHandle>::new());
    let (engine_cell, replies) = (Arc::new(OnceLock::<Arc<Engine>>::new()), session.clone());
    let on_action = engine_cell.clone();
    let notifier = DesktopNotifier::new()
        .on_action(move |action| {
            if let Some(engine) = on_action.get() {
                engine.on_popup_action(action).expect("the popup's action");
            }
        })
        .offer_reply(move || replies.get().is_some_and(|s| s.watch().borrow().replies));
    let engine = Arc::new(Engine::start(paths.clone(), Some(Arc::new(notifier))).unwrap());
    let _ = (session.set(engine.session().clone()), engine_cell.set(engine.clone()));
    let token = Token::new(relay.token(1)).unwrap();
    engine.sign_in(&relay.url(), token, None, IfUserUnknown::Refuse).await.expect("signed in");
    let up = engine.session().wait_for(|s| matches!(s, SessionState::Connected { .. }));
    tokio::time::timeout(PATIENCE, up).await.expect("connected");
    engine
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring)"]
fn a_reply_written_in_the_popup_goes_out_from_the_daemon() {
    if !without_notification_daemon("a_reply_written_in_the_popup_goes_out_from_the_daemon") {
        return;
    }
    let service = NotificationService::start(CAPABILITIES).expect("the stand-in owns the name");
    let relay = Relay::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _in_runtime = runtime.enter();
    let wang2 = Peer::start(&relay, 2, Timing::default());
    let app = App::new();
    let mut daemon = app.signed_in_daemon(&relay);

    relay.send(2, 1, "are you there?");
    let popup = popup_with(&service, "are you there?");
    assert_reply_field(&popup);
    service.reply(popup.id, "yes, at my desk").unwrap();
    received(&wang2.history, "yes, at my desk", 1);
    eventually("the reply sent in the daemon's history", || {
        let kept = app.history_json(&["--search", "desk"]);
        kept.iter().any(|e| e["talk"] == "yes, at my desk" && e["outgoing"]["state"] == "sent").then_some(())
    });
    daemon.stop();
    runtime.block_on(wang2.session.shutdown());
}
