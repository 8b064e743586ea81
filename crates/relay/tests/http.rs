//! POST /v1/talk: routing to every connection of the recipient, seq and ts, error answers.

mod support;

use serde_json::json;
use support::*;
use talkbell_core::protocol::MAX_MESSAGE_BYTES;
use talkbell_relay::{post_talk, RateLimit, SendError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn post_reaches_every_connection_of_the_recipient_and_no_one_else() {
    let env = start().await;
    let url = env.ws_url();
    let mut one_a = signed_in(&url, env.token(1), "one-a", None).await;
    let mut one_b = signed_in(&url, env.token(1), "one-b", None).await;
    let two = signed_in(&url, env.token(2), "two", None).await;
    let three = signed_in(&url, env.token(3), "three", None).await;

    let before = now_ms();
    let mut last_seq = 0;
    for i in 0..5 {
        let posted = post_talk(&env.http_url(), env.token(2), 1, &format!("hello {i}")).await.unwrap();
        assert_eq!(posted.seq, last_seq + 1, "seq strictly increasing by one");
        assert!(posted.ts >= before && posted.ts <= now_ms(), "ts is server time in ms");
        last_seq = posted.seq;
        for ws in [&mut one_a, &mut one_b] {
            let talk = next_talk(ws).await;
            assert_eq!(
                talk,
                json!({"form": {"id": 2, "name": "wang2", "talk": format!("hello {i}")},
                       "to": {"id": 1, "name": "wang1"}, "seq": posted.seq, "ts": posted.ts})
            );
        }
    }

    // Seq is per recipient: user 2's and user 3's first talks are 1, whatever user 1 has
    // had; and being the next talk they get, none of user 1's reached them.
    for (to, mut ws) in [(2, two), (3, three)] {
        let posted = post_talk(&env.http_url(), env.token(1), to, &format!("to {to}")).await.unwrap();
        assert_eq!(posted.seq, 1);
        let talk = next_talk(&mut ws).await;
        assert_eq!((talk["seq"].clone(), talk["form"]["talk"].clone()), (json!(1), json!(format!("to {to}"))));
    }
    // Nor did theirs reach user 1.
    post_talk(&env.http_url(), env.token(2), 1, "to 1").await.unwrap();
    assert_eq!(next_talk(&mut one_a).await["form"]["talk"], "to 1");
}

#[tokio::test]
async fn post_accepts_ws_urls_and_string_ids_and_unicode() {
    let env = start().await;
    let mut two = signed_in(&env.ws_url(), env.token(2), "two", None).await;
    let posted = post_talk(&env.ws_url(), env.token(1), "2", "你好 \"quoted\" \n newline").await.unwrap();
    assert_eq!(posted.seq, 1);
    assert_eq!(next_talk(&mut two).await["form"]["talk"], "你好 \"quoted\" \n newline");
}

#[tokio::test]
async fn post_errors_are_json_with_the_right_status() {
    let env = start_with(|c| c.http_body_limit = 200 * 1024).await;
    let addr = env.relay.local_addr();
    let bearer = format!("Bearer {}", env.token(1));
    let ok_body = br#"{"to": 2, "talk": "hi"}"#;

    // 401: no header, a wrong scheme, an unknown token.
    for auth in [None, Some(format!("Basic {}", env.token(1))), Some("Bearer nope".to_owned())] {
        let (status, body) = raw_post(addr, auth.as_deref(), ok_body).await;
        assert_eq!(status, 401, "{auth:?}");
        assert!(body["error"].is_string(), "{body}");
    }
    // 400: bad JSON, missing or mistyped fields, an empty talk.
    for bad in [
        &b"{not json"[..],
        b"[]",
        br#"{"talk": "hi"}"#,
        br#"{"to": 2}"#,
        br#"{"to": 2, "talk": 3}"#,
        br#"{"to": [2], "talk": "x"}"#,
        br#"{"to": 2, "talk": "   "}"#,
    ] {
        let (status, body) = raw_post(addr, Some(&bearer), bad).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(bad));
        assert!(body["error"].is_string(), "{body}");
    }
    // 404: nobody by that id.
    let (status, body) = raw_post(addr, Some(&bearer), br#"{"to": 404, "talk": "x"}"#).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("404"), "{body}");
    // 413: a talk whose frame would be over 64 KiB, and a body over the HTTP limit.
    let big = json!({"to": 2, "talk": "x".repeat(MAX_MESSAGE_BYTES)}).to_string();
    let (status, body) = raw_post(addr, Some(&bearer), big.as_bytes()).await;
    assert_eq!(status, 413);
    assert!(body["error"].is_string());
    let huge = json!({"to": 2, "talk": "x".repeat(300 * 1024)}).to_string();
    let (status, body) = raw_post(addr, Some(&bearer), huge.as_bytes()).await;
    assert_eq!(status, 413);
    assert!(body["error"].is_string());

    // The same through the client: the status and the server's message.
    let err = post_talk(&env.http_url(), "wrong", 2, "x").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    let err = post_talk(&env.http_url(), env.token(1), 99, "x").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    assert!(err.to_string().contains("no user with id 99"), "{err}");
    let err = post_talk(&env.http_url(), env.token(1), 2, &"x".repeat(MAX_MESSAGE_BYTES)).await.unwrap_err();
    assert_eq!(err.status(), Some(413));

    // Nothing above was stored: the next talk to 2 is seq 1.
    assert_eq!(post_talk(&env.http_url(), env.token(1), 2, "ok").await.unwrap().seq, 1);
}

/// A chunked body (no Content-Length) over the limit is refused as it streams in.
#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413() {
    let env = start_with(|c| c.http_body_limit = 200 * 1024).await;
    let addr = env.relay.local_addr();
    let bearer = format!("Bearer {}", env.token(1));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/talk HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {bearer}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..4 {
        let _ = tcp.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await;
        let _ = tcp.write_all(&chunk).await;
        let _ = tcp.write_all(b"\r\n").await;
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("\"error\""), "{out}");

    // Nothing was stored: the next talk to 2 is seq 1.
    assert_eq!(post_talk(&env.http_url(), env.token(1), 2, "ok").await.unwrap().seq, 1);
}

