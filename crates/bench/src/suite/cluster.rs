//! Benchmark 7, Cluster: three relay nodes on one Redis (`appendfsync always`) beside one
//! node on SQLite — talks/s end to end and delivery latency across nodes, with the data on
//! the disk and on tmpfs; idle connections held (as many as the open-file limit and the
//! ports of a loopback address allow, from client processes of their own) and memory per
//! connection, straight to the nodes and through HAProxy; Redis's memory per queued talk;
//! and what the loss of a node costs its clients behind HAProxy.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use talkbell_testkit::child::Spawned;
use talkbell_testkit::haproxy::HaProxy;
use talkbell_testkit::procfs::{self, Mem};
use talkbell_testkit::redis::{Durability, RedisServer};
use talkbell_testkit::wait::Poll;
use tokio::task::JoinSet;

use super::latency::{measured, Measured};
use super::relay_load::connect_clients;
use super::{tried, Tried};
use crate::relay::{flood_flags, RelayProc, UsersFile};
use crate::sender::{self, Sent};
use crate::stats::{now_us, summarize, Summary};
use crate::wsclient::{self, lock, ClientStats, Link, Trace};
use crate::Env;

/// Clients on node A for the traffic runs, and the senders' keep-alive connections.
pub const CLIENTS: u64 = 20;
pub const SENDER_CONNECTIONS: usize = 8;
/// The idle clients' heartbeat (the app's is 30 s; the relay closes a link silent for 60 s).
const IDLE_HEARTBEAT: Duration = Duration::from_secs(30);
/// Open files a relay node or a client process keeps for itself, below the limit.
const OWN_FILES: u64 = 150;
/// The ephemeral ports of one source address (net.ipv4.ip_local_port_range), less a margin.
const PORTS_PER_ADDRESS: u64 = 28_000;
/// The last byte of the next hold process's source address (127.0.0.x): each takes one no
/// earlier run has used, because the ports of a run's closed connections stay in TIME_WAIT
/// for a minute, and a run after one that held ~28,000 from an address would find none.
static NEXT_SOURCE: AtomicU8 = AtomicU8::new(2);
/// The node-loss run: each round a node is SIGKILLed, started again after `DOWN`.
const ROUND: Duration = Duration::from_secs(12);
const DOWN: Duration = Duration::from_secs(6);

#[derive(Clone, Copy, Serialize, PartialEq)]
pub enum Broker {
    /// Three nodes on one redis-server.
    Redis,
    /// One node on its SQLite file.
    Sqlite,
}

#[derive(Serialize)]
pub struct Traffic {
    pub broker: Broker,
    /// `disk` or `tmpfs`, with the file system's type.
    pub data: String,
    pub burst: Sent,
    pub burst_received: u64,
    /// First POST → last talk received, over the talks received.
    pub end_to_end_per_s: f64,
    pub latency: Measured,
}

#[derive(Serialize)]
pub struct Held {
    pub broker: Broker,
    pub path: String,
    pub connections: u64,
    pub processes: usize,
    pub connect_s: f64,
    pub nodes_before: Vec<Mem>,
    pub nodes_after: Vec<Mem>,
    /// The balancer's, when the path is through it.
    pub haproxy: Option<(Mem, Mem)>,
    /// Redis's used_memory (bytes) before and after.
    pub redis_used: Option<(u64, u64)>,
    /// The nodes' and Redis's CPU time over the idle time.
    pub idle_cpu_s: f64,
    pub redis_idle_cpu_s: Option<f64>,
    pub idle_secs: u64,
}

#[derive(Serialize)]
pub struct Queued {
    pub recipients: u64,
    /// Talks queued after the first of each recipient, for [`CLIENTS`] of them.
    pub talks: u64,
    pub text_bytes: usize,
    /// Bytes of used_memory: before, after one talk each, after the rest.
    pub used: [u64; 3],
}

