//! The durable queue: resume, replay order against concurrent posts, acks per device,
//! restarts, retention, the caps (a full queue refuses, nothing is evicted), devices,
//! epochs, and the database's modes.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use talkbell_relay::post_talk;

#[tokio::test]
async fn hello_without_resume_gets_no_replay() {
    let env = start().await;
    env.post_n(1, 3, "old ").await;
    let mut ws = signed_in(&env.ws_url(), env.token(1), "browser", None).await;
    assert_alive(&mut ws).await;
    env.post_n(1, 1, "new ").await;
    let talk = next_talk(&mut ws).await;
    assert_eq!((talk["seq"].clone(), talk["form"]["talk"].clone()), (json!(4), json!("new 0")));
}

#[tokio::test]
async fn resume_replays_in_order_before_live_talks() {
    let env = start().await;
    assert_eq!(env.post_n(1, 5, "t").await, vec![1, 2, 3, 4, 5]);
    let mut ws = signed_in(&env.ws_url(), env.token(1), "app", Some(2)).await;
    for seq in 3..=5 {
        let talk = next_talk(&mut ws).await;
        assert_eq!(talk["seq"], seq);
        assert_eq!(talk["form"]["talk"], format!("t{}", seq - 1));
        assert_eq!(talk["to"], json!({"id": 1, "name": "wang1"}));
        assert!(talk["ts"].as_i64().unwrap() > 0);
    }
    env.post_n(1, 1, "live").await;
    assert_eq!(next_talk(&mut ws).await["seq"], 6);
    // resume past the end: nothing to replay.
    let mut other = signed_in(&env.ws_url(), env.token(1), "other", Some(100)).await;
    assert_alive(&mut other).await;
}

/// Many queued talks (more than one replay page) and posts racing the replay: the client
/// sees 1..=N exactly once each, in order.
#[tokio::test]
async fn replay_and_concurrent_posts_have_no_gap_or_reorder() {
    let env = start().await;
    let queued_before = 600;
    env.post_n(1, queued_before, "q").await;
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
    // Nothing came twice: the next talk is the next seq.
    let next = (queued_before + racing + 1) as u64;
    assert_eq!(env.post_n(1, 1, "after").await, vec![next]);
    assert_eq!(next_talk(&mut ws).await["seq"], next);
}

#[tokio::test]
async fn acked_talks_are_not_replayed_and_go_once_every_device_acked() {
    let env = start().await;
    let url = env.ws_url();
    // Two devices of user 1 have connected.
    let mut a = signed_in(&url, env.token(1), "dev-a", Some(0)).await;
    let b = signed_in(&url, env.token(1), "dev-b", Some(0)).await;
    drop(b);
    env.post_n(1, 3, "t").await;
    for seq in 1..=3 {
        assert_eq!(next_talk(&mut a).await["seq"], seq);
    }
    env.ack(&mut a, 1, "dev-a", 2).await;
    a.close(None).await.unwrap();

    // dev-a reconnects as if it had lost its history: it gets only what it did not ack.
    let mut a = signed_in(&url, env.token(1), "dev-a", Some(0)).await;
    assert_eq!(next_talk(&mut a).await["seq"], 3);
    assert_alive(&mut a).await;

    // dev-b never acked anything, so all three are still there for it.
    assert_eq!(env.queued(1), 3);
    let mut b = signed_in(&url, env.token(1), "dev-b", Some(0)).await;
    for seq in 1..=3 {
        assert_eq!(next_talk(&mut b).await["seq"], seq);
    }
    env.ack(&mut b, 1, "dev-b", 3).await;
    assert_eq!(env.queued(1), 1, "1 and 2 acked by both, 3 only by dev-b");
    env.ack(&mut a, 1, "dev-a", 3).await;
    assert_eq!(env.queued(1), 0);

    // The counter goes on.
    assert_eq!(env.post_n(1, 1, "next").await, vec![4]);
}

