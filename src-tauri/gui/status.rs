//! The connection's state as the tray and the UI show it.

use std::time::UNIX_EPOCH;

use serde::Serialize;
use talkbell_core::session::SessionState;
use talkbell_core::status::ReasonKind;

use super::Shell;

/// One status for the status line, the tray icon and its menu.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    /// "connected", "connecting", "authenticating", "offline", "signed out", "stopped".
    pub state: &'static str,
    /// Why offline or signed out.
    pub detail: Option<String>,
    /// Offline because of the server's certificate: a person must act, so the tray's
    /// first line says why too.
    pub certificate_problem: bool,
    /// Why signed out (`keyring-locked`, `server-refused`, ...), as `talkbell status
    /// --json` says it; null in other states or when nobody signed in.
    pub reason_kind: Option<ReasonKind>,
    /// Signed out because the token cannot be read from the keyring (locked, away): the
    /// tray's first line says why, as a person must act (it connects by itself after).
    pub keyring_problem: bool,
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
            SessionState::Backoff { reason, until, .. } => (
                Some(reason.to_string()),
                until.duration_since(UNIX_EPOCH).ok().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                None,
            ),
            SessionState::SignedOut { reason } => (reason.as_ref().map(|r| r.to_string()), None, None),
            SessionState::Connected { user: Some(p) } => (None, None, Some(p.name.clone())),
            _ => (None, None, None),
        };
        let certificate_problem = matches!(&state, SessionState::Backoff { reason, .. } if reason.is_certificate());
        let reason_kind = ReasonKind::of_state(&state);
        // Reading it at start takes a moment and needs nobody.
        let keyring_problem = state.waiting_for_keyring() && reason_kind != Some(ReasonKind::ReadingKeyring);
        // The session owns who the user is.
        let user_id = engine.session().user_id();
        let unread = engine.history().unread_count(user_id.as_ref()).unwrap_or(0);
        let paused = engine.notifications().is_some_and(|n| n.stats_now().is_paused);
        Status {
            state: state.label(),
            detail,
            certificate_problem,
            reason_kind,
            keyring_problem,
            retry_at_ms,
            user: user.or_else(|| user_id.as_ref().map(|id| id.to_string())),
            server: config.server,
            unread,
            paused,
        }
    }

    /// The line a tooltip (and on Linux the tray menu's first item) shows.
    pub fn summary(&self) -> String {
        let mut line = format!("Talkbell: {}", self.state);
        if let Some(detail) = self.detail.as_ref().filter(|_| self.certificate_problem || self.keyring_problem) {
            line.push_str(&format!(" · {detail}"));
        }
        if self.unread > 0 {
            line.push_str(&format!(" · {} unread", self.unread));
        }
        if self.paused {
            line.push_str(" · notifications paused");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline(detail: &str, certificate_problem: bool) -> Status {
        Status {
            state: "offline",
            detail: Some(detail.into()),
            certificate_problem,
            reason_kind: None,
            keyring_problem: false,
            retry_at_ms: None,
            user: None,
            server: None,
            unread: 2,
            paused: false,
        }
    }

    #[test]
    fn the_first_line_names_a_certificate_problem_and_no_other_reason() {
        let cert = offline("the server's certificate has expired", true);
        assert_eq!(cert.summary(), "Talkbell: offline · the server's certificate has expired · 2 unread");
        let refused = offline("the server 127.0.0.1:1 refused the connection", false);
        assert_eq!(refused.summary(), "Talkbell: offline · 2 unread");
    }

    #[test]
    fn the_first_line_names_a_locked_keyring() {
        let locked = Status {
            state: "signed out",
            detail: Some("the keyring is locked: unlock it to connect".into()),
            reason_kind: Some(ReasonKind::KeyringLocked),
            keyring_problem: true,
            ..offline("", false)
        };
        assert_eq!(locked.summary(), "Talkbell: signed out · the keyring is locked: unlock it to connect · 2 unread");
        let refused = Status { reason_kind: Some(ReasonKind::ServerRefused), keyring_problem: false, ..locked };
        assert_eq!(refused.summary(), "Talkbell: signed out · 2 unread");
    }
}