#[derive(Serialize)]
pub struct NodeLoss {
    pub clients: u64,
    pub rate: f64,
    pub kills: usize,
    pub down_s: f64,
    /// Clients of the killed nodes, over all kills.
    pub affected: usize,
    /// Kill → welcomed again by another node (s).
    pub reconnect: Option<Summary>,
    /// Kill → connected and every talk accepted for it until then received (s).
    pub caught_up: Option<Summary>,
    pub missed: u64,
    pub not_caught_up: usize,
    pub posted: Sent,
    /// Accepted talks never received.
    pub lost: u64,
}

#[derive(Serialize)]
pub struct Cluster {
    pub nofile: u64,
    pub redis: String,
    pub traffic: Vec<Tried<Traffic>>,
    pub held: Vec<Tried<Held>>,
    pub queued: Tried<Queued>,
    pub node_loss: Tried<NodeLoss>,
}

/// Redis (for [`Broker::Redis`]) and the relay nodes on one users file.
struct Deployment {
    redis: Option<RedisServer>,
    nodes: Vec<RelayProc>,
    users: UsersFile,
}

impl Deployment {
    async fn start(env: &Env, name: &str, broker: Broker, data: &Path, users: u64, extra: &[String]) -> Result<Self> {
        let users_file = UsersFile::make(&env.work.join(name), users)?;
        let (redis, count) = match broker {
            Broker::Redis => (Some(RedisServer::start(&data.join(format!("{name}-redis")), Durability::Always)?), 3),
            Broker::Sqlite => (None, 1),
        };
        let mut flags = [flood_flags(100_000), extra.to_vec()].concat();
        if let Some(r) = &redis {
            flags.extend(["--broker".to_owned(), r.url()]);
        }
        let mut nodes = Vec::new();
        for n in 0..count {
            nodes.push(RelayProc::start_with(env, &format!("{name}-{n}"), &users_file, data, &flags).await?);
        }
        Ok(Deployment { redis, nodes, users: users_file })
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().flat_map(RelayProc::pids).collect()
    }

    fn mems(&self) -> Vec<Mem> {
        self.pids().into_iter().map(|p| procfs::mem(p).unwrap_or_default()).collect()
    }

