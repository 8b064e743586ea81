//! Benchmark 3, Burst: N talks (100,000) posted as fast as the relay takes them; the time
//! until all are in the app's history, talks per second, the app's peak memory and its
//! popups. Twice: live (the daemon connected while the talks come), and as a replay (the
//! talks queued while the daemon was stopped, then the daemon started).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use talkbell_testkit::child::Spawned;
use talkbell_testkit::dunst;
use talkbell_testkit::procfs::{self, Activity};

use super::{tried, Tried};
use crate::app::{self, AppHome, Mode};
use crate::relay::{flood_flags, RelayProc};
use crate::sender::{self, Sent};
use crate::Env;

pub const SENDER_CONNECTIONS: usize = 32;

#[derive(Serialize)]
pub struct Burst {
    pub sent: Sent,
    /// From the first POST (live) or the daemon's start (replay) until all are stored.
    pub all_in_s: f64,
    /// Replay: from the daemon's start until it connected.
    pub to_connect_s: Option<f64>,
    /// Talks per second into the history (replay: over the time after it connected).
    pub rate: f64,
    pub stored: u64,
    pub vm_hwm_kib: u64,
    pub peak_pss_kib: u64,
    /// "summary: body" of each popup.
    pub popups: Vec<String>,
    /// CPU seconds over `all_in`: the app's and the relay's.
    pub app_cpu_s: f64,
    pub relay_cpu_s: f64,
}

#[derive(Serialize)]
pub struct Bursts {
    pub talks: u64,
    pub connections: usize,
    pub relay_flags: Vec<String>,
    pub cores: usize,
    pub live: Tried<Burst>,
    pub replay: Tried<Burst>,
}

fn count(db: &rusqlite::Connection, sql: &str) -> u64 {
    let n = db.query_row(sql, [], |r| r.get::<_, Option<i64>>(0));
    n.ok().flatten().map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

/// Polls the history until it holds `want` talks (or nothing new came for 30 s); samples
/// the app's PSS meanwhile. Returns (when all were in, peak PSS, stored).
async fn watch_history(home: &AppHome, app: &mut Spawned, want: u64) -> Result<(Instant, u64, u64)> {
    let (mut db, mut peak) = (None, 0);
    let mut last = (0, Instant::now());
    let mut next_sample = Instant::now();
    loop {
        if db.is_none() && home.paths.history_db.exists() {
            db = home.history().ok();
        }
        let n = db.as_ref().map_or(0, |d| count(d, "SELECT max(id) FROM talks"));
        if Instant::now() >= next_sample || n >= want {
            peak = peak.max(procfs::mem_total(&app.tree()).pss_kib);
            next_sample = Instant::now() + Duration::from_millis(200);
        }
        if n >= want {
            return Ok((Instant::now(), peak, db.as_ref().map_or(0, |d| count(d, "SELECT count(*) FROM talks"))));
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            bail!("the history stopped at {n} of {want} talks; the app's log ends:\n{}", app.log.tail(15));
        }
        if !app.is_running() {
            bail!("the app exited during the burst:\n{}", app.log.tail(15));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One run: `live` floods with the daemon connected, else floods first and starts it after.
async fn burst(env: &Env, relay: &RelayProc, user: u64, live: bool) -> Result<Burst> {
    let n = env.sizes.burst_talks;
    let (label, name) = if live { ("live", "burst-live-app") } else { ("replay", "burst-replay-app") };
    let home = AppHome::new(env, &env.work, name)?;
    // Signing in links the device, so the relay keeps its talks for it from then on.
    home.login(&relay.ws_url(), relay.token(user))?;
    let flood = |addr, token: String| async move {
        sender::flood(addr, &token, n, SENDER_CONNECTIONS, move |_| user, label).await
    };
    let mut app = None;
    if live {
        let mut a = home.spawn(Mode::Daemon, None)?;
        app::wait_connected(&mut a, 1, Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        app = Some(a);
    }
    let early = if live { None } else { Some(flood(relay.addr(), relay.token(2).to_owned()).await?) };
    let popups_before = dunst::last_id()?;
    let relay_cpu0 = procfs::activity(&relay.pids());
    let app_cpu0 = app.as_ref().map_or_else(Activity::default, |a| procfs::activity(&a.tree()));
    let (mut app, started) = match app {
        Some(a) => (a, Instant::now()),
        None => (home.spawn(Mode::Daemon, None)?, Instant::now()),
    };
    let sending = early.is_none().then(|| tokio::spawn(flood(relay.addr(), relay.token(2).to_owned())));
    let to_connect = if live {
        None
    } else {
        let connected = app::wait_connected(&mut app, 1, Duration::from_secs(60)).await?;
        Some(connected.duration_since(app.spawned_at).unwrap_or_default().as_secs_f64())
    };
    let watched = watch_history(&home, &mut app, n).await;
    let sent = match (sending, early) {
        (Some(s), _) => s.await.context("the sender")??,
        (None, early) => early.unwrap_or_default(),
    };
    let (all_at, peak, stored) = watched?;
    let app_cpu_s = procfs::activity_delta(&app_cpu0, &procfs::activity(&app.tree())).0;
    let relay_cpu_s = procfs::activity_delta(&relay_cpu0, &procfs::activity(&relay.pids())).0;
    let vm_hwm_kib = procfs::status_kib(app.pid, "VmHWM").unwrap_or(0);
    // The notifier's last window ends 2 s after the last talk.
    let popups = dunst::settle(popups_before, Duration::from_secs(4), Duration::from_secs(30)).await?;
    app.terminate(Duration::from_secs(10));
    let all_in_s = (all_at - started).as_secs_f64();
    Ok(Burst {
        rate: n as f64 / (all_in_s - to_connect.unwrap_or(0.0)),
        sent,
        all_in_s,
        to_connect_s: to_connect,
        stored,
        vm_hwm_kib,
        peak_pss_kib: peak,
        popups: popups.iter().map(|p| format!("{}: {}", p.summary, p.body)).collect(),
        app_cpu_s,
        relay_cpu_s,
    })
}

pub async fn run(env: &Env) -> Result<Bursts> {
    let n = env.sizes.burst_talks;
    let relay_flags = flood_flags((2 * n).max(200_000));
    let relay = RelayProc::start(env, "burst-relay", 3, &relay_flags).await?;
    tracing::info!(talks = n, "burst: live");
    let live = tried(burst(env, &relay, 1, true).await);
    tracing::info!(talks = n, "burst: replay");
    let replay = tried(burst(env, &relay, 3, false).await);
    if let (Err(a), Err(b)) = (&live, &replay) {
        bail!("both runs failed: live: {a}; replay: {b}");
    }
    let cores = procfs::machine().cores;
    Ok(Bursts { talks: n, connections: SENDER_CONNECTIONS, relay_flags, cores, live, replay })
}
