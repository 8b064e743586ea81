//! A soak across three relay nodes behind Debian's HAProxy (its config made from
//! deploy/haproxy.cfg) on one redis-server with `appendfsync always`: WebSocket clients
//! connected through HAProxy, talks POSTed through HAProxy while nodes (and in the second
//! test Redis too) are SIGKILLed and restarted, clients failing over through HAProxy. At
//! the end every accepted talk (POST answered 200) has reached its recipient exactly once
//! and in order. Each test prints its figures.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::child::BIN;
use support::hello_text;
use talkbell_relay::Users;
use talkbell_testkit::child::{Log, Spawned};
use talkbell_testkit::haproxy::HaProxy;
use talkbell_testkit::http::Poster;
use talkbell_testkit::redis::{Durability, RedisServer};
use talkbell_testkit::relay::Serve;
use talkbell_testkit::wait::Poll;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const NODES: usize = 3;
/// Users 1..=RECIPIENTS each have a client connected through HAProxy.
const RECIPIENTS: u64 = 4;
/// Users RECIPIENTS+1..=RECIPIENTS+SENDERS POST, each to every recipient in turn.
const SENDERS: u64 = 4;
const TALKS_PER_SENDER: usize = 550;
/// Each sender's pace: with four, about 55 talks a second in all.
const POST_EVERY: Duration = Duration::from_millis(72);
const NODE_KILLS: usize = 12;
/// Talks accepted while a killed node is down, before it is started again.
const ACCEPTED_WHILE_DOWN: usize = 25;
/// A client's pause before it connects again (its backoff).
const BACKOFF: Duration = Duration::from_millis(100);
/// Every wait of the soak: generous, a loaded 2-core machine passes.
const LONG: Poll = Poll::up_to(Duration::from_secs(60));

/// What one recipient's client got.
#[derive(Default)]
struct Inbox {
    /// (seq, text) in the order they came, duplicates left out.
    got: Vec<(u64, String)>,
    /// Talks that came again (a seq at or below one already had).
    duplicates: u64,
    /// A seq past the next one: talks skipped.
    gaps: u64,
    /// Connections lost and made again through HAProxy.
    failovers: u64,
}

impl Inbox {
    fn last(&self) -> u64 {
        self.got.last().map_or(0, |t| t.0)
    }

    /// Takes a talk; whether it is new.
    fn take(&mut self, seq: u64, text: String) -> bool {
        let last = self.last();
        if seq <= last {
            self.duplicates += 1;
            return false;
        }
        if seq != last + 1 {
            self.gaps += 1;
        }
        self.got.push((seq, text));
        true
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One talk answered 200.
#[derive(Clone)]
struct Accepted {
    sender: u64,
    to: u64,
    seq: u64,
    text: String,
}

#[derive(Default)]
struct Posted {
    accepted: Vec<Accepted>,
    /// POSTs not answered 200 (503 while Redis is away, 502 from a node killed mid-way,
    /// a connection cut): not accepted, so not owed.
    refused: u64,
}

/// Redis, the relay nodes (each restartable on its port) and HAProxy in front.
struct Cluster {
    _dir: tempfile::TempDir,
    redis: RedisServer,
    nodes: Vec<(Serve, Option<Spawned>)>,
    log: Log,
    haproxy: HaProxy,
    tokens: Vec<String>,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start(&dir.path().join("redis"), Durability::Always).unwrap();
        let mut users = Users::new();
        let mut tokens = vec![String::new()];
        for i in 1..=RECIPIENTS + SENDERS {
            tokens.push(users.add(i, format!("wang{i}")));
        }
        let file = dir.path().join("users.toml");
        users.save(&file).unwrap();
        let log = Log::default();
        let mut nodes = Vec::new();
        for n in 0..NODES {
            let mut serve = Serve::new(BIN, &file, dir.path().join(format!("unused-{n}.db"))).unwrap();
            serve.args = node_flags(&redis.url());
            let mut child = serve.spawn(&log).unwrap();
            serve.wait_ready_async(&mut child, LONG).await.unwrap();
            nodes.push((serve, Some(child)));
        }
        let ports: Vec<u16> = nodes.iter().map(|n| n.0.port).collect();
        let template = include_str!("../../../deploy/haproxy.cfg");
        let haproxy = HaProxy::start(dir.path(), template, &ports, 4000).unwrap();
        Cluster { _dir: dir, redis, nodes, log, haproxy, tokens }
    }

    fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].1.take() {
            child.kill();
        }
    }

    async fn restart(&mut self, node: usize) {
        let serve = &self.nodes[node].0;
        let mut child = serve.spawn(&self.log).unwrap();
        serve.wait_ready_async(&mut child, LONG).await.unwrap();
        self.nodes[node].1 = Some(child);
    }
}

