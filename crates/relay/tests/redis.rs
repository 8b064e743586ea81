//! The Redis broker with real parts: Debian's `redis-server` on a loopback port
//! (talkbell-testkit's [`RedisServer`]) and relay processes (`serve --broker redis://…`)
//! on it: delivery across nodes, a Redis SIGKILLed and restarted, a Redis whose data is
//! deleted (a new epoch), and a Redis that is away (503, connections kept).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use support::child::{users_cmd, Served};
use support::*;
use talkbell_relay::{post_talk, BrokerUrl, Users};
use talkbell_testkit::redis::{Durability, RedisCluster, RedisServer};

/// One redis-server (or a cluster), a users file of wang1..wang3, and relay nodes on them.
struct Nodes {
    redis: RedisServer,
    cluster: Option<RedisCluster>,
    dir: tempfile::TempDir,
    tokens: Vec<String>,
    nodes: Vec<Served>,
}

impl Nodes {
    async fn start(count: usize, durability: Durability) -> Nodes {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start(&dir.path().join("redis"), durability).unwrap();
        let mut users = Users::new();
        let mut tokens = vec![String::new()];
        for i in 1..=3u64 {
            tokens.push(users.add(i, format!("wang{i}")));
        }
        users.save(dir.path().join("users.toml")).unwrap();
        let mut nodes = Nodes { redis, cluster: None, dir, tokens, nodes: Vec::new() };
        for _ in 0..count {
            nodes.add_node().await;
        }
        nodes
    }

    /// Relay nodes on a Redis Cluster of three masters.
    async fn on_cluster(count: usize) -> Nodes {
        let mut nodes = Nodes::start(0, Durability::None).await;
        nodes.cluster = Some(RedisCluster::start(&nodes.dir.path().join("cluster"), 3).unwrap());
        for _ in 0..count {
            nodes.add_node().await;
        }
        nodes
    }

    fn broker_url(&self) -> String {
        self.cluster.as_ref().map_or_else(|| self.redis.url(), RedisCluster::url)
    }

    async fn add_node(&mut self) {
        self.add_node_with(&[]).await;
    }

    /// A relay node with more `serve` flags.
    async fn add_node_with(&mut self, flags: &[&str]) {
        let n = self.nodes.len();
        let users = self.dir.path().join("users.toml");
        let db = self.dir.path().join(format!("unused-{n}.db"));
        let args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--users".into(),
            users.display().to_string(),
            "--db".into(),
            db.display().to_string(),
            "--broker".into(),
            self.broker_url(),
        ];
        let args = [args, flags.iter().map(|f| (*f).to_owned()).collect()].concat();
        self.nodes.push(Served::start(args).await);
    }

    /// How many connections listen on a wake-up channel (summed over a cluster's nodes).
    fn subscribers(&self, channel: &str) -> u64 {
        let count = |server: &RedisServer, command: &str| {
            let out = server.cli(&["PUBSUB", command, channel]).unwrap();
            out.lines().last().and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0)
        };
        match &self.cluster {
            Some(cluster) => cluster.nodes.iter().map(|n| count(n, "SHARDNUMSUB")).sum(),
            None => count(&self.redis, "NUMSUB"),
        }
    }

    fn token(&self, user: usize) -> &str {
        &self.tokens[user]
    }

    fn ws(&self, node: usize) -> &str {
        &self.nodes[node].url
    }

    fn addr(&self, node: usize) -> SocketAddr {
        let url = &self.nodes[node].url;
        url.trim_start_matches("ws://").trim_end_matches('/').parse().unwrap()
    }

    /// POSTs a talk from `sender` to `to` through `node`: (status, body).
    async fn post(&self, node: usize, sender: usize, to: u64, text: &str) -> (u16, Value) {
        let body = json!({"to": to, "talk": text}).to_string();
        raw_post(self.addr(node), Some(&format!("Bearer {}", self.token(sender))), body.as_bytes()).await
    }

    /// POSTs until it is accepted (Redis coming back), returning the seq.
    async fn post_accepted(&self, node: usize, sender: usize, to: u64, text: &str) -> u64 {
        wait_until("a POST to be accepted", async || {
            let (status, body) = self.post(node, sender, to, text).await;
            (status == 200).then(|| body["seq"].as_u64().unwrap())
        })
        .await
    }
}

