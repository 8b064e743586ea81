//! The connection's state as the tray and the UI show it.

use std::time::UNIX_EPOCH;

use serde::Serialize;
use talkbell_core::session::SessionState;

use super::Shell;

/// One status for the status line, the tray icon and its menu.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    /// "connected", "connecting", "authenticating", "offline", "signed out", "stopped".
    pub state: &'static str,
    /// Why offline or signed out.
    pub detail: Option<String>,
    /// When the next attempt is due (ms since the epoch), while backing off.
    pub retry_at_ms: Option<u64>,
    pub user: Option<String>,
    pub server: Option<String>,
    pub unread: u64,
    pub paused: bool,
}

impl Status {
    pub fn of(shell: &Shell) -> Status {
        let engine = &shell.engine;
        let state = engine.session().state();
        let config = engine.config();
        let (detail, retry_at_ms, user) = match &state {
            SessionState::Backoff { reason, until, .. } => {
                (Some(reason.clone()), until.duration_since(UNIX_EPOCH).ok().map(|d| d.as_millis() as u64), None)
            }
            SessionState::SignedOut { reason } => (reason.clone(), None, None),
            SessionState::Connected { user: Some(p) } => (None, None, Some(p.name.clone())),
            _ => (None, None, None),
        };
        let unread = engine.history().unread_count(config.user_id.as_ref()).unwrap_or(0);
        let paused = engine.notifications().is_some_and(|n| n.stats_now().is_paused);
        Status {
            state: state.label(),
            detail,
            retry_at_ms,
            user: user.or_else(|| config.user_id.as_ref().map(|id| id.to_string())),
            server: config.server,
            unread,
            paused,
        }
    }

    /// The line a tooltip (and on Linux the tray menu's first item) shows.
    pub fn summary(&self) -> String {
        let mut line = format!("Talkbell: {}", self.state);
        if self.unread > 0 {
            line.push_str(&format!(" · {} unread", self.unread));
        }
        if self.paused {
            line.push_str(" · notifications paused");
        }
        line
    }
}
