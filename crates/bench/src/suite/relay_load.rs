//! Benchmark 5, Relay: its memory with 10,000 idle clients connected, the talks it routes
//! per second to 1,000 connected clients, and (for the record) how fast it takes talks with
//! its queue on the disk.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use talkbell_testkit::procfs::{self, Mem};
use talkbell_testkit::wait::Poll;
use tokio::task::JoinSet;

use super::{tried, Tried};
use crate::relay::{flood_flags, RelayProc, UsersFile};
use crate::sender::{self, Sent};
use crate::wsclient::{self, ClientStats, Link};
use crate::Env;

const HEARTBEAT: Duration = Duration::from_secs(5);
/// Handshakes in flight at once while the clients connect.
const CONNECTING_AT_ONCE: usize = 200;
pub const SENDER_CONNECTIONS: usize = 32;

#[derive(Serialize)]
pub struct Idle {
    /// From the relay's spawn to its "listening" line, with this many users in its file.
    pub start_took_s: f64,
    pub clients: usize,
    pub connect_s: f64,
    pub before: Mem,
    pub after: Mem,
    pub hwm_kib: u64,
    pub threads: usize,
    pub cpu_s: f64,
    pub wakeups_per_s: f64,
    pub idle_secs: u64,
    pub heartbeats_per_s: f64,
}

#[derive(Serialize)]
pub struct Routing {
    pub clients: usize,
    pub talks: u64,
    pub received: u64,
    pub posted: Sent,
    /// First POST → last talk received.
    pub elapsed_s: f64,
    pub cpu_s: f64,
}

#[derive(Serialize)]
pub struct OnDisk {
    pub fs: String,
    pub disk: Sent,
    pub tmpfs: Sent,
}

#[derive(Serialize)]
pub struct RelayLoad {
    pub connections: usize,
    pub idle: Tried<Idle>,
    pub routing: Tried<Routing>,
    pub on_disk: Tried<OnDisk>,
}