/// The next `n` talks, as (seq, text).
async fn talks(ws: &mut Ws, n: usize) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let t = next_talk(ws).await;
        out.push((t["seq"].as_u64().unwrap(), t["form"]["talk"].as_str().unwrap().to_owned()));
    }
    out
}

/// A client on node A receives, exactly once and in order, talks POSTed to node B and
/// sent from a client on node C; a retried send through another node is not doubled.
#[tokio::test]
async fn talks_cross_nodes_exactly_once_and_in_order() {
    cross_nodes(Nodes::start(3, Durability::None).await).await;
}

/// The same on a Redis Cluster of three masters (sharded pub/sub; wang1, wang2 and wang3
/// live in different slots).
#[tokio::test]
async fn talks_cross_nodes_on_a_redis_cluster() {
    let nodes = Nodes::on_cluster(3).await;
    assert!(nodes.nodes[0].log().contains("cluster"), "{}", nodes.nodes[0].log());
    cross_nodes(nodes).await;
}

async fn cross_nodes(nodes: Nodes) {
    let mut a = signed_in(nodes.ws(0), nodes.token(1), "wang1-app", Some(0)).await;
    let mut c = signed_in(nodes.ws(2), nodes.token(3), "wang3-app", None).await;
    // Only the node that holds wang1's connection listens for wang1's wake-ups.
    assert_eq!(nodes.subscribers("tb:{1}:n"), 1);
    assert_eq!(nodes.subscribers("tb:{2}:n"), 0);
    let mut want = Vec::new();
    for i in 0..15 {
        let posted = nodes.post(1, 2, 1, &format!("post {i}")).await;
        assert_eq!(posted.0, 200, "{posted:?}");
        want.push(format!("post {i}"));
        let answer = sent(&mut c, &format!("send-{i}"), 1, &format!("send {i}")).await;
        assert_eq!(answer["type"], "sent", "{answer}");
        want.push(format!("send {i}"));
    }
    // The same id again, through node B this time: the same answer, nothing delivered.
    let mut c_on_b = signed_in(nodes.ws(1), nodes.token(3), "wang3-app", None).await;
    let again = sent(&mut c_on_b, "send-3", 1, "send 3").await;
    assert_eq!(again["seq"], 8, "{again}");

    let got = talks(&mut a, want.len()).await;
    let seqs: Vec<u64> = got.iter().map(|t| t.0).collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<u64>>(), "in order, no gap");
    let texts: Vec<String> = got.into_iter().map(|t| t.1).collect();
    assert_eq!(texts, want);
    // Nothing more: no duplicate is waiting before the heartbeat's answer.
    assert_alive(&mut a).await;
    // And a device resuming on node C replays the same queue from Redis.
    let mut replay = signed_in(nodes.ws(2), nodes.token(1), "wang1-phone", Some(28)).await;
    assert_eq!(talks(&mut replay, 2).await.iter().map(|t| t.0).collect::<Vec<_>>(), [29, 30]);
}

/// A talk whose wake-up never came (appended behind the relays' back, with no PUBLISH)
/// still reaches the connected client: the node checks its recipients' positions.
#[tokio::test]
async fn a_lost_wakeup_loses_no_talk() {
    let nodes = Nodes::start(1, Durability::None).await;
    let mut a = signed_in(nodes.ws(0), nodes.token(1), "app", Some(0)).await;
    assert_eq!(nodes.post(0, 2, 1, "woken").await.0, 200);
    assert_eq!(talks(&mut a, 1).await, [(1, "woken".to_owned())]);
    assert_eq!(nodes.redis.cli(&["HINCRBY", "tb:{1}:meta", "seq", "1"]).unwrap(), "2");
    let ts = "1763900000000";
    let fields = ["ts", ts, "from_id", "2", "from_name", "wang2", "to_name", "wang1", "talk", "unannounced"];
    let added = nodes.redis.cli(&[&["XADD", "tb:{1}:s", "2-0"][..], &fields[..]].concat()).unwrap();
    assert_eq!(added, "2-0");
    assert_eq!(talks(&mut a, 1).await, [(2, "unannounced".to_owned())]);
    // And the next announced one follows it, once.
    assert_eq!(nodes.post(0, 2, 1, "woken again").await.0, 200);
    assert_eq!(talks(&mut a, 1).await, [(3, "woken again".to_owned())]);
    assert_alive(&mut a).await;
}

