//! Benchmark 6, Start: from process start (just before the spawn) to the app's first
//! `state="connected"` log line, for `talkbell --hidden` and `talkbell daemon`.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::app::{self, AppHome, Mode};
use crate::relay::RelayProc;
use crate::report::{table, Report};
use crate::stats::{ms, summarize};
use crate::Env;

pub async fn run(env: &Env, report: &mut Report) -> Result<()> {
    let relay = RelayProc::start(env, "start-relay", 2, &[]).await?;
    let home = AppHome::new(env, "start-app")?;
    home.login(&relay.ws_url(), relay.token(1))?;
    let runs = env.sizes.start_runs;
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for mode in [Mode::Tray, Mode::Daemon] {
        let _tray = if mode == Mode::Tray { super::tray_host(env).await } else { None };
        let mut times = Vec::new();
        let mut stops = Vec::new();
        for run in 1..=runs {
            let mut app = home.spawn(mode, None)?;
            let up = app::wait_connected(&mut app, 1, Duration::from_secs(60)).await?;
            let took = up.duration_since(app.spawned_at).unwrap_or_default();
            times.push(took.as_secs_f64() * 1e3);
            tracing::info!(?mode, run, took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX), "start");
            stops.push(app.terminate(Duration::from_secs(10)).await.as_secs_f64() * 1e3);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let Some(s) = summarize(&times) else { bail!("no run") };
        rows.push(vec![
            mode.label().to_owned(),
            s.n.to_string(),
            format!("**{}**", ms(s.p50)),
            ms(s.max),
            ms(s.min),
            times.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(", "),
        ]);
        all.push((mode, s, summarize(&stops)));
    }
    drop(relay);
    let mut body = format!(
        "From just before the process is spawned to its first `state=\"connected\"` log line (time-stamped \
         by the app), {runs} runs each, one after the other, signed in (the token read from the keyring \
         at each start), against a local relay. The tray runs with trayer as its tray host, without a \
         window. Page cache warm (the binaries ran before).\n\n"
    );
    body.push_str(&table(&["mode", "runs", "p50", "max", "min", "each run (ms)"], &rows));
    for (mode, _, stop) in &all {
        if let Some(stop) = stop {
            body.push_str(&format!("\n- {}: SIGTERM → exited, p50 {}.", mode.label(), ms(stop.p50)));
        }
    }
    body.push('\n');
    report.section("start", body);
    Ok(())
}
