//! Replies (PROTOCOL.md 1.4) against scripted servers over real sockets: the outbox,
//! the same id on every try, answers kept, and servers that take none.

mod support;

use serde_json::Value;
use support::*;
use talkbell_core::protocol::Person;
use talkbell_core::session::outbox::{Outgoing, ReplyError, SendFailure};
use talkbell_core::session::{Session, SessionEvent, SessionState};
use tokio::sync::mpsc;

fn wang2() -> Person {
    Person { id: 2.into(), name: "wang2".into() }
}

const WELCOME_SEND: &str =
    r#"{"type": "welcome", "user": {"id": 1, "name": "wang1"}, "features": ["resume", "ack", "send"]}"#;

/// Where reply `row` stands next.
async fn next_answer(events: &mut tokio::sync::broadcast::Receiver<SessionEvent>, row: i64) -> Outgoing {
    wait_event(events, |e| match e {
        SessionEvent::Reply { row: r, outgoing } if *r == row && *outgoing != Outgoing::Queued => {
            Some(outgoing.clone())
        }
        _ => None,
    })
    .await
}

/// The `send` frames a connection reads, as JSON, forwarded to `seen`; each answered
/// with `answer(frame)` when it gives one. Heartbeats are answered.
async fn take_sends(mut ws: ServerWs, seen: mpsc::UnboundedSender<Value>, answer: impl Fn(&Value) -> Option<String>) {
    send_text(&mut ws, WELCOME_SEND).await;
    while let Some(text) = next_text(&mut ws).await {
        if text == "online" {
            send_text(&mut ws, "online").await;
            continue;
        }
        let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
        if frame["type"] != "send" {
            continue;
        }
        let _ = seen.send(frame.clone());
        if let Some(reply) = answer(&frame) {
            send_text(&mut ws, reply).await;
        }
    }
}

#[tokio::test]
async fn replies_written_offline_go_in_order_and_a_lost_answer_means_the_same_id_again() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    // The first link takes the sends and drops the answers (then closes); the second answers.
    let server = Scripted::start(move |n, ws| {
        let seen = seen_tx.clone();
        async move {
            if n == 1 {
                let mut ws = ws;
                send_text(&mut ws, WELCOME_SEND).await;
                let mut sends = 0;
                while sends < 2 {
                    let Some(text) = next_text(&mut ws).await else { break };
                    let frame = serde_json::from_str::<Value>(&text).unwrap_or_default();
                    if frame["type"] == "send" {
                        sends += 1;
                        let _ = seen.send(frame);
                    }
                }
                return;
            }
            let sent = |f: &Value| {
                Some(format!(r#"{{"type": "sent", "id": "{}", "seq": 9, "ts": 1763900000000}}"#, f["id"].as_str()?))
            };
            take_sends(ws, seen, sent).await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = history(&dir);
    let session = Session::spawn(config(fast_timing()), None, store.clone());
    let mut events = session.subscribe();
    // Signed out, a reply is refused: there is no account to keep it for.
    assert_eq!(session.reply(wang2(), "too early".into()).await, Err(ReplyError::SignedOut));
    session.set_credentials(creds(&server.url(), Some(1)));
    let first = session.reply(wang2(), "on my way".into()).await.expect("kept while connecting");
    let second = session.reply(wang2(), "二十分钟".into()).await.expect("kept");

    let mut frames = Vec::new();
    for _ in 0..4 {
        frames.push(tokio::time::timeout(std::time::Duration::from_secs(20), seen.recv()).await.unwrap().unwrap());
    }
    let texts: Vec<&str> = frames.iter().map(|f| f["talk"].as_str().unwrap_or_default()).collect();
    assert_eq!(texts, ["on my way", "二十分钟", "on my way", "二十分钟"], "in order, again on the second link");
    assert_eq!(frames[0]["id"], frames[2]["id"], "a retry carries the same id");
    assert_eq!(frames[1]["id"], frames[3]["id"]);
    assert_ne!(frames[0]["id"], frames[1]["id"]);
    for f in &frames {
        assert_eq!(f["to"]["id"], 2);
        assert!(f.get("form").is_none() && f.get("from").is_none(), "a send never names its sender: {f}");
    }
    assert_eq!(next_answer(&mut events, first).await, Outgoing::Sent);
    assert_eq!(next_answer(&mut events, second).await, Outgoing::Sent);
    assert!(session.watch().borrow().replies, "this server takes replies");
    session.shutdown().await;
}

#[tokio::test]
async fn a_refusal_for_good_fails_the_reply_and_one_for_now_keeps_it_queued() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let server = Scripted::start(move |n, ws| {
        let seen = seen_tx.clone();
        async move {
            let answer = move |f: &Value| {
                let id = f["id"].as_str()?;
                let code = match (n, f["talk"].as_str()?) {
                    (_, "to nobody") => "unknown_recipient",
                    (1, _) => "queue_full",
                    _ => return Some(format!(r#"{{"type": "sent", "id": "{id}", "seq": 3, "ts": 1}}"#)),
                };
                Some(format!(r#"{{"type": "error", "id": "{id}", "code": "{code}", "message": "no: {code}"}}"#))
            };
            take_sends(ws, seen, answer).await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), history(&dir));
    let mut events = session.subscribe();
    wait_state(&session, |s| matches!(s, SessionState::Connected { .. })).await;
    let nobody = session.reply(Person { id: 77.into(), name: "x".into() }, "to nobody".into()).await.unwrap();
    let failed = next_answer(&mut events, nobody).await;
    assert_eq!(
        failed,
        Outgoing::Failed { reason: SendFailure::UnknownRecipient, message: "no: unknown_recipient".into() }
    );

    let later = session.reply(wang2(), "when there is room".into()).await.unwrap();
    let first_try = seen.recv().await.unwrap();
    assert_eq!(first_try["talk"], "to nobody");
    assert_eq!(seen.recv().await.unwrap()["talk"], "when there is room");
    // queue_full: kept queued, and sent again on the next link, where it passes.
    session.reconnect_now();
    assert_eq!(next_answer(&mut events, later).await, Outgoing::Sent);
    assert_eq!(seen.recv().await.unwrap()["talk"], "when there is room", "the refused-for-good one is not sent again");
    session.shutdown().await;
}

#[tokio::test]
async fn a_server_without_a_welcome_takes_no_replies() {
    let server = Scripted::start(|_, ws| echo_heartbeats(ws, mpsc::unbounded_channel().0)).await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), None, history(&dir));
    let mut events = session.subscribe();
    session.set_credentials(creds(&server.url(), Some(1)));
    let queued = session.reply(wang2(), "before the link".into()).await.expect("not known yet: kept");
    // The original servers answer the first heartbeat: that is the link.
    let failed = next_answer(&mut events, queued).await;
    assert!(matches!(failed, Outgoing::Failed { reason: SendFailure::NotOffered, .. }), "{failed:?}");
    assert_eq!(session.reply(wang2(), "now".into()).await, Err(ReplyError::NotOffered));
    assert!(!session.watch().borrow().replies);
    session.shutdown().await;
}
