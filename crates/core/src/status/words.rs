//! The one place a state becomes words: the window's status line, the tray's first line,
//! `talkbell status` and the connection log all take theirs from here ([`describe`],
//! [`log_line`], [`event_line`]). The shells only put the words on screen; a translation
//! replaces the texts of this file, and nothing else.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{ReasonKind, Snapshot, StateKind};
use crate::session::outbox::Outgoing;
use crate::session::{SessionEvent, SessionState};

/// What the words are made of: the state and what goes with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts<'a> {
    pub state: StateKind,
    /// Why offline or signed out, in the server's, the network's or the keyring's words.
    pub reason: Option<&'a str>,
    /// Why signed out, as a kind.
    pub reason_kind: Option<ReasonKind>,
    /// Offline because of the server's certificate: a person must act on it.
    pub certificate_problem: bool,
    /// When the next attempt is due (ms since the Unix epoch), while offline.
    pub retry_at_ms: Option<u64>,
    /// Who is signed in, by name (or id).
    pub user: Option<&'a str>,
    pub unread: u64,
    /// Notifications are paused.
    pub paused: bool,
}

impl<'a> Facts<'a> {
    /// What `talkbell status` read (it cannot know of a pause, nor tell a certificate
    /// problem from another reason).
    pub fn of_snapshot(s: &'a Snapshot) -> Facts<'a> {
        Facts {
            state: s.state,
            reason: s.reason.as_deref(),
            reason_kind: s.reason_kind,
            certificate_problem: false,
            retry_at_ms: s.retry_at_ms,
            user: s.user_name.as_deref().or(s.user.as_deref()),
            unread: s.unread,
            paused: false,
        }
    }

    /// Signed out because the token cannot be read from the keyring (locked, away): a
    /// person must act, though Talkbell connects by itself after. Reading it at start
    /// takes a moment and needs nobody.
    pub fn keyring_problem(&self) -> bool {
        self.waiting_for_keyring() && self.reason_kind != Some(ReasonKind::ReadingKeyring)
    }

    /// Signed out while the token is read from the keyring, or because it cannot be read
    /// yet: Talkbell connects by itself once it can, so this is not "sign in again".
    pub fn waiting_for_keyring(&self) -> bool {
        self.state == StateKind::SignedOut && self.reason_kind.is_some_and(|k| k != ReasonKind::ServerRefused)
    }

    /// Signed out, and only signing in (again) will help.
    pub fn needs_sign_in(&self) -> bool {
        self.state == StateKind::SignedOut && !self.waiting_for_keyring()
    }
}

/// A state in words, for each place that shows one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Description {
    /// The state in a word or two: `connected`, `signed out` (`talkbell status`'s State).
    pub label: String,
    /// The window's status line: `Connected as wang1 · 2 unread`.
    pub headline: String,
    /// Why, in the server's, the network's or the keyring's words.
    pub detail: Option<String>,
    /// What to do, when nothing says why: signed out with no reason, or not running.
    pub advice: Option<String>,
    /// When the next attempt is due: `in 3 s`.
    pub next_try: Option<String>,
    /// The tray's tooltip and its menu's first line: `Talkbell: connected · 2 unread`.
    pub tray: String,
}

/// The words for `facts` at `now` (a countdown counts from it).
pub fn describe(facts: &Facts<'_>, now: SystemTime) -> Description {
    let secs = facts.retry_at_ms.map(|at| seconds_until(at, now));
    let mut headline = headline(facts, secs);
    let mut tray = format!("Talkbell: {}", label(facts.state));
    if let Some(reason) = facts.reason.filter(|_| facts.certificate_problem || facts.keyring_problem()) {
        tray.push_str(&format!(" · {reason}"));
    }
    let mut tail = String::new();
    if facts.unread > 0 {
        tail.push_str(&format!(" · {} unread", facts.unread));
    }
    if facts.paused {
        tail.push_str(" · notifications paused");
    }
    headline.push_str(&tail);
    tray.push_str(&tail);
    Description {
        label: label(facts.state).to_owned(),
        headline,
        detail: facts.reason.map(str::to_owned),
        advice: advice(facts).map(str::to_owned),
        next_try: secs.map(|s| format!("in {s} s")),
        tray,
    }
}

