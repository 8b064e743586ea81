//! The benchmarks, one module each, in the issue's numbering. Each measures and returns its
//! figures ([`Figures`]); `report` renders them.

pub mod burst;
pub mod cluster;
pub mod idle;
pub mod latency;
pub mod recovery;
pub mod relay_load;
pub mod start;

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use talkbell_testkit::child::Spawned;
use talkbell_testkit::desktop::{self, TRAYER_ARGS};
use talkbell_testkit::wait::Poll;

use crate::Env;

/// What one benchmark measured.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub enum Figures {
    Idle(idle::Idle),
    Latency(Box<latency::Latency>),
    Burst(burst::Bursts),
    Recovery(recovery::Recovery),
    Relay(relay_load::RelayLoad),
    Start(start::Start),
    Cluster(Box<cluster::Cluster>),
}

/// A part of a benchmark that may fail while the others are measured.
pub type Tried<T> = Result<T, String>;

pub fn tried<T>(r: Result<T>) -> Tried<T> {
    r.map_err(|e| format!("{e:#}"))
}

pub async fn run(name: &str, env: &Env) -> Result<Figures> {
    Ok(match name {
        "idle" => Figures::Idle(idle::run(env).await?),
        "latency" => Figures::Latency(Box::new(latency::run(env).await?)),
        "burst" => Figures::Burst(burst::run(env).await?),
        "recovery" => Figures::Recovery(recovery::run(env).await?),
        "relay" => Figures::Relay(relay_load::run(env).await?),
        "start" => Figures::Start(start::run(env).await?),
        "cluster" => Figures::Cluster(Box::new(cluster::run(env).await?)),
        _ => anyhow::bail!("unknown benchmark {name:?}"),
    })
}

/// A tray host (trayer, a plain XEmbed tray) while the tray app runs, as on a desktop,
/// once its panel is up; none when trayer is not installed.
pub async fn tray_host(env: &Env) -> Option<Spawned> {
    desktop::on_path("trayer")?;
    let log = env.work.join("trayer.log");
    let p = Spawned::spawn(Command::new("trayer").args(TRAYER_ARGS), "trayer", Some(&log)).ok()?;
    let panel = || desktop::x_window(r#"("panel" "trayer")"#);
    if Poll::up_to(Duration::from_secs(10)).every(Duration::from_millis(50)).check_async(panel).await.is_none() {
        tracing::warn!("trayer's panel did not show within 10 s");
    }
    Some(p)
}
