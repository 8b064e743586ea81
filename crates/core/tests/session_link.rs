//! The session against servers that behave and misbehave, over real sockets.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::Value;
use support::*;
use talkbell_core::protocol::{Person, ProtocolError, Seq, UserId};
use talkbell_core::session::outbox::ReplyError;
use talkbell_core::session::{
    Identity, KeyringAnswer, OfflineReason, Session, SessionConfig, SessionEvent, SessionHandle, SessionState,
    SignedOutReason, Start, StoreError,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn hello_is_first_and_a_talk_for_me_is_stored_acked_and_told_once() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let server = Scripted::start(move |_, mut ws| {
        let seen = seen_tx.clone();
        async move {
            let hello = next_text(&mut ws).await.unwrap();
            let _ = seen.send(hello);
            send_text(&mut ws, SAMPLE).await;
            send_text(&mut ws, talk_json(5, 1, "with seq")).await;
            send_text(&mut ws, talk_json(6, 3, "for someone else")).await;
            echo_heartbeats(ws, seen).await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = history(&dir);
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), store.clone());
    let mut events = session.subscribe();

    let hello: Value = serde_json::from_str(&seen.recv().await.unwrap()).unwrap();
    assert_eq!(hello["uuid"], "device-uuid-1");
    assert_eq!(hello["token"], "secret-token-1");
    assert!(hello.get("resume").is_none(), "no resume on a first connection: {hello}");

    let mut talks = Vec::new();
    while talks.len() < 3 {
        talks.push(
            wait_event(&mut events, |e| match e {
                SessionEvent::Talk { talk, for_me, .. } => Some((talk.talk.clone(), *for_me)),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(
        talks,
        [("hello".to_owned(), true), ("with seq".to_owned(), true), ("for someone else".to_owned(), false)]
    );
    assert_eq!(texts(&store).len(), 3);
    // Acks come after storing. They are cumulative (§1.3): talks read in one go are
    // acked once, by the highest seq, so the last ack is 6 whether 5 had its own.
    let mut acks = Vec::new();
    while acks.last() != Some(&6) {
        let frame = seen.recv().await.unwrap();
        if frame != "online" {
            let ack: Value = serde_json::from_str(&frame).unwrap();
            assert_eq!(ack["type"], "ack", "{frame}");
            acks.push(ack["seq"].as_u64().unwrap());
        }
    }
    assert!(acks == [5, 6] || acks == [6], "{acks:?}");
    assert!(matches!(session.state(), SessionState::Connected { .. }));
    session.shutdown().await;
    assert_eq!(session.state(), SessionState::Stopped);
}

#[tokio::test]
async fn resume_carries_the_last_stored_seq_and_a_repeated_seq_is_dropped() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let server = Scripted::start(move |n, mut ws| {
        let seen = seen_tx.clone();
        async move {
            let _ = seen.send(next_text(&mut ws).await.unwrap());
            if n == 1 {
                send_text(&mut ws, talk_json(41, 1, "first")).await;
                // The second link is opened by a "reconnect now" from the test.
                echo_heartbeats(ws, mpsc::unbounded_channel().0).await;
            } else {
                // At-least-once: a server may replay what we already have.
                send_text(&mut ws, talk_json(41, 1, "first")).await;
                send_text(&mut ws, talk_json(42, 1, "second")).await;
                echo_heartbeats(ws, mpsc::unbounded_channel().0).await;
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = history(&dir);
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), store.clone());
    let mut events = session.subscribe();
    wait_event(&mut events, |e| matches!(e, SessionEvent::Talk { .. }).then_some(())).await;
    let first_hello: Value = serde_json::from_str(&seen.recv().await.unwrap()).unwrap();
    assert!(first_hello.get("resume").is_none());

    session.reconnect_now();
    let dup = wait_event(&mut events, |e| match e {
        SessionEvent::Duplicate { seq } => Some(*seq),
        _ => None,
    })
    .await;
    assert_eq!(dup, Seq(41));
    let second = wait_event(&mut events, |e| match e {
        SessionEvent::Talk { talk, .. } => Some(talk.talk.clone()),
        _ => None,
    })
    .await;
    assert_eq!(second, "second");
    let second_hello: Value = serde_json::from_str(&seen.recv().await.unwrap()).unwrap();
    assert_eq!(second_hello["resume"], 41);
    assert_eq!(texts(&store), ["first", "second"]);
    assert_eq!(session.stats().duplicates, 1);
    session.shutdown().await;
}

#[tokio::test]
async fn a_silent_server_is_dead_after_interval_plus_timeout_and_is_reconnected() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(usize, String, Instant)>();
    let server = Scripted::start(move |n, mut ws| {
        let seen = seen_tx.clone();
        async move {
            // Accept, read everything, answer nothing.
            while let Some(text) = next_text(&mut ws).await {
                let _ = seen.send((n, text, Instant::now()));
            }
        }
    })
    .await;
    let timing = fast_timing();
    let dir = tempfile::tempdir().unwrap();
    // The bounds below count from before the session began: the server's own clock would
    // see the hello late on a busy machine, and only a bound from before the session's
    // timers started holds however late the frames arrive.
    let spawned_at = Instant::now();
    let session = Session::spawn(config(timing), Some(creds(&server.url(), Some(1))), history(&dir));
    let mut events = session.subscribe();

    let (_, hello, _) = seen.recv().await.unwrap();
    assert!(hello.contains("\"token\""));
    let (n, probe, probe_at) = seen.recv().await.unwrap();
    assert_eq!((n, probe.as_str()), (1, "online"), "the heartbeat is exactly `online`");
    assert!(probe_at - spawned_at >= timing.heartbeat_interval);

    let reason = wait_event(&mut events, |e| match e {
        SessionEvent::State(SessionState::Backoff { reason, .. }) => Some(reason.clone()),
        _ => None,
    })
    .await;
    let dead_at = Instant::now();
    assert!(matches!(reason, OfflineReason::HeartbeatTimeout { .. }), "{reason}");
    let silent_for = dead_at - spawned_at;
    assert!(silent_for >= timing.heartbeat_interval + timing.heartbeat_timeout, "{silent_for:?}");
    assert!(silent_for < Duration::from_secs(10), "{silent_for:?}");

    // And it comes back on its own: a second connection, whose first frame is a hello.
    let (n, hello2, _) = seen.recv().await.unwrap();
    assert_eq!(n, 2);
    assert!(hello2.contains("\"uuid\""));
    assert_eq!(session.stats().connects, 2);
    session.shutdown().await;
}

#[tokio::test]
async fn an_answering_server_keeps_the_link_up_across_many_heartbeats() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let server = Scripted::start(move |_, ws| echo_heartbeats(ws, seen_tx.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), history(&dir));
    let mut probes = 0;
    while probes < 5 {
        if seen.recv().await.unwrap() == "online" {
            probes += 1;
        }
    }
    assert_eq!(server.accepted(), 1);
    assert_eq!(session.stats().connects, 1);
    assert!(matches!(session.state(), SessionState::Connected { .. }));
    session.shutdown().await;
}

#[tokio::test]
async fn garbage_is_counted_and_dropped_and_the_link_stays_up() {
    let server = Scripted::start(|_, mut ws| async move {
        next_text(&mut ws).await;
        send_text(&mut ws, "{not json").await;
        send_text(&mut ws, r#"{"form": {"id": 2, "name": "wang2"}, "to": {"id": 1}}"#).await;
        let _ = ws.send(Message::binary(vec![1u8, 2, 3])).await;
        send_text(&mut ws, r#"{"type": "presence", "who": 2}"#).await;
        send_text(&mut ws, SAMPLE).await;
        echo_heartbeats(ws, mpsc::unbounded_channel().0).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), history(&dir));
    let mut events = session.subscribe();
    let mut dropped = Vec::new();
    let talk = wait_event(&mut events, |e| match e {
        SessionEvent::Dropped { error } => {
            dropped.push(error.clone());
            None
        }
        SessionEvent::Talk { talk, .. } => Some(talk.talk.clone()),
        _ => None,
    })
    .await;
    assert_eq!(talk, "hello");
    assert_eq!(dropped.len(), 4, "{dropped:?}");
    assert!(matches!(dropped[0], ProtocolError::Malformed(_)));
    assert_eq!(dropped[1], ProtocolError::MissingField("form.talk"));
    assert!(matches!(dropped[3], ProtocolError::UnknownType(ref t) if t == "presence"));
    assert_eq!(session.stats().dropped_frames, 4);
    assert_eq!(session.stats().connects, 1);
    assert!(matches!(session.state(), SessionState::Connected { .. }));
    session.shutdown().await;
}

#[tokio::test]
async fn an_oversized_message_is_refused_and_the_client_reconnects() {
    let server = Scripted::start(|n, mut ws| async move {
        next_text(&mut ws).await;
        if n == 1 {
            let huge = talk_json(1, 1, &"x".repeat(70 * 1024));
            send_text(&mut ws, huge).await;
        } else {
            send_text(&mut ws, talk_json(2, 1, "small")).await;
        }
        echo_heartbeats(ws, mpsc::unbounded_channel().0).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), history(&dir));
    let mut events = session.subscribe();
    let (size, limit) = wait_event(&mut events, |e| match e {
        SessionEvent::Oversized { size, limit } => Some((*size, *limit)),
        _ => None,
    })
    .await;
    assert!(size > limit && limit == 64 * 1024, "{size} {limit}");
    let next = wait_event(&mut events, |e| match e {
        SessionEvent::Talk { talk, .. } => Some(talk.talk.clone()),
        _ => None,
    })
    .await;
    assert_eq!(next, "small");
    assert_eq!(session.stats().connects, 2);
    assert_eq!(session.stats().oversized_frames, 1);
    session.shutdown().await;
}

/// After a rejection nothing may happen on its own: over a minute of (paused) time the
/// session stays signed out without a single change (an attempt begins by publishing
/// "connecting", before it opens a socket), and the server sees no new connection.
async fn assert_no_attempts_for_a_minute(session: &SessionHandle, server: &Scripted, accepted: usize) {
    assert_still_signed_out_for_a_minute(session).await;
    assert_eq!(server.accepted(), accepted, "no attempt after a rejection");
}

async fn assert_still_signed_out_for_a_minute(session: &SessionHandle) {
    let mut now = session.watch();
    let before = now.borrow_and_update().state.clone();
    assert!(matches!(before, SessionState::SignedOut { .. }), "{before:?}");
    tokio::time::pause();
    tokio::time::sleep(Duration::from_secs(61)).await;
    tokio::time::resume();
    assert!(!now.has_changed().unwrap_or(true), "no attempt after a rejection: {:?}", now.borrow().state);
}

#[tokio::test]
async fn close_4001_signs_out_and_stops_trying() {
    let server = Scripted::start(|_, mut ws| async move {
        next_text(&mut ws).await;
        send_text(&mut ws, r#"{"type": "error", "code": "unauthorized", "message": "unknown token"}"#).await;
        let _ = ws.close(Some(CloseFrame { code: CloseCode::from(4001), reason: "unauthorized".into() })).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), history(&dir));
    let mut events = session.subscribe();
    let state = wait_state(&session, |s| matches!(s, SessionState::SignedOut { reason: Some(_) })).await;
    let mut states = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let SessionEvent::State(s) = e {
            states.push(s.label());
        }
    }
    assert_eq!(states, ["connecting", "authenticating", "signed out"], "a refusal never looks connected");
    let SessionState::SignedOut { reason: Some(reason) } = state else { unreachable!() };
    assert!(reason.to_string().contains("unknown token"), "{reason}");
    assert_no_attempts_for_a_minute(&session, &server, 1).await;
    session.reconnect_now();
    assert_no_attempts_for_a_minute(&session, &server, 1).await;
    assert!(matches!(session.state(), SessionState::SignedOut { .. }));
    session.shutdown().await;
}

#[tokio::test]
async fn an_unauthorized_error_frame_signs_out_even_if_the_server_keeps_the_socket_open() {
    let server = Scripted::start(|_, mut ws| async move {
        next_text(&mut ws).await;
        send_text(&mut ws, r#"{"type": "error", "code": "unauthorized", "message": "token expired"}"#).await;
        // No close: the server answers heartbeats as if nothing had happened.
        echo_heartbeats(ws, mpsc::unbounded_channel().0).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), history(&dir));
    let state = wait_state(&session, |s| matches!(s, SessionState::SignedOut { reason: Some(_) })).await;
    assert!(format!("{state:?}").contains("token expired"), "{state:?}");
    assert_no_attempts_for_a_minute(&session, &server, 1).await;
    session.shutdown().await;
}

#[tokio::test]
async fn close_4003_without_an_error_frame_signs_out_too() {
    let server = Scripted::start(|_, mut ws| async move {
        next_text(&mut ws).await;
        let _ = ws.close(Some(CloseFrame { code: CloseCode::from(4003), reason: "".into() })).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), history(&dir));
    let state = wait_state(&session, |s| matches!(s, SessionState::SignedOut { reason: Some(_) })).await;
    assert!(format!("{state:?}").contains("4003"));
    assert_no_attempts_for_a_minute(&session, &server, 1).await;
    session.shutdown().await;
}

#[tokio::test]
async fn http_401_to_the_handshake_signs_out_and_new_credentials_try_again() {
    refused_handshake(b"HTTP/1.1 401 Unauthorized", "401").await;
}

#[tokio::test]
async fn http_403_to_the_handshake_signs_out_too() {
    refused_handshake(b"HTTP/1.1 403 Forbidden", "403").await;
}

/// A server that answers the WebSocket handshake with `status`: signed out, no attempt
/// for a minute, and new credentials try again.
async fn refused_handshake(status: &'static [u8], code: &str) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(std::sync::Mutex::new(0usize));
    let count = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            *count.lock().unwrap() += 1;
            let mut buf = [0u8; 2048];
            let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
            let _ = tcp.write_all(status).await;
            let _ = tcp.write_all(b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        }
    });
    let url = format!("ws://{addr}/");
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&url, Some(1))), history(&dir));
    let state = wait_state(&session, |s| matches!(s, SessionState::SignedOut { reason: Some(_) })).await;
    assert!(format!("{state:?}").contains(code), "{state:?}");
    assert_still_signed_out_for_a_minute(&session).await;
    assert_eq!(*hits.lock().unwrap(), 1);
    // Signing in again is what makes it try again.
    session.set_credentials(creds(&url, Some(1)));
    wait_state(&session, |s| matches!(s, SessionState::Connecting { .. })).await;
    wait_state(&session, |s| matches!(s, SessionState::SignedOut { .. })).await;
    assert_eq!(*hits.lock().unwrap(), 2);
    session.shutdown().await;
}

#[tokio::test]
async fn a_welcome_asking_for_a_1_ms_heartbeat_gets_one_a_second_at_most() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
    let server = Scripted::start(move |_, mut ws| {
        let seen = seen_tx.clone();
        async move {
            next_text(&mut ws).await;
            send_text(&mut ws, r#"{"type": "welcome", "user": {"id": 1, "name": "wang1"}, "heartbeat": {"interval_ms": 1, "timeout_ms": 1}}"#).await;
            echo_heartbeats(ws, seen).await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let spawned_at = Instant::now();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), None)), history(&dir));
    wait_state(&session, |s| matches!(s, SessionState::Connected { .. })).await;
    let mut probes = Vec::new();
    while probes.len() < 3 {
        let frame = tokio::time::timeout(Duration::from_secs(30), seen.recv()).await.expect("heartbeats").unwrap();
        if frame == "online" {
            probes.push(Instant::now());
        }
    }
    // Held to 1 s: the third probe comes at least 3 s after the start, each after a second
    // of silence (a 1 ms heartbeat would send three within milliseconds; counted from
    // before the session began, this holds however late the frames arrive), and the link
    // is still up (a 1 ms timeout would have declared it dead).
    let third = probes[2] - spawned_at;
    assert!(third >= Duration::from_secs(3), "three heartbeats {third:?} after the start");
    assert!(matches!(session.state(), SessionState::Connected { .. }), "{:?}", session.state());
    assert_eq!(session.stats().connects, 1);
    session.shutdown().await;
}

#[tokio::test]
async fn a_welcome_names_the_user_and_sets_the_heartbeat() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(String, Instant)>();
    let server = Scripted::start(move |_, mut ws| {
        let seen = seen_tx.clone();
        async move {
            next_text(&mut ws).await;
            send_text(&mut ws, r#"{"type": "welcome", "user": {"id": 1, "name": "wang1"}, "heartbeat": {"interval_ms": 1500, "timeout_ms": 1000}}"#).await;
            send_text(&mut ws, SAMPLE).await;
            while let Some(t) = next_text(&mut ws).await {
                let _ = seen.send((t, Instant::now()));
                let _ = ws.send(Message::text("online")).await;
            }
        }
    })
    .await;
    // No user id in the credentials: the welcome is what says the sample is for us.
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), None)), history(&dir));
    let mut events = session.subscribe();
    let first_connected = wait_event(&mut events, |e| match e {
        SessionEvent::State(SessionState::Connected { user }) => Some(user.welcomed().cloned()),
        _ => None,
    })
    .await;
    assert_eq!(first_connected.map(|u| u.name), Some("wang1".to_owned()));
    let for_me = wait_event(&mut events, |e| match e {
        SessionEvent::Talk { for_me, .. } => Some(*for_me),
        _ => None,
    })
    .await;
    assert!(for_me);
    match session.state() {
        SessionState::Connected { user: Identity::Welcomed(user) } => assert_eq!(user.name, "wang1"),
        other => panic!("{other:?}"),
    }
    // The session owns who the user is, and publishes it beside the state.
    assert_eq!(session.user_id(), Some(UserId::from(1)));
    assert_eq!(session.watch().borrow().user, Some(UserId::from(1)));
    let started = Instant::now();
    let (probe, at) = seen.recv().await.unwrap();
    assert_eq!(probe, "online");
    // The server's 1.5 s interval, not the configured 0.3 s.
    assert!(at - started >= Duration::from_millis(1000), "{:?}", at - started);
    session.sign_out();
    wait_state(&session, |s| matches!(s, SessionState::SignedOut { .. })).await;
    assert_eq!(session.user_id(), None, "signed out by the user: nobody");
    session.shutdown().await;
}

