//! The durable queue: resume, replay order against concurrent posts, acks per device,
//! restarts, retention and the per-recipient cap.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use talkbell_relay::store::Store;
use talkbell_relay::{post_talk, UserId};

async fn post_n(env: &Env, to: u64, n: usize, prefix: &str) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        seqs.push(post_talk(&env.http_url(), env.token(2), to, &format!("{prefix}{i}")).await.unwrap().seq);
    }
    seqs
}

fn queued(env: &Env, user: u64) -> usize {
    let store = Store::open(&env.db).unwrap();
    store.run_sync(|c| Store::queued(c, &UserId::from(user))).unwrap()
}

#[tokio::test]
async fn hello_without_resume_gets_no_replay() {
    let env = start().await;
    post_n(&env, 1, 3, "old ").await;
    let mut ws = signed_in(&env.ws_url(), env.token(1), "browser", None).await;
    expect_silence(&mut ws, Duration::from_millis(200)).await;
    post_n(&env, 1, 1, "new ").await;
    let talk = next_talk(&mut ws).await;
    assert_eq!((talk["seq"].clone(), talk["form"]["talk"].clone()), (json!(4), json!("new 0")));
}

#[tokio::test]
async fn resume_replays_in_order_before_live_talks() {
    let env = start().await;
    assert_eq!(post_n(&env, 1, 5, "t").await, vec![1, 2, 3, 4, 5]);
    let mut ws = signed_in(&env.ws_url(), env.token(1), "app", Some(2)).await;
    for seq in 3..=5 {
        let talk = next_talk(&mut ws).await;
        assert_eq!(talk["seq"], seq);
        assert_eq!(talk["form"]["talk"], format!("t{}", seq - 1));
        assert_eq!(talk["to"], json!({"id": 1, "name": "wang1"}));
        assert!(talk["ts"].as_i64().unwrap() > 0);
    }
    post_n(&env, 1, 1, "live").await;
    assert_eq!(next_talk(&mut ws).await["seq"], 6);
    // resume past the end: nothing to replay.
    let mut other = signed_in(&env.ws_url(), env.token(1), "other", Some(100)).await;
    expect_silence(&mut other, Duration::from_millis(200)).await;
}

