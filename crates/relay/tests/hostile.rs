//! A hostile peer (issue 10): no token in the logs at any level, no forged log lines,
//! slow and idle HTTP peers closed, connections capped in all and per user, the
//! open-file limit raised, failed logins and frames before the hello limited per address.

mod support;

use std::time::Duration;

use serde_json::json;
use support::child::Served;
use support::*;
use talkbell_relay::{post_talk, RateLimit};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn trace_logs_never_show_a_token() {
    let (_dir, file, t1, t2) = users_file();
    let relay = Served::start_logged(serve_args(&file, &[]), "trace").await;
    let mut ws = connect(&relay.url).await;
    send_text(&mut ws, hello_text(&t1, "dev-trace", Some(0))).await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    let http = relay.url.replace("ws://", "http://");
    post_talk(http.trim_end_matches('/'), &t2, 1, "over http").await.unwrap();
    assert_eq!(next_talk(&mut ws).await["form"]["talk"], "over http");
    assert_alive(&mut ws).await;
    let wrong = "wrong-token-that-must-not-be-logged";
    let mut bad = connect(&relay.url).await;
    send_text(&mut bad, hello_text(wrong, "dev-bad", None)).await;
    assert_eq!(close_code(&mut bad).await, Some(4001));
    relay.wait_log("talk posted", 1).await;
    relay.wait_log("failed login", 1).await;
    let log = relay.stop().await;
    // The log was as verbose as it gets for the relay itself...
    assert!(log.contains("DEBUG") && log.contains("connection opened"), "{log}");
    // ...and no secret is in it, in any form the frames carried.
    for secret in [t1.as_str(), t2.as_str(), wrong] {
        assert!(!log.contains(secret), "a token is in the log:\n{log}");
    }
}

#[tokio::test]
async fn forged_log_lines_and_escape_sequences_are_escaped() {
    let (_dir, file, t1, _t2) = users_file();
    let relay = Served::start(serve_args(&file, &[])).await;
    let forged = "x\n2026-01-01 FAKE LOG LINE\u{1b}]0;pwned\u{7}";
    let long_client = format!("c{}", "y".repeat(300));
    let hello = json!({"uuid": forged, "token": t1, "client": forged, "resume": 0}).to_string();
    let (mut ws, _) = welcomed(&relay.url, hello).await;
    let hello = json!({"uuid": "dev-long", "token": t1, "client": long_client}).to_string();
    welcomed(&relay.url, hello).await;
    let mut bad = connect(&relay.url).await;
    send_text(&mut bad, json!({"uuid": forged, "token": "nope", "client": forged}).to_string()).await;
    assert_eq!(close_code(&mut bad).await, Some(4001));
    // A talk claiming someone else's id, and a path, reach the log too.
    send_text(&mut ws, json!({"form": {"id": forged, "name": "x", "talk": "t"}, "to": {"id": 2}}).to_string()).await;
    assert_eq!(next_json(&mut ws).await["code"], "bad_sender");
    relay.wait_log("signed in", 2).await;
    relay.wait_log("failed login", 1).await;
    relay.wait_log("someone else's form", 1).await;
    let lines = relay.lines();
    let log = lines.join("\n");
    assert!(!lines.iter().any(|l| l.starts_with("2026-01-01 FAKE")), "a forged line:\n{log}");
    assert!(!log.contains('\u{1b}') && !log.contains('\u{7}'), "an escape sequence reached the log:\n{log:?}");
    let escaped = r"x\n2026-01-01 FAKE LOG LINE\u{1b}]0;pwned\u{7}";
    let signed_in = lines.iter().find(|l| l.contains("signed in") && l.contains("FAKE")).expect("the hello's line");
    assert_eq!(signed_in.matches(escaped).count(), 2, "uuid and client, escaped: {signed_in}");
    let failed = lines.iter().find(|l| l.contains("failed login")).unwrap();
    assert!(failed.contains(escaped), "{failed}");
    let refused = lines.iter().find(|l| l.contains("someone else's form")).unwrap();
    assert!(refused.contains(escaped), "{refused}");
    // What a peer can make the relay log is cut.
    let long = lines.iter().find(|l| l.contains("dev-long")).unwrap();
    assert!(long.contains(&format!("c{}…", "y".repeat(199))) && !long.contains(&"y".repeat(200)), "{long}");
    relay.stop().await;
}