#[tokio::test]
async fn the_session_starts_with_the_configured_user_and_credentials_replace_it() {
    let configured = SessionConfig { user_id: Some(UserId::from(7)), ..config(fast_timing()) };
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(configured, None, history(&dir));
    assert_eq!(session.user_id(), Some(UserId::from(7)));
    // Not a server: the attempt fails, but the credentials name the user at once.
    session.set_credentials(creds("ws://127.0.0.1:9/", Some(3)));
    wait_state(&session, |s| matches!(s, SessionState::Connecting { .. } | SessionState::Backoff { .. })).await;
    assert_eq!(session.user_id(), Some(UserId::from(3)));
    session.shutdown().await;
}

#[tokio::test]
async fn a_talk_that_cannot_be_stored_is_not_acked_and_comes_again() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let server = Scripted::start(move |_, mut ws| {
        let seen = seen_tx.clone();
        async move {
            next_text(&mut ws).await;
            send_text(&mut ws, talk_json(9, 1, "precious")).await;
            echo_heartbeats(ws, seen).await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = history(&dir);
    fill_up(&store);
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), store.clone());
    let mut events = session.subscribe();
    let error = wait_event(&mut events, |e| match e {
        SessionEvent::StoreFailed { error } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert_eq!(error, StoreError::DiskFull);
    assert!(error.to_string().contains("disk is full"), "{error}");
    make_room(&store);
    let talk = wait_event(&mut events, |e| match e {
        SessionEvent::Talk { talk, .. } => Some(talk.talk.clone()),
        _ => None,
    })
    .await;
    assert_eq!(talk, "precious");
    // The only ack is for the stored copy: the first link sent none. The link's next
    // heartbeat closes the count: it comes an interval of silence after the talk, and the
    // frames of a link arrive in order.
    let mut acks = 0;
    while let Ok(frame) = seen.try_recv() {
        acks += frame.contains("ack") as usize;
    }
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), seen.recv()).await.expect("a heartbeat").unwrap();
        if frame == "online" {
            break;
        }
        acks += frame.contains("ack") as usize;
    }
    assert_eq!(acks, 1);
    assert!(server.accepted() >= 2);
    session.shutdown().await;
}

