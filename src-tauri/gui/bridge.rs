//! The session's events, turned into the tray's picture and events for the window.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use talkbell_core::session::SessionEvent;
use talkbell_core::status::{event_line, log_line};
use tauri::{AppHandle, Emitter, Manager};
use tokio::sync::broadcast::error::RecvError;

use super::status::Status;
use super::{tray, Shell};

/// A line of the window's connection log.
#[derive(Clone, Serialize)]
pub struct LogLine {
    at_ms: u64,
    text: String,
}

/// The connection log's latest lines, kept here rather than in the page: the window
/// comes and goes, and shows what happened while it was closed.
#[derive(Default)]
pub struct EventLog(Mutex<VecDeque<LogLine>>);

impl EventLog {
    const KEEP: usize = 500;

    fn push(&self, app: &AppHandle, text: String) {
        let line = LogLine { at_ms: now_ms(), text };
        let _ = app.emit("talkbell://log", &line);
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == Self::KEEP {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// Oldest first.
    pub fn lines(&self) -> Vec<LogLine> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the user asks of notifications, from the tray or the window.
pub enum PauseChange {
    For(std::time::Duration),
    UntilResumed,
    Resume,
}

/// Applies `change`, and shows the new status once the notifier has taken it (it runs as
/// a task of its own, so reading its state at once would show the old one).
pub async fn change_pause(app: &AppHandle, change: PauseChange) {
    if let Some(n) = app.state::<Shell>().engine.notifications() {
        match change {
            PauseChange::For(d) => n.pause(Some(d)),
            PauseChange::UntilResumed => n.pause(None),
            PauseChange::Resume => n.resume(),
        }
        n.stats().await;
    }
    refresh(app);
}

/// Re-reads the status and shows it on the tray and in the window. The status reads the
/// history (the unread count), so this runs on a blocking thread, never on the caller's
/// (the main thread or an async worker); one at a time, so that the last one shown is
/// the latest.
pub fn refresh(app: &AppHandle) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let app = app.clone();
    tauri::async_runtime::spawn_blocking(move || {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let status = Status::of(&app.state::<Shell>());
        tray::update(&app, &status);
        let _ = app.emit("talkbell://status", &status);
    });
}

pub fn spawn(app: AppHandle) {
    app.manage(EventLog::default());
    let mut events = app.state::<Shell>().engine.session().subscribe();
    // Where the session already is (it started before this subscribed).
    let now = app.state::<Shell>().engine.session().state();
    app.state::<EventLog>().push(&app, log_line(&now));
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
            match &event {
                SessionEvent::State(_) => refresh(&app),
                SessionEvent::Talk { row, .. } => {
                    let (reader, row) = (app.clone(), *row);
                    let entry =
                        tauri::async_runtime::spawn_blocking(move || reader.state::<Shell>().engine.history().get(row))
                            .await;
                    if let Ok(Ok(Some(entry))) = entry {
                        let _ = app.emit("talkbell://talk", &entry);
                    }
                    refresh(&app);
                }
                _ => {}
            }
            let log = event_line(&event);
            if let Some(text) = log {
                app.state::<EventLog>().push(&app, text);
            }
        }
    });
}
