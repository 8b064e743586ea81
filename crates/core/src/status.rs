//! The state of a profile's running Talkbell, for people and scripts without a tray
//! (`talkbell status`).
//!
//! The process holding the profile's lock ([`crate::instance`]) publishes its session's
//! state in `status.json` in the data dir: one task follows the session's state watch
//! and rewrites the file (a private temporary file renamed over it) at every change.
//! [`read`] believes that file only while the lock is held, by the process the file
//! names, so a file left behind by a crash is never taken for a running app. The user is
//! the running session's (it owns that fact, and publishes it in the file), else the
//! config file's; the server comes from the config file, and the unread count (for that
//! user) from the history, whether or not anything runs.
//!
//! The file lives beside the lock rather than in `$XDG_RUNTIME_DIR`: the data dir is what
//! names a profile (the runtime dir would need a name derived from its path), it exists
//! wherever Talkbell runs (the runtime dir is unset in some ssh and cron sessions), and
//! a stale copy does no harm since it is believed only with the lock held.

use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError, Paths};
use crate::history::{History, HistoryError};
use crate::instance::{self, Holder, InstanceError, Occupant};
use crate::protocol::UserId;
use crate::session::{OfflineReason, SessionHandle, SessionNow, SessionState, SignedOutReason};

mod words;
pub use words::{describe, event_line, log_line, seconds_until, Description, Facts};

/// The status file's name in the data dir.
pub const STATUS_FILE: &str = "status.json";

/// The state as scripts read it (`talkbell status --json`), the tray picks its icon by and
/// the window its colour: the one name of each state outside the session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateKind {
    Connected,
    Connecting,
    Authenticating,
    /// Waiting before the next attempt (the session's backoff).
    Offline,
    SignedOut,
    Stopped,
    /// No tray app or daemon holds the profile.
    #[default]
    NotRunning,
}

impl StateKind {
    pub fn of(state: &SessionState) -> StateKind {
        match state {
            SessionState::SignedOut { .. } => StateKind::SignedOut,
            SessionState::Connecting { .. } => StateKind::Connecting,
            SessionState::Authenticating => StateKind::Authenticating,
            SessionState::Connected { .. } => StateKind::Connected,
            SessionState::Backoff { .. } => StateKind::Offline,
            SessionState::Stopped => StateKind::Stopped,
        }
    }
}

impl From<&SessionState> for StateKind {
    fn from(state: &SessionState) -> StateKind {
        StateKind::of(state)
    }
}

/// Why the session is in its state, for a person: why offline, why signed out.
pub fn reason_of(state: &SessionState) -> Option<String> {
    match state {
        SessionState::Backoff { reason, .. } => Some(reason.to_string()),
        SessionState::SignedOut { reason } => reason.as_ref().map(|r| r.to_string()),
        _ => None,
    }
}

/// Why signed out, for scripts (`reason_kind` in `talkbell status --json`): the kind of
/// the [`SignedOutReason`], whose text is `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonKind {
    /// The server refused the token: sign in again.
    ServerRefused,
    /// The token is being read from the keyring (at start).
    ReadingKeyring,
    /// The keyring is locked; connecting by itself once it is unlocked.
    KeyringLocked,
    /// No keyring can be reached; connecting by itself once one can.
    NoKeyring,
    /// The keyring does not answer (an unlock prompt waiting?).
    KeyringNoAnswer,
    /// The keyring reported an error.
    KeyringFailed,
    /// No persistent keyring on this platform.
    NoPersistentKeyring,
}

impl ReasonKind {
    pub fn of(reason: &SignedOutReason) -> ReasonKind {
        match reason {
            SignedOutReason::Refused(_) => ReasonKind::ServerRefused,
            SignedOutReason::ReadingKeyring => ReasonKind::ReadingKeyring,
            SignedOutReason::KeyringLocked => ReasonKind::KeyringLocked,
            SignedOutReason::NoKeyring { .. } => ReasonKind::NoKeyring,
            SignedOutReason::KeyringNoAnswer => ReasonKind::KeyringNoAnswer,
            SignedOutReason::KeyringFailed { .. } => ReasonKind::KeyringFailed,
            SignedOutReason::NoPersistentKeyring => ReasonKind::NoPersistentKeyring,
        }
    }