/// The caps hold across nodes (a full queue refuses with 507, nothing is evicted), and a
/// device's ack trims the stream, which makes room again.
#[tokio::test]
async fn caps_refuse_across_nodes_and_acks_trim_the_stream() {
    let mut nodes = Nodes::start(0, Durability::None).await;
    for _ in 0..2 {
        nodes.add_node_with(&["--max-queued", "5", "--max-queued-per-sender", "3"]).await;
    }
    let mut a = signed_in(nodes.ws(0), nodes.token(1), "app", Some(0)).await;
    for i in 0..3 {
        assert_eq!(nodes.post(i % 2, 2, 1, &format!("b{i}")).await.0, 200);
    }
    let (status, body) = nodes.post(1, 2, 1, "b3").await;
    assert_eq!((status, &body["code"]), (507, &json!("queue_full")), "the sender's share");
    for i in 0..2 {
        assert_eq!(nodes.post(i, 3, 1, &format!("c{i}")).await.0, 200);
    }
    assert_eq!(nodes.post(0, 3, 1, "c2").await.0, 507, "the recipient's cap");
    assert_eq!(nodes.redis.cli(&["XLEN", "tb:{1}:s"]).unwrap(), "5");
    let got = talks(&mut a, 5).await;
    assert_eq!(got.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5], "nothing evicted");

    send_text(&mut a, json!({"type": "ack", "seq": 4}).to_string()).await;
    eventually("the ack to trim the stream", || (nodes.redis.cli(&["XLEN", "tb:{1}:s"]).ok()? == "1").then_some(()))
        .await;
    assert_eq!(nodes.post(1, 2, 1, "b3").await.0, 200, "room again");
    assert_eq!(talks(&mut a, 1).await, [(6, "b3".to_owned())]);
    // A device that reconnects is not replayed what it acked.
    drop(a);
    let mut a = signed_in(nodes.ws(1), nodes.token(1), "app", Some(0)).await;
    assert_eq!(talks(&mut a, 2).await.iter().map(|t| t.0).collect::<Vec<_>>(), [5, 6]);
}

/// A relay node dies: its client resumes on another node and gets what it missed.
#[tokio::test]
async fn a_client_of_a_killed_node_resumes_on_another() {
    let mut nodes = Nodes::start(2, Durability::None).await;
    let mut a = signed_in(nodes.ws(0), nodes.token(1), "app", Some(0)).await;
    assert_eq!(nodes.post(1, 2, 1, "one").await.0, 200);
    assert_eq!(talks(&mut a, 1).await, [(1, "one".to_owned())]);
    nodes.nodes[0].child.kill();
    assert_eq!(nodes.post(1, 2, 1, "two").await.0, 200);
    assert_eq!(nodes.post(1, 2, 1, "three").await.0, 200);
    let mut a = signed_in(nodes.ws(1), nodes.token(1), "app", Some(1)).await;
    assert_eq!(talks(&mut a, 2).await, [(2, "two".to_owned()), (3, "three".to_owned())]);
    assert_alive(&mut a).await;
}

/// Retention and device expiry on Redis: talks past the retention go, acked or not (and
/// their senders' shares with them); an unseen device is forgotten.
#[tokio::test]
async fn retention_and_device_expiry_prune_redis() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), Durability::None).unwrap();
    let env = start_with(|c| {
        c.broker = BrokerUrl::Redis(redis.url());
        c.retention = Duration::from_millis(1500);
        c.device_expiry = Duration::from_millis(1500);
        c.max_queued_per_recipient = 10;
    })
    .await;
    // A device that acks nothing holds the queue until it is forgotten.
    let gone = signed_in(&env.ws_url(), env.token(1), "gone", Some(0)).await;
    drop(gone);
    assert_eq!(env.post_n(1, 1, "t").await, vec![1]);
    assert_eq!(redis.cli(&["HLEN", "tb:{1}:dev"]).unwrap(), "1");
    eventually("the talk past retention and the device to go", || {
        let stream = redis.cli(&["XLEN", "tb:{1}:s"]).ok()?;
        let devices = redis.cli(&["HLEN", "tb:{1}:dev"]).ok()?;
        (stream == "0" && devices == "0").then_some(())
    })
    .await;
    assert_eq!(redis.cli(&["HLEN", "tb:{1}:from"]).unwrap(), "0", "the sender's share is free again");
    assert_eq!(env.post_n(1, 1, "u").await, vec![2], "the seq goes on");
}

