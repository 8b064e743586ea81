//! The engine's events, turned into the window's events and the connection log: the
//! session's states and happenings, and the notifier's decision for each talk.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use talkbell_core::notify::Decision;
use talkbell_core::protocol::Person;
use talkbell_core::session::outbox::Outgoing;
use talkbell_core::session::SessionEvent;
use talkbell_core::status::{event_line, log_line};
use tauri::{AppHandle, Emitter, Manager};
use tokio::sync::broadcast::error::RecvError;

use super::actions::refresh;
use super::state::Shell;
use super::state::{RecentTalk, RECENT_KEPT};
use super::tray;

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
    talkbell_core::status::ms_since_epoch(SystemTime::now())
}

/// A new talk as the window lists it (the fields of a history entry it reads).
#[derive(Clone, Debug, Serialize)]
pub struct LiveTalk {
    /// Its row in the history.
    id: i64,
    from: Person,
    to: Person,
    talk: String,
    server_ts: Option<i64>,
    /// When the shell heard of it (ms since the epoch), within moments of when it was
    /// stored.
    received_at: u64,
    read: bool,
    /// Addressed to the signed-in user (the window's "for me" shows it).
    for_me: bool,
}

impl LiveTalk {
    fn of(d: Decision) -> LiveTalk {
        LiveTalk {
            id: d.row,
            from: d.talk.from,
            to: d.talk.to,
            talk: d.talk.talk,
            server_ts: d.talk.ts,
            received_at: now_ms(),
            read: false,
            for_me: d.for_me,
        }
    }
}

/// Where a reply of the user's stands now, for the window.
#[derive(Clone, Debug, Serialize)]
struct ReplyChange {
    row: i64,
    outgoing: Outgoing,
}

/// Starts following the engine: the session's events, and the notifier's decisions.
pub fn spawn(app: AppHandle) {
    app.manage(EventLog::default());
    let (events, decisions, now) = {
        let engine = &app.state::<Shell>().engine;
        // And where the session already is (it started before this subscribed).
        (engine.session().subscribe(), engine.decisions(), engine.session().state())
    };
    app.state::<EventLog>().push(&app, log_line(&now));
    fill_recent(&app);
    tauri::async_runtime::spawn(follow_session(app.clone(), events));
    tauri::async_runtime::spawn(follow_decisions(app, decisions));
}

/// Recent starts with the last talks for the user in the history.
fn fill_recent(app: &AppHandle) {
    let shell = app.state::<Shell>();
    let Some(me) = shell.engine.session().user_id() else { return };
    let query = talkbell_core::history::HistoryQuery { limit: 100, ..Default::default() };
    let Ok(entries) = shell.engine.history().list(&query) else { return };
    let mine = entries.into_iter().filter(|e| e.outgoing.is_none() && e.to.id == me).take(RECENT_KEPT);
    let talks: Vec<RecentTalk> = mine.map(|e| RecentTalk { row: e.id, from: e.from, talk: e.talk }).collect();
    for talk in talks.iter().rev() {
        shell.add_recent(talk.clone());
    }
    tray::show_recent(app, &talks);
}

/// A new state is shown, and what the log shows of an event is logged.
async fn follow_session(app: AppHandle, mut events: tokio::sync::broadcast::Receiver<SessionEvent>) {
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
            // A reply of the user's changed where it stands: the window shows it.
            SessionEvent::Reply { row, outgoing } => {
                let _ = app.emit("talkbell://reply", ReplyChange { row: *row, outgoing: outgoing.clone() });
            }
            _ => {}
        }
        if let Some(text) = event_line(&event) {
            app.state::<EventLog>().push(&app, text);
        }
    }
}

/// Each talk reaches the window as the notifier's decision; one for the user goes into
/// Recent (the engine counts it as unread).
async fn follow_decisions(app: AppHandle, mut decisions: tokio::sync::broadcast::Receiver<Decision>) {
    let mut recent_changed = false;
    loop {
        let decision = match decisions.recv().await {
            Ok(decision) => decision,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        if decision.for_me {
            let talk =
                RecentTalk { row: decision.row, from: decision.talk.from.clone(), talk: decision.talk.talk.clone() };
            app.state::<Shell>().add_recent(talk);
            recent_changed = true;
        }
        // The menu is made anew once a burst has been read, not for each of its talks.
        if recent_changed && decisions.is_empty() {
            tray::show_recent(&app, &app.state::<Shell>().recent());
            recent_changed = false;
        }
        let _ = app.emit("talkbell://talk", &LiveTalk::of(decision));
    }
}
