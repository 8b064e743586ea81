//! Benchmark 4, Recovery: the relay SIGKILLed and started again on the same port 2 s later
//! — the time from its restart until the daemon is connected again; and a half-open link
//! (the relay SIGSTOPped) — the time until the daemon declares the link dead.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use serde::Serialize;
use talkbell_testkit::wait::Poll;

use crate::app::{self, AppHome, Mode, CONNECTED};
use crate::relay::RelayProc;
use crate::Env;

pub const DOWN: Duration = Duration::from_secs(2);
/// The config's healthy_after for this benchmark (see the report).
pub const HEALTHY_AFTER_MS: u64 = 2_000;

#[derive(Default, Serialize)]
pub struct Recovery {
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub healthy_after_ms: u64,
    pub down_s: u64,
    /// Per restart: from the relay listening again to connected (s).
    pub back_s: Vec<f64>,
    /// Per restart: from the kill to connected (s).
    pub outage_s: Vec<f64>,
    /// Per half-open round: from the SIGSTOP to the daemon's `link dead` line (s).
    pub dead_s: Vec<f64>,
    /// Per half-open round: from the SIGCONT to connected again (s).
    pub after_thaw_s: Vec<f64>,
}

fn since(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

pub async fn run(env: &Env) -> Result<Recovery> {
    let mut relay = RelayProc::start(env, "recovery-relay", 2, &[]).await?;
    let home = AppHome::new(env, &env.work, "recovery-app")?;
    home.login(&relay.ws_url(), relay.token(1))?;
    let config = home.edit_config(|c| c.connection.healthy_after_ms = HEALTHY_AFTER_MS)?;
    let (interval, timeout) = (config.heartbeat.interval_ms, config.heartbeat.timeout_ms);
    let mut app = home.spawn(Mode::Daemon, None)?;
    let mut connects = 1;
    let mut last_up = app::wait_connected(&mut app, connects, Duration::from_secs(60)).await?;
    let mut r = Recovery {
        heartbeat_interval_ms: interval,
        heartbeat_timeout_ms: timeout,
        healthy_after_ms: HEALTHY_AFTER_MS,
        down_s: DOWN.as_secs(),
        ..Recovery::default()
    };

    for round in 1..=env.sizes.recovery_rounds {
        // A link that has been up a while (healthy), as after a long quiet time.
        let up_for = SystemTime::now().duration_since(last_up).unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(HEALTHY_AFTER_MS + 1_000).saturating_sub(up_for)).await;
        let killed_at = SystemTime::now();
        relay.kill();
        tokio::time::sleep(DOWN).await;
        let listening = relay.spawn().await?;
        connects += 1;
        last_up = app::wait_connected(&mut app, connects, Duration::from_secs(120)).await?;
        r.back_s.push(since(last_up, listening));
        r.outage_s.push(since(last_up, killed_at));
        tracing::info!(round, back_s = since(last_up, listening), "relay restart");
    }

    let rounds = env.sizes.halfopen_rounds;
    for round in 1..=rounds {
        // Settle into the heartbeat's rhythm on a fresh link, then freeze at a different
        // point of its cycle each round (spread evenly over one interval).
        tokio::time::sleep(Duration::from_millis(interval + 1_500)).await;
        let phase = interval as f64 * (round as f64 - 0.5) / rounds as f64;
        tokio::time::sleep(Duration::from_millis(crate::stats::saturating_u64(phase))).await;
        let from = app.log.len();
        let frozen_at = SystemTime::now();
        relay.signal(libc::SIGSTOP)?;
        let dead = || app.log.times_from(from, "link dead").first().copied();
        let bound = Duration::from_millis(interval + timeout + 30_000);
        let dead_at = Poll::up_to(bound).every(Duration::from_millis(5)).check_async(dead).await;
        let thawed_at = SystemTime::now();
        relay.signal(libc::SIGCONT)?;
        let dead_at = dead_at.ok_or_else(|| anyhow::anyhow!("no \"link dead\" within {bound:?}"))?;
        r.dead_s.push(since(dead_at, frozen_at));
        connects = app.log.count(CONNECTED) + 1;
        last_up = app::wait_connected(&mut app, connects, Duration::from_secs(120)).await?;
        r.after_thaw_s.push(since(last_up, thawed_at));
        tracing::info!(round, dead_s = since(dead_at, frozen_at), "half-open");
    }
    app.terminate(Duration::from_secs(10));
    anyhow::ensure!(!r.back_s.is_empty(), "no restart measured");
    Ok(r)
}