    /// The kind of why `state` is signed out; `None` in any other state, or signed out
    /// with no reason (nobody signed in).
    pub fn of_state(state: &SessionState) -> Option<ReasonKind> {
        match state {
            SessionState::SignedOut { reason: Some(r) } => Some(ReasonKind::of(r)),
            _ => None,
        }
    }
}

/// What the lock holder writes into the status file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub process: Holder,
    pub state: StateKind,
    /// Why signed out, in words; why offline too, in the files of older versions.
    pub reason: Option<String>,
    /// Why signed out, for scripts (absent from the files of older versions).
    #[serde(default)]
    pub reason_kind: Option<ReasonKind>,
    /// Why offline, typed: the reader puts it in its own words (absent from the files of
    /// older versions, which have only `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_reason: Option<OfflineReason>,
    /// When the next attempt is due (ms since the Unix epoch), while offline.
    pub retry_at_ms: Option<u64>,
    /// Who the session says the user is ([`SessionNow::user`]).
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    /// Connected to a server that does not say who the user is, and no user id is known
    /// ([`crate::session::Identity::Unknown`]): talks cannot be told as the user's until one is set.
    #[serde(default)]
    pub user_unknown: bool,
    /// When this was written (ms since the Unix epoch).
    pub updated_at_ms: u64,
}

impl Published {
    pub fn of(state: &SessionState, process: Holder) -> Published {
        let facts = Facts::of_state(state);
        let person = match state {
            SessionState::Connected { user } => user.welcomed(),
            _ => None,
        };
        Published {
            process,
            state: facts.state,
            reason: match state {
                SessionState::SignedOut { reason } => reason.as_ref().map(|r| r.to_string()),
                _ => None,
            },
            reason_kind: facts.reason_kind,
            offline_reason: match state {
                SessionState::Backoff { reason, .. } => Some(reason.clone()),
                _ => None,
            },
            retry_at_ms: facts.retry_at_ms,
            user_id: person.map(|p| p.id.to_string()),
            user_name: person.map(|p| p.name.clone()),
            user_unknown: facts.user_unknown,
            updated_at_ms: ms_since_epoch(SystemTime::now()),
        }
    }

    /// What the session publishes now: its state, and its user even when not connected.
    pub fn of_now(now: &SessionNow, process: Holder) -> Published {
        let published = Published::of(&now.state, process);
        Published { user_id: now.user.as_ref().map(UserId::to_string).or(published.user_id.clone()), ..published }
    }
}

/// `talkbell status` (the JSON keys are stable; see the README).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// A tray app or daemon holds the profile.
    pub running: bool,
    /// Which one, and its pid.
    pub process: Option<Holder>,
    pub state: StateKind,
    /// Why offline or signed out, in words.
    pub reason: Option<String>,
    /// Why signed out, as a kebab-case word (`keyring-locked`, `server-refused`, ...);
    /// null in other states.
    #[serde(default)]
    pub reason_kind: Option<ReasonKind>,
    /// Why offline, as `{"kind": "cert-expired"}`, `{"kind": "refused", "facts": {...}}`,
    /// ...; null in other states, and from a running process of an older version.
    #[serde(default)]
    pub offline_reason: Option<OfflineReason>,
    pub retry_at_ms: Option<u64>,
    /// The configured server.
    pub server: Option<String>,
    /// The signed-in user's id.
    pub user: Option<String>,
    /// Their name, as the server gave it while connected.
    pub user_name: Option<String>,
    /// Connected, but the server does not say who the user is and no user id is set
    /// (`talkbell login --user-id`, or the window, sets one).
    #[serde(default)]
    pub user_unknown: bool,
    /// Unread talks for the user in the history.
    pub unread: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot encode the status: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The profile's status now. Writes nothing: a missing config or history reads as empty.