#[tokio::test]
async fn restart_keeps_the_queue_and_the_seq_counter() {
    let env = start().await;
    assert_eq!(env.post_n(1, 3, "before").await, vec![1, 2, 3]);
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", Some(0)).await;
    for seq in 1..=3 {
        assert_eq!(next_talk(&mut ws).await["seq"], seq);
    }
    env.ack(&mut ws, 1, "dev", 1).await;

    let env = env.restart(|_| {}).await;
    assert_eq!(close_code(&mut ws).await, Some(1001));
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", Some(0)).await;
    assert_eq!(next_talk(&mut ws).await["seq"], 2);
    assert_eq!(next_talk(&mut ws).await["form"]["talk"], "before2");
    assert_eq!(env.post_n(1, 1, "after").await, vec![4]);
    assert_eq!(next_talk(&mut ws).await["seq"], 4);
}

#[tokio::test]
async fn a_full_queue_answers_507_and_keeps_every_accepted_talk_deliverable() {
    let env = start_with(|c| {
        c.max_queued_per_recipient = 5;
        c.max_queued_per_sender = Some(5);
    })
    .await;
    assert_eq!(env.post_n(1, 5, "t").await, vec![1, 2, 3, 4, 5]);
    let (status, body) = env.post_as(2, 1, "one too many").await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["code"], "queue_full", "{body}");
    assert!(body["error"].as_str().unwrap().contains("queue is full"), "{body}");
    // A refusal is not a rate limit: no Retry-After of a 429, and the talks are all there.
    assert_eq!(env.queued(1), 5);
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", Some(0)).await;
    for seq in 1..=5 {
        let talk = next_talk(&mut ws).await;
        assert_eq!((talk["seq"].clone(), talk["form"]["talk"].clone()), (json!(seq), json!(format!("t{}", seq - 1))));
    }
    // Once read, there is room again, and the refused talk used no seq.
    env.ack(&mut ws, 1, "dev", 5).await;
    let (status, body) = env.post_as(2, 1, "now").await;
    assert_eq!((status, body["seq"].clone()), (200, json!(6)), "{body}");
}

#[tokio::test]
async fn one_sender_at_its_share_gets_507_while_another_still_gets_through() {
    let env = start_with(|c| c.max_queued_per_recipient = 30).await;
    // The default share is a tenth of the queue.
    assert_eq!(env.post_n(1, 3, "flood").await, vec![1, 2, 3]);
    let (status, body) = env.post_as(2, 1, "flood").await;
    assert_eq!((status, body["code"].clone()), (507, json!("queue_full")), "{body}");
    assert!(body["error"].as_str().unwrap().contains("sender's share"), "{body}");
    let (status, body) = env.post_as(3, 1, "hello from 3").await;
    assert_eq!((status, body["seq"].clone()), (200, json!(4)), "{body}");
    // The flood's own talks are all kept.
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", Some(0)).await;
    for seq in 1..=4 {
        assert_eq!(next_talk(&mut ws).await["seq"], seq);
    }
}

#[tokio::test]
async fn a_websocket_sender_gets_queue_full() {
    let env = start_with(|c| {
        c.max_queued_per_recipient = 2;
        c.max_queued_per_sender = Some(2);
    })
    .await;
    env.post_n(1, 2, "t").await;
    let mut sender = signed_in(&env.ws_url(), env.token(2), "sender", None).await;
    let talk = json!({"form": {"id": 2, "name": "wang2", "talk": "by ws"}, "to": {"id": 1}});
    send_text(&mut sender, talk.to_string()).await;
    let err = next_json(&mut sender).await;
    assert_eq!((err["type"].clone(), err["code"].clone()), (json!("error"), json!("queue_full")), "{err}");
    assert_alive(&mut sender).await;
    assert_eq!(env.queued(1), 2);
}

/// A device that resumed once and never came back holds the queue full, until it is
/// unseen for the device expiry; the device that is connected is kept meanwhile.
#[tokio::test]
async fn a_stale_device_is_forgotten_and_no_longer_blocks() {
    let env = start_with(|c| {
        c.max_queued_per_recipient = 3;
        c.max_queued_per_sender = Some(3);
        c.device_expiry = Duration::from_secs(1);
    })
    .await;
    let gone = signed_in(&env.ws_url(), env.token(1), "gone", Some(0)).await;
    drop(gone);
    let mut phone = signed_in(&env.ws_url(), env.token(1), "phone", Some(0)).await;
    env.post_n(1, 3, "t").await;
    for seq in 1..=3 {
        assert_eq!(next_talk(&mut phone).await["seq"], seq);
    }
    env.ack(&mut phone, 1, "phone", 3).await;
    assert_eq!(env.post_as(2, 1, "blocked").await.0, 507, "'gone' still holds the three");
    let mut attempts = 0;
    wait_until("the stale device to be forgotten", async || {
        attempts += 1;
        let (status, body) = env.post_as(2, 1, "through").await;
        assert!(status == 200 || status == 507, "{status}: {body}");
        (status == 200).then_some(())
    })
    .await;
    assert!(attempts > 1);
    // The connected phone was seen meanwhile and is still a cursor: it gets the new talk.
    assert_eq!(next_talk(&mut phone).await["form"]["talk"], "through");
    assert_eq!(env.devices(1), 1);
}

