//! The headless daemon: the engine with desktop popups and the sleep/network watch, until
//! SIGTERM or Ctrl-C. `talkbell daemon` runs it as the binary `talkbell-daemon` (built
//! from talkbell-core alone), so that the headless process does not load the GUI's
//! libraries (WebKitGTK, GTK and theirs) that the desktop app's binary is linked with.

// The lints of a network client: no unwrap/expect outside tests, no cast that can
// truncate a number or change its sign (a seq, a size). Tests are other crates, or cfg(test).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_possible_wrap
    )
)]

pub mod cli;
mod platform;

use std::sync::Arc;

use anyhow::{Context, Result};
use talkbell_core::config::Paths;
use talkbell_core::engine::Engine;
use talkbell_core::i18n::{t, Msg};
use talkbell_core::instance::{InstanceLock, ProcessKind};
use talkbell_core::notify::DesktopNotifier;
use talkbell_core::status;

/// The name of the daemon's binary, which the desktop app's binary looks for beside itself.
pub const BINARY: &str = "talkbell-daemon";

/// Runs the daemon until a signal asks it to stop. Holds the profile's lock all along
/// (taken before the engine opens the config or the history), and publishes the
/// session's state for `talkbell status`.
pub async fn run(paths: Paths) -> Result<()> {
    let lock_paths = paths.clone();
    let lock = tokio::task::spawn_blocking(move || InstanceLock::acquire(&lock_paths, ProcessKind::Daemon))
        .await
        .with_context(|| t(Msg::CliNoProfileLock))??;
    let notifier = Arc::new(DesktopNotifier::new());
    // Never waits for the keyring: locked or away, the daemon runs signed out with the
    // reason (logged once, and in `talkbell status`) and connects once it can read the token.
    let engine = Engine::start(paths, Some(notifier))?;
    status::spawn_publisher(engine.session(), engine.paths(), lock.holder());
    engine.watch_system();
    if engine.config().server.is_none() {
        tracing::warn!("no server configured: run `talkbell login --server URL` first");
    }
    platform::wait_for_signal().await?;
    tracing::info!("shutting down");
    engine.shutdown().await;
    drop(lock);
    Ok(())
}
