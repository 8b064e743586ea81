//! Benchmark 1, Idle footprint: after N s (60) connected and idle, the PSS of every process
//! of the app (and of the browser baseline), the CPU time those N s took and the wake-ups.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use talkbell_testkit::procfs::{self, Mem};
use talkbell_testkit::wait::Poll;

use super::{tried, Tried};
use crate::app::{self, AppHome, Mode};
use crate::browser::Baseline;
use crate::relay::RelayProc;
use crate::Env;

#[derive(Serialize)]
pub struct Footprint {
    pub label: String,
    /// Process names, with counts.
    pub processes: String,
    pub mem: Mem,
    /// Highest PSS seen while idle.
    pub peak_pss_kib: u64,
    pub threads: usize,
    pub cpu_s: f64,
    pub wakeups_per_s: f64,
    /// WebKit processes seen while idle.
    pub webkit: Vec<String>,
    pub state_changes: usize,
    /// PSS by mapping, largest first (KiB).
    pub breakdown: Vec<(String, u64)>,
}

#[derive(Serialize)]
pub struct Idle {
    pub secs: u64,
    /// By case: "tray", "window", "daemon", "browser".
    pub cases: Vec<(String, Tried<Footprint>)>,
}

impl Idle {
    pub fn get(&self, key: &str) -> Option<&Footprint> {
        self.cases.iter().find(|(k, _)| k == key).and_then(|(_, r)| r.as_ref().ok())
    }
}

fn process_names(pids: &[u32]) -> String {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for &p in pids {
        *names.entry(procfs::comm(p).unwrap_or_else(|| "?".into())).or_default() += 1;
    }
    names.into_iter().map(|(n, c)| if c > 1 { format!("{c}× {n}") } else { n }).collect::<Vec<_>>().join(", ")
}

/// Watches `pids()` for `secs` seconds from now: CPU and wake-ups over the period, memory
/// at its end, peak PSS and the processes sampled every second.
async fn watch(label: &str, secs: u64, pids: impl Fn() -> Vec<u32>) -> Footprint {
    let start_pids = pids();
    let mut seen: BTreeSet<String> = start_pids.iter().filter_map(|&p| procfs::comm(p)).collect();
    let before = procfs::activity(&start_pids);
    let started = Instant::now();
    let period = Duration::from_secs(secs);
    let mut peak = 0;
    while started.elapsed() < period {
        let left = period.saturating_sub(started.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        if left > Duration::from_millis(1500) {
            let now = pids();
            seen.extend(now.iter().filter_map(|&p| procfs::comm(p)));
            peak = peak.max(procfs::mem_total(&now).pss_kib);
        }
    }
    let end = pids();
    seen.extend(end.iter().filter_map(|&p| procfs::comm(p)));
    let (cpu_s, switches) = procfs::activity_delta(&before, &procfs::activity(&end));
    let mem = procfs::mem_total(&end);
    Footprint {
        label: label.to_owned(),
        processes: process_names(&end),
        mem,
        peak_pss_kib: peak.max(mem.pss_kib),
        threads: end.iter().map(|&p| procfs::threads(p)).sum(),
        cpu_s,
        wakeups_per_s: switches as f64 / started.elapsed().as_secs_f64(),
        webkit: seen.iter().filter(|c| c.starts_with("WebKit")).cloned().collect(),
        state_changes: 0,
        breakdown: procfs::pss_by_mapping(&end),
    }
}

async fn app_case(env: &Env, home: &AppHome, mode: Mode) -> Result<Footprint> {
    let _tray = if mode == Mode::Daemon { None } else { super::tray_host(env).await };
    let mut app = home.spawn(mode, None)?;
    app::wait_connected(&mut app, 1, Duration::from_secs(60)).await?;
    if mode == Mode::Window {
        // The window is up once its web process is.
        let web = || app.tree().iter().any(|&p| procfs::comm(p).is_some_and(|c| c.starts_with("WebKitWeb")));
        let poll = Poll::up_to(Duration::from_secs(30)).every(Duration::from_millis(50));
        let up = poll.check_async(|| web().then_some(())).await;
        anyhow::ensure!(up.is_some(), "the window's web process did not start within 30 s");
    }
    let lines_before = app.log.len();
    let pid = app.pid;
    let mut fp = watch(mode.label(), env.sizes.idle_secs, || procfs::tree(pid)).await;
    fp.state_changes = app.log.times_from(lines_before, "session state=").len();
    app.terminate(Duration::from_secs(5));
    Ok(fp)
}

async fn browser_case(env: &Env, relay: &RelayProc) -> Result<Footprint> {
    let baseline = Baseline::start(&relay.ws_url(), relay.token(1), 1).await?;
    let label = "browser baseline (headless Chromium on bench/baseline.html)";
    let mut fp = watch(label, env.sizes.idle_secs, || baseline.pids()).await;
    fp.breakdown.clear();
    baseline.stop().await;
    Ok(fp)
}

pub async fn run(env: &Env) -> Result<Idle> {
    let relay = RelayProc::start(env, "idle-relay", 2, &[]).await?;
    let home = AppHome::new(env, &env.work, "idle-app")?;
    home.login(&relay.ws_url(), relay.token(1))?;
    let mut cases = Vec::new();
    for (key, mode) in [("tray", Mode::Tray), ("window", Mode::Window), ("daemon", Mode::Daemon)] {
        tracing::info!(case = key, secs = env.sizes.idle_secs, "idle footprint");
        cases.push((key.to_owned(), tried(app_case(env, &home, mode).await)));
    }
    if env.browser {
        tracing::info!(case = "browser", secs = env.sizes.idle_secs, "idle footprint");
        cases.push(("browser".to_owned(), tried(browser_case(env, &relay).await)));
    }
    let errors: Vec<String> = cases.iter().filter_map(|(k, r)| r.as_ref().err().map(|e| format!("{k}: {e}"))).collect();
    anyhow::ensure!(errors.len() < cases.len(), "every case failed: {}", errors.join("; "));
    Ok(Idle { secs: env.sizes.idle_secs, cases })
}
