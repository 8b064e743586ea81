//! The WebSocket side: hello, welcome, rejection, heartbeat, bad input, limits, timeouts,
//! talks from connected clients, shutdown.

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use support::*;
use talkbell_core::protocol::{HeartbeatHint, MAX_MESSAGE_BYTES};
use talkbell_relay::RateLimit;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn hello_gets_welcome() {
    let env = start().await;
    let mut ws = connect(&env.ws_url()).await;
    send_text(&mut ws, hello_text(env.token(1), "dev-1", None)).await;
    let welcome = next_json(&mut ws).await;
    let epoch = env.relay.epoch();
    assert_eq!(
        welcome,
        json!({"type": "welcome", "user": {"id": 1, "name": "wang1"},
               "features": ["resume", "ack", "send"], "epoch": epoch, "last_seq": 0})
    );
    assert_alive(&mut ws).await;
    assert_eq!(env.relay.connections(), 1);
}

#[tokio::test]
async fn welcome_carries_the_heartbeat_hint_when_configured() {
    let env =
        start_with(|c| c.heartbeat_hint = Some(HeartbeatHint { interval_ms: Some(25_000), timeout_ms: Some(10_000) }))
            .await;
    let mut ws = connect(&env.ws_url()).await;
    send_text(&mut ws, hello_text(env.token(2), "dev-2", None)).await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(
        welcome,
        json!({"type": "welcome", "user": {"id": 2, "name": "wang2"},
               "heartbeat": {"interval_ms": 25000, "timeout_ms": 10000},
               "features": ["resume", "ack", "send"], "epoch": env.relay.epoch(), "last_seq": 0})
    );
}

#[tokio::test]
async fn any_path_accepts_websocket_clients() {
    let env = start().await;
    let url = format!("{}some/old/path?x=1", env.ws_url());
    signed_in(&url, env.token(1), "dev", None).await;
}

#[tokio::test]
async fn unknown_token_gets_error_frame_and_close_4001() {
    let env = start().await;
    let mut ws = connect(&env.ws_url()).await;
    send_text(&mut ws, hello_text("not-a-token", "dev", None)).await;
    let err = next_json(&mut ws).await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "unauthorized");
    assert_eq!(close_code(&mut ws).await, Some(4001));
}

#[tokio::test]
async fn missing_or_empty_token_is_unauthorized() {
    let env = start().await;
    for hello in [json!({"uuid": "dev"}), json!({"uuid": "dev", "token": "  "})] {
        let mut ws = connect(&env.ws_url()).await;
        send_text(&mut ws, hello.to_string()).await;
        assert_eq!(next_json(&mut ws).await["code"], "unauthorized");
        assert_eq!(close_code(&mut ws).await, Some(4001));
    }
}

#[tokio::test]
async fn frames_before_hello_get_errors_then_hello_still_works() {
    let env = start().await;
    let mut ws = connect(&env.ws_url()).await;
    send_text(&mut ws, "online").await;
    assert_eq!(next_json(&mut ws).await["code"], "hello_required");
    send_text(&mut ws, "{not json").await;
    assert_eq!(next_json(&mut ws).await["code"], "hello_required");
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "unsupported");
    send_text(&mut ws, hello_text(env.token(3), "dev", None)).await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
}