#[tokio::test]
async fn shutdown_is_bounded_when_the_server_ignores_the_close() {
    let server = Scripted::start(|_, mut ws| async move {
        next_text(&mut ws).await;
        send_text(&mut ws, "online").await;
        // Never read again, never answer the close.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(ws);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), history(&dir));
    wait_state(&session, |s| matches!(s, SessionState::Connected { .. })).await;
    let started = std::time::Instant::now();
    session.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(session.state(), SessionState::Stopped);
}

#[tokio::test]
async fn signing_out_closes_the_link_and_new_credentials_connect_at_once() {
    let server = Scripted::start(|_, ws| echo_heartbeats(ws, mpsc::unbounded_channel().0)).await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), None, history(&dir));
    assert_eq!(session.state(), SessionState::SignedOut { reason: None });
    session.set_credentials(creds(&server.url(), Some(1)));
    wait_state(&session, |s| matches!(s, SessionState::Connected { .. })).await;
    session.sign_out();
    wait_state(&session, |s| matches!(s, SessionState::SignedOut { .. })).await;
    assert_eq!(server.accepted(), 1);
    session.set_credentials(creds(&server.url(), Some(1)));
    wait_state(&session, |s| matches!(s, SessionState::Connected { .. })).await;
    assert_eq!(server.accepted(), 2);
    session.shutdown().await;
}