/// With `appendfsync always`, a SIGKILLed Redis comes back with everything it accepted,
/// and every queue keeps its epoch: the connected client is not told to reconnect, and a
/// device resuming with the epoch is not reset.
#[tokio::test]
async fn a_redis_sigkilled_and_restarted_loses_nothing_accepted() {
    let mut nodes = Nodes::start(2, Durability::Always).await;
    nodes.nodes[0].wait_log("appendfsync=always", 1).await;
    assert!(nodes.nodes[0].log().contains("an accepted talk survives a Redis crash"));
    assert!(nodes.nodes[0].log().contains("a Redis restart keeps the queues' epochs"));
    let (mut a, welcome) = welcomed(nodes.ws(0), hello_text(nodes.token(1), "app", Some(0))).await;
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    for i in 1..=10 {
        assert_eq!(nodes.post(1, 2, 1, &format!("t{i}")).await.0, 200);
    }
    nodes.redis.kill();
    nodes.redis.restart().unwrap();
    for i in 11..=15 {
        assert_eq!(nodes.post_accepted(1, 2, 1, &format!("t{i}")).await, i);
    }
    let got = talks(&mut a, 15).await;
    assert_eq!(got.iter().map(|t| t.0).collect::<Vec<_>>(), (1..=15).collect::<Vec<u64>>());
    assert_alive(&mut a).await;
    // Another device replays all fifteen from the restarted Redis, in the same epoch.
    let (mut phone, welcome) = welcomed(nodes.ws(1), hello_with_epoch(nodes.token(1), "phone", 0, &epoch)).await;
    assert_eq!((&welcome["epoch"], &welcome["reset"]), (&json!(epoch), &Value::Null), "{welcome}");
    let replayed = talks(&mut phone, 15).await;
    let texts: Vec<String> = replayed.into_iter().map(|t| t.1).collect();
    assert_eq!(texts, (1..=15).map(|i| format!("t{i}")).collect::<Vec<_>>());
}

/// The acked `seq` of device `uuid` of user 1, as Redis holds it.
fn acked(nodes: &Nodes, uuid: &str) -> Option<u64> {
    nodes.redis.cli(&["HGET", "tb:{1}:dev", uuid]).ok()?.parse().ok()
}

/// Acks `seq` on `ws` (device `uuid` of user 1) and waits until Redis has it.
async fn ack(nodes: &Nodes, ws: &mut Ws, uuid: &str, seq: u64) {
    send_text(ws, json!({"type": "ack", "seq": seq}).to_string()).await;
    eventually("the ack to reach Redis", || (acked(nodes, uuid) == Some(seq)).then_some(())).await;
}

