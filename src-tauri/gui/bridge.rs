//! The session's events, turned into the tray's picture and events for the window.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use talkbell_core::session::SessionEvent;
use tauri::{AppHandle, Emitter, Manager};
use tokio::sync::broadcast::error::RecvError;

use super::status::Status;
use super::{tray, Shell};

/// A line of the window's connection log.
#[derive(Clone, Serialize)]
struct LogLine {
    at_ms: u64,
    text: String,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Re-reads the status and shows it on the tray and in the window.
pub fn refresh(app: &AppHandle) {
    let status = Status::of(&app.state::<Shell>());
    tray::update(app, &status);
    let _ = app.emit("talkbell://status", &status);
}

pub fn spawn(app: AppHandle) {
    let mut events = app.state::<Shell>().engine.session().subscribe();
    tauri::async_runtime::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(_)) => {
                    refresh(&app);
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let log = match &event {
                SessionEvent::State(state) => {
                    refresh(&app);
                    Some(match state {
                        talkbell_core::session::SessionState::Backoff { reason, delay, .. } => {
                            format!("offline ({reason}); next attempt in {:.1} s", delay.as_secs_f64())
                        }
                        talkbell_core::session::SessionState::SignedOut { reason: Some(r) } => {
                            format!("signed out: {r}")
                        }
                        other => other.label().to_owned(),
                    })
                }
                SessionEvent::Talk { row, .. } => {
                    if let Ok(Some(entry)) = app.state::<Shell>().engine.history().get(*row) {
                        let _ = app.emit("talkbell://talk", &entry);
                    }
                    refresh(&app);
                    None
                }
                SessionEvent::Dropped { error } => Some(format!("dropped a frame: {error}")),
                SessionEvent::Oversized { size, limit } => {
                    Some(format!("refused a message of {size} bytes (limit {limit}); reconnecting"))
                }
                SessionEvent::StoreFailed { error } => Some(format!("could not store a talk: {error}")),
                SessionEvent::Welcome { user } => Some(format!("signed in as {}", user.name)),
                SessionEvent::Duplicate { .. } => None,
            };
            if let Some(text) = log {
                let _ = app.emit("talkbell://log", LogLine { at_ms: now_ms(), text });
            }
        }
    });
}
