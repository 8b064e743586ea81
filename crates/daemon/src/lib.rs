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
pub mod handover;
mod platform;

use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use handover::Opening;
use talkbell_core::config::Paths;
use talkbell_core::engine::Engine;
use talkbell_core::i18n::{t, Msg};
use talkbell_core::instance::{InstanceLock, ProcessKind};
use talkbell_core::notify::{DesktopNotifier, PopupAction};
use talkbell_core::session::SessionHandle;
use tokio::sync::mpsc;

/// The name of the daemon's binary, which the desktop app's binary looks for beside itself.
pub const BINARY: &str = "talkbell-daemon";

/// What a person picked on a popup: the daemon marks read, mutes and sends a reply written
/// in the popup itself; "Open" and "Reply" need the tray app's window ([`handover`]):
/// where it opens.
fn on_popup(engine: &Engine, action: PopupAction) -> Option<Opening> {
    match engine.on_popup_action(action) {
        Ok(Some(PopupAction::Open(kind))) => Some(Opening::new(&kind, false)),
        Ok(Some(PopupAction::Reply(kind))) => Some(Opening::new(&kind, true)),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "the popup's action failed");
            None
        }
    }
}

/// Starts the tray app at `opening` in the daemon's place; whether it started (then the
/// daemon stops, handing it the profile). Without the app, the popup only closes.
fn hand_over(app: Option<&std::path::Path>, opening: Opening) -> bool {
    let Some(app) = app else {
        tracing::debug!("a popup was clicked; no tray app is installed to open");
        return false;
    };
    match handover::launch(app, opening) {
        Ok(()) => {
            tracing::info!(talk = ?opening.row, reply = opening.reply, "handing the profile over to the tray app");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, app = %app.display(), "cannot start the tray app");
            false
        }
    }
}

/// Runs the daemon until a signal asks it to stop. Holds the profile's lock all along
/// (taken before the engine opens the config or the history), and publishes the
/// session's state for `talkbell status`.
pub async fn run(paths: Paths) -> Result<()> {
    let lock_paths = paths.clone();
    let lock = tokio::task::spawn_blocking(move || InstanceLock::acquire(&lock_paths, ProcessKind::Daemon))
        .await
        .with_context(|| t(Msg::CliNoProfileLock))??;
    let (actions, mut picked) = mpsc::unbounded_channel();
    // Replies are written in the popup where the notification service has a field for
    // them; elsewhere Reply (and Open) start the tray app, if it is installed.
    let app = handover::app_binary();
    let session = Arc::new(OnceLock::<SessionHandle>::new());
    let replies = session.clone();
    let notifier = DesktopNotifier::new()
        .on_action(move |action| {
            // Gone only while shutting down.
            let _ = actions.send(action);
        })
        .offer_reply(move || replies.get().is_some_and(|s| s.watch().borrow().replies))
        .with_window(app.is_some());
    // Never waits for the keyring: locked or away, the daemon runs signed out with the
    // reason (logged once, and in `talkbell status`) and connects once it can read the token.
    let engine = Engine::start(paths, Some(Arc::new(notifier)))?;
    let _ = session.set(engine.session().clone());
    engine.publish_status(lock.holder());
    engine.watch_system();
    if engine.config().server.is_none() {
        tracing::warn!("no server configured: run `talkbell login --server URL` first");
    }
    let signal = platform::wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            stopped = &mut signal => break stopped?,
            Some(action) = picked.recv() => {
                if on_popup(&engine, action).is_some_and(|opening| hand_over(app.as_deref(), opening)) {
                    break;
                }
            }
        }
    }
    tracing::info!("shutting down");
    engine.shutdown().await;
    drop(lock);
    Ok(())
}