/// A Redis restart where writes may have been lost (`everysec`, or only a snapshot):
/// the client that got and acked talks 1..=5 is closed (1012) at the first new talk, its
/// next hello with the old epoch gets `reset` and a new epoch, and then it gets every
/// new talk, none taken for one it already has. With `snapshot`, Redis comes back from
/// a snapshot made after talk 3, so its `seq` went back to 3 and the new talks reuse
/// the numbers 4 and 5 the client already holds in the old epoch.
async fn a_restart_that_may_lose_writes_is_a_new_epoch(durability: Durability, snapshot: bool) {
    let mut nodes = Nodes::start(2, durability).await;
    nodes.nodes[0].wait_log("a Redis restart gives every queue a new epoch", 1).await;
    let (mut a, welcome) = welcomed(nodes.ws(0), hello_text(nodes.token(1), "app", Some(0))).await;
    let old_epoch = welcome["epoch"].as_str().unwrap().to_owned();
    for i in 1..=3 {
        assert_eq!(nodes.post(1, 2, 1, &format!("old {i}")).await.0, 200);
    }
    assert_eq!(talks(&mut a, 3).await.last().unwrap().0, 3);
    ack(&nodes, &mut a, "app", 3).await;
    if snapshot {
        assert_eq!(nodes.redis.cli(&["SAVE"]).unwrap(), "OK");
    }
    for i in 4..=5 {
        assert_eq!(nodes.post(1, 2, 1, &format!("old {i}")).await.0, 200);
    }
    assert_eq!(talks(&mut a, 2).await, [(4, "old 4".to_owned()), (5, "old 5".to_owned())]);
    ack(&nodes, &mut a, "app", 5).await;

    nodes.redis.kill();
    nodes.redis.restart().unwrap();
    let kept = if snapshot { 3 } else { 5 };
    assert_eq!(nodes.redis.cli(&["HGET", "tb:{1}:meta", "seq"]).unwrap(), kept.to_string());
    let first = nodes.post_accepted(1, 2, 1, "new 1").await;
    assert_eq!(first, kept + 1);
    assert_eq!(close_code(&mut a).await, Some(1012), "told to reconnect");

    let (mut a, welcome) = welcomed(nodes.ws(0), hello_with_epoch(nodes.token(1), "app", 5, &old_epoch)).await;
    assert_eq!(welcome["reset"], true, "{welcome}");
    assert_ne!(welcome["epoch"], json!(old_epoch));
    assert_eq!(welcome["last_seq"], first, "{welcome}");
    // The replay starts after what the device acked and Redis kept: the new talk only.
    assert_eq!(talks(&mut a, 1).await, [(first, "new 1".to_owned())]);
    assert_eq!(nodes.post(1, 2, 1, "new 2").await.0, 200);
    assert_eq!(talks(&mut a, 1).await, [(first + 1, "new 2".to_owned())]);
    assert_alive(&mut a).await;
    // A node that joins now sees the same epoch: the change was made once.
    nodes.add_node().await;
    let (_phone, welcome2) = welcomed(nodes.ws(2), hello_text(nodes.token(1), "phone", Some(0))).await;
    assert_eq!(welcome2["epoch"], welcome["epoch"]);
}

/// `appendfsync everysec`: a SIGKILLed Redis may have lost its last second, so each
/// queue is a new epoch after it, and the client is told and keeps getting talks.
#[tokio::test]
async fn a_redis_sigkilled_under_everysec_gives_a_new_epoch_and_keeps_delivering() {
    a_restart_that_may_lose_writes_is_a_new_epoch(Durability::EverySec, false).await;
}

/// Only snapshots: a Redis SIGKILLed after its last snapshot lost talks 4 and 5, its
/// `seq` went back to 3 in the same queue; the new talks 4 and 5 are a new epoch and
/// reach the client that holds the old 4 and 5.
#[tokio::test]
async fn a_redis_back_from_an_older_snapshot_gives_a_new_epoch_and_no_talk_is_dropped() {
    a_restart_that_may_lose_writes_is_a_new_epoch(Durability::None, true).await;
}

/// Redis loses its data: the connected client is closed (1012), its next hello with the
/// old epoch gets `reset` and the new epoch, and talks flow again from seq 1.
#[tokio::test]
async fn a_redis_whose_data_is_deleted_gives_a_new_epoch_and_keeps_delivering() {
    let mut nodes = Nodes::start(2, Durability::Always).await;
    let (mut a, welcome) = welcomed(nodes.ws(0), hello_text(nodes.token(1), "app", Some(0))).await;
    for i in 1..=3 {
        assert_eq!(nodes.post(1, 2, 1, &format!("old {i}")).await.0, 200);
    }
    assert_eq!(talks(&mut a, 3).await.last().unwrap().0, 3);
    let old_epoch = welcome["epoch"].as_str().unwrap().to_owned();

    nodes.redis.kill_and_delete_data().unwrap();
    nodes.redis.restart().unwrap();
    assert_eq!(close_code(&mut a).await, Some(1012), "told to reconnect");

    let hello = hello_with_epoch(nodes.token(1), "app", 3, &old_epoch);
    let (mut a, welcome) = welcomed(nodes.ws(0), hello).await;
    assert_eq!(welcome["reset"], true, "{welcome}");
    assert_ne!(welcome["epoch"], json!(old_epoch));
    assert_eq!(nodes.post_accepted(1, 2, 1, "new 1").await, 1);
    assert_eq!(talks(&mut a, 1).await, [(1, "new 1".to_owned())]);
}

