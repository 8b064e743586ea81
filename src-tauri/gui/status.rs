//! The connection's state as the tray and the window show it: the typed state and the
//! words talkbell-core's renderer made of it ([`talkbell_core::status::describe`]).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use talkbell_core::session::{Identity, SessionState};
use talkbell_core::status::{describe, Description, Facts, ReasonKind, StateKind};

use super::state::Shell;

/// One status for the status line, the tray icon and its menu.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    /// `connected`, `connecting`, `authenticating`, `offline`, `signed-out`, `stopped`:
    /// the names of `talkbell status --json`.
    pub state: StateKind,
    /// Why signed out (`keyring-locked`, `server-refused`, ...), as `talkbell status
    /// --json` says it; null in other states or when nobody signed in.
    pub reason_kind: Option<ReasonKind>,
    /// Signed out, and only signing in (again) helps: the window opens at the sign-in form.
    pub needs_sign_in: bool,
    /// When the next attempt is due (ms since the epoch), while backing off.
    pub retry_at_ms: Option<u64>,
    pub user: Option<String>,
    pub server: Option<String>,
    pub unread: u64,
    pub paused: bool,
    /// The server takes replies (its welcome listed `send`): the window offers Reply.
    pub replies: bool,
    /// Connected to a server that sends no welcome, so does not say who the user is: the
    /// window asks for the user id (and shows the one given, if any). Never on a server
    /// whose welcome names the user.
    pub asks_user_id: bool,
    /// What the window and the tray say, rendered at the time of this status.
    pub words: Description,
}

impl Status {
    pub fn of(shell: &Shell) -> Status {
        let engine = &shell.engine;
        let state = engine.session().state();
        let config = engine.config();
        let unread = *engine.unread().borrow();
        let paused = engine.notifications().is_some_and(|n| n.stats_now().is_paused);
        let user = match &state {
            SessionState::Connected { user: Identity::Welcomed(p) } => Some(p.name.clone()),
            // The session owns who the user is.
            _ => engine.session().user_id().map(|id| id.to_string()),
        };
        let mut status = Status::assemble(&state, user, config.server, unread, paused, SystemTime::now());
        status.replies = engine.session().watch().borrow().replies;
        status
    }

    /// The status of `state`, with the words for it at `now`.
    fn assemble(
        state: &SessionState,
        user: Option<String>,
        server: Option<String>,
        unread: u64,
        paused: bool,
        now: SystemTime,
    ) -> Status {
        let reason = talkbell_core::status::reason_of(state);
        let retry_at_ms = match state {
            SessionState::Backoff { until, .. } => {
                until.duration_since(UNIX_EPOCH).ok().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }
            _ => None,
        };
        let facts = Facts {
            state: StateKind::of(state),
            reason: reason.as_deref(),
            reason_kind: ReasonKind::of_state(state),
            certificate_problem: matches!(state, SessionState::Backoff { reason, .. } if reason.is_certificate()),
            retry_at_ms,
            user: user.as_deref(),
            user_unknown: matches!(state, SessionState::Connected { user: Identity::Unknown }),
            unread,
            paused,
        };
        Status {
            state: facts.state,
            reason_kind: facts.reason_kind,
            needs_sign_in: facts.needs_sign_in(),
            retry_at_ms,
            words: describe(&facts, now),
            user,
            server,
            unread,
            paused,
            replies: false,
            asks_user_id: matches!(state, SessionState::Connected { user: Identity::Given(_) | Identity::Unknown }),
        }
    }
}

#[cfg(test)]
mod tests {
    use talkbell_core::session::SignedOutReason;

    use super::*;

    #[test]
    fn the_window_gets_the_typed_state_and_the_words_for_it() {
        let locked = SessionState::SignedOut { reason: Some(SignedOutReason::KeyringLocked) };
        let status = Status::assemble(&locked, Some("1".into()), None, 2, false, SystemTime::now());
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "signed-out");
        assert_eq!(json["reason_kind"], "keyring-locked");
        assert_eq!(json["needs_sign_in"], false);
        assert_eq!(json["words"]["headline"], "Waiting for the keyring · 2 unread");
        assert_eq!(
            json["words"]["tray"],
            format!("Talkbell: signed out · {} · 2 unread", SignedOutReason::KeyringLocked)
        );
        let out = Status::assemble(&SessionState::SignedOut { reason: None }, None, None, 0, true, SystemTime::now());
        assert!(out.needs_sign_in);
        assert_eq!(out.words.headline, "Signed out · notifications paused");
        assert!(!out.asks_user_id);
        // A server without a welcome: the window asks who the user is, until it knows.
        let unknown = SessionState::Connected { user: Identity::Unknown };
        let asked = Status::assemble(&unknown, None, None, 0, false, SystemTime::now());
        assert!(asked.asks_user_id);
        assert_eq!(asked.words.headline, "Connected · this server doesn't say who you are");
        let given = SessionState::Connected { user: Identity::Given(7.into()) };
        let told = Status::assemble(&given, Some("7".into()), None, 0, false, SystemTime::now());
        assert!(told.asks_user_id);
        assert_eq!(told.words.headline, "Connected as 7");
        let welcomed = SessionState::Connected {
            user: Identity::Welcomed(talkbell_core::protocol::Person { id: 1.into(), name: "wang1".into() }),
        };
        let named = Status::assemble(&welcomed, Some("wang1".into()), None, 0, false, SystemTime::now());
        assert!(!named.asks_user_id);
    }
}
