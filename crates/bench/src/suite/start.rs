//! Benchmark 6, Start: from process start (just before the spawn) to the app's first
//! `state="connected"` log line, for `talkbell --hidden` and `talkbell daemon`.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::app::{self, AppHome, Mode};
use crate::relay::RelayProc;
use crate::Env;

#[derive(Serialize)]
pub struct Starts {
    pub mode: Mode,
    /// Spawn → connected, per run (ms).
    pub start_ms: Vec<f64>,
    /// SIGTERM → exited, per run (ms).
    pub stop_ms: Vec<f64>,
}

#[derive(Serialize)]
pub struct Start {
    pub runs: usize,
    pub modes: Vec<Starts>,
}

pub async fn run(env: &Env) -> Result<Start> {
    let relay = RelayProc::start(env, "start-relay", 2, &[]).await?;
    let home = AppHome::new(env, &env.work, "start-app")?;
    home.login(&relay.ws_url(), relay.token(1))?;
    let runs = env.sizes.start_runs;
    let mut modes = Vec::new();
    for mode in [Mode::Tray, Mode::Daemon] {
        let _tray = if mode == Mode::Tray { super::tray_host(env).await } else { None };
        let mut s = Starts { mode, start_ms: Vec::new(), stop_ms: Vec::new() };
        for run in 1..=runs {
            let mut app = home.spawn(mode, None)?;
            let up = app::wait_connected(&mut app, 1, Duration::from_secs(60)).await?;
            let took = up.duration_since(app.spawned_at).unwrap_or_default();
            s.start_ms.push(took.as_secs_f64() * 1e3);
            tracing::info!(?mode, run, took_ms = took.as_secs_f64() * 1e3, "start");
            s.stop_ms.push(app.terminate(Duration::from_secs(10)).took.as_secs_f64() * 1e3);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        modes.push(s);
    }
    Ok(Start { runs, modes })
}
