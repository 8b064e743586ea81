//! Benchmark 5, Relay: its memory with 10,000 idle clients connected, the talks it routes per second
//! to 1,000 connected clients, and (for the record) how fast it takes talks with its queue
//! on the disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::task::JoinSet;

use crate::procfs;
use crate::relay::{flood_flags, RelayProc};
use crate::report::{table, Report};
use crate::sender;
use crate::stats::{int, mb, mb_f, rate, secs};
use crate::wsclient::{self, ClientStats};
use crate::Env;

const HEARTBEAT: Duration = Duration::from_secs(5);
/// Handshakes in flight at once while the clients connect.
const CONNECTING_AT_ONCE: usize = 200;
const SENDER_CONNECTIONS: usize = 32;

/// Connects clients for users 1..=n; returns once all are welcomed (or fails).
async fn connect_clients(relay: &RelayProc, n: usize, stats: &Arc<ClientStats>) -> Result<(JoinSet<()>, Duration)> {
    let mut set = JoinSet::new();
    let started = Instant::now();
    let mut spawned = 0;
    let mut last_progress = (0, Instant::now());
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
            let (url, token, stats) = (relay.ws_url(), relay.token(spawned as u64).to_owned(), stats.clone());
            set.spawn(async move {
                if let Err(e) = wsclient::run(url, token, stats, HEARTBEAT).await {
                    tracing::debug!("bench client: {e:#}");
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

struct Idle {
    /// From the relay's spawn to its "listening" line, with this many users in its file.
    start_took: Duration,
    clients: usize,
    connect_time: Duration,
    before: procfs::Mem,
    after: procfs::Mem,
    hwm_kib: u64,
    threads: usize,
    cpu_s: f64,
    wakeups: f64,
    idle_secs: u64,
    heartbeats_per_s: f64,
}

async fn idle(env: &Env) -> Result<Idle> {
    let n = env.sizes.relay_idle_clients;
    // Room for every client, the per-user cap is not reached (one connection each).
    let room = vec!["--max-connections".to_owned(), (n + 100).to_string()];
    let relay = RelayProc::start(env, "relay-idle", n as u64, &room).await?;
    let pid = relay.pid().context("relay pid")?;
    let start_took = relay.start_took;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = procfs::mem(pid).unwrap_or_default();
    let stats = Arc::new(ClientStats::default());
    tracing::info!(clients = n, "relay: connecting idle clients");
    let (mut clients, connect_time) = connect_clients(&relay, n, &stats).await?;
    tracing::info!(clients = n, took = %secs(connect_time), "relay: all connected; idle");
    let a0 = procfs::activity(&[pid]);
    let hb0 = stats.heartbeats.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(env.sizes.relay_idle_secs)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let a1 = procfs::activity(&[pid]);
    let hb1 = stats.heartbeats.load(Ordering::Relaxed);
    let after = procfs::mem(pid).unwrap_or_default();
    let hwm_kib = procfs::status_kib(pid, "VmHWM").unwrap_or(0);
    let threads = procfs::threads(pid);
    let still = stats.connected.load(Ordering::Relaxed);
    let (cpu_s, switches) = procfs::activity_delta(&a0, &a1);
    clients.abort_all();
    while clients.join_next().await.is_some() {}
    drop(relay);
    if still < n {
        bail!("only {still} of {n} clients stayed connected while idle");
    }
    Ok(Idle {
        start_took,
        clients: n,
        connect_time,
        before,
        after,
        hwm_kib,
        threads,
        cpu_s,
        wakeups: switches as f64 / elapsed,
        idle_secs: env.sizes.relay_idle_secs,
        heartbeats_per_s: (hb1 - hb0) as f64 / elapsed,
    })
}

struct Routing {
    clients: usize,
    talks: u64,
    received: u64,
    posted: sender::Sent,
    elapsed: Duration,
    cpu_s: f64,
}

async fn routing(env: &Env) -> Result<Routing> {
    let m = env.sizes.route_clients;
    let talks = env.sizes.route_talks;
    let sender_id = m as u64 + 1;
    let flags = [flood_flags(talks), vec!["--max-connections".to_owned(), (m + 100).to_string()]].concat();
    let relay = RelayProc::start(env, "relay-route", sender_id, &flags).await?;
    let pid = relay.pid().context("relay pid")?;
    let stats = Arc::new(ClientStats::default());
    let (mut clients, _) = connect_clients(&relay, m, &stats).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    tracing::info!(clients = m, talks, "relay: routing");
    let a0 = procfs::activity(&[pid]);
    let started = Instant::now();
    let start_us = crate::stats::now_us();
    let posted = sender::flood(
        relay.addr(),
        relay.token(sender_id),
        talks,
        SENDER_CONNECTIONS,
        move |n| 1 + (n - 1) % m as u64,
        "route",
        Arc::new(AtomicU64::new(0)),
    )
    .await?;
    // Until every accepted talk has reached its client (or nothing comes for 10 s).
    let mut last = (0, Instant::now());
    loop {
        let got = stats.talks.load(Ordering::Relaxed);
        if got >= posted.accepted {
            break;
        }
        if got != last.0 {
            last = (got, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let received = stats.talks.load(Ordering::Relaxed);
    let last_us = stats.last_talk_us.load(Ordering::Relaxed);
    let elapsed = Duration::from_micros(last_us.saturating_sub(start_us)).max(started.elapsed().min(posted.elapsed));
    let a1 = procfs::activity(&[pid]);
    let (cpu_s, _) = procfs::activity_delta(&a0, &a1);
    clients.abort_all();
    while clients.join_next().await.is_some() {}
    drop(relay);
    Ok(Routing { clients: m, talks, received, posted, elapsed, cpu_s })
}

/// The relay's intake with its queue database on the disk (synchronous = FULL).
async fn on_disk(env: &Env) -> Result<(sender::Sent, String, sender::Sent)> {
    let disk = env.work.join("relay-disk-db");
    std::fs::create_dir_all(&disk)?;
    let fs = procfs::fs_type(&disk);
    let disk_env = Env {
        work: env.work.clone(),
        bin_dir: env.bin_dir.clone(),
        relay_db_dir: disk,
        sizes: env.sizes.clone(),
        quick: env.quick,
        browser: env.browser,
    };
    let flags = flood_flags(env.sizes.disk_talks.max(10_000));
    let relay = RelayProc::start(&disk_env, "relay-disk", 2, &flags).await?;
    let sent = sender::flood(
        relay.addr(),
        relay.token(2),
        env.sizes.disk_talks,
        SENDER_CONNECTIONS,
        |_| 1,
        "disk",
        Arc::new(AtomicU64::new(0)),
    )
    .await?;
    drop(relay);
    // The same on tmpfs, for comparison.
    let relay = RelayProc::start(env, "relay-tmpfs", 2, &flags).await?;
    let tmpfs = sender::flood(
        relay.addr(),
        relay.token(2),
        env.sizes.disk_talks,
        SENDER_CONNECTIONS,
        |_| 1,
        "tmpfs",
        Arc::new(AtomicU64::new(0)),
    )
    .await?;
    drop(relay);
    Ok((sent, fs, tmpfs))
}

pub async fn run(env: &Env, report: &mut Report) -> Result<()> {
    let idle = idle(env).await;
    let routing = routing(env).await;
    let disk = on_disk(env).await;

    let mut body = String::from(
        "The release `talkbell-relay serve` with default settings, clients in this benchmark's own \
         process (tokio-tungstenite), each behaving like the original browser client: the hello \
         (`uuid` + `token`, no `resume`), `online` after 5 s without a frame, no acks. Every client \
         signs in as a user of its own.\n\n",
    );
    match &idle {
        Ok(i) => {
            let per = (i.after.pss_kib.saturating_sub(i.before.pss_kib)) as f64 * 1024.0 / i.clients as f64;
            body.push_str(&format!(
                "**{} idle clients** (all connected in {}, then {} s idle):\n\n",
                int(i.clients as u64),
                secs(i.connect_time),
                i.idle_secs
            ));
            body.push_str(&table(
                &["relay", "PSS", "RSS", "peak RSS (VmHWM)", "threads", "CPU while idle", "wake-ups/s"],
                &[
                    vec![
                        "started, no client".into(),
                        mb(i.before.pss_kib),
                        mb(i.before.rss_kib),
                        "".into(),
                        "".into(),
                        "".into(),
                        "".into(),
                    ],
                    vec![
                        format!("{} clients connected, idle", int(i.clients as u64)),
                        format!("**{}**", mb(i.after.pss_kib)),
                        mb(i.after.rss_kib),
                        mb(i.hwm_kib),
                        i.threads.to_string(),
                        format!("{:.1} % of a core", 100.0 * i.cpu_s / i.idle_secs as f64),
                        format!("{:.0}", i.wakeups),
                    ],
                ],
            ));
            body.push_str(&format!(
                "\nAbout {:.1} KB of PSS per connection. The clients sent {:.0} heartbeats/s meanwhile, all \
                 answered. With {} users in its file the relay took {} from its start to listening.\n\n",
                per / 1000.0,
                i.heartbeats_per_s,
                int(i.clients as u64),
                secs(i.start_took)
            ));
            report.target(
                "relay",
                &format!("relay PSS with {} idle connections", int(i.clients as u64)),
                "≤ 200 MB",
                mb(i.after.pss_kib),
                Some(mb_f(i.after.pss_kib) <= 200.0),
            );
            if mb_f(i.after.pss_kib) > 200.0 {
                body.push_str(&format!(
                    "**Missed: {} with {} idle connections, above 200 MB.** Nearly all of it is one buffer \
                     per connection: axum's WebSocket upgrade keeps tungstenite's default read buffer, \
                     128 KiB, which tungstenite allocates when the connection opens and zero-fills before \
                     its first read, so every idle connection holds 128 KiB resident. A smaller read buffer \
                     on the upgrade (`WebSocketUpgrade::read_buffer_size`; talk frames are small) would \
                     reach the target.\n\n",
                    mb(i.after.pss_kib),
                    int(i.clients as u64)
                ));
            }
        }
        Err(e) => {
            body.push_str(&format!("Idle clients: failed: {e:#}\n\n"));
            report.target("relay", "relay PSS with idle connections", "≤ 200 MB", "failed".into(), None);
        }
    }
    match &routing {
        Ok(r) => {
            body.push_str(&format!(
                "**Routing to {} clients**: {} talks from one sender to the {} users in turn, posted as fast \
                 as the relay takes them over {} keep-alive connections; counted as they arrive at the clients.\n\n",
                int(r.clients as u64),
                int(r.talks),
                int(r.clients as u64),
                SENDER_CONNECTIONS
            ));
            body.push_str(&table(
                &[
                    "talks accepted",
                    "received by the clients",
                    "first POST → last received",
                    "routed per second",
                    "relay CPU",
                ],
                &[vec![
                    int(r.posted.accepted),
                    int(r.received),
                    secs(r.elapsed),
                    format!("**{}**", rate(r.received as f64 / r.elapsed.as_secs_f64())),
                    format!("{:.2} cores", r.cpu_s / r.elapsed.as_secs_f64()),
                ]],
            ));
            if r.received < r.posted.accepted {
                body.push_str(&format!(
                    "\n**{} accepted talks never reached their client.**\n",
                    int(r.posted.accepted - r.received)
                ));
            }
            if r.posted.failed > 0 {
                body.push_str(&format!(
                    "\n{} POSTs failed (first: {}).\n",
                    r.posted.failed,
                    r.posted.first_error.clone().unwrap_or_default()
                ));
            }
            body.push('\n');
        }
        Err(e) => body.push_str(&format!("Routing: failed: {e:#}\n\n")),
    }
    match &disk {
        Ok((sent, fs, tmpfs)) => body.push_str(&format!(
            "**Queue on the disk**: {} talks to one user, as fast as the relay takes them, with its database on \
             this machine's disk ({fs}): **{}**; the same on tmpfs: {}. On the disk every talk is one fsync \
             (`synchronous = FULL`, a commit per talk); the other benchmarks keep the relay's queue on tmpfs \
             so that this does not hide the app's figures.\n",
            int(sent.accepted),
            rate(sent.rate()),
            rate(tmpfs.rate())
        )),
        Err(e) => body.push_str(&format!("Queue on the disk: failed: {e:#}\n")),
    }
    report.section("relay", body);
    if idle.is_err() && routing.is_err() {
        bail!("both parts failed");
    }
    Ok(())
}