/// Past the device cap the least recently seen device goes, and its backlog with it.
#[tokio::test]
async fn an_over_cap_device_is_forgotten_and_no_longer_blocks() {
    let env = start_with(|c| {
        c.max_queued_per_recipient = 3;
        c.max_queued_per_sender = Some(3);
        c.max_devices_per_user = 2;
    })
    .await;
    drop(signed_in(&env.ws_url(), env.token(1), "gone", Some(0)).await);
    let mut phone = signed_in(&env.ws_url(), env.token(1), "phone", Some(0)).await;
    env.post_n(1, 3, "t").await;
    for seq in 1..=3 {
        assert_eq!(next_talk(&mut phone).await["seq"], seq);
    }
    env.ack(&mut phone, 1, "phone", 3).await;
    assert_eq!(env.post_as(2, 1, "blocked").await.0, 507);
    // A third device: 'gone' (seen least recently) is forgotten. The newcomer catches up
    // and acks, and the queue has room again.
    let mut tablet = signed_in(&env.ws_url(), env.token(1), "tablet", Some(0)).await;
    for seq in 1..=3 {
        assert_eq!(next_talk(&mut tablet).await["seq"], seq);
    }
    env.ack(&mut tablet, 1, "tablet", 3).await;
    let (status, body) = env.post_as(2, 1, "through").await;
    assert_eq!((status, body["seq"].clone()), (200, json!(4)), "{body}");
}

/// An original client (no resume, no ack) never holds the queue.
#[tokio::test]
async fn a_client_that_never_acks_holds_nothing() {
    let env = start_with(|c| {
        c.max_queued_per_recipient = 2;
        c.max_queued_per_sender = Some(2);
    })
    .await;
    let mut app = signed_in(&env.ws_url(), env.token(1), "app", Some(0)).await;
    let mut browser = signed_in(&env.ws_url(), env.token(1), "browser", None).await;
    for i in 0..5 {
        let (status, body) = env.post_as(2, 1, &format!("t{i}")).await;
        assert_eq!(status, 200, "{body}");
        let seq = next_talk(&mut app).await["seq"].clone();
        assert_eq!(next_talk(&mut browser).await["seq"], seq);
        env.ack(&mut app, 1, "app", seq.as_u64().unwrap()).await;
    }
}

#[tokio::test]
async fn welcome_has_epoch_last_seq_and_features() {
    let env = start().await;
    let (_ws, welcome) = welcomed(&env.ws_url(), hello_text(env.token(1), "dev", None)).await;
    assert_eq!(welcome["last_seq"], 0, "{welcome}");
    assert_eq!(welcome["features"], json!(["resume", "ack", "send"]), "{welcome}");
    assert_eq!(welcome["epoch"], env.relay.epoch(), "{welcome}");
    assert!(welcome.get("reset").is_none(), "{welcome}");
    env.post_n(1, 3, "t").await;
    env.post_n(2, 1, "other").await;
    let (mut ws, welcome) = welcomed(&env.ws_url(), hello_text(env.token(1), "dev", Some(1))).await;
    assert_eq!(welcome["last_seq"], 3, "{welcome}");
    assert_eq!(next_talk(&mut ws).await["seq"], 2);
    assert_eq!(next_talk(&mut ws).await["seq"], 3);
}