fn label(state: StateKind) -> &'static str {
    match state {
        StateKind::Connected => "connected",
        StateKind::Connecting => "connecting",
        StateKind::Authenticating => "authenticating",
        StateKind::Offline => "offline",
        StateKind::SignedOut => "signed out",
        StateKind::Stopped => "stopped",
        StateKind::NotRunning => "not running",
    }
}

fn headline(facts: &Facts<'_>, retry_in_secs: Option<u64>) -> String {
    match facts.state {
        StateKind::Connected => facts.user.map_or_else(|| "Connected".to_owned(), |u| format!("Connected as {u}")),
        StateKind::Connecting => "Connecting…".to_owned(),
        StateKind::Authenticating => "Signing in…".to_owned(),
        StateKind::SignedOut if facts.reason_kind == Some(ReasonKind::ReadingKeyring) => {
            "Reading the keyring…".to_owned()
        }
        StateKind::SignedOut if facts.waiting_for_keyring() => "Waiting for the keyring".to_owned(),
        StateKind::SignedOut => "Signed out".to_owned(),
        StateKind::Offline => match retry_in_secs {
            Some(secs) => format!("Offline, retrying in {secs} s"),
            None => "Offline".to_owned(),
        },
        StateKind::Stopped | StateKind::NotRunning => label(facts.state).to_owned(),
    }
}