#[tokio::test]
async fn other_paths_and_methods() {
    let env = start().await;
    let addr = env.relay.local_addr();
    let (status, body) = raw_http(addr, "GET /v1/talk HTTP/1.1\n", b"").await;
    assert_eq!(status, 405, "{body}");
    let (status, body) = raw_http(addr, "GET /nothing HTTP/1.1\n", b"").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    let (status, body) = raw_http(addr, "GET /v1/health HTTP/1.1\n", b"").await;
    assert_eq!((status, body.as_str()), (200, r#"{"ok":true}"#));
}

#[tokio::test]
async fn posts_are_rate_limited_per_token() {
    let env = start_with(|c| c.http_rate = RateLimit::new(1.0, 3)).await;
    for _ in 0..3 {
        post_talk(&env.http_url(), env.token(1), 2, "x").await.unwrap();
    }
    let err = post_talk(&env.http_url(), env.token(1), 2, "x").await.unwrap_err();
    assert_eq!(err.status(), Some(429), "{err}");
    // Another token has its own bucket.
    post_talk(&env.http_url(), env.token(3), 2, "x").await.unwrap();
    // And the bucket refills.
    wait_until("the token's bucket to refill", async || match post_talk(&env.http_url(), env.token(1), 2, "x").await {
        Ok(_) => Some(()),
        Err(e) if e.status() == Some(429) => None,
        Err(e) => panic!("{e}"),
    })
    .await;
}

#[tokio::test]
async fn unreachable_server_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = post_talk(&format!("http://{addr}"), "t", 1, "x").await.unwrap_err();
    assert!(matches!(err, SendError::Refused { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{addr} refused the connection: is the relay running there?"));
    let err = post_talk("http://nothing.invalid:1", "t", 1, "x").await.unwrap_err();
    assert!(matches!(err, SendError::Resolve { ref host, .. } if host == "nothing.invalid"), "{err:?}");
    assert!(err.to_string().starts_with("cannot find the server nothing.invalid: "), "{err}");
    assert!(post_talk("gopher://x", "t", 1, "x").await.is_err());
}