pub fn read(paths: &Paths) -> Result<Snapshot, StatusError> {
    let occupant = instance::occupant(paths)?;
    let config = read_config(&paths.config_file)?;
    let server = config.as_ref().and_then(|c| c.server.clone());
    let (process, published) = match occupant {
        Occupant::Nobody | Occupant::Unknown => (None, None),
        Occupant::Process(holder) => {
            (Some(holder), read_published(&status_path(paths))?.filter(|p| p.process == holder))
        }
    };
    // The running session's user, else the config's: the unread count is theirs.
    let user_id = published
        .as_ref()
        .and_then(|p| p.user_id.clone())
        .map(UserId::new)
        .or_else(|| config.as_ref().and_then(|c| c.user_id.clone()));
    let unread = unread(&paths.history_db, user_id.as_ref())?;
    let running = !matches!(occupant, Occupant::Nobody);
    Ok(Snapshot::assemble(running, process, published, server, user_id.map(|id| id.to_string()), unread))
}

impl Snapshot {
    /// From what [`read`] found. A process that holds the lock but has not published yet
    /// (it is starting) is connecting. A typed offline reason is put in this process's
    /// words.
    fn assemble(
        running: bool,
        process: Option<Holder>,
        published: Option<Published>,
        server: Option<String>,
        user: Option<String>,
        unread: u64,
    ) -> Snapshot {
        let Some(p) = published else {
            let state = if running { StateKind::Connecting } else { StateKind::NotRunning };
            return Snapshot {
                running,
                process,
                state,
                reason: None,
                reason_kind: None,
                offline_reason: None,
                retry_at_ms: None,
                server,
                user,
                user_name: None,
                user_unknown: false,
                unread,
            };
        };
        Snapshot {
            running,
            process,
            state: p.state,
            reason: p.offline_reason.as_ref().map(OfflineReason::to_string).or(p.reason),
            reason_kind: p.reason_kind,
            offline_reason: p.offline_reason,
            retry_at_ms: p.retry_at_ms,
            server,
            user: p.user_id.or(user),
            user_name: p.user_name,
            user_unknown: p.user_unknown,
            unread,
        }
    }
}

fn read_config(path: &Path) -> Result<Option<Config>, StatusError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(Config::parse(path, &text)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StatusError::Read { path: path.to_path_buf(), source }),
    }
}

/// Unread talks for `user`. A history whose schema its writer has not committed yet (a
/// process starting this very moment) has none, and is left alone: opening it with
/// [`History::open`] would make the schema from here, beside the writer doing the same.
fn unread(path: &Path, user: Option<&UserId>) -> Result<u64, StatusError> {
    if !schema_committed(path)? {
        return Ok(0);
    }
    Ok(History::open(path)?.unread_count(user)?)
}

/// Whether `path` is a history with its schema, asked on a read-only connection.
fn schema_committed(path: &Path) -> Result<bool, StatusError> {
    if !path.exists() {
        return Ok(false);
    }
    let open_err = |source| HistoryError::Open { path: path.to_path_buf(), source };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(open_err)?;
    Ok(version > 0)
}

/// The status file, if there is one that parses (a half-written one never is: it is
/// renamed into place whole).
fn read_published(path: &Path) -> Result<Option<Published>, StatusError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StatusError::Read { path: path.to_path_buf(), source }),
    }
}

fn status_path(paths: &Paths) -> PathBuf {
    paths.data_dir.join(STATUS_FILE)
}