/// A node's `serve` flags: on Redis, behind the balancer on 127.0.0.1, and with the
/// per-token and per-connection rates out of the way of a load test.
fn node_flags(redis: &str) -> Vec<String> {
    let flags = [
        "--broker",
        redis,
        "--trusted-proxy",
        "127.0.0.1",
        "--http-rate",
        "100000",
        "--http-burst",
        "100000",
        "--ws-rate",
        "100000",
        "--ws-burst",
        "100000",
        "--max-queued",
        "100000",
        "--max-queued-per-sender",
        "100000",
    ];
    flags.iter().map(|f| (*f).to_owned()).collect()
}

/// How one connection of a client ended.
enum Ended {
    Stopped,
    Lost,
}

/// A recipient's client: connects through HAProxy, says hello with `resume` at the last
/// seq it has, acks, and on any loss connects again, until `stop`.
async fn receiver(url: String, token: String, inbox: Shared<Inbox>, mut stop: watch::Receiver<bool>) {
    loop {
        match session(&url, &token, &inbox, &mut stop).await {
            Ended::Stopped => return,
            Ended::Lost => lock(&inbox).failovers += 1,
        }
        tokio::select! {
            _ = tokio::time::sleep(BACKOFF) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn session(url: &str, token: &str, inbox: &Shared<Inbox>, stop: &mut watch::Receiver<bool>) -> Ended {
    let connect = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url));
    let Ok(Ok((mut ws, _))) = connect.await else {
        return Ended::Lost;
    };
    let resume = lock(inbox).last();
    if ws.send(Message::text(hello_text(token, "soak-app", Some(resume)))).await.is_err() {
        return Ended::Lost;
    }
    let mut heartbeat = tokio::time::interval(Duration::from_secs(15));
    loop {
        let frame = tokio::select! {
            frame = ws.next() => frame,
            _ = heartbeat.tick() => {
                if ws.send(Message::text("online")).await.is_err() {
                    return Ended::Lost;
                }
                continue;
            }
            _ = stop.changed() => return Ended::Stopped,
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ended::Lost,
            Some(Ok(_)) => continue,
        };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
        if let Some(ack) = take_talk(&v, inbox) {
            if ws.send(Message::text(json!({"type": "ack", "seq": ack}).to_string())).await.is_err() {
                return Ended::Lost;
            }
        }
    }
}

/// A talk frame into the inbox; the seq to ack, every tenth talk.
fn take_talk(v: &Value, inbox: &Shared<Inbox>) -> Option<u64> {
    v.get("form")?;
    let seq = v["seq"].as_u64()?;
    let text = v["form"]["talk"].as_str().unwrap_or_default().to_owned();
    let fresh = lock(inbox).take(seq, text);
    (fresh && seq % 10 == 0).then_some(seq)
}

/// A sender: POSTs its talks through HAProxy at its pace, each once (a fresh connection
/// each, so nothing is retried behind the test's back), each to the next recipient.
async fn sender(addr: std::net::SocketAddr, sender: u64, token: String, posted: Shared<Posted>) {
    let mut pace = tokio::time::interval(POST_EVERY);
    for i in 0..TALKS_PER_SENDER {
        pace.tick().await;
        let to = 1 + (i as u64 + sender) % RECIPIENTS;
        let text = format!("from {sender} #{i}");
        match Poster::new(addr, &token).post(to, &text).await {
            Ok(seq) => lock(&posted).accepted.push(Accepted { sender, to, seq, text }),
            Err(_) => lock(&posted).refused += 1,
        }
    }
}

fn accepted(posted: &Shared<Posted>) -> usize {
    lock(posted).accepted.len()
}

/// The kills, spread over the run: at every share of the talks a node is SIGKILLed, a few
/// talks are accepted without it, and it is started again on its port.
async fn killer(cluster: &mut Cluster, posted: &Shared<Posted>, redis_kills: &[usize]) -> (usize, usize) {
    let total = (SENDERS as usize) * TALKS_PER_SENDER;
    let (mut nodes_killed, mut redis_killed) = (0, 0);
    for k in 0..NODE_KILLS {
        let at = total * (k + 1) / (NODE_KILLS + 2);
        LONG.until_async("talks accepted before the next kill", || (accepted(posted) >= at).then_some(())).await;
        if redis_kills.contains(&k) {
            cluster.redis.kill();
            tokio::task::block_in_place(|| cluster.redis.restart()).unwrap();
            redis_killed += 1;
        }
        let node = k % NODES;
        cluster.kill(node);
        nodes_killed += 1;
        let want = accepted(posted) + ACCEPTED_WHILE_DOWN;
        LONG.until_async("talks accepted while a node is down", || (accepted(posted) >= want).then_some(())).await;
        cluster.restart(node).await;
    }
    (nodes_killed, redis_killed)
}

/// The figures of a soak, and its checks.
struct Figures {
    accepted: usize,
    refused: u64,
    delivered: usize,
    lost: usize,
    duplicates: u64,
    gaps: u64,
    out_of_order: usize,
    unconfirmed: usize,
    failovers: u64,
    node_kills: usize,
    redis_kills: usize,
    took: Duration,
}

fn tally(posted: &Posted, inboxes: &[Shared<Inbox>]) -> Figures {
    let inboxes: Vec<_> = inboxes.iter().map(|i| lock(i)).collect();
    let got: Vec<HashMap<u64, &str>> =
        inboxes.iter().map(|i| i.got.iter().map(|(s, t)| (*s, t.as_str())).collect()).collect();
    let owed = &posted.accepted;
    let delivered = owed.iter().filter(|a| got[(a.to - 1) as usize].get(&a.seq) == Some(&a.text.as_str())).count();
    // One sender's talks to one recipient must have rising seqs, in the order POSTed.
    let mut last: HashMap<(u64, u64), u64> = HashMap::new();
    let out_of_order = owed.iter().filter(|a| last.insert((a.sender, a.to), a.seq).is_some_and(|s| s >= a.seq)).count();
    let received: usize = inboxes.iter().map(|i| i.got.len()).sum();
    Figures {
        accepted: owed.len(),
        refused: posted.refused,
        delivered,
        lost: owed.len() - delivered,
        duplicates: inboxes.iter().map(|i| i.duplicates).sum(),
        gaps: inboxes.iter().map(|i| i.gaps).sum(),
        out_of_order,
        unconfirmed: received.saturating_sub(delivered),
        failovers: inboxes.iter().map(|i| i.failovers).sum(),
        node_kills: 0,
        redis_kills: 0,
        took: Duration::ZERO,
    }
}

async fn soak(redis_kills: &[usize]) -> Figures {
    let started = Instant::now();
    let mut cluster = Cluster::start().await;
    let (stop_tx, stop) = watch::channel(false);
    let inboxes: Vec<Shared<Inbox>> = (0..RECIPIENTS).map(|_| Shared::default()).collect();
    let mut clients = Vec::new();
    for (r, inbox) in inboxes.iter().enumerate() {
        let (url, token) = (cluster.haproxy.ws_url(), cluster.tokens[r + 1].clone());
        clients.push(tokio::spawn(receiver(url, token, inbox.clone(), stop.clone())));
    }
    let posted: Shared<Posted> = Shared::default();
    let mut senders = Vec::new();
    for s in RECIPIENTS + 1..=RECIPIENTS + SENDERS {
        let token = cluster.tokens[s as usize].clone();
        senders.push(tokio::spawn(sender(cluster.haproxy.addr(), s, token, posted.clone())));
    }
    let (node_kills, redis_killed) = killer(&mut cluster, &posted, redis_kills).await;
    for s in senders {
        s.await.unwrap();
    }
    drain(&posted, &inboxes).await;
    let _ = stop_tx.send(true);
    for c in clients {
        c.await.unwrap();
    }
    let mut figures = tally(&lock(&posted), &inboxes);
    (figures.node_kills, figures.redis_kills, figures.took) = (node_kills, redis_killed, started.elapsed());
    drop(cluster);
    figures
}

/// Waits until every recipient's client has at least the last seq accepted for it.
async fn drain(posted: &Shared<Posted>, inboxes: &[Shared<Inbox>]) {
    let mut owed: HashMap<u64, u64> = HashMap::new();
    for a in &lock(posted).accepted {
        let top = owed.entry(a.to).or_default();
        *top = (*top).max(a.seq);
    }
    let all_in = || owed.iter().all(|(to, seq)| lock(&inboxes[(*to - 1) as usize]).last() >= *seq).then_some(());
    // Not a panic if it never comes: the figures then say what is missing.
    let _ = LONG.check_async(all_in).await;
}

fn print_and_check(what: &str, f: &Figures) {
    println!(
        "soak ({what}): accepted {}, delivered {}, lost {}, duplicates {}, gaps {}, out of order {}, \
         delivered though unconfirmed {}, refused {}, failovers {}, node kills {}, redis kills {}, {:.1} s",
        f.accepted,
        f.delivered,
        f.lost,
        f.duplicates,
        f.gaps,
        f.out_of_order,
        f.unconfirmed,
        f.refused,
        f.failovers,
        f.node_kills,
        f.redis_kills,
        f.took.as_secs_f64()
    );
    assert!(f.accepted >= 2000, "at least 2,000 talks accepted");
    assert!(f.node_kills >= 10);
    assert_eq!(f.lost, 0, "every accepted talk delivered");
    assert_eq!(f.duplicates, 0, "none twice");
    assert_eq!((f.gaps, f.out_of_order), (0, 0), "in order");
    assert!(f.failovers > 0, "clients failed over through HAProxy");
}

/// Three nodes, twelve node kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_behind_haproxy_lose_nothing_accepted_while_nodes_die() {
    let _one_at_a_time = SERIAL.lock().await;
    let f = soak(&[]).await;
    print_and_check("nodes killed", &f);
}