#[tokio::test]
async fn silent_client_is_closed_after_the_hello_timeout() {
    let env = start_with(|c| c.hello_timeout = Duration::from_millis(300)).await;
    let mut ws = connect(&env.ws_url()).await;
    let started = std::time::Instant::now();
    assert_eq!(next_json(&mut ws).await["code"], "hello_timeout");
    assert_eq!(close_code(&mut ws).await, Some(1008));
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn online_is_answered_with_online() {
    let env = start().await;
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", None).await;
    for _ in 0..3 {
        assert_alive(&mut ws).await;
    }
}

#[tokio::test]
async fn idle_connection_is_closed_and_heartbeats_keep_it_open() {
    let env = start_with(|c| c.idle_timeout = Duration::from_millis(1000)).await;
    let mut busy = signed_in(&env.ws_url(), env.token(1), "busy", None).await;
    let mut idle = signed_in(&env.ws_url(), env.token(2), "idle", None).await;
    // The busy client's heartbeat, until the idle one is closed (busy has been open
    // longer than the idle timeout by then).
    let mut heartbeat = tokio::time::interval(Duration::from_millis(150));
    let idle_closed = close_code(&mut idle);
    tokio::pin!(idle_closed);
    let code = loop {
        tokio::select! {
            code = &mut idle_closed => break code,
            _ = heartbeat.tick() => assert_alive(&mut busy).await,
        }
    };
    assert_eq!(code, Some(1000));
    assert_alive(&mut busy).await;
}

#[tokio::test]
async fn bad_input_gets_error_frames_and_keeps_the_connection() {
    let env = start().await;
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", None).await;
    let cases = [
        ("{malformed", "bad_frame"),
        ("[1, 2, 3]", "bad_frame"),
        ("\"text\"", "bad_frame"),
        ("Online", "bad_frame"),
        (r#"{"type": "presence", "x": 1}"#, "bad_frame"),
        (r#"{"hello": 1}"#, "bad_frame"),
        (r#"{"type": "ack"}"#, "bad_frame"),
        (r#"{"type": "ack", "seq": -4}"#, "bad_frame"),
        (r#"{"form": {"id": 1, "name": "wang1"}, "to": {"id": 2}}"#, "bad_frame"),
        (&hello_text(env.token(1), "dev", None), "already_signed_in"),
    ];
    for (text, code) in cases {
        send_text(&mut ws, text).await;
        let err = next_json(&mut ws).await;
        assert_eq!(err["type"], "error", "{text}");
        assert_eq!(err["code"], code, "{text}: {err}");
        assert_alive(&mut ws).await;
    }
    ws.send(Message::binary(vec![0u8; 100])).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "unsupported");
    ws.send(Message::Ping(vec![1u8].into())).await.unwrap();
    assert_alive(&mut ws).await;
    // An ack of something never sent is harmless.
    send_text(&mut ws, r#"{"type": "ack", "seq": 99}"#).await;
    assert_alive(&mut ws).await;
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let env = start().await;
    // Just over the limit, and far over it (past what the WebSocket layer buffers).
    for size in [MAX_MESSAGE_BYTES + 1, 1024 * 1024] {
        let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", None).await;
        send_text(&mut ws, "x".repeat(size)).await;
        assert_eq!(close_code(&mut ws).await, Some(1009), "size {size}");
    }
    // A frame exactly at the limit is fine (and is only a bad frame).
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", None).await;
    send_text(&mut ws, "x".repeat(MAX_MESSAGE_BYTES)).await;
    assert_eq!(next_json(&mut ws).await["code"], "bad_frame");
    assert_alive(&mut ws).await;
}

#[tokio::test]
async fn oversized_hello_closes_with_1009() {
    let env = start().await;
    let mut ws = connect(&env.ws_url()).await;
    send_text(&mut ws, "y".repeat(MAX_MESSAGE_BYTES + 10)).await;
    assert_eq!(close_code(&mut ws).await, Some(1009));
}

#[tokio::test]
async fn flooding_client_is_rate_limited_but_kept() {
    let env = start_with(|c| c.ws_rate = RateLimit::new(5.0, 10)).await;
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", None).await;
    for _ in 0..40 {
        send_text(&mut ws, "online").await;
    }
    // A ping is never rate limited; its pong comes after the answers to the 40.
    let (mut answered, mut limited) = (0, 0);
    for t in texts_before_pong(&mut ws, b"flood").await {
        if t == "online" {
            answered += 1;
        } else {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["code"], "rate_limited", "{v}");
            limited += 1;
        }
    }
    assert!(answered >= 10, "the burst is served: answered {answered}");
    assert!(answered < 40, "some frames were dropped");
    assert!(limited >= 1, "no rate_limited error");
    assert!(limited < 40 - answered, "errors are throttled: {limited} for {} dropped", 40 - answered);
    // Once the bucket refills, the connection is served again.
    wait_until("the connection's bucket to refill", async || {
        send_text(&mut ws, "online").await;
        texts_before_pong(&mut ws, b"probe").await.iter().any(|t| t == "online").then_some(())
    })
    .await;
}

#[tokio::test]
async fn talks_from_clients_are_routed_and_spoofing_is_refused() {
    let env = start().await;
    let mut one = signed_in(&env.ws_url(), env.token(1), "one", None).await;
    let mut two = signed_in(&env.ws_url(), env.token(2), "two", None).await;

    // A talk as someone else: an error, the connection stays, nothing is delivered.
    send_text(&mut one, json!({"form": {"id": 3, "name": "wang3", "talk": "fake"}, "to": {"id": 2}}).to_string()).await;
    let err = next_json(&mut one).await;
    assert_eq!(err["code"], "bad_sender");
    assert_ne!(err["code"], "forbidden", "forbidden would sign the client out");
    assert_alive(&mut one).await;

    // A real reply ("from" spelling, string id, a made-up name the relay replaces).
    send_text(
        &mut one,
        json!({"from": {"id": "1", "name": "me?", "talk": "reply"}, "to": {"id": "2"}, "seq": 77}).to_string(),
    )
    .await;
    let talk = next_talk(&mut two).await;
    assert_eq!(talk["form"], json!({"id": 1, "name": "wang1", "talk": "reply"}));
    assert_eq!(talk["to"], json!({"id": 2, "name": "wang2"}));
    assert_eq!(talk["seq"], 1);
    assert!(talk["ts"].as_i64().unwrap() > 1_700_000_000_000);

    // To nobody: an error frame.
    send_text(&mut one, json!({"form": {"id": 1, "name": "wang1", "talk": "x"}, "to": {"id": 42}}).to_string()).await;
    assert_eq!(next_json(&mut one).await["code"], "unknown_recipient");
    assert_alive(&mut one).await;
    // Nothing else reached two: the next talk it gets is seq 2.
    send_text(&mut one, json!({"form": {"id": 1, "name": "wang1", "talk": "again"}, "to": {"id": 2}}).to_string())
        .await;
    assert_eq!(next_talk(&mut two).await["seq"], 2);
}

/// `send` (PROTOCOL.md 1.4): the recipient gets an ordinary talk from the token's user,
/// and the sender a `sent` with the recipient's seq and ts.
#[tokio::test]
async fn send_is_delivered_from_the_token_user_and_answered_with_sent() {
    let env = start().await;
    let mut one = signed_in(&env.ws_url(), env.token(1), "one", None).await;
    let mut two = signed_in(&env.ws_url(), env.token(2), "two", None).await;
    env.post_n(2, 2, "before ").await;
    for seq in 1..=2 {
        assert_eq!(next_talk(&mut two).await["seq"], seq);
    }
    let answer = sent(&mut one, "c0ffee-1", 2, "on my way").await;
    let talk = next_talk(&mut two).await;
    assert_eq!(talk["form"], json!({"id": 1, "name": "wang1", "talk": "on my way"}));
    assert_eq!(talk["to"], json!({"id": 2, "name": "wang2"}));
    assert_eq!(talk["seq"], 3);
    assert_eq!(answer, json!({"type": "sent", "id": "c0ffee-1", "seq": 3, "ts": talk["ts"]}));
    // A frame that names another sender changes nothing: the sender is the token's.
    send_text(
        &mut one,
        json!({"type": "send", "id": "c0ffee-2", "form": {"id": 3}, "to": {"id": 2}, "talk": "me"}).to_string(),
    )
    .await;
    assert_eq!(next_json(&mut one).await["type"], "sent");
    assert_eq!(next_talk(&mut two).await["form"]["id"], 1);
}

/// A retried id (a lost `sent`, a reconnect) gets the same `sent` and is delivered once,
/// across connections too.
#[tokio::test]
async fn a_retried_send_is_delivered_once_with_the_same_seq() {
    let env = start().await;
    let mut one = signed_in(&env.ws_url(), env.token(1), "one", None).await;
    let mut two = signed_in(&env.ws_url(), env.token(2), "two", None).await;
    let first = sent(&mut one, "retry-me", 2, "once").await;
    assert_eq!(first["type"], "sent", "{first}");
    assert_eq!(first["seq"], 1);
    assert_eq!(sent(&mut one, "retry-me", 2, "once").await, first);
    drop(one);
    let mut again = signed_in(&env.ws_url(), env.token(1), "one", None).await;
    assert_eq!(sent(&mut again, "retry-me", 2, "once").await, first);
    // Another sender's same id is another talk.
    let mut three = signed_in(&env.ws_url(), env.token(3), "three", None).await;
    let other = sent(&mut three, "retry-me", 2, "mine").await;
    assert_eq!(other["seq"], 2, "{other}");
    // Two got "once" one time, then "mine": nothing twice.
    assert_eq!(next_talk(&mut two).await["form"]["talk"], "once");
    assert_eq!(next_talk(&mut two).await["form"]["talk"], "mine");
    assert_eq!(env.post_n(2, 1, "next").await, vec![3], "the retries used no seq");
}

#[tokio::test]
async fn a_send_too_long_or_to_nobody_gets_an_error_with_its_id() {
    let env = start().await;
    let mut one = signed_in(&env.ws_url(), env.token(1), "one", None).await;
    let mut two = signed_in(&env.ws_url(), env.token(2), "two", None).await;
    // 4,000 characters (not bytes) is the limit.
    let at_limit = "é".repeat(4000);
    assert_eq!(sent(&mut one, "at-limit", 2, &at_limit).await["type"], "sent");
    assert_eq!(next_talk(&mut two).await["form"]["talk"], at_limit);
    let err = sent(&mut one, "too-long", 2, &"é".repeat(4001)).await;
    assert_eq!((&err["type"], &err["id"], &err["code"]), (&json!("error"), &json!("too-long"), &json!("too_long")));
    let err = sent(&mut one, "nobody", 42, "hello?").await;
    assert_eq!(
        (&err["type"], &err["id"], &err["code"]),
        (&json!("error"), &json!("nobody"), &json!("unknown_recipient"))
    );
    assert_alive(&mut one).await;
    // Nothing reached two: the next talk is seq 2.
    assert_eq!(sent(&mut one, "after", 2, "after").await["seq"], 2);
    assert_eq!(next_talk(&mut two).await["seq"], 2);
}

#[tokio::test]
async fn sends_over_the_talk_rate_get_rate_limited_with_their_id() {
    let env = start_with(|c| c.http_rate = RateLimit::new(0.001, 2)).await;
    let mut one = signed_in(&env.ws_url(), env.token(1), "one", None).await;
    assert_eq!(sent(&mut one, "a", 2, "1").await["type"], "sent");
    assert_eq!(sent(&mut one, "b", 2, "2").await["type"], "sent");
    let err = sent(&mut one, "c", 2, "3").await;
    assert_eq!((&err["id"], &err["code"]), (&json!("c"), &json!("rate_limited")));
    assert_alive(&mut one).await;
}

#[tokio::test]
async fn a_send_over_the_frame_rate_is_answered_with_its_id() {
    let env = start_with(|c| c.ws_rate = RateLimit::new(0.001, 1)).await;
    let mut one = signed_in(&env.ws_url(), env.token(1), "one", None).await;
    assert_eq!(sent(&mut one, "a", 2, "1").await["type"], "sent");
    // Over the frame rate a send is still answered (with its id), every time.
    for id in ["b", "c"] {
        let err = sent(&mut one, id, 2, "x").await;
        assert_eq!((&err["id"], &err["code"]), (&json!(id), &json!("rate_limited")), "{err}");
    }
}

#[tokio::test]
async fn shutdown_closes_connections_with_1001() {
    let env = start().await;
    let mut a = signed_in(&env.ws_url(), env.token(1), "a", None).await;
    let mut b = connect(&env.ws_url()).await; // not signed in yet
    let addr = env.relay.local_addr();
    let stop = tokio::spawn(async move { env.relay.shutdown().await });
    assert_eq!(close_code(&mut a).await, Some(1001));
    assert_eq!(close_code(&mut b).await, Some(1001));
    tokio::time::timeout(WAIT, stop).await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still listening");
}