/// The engine's keyring reader answers while signed out for a keyring reason: its reason
/// is shown (once), and its token connects.
#[tokio::test]
async fn an_answer_from_the_keyring_signs_out_with_its_reason_or_connects_with_its_token() {
    let server = Scripted::start(|_, ws| echo_heartbeats(ws, mpsc::unbounded_channel().0)).await;
    let start = Start::SignedOut(Some(SignedOutReason::ReadingKeyring));
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn_with(config(fast_timing()), start, history(&dir));
    // Readable at once, before the task has run.
    assert_eq!(session.state(), SessionState::SignedOut { reason: Some(SignedOutReason::ReadingKeyring) });
    let mut events = session.subscribe();
    session.keyring_answer(KeyringAnswer::Unreadable(SignedOutReason::KeyringLocked));
    session.keyring_answer(KeyringAnswer::Unreadable(SignedOutReason::KeyringLocked));
    let locked = SessionState::SignedOut { reason: Some(SignedOutReason::KeyringLocked) };
    wait_state(&session, |s| *s == locked).await;
    session.keyring_answer(KeyringAnswer::Token(creds(&server.url(), Some(1))));
    wait_state(&session, |s| matches!(s, SessionState::Connected { .. })).await;
    let mut states = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let SessionEvent::State(s) = e {
            states.push(s);
        }
    }
    assert_eq!(states.iter().filter(|s| **s == locked).count(), 1, "the same reason twice is one state: {states:?}");
    assert_eq!(server.accepted(), 1);
    session.shutdown().await;
}