/// Follows `session`'s state and publishes it for `process` (which must hold the
/// profile's lock) until the session stops: the task the engine runs
/// ([`crate::engine::Engine::publish_status`]). Writes happen one at a time, off the async
/// threads; one that fails is logged and the next state is tried again.
pub(crate) fn publisher(session: &SessionHandle, paths: &Paths, process: Holder) -> impl Future<Output = ()> {
    let mut states = session.watch();
    let path = status_path(paths);
    async move {
        loop {
            let now = states.borrow_and_update().clone();
            let state = now.state.clone();
            let published = Published::of_now(&now, process);
            let target = path.clone();
            match tokio::task::spawn_blocking(move || write_atomically(&target, &published)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot publish the status for `talkbell status`"),
                Err(_) => return,
            }
            if matches!(state, SessionState::Stopped) || states.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Writes `published` to `path` through a private temporary file renamed over it, so a
/// reader sees the old file or the new one, never a part.
pub fn write_atomically(path: &Path, published: &Published) -> Result<(), StatusError> {
    let text = serde_json::to_vec_pretty(published)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(STATUS_FILE);
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let write_err = |source| StatusError::Write { path: tmp.clone(), source };
    // Left by an earlier process with this pid, it might not be private.
    let _ = std::fs::remove_file(&tmp);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    instance::owner_only(&mut options);
    let mut file = options.open(&tmp).map_err(write_err)?;
    file.write_all(&text).map_err(write_err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        StatusError::Write { path: path.to_path_buf(), source }
    })
}

/// `t` in milliseconds since the Unix epoch (0 before it), as the status file and the
/// window count time.
pub fn ms_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::instance::{InstanceLock, ProcessKind};
    use crate::protocol::{Person, Token};
    use crate::session::{Credentials, Identity, Refusal, Session, SessionConfig, Timing};

    const DAEMON: Holder = Holder { kind: ProcessKind::Daemon, pid: 4242 };

    fn wang1() -> Person {
        Person { id: UserId::new("1"), name: "wang1".into() }
    }

    /// What a daemon of the previous version writes while offline: the reason's text
    /// only.
    fn offline(process: Holder, reason: &str, retry_at_ms: u64) -> Published {
        Published {
            process,
            state: StateKind::Offline,
            reason: Some(reason.to_owned()),
            reason_kind: None,
            offline_reason: None,
            retry_at_ms: Some(retry_at_ms),
            user_id: None,
            user_name: None,
            user_unknown: false,
            updated_at_ms: 1,
        }
    }

    #[test]
    fn every_session_state_has_its_kebab_case_kind_and_reason() {
        let signed_out = |reason| SessionState::SignedOut { reason: Some(reason) };
        let refused = SignedOutReason::Refused(Refusal::Http { status: 401 });
        let cases: Vec<(SessionState, &str, Option<&str>, Option<&str>)> = vec![
            (SessionState::Connected { user: Identity::Welcomed(wang1()) }, "connected", None, None),
            (SessionState::Connected { user: Identity::Unknown }, "connected", None, None),
            (SessionState::Connecting { attempt: 1 }, "connecting", None, None),
            (SessionState::Authenticating, "authenticating", None, None),
            (SessionState::SignedOut { reason: None }, "signed-out", None, None),
            (
                signed_out(refused),
                "signed-out",
                Some("the server refused the token (HTTP 401)"),
                Some("server-refused"),
            ),
            (
                signed_out(SignedOutReason::KeyringLocked),
                "signed-out",
                Some("the keyring is locked: unlock it to connect"),
                Some("keyring-locked"),
            ),
            (
                signed_out(SignedOutReason::ReadingKeyring),
                "signed-out",
                Some("reading the token from the keyring"),
                Some("reading-keyring"),
            ),
            (SessionState::Stopped, "stopped", None, None),
        ];
        for (state, kind, reason, reason_kind) in cases {
            assert_eq!(serde_json::to_value(StateKind::of(&state)).unwrap(), json!(kind), "{state:?}");
            assert_eq!(StateKind::from(&state), StateKind::of(&state));
            assert_eq!(reason_of(&state).as_deref(), reason, "{state:?}");
            let published = serde_json::to_value(Published::of(&state, DAEMON)).unwrap();
            assert_eq!(published["reason_kind"], json!(reason_kind), "{state:?}");
        }
        let kinds = [
            (SignedOutReason::NoKeyring { detail: "x".into() }, "no-keyring"),
            (SignedOutReason::KeyringNoAnswer, "keyring-no-answer"),
            (SignedOutReason::KeyringFailed { detail: "x".into() }, "keyring-failed"),
            (SignedOutReason::NoPersistentKeyring, "no-persistent-keyring"),
        ];
        for (reason, kind) in kinds {
            assert_eq!(serde_json::to_value(ReasonKind::of(&reason)).unwrap(), json!(kind));
        }
        assert_eq!(serde_json::to_value(StateKind::Offline).unwrap(), json!("offline"));
        assert_eq!(serde_json::to_value(StateKind::NotRunning).unwrap(), json!("not-running"));
        assert_eq!(serde_json::from_value::<StateKind>(json!("signed-out")).unwrap(), StateKind::SignedOut);
        let connected = Published::of(&SessionState::Connected { user: Identity::Welcomed(wang1()) }, DAEMON);
        assert_eq!((connected.user_id.as_deref(), connected.user_name.as_deref()), (Some("1"), Some("wang1")));
    }

    #[tokio::test]
    async fn a_session_backing_off_publishes_offline_with_its_reason_and_next_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let history = Arc::new(History::open(&dir.path().join("h.sqlite3")).unwrap());
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let credentials = Credentials {
            server: format!("ws://127.0.0.1:{closed}/"),
            token: Token::new("t".to_owned()).unwrap(),
            user_id: None,
        };
        let timing =
            Timing { backoff_min: Duration::from_secs(5), backoff_max: Duration::from_secs(5), ..Timing::default() };
        let session = Session::spawn(SessionConfig::new("device", timing), Some(credentials), history);
        let state = tokio::time::timeout(
            Duration::from_secs(30),
            session.wait_for(|s| matches!(s, SessionState::Backoff { .. })),
        )
        .await
        .unwrap();
        let SessionState::Backoff { reason, until, .. } = &state else { panic!("{state:?}") };
        let published = Published::of(&state, DAEMON);
        assert_eq!(published.state, StateKind::Offline);
        assert_eq!((published.reason, published.offline_reason.as_ref()), (None, Some(reason)));
        assert!(!reason.to_string().is_empty());
        assert_eq!(published.retry_at_ms, Some(ms_since_epoch(*until)));
        session.shutdown().await;
    }

    #[test]
    fn snapshots_serialize_with_stable_keys() {
        let connected = Published {
            updated_at_ms: 1,
            ..Published::of(&SessionState::Connected { user: Identity::Welcomed(wang1()) }, DAEMON)
        };
        let unknown = Published {
            updated_at_ms: 1,
            ..Published::of(&SessionState::Connected { user: Identity::Unknown }, DAEMON)
        };
        let server = Some("wss://talk.example.com/ws".to_owned());
        let cases = [
            (
                Snapshot::assemble(true, Some(DAEMON), Some(connected), server.clone(), Some("1".into()), 3),
                json!({"running": true, "process": {"kind": "daemon", "pid": 4242}, "state": "connected",
                       "reason": null, "reason_kind": null, "offline_reason": null, "retry_at_ms": null, "server": "wss://talk.example.com/ws",
                       "user": "1", "user_name": "wang1", "user_unknown": false, "unread": 3}),
            ),
            (
                Snapshot::assemble(
                    true,
                    Some(DAEMON),
                    Some(offline(DAEMON, "no route", 1_700_000_005_000)),
                    server.clone(),
                    Some("1".into()),
                    0,
                ),
                json!({"running": true, "process": {"kind": "daemon", "pid": 4242}, "state": "offline",
                       "reason": "no route", "reason_kind": null, "offline_reason": null, "retry_at_ms": 1_700_000_005_000u64,
                       "server": "wss://talk.example.com/ws", "user": "1", "user_name": null, "user_unknown": false,
                       "unread": 0}),
            ),
            (
                Snapshot::assemble(false, None, None, server.clone(), Some("1".into()), 7),
                json!({"running": false, "process": null, "state": "not-running", "reason": null,
                       "reason_kind": null, "offline_reason": null, "retry_at_ms": null, "server": "wss://talk.example.com/ws", "user": "1",
                       "user_name": null, "user_unknown": false, "unread": 7}),
            ),
            (
                Snapshot::assemble(true, Some(Holder { kind: ProcessKind::TrayApp, pid: 7 }), None, None, None, 0),
                json!({"running": true, "process": {"kind": "tray-app", "pid": 7}, "state": "connecting",
                       "reason": null, "reason_kind": null, "offline_reason": null, "retry_at_ms": null, "server": null, "user": null,
                       "user_name": null, "user_unknown": false, "unread": 0}),
            ),
            (
                Snapshot::assemble(true, Some(DAEMON), Some(unknown), server.clone(), None, 0),
                json!({"running": true, "process": {"kind": "daemon", "pid": 4242}, "state": "connected",
                       "reason": null, "reason_kind": null, "offline_reason": null, "retry_at_ms": null, "server": "wss://talk.example.com/ws",
                       "user": null, "user_name": null, "user_unknown": true, "unread": 0}),
            ),
        ];
        for (snapshot, expected) in cases {
            assert_eq!(serde_json::to_value(&snapshot).unwrap(), expected);
        }
    }

    #[test]
    fn a_certificate_problem_is_published_typed_and_told_by_talkbell_status_as_by_the_window() {
        let until = UNIX_EPOCH + Duration::from_secs(1_700_000_005);
        let state = SessionState::Backoff {
            attempt: 2,
            delay: Duration::from_secs(5),
            until,
            reason: OfflineReason::CertExpired,
        };
        let written = serde_json::to_value(Published { updated_at_ms: 1, ..Published::of(&state, DAEMON) }).unwrap();
        assert_eq!((&written["offline_reason"], &written["reason"]), (&json!({"kind": "cert-expired"}), &json!(null)));
        let published: Published = serde_json::from_value(written).unwrap();
        let s = Snapshot::assemble(true, Some(DAEMON), Some(published), None, None, 2);
        assert_eq!(s.reason.as_deref(), Some("the server's certificate has expired"));
        let words = describe(&Facts::of_snapshot(&s), until);
        assert_eq!(words.tray, "Talkbell: offline · the server's certificate has expired · 2 unread");
        assert_eq!(words.detail.as_deref(), Some("the server's certificate has expired"));

        let refused = OfflineReason::Refused { addr: "127.0.0.1:1".into() };
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(json, json!({"kind": "refused", "facts": {"addr": "127.0.0.1:1"}}));
        assert_eq!(serde_json::from_value::<OfflineReason>(json).unwrap(), refused);
    }

    #[test]
    fn a_history_whose_schema_is_not_made_yet_has_no_unread_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(dir.path());
        std::fs::create_dir_all(&paths.data_dir).unwrap();
        // What a writer has made the instant before it commits the schema.
        let starting = Connection::open(&paths.history_db).unwrap();
        starting.pragma_update(None, "journal_mode", "WAL").unwrap();
        assert_eq!(read(&paths).unwrap().unread, 0);
        let tables: i64 = starting.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).unwrap();
        assert_eq!(tables, 0, "status made the schema");
        drop(starting);

        let history = History::open(&paths.history_db).unwrap();
        drop(history);
        assert_eq!(read(&paths).unwrap().unread, 0);
    }

    #[test]
    fn the_status_file_is_believed_only_from_the_process_holding_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(dir.path());
        std::fs::create_dir_all(&paths.data_dir).unwrap();
        // Left by a process that has gone: no lock is held.
        write_atomically(&status_path(&paths), &offline(DAEMON, "down", 1)).unwrap();
        let s = read(&paths).unwrap();
        assert_eq!((s.running, s.state, s.reason), (false, StateKind::NotRunning, None));
        assert!(!paths.config_file.exists() && !paths.history_db.exists(), "read wrote files");

        // Held by this process, but the file is the gone one's.
        let lock = InstanceLock::acquire(&paths, ProcessKind::Daemon).unwrap();
        let s = read(&paths).unwrap();
        assert_eq!((s.running, s.process, s.state), (true, Some(lock.holder()), StateKind::Connecting));

        write_atomically(&status_path(&paths), &offline(lock.holder(), "down", 1)).unwrap();
        let s = read(&paths).unwrap();
        assert_eq!((s.state, s.reason.as_deref()), (StateKind::Offline, Some("down")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(status_path(&paths)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(&paths.data_dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