/// Deleting the database makes a new epoch; a resume with the old one is a reset and
/// gets the new queue from its start; one with the current epoch or none resumes.
#[tokio::test]
async fn a_new_database_is_a_new_epoch_and_the_old_one_gets_a_reset() {
    let env = start().await;
    env.post_n(1, 5, "old").await;
    let (_ws, welcome) = welcomed(&env.ws_url(), hello_text(env.token(1), "dev", Some(5))).await;
    let old_epoch = welcome["epoch"].as_str().unwrap().to_owned();

    let env = env
        .restart(|db| {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
        })
        .await;
    assert_eq!(env.post_n(1, 2, "new").await, vec![1, 2], "the seqs start again");

    let (mut ws, welcome) = welcomed(&env.ws_url(), hello_with_epoch(env.token(1), "dev", 5, &old_epoch)).await;
    let new_epoch = welcome["epoch"].as_str().unwrap().to_owned();
    assert_ne!(new_epoch, old_epoch);
    assert_eq!(welcome["reset"], true, "{welcome}");
    assert_eq!(welcome["last_seq"], 2, "{welcome}");
    for seq in 1..=2 {
        let talk = next_talk(&mut ws).await;
        assert_eq!((talk["seq"].clone(), talk["form"]["talk"].clone()), (json!(seq), json!(format!("new{}", seq - 1))));
    }
    assert_alive(&mut ws).await;

    // With the current epoch: an ordinary resume.
    let (mut ws, welcome) = welcomed(&env.ws_url(), hello_with_epoch(env.token(1), "dev2", 1, &new_epoch)).await;
    assert!(welcome.get("reset").is_none(), "{welcome}");
    assert_eq!(next_talk(&mut ws).await["seq"], 2);
    // A resume with no epoch adopts the server's (no reset).
    let (mut ws, welcome) = welcomed(&env.ws_url(), hello_text(env.token(1), "dev3", Some(1))).await;
    assert!(welcome.get("reset").is_none(), "{welcome}");
    assert_eq!(welcome["epoch"], new_epoch.as_str());
    assert_eq!(next_talk(&mut ws).await["seq"], 2);
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The database's folder is made 0700 and its files 0600; an existing 0644 database
/// (and -wal, and a 0755 folder holding only them) is fixed at start.
#[cfg(unix)]
#[tokio::test]
async fn the_database_and_its_folder_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state").join("queue").join("relay.db");
    let mut users = talkbell_relay::Users::new();
    let token = users.add(1, "wang1");
    let relay = start_on(users.clone(), db.clone()).await;
    post_talk(&relay.http_url(), &token, 1, "secret").await.unwrap();
    let folder = db.parent().unwrap().to_owned();
    let wal = folder.join("relay.db-wal");
    let shm = folder.join("relay.db-shm");
    assert_eq!(mode(&folder), 0o700);
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&shm), 0o600);
    relay.shutdown().await;

    for f in [&db, &wal, &shm] {
        if f.exists() {
            set_mode(f, 0o644);
        }
    }
    set_mode(&folder, 0o755);
    let relay = start_on(users.clone(), db.clone()).await;
    post_talk(&relay.http_url(), &token, 1, "again").await.unwrap();
    assert_eq!(mode(&db), 0o600, "an existing 0644 database is fixed");
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&shm), 0o600);
    assert_eq!(mode(&folder), 0o700, "a folder of the database's own is fixed");
    relay.shutdown().await;

    // Beside other files (the users file, say) the folder is left alone, the files not.
    let shared = dir.path().join("etc");
    std::fs::create_dir(&shared).unwrap();
    set_mode(&shared, 0o755);
    std::fs::write(shared.join("users.toml"), "").unwrap();
    let db = shared.join("relay.db");
    std::fs::write(&db, "").unwrap();
    set_mode(&db, 0o644);
    let relay = start_on(users, db.clone()).await;
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&shared), 0o755);
    relay.shutdown().await;
}

#[tokio::test]
async fn retention_deletes_old_talks_even_unacked() {
    let env = start_with(|c| c.retention = Duration::from_millis(400)).await;
    env.post_n(1, 3, "t").await;
    wait_until("retention to delete the talks", async || (env.queued(1) == 0).then_some(())).await;
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", Some(0)).await;
    assert_alive(&mut ws).await;
    assert_eq!(env.post_n(1, 1, "new").await, vec![4], "the counter is kept");
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
    env.post_n(1, 300, "t").await;
    let mut ws = signed_in(&env.ws_url(), env.token(1), "dev", Some(0)).await;
    for seq in 1..=300u64 {
        assert_eq!(next_talk(&mut ws).await["seq"], seq);
        send_text(&mut ws, json!({"type": "ack", "seq": seq}).to_string()).await;
    }
    // No rate_limited error came before the heartbeat's answer.
    assert_alive(&mut ws).await;
    // The last ack is written once the coalescing interval is over.
    env.wait_acked(1, "dev", 300).await;
    assert_eq!(env.queued(1), 0);
    // And one sent just before leaving is written on the way out.
    env.post_n(1, 1, "late").await;
    assert_eq!(next_talk(&mut ws).await["seq"], 301);
    send_text(&mut ws, json!({"type": "ack", "seq": 301}).to_string()).await;
    ws.close(None).await.unwrap();
    env.wait_acked(1, "dev", 301).await;
    assert_eq!(env.queued(1), 0);
}