/// Redis away: a POST is 503 and a send gets `unavailable` (not accepted, so not lost);
/// connected clients stay connected, and get the talk POSTed once Redis is back.
#[tokio::test]
async fn a_redis_that_is_away_refuses_talks_and_keeps_connections() {
    let mut nodes = Nodes::start(2, Durability::Always).await;
    let mut a = signed_in(nodes.ws(0), nodes.token(1), "app", Some(0)).await;
    let mut c = signed_in(nodes.ws(1), nodes.token(3), "c", None).await;
    assert_eq!(nodes.post(1, 2, 1, "before").await.0, 200);
    assert_eq!(talks(&mut a, 1).await, [(1, "before".to_owned())]);

    nodes.redis.kill();
    let (status, body) = nodes.post(1, 2, 1, "while away").await;
    assert_eq!(status, 503, "{body}");
    let answer = sent(&mut c, "away-1", 1, "while away").await;
    assert_eq!((&answer["id"], &answer["code"]), (&json!("away-1"), &json!("unavailable")), "{answer}");
    assert_alive(&mut a).await;
    assert_alive(&mut c).await;
    // A hello while Redis is away: told so, and to try again (1013).
    let mut late = connect(nodes.ws(0)).await;
    send_text(&mut late, hello_text(nodes.token(2), "late", Some(0))).await;
    assert_eq!(next_json(&mut late).await["code"], "unavailable");
    assert_eq!(close_code(&mut late).await, Some(1013));

    nodes.redis.restart().unwrap();
    assert_eq!(nodes.post_accepted(1, 2, 1, "after").await, 2);
    assert_eq!(talks(&mut a, 1).await, [(2, "after".to_owned())]);
    assert_eq!(sent(&mut c, "away-1", 1, "while away").await["seq"], 3, "the retry is sent now");
    assert_eq!(talks(&mut a, 1).await, [(3, "while away".to_owned())]);
}

/// Two nodes on one Redis share one users file: a user removed from it (the CLI) and
/// SIGHUP on both closes that user's connections on both with 4001, and both refuse the
/// token from then on (hellos and POSTs); everyone else's connections stay and keep
/// getting talks from either node.
#[tokio::test]
async fn sighup_on_every_node_applies_a_removed_user_everywhere() {
    let nodes = Nodes::start(2, Durability::None).await;
    let mut two_on_a = signed_in(nodes.ws(0), nodes.token(2), "two-a", None).await;
    let mut two_on_b = signed_in(nodes.ws(1), nodes.token(2), "two-b", None).await;
    let mut one_on_a = signed_in(nodes.ws(0), nodes.token(1), "one-a", Some(0)).await;
    let mut one_on_b = signed_in(nodes.ws(1), nodes.token(1), "one-b", Some(0)).await;
    let mut three = signed_in(nodes.ws(1), nodes.token(3), "three", None).await;

    assert_eq!(users_cmd(&["remove-user", "--id", "2"], &nodes.dir.path().join("users.toml")).await, "");
    for node in &nodes.nodes {
        node.reload(1).await;
        assert!(node.log().contains("reloaded the users file"), "{}", node.log());
    }
    assert_eq!(close_code(&mut two_on_a).await, Some(4001));
    assert_eq!(close_code(&mut two_on_b).await, Some(4001));
    for node in 0..2 {
        refused(nodes.ws(node), nodes.token(2)).await;
        assert_eq!(nodes.post(node, 2, 1, "gone").await.0, 401);
        assert_eq!(nodes.post(node, 3, 2, "to the gone").await.0, 404);
    }

    assert_eq!(nodes.post(0, 3, 1, "posted").await.0, 200);
    assert_eq!(sent(&mut three, "after-reload", 1, "sent").await["seq"], 2);
    let want = [(1, "posted".to_owned()), (2, "sent".to_owned())];
    assert_eq!(talks(&mut one_on_a, 2).await, want);
    assert_eq!(talks(&mut one_on_b, 2).await, want);
    for ws in [&mut one_on_a, &mut one_on_b, &mut three] {
        assert_alive(ws).await;
    }
}