    fn redis_used(&self) -> Option<u64> {
        let info = self.redis.as_ref()?.cli(&["INFO", "memory"]).ok()?;
        info.lines().find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok())
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.nodes.clear();
        if let Some(redis) = self.redis.take() {
            let dir = redis.dir.clone();
            drop(redis);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A burst of talks to the 20 clients on node A, posted to the other nodes, then talks at
/// 1,000/s to one of them, posted to node B.
async fn traffic(env: &Env, name: &str, broker: Broker, data: &Path) -> Result<Traffic> {
    let s = &env.sizes;
    let dep = Deployment::start(env, name, broker, data, CLIENTS + 1, &[]).await?;
    let (a, posts) = (&dep.nodes[0], dep.nodes.get(1..).filter(|p| !p.is_empty()).unwrap_or(&dep.nodes[..1]));
    let (stats, trace) = (Arc::new(ClientStats::default()), Arc::new(Trace::default()));
    let link = |i: u64| Link {
        trace: (i == 1).then(|| trace.clone()),
        ..Link::new(a.ws_url(), a.token(i).to_owned(), Duration::from_secs(5))
    };
    let (mut clients, _) = connect_clients(usize::try_from(CLIENTS)?, &stats, link).await?;
    let (start_us, per) = (now_us(), s.cluster_burst / posts.len() as u64);
    let floods = posts.iter().map(|n| {
        let to = |k| 1 + k % CLIENTS;
        sender::flood(n.addr(), dep.users.token(CLIENTS + 1), per, SENDER_CONNECTIONS / posts.len(), to, "cluster")
    });
    let mut burst = Sent::default();
    for sent in futures_util::future::join_all(floods).await {
        burst.absorb(sent?);
    }
    let poll = Poll::up_to(Duration::MAX).every(Duration::from_millis(5));
    let received = poll.settle(burst.accepted, Duration::from_secs(10), || stats.talks.load(Ordering::Relaxed)).await;
    let end_us = stats.last_talk_us.load(Ordering::Relaxed);
    let from = lock(&trace.talks).len();
    let b = posts[0].addr();
    let paced =
        sender::paced(b, dep.users.token(CLIENTS + 1), |_| 1, "paced", s.cluster_paced, 1_000.0, SENDER_CONNECTIONS);
    let paced = paced.await?;
    poll.settle(paced.accepted, Duration::from_secs(10), || (lock(&trace.talks).len() - from) as u64).await;
    let records: Vec<(u64, String)> = lock(&trace.talks).iter().map(|(at, _, t)| (*at, t.clone())).collect();
    clients.abort_all();
    let fs = procfs::fs_type(data);
    Ok(Traffic {
        broker,
        data: format!("{} ({fs})", if fs == "tmpfs" { "tmpfs" } else { "disk" }),
        end_to_end_per_s: received as f64 / (end_us.saturating_sub(start_us) as f64 / 1e6).max(1e-6),
        burst,
        burst_received: received,
        latency: measured(paced, "paced", &records, None),
    })
}

/// `talkbell-bench hold`: connects `count` clients (tokens on standard input, one a line)
/// to the URLs in turn from `source`, says how many are connected every second, and holds
/// them until `for_secs` have passed.
pub async fn hold(urls: Vec<String>, source: IpAddr, count: usize, for_secs: u64) -> Result<()> {
    let tokens: Vec<String> = std::io::stdin().lines().map_while(Result::ok).take(count).collect();
    anyhow::ensure!(tokens.len() == count && !urls.is_empty(), "{} tokens for {count} clients", tokens.len());
    let stats = Arc::new(ClientStats::default());
    let link = |i: u64| {
        let i = usize::try_from(i - 1).unwrap_or(0);
        let url = urls[i % urls.len()].clone();
        Link { source: Some(source), ..Link::new(url, tokens[i].clone(), IDLE_HEARTBEAT) }
    };
    let connected = connect_clients(count, &stats, link).await;
    let _clients = connected.inspect_err(|e| eprintln!("hold: failed: {e:#}"))?;
    let until = Instant::now() + Duration::from_secs(for_secs);
    while Instant::now() < until {
        eprintln!("hold: connected={}", stats.connected.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// The last count a hold process reported, or why it failed.
fn held_by(p: &Spawned) -> Result<u64> {
    if let Some(e) = p.log.find_from(0, "hold: failed") {
        bail!("{e}");
    }
    let last = p.log.lines().into_iter().rev().find_map(|l| l.split("connected=").nth(1)?.trim().parse().ok());
    Ok(last.unwrap_or(0))
}

/// `total` idle clients (users 1..=total) in processes of their own, each from a loopback
/// address of its own ([`NEXT_SOURCE`]), connecting to `urls` in turn.
async fn hold_clients(env: &Env, users: &UsersFile, urls: &[String], total: u64) -> Result<(Vec<Spawned>, f64)> {
    let per = (env.nofile - OWN_FILES).min(PORTS_PER_ADDRESS);
    let (started, mut procs, mut first) = (Instant::now(), Vec::new(), 1);
    for _ in 0..total.div_ceil(per) {
        let n = per.min(total + 1 - first);
        let tokens: String = (first..first + n).map(|u| format!("{}\n", users.token(u))).collect();
        let mut cmd = Command::new(std::env::current_exe()?);
        let source = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed);
        anyhow::ensure!(source < 255, "no loopback address left for the clients");
        cmd.args(["hold", "--source", &format!("127.0.0.{source}"), "--count", &n.to_string(), "--url"]);
        // Each process starts where the last left off, so that the nodes share the clients
        // evenly over all the processes (a node is filled to its cap).
        let turn = usize::try_from(first - 1).unwrap_or(0) % urls.len().max(1);
        let in_turn: Vec<&str> = urls[turn..].iter().chain(&urls[..turn]).map(String::as_str).collect();
        cmd.arg(in_turn.join(",")).args(["--for-secs", "900"]);
        procs.push(Spawned::spawn_fed(
            &mut cmd,
            "hold",
            tokens.into_bytes(),
            Some(&env.work.join(format!("hold-{source}.log"))),
        )?);
        first += n;
    }
    let all = || procs.iter().map(held_by).sum::<Result<u64>>();
    let poll = Poll::up_to(Duration::from_secs(600)).every(Duration::from_millis(200));
    let done = poll.check_async(|| all().map_or_else(|e| Some(Err(e)), |n| (n >= total).then_some(Ok(())))).await;
    done.with_context(|| format!("not all {total} clients connected: {:?}", all().ok()))??;
    Ok((procs, started.elapsed().as_secs_f64()))
}

/// As many idle connections as the limits allow (`total`), their memory and idle CPU.
async fn held(env: &Env, broker: Broker, via_haproxy: bool, total: u64) -> Result<Held> {
    let room = (env.nofile - OWN_FILES).to_string();
    let mut extra = vec!["--max-connections".to_owned(), room];
    if via_haproxy {
        extra.extend(["--trusted-proxy".to_owned(), "127.0.0.1".to_owned()]);
    }
    let path = [(Broker::Redis, "redis"), (Broker::Sqlite, "sqlite")].iter().find(|(b, _)| *b == broker);
    let name = format!("cluster-held-{}", if via_haproxy { "haproxy" } else { path.map_or("", |p| p.1) });
    let dep = Deployment::start(env, &name, broker, &env.relay_db_dir, total, &extra).await?;
    let haproxy = if via_haproxy { Some(start_haproxy(env, &dep, "held")?) } else { None };
    let urls = match &haproxy {
        Some(h) => vec![h.ws_url()],
        None => dep.nodes.iter().map(RelayProc::ws_url).collect(),
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, redis_before, ha_before) =
        (dep.mems(), dep.redis_used(), haproxy.as_ref().and_then(|h| procfs::mem(h.child.pid)));
    let (procs, connect_s) = hold_clients(env, &dep.users, &urls, total).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let redis_pid: Vec<u32> = dep.redis.as_ref().and_then(RedisServer::pid).into_iter().collect();
    let (a0, r0) = (procfs::activity(&dep.pids()), procfs::activity(&redis_pid));
    let idle = env.sizes.cluster_idle_secs;
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let (cpu, _) = procfs::activity_delta(&a0, &procfs::activity(&dep.pids()));
    let (redis_cpu, _) = procfs::activity_delta(&r0, &procfs::activity(&redis_pid));
    let still = procs.iter().map(held_by).sum::<Result<u64>>()?;
    anyhow::ensure!(still >= total, "only {still} of {total} connections stayed up while idle");
    Ok(Held {
        broker,
        path: if via_haproxy { "HAProxy".into() } else { "straight to the nodes".into() },
        connections: total,
        processes: procs.len(),
        connect_s,
        nodes_before: before,
        nodes_after: dep.mems(),
        haproxy: haproxy.as_ref().and_then(|h| Some((ha_before?, procfs::mem(h.child.pid)?))),
        redis_used: dep.redis_used().and_then(|after| Some((redis_before?, after))),
        idle_cpu_s: cpu,
        redis_idle_cpu_s: (!redis_pid.is_empty()).then_some(redis_cpu),
        idle_secs: idle,
    })
}

fn start_haproxy(env: &Env, dep: &Deployment, name: &str) -> Result<HaProxy> {
    let dir = env.work.join(format!("haproxy-{name}"));
    std::fs::create_dir_all(&dir)?;
    let template = include_str!("../../../../deploy/haproxy.cfg");
    // Two open files per connection, and some for itself and its health checks.
    let maxconn = u32::try_from((env.nofile - OWN_FILES) / 2 - 200).unwrap_or(4000);
    let ports: Vec<u16> = dep.nodes.iter().map(|n| n.addr().port()).collect();
    Ok(HaProxy::start(&dir, template, &ports, maxconn)?)
}

/// The text of a queued talk: `burst <label> <n>`, as long as a line people type.
const QUEUED_LABEL: &str = "queued: a talk about as long as the lines people type into a chat";

/// Redis's memory for talks queued for recipients who are not connected: one talk for
/// each of `m`, then `n` more for [`CLIENTS`] of them (a stream fills node after node).
async fn queued(env: &Env) -> Result<Queued> {
    let (m, n) = (env.sizes.cluster_queued_recipients, env.sizes.cluster_queued_talks);
    let dep = Deployment::start(env, "cluster-queued", Broker::Redis, &env.relay_db_dir, m + 1, &[]).await?;
    let (addr, token) = (dep.nodes[0].addr(), dep.users.token(m + 1).to_owned());
    let used0 = dep.redis_used().context("INFO memory")?;
    let one = sender::flood(addr, &token, m, SENDER_CONNECTIONS, |k| k, QUEUED_LABEL).await?;
    let used1 = dep.redis_used().context("INFO memory")?;
    let rest = sender::flood(addr, &token, n, SENDER_CONNECTIONS, |k| 1 + k % CLIENTS, QUEUED_LABEL).await?;
    let used2 = dep.redis_used().context("INFO memory")?;
    let refused = one.failed + rest.failed;
    anyhow::ensure!(refused == 0, "{refused} talks refused: {:?}", one.first_error.or(rest.first_error));
    let text_bytes = format!("burst {QUEUED_LABEL} {n}").len();
    Ok(Queued { recipients: m, talks: n, text_bytes, used: [used0, used1, used2] })
}

/// Clients behind HAProxy (resuming as the app does) while talks come at a steady rate
/// through it; a node SIGKILLed each round and started again after [`DOWN`].
async fn node_loss(env: &Env) -> Result<NodeLoss> {
    let (k, kills, rate) = (env.sizes.cluster_failover_clients, env.sizes.cluster_kills, 300.0);
    let extra = ["--trusted-proxy".to_owned(), "127.0.0.1".to_owned()];
    let mut dep = Deployment::start(env, "cluster-loss", Broker::Redis, &env.relay_db_dir, k + 1, &extra).await?;
    let haproxy = start_haproxy(env, &dep, "loss")?;
    let stats = Arc::new(ClientStats::default());
    let traces: Vec<Arc<Trace>> = (0..k).map(|_| Arc::new(Trace::default())).collect();
    let mut clients = JoinSet::new();
    for (i, t) in (1..=k).zip(&traces) {
        let link = Link {
            trace: Some(t.clone()),
            ..Link::new(haproxy.ws_url(), dep.users.token(i).to_owned(), Duration::from_secs(5))
        };
        clients.spawn(wsclient::resuming(link, stats.clone()));
    }
    let poll = Poll::up_to(Duration::from_secs(60)).every(Duration::from_millis(20));
    poll.check_async(|| (stats.connected.load(Ordering::Relaxed) as u64 >= k).then_some(()))
        .await
        .context("connecting")?;
    let count = crate::stats::saturating_u64(rate * (ROUND.as_secs_f64() * kills as f64 + 3.0));
    let (addr, token) = (haproxy.addr(), dep.users.token(k + 1).to_owned());
    let posting =
        tokio::spawn(async move { sender::paced(addr, &token, move |n| 1 + n % k, "loss", count, rate, 8).await });
    let mut killed_at = Vec::new();
    for round in 0..kills {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let node = &mut dep.nodes[round % 3];
        killed_at.push(now_us());
        node.kill();
        tokio::time::sleep(DOWN).await;
        node.spawn().await?;
        tokio::time::sleep(ROUND - DOWN - Duration::from_secs(3)).await;
    }
    let posted = posting.await??;
    // Until every accepted talk is in, not until as many talks as were accepted are: a POST
    // cut off after the relay stored its talk (HAProxy closing the sender's connection at a
    // node's loss) is posted again by the sender, so its clients get a talk more than were
    // accepted, and a count of all they got would end the wait before the last talks came.
    let accepted: HashSet<(u64, u64)> = posted.seqs.iter().map(|s| (s.0, s.1)).collect();
    let got = || received_of(&traces, &accepted);
    Poll::up_to(Duration::MAX)
        .every(Duration::from_millis(50))
        .settle(posted.accepted, Duration::from_secs(10), got)
        .await;
    clients.abort_all();
    Ok(recoveries(&traces, &killed_at, posted, k, rate))
}

/// How many of the `accepted` talks (recipient, seq) the clients (users 1, 2, … in order)
/// have received, each once; talks no POST was answered for are not among them.
fn received_of(traces: &[Arc<Trace>], accepted: &HashSet<(u64, u64)>) -> u64 {
    let mut seen = HashSet::new();
    for (i, t) in (1..).zip(traces) {
        seen.extend(lock(&t.talks).iter().map(|t| (i, t.1)).filter(|k| accepted.contains(k)));
    }
    seen.len() as u64
}

/// Each affected client's reconnect and catch-up times, from the traces and the sender's
/// record of accepted talks.
fn recoveries(traces: &[Arc<Trace>], killed_at: &[u64], posted: Sent, k: u64, rate: f64) -> NodeLoss {
    let (mut reconnect, mut caught_up, mut missed, mut not_caught_up) = (Vec::new(), Vec::new(), 0, 0);
    let mut never = 0;
    for (i, t) in (1..=k).zip(traces) {
        let (talks, welcomed, lost) = (lock(&t.talks), lock(&t.welcomed), lock(&t.lost));
        let mut seqs: Vec<u64> = talks.iter().map(|t| t.1).collect();
        seqs.sort_unstable();
        never += posted.seqs.iter().filter(|s| s.0 == i && seqs.binary_search(&s.1).is_err()).count() as u64;
        for &kill in killed_at {
            let Some(&down) = lost.iter().find(|&&l| l >= kill && l < kill + 3_000_000) else { continue };
            let Some(&up) = welcomed.iter().find(|&&w| w > down) else {
                not_caught_up += 1;
                continue;
            };
            reconnect.push((up - kill) as f64 / 1e6);
            let had = talks.iter().filter(|t| t.0 <= down).map(|t| t.1).max().unwrap_or(0);
            let owed = posted.seqs.iter().filter(|s| s.0 == i && s.2 <= up).map(|s| s.1).max().unwrap_or(0);
            missed += owed.saturating_sub(had);
            let at = if owed <= had { Some(up) } else { talks.iter().find(|t| t.0 >= up && t.1 >= owed).map(|t| t.0) };
            match at {
                Some(at) => caught_up.push((at - kill) as f64 / 1e6),
                None => not_caught_up += 1,
            }
        }
    }
    NodeLoss {
        clients: k,
        rate,
        kills: killed_at.len(),
        down_s: DOWN.as_secs_f64(),
        affected: reconnect.len() + not_caught_up,
        reconnect: summarize(&reconnect),
        caught_up: summarize(&caught_up),
        missed,
        not_caught_up,
        posted,
        lost: never,
    }
}

pub async fn run(env: &Env) -> Result<Cluster> {
    let disk = env.work.join("cluster-disk");
    std::fs::create_dir_all(&disk)?;
    let mut traffic = Vec::new();
    for data in [disk.as_path(), env.relay_db_dir.as_path()] {
        for broker in [Broker::Redis, Broker::Sqlite] {
            tracing::info!(?data, sqlite = broker == Broker::Sqlite, "cluster: traffic");
            let name = format!("cluster-traffic-{}", traffic.len());
            traffic.push(tried(self::traffic(env, &name, broker, data).await));
        }
    }
    // Straight to the nodes: each node holds what its open files allow. Through HAProxy
    // first: after the run of 59,550 straight to the nodes, HAProxy answered 503 to some
    // of the next run's upgrades at about 5,000 (in three runs out of three; not explained).
    let per_node = env.sizes.cluster_held.unwrap_or(env.nofile - OWN_FILES);
    let mut held = Vec::new();
    for (broker, haproxy, total) in [
        (Broker::Redis, true, env.sizes.cluster_via_haproxy),
        (Broker::Redis, false, 3 * per_node),
        (Broker::Sqlite, false, per_node),
    ] {
        tracing::info!(total, haproxy, "cluster: idle connections");
        held.push(tried(self::held(env, broker, haproxy, total).await));
    }
    tracing::info!("cluster: queued talks, node loss");
    let queued = tried(queued(env).await);
    let node_loss = tried(node_loss(env).await);
    Ok(Cluster { nofile: env.nofile, redis: redis_version(), traffic, held, queued, node_loss })
}

fn redis_version() -> String {
    let out = Command::new("redis-server").arg("--version").output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    text.split_whitespace().nth(2).map_or("", |v| v.trim_start_matches("v=")).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(talks: &[(u64, u64)], welcomed: &[u64], lost: &[u64]) -> Arc<Trace> {
        let t = Trace::default();
        lock(&t.talks).extend(talks.iter().map(|&(at, seq)| (at, seq, String::new())));
        lock(&t.welcomed).extend_from_slice(welcomed);
        lock(&t.lost).extend_from_slice(lost);
        Arc::new(t)
    }

    #[test]
    fn a_cut_client_is_caught_up_once_it_has_what_was_accepted_before_its_welcome() {
        const S: u64 = 1_000_000;
        // User 1: cut at the kill (10 s), welcomed at 11.5 s, gets seqs 3 and 4 (accepted
        // while away) at 11.6 s and 11.8 s. User 2: not on the killed node. User 3: cut,
        // missed nothing, welcomed at 12 s.
        let traces = [
            trace(&[(9 * S, 1), (9 * S + 1, 2), (11_600_000, 3), (11_800_000, 4)], &[S, 11_500_000], &[10 * S]),
            trace(&[(9 * S, 1)], &[S], &[]),
            trace(&[(9 * S, 1)], &[S, 12 * S], &[10 * S + 5]),
        ];
        let seqs =
            vec![(1, 1, 8 * S), (1, 2, 9 * S), (2, 1, 9 * S), (1, 3, 10 * S + 100), (1, 4, 11 * S), (3, 1, 8 * S)];
        let posted = Sent { accepted: 6, seqs, ..Sent::default() };
        let loss = recoveries(&traces, &[10 * S], posted, 3, 300.0);
        assert_eq!((loss.affected, loss.missed, loss.not_caught_up, loss.lost), (2, 2, 0, 0));
        let (r, c) = (loss.reconnect.unwrap(), loss.caught_up.unwrap());
        assert_eq!((r.min, r.max), (1.5, 2.0));
        assert!((c.min - 1.8).abs() < 1e-9 && (c.max - 2.0).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn the_wait_for_the_last_talks_counts_only_accepted_ones_once() {
        // User 1 got seq 1; seq 2, stored by a POST cut off before its answer (so never
        // accepted), and seq 3, the same talk posted again; seq 1 once more; seq 4, the
        // last one accepted, is still on its way. User 2 got its one talk.
        let traces = [trace(&[(1, 1), (2, 2), (3, 3), (4, 1)], &[1], &[]), trace(&[(2, 1)], &[1], &[])];
        let accepted = HashSet::from([(1, 1), (1, 3), (1, 4), (2, 1)]);
        // Five talks received, more than the four accepted, yet one accepted talk is missing.
        assert_eq!(received_of(&traces, &accepted), 3);
        lock(&traces[0].talks).push((5, 4, String::new()));
        assert_eq!(received_of(&traces, &accepted), 4);
    }

    #[test]
    fn an_accepted_talk_never_received_is_lost() {
        let traces = [trace(&[(5, 1)], &[1], &[])];
        let posted = Sent { accepted: 2, seqs: vec![(1, 1, 2), (1, 2, 3)], ..Sent::default() };
        assert_eq!(recoveries(&traces, &[], posted, 1, 1.0).lost, 1);
    }
}