/// Many queued talks (more than one replay page) and posts racing the replay: the client
/// sees 1..=N exactly once each, in order.
#[tokio::test]
async fn replay_and_concurrent_posts_have_no_gap_or_reorder() {
    let env = start().await;
    let queued_before = 600;
    post_n(&env, 1, queued_before, "q").await;
    let racing = 100;
    let http = env.http_url();
    let token = env.token(2).to_owned();
    let poster = tokio::spawn(async move {
        for i in 0..racing {
            post_talk(&http, &token, 1, &format!("r{i}")).await.unwrap();
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let mut ws = signed_in(&env.ws_url(), env.token(1), "app", Some(0)).await;
    for want in 1..=(queued_before + racing) as u64 {
        let talk = next_talk(&mut ws).await;
        assert_eq!(talk["seq"], want, "gap or reorder: {talk}");
    }
    poster.await.unwrap();
    expect_silence(&mut ws, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn acked_talks_are_not_replayed_and_go_once_every_device_acked() {
    let env = start().await;
    let url = env.ws_url();
    // Two devices of user 1 have connected.
    let mut a = signed_in(&url, env.token(1), "dev-a", Some(0)).await;
    let b = signed_in(&url, env.token(1), "dev-b", Some(0)).await;
    drop(b);
    post_n(&env, 1, 3, "t").await;
    for seq in 1..=3 {
        assert_eq!(next_talk(&mut a).await["seq"], seq);
    }
    send_text(&mut a, json!({"type": "ack", "seq": 2}).to_string()).await;
    assert_alive(&mut a).await; // the ack is recorded before the heartbeat is answered
    a.close(None).await.unwrap();

    // dev-a reconnects as if it had lost its history: it gets only what it did not ack.
    let mut a = signed_in(&url, env.token(1), "dev-a", Some(0)).await;
    assert_eq!(next_talk(&mut a).await["seq"], 3);
    expect_silence(&mut a, Duration::from_millis(200)).await;

    // dev-b never acked anything, so all three are still there for it.
    assert_eq!(queued(&env, 1), 3);
    let mut b = signed_in(&url, env.token(1), "dev-b", Some(0)).await;
    for seq in 1..=3 {
        assert_eq!(next_talk(&mut b).await["seq"], seq);
    }
    send_text(&mut b, json!({"type": "ack", "seq": 3}).to_string()).await;
    assert_alive(&mut b).await;
    assert_eq!(queued(&env, 1), 1, "1 and 2 acked by both, 3 only by dev-b");
    send_text(&mut a, json!({"type": "ack", "seq": 3}).to_string()).await;
    assert_alive(&mut a).await;
    assert_eq!(queued(&env, 1), 0);

    // The counter goes on.
    assert_eq!(post_n(&env, 1, 1, "next").await, vec![4]);
}

#[tokio::test]
async fn restart_keeps_the_queue_and_the_seq_counter() {
    let env = start().await;
    assert_eq!(post_n(&env, 1, 3, "before").await, vec![1, 2, 3]);
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", Some(0)).await;
    for seq in 1..=3 {
        assert_eq!(next_talk(&mut ws).await["seq"], seq);
    }
    send_text(&mut ws, json!({"type": "ack", "seq": 1}).to_string()).await;
    assert_alive(&mut ws).await;

    let Env { relay, dir, users, db, tokens } = env;
    relay.shutdown().await;
    assert_eq!(close_code(&mut ws).await, Some(1001));

    let relay = talkbell_relay::start(test_config(users.clone(), db.clone())).await.unwrap();
    let env = Env { relay, dir, users, db, tokens };
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", Some(0)).await;
    assert_eq!(next_talk(&mut ws).await["seq"], 2);
    assert_eq!(next_talk(&mut ws).await["form"]["talk"], "before2");
    assert_eq!(post_n(&env, 1, 1, "after").await, vec![4]);
    assert_eq!(next_talk(&mut ws).await["seq"], 4);
}

#[tokio::test]
async fn cap_keeps_the_newest_talks() {
    let env = start_with(|c| c.max_queued_per_recipient = 5).await;
    post_n(&env, 1, 12, "t").await;
    assert_eq!(queued(&env, 1), 5);
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", Some(0)).await;
    for seq in 8..=12 {
        assert_eq!(next_talk(&mut ws).await["seq"], seq);
    }
}

#[tokio::test]
async fn retention_deletes_old_talks_even_unacked() {
    let env = start_with(|c| c.retention = Duration::from_millis(400)).await;
    post_n(&env, 1, 3, "t").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(queued(&env, 1), 0);
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", Some(0)).await;
    expect_silence(&mut ws, Duration::from_millis(200)).await;
    assert_eq!(post_n(&env, 1, 1, "new").await, vec![4], "the counter is kept");
}

#[tokio::test]
async fn a_slow_connection_is_dropped_and_catches_up_on_resume() {
    let env = start_with(|c| c.connection_queue = 4).await;
    // A client that never reads, with a small receive buffer: the relay's socket buffer
    // fills, then its queue, then it is dropped rather than holding up the others.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(env.relay.local_addr()).await.unwrap();
    let (mut stuck, _) =
        tokio_tungstenite::client_async(env.ws_url(), tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await.unwrap();
    send_text(&mut stuck, hello_text(env.token(1), "stuck", Some(0))).await;
    assert_eq!(next_json(&mut stuck).await["type"], "welcome");
    let mut fine = signed_in(&env.ws_url(), env.token(1), "fine", Some(0)).await;
    // Enough to fill the relay's socket send buffer (at most a few MiB) a few times over.
    let text = "z".repeat(60 * 1024);
    let n = 250;
    let http = env.http_url();
    let token = env.token(2).to_owned();
    let poster = tokio::spawn(async move {
        for _ in 0..n {
            post_talk(&http, &token, 1, &text).await.unwrap();
        }
    });
    for seq in 1..=n {
        assert_eq!(next_talk(&mut fine).await["seq"], seq);
    }
    poster.await.unwrap();
    // The stuck one got a prefix, in order, then a close 1013.
    let mut last = 0;
    let code = loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut stuck)).await.unwrap() {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                let seq = v["seq"].as_u64().unwrap();
                assert_eq!(seq, last + 1);
                last = seq;
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code, Some(1013));
    assert!(last < n, "it was dropped before the end");
    let mut again = signed_in(&env.ws_url(), env.token(1), "stuck", Some(last)).await;
    for seq in last + 1..=n {
        assert_eq!(next_talk(&mut again).await["seq"], seq);
    }
}

#[tokio::test]
async fn acks_are_not_rate_limited_and_the_last_one_counts() {
    let env = start_with(|c| c.ws_rate = talkbell_relay::RateLimit::new(5.0, 5)).await;
    post_n(&env, 1, 300, "t").await;
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", Some(0)).await;
    for seq in 1..=300u64 {
        assert_eq!(next_talk(&mut ws).await["seq"], seq);
        send_text(&mut ws, json!({"type": "ack", "seq": seq}).to_string()).await;
    }
    // No rate_limited error came before the heartbeat's answer.
    assert_alive(&mut ws).await;
    // The last ack is written within the coalescing interval.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(queued(&env, 1), 0);
    // And one sent just before leaving is written on the way out.
    post_n(&env, 1, 1, "late").await;
    assert_eq!(next_talk(&mut ws).await["seq"], 301);
    send_text(&mut ws, json!({"type": "ack", "seq": 301}).to_string()).await;
    ws.close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(queued(&env, 1), 0);
}
