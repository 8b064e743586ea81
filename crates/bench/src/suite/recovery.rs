//! Benchmark 4, Recovery: the relay SIGKILLed and started again on the same port 2 s later — the time
//! from its restart until the daemon is connected again; and a half-open link (the relay
//! SIGSTOPped) — the time until the daemon declares the link dead.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};

use crate::app::{self, AppHome, Mode, CONNECTED};
use crate::relay::RelayProc;
use crate::report::{table, Report};
use crate::stats::{secs_f, summarize};
use crate::Env;

const DOWN: Duration = Duration::from_secs(2);
/// The config's healthy_after for this benchmark (see the report).
const HEALTHY_AFTER_MS: u64 = 2_000;

fn since(later: SystemTime, earlier: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

pub async fn run(env: &Env, report: &mut Report) -> Result<()> {
    let mut relay = RelayProc::start(env, "recovery-relay", 2, &[]).await?;
    let home = AppHome::new(env, "recovery-app")?;
    home.login(&relay.ws_url(), relay.token(1))?;
    home.edit_config(|c| c.connection.healthy_after_ms = HEALTHY_AFTER_MS)?;
    let timing = talkbell_core::config::Config::load_or_create(&home.paths.config_file)?;
    let (interval, timeout) = (timing.heartbeat.interval_ms, timing.heartbeat.timeout_ms);
    let mut app = home.spawn(Mode::Daemon, None)?;
    let mut connects = 1;
    let mut last_up = app::wait_connected(&mut app, connects, Duration::from_secs(60)).await?;

    // Relay restarts.
    let mut back = Vec::new(); // from the relay listening again to connected
    let mut outage = Vec::new(); // from the kill to connected
    for round in 1..=env.sizes.recovery_rounds {
        // A link that has been up a while (healthy), as after a long quiet time.
        let up_for = SystemTime::now().duration_since(last_up).unwrap_or_default();
        let healthy = Duration::from_millis(HEALTHY_AFTER_MS + 1_000);
        if up_for < healthy {
            tokio::time::sleep(healthy - up_for).await;
        }
        let killed_at = SystemTime::now();
        relay.kill();
        tokio::time::sleep(DOWN).await;
        let listening = relay.spawn().await?;
        connects += 1;
        last_up = app::wait_connected(&mut app, connects, Duration::from_secs(120)).await?;
        back.push(since(last_up, listening));
        outage.push(since(last_up, killed_at));
        tracing::info!(round, back = %secs_f(*back.last().unwrap_or(&0.0)), "relay restart");
    }

    // Half-open: SIGSTOP.
    let mut dead = Vec::new();
    let mut after_thaw = Vec::new();
    let rounds = env.sizes.halfopen_rounds;
    for round in 1..=rounds {
        // Settle into the heartbeat's rhythm on a fresh link, then freeze at a different
        // point of its cycle each round (spread evenly over one interval).
        tokio::time::sleep(Duration::from_millis(interval + 1_500)).await;
        let phase = interval as f64 * (round as f64 - 0.5) / rounds as f64;
        tokio::time::sleep(Duration::from_millis(crate::stats::saturating_u64(phase))).await;
        let from = app.log.len();
        let frozen_at = SystemTime::now();
        relay.freeze()?;
        let dead_at = app.log.wait_for(from, "link dead", Duration::from_millis(interval + timeout + 30_000)).await;
        let thawed_at = SystemTime::now();
        relay.thaw()?;
        let dead_at = dead_at?;
        dead.push(since(dead_at, frozen_at));
        connects = app.log.count(CONNECTED) + 1;
        last_up = app::wait_connected(&mut app, connects, Duration::from_secs(120)).await?;
        after_thaw.push(since(last_up, thawed_at));
        tracing::info!(round, dead = %secs_f(*dead.last().unwrap_or(&0.0)), "half-open");
    }
    app.terminate(Duration::from_secs(10)).await;
    drop(relay);

    let Some(b) = summarize(&back) else { bail!("no restart measured") };
    let o = summarize(&outage).unwrap_or_default();
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
    let mut body = format!(
        "`talkbell daemon` with the default timings (heartbeat {interval} ms + {timeout} ms, reconnect \
         delay from 1 s doubling to 60 s with full jitter) except `healthy_after` set to {HEALTHY_AFTER_MS} ms, \
         and each round starts after the link has been up longer than that: every outage is then the \
         first after a healthy link, as when a relay restarts after hours of quiet (with the default \
         30 s, rounds this close together would keep growing the delay). The relay is SIGKILLed, \
         started again on the same port {} s later, and the time is taken from its \"listening\" log \
         line to the daemon's next `state=\"connected\"` line (both time-stamped by their processes).\n\n",
        DOWN.as_secs()
    );
    body.push_str(&table(
        &["", "rounds", "p50", "max", "min", "mean"],
        &[
            vec![
                "relay back → daemon connected".into(),
                b.n.to_string(),
                format!("**{}**", secs_f(b.p50)),
                secs_f(b.max),
                secs_f(b.min),
                secs_f(b.mean),
            ],
            vec![
                "relay killed → daemon connected (whole outage)".into(),
                o.n.to_string(),
                secs_f(o.p50),
                secs_f(o.max),
                secs_f(o.min),
                secs_f(o.mean),
            ],
        ],
    ));
    body.push_str(&format!("\nPer round (relay back → connected, s): {}.\n", list(&back)));
    if let Some(d) = summarize(&dead) {
        let bound = (interval + timeout) as f64 / 1000.0;
        body.push_str(&format!(
            "\n**Half-open link** (relay SIGSTOPped: its sockets stay open, nothing answers), {} round(s): \
             declared dead (the daemon's `link dead` line) after p50 {}, max {} from the SIGSTOP; the \
             bound is interval + timeout = {} after the last frame received, so anything from {} to {} \
             after the freeze, depending on where in the heartbeat's cycle it falls (each round freezes \
             at another point of it). Per round: {} s. \
             Connected again {} (max) after SIGCONT.\n",
            d.n,
            secs_f(d.p50),
            secs_f(d.max),
            secs_f(bound),
            secs_f(timeout as f64 / 1000.0),
            secs_f(bound),
            list(&dead),
            secs_f(summarize(&after_thaw).map(|s| s.max).unwrap_or(0.0)),
        ));
        if d.max > bound + 0.5 {
            body.push_str(&format!("\n**The half-open detection exceeded the {bound:.0} s bound.**\n"));
        }
    }
    report.target("recovery", "reconnect after the relay is back (p50)", "≤ 1.5 s", secs_f(b.p50), Some(b.p50 <= 1.5));
    if b.p50 > 1.5 {
        body.push_str(&format!(
            "\n**Missed: p50 {} to reconnect, above 1.5 s.** The daemon's reconnect attempts are paced by its \
             backoff (1 s, then a random delay up to 2 s, 4 s, …): when the relay comes back the daemon is \
             in the middle of a wait and only tries at its end.\n",
            secs_f(b.p50)
        ));
    }
    report.section("recovery", body);
    Ok(())
}