/// The same with Redis SIGKILLed and restarted twice mid-soak as well (`appendfsync
/// always`): POSTs meanwhile are refused (503), nothing accepted is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_behind_haproxy_lose_nothing_accepted_while_redis_dies_too() {
    let _one_at_a_time = SERIAL.lock().await;
    let f = soak(&[3, 8]).await;
    print_and_check("nodes and Redis killed", &f);
    assert_eq!(f.redis_kills, 2);
}

/// The deployment's files as shipped: HAProxy's config is valid to `haproxy -c`, each
/// Redis config starts a Redis of its durability (a node's config: `cli::settings`' tests).
#[test]
fn the_deployed_configs_are_valid() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let check = std::process::Command::new("haproxy").arg("-c").arg("-f").arg(deploy.join("haproxy.cfg")).output();
    let check = check.unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    for (file, fsync) in [("redis-always.conf", "always"), ("redis-everysec.conf", "everysec")] {
        let redis = RedisServer::start_with_config(&dir.path().join(file), &deploy.join(file)).unwrap();
        assert_eq!(redis.cli(&["CONFIG", "GET", "appendfsync"]).unwrap(), format!("appendfsync\n{fsync}"));
        assert_eq!(redis.cli(&["CONFIG", "GET", "appendonly"]).unwrap(), "appendonly\nyes");
    }
}

/// The soaks load the machine: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
