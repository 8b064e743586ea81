//! The headless daemon: the engine with desktop popups and the sleep/network watch, until
//! SIGTERM or Ctrl-C. `talkbell daemon` runs it as the binary `talkbell-daemon` (built
//! from talkbell-core alone), so that the headless process does not load the GUI's
//! libraries (WebKitGTK, GTK and theirs) that the desktop app's binary is linked with.

pub mod logging;

use std::sync::Arc;

use anyhow::Result;
use talkbell_core::config::Paths;
use talkbell_core::engine::Engine;
use talkbell_core::notify::DesktopNotifier;

/// The name of the daemon's binary, which the desktop app's binary looks for beside itself.
pub const BINARY: &str = "talkbell-daemon";

/// Runs the daemon until a signal asks it to stop.
pub async fn run(paths: Paths) -> Result<()> {
    let notifier = Arc::new(DesktopNotifier::new());
    let engine = Engine::start(paths, Some(notifier)).await?;
    engine.watch_system();
    if engine.config().server.is_none() {
        tracing::warn!("no server configured: run `talkbell login --server URL` first");
    }
    wait_for_signal().await?;
    tracing::info!("shutting down");
    engine.shutdown().await;
    Ok(())
}

/// A tokio runtime sized for one socket: two workers, fewer threads, fewer wake-ups.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