/// Retention on a Redis Cluster covers recipients no node ever held a connection of: a
/// talk past retention (written behind the relays' back with a `ts` of two hours ago, as
/// relays that were down a while left it) is deleted by a node's pass on whichever master
/// holds it, with its sender's share; the talk POSTed after it, inside retention, stays,
/// and is what the recipient's first device gets.
#[tokio::test]
async fn retention_on_a_cluster_covers_recipients_never_connected() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RedisCluster::start(dir.path(), 3).unwrap();
    let broker: BrokerUrl = cluster.url().parse().unwrap();
    let env = start_with(|c| {
        c.broker = broker;
        c.retention = Duration::from_secs(3600);
        // Passes every 500 ms (a quarter of the shorter of the two).
        c.device_expiry = Duration::from_secs(2);
    })
    .await;
    let cli = |args: &[&str]| cluster.nodes[0].cli(&[&["-c"][..], args].concat()).unwrap();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let old_ts = (now_ms - 2 * 3600 * 1000).to_string();
    for user in 1..=3u64 {
        let keys = format!("tb:{{{user}}}");
        let name = format!("wang{user}");
        assert_eq!(cli(&["HINCRBY", &format!("{keys}:meta"), "seq", "1"]), "1");
        let old = ["ts", &old_ts, "from_id", "2", "from_name", "wang2", "to_name", &name, "talk", "old"];
        assert_eq!(cli(&[&["XADD", &format!("{keys}:s"), "1-0"][..], &old[..]].concat()), "1-0");
        cli(&["HINCRBY", &format!("{keys}:from"), "2", "1"]);
        assert_eq!(post_talk(&env.http_url(), env.token(2), user, "new").await.unwrap().seq, 2);
    }
    for user in 1..=3u64 {
        let keys = format!("tb:{{{user}}}");
        eventually("the talk past retention to be pruned", || {
            (cli(&["XLEN", &format!("{keys}:s")]) == "1").then_some(())
        })
        .await;
        assert!(cli(&["XRANGE", &format!("{keys}:s"), "-", "+"]).starts_with("2-0"), "the new one stays");
        assert_eq!(cli(&["HGET", &format!("{keys}:from"), "2"]), "1", "the sender's share counts the new one");
    }
    let mut ws = signed_in(&env.ws_url(), env.token(1), "first", Some(0)).await;
    let talk = next_talk(&mut ws).await;
    assert_eq!((&talk["seq"], &talk["form"]["talk"]), (&json!(2), &json!("new")), "{talk}");
}

/// `--deliver-to-all` (the original servers' mode) on two nodes: every connected client
/// gets every talk, on whichever node it is connected and whichever node took the talk:
/// the recipient's devices the talk itself (with its `seq`), everyone else one copy
/// without a `seq` (their own numbering is not the recipient's).
#[tokio::test]
async fn deliver_to_all_reaches_the_connections_of_every_node() {
    deliver_to_all_across(Nodes::start(0, Durability::None).await).await;
}

/// The same on a Redis Cluster (the copies on one sharded channel).
#[tokio::test]
async fn deliver_to_all_reaches_every_node_on_a_redis_cluster() {
    deliver_to_all_across(Nodes::on_cluster(0).await).await;
}

