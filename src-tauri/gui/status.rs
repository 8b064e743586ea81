//! The connection's state as the tray and the window show it: the typed state and the
//! words talkbell-core's renderer made of it ([`talkbell_core::status::describe`]).

use std::time::SystemTime;

use serde::Serialize;
use talkbell_core::session::{Identity, SessionNow, SessionState};
use talkbell_core::status::{describe, reason_of, Description, Facts, ReasonKind, StateKind};

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
    /// Who the session says the user is, connected or not.
    pub user_id: Option<String>,
    /// Their name, as the server's welcome gave it (connected to a server that sends one).
    pub user_name: Option<String>,
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
    /// The status now: the session's state, user and replies from one of its snapshots,
    /// the engine's unread count, the gate's pause.
    pub fn of(shell: &Shell) -> Status {
        let engine = &shell.engine;
        let session = engine.session().watch().borrow().clone();
        let unread = *engine.unread().borrow();
        let paused = engine.notifications().is_some_and(|n| n.stats_now().is_paused);
        Status::assemble(&session, engine.config().server, unread, paused, SystemTime::now())
    }

    /// The status of `session`, with the words for it at `now`.
    fn assemble(session: &SessionNow, server: Option<String>, unread: u64, paused: bool, now: SystemTime) -> Status {
        let state = &session.state;
        let reason = reason_of(state);
        let user_id = session.user.as_ref().map(ToString::to_string);
        let user_name = match state {
            SessionState::Connected { user } => user.welcomed().map(|p| p.name.clone()),
            _ => None,
        };
        let facts = Facts {
            reason: reason.as_deref(),
            user: user_name.as_deref().or(user_id.as_deref()),
            unread,
            paused,
            ..Facts::of_state(state)
        };
        Status {
            state: facts.state,
            reason_kind: facts.reason_kind,
            needs_sign_in: facts.needs_sign_in(),
            retry_at_ms: facts.retry_at_ms,
            words: describe(&facts, now),
            user_id,
            user_name,
            server,
            unread,
            paused,
            replies: session.replies,
            asks_user_id: matches!(state, SessionState::Connected { user: Identity::Given(_) | Identity::Unknown }),
        }
    }
}

#[cfg(test)]
mod tests {
    use talkbell_core::protocol::{Person, UserId};
    use talkbell_core::session::SignedOutReason;

    use super::*;

    fn at(state: SessionState, user: Option<u64>) -> SessionNow {
        SessionNow { state, user: user.map(UserId::from), replies: false }
    }

    #[test]
    fn the_window_gets_the_typed_state_and_the_words_for_it() {
        let locked = at(SessionState::SignedOut { reason: Some(SignedOutReason::KeyringLocked) }, Some(1));
        let status = Status::assemble(&locked, None, 2, false, SystemTime::now());
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "signed-out");
        assert_eq!(json["reason_kind"], "keyring-locked");
        assert_eq!(json["needs_sign_in"], false);
        assert_eq!((&json["user_id"], &json["user_name"]), (&serde_json::json!("1"), &serde_json::Value::Null));
        assert_eq!(json["words"]["headline"], "Waiting for the keyring · 2 unread");
        assert_eq!(
            json["words"]["tray"],
            format!("Talkbell: signed out · {} · 2 unread", SignedOutReason::KeyringLocked)
        );
        let out =
            Status::assemble(&at(SessionState::SignedOut { reason: None }, None), None, 0, true, SystemTime::now());
        assert!(out.needs_sign_in);
        assert_eq!(out.words.headline, "Signed out · notifications paused");
        assert!(!out.asks_user_id);
        // A server without a welcome: the window asks who the user is, until it knows.
        let unknown = at(SessionState::Connected { user: Identity::Unknown }, None);
        let asked = Status::assemble(&unknown, None, 0, false, SystemTime::now());
        assert!(asked.asks_user_id);
        assert_eq!(asked.words.headline, "Connected · this server doesn't say who you are");
        let given = at(SessionState::Connected { user: Identity::Given(7.into()) }, Some(7));
        let told = Status::assemble(&given, None, 0, false, SystemTime::now());
        assert!(told.asks_user_id);
        assert_eq!((told.user_id.as_deref(), told.user_name.as_deref()), (Some("7"), None));
        assert_eq!(told.words.headline, "Connected as 7");
        let wang1 = Person { id: 1.into(), name: "wang1".into() };
        let welcomed =
            SessionNow { replies: true, ..at(SessionState::Connected { user: Identity::Welcomed(wang1) }, Some(1)) };
        let named = Status::assemble(&welcomed, None, 0, false, SystemTime::now());
        assert!(!named.asks_user_id);
        assert!(named.replies, "the same snapshot's");
        assert_eq!((named.user_id.as_deref(), named.user_name.as_deref()), (Some("1"), Some("wang1")));
        assert_eq!(named.words.headline, "Connected as wang1");
    }
}
