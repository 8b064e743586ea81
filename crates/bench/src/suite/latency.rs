//! Benchmark 2, Delivery latency: talks at a steady rate to the signed-in user, each stamped
//! with its send time (µs) in its text; the app's delivery trace records when the notifier
//! was handed each one, the baseline page when its handler ran.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use talkbell_testkit::wait::Poll;

use super::{tried, Tried};
use crate::app::{self, AppHome, Mode};
use crate::browser::Baseline;
use crate::relay::{flood_flags, RelayProc};
use crate::sender::{self, parse_stamp, Sent};
use crate::stats::{summarize, Summary};
use crate::Env;

/// Keep-alive connections of the paced sender.
pub const SENDER_CONNECTIONS: usize = 8;

/// A talk slower than this starts or continues a "slow episode".
pub const SLOW_MS: f64 = 3.0;

#[derive(Serialize)]
pub struct Measured {
    pub sent: Sent,
    /// Latencies in ms.
    pub summary: Option<Summary>,
    pub received: u64,
    /// Relay's ts − sent (ms stamps, so ±1 ms), app only.
    pub relay_part: Option<Summary>,
    /// Runs of consecutive talks slower than [`SLOW_MS`].
    pub slow_runs: usize,
    /// The median number of talks from one slow run's start to the next.
    pub slow_run_every: Option<f64>,
    /// Talks slower than [`SLOW_MS`].
    pub slow: usize,
}

#[derive(Serialize)]
pub struct Latency {
    pub talks: u64,
    pub rate: f64,
    pub connections: usize,
    pub slow_ms: f64,
    pub app: Tried<Measured>,
    /// None: skipped (--no-browser).
    pub baseline: Option<Tried<Measured>>,
    /// Diagnostic: the app with its history on tmpfs.
    pub app_on_tmpfs: Tried<Measured>,
    pub tmpfs_kind: String,
}

/// Latencies of the records (recorded µs, text) against the stamps in the texts, by talk.
pub fn measured(sent: Sent, label: &str, records: &[(u64, String)], relay_part: Option<Summary>) -> Measured {
    let mut seen: HashMap<u64, f64> = HashMap::new();
    for (at, text) in records {
        if let Some((n, sent)) = parse_stamp(label, text) {
            seen.entry(n).or_insert((*at as f64 - sent as f64) / 1000.0);
        }
    }
    let mut lat: Vec<(u64, f64)> = seen.into_iter().collect();
    lat.sort_by_key(|(n, _)| *n);
    let values: Vec<f64> = lat.iter().map(|(_, l)| *l).collect();
    let mut starts = Vec::new();
    let mut prev_slow = false;
    for (n, l) in &lat {
        let slow = *l > SLOW_MS;
        if slow && !prev_slow {
            starts.push(*n as f64);
        }
        prev_slow = slow;
    }
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    Measured {
        sent,
        summary: summarize(&values),
        received: lat.len() as u64,
        relay_part,
        slow_runs: starts.len(),
        slow_run_every: summarize(&gaps).map(|g| g.p50),
        slow: values.iter().filter(|l| **l > SLOW_MS).count(),
    }
}

fn read_trace(path: &Path) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = |l: &str| l.split_once('\t').and_then(|(us, talk)| Some((us.parse().ok()?, talk.to_owned())));
    text.lines().filter_map(line).collect()
}

/// Waits until `count()` reaches `want`, or nothing new came for 15 s.
async fn wait_all(want: u64, count: impl FnMut() -> u64) {
    Poll::up_to(Duration::MAX).settle(want, Duration::from_secs(15), count).await;
}

/// The run's talks, from user 2 to user 1 at the run's rate, stamped with `label`.
async fn send(env: &Env, relay: &RelayProc, label: &str) -> Result<Sent> {
    let (n, rate) = (env.sizes.latency_talks, env.sizes.latency_rate);
    sender::paced(relay.addr(), relay.token(2), |_| 1, label, n, rate, SENDER_CONNECTIONS).await
}

/// The app's run, its config and history under `parent`.
async fn app_case(env: &Env, relay: &RelayProc, parent: &Path, name: &str) -> Result<Measured> {
    let home = AppHome::new(env, parent, name)?;
    home.login(&relay.ws_url(), relay.token(1))?;
    let trace = env.work.join(format!("{name}-trace.tsv"));
    let mut app = home.spawn(Mode::Daemon, Some(&trace))?;
    app::wait_connected(&mut app, 1, Duration::from_secs(60)).await?;
    // Past the notifier's catch-up window of a new link.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = send(env, relay, "app").await?;
    wait_all(sent.accepted, || read_trace(&trace).iter().filter(|(_, t)| t.starts_with("bench app ")).count() as u64)
        .await;
    app.terminate(Duration::from_secs(10));
    let relay_part = relay_stamps(&home).unwrap_or_default();
    Ok(measured(sent, "app", &read_trace(&trace), summarize(&relay_part)))
}

/// The relay's stamp (ms) in the history, against the send time.
fn relay_stamps(home: &AppHome) -> Result<Vec<f64>> {
    let db = home.history()?;
    let mut q = db.prepare("SELECT talk, server_ts FROM talks WHERE server_ts IS NOT NULL")?;
    let rows = q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let part = |(text, ts): (String, i64)| parse_stamp("app", &text).map(|(_, us)| ts as f64 - us as f64 / 1000.0);
    Ok(rows.flatten().filter_map(part).collect())
}

async fn browser_case(env: &Env, relay: &RelayProc) -> Result<Measured> {
    let baseline = Baseline::start(&relay.ws_url(), relay.token(1), 1).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = send(env, relay, "baseline").await?;
    let ours = || baseline.records().iter().filter(|(_, t)| t.starts_with("bench baseline ")).count() as u64;
    wait_all(sent.accepted, ours).await;
    let records = baseline.records();
    baseline.stop().await;
    Ok(measured(sent, "baseline", &records, None))
}

pub async fn run(env: &Env) -> Result<Latency> {
    let s = &env.sizes;
    let relay = RelayProc::start(env, "latency-relay", 2, &flood_flags(2 * s.latency_talks + 10_000)).await?;
    tracing::info!(talks = s.latency_talks, rate = s.latency_rate, "latency: app");
    let app = tried(app_case(env, &relay, &env.work, "latency-app").await);
    let baseline = if env.browser {
        tracing::info!("latency: baseline");
        Some(tried(browser_case(env, &relay).await))
    } else {
        None
    };
    // Diagnostic, not the measurement: the same run with the app's history on tmpfs, where
    // fsync costs nothing, to tell the disk's share of the tail from the rest.
    tracing::info!("latency: app with its history on tmpfs (diagnostic)");
    let tmpfs_dir = env.relay_db_dir.join(format!("talkbell-bench-{}-app", std::process::id()));
    let on_tmpfs = async {
        std::fs::create_dir_all(&tmpfs_dir)?;
        app_case(env, &relay, &tmpfs_dir, "latency-app-tmpfs").await
    };
    let app_on_tmpfs = tried(on_tmpfs.await);
    let _ = std::fs::remove_dir_all(&tmpfs_dir);
    if let Err(e) = &app {
        anyhow::bail!("the app's run failed: {e}");
    }
    Ok(Latency {
        talks: s.latency_talks,
        rate: s.latency_rate,
        connections: SENDER_CONNECTIONS,
        slow_ms: SLOW_MS,
        app,
        baseline,
        app_on_tmpfs,
        tmpfs_kind: talkbell_testkit::procfs::fs_type(&env.relay_db_dir),
    })
}