/// A sign-in (or sign-out) made while the keyring was being read wins: an answer from the
/// keyring that comes later, token or reason, changes nothing.
#[tokio::test]
async fn a_late_answer_from_the_keyring_never_replaces_a_sign_in_or_a_sign_out() {
    let stored = Scripted::start(|_, ws| echo_heartbeats(ws, mpsc::unbounded_channel().0)).await;
    let user = Scripted::start(|_, ws| echo_heartbeats(ws, mpsc::unbounded_channel().0)).await;
    let start = Start::SignedOut(Some(SignedOutReason::KeyringLocked));
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn_with(config(fast_timing()), start, history(&dir));
    session.set_credentials(creds(&user.url(), Some(1)));
    wait_state(&session, |s| matches!(s, SessionState::Connected { .. })).await;

    session.keyring_answer(KeyringAnswer::Token(creds(&stored.url(), Some(1))));
    session.keyring_answer(KeyringAnswer::Unreadable(SignedOutReason::KeyringNoAnswer));
    session.keyring_answer(KeyringAnswer::Missing);
    // Commands are taken in order: once this reply is answered (refused: a server without
    // a welcome takes none), the answers have been seen.
    let to = Person { id: 2.into(), name: "wang2".into() };
    let answer = session.reply(to.clone(), "still mine".into()).await;
    assert!(matches!(answer, Err(ReplyError::NotOffered)), "{answer:?}");
    assert!(matches!(session.state(), SessionState::Connected { .. }), "{:?}", session.state());

    session.sign_out();
    wait_state(&session, |s| *s == SessionState::SignedOut { reason: None }).await;
    session.keyring_answer(KeyringAnswer::Token(creds(&stored.url(), Some(1))));
    session.keyring_answer(KeyringAnswer::Unreadable(SignedOutReason::KeyringLocked));
    let refused = session.reply(to, "signed out".into()).await;
    assert!(matches!(refused, Err(ReplyError::SignedOut)), "{refused:?}");
    assert_eq!(session.state(), SessionState::SignedOut { reason: None });
    assert_eq!((stored.accepted(), user.accepted()), (0, 1), "the stored token was never used");
    session.shutdown().await;
}