#[tokio::test]
async fn failed_login_lines_are_held_to_a_few_a_second() {
    let (_dir, file, _t1, _t2) = users_file();
    let relay =
        Served::start(serve_args(&file, &["--failed-login-burst", "1000", "--failed-login-rate", "1000"])).await;
    let n = 40;
    for i in 0..n {
        let mut ws = connect(&relay.url).await;
        send_text(&mut ws, hello_text("nope", &format!("dev-{i}"), None)).await;
        assert_eq!(close_code(&mut ws).await, Some(4001));
    }
    // Every failed login is either a line of its own or counted in a summary.
    let counted = |relay: &Served| -> usize {
        let lines = relay.lines();
        let one_by_one = lines.iter().filter(|l| l.contains("failed login:")).count();
        let summed: usize = lines
            .iter()
            .filter_map(|l| l.split(" more failed logins not logged").next().filter(|_| l.contains(" more failed")))
            .filter_map(|head| head.rsplit(' ').next().and_then(|n| n.parse::<usize>().ok()))
            .sum();
        one_by_one + summed
    };
    eventually("every failed login logged or counted", || (counted(&relay) == n).then_some(())).await;
    let one_by_one = relay.count("failed login:");
    assert!(one_by_one < n / 2, "{one_by_one} lines for {n} failed logins:\n{}", relay.log());
    relay.stop().await;
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_address() {
    // One token every 4 s: the checks below take far less, even on a loaded machine.
    let env = start_with(|c| c.failed_login_rate = RateLimit::new(0.25, 3)).await;
    let url = env.ws_url();
    for _ in 0..3 {
        refused(&url, "nope").await;
    }
    // The fourth try, and even a good token, from that address: refused unread.
    for token in ["nope", env.token(1)] {
        let mut ws = connect(&url).await;
        send_text(&mut ws, hello_text(token, "dev", None)).await;
        let err = next_json(&mut ws).await;
        assert_eq!(err["code"], "rate_limited", "{err}");
        assert_eq!(close_code(&mut ws).await, Some(1013));
    }
    let (status, body) = raw_post(env.relay.local_addr(), Some(&format!("Bearer {}", env.token(2))), b"{}").await;
    assert_eq!(status, 429, "{body}");
    // Another address is not affected.
    let mut other = connect_from("127.0.0.2".parse().unwrap(), env.relay.local_addr(), &url).await;
    send_text(&mut other, hello_text(env.token(1), "dev-2", None)).await;
    assert_eq!(next_json(&mut other).await["type"], "welcome");
    // And the bucket refills.
    wait_until("logins from the address to be let in again", async || {
        let mut ws = connect(&url).await;
        send_text(&mut ws, hello_text(env.token(1), "dev", None)).await;
        (next_json(&mut ws).await["type"] == "welcome").then_some(())
    })
    .await;
}

#[tokio::test]
async fn frames_before_the_hello_are_rate_limited_per_address() {
    let env = start_with(|c| c.pre_hello_rate = RateLimit::new(0.1, 3)).await;
    let mut ws = connect(&env.ws_url()).await;
    for _ in 0..3 {
        send_text(&mut ws, "online").await;
        assert_eq!(next_json(&mut ws).await["code"], "hello_required");
    }
    // The budget is the address's, not the connection's.
    let mut again = connect(&env.ws_url()).await;
    send_text(&mut again, "online").await;
    assert_eq!(next_json(&mut again).await["code"], "rate_limited");
    assert_eq!(close_code(&mut again).await, Some(1008));
    // A hello is never counted.
    send_text(&mut ws, hello_text(env.token(1), "dev", None)).await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
}

#[tokio::test]
async fn a_slowloris_client_is_closed_after_the_header_timeout() {
    let env = start_with(|c| c.header_timeout = Duration::from_secs(1)).await;
    let started = tokio::time::Instant::now();
    let mut half = TcpStream::connect(env.relay.local_addr()).await.unwrap();
    half.write_all(b"POST /v1/talk HTTP/1.1\r\nHost: relay\r\nContent-Le").await.unwrap();
    let mut silent = TcpStream::connect(env.relay.local_addr()).await.unwrap();
    wait_closed(&mut half, "half a header").await;
    wait_closed(&mut silent, "nothing at all").await;
    assert!(started.elapsed() >= Duration::from_millis(900), "closed before the timeout");
    // A whole request on a fresh connection is served as ever.
    let (status, _) = raw_http(env.relay.local_addr(), "GET /v1/health HTTP/1.1\n", b"").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_slow_body_gets_408() {
    let env = start_with(|c| c.body_timeout = Duration::from_secs(1)).await;
    let mut tcp = TcpStream::connect(env.relay.local_addr()).await.unwrap();
    let head = format!(
        "POST /v1/talk HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"to\": 1,",
        env.token(2)
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let answer = String::from_utf8_lossy(&wait_closed(&mut tcp, "a slow body").await).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive"), "{answer}");
}

#[tokio::test]
async fn the_per_user_connection_cap_refuses_the_next_websocket() {
    let env = start_with(|c| c.max_connections_per_user = 2).await;
    let url = env.ws_url();
    let first = signed_in(&url, env.token(1), "a", None).await;
    let _second = signed_in(&url, env.token(1), "b", None).await;
    let mut third = connect(&url).await;
    send_text(&mut third, hello_text(env.token(1), "c", None)).await;
    let err = next_json(&mut third).await;
    assert_eq!(err["code"], "too_many_connections", "{err}");
    assert_eq!(close_code(&mut third).await, Some(1013));
    // Others are not counted against user 1, nor user 1 against them.
    signed_in(&url, env.token(2), "other", None).await;
    drop(first);
    wait_until("the closed connection to stop counting", async || {
        let mut ws = connect(&url).await;
        send_text(&mut ws, hello_text(env.token(1), "c", None)).await;
        (next_json(&mut ws).await["type"] == "welcome").then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_total_connection_cap_closes_new_connections_at_once() {
    let env = start_with(|c| c.max_connections = 2).await;
    let url = env.ws_url();
    let first = signed_in(&url, env.token(1), "a", None).await;
    let mut second = signed_in(&url, env.token(2), "b", None).await;
    let mut third = TcpStream::connect(env.relay.local_addr()).await.unwrap();
    let _ = third.write_all(b"GET /v1/health HTTP/1.1\r\nHost: relay\r\n\r\n").await;
    let got = wait_closed(&mut third, "a connection over the cap").await;
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    assert_alive(&mut second).await;
    drop(first);
    wait_until("the closed connection to stop counting", async || {
        let mut tcp = TcpStream::connect(env.relay.local_addr()).await.unwrap();
        let _ = tcp.write_all(b"GET /v1/health HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n").await;
        wait_closed(&mut tcp, "a health check").await.starts_with(b"HTTP/1.1 200").then_some(())
    })
    .await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_soft_open_file_limit_is_raised_to_the_hard_limit() {
    let (_dir, file, _t1, _t2) = users_file();
    let relay = Served::start_in_shell("ulimit -Sn 256 && exec \"$0\" \"$@\"", serve_args(&file, &[])).await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", relay.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    assert_ne!(hard, "256", "the hard limit here is too low for this test");
    assert_eq!(soft, hard, "{line}");
    relay.wait_log("raised the soft open-file limit", 1).await;
    relay.stop().await;
}