async fn deliver_to_all_across(mut nodes: Nodes) {
    for _ in 0..2 {
        nodes.add_node_with(&["--deliver-to-all"]).await;
    }
    let mut one_on_a = signed_in(nodes.ws(0), nodes.token(1), "one-a", Some(0)).await;
    let mut one_on_b = signed_in(nodes.ws(1), nodes.token(1), "one-b", Some(0)).await;
    let mut three_on_a = signed_in(nodes.ws(0), nodes.token(3), "three-a", None).await;
    let mut three_on_b = signed_in(nodes.ws(1), nodes.token(3), "three-b", None).await;
    // Each node listens for the others' copies from its start on (its own task).
    eventually("both nodes to listen for copies", || (nodes.subscribers("tb:copies") == 2).then_some(())).await;

    assert_eq!(nodes.post(0, 2, 1, "through a").await.0, 200);
    assert_eq!(nodes.post(1, 2, 1, "through b").await.0, 200);
    let want = [(1, "through a".to_owned()), (2, "through b".to_owned())];
    assert_eq!(talks(&mut one_on_a, 2).await, want);
    assert_eq!(talks(&mut one_on_b, 2).await, want);
    for three in [&mut three_on_a, &mut three_on_b] {
        let mut copies = Vec::new();
        for _ in 0..2 {
            let copy = next_talk(three).await;
            assert_eq!(
                (&copy["seq"], &copy["to"]["id"], &copy["form"]["name"]),
                (&Value::Null, &json!(1), &json!("wang2"))
            );
            copies.push(copy["form"]["talk"].as_str().unwrap().to_owned());
        }
        // Copies carry no order between nodes: the set is what counts.
        copies.sort();
        assert_eq!(copies, ["through a", "through b"]);
    }
    // Nothing twice: no node's own copy came back to it.
    for ws in [&mut one_on_a, &mut one_on_b, &mut three_on_a, &mut three_on_b] {
        assert_alive(ws).await;
    }
}

/// A second crash that loses the write which gave a queue its new epoch: Redis comes back
/// from a snapshot made before that write, so the queue has its first epoch and `seq`
/// again. The next talk is yet another epoch, neither of the two the client has seen, so
/// a `seq` it holds in either is never taken for the new talk.
#[tokio::test]
async fn a_second_crash_that_loses_the_new_epoch_gives_yet_another() {
    let mut nodes = Nodes::start(1, Durability::None).await;
    let (mut a, welcome) = welcomed(nodes.ws(0), hello_text(nodes.token(1), "app", Some(0))).await;
    let first_epoch = welcome["epoch"].as_str().unwrap().to_owned();
    assert_eq!(nodes.post(0, 2, 1, "first 1").await.0, 200);
    assert_eq!(talks(&mut a, 1).await, [(1, "first 1".to_owned())]);
    ack(&nodes, &mut a, "app", 1).await;
    assert_eq!(nodes.redis.cli(&["SAVE"]).unwrap(), "OK");

    // The first crash: the queue moves to a second epoch, where seq 2 is "second 2".
    nodes.redis.kill();
    nodes.redis.restart().unwrap();
    assert_eq!(nodes.post_accepted(0, 2, 1, "second 2").await, 2);
    assert_eq!(close_code(&mut a).await, Some(1012));
    let (mut a, welcome) = welcomed(nodes.ws(0), hello_with_epoch(nodes.token(1), "app", 1, &first_epoch)).await;
    let second_epoch = welcome["epoch"].as_str().unwrap().to_owned();
    assert_ne!(second_epoch, first_epoch);
    assert_eq!(talks(&mut a, 1).await, [(2, "second 2".to_owned())]);

    // The second crash loses all of that: back to the snapshot of the first epoch.
    nodes.redis.kill();
    nodes.redis.restart().unwrap();
    let meta = nodes.redis.cli(&["HMGET", "tb:{1}:meta", "epoch", "seq"]).unwrap();
    assert_eq!(meta.lines().collect::<Vec<_>>(), [first_epoch.as_str(), "1"], "the first epoch's state");
    assert_eq!(nodes.post_accepted(0, 2, 1, "third 2").await, 2, "seq 2 again");
    assert_eq!(close_code(&mut a).await, Some(1012));
    let (mut a, welcome) = welcomed(nodes.ws(0), hello_with_epoch(nodes.token(1), "app", 2, &second_epoch)).await;
    assert_eq!(welcome["reset"], true, "{welcome}");
    assert!(welcome["epoch"] != json!(first_epoch) && welcome["epoch"] != json!(second_epoch), "{welcome}");
    assert_eq!(talks(&mut a, 1).await, [(2, "third 2".to_owned())]);
    assert_alive(&mut a).await;
}