/// Connects clients 1..=n (`link(i)`: where and how client i connects); returns once all
/// are welcomed (or fails).
pub async fn connect_clients(
    n: usize,
    stats: &Arc<ClientStats>,
    link: impl Fn(u64) -> Link,
) -> Result<(JoinSet<()>, Duration)> {
    let mut set = JoinSet::new();
    let started = Instant::now();
    let (mut spawned, mut last_progress) = (0, (0, Instant::now()));
    loop {
        let connected = stats.connected.load(Ordering::Relaxed);
        let failed = stats.failed.load(Ordering::Relaxed);
        if failed > 0 {
            bail!("{failed} client(s) failed to connect ({connected} connected)");
        }
        if connected >= n {
            return Ok((set, started.elapsed()));
        }
        while spawned < n && spawned - connected < CONNECTING_AT_ONCE {
            spawned += 1;
            let (link, stats) = (link(spawned as u64), stats.clone());
            set.spawn(async move {
                if let Err(e) = wsclient::run(link, stats).await {
                    tracing::warn!("bench client: {e:#}");
                }
            });
        }
        if connected != last_progress.0 {
            last_progress = (connected, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(30) {
            bail!("clients stopped connecting at {connected} of {n}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn idle(env: &Env) -> Result<Idle> {
    let n = env.sizes.relay_idle_clients;
    // Room for every client, the per-user cap is not reached (one connection each).
    let room = vec!["--max-connections".to_owned(), (n + 100).to_string()];
    let relay = RelayProc::start(env, "relay-idle", n as u64, &room).await?;
    let pid = *relay.pids().first().context("relay pid")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = procfs::mem(pid).unwrap_or_default();
    let stats = Arc::new(ClientStats::default());
    tracing::info!(clients = n, "relay: connecting idle clients");
    let (mut clients, connect_time) =
        connect_clients(n, &stats, |i| Link::new(relay.ws_url(), relay.token(i).to_owned(), HEARTBEAT)).await?;
    tracing::info!(clients = n, took_s = connect_time.as_secs_f64(), "relay: all connected; idle");
    let (a0, hb0) = (procfs::activity(&[pid]), stats.heartbeats.load(Ordering::Relaxed));
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(env.sizes.relay_idle_secs)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (a1, hb1) = (procfs::activity(&[pid]), stats.heartbeats.load(Ordering::Relaxed));
    let (cpu_s, switches) = procfs::activity_delta(&a0, &a1);
    let idle = Idle {
        start_took_s: relay.start_took.as_secs_f64(),
        clients: n,
        connect_s: connect_time.as_secs_f64(),
        before,
        after: procfs::mem(pid).unwrap_or_default(),
        hwm_kib: procfs::status_kib(pid, "VmHWM").unwrap_or(0),
        threads: procfs::threads(pid),
        cpu_s,
        wakeups_per_s: switches as f64 / elapsed,
        idle_secs: env.sizes.relay_idle_secs,
        heartbeats_per_s: (hb1 - hb0) as f64 / elapsed,
    };
    let still = stats.connected.load(Ordering::Relaxed);
    clients.abort_all();
    while clients.join_next().await.is_some() {}
    if still < n {
        bail!("only {still} of {n} clients stayed connected while idle");
    }
    Ok(idle)
}

async fn routing(env: &Env) -> Result<Routing> {
    let (m, talks) = (env.sizes.route_clients, env.sizes.route_talks);
    let sender_id = m as u64 + 1;
    let flags = [flood_flags(talks), vec!["--max-connections".to_owned(), (m + 100).to_string()]].concat();
    let relay = RelayProc::start(env, "relay-route", sender_id, &flags).await?;
    let pid = *relay.pids().first().context("relay pid")?;
    let stats = Arc::new(ClientStats::default());
    let (mut clients, _) =
        connect_clients(m, &stats, |i| Link::new(relay.ws_url(), relay.token(i).to_owned(), HEARTBEAT)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    tracing::info!(clients = m, talks, "relay: routing");
    let a0 = procfs::activity(&[pid]);
    let started = Instant::now();
    let start_us = crate::stats::now_us();
    let to = move |n| 1 + (n - 1) % m as u64;
    let posted = sender::flood(relay.addr(), relay.token(sender_id), talks, SENDER_CONNECTIONS, to, "route").await?;
    // Until every accepted talk has reached its client (or nothing comes for 10 s).
    let poll = Poll::up_to(Duration::MAX).every(Duration::from_millis(5));
    let received = poll.settle(posted.accepted, Duration::from_secs(10), || stats.talks.load(Ordering::Relaxed)).await;
    let last_us = stats.last_talk_us.load(Ordering::Relaxed);
    let elapsed = Duration::from_micros(last_us.saturating_sub(start_us))
        .max(started.elapsed().min(Duration::from_secs_f64(posted.elapsed_s)));
    let (cpu_s, _) = procfs::activity_delta(&a0, &procfs::activity(&[pid]));
    clients.abort_all();
    while clients.join_next().await.is_some() {}
    Ok(Routing { clients: m, talks, received, posted, elapsed_s: elapsed.as_secs_f64(), cpu_s })
}

/// The relay's intake with its queue database on the disk (synchronous = FULL), and the
/// same on tmpfs.
async fn on_disk(env: &Env) -> Result<OnDisk> {
    let disk = env.work.join("relay-disk-db");
    std::fs::create_dir_all(&disk)?;
    let (flags, n) = (flood_flags(env.sizes.disk_talks.max(10_000)), env.sizes.disk_talks);
    let mut sent = Vec::new();
    for (dir, name) in [(&disk, "disk"), (&env.relay_db_dir, "tmpfs")] {
        let users = UsersFile::make(&env.work.join(format!("relay-{name}")), 2)?;
        let relay = RelayProc::start_with(env, &format!("relay-{name}"), &users, dir, &flags).await?;
        sent.push(sender::flood(relay.addr(), relay.token(2), n, SENDER_CONNECTIONS, |_| 1, name).await?);
    }
    let (tmpfs, disk_sent) = (sent.pop().unwrap_or_default(), sent.pop().unwrap_or_default());
    Ok(OnDisk { fs: procfs::fs_type(&disk), disk: disk_sent, tmpfs })
}

pub async fn run(env: &Env) -> Result<RelayLoad> {
    let idle = tried(idle(env).await);
    let routing = tried(routing(env).await);
    let on_disk = tried(on_disk(env).await);
    if let (Err(a), Err(b)) = (&idle, &routing) {
        bail!("both parts failed: idle: {a}; routing: {b}");
    }
    Ok(RelayLoad { connections: SENDER_CONNECTIONS, idle, routing, on_disk })
}