/// Whether the talk `text` was told as the user's.
async fn for_me_of(events: &mut broadcast::Receiver<SessionEvent>, text: &str) -> bool {
    wait_event(events, |e| match e {
        SessionEvent::Talk { talk, for_me, .. } if talk.talk == text => Some(*for_me),
        _ => None,
    })
    .await
}

/// A server as the original ones were: no welcome, `online` answered, and the talks
/// pushed through `push` sent to every link.
async fn original_server(push: &broadcast::Sender<String>) -> Scripted {
    let push = push.clone();
    Scripted::start(move |_, mut ws| {
        let mut talks = push.subscribe();
        async move {
            next_text(&mut ws).await;
            loop {
                tokio::select! {
                    frame = next_text(&mut ws) => match frame {
                        Some(t) if t == "online" => send_text(&mut ws, "online").await,
                        Some(_) => {}
                        None => return,
                    },
                    Ok(talk) = talks.recv() => send_text(&mut ws, talk).await,
                }
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_server_without_a_welcome_leaves_the_user_unknown_until_they_give_their_id() {
    let (push, _) = broadcast::channel(8);
    let server = original_server(&push).await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), None)), history(&dir));
    let mut events = session.subscribe();
    // Connected at its answer to the first heartbeat, not knowing who the user is.
    let state = wait_state(&session, |s| matches!(s, SessionState::Connected { .. })).await;
    assert_eq!(state, SessionState::Connected { user: Identity::Unknown });
    assert_eq!(session.user_id(), None);
    let talk = |text: &str| format!(r#"{{"form": {{"id": 2, "name": "wang2", "talk": "{text}"}}, "to": {{"id": 7}}}}"#);
    push.send(talk("before")).unwrap();
    assert!(!for_me_of(&mut events, "before").await, "a talk was taken as the unknown user's");

    // The user says who they are: on this link, without a reconnect.
    session.set_user_id(UserId::from(7));
    let given = wait_event(&mut events, |e| match e {
        SessionEvent::State(s @ SessionState::Connected { .. }) => Some(s.clone()),
        _ => None,
    })
    .await;
    assert_eq!(given, SessionState::Connected { user: Identity::Given(UserId::from(7)) });
    assert_eq!(session.user_id(), Some(UserId::from(7)));
    push.send(talk("after")).unwrap();
    assert!(for_me_of(&mut events, "after").await, "a talk to user 7 was not theirs");
    assert_eq!(session.stats().connects, 1, "setting the id reconnected");

    // The next link keeps it.
    session.reconnect_now();
    wait_event(&mut events, |e| matches!(e, SessionEvent::State(SessionState::Connecting { .. })).then_some(())).await;
    let again = wait_state(&session, |s| matches!(s, SessionState::Connected { .. })).await;
    assert_eq!(again, SessionState::Connected { user: Identity::Given(UserId::from(7)) });
    session.shutdown().await;
}

#[tokio::test]
async fn a_user_id_set_on_a_server_whose_welcome_named_the_user_changes_nothing() {
    let server = Scripted::start(|_, mut ws| async move {
        next_text(&mut ws).await;
        send_text(&mut ws, r#"{"type": "welcome", "user": {"id": 1, "name": "wang1"}}"#).await;
        echo_heartbeats(ws, mpsc::unbounded_channel().0).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), None)), history(&dir));
    wait_state(&session, |s| matches!(s, SessionState::Connected { user: Identity::Welcomed(_) })).await;
    session.set_user_id(UserId::from(9));
    // A command after it is answered only once the id was handled (a reply, refused: the
    // welcome did not list `send`).
    let answer = session.reply(Person { id: UserId::from(2), name: String::new() }, "hi".into()).await;
    assert!(matches!(answer, Err(ReplyError::NotOffered)), "{answer:?}");
    assert_eq!(session.user_id(), Some(UserId::from(1)));
    assert!(matches!(session.state(), SessionState::Connected { user: Identity::Welcomed(p) } if p.name == "wang1"));
    session.shutdown().await;
}