/// POSTs `per_task` talks to user 1 from each of `tasks` tasks at once (user 2's token);
/// the answered (seq, text) pairs, sorted by seq.
async fn post_concurrently(url: &str, token: &str, tasks: usize, per_task: usize) -> Vec<(u64, String)> {
    let posters: Vec<_> = (0..tasks)
        .map(|task| {
            let (url, token) = (url.to_owned(), token.to_owned());
            tokio::spawn(async move {
                let mut answered = Vec::new();
                for i in 0..per_task {
                    let text = format!("c{task}-{i}");
                    answered.push((post_talk(&url, &token, 1, &text).await.unwrap().seq, text));
                }
                answered
            })
        })
        .collect();
    let mut answered = Vec::new();
    for p in posters {
        answered.extend(p.await.unwrap());
    }
    answered.sort();
    answered
}

/// Reads talks from `ws` until it has `n`: their (seq, text), in the order they came.
async fn read_talks(ws: &mut Ws, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let talk = next_talk(ws).await;
        got.push((talk["seq"].as_u64().unwrap(), talk["form"]["talk"].as_str().unwrap().to_owned()));
    }
    got
}

/// Many POSTs to one recipient at once share the queue's commits (group commit) and are
/// handed to its live connection as they are answered: seqs 1..=N, each once, in order,
/// each with the text its POST was answered for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_posts_reach_a_live_connection_once_each_in_order() {
    let env = start().await;
    let mut ws = signed_in(&env.ws_url(), env.token(1), "app", Some(0)).await;
    let answered = post_concurrently(&env.http_url(), env.token(2), 8, 40).await;
    assert_eq!(answered.iter().map(|a| a.0).collect::<Vec<_>>(), (1..=320).collect::<Vec<u64>>());
    assert_eq!(read_talks(&mut ws, 320).await, answered, "in seq order, each once, as answered");
    // Nothing came twice: the next frame is the next talk.
    assert_eq!(env.post_n(1, 1, "after").await, vec![321]);
    assert_eq!(next_talk(&mut ws).await["seq"], 321);
}

/// A relay SIGKILLed right after a burst of answered POSTs (no shutdown, no checkpoint)
/// has every one of them after a restart: an answer means the talk was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_answered_post_survives_a_sigkill_right_after_the_burst() {
    let dir = tempfile::tempdir().unwrap();
    let (file, db) = (dir.path().join("users.toml"), dir.path().join("queue").join("relay.db"));
    let mut users = talkbell_relay::Users::new();
    let (t1, t2) = (users.add(1, "wang1"), users.add(2, "wang2"));
    users.save(&file).unwrap();
    let serve = || {
        let args = ["--listen", "127.0.0.1:0", "--http-rate", "1000000", "--http-burst", "1000000"];
        let paths = [("--users", file.as_os_str()), ("--db", db.as_os_str())];
        let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        for (flag, path) in paths {
            all.extend([flag.into(), path.to_owned()]);
        }
        support::child::Served::start_logged(all, "warn")
    };
    let mut relay = serve().await;
    let answered = post_concurrently(&relay.url, &t2, 8, 30).await;
    relay.child.kill();
    assert_eq!(answered.len(), 240);

    let relay = serve().await;
    let mut ws = signed_in(&relay.url, &t1, "app", Some(0)).await;
    assert_eq!(read_talks(&mut ws, 240).await, answered, "every answered talk, in seq order");
    assert_eq!(post_talk(&relay.url, &t2, 1, "after").await.unwrap().seq, 241, "no seq given twice");
    relay.stop().await;
}