fn advice(facts: &Facts<'_>) -> Option<&'static str> {
    match (facts.reason, facts.state) {
        (None, StateKind::SignedOut) => Some("not signed in: run `talkbell login --server URL`"),
        (None, StateKind::NotRunning) => {
            Some("no tray app or daemon runs for this profile: start `talkbell` or `talkbell daemon`")
        }
        _ => None,
    }
}

/// Whole seconds from `now` to `at_ms` (ms since the epoch), rounded up; 0 once past.
pub fn seconds_until(at_ms: u64, now: SystemTime) -> u64 {
    let at = UNIX_EPOCH.checked_add(Duration::from_millis(at_ms)).unwrap_or(now);
    let wait = at.duration_since(now).unwrap_or_default();
    wait.as_secs().saturating_add(u64::from(wait.subsec_nanos() > 0))
}

/// The connection log's line for a state: `offline (why); next attempt in 1.0 s`.
pub fn log_line(state: &SessionState) -> String {
    match state {
        SessionState::Backoff { reason, delay, .. } => {
            format!("offline ({reason}); next attempt in {:.1} s", delay.as_secs_f64())
        }
        SessionState::SignedOut { reason: Some(r) } => format!("signed out: {r}"),
        other => label(StateKind::of(other)).to_owned(),
    }
}

/// The connection log's line for a session event, for those the log shows.
pub fn event_line(event: &SessionEvent) -> Option<String> {
    match event {
        SessionEvent::State(state) => Some(log_line(state)),
        SessionEvent::Dropped { error } => Some(format!("dropped a frame: {error}")),
        SessionEvent::Oversized { size, limit } => {
            Some(format!("refused a message of {size} bytes (limit {limit}); reconnecting"))
        }
        SessionEvent::StoreFailed { error } => Some(format!("could not store a talk: {error}")),
        SessionEvent::Welcome { user } => Some(format!("signed in as {}", user.name)),
        SessionEvent::QueueReset { .. } => {
            Some("the server lost its queue: talks sent while it was lost may be missing".to_owned())
        }
        SessionEvent::Reply { outgoing: Outgoing::Failed { message, .. }, .. } => {
            Some(format!("a reply was refused: {message}"))
        }
        SessionEvent::Talk { .. } | SessionEvent::Duplicate { .. } | SessionEvent::Reply { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_S: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_S)
    }

    fn offline(reason: &str, certificate_problem: bool) -> Facts<'_> {
        Facts {
            state: StateKind::Offline,
            reason: Some(reason),
            certificate_problem,
            retry_at_ms: Some(NOW_S * 1000 + 2_500),
            unread: 2,
            ..Facts::default()
        }
    }

    #[test]
    fn the_window_line_says_the_state_the_user_and_what_waits() {
        let connected = Facts { state: StateKind::Connected, user: Some("wang1"), ..Facts::default() };
        assert_eq!(describe(&connected, now()).headline, "Connected as wang1");
        let busy = Facts { unread: 2, paused: true, ..connected };
        assert_eq!(describe(&busy, now()).headline, "Connected as wang1 · 2 unread · notifications paused");
        assert_eq!(describe(&Facts { user: None, ..connected }, now()).headline, "Connected");
        let down = describe(&offline("refused", false), now());
        assert_eq!(down.headline, "Offline, retrying in 3 s · 2 unread");
        assert_eq!((down.detail.as_deref(), down.next_try.as_deref()), (Some("refused"), Some("in 3 s")));
        let late = Facts { retry_at_ms: Some(1), ..offline("refused", false) };
        assert_eq!(describe(&late, now()).headline, "Offline, retrying in 0 s · 2 unread");
    }

    #[test]
    fn signed_out_says_whether_to_sign_in_or_wait_for_the_keyring() {
        let out = |kind| Facts { state: StateKind::SignedOut, reason_kind: kind, ..Facts::default() };
        let cases = [
            (None, "Signed out", true),
            (Some(ReasonKind::ServerRefused), "Signed out", true),
            (Some(ReasonKind::ReadingKeyring), "Reading the keyring…", false),
            (Some(ReasonKind::KeyringLocked), "Waiting for the keyring", false),
            (Some(ReasonKind::NoKeyring), "Waiting for the keyring", false),
        ];
        for (kind, headline, sign_in) in cases {
            assert_eq!(describe(&out(kind), now()).headline, headline, "{kind:?}");
            assert_eq!(out(kind).needs_sign_in(), sign_in, "{kind:?}");
        }
        assert_eq!(
            describe(&out(None), now()).advice.as_deref(),
            Some("not signed in: run `talkbell login --server URL`")
        );
    }

    #[test]
    fn the_tray_line_names_a_certificate_problem_and_no_other_reason() {
        let cert = offline("the server's certificate has expired", true);
        assert_eq!(describe(&cert, now()).tray, "Talkbell: offline · the server's certificate has expired · 2 unread");
        let refused = offline("the server 127.0.0.1:1 refused the connection", false);
        assert_eq!(describe(&refused, now()).tray, "Talkbell: offline · 2 unread");
    }

    #[test]
    fn the_tray_line_names_a_locked_keyring() {
        let locked = Facts {
            state: StateKind::SignedOut,
            reason: Some("the keyring is locked: unlock it to connect"),
            reason_kind: Some(ReasonKind::KeyringLocked),
            unread: 2,
            ..Facts::default()
        };
        assert_eq!(
            describe(&locked, now()).tray,
            "Talkbell: signed out · the keyring is locked: unlock it to connect · 2 unread"
        );
        let refused = Facts { reason_kind: Some(ReasonKind::ServerRefused), ..locked };
        assert_eq!(describe(&refused, now()).tray, "Talkbell: signed out · 2 unread");
        let reading = Facts { reason_kind: Some(ReasonKind::ReadingKeyring), ..locked };
        assert_eq!(describe(&reading, now()).tray, "Talkbell: signed out · 2 unread");
    }

    #[test]
    fn the_log_says_why_and_when_next() {
        let state = SessionState::Connecting { attempt: 1 };
        assert_eq!(log_line(&state), "connecting");
        assert_eq!(log_line(&SessionState::SignedOut { reason: None }), "signed out");
        assert_eq!(event_line(&SessionEvent::Duplicate { seq: crate::protocol::Seq(3) }), None);
    }
}
