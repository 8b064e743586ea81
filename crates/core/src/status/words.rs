//! The one place a state becomes words: the window's status line, the tray's first line,
//! `talkbell status` and the connection log all take theirs from here ([`describe`],
//! [`log_line`], [`event_line`]). The shells only put the words on screen; this file
//! takes its texts from the catalogue (`crate::i18n`), in the process's language or, for
//! tests, the one given (`describe_in`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{ReasonKind, Snapshot, StateKind};
use crate::i18n::{self, text_in, Lang, Msg};
use crate::session::outbox::Outgoing;
use crate::session::{Identity, SessionEvent, SessionState};

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
    /// Connected to a server that does not say who the user is, and no user id is known
    /// ([`crate::session::Identity::Unknown`]): the window asks for one.
    pub user_unknown: bool,
    pub unread: u64,
    /// Notifications are paused.
    pub paused: bool,
}

impl<'a> Facts<'a> {
    /// What a running session's `state` says by itself: its kind and why, when the next
    /// attempt is due, whether the server does not say who the user is. The status file
    /// ([`super::Published`]) and the tray and window take these from here; the caller adds
    /// the reason's words, the user, the unread count and the pause.
    pub fn of_state(state: &SessionState) -> Facts<'a> {
        Facts {
            state: StateKind::of(state),
            reason: None,
            reason_kind: ReasonKind::of_state(state),
            certificate_problem: matches!(state, SessionState::Backoff { reason, .. } if reason.is_certificate()),
            retry_at_ms: match state {
                SessionState::Backoff { until, .. } => Some(super::ms_since_epoch(*until)),
                _ => None,
            },
            user: None,
            user_unknown: matches!(state, SessionState::Connected { user: Identity::Unknown }),
            unread: 0,
            paused: false,
        }
    }

    /// What `talkbell status` read (it cannot know of a pause).
    pub fn of_snapshot(s: &'a Snapshot) -> Facts<'a> {
        Facts {
            state: s.state,
            reason: s.reason.as_deref(),
            reason_kind: s.reason_kind,
            certificate_problem: s.offline_reason.as_ref().is_some_and(|r| r.is_certificate()),
            retry_at_ms: s.retry_at_ms,
            user: s.user_name.as_deref().or(s.user.as_deref()),
            user_unknown: s.user_unknown,
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

/// The words for `facts` at `now` (a countdown counts from it), in the process's language.
pub fn describe(facts: &Facts<'_>, now: SystemTime) -> Description {
    describe_in(i18n::current(), facts, now)
}

/// [`describe`] in `lang`.
pub fn describe_in(lang: Lang, facts: &Facts<'_>, now: SystemTime) -> Description {
    let secs = facts.retry_at_ms.map(|at| seconds_until(at, now));
    let mut headline = headline(lang, facts, secs);
    let label = label(lang, facts.state);
    let mut tray = text_in(lang, Msg::StatusTray, &[("state", label.as_str().into())]);
    if let Some(reason) = facts.reason.filter(|_| facts.certificate_problem || facts.keyring_problem()) {
        tray.push_str(&format!(" · {reason}"));
    }
    let mut tail = String::new();
    if facts.unread > 0 {
        tail.push_str(&format!(" · {}", text_in(lang, Msg::StatusUnread, &[("count", facts.unread.into())])));
    }
    if facts.paused {
        tail.push_str(&format!(" · {}", text_in(lang, Msg::StatusPaused, &[])));
    }
    headline.push_str(&tail);
    tray.push_str(&tail);
    Description {
        label,
        headline,
        detail: facts.reason.map(str::to_owned),
        advice: advice(facts).map(|m| text_in(lang, m, &[])),
        next_try: secs.map(|s| text_in(lang, Msg::StatusNextTry, &[("seconds", s.into())])),
        tray,
    }
}

fn label(lang: Lang, state: StateKind) -> String {
    let msg = match state {
        StateKind::Connected => Msg::StateConnected,
        StateKind::Connecting => Msg::StateConnecting,
        StateKind::Authenticating => Msg::StateAuthenticating,
        StateKind::Offline => Msg::StateOffline,
        StateKind::SignedOut => Msg::StateSignedOut,
        StateKind::Stopped => Msg::StateStopped,
        StateKind::NotRunning => Msg::StateNotRunning,
    };
    text_in(lang, msg, &[])
}

fn headline(lang: Lang, facts: &Facts<'_>, retry_in_secs: Option<u64>) -> String {
    let msg = match facts.state {
        StateKind::Connected => match facts.user {
            Some(user) => return text_in(lang, Msg::StatusConnectedAs, &[("user", user.into())]),
            None if facts.user_unknown => Msg::StatusConnectedUserUnknown,
            None => Msg::StatusConnected,
        },
        StateKind::Connecting => Msg::StatusConnecting,
        StateKind::Authenticating => Msg::StatusAuthenticating,
        StateKind::SignedOut if facts.reason_kind == Some(ReasonKind::ReadingKeyring) => Msg::StatusReadingKeyring,
        StateKind::SignedOut if facts.waiting_for_keyring() => Msg::StatusWaitingForKeyring,
        StateKind::SignedOut => Msg::StatusSignedOut,
        StateKind::Offline => match retry_in_secs {
            Some(secs) => return text_in(lang, Msg::StatusOfflineRetrying, &[("seconds", secs.into())]),
            None => Msg::StatusOffline,
        },
        StateKind::Stopped | StateKind::NotRunning => return label(lang, facts.state),
    };
    text_in(lang, msg, &[])
}

fn advice(facts: &Facts<'_>) -> Option<Msg> {
    match (facts.reason, facts.state) {
        (None, StateKind::SignedOut) => Some(Msg::StatusAdviceSignIn),
        (None, StateKind::NotRunning) => Some(Msg::StatusAdviceNotRunning),
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
    log_line_in(i18n::current(), state)
}

fn log_line_in(lang: Lang, state: &SessionState) -> String {
    match state {
        SessionState::Backoff { reason, delay, .. } => {
            // Tenths of a second, as the log has always shown them.
            let seconds = (delay.as_secs_f64() * 10.0).round() / 10.0;
            let reason = reason.to_string();
            text_in(lang, Msg::LogOffline, &[("reason", reason.as_str().into()), ("seconds", seconds.into())])
        }
        SessionState::SignedOut { reason: Some(r) } => {
            text_in(lang, Msg::LogSignedOutBecause, &[("reason", r.to_string().as_str().into())])
        }
        other => label(lang, StateKind::of(other)),
    }
}

/// The connection log's line for a session event, for those the log shows.
pub fn event_line(event: &SessionEvent) -> Option<String> {
    event_line_in(i18n::current(), event)
}

fn event_line_in(lang: Lang, event: &SessionEvent) -> Option<String> {
    let error_line = |msg, error: String| text_in(lang, msg, &[("error", error.as_str().into())]);
    Some(match event {
        SessionEvent::State(state) => log_line_in(lang, state),
        SessionEvent::Dropped { error } => error_line(Msg::LogDropped, error.to_string()),
        SessionEvent::Oversized { size, limit } => {
            text_in(lang, Msg::LogOversized, &[("size", (*size).into()), ("limit", (*limit).into())])
        }
        SessionEvent::StoreFailed { error } => error_line(Msg::LogStoreFailed, error.to_string()),
        SessionEvent::Welcome { user } => text_in(lang, Msg::LogSignedIn, &[("user", user.name.as_str().into())]),
        SessionEvent::QueueReset { .. } => text_in(lang, Msg::LogQueueReset, &[]),
        SessionEvent::Reply { outgoing: Outgoing::Failed { message, .. }, .. } => {
            error_line(Msg::LogReplyRefused, message.clone())
        }
        SessionEvent::Talk { .. } | SessionEvent::Duplicate { .. } | SessionEvent::Reply { .. } => return None,
    })
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
        let unknown = Facts { user: None, user_unknown: true, ..connected };
        assert_eq!(describe(&unknown, now()).headline, "Connected · this server doesn't say who you are");
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
    fn each_language_says_the_state_its_own_way() {
        let connected = Facts { state: StateKind::Connected, user: Some("wang1"), ..Facts::default() };
        let one = Facts { unread: 1, ..connected };
        let two = Facts { unread: 2, paused: true, ..connected };
        let signed_out = Facts { state: StateKind::SignedOut, ..Facts::default() };
        let cases = [
            (Lang::En, connected, "Connected as wang1", "Talkbell: connected"),
            (Lang::En, one, "Connected as wang1 · 1 unread", "Talkbell: connected · 1 unread"),
            (
                Lang::En,
                two,
                "Connected as wang1 · 2 unread · notifications paused",
                "Talkbell: connected · 2 unread · notifications paused",
            ),
            (
                Lang::En,
                offline("refused", false),
                "Offline, retrying in 3 s · 2 unread",
                "Talkbell: offline · 2 unread",
            ),
            (Lang::ZhCn, connected, "已连接，当前用户 wang1", "Talkbell：已连接"),
            (Lang::ZhCn, one, "已连接，当前用户 wang1 · 1 条未读", "Talkbell：已连接 · 1 条未读"),
            (
                Lang::ZhCn,
                two,
                "已连接，当前用户 wang1 · 2 条未读 · 通知已暂停",
                "Talkbell：已连接 · 2 条未读 · 通知已暂停",
            ),
            (Lang::ZhCn, offline("refused", false), "离线，3 秒后重试 · 2 条未读", "Talkbell：离线 · 2 条未读"),
            (Lang::ZhCn, signed_out, "未登录", "Talkbell：未登录"),
        ];
        for (lang, facts, headline, tray) in cases {
            let words = describe_in(lang, &facts, now());
            assert_eq!((words.headline.as_str(), words.tray.as_str()), (headline, tray), "{lang:?} {facts:?}");
        }
        let zh = describe_in(Lang::ZhCn, &offline("refused", false), now());
        assert_eq!((zh.label.as_str(), zh.next_try.as_deref()), ("离线", Some("3 秒后")));
        assert_eq!(
            describe_in(Lang::ZhCn, &signed_out, now()).advice.as_deref(),
            Some("尚未登录：请运行 `talkbell login --server URL`")
        );
    }

    #[test]
    fn the_log_says_why_and_when_next_in_each_language() {
        let backoff = |ms| SessionState::Backoff {
            attempt: 1,
            reason: crate::session::OfflineReason::CertExpired,
            delay: Duration::from_millis(ms),
            until: now(),
        };
        let why = "the server's certificate has expired";
        let cases = [
            (Lang::En, backoff(1_000), format!("offline ({why}); next attempt in 1.0 s")),
            (Lang::En, backoff(2_449), format!("offline ({why}); next attempt in 2.4 s")),
            (Lang::ZhCn, backoff(1_000), format!("离线（{why}）；1.0 秒后再次尝试")),
            (Lang::ZhCn, SessionState::Connecting { attempt: 1 }, "正在连接".to_owned()),
        ];
        for (lang, state, line) in cases {
            assert_eq!(log_line_in(lang, &state), line, "{lang:?}");
        }
        let oversized = SessionEvent::Oversized { size: 70_000, limit: 65_536 };
        assert_eq!(
            event_line_in(Lang::En, &oversized).as_deref(),
            Some("refused a message of 70000 bytes (limit 65536); reconnecting")
        );
        assert_eq!(
            event_line_in(Lang::ZhCn, &oversized).as_deref(),
            Some("拒收了一条 70000 字节的消息（上限 65536）；正在重新连接")
        );
    }

    #[test]
    fn the_log_says_why_and_when_next() {
        let state = SessionState::Connecting { attempt: 1 };
        assert_eq!(log_line(&state), "connecting");
        assert_eq!(log_line(&SessionState::SignedOut { reason: None }), "signed out");
        assert_eq!(event_line(&SessionEvent::Duplicate { seq: crate::protocol::Seq(3) }), None);
    }
}
