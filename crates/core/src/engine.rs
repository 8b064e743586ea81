//! The pieces wired together the one way data flows (DESIGN.md): session → history →
//! ack → notifier. The headless daemon and the desktop shell both run one `Engine`, so
//! neither holds connection logic of its own.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast::error::RecvError;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

use crate::config::{BadServerUrl, Config, ConfigError, ConfigStore, Paths};
use crate::history::{History, HistoryError};
use crate::keyring_wait::{self, Retry};
use crate::notify::{Notifier, NotifyGate, NotifyHandle};
use crate::protocol::{Token, UserId};
use crate::secrets::{SecretStore, SecretsError};
use crate::session::{
    Credentials, OfflineReason, Session, SessionConfig, SessionEvent, SessionHandle, SessionState, SignedOutReason,
    Start,
};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The session signed out before the server took the token: it refused it (the
    /// reason says how), or the user signed out meanwhile (`None`).
    #[error("{}", .0.as_ref().map_or_else(|| "signed out before the server took the token".to_owned(), |r| r.to_string()))]
    Refused(Option<SignedOutReason>),
    /// The attempt failed; the reason says how (the session keeps retrying otherwise).
    #[error("could not reach the server: {0}")]
    Unreachable(OfflineReason),
    /// The session stopped (the engine is shutting down) before the server answered.
    #[error("could not reach the server: the session has stopped")]
    Stopped,
    #[error("the server accepted the token but did not say who you are; sign in again with --user-id")]
    NoUserId,
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    #[error("invalid server URL {url:?}: {reason}")]
    BadServer { url: String, reason: BadServerUrl },
}

/// How long a sign-in may take: a server without a welcome only shows it took the token
/// by answering the first heartbeat, so this must exceed the heartbeat interval.
const SIGN_IN_WAIT: Duration = Duration::from_secs(30);

pub struct Engine {
    session: SessionHandle,
    history: Arc<History>,
    notify: Option<NotifyHandle>,
    config: Arc<ConfigStore>,
    paths: Paths,
    secrets: SecretStore,
    bridge: JoinHandle<()>,
    /// The task reading the stored token ([`keyring_wait`]), while there is one.
    keyring: Option<AbortHandle>,
}

impl Engine {
    /// Loads the config (making it on first start), opens the history and starts the
    /// session; must be called within a tokio runtime. It never waits for the keyring:
    /// with a server configured the session starts signed out
    /// ([`SignedOutReason::ReadingKeyring`]) and a task of the engine reads the token and
    /// connects with it, or keeps trying while the keyring is locked or away, the session
    /// signed out with the reason meanwhile ([`keyring_wait`]). With no token stored the
    /// session waits, signed out. `notifier` is `None` where nothing should pop up (e.g.
    /// while signing in from the command line).
    pub fn start(paths: Paths, notifier: Option<Arc<dyn Notifier>>) -> Result<Engine, EngineError> {
        let store = Arc::new(ConfigStore::load_or_create(&paths.config_file)?);
        let config = store.get();
        let history = Arc::new(History::open(&paths.history_db)?);
        let retention =
            (config.history.max_rows, Duration::from_secs(config.history.max_age_days.saturating_mul(86_400)));
        let mut session_config = SessionConfig::new(config.device_uuid.to_string(), config.timing());
        session_config.client_name = Some(concat!("talkbell/", env!("CARGO_PKG_VERSION")).into());
        // The session owns who the user is from now on; the config only keeps it.
        session_config.user_id = config.user_id.clone();
        let start = match &config.server {
            Some(_) => Start::SignedOut(Some(SignedOutReason::ReadingKeyring)),
            None => Start::SignedOut(None),
        };
        let session = Session::spawn_with(session_config, start, history.clone());
        let keyring = config.server.clone().map(|server| {
            let reader = keyring_wait::spawn(session.clone(), SecretStore::new(), server, Retry::default());
            reader.abort_handle()
        });
        let notify =
            notifier.filter(|_| config.notifications.enabled).map(|n| NotifyGate::spawn(n, config.notify_settings()));
        let trace = notify.as_ref().and_then(|_| DeliveryTrace::from_env());
        let bridge = tokio::spawn(bridge(session.clone(), notify.clone(), store.clone(), trace));
        tokio::spawn(prune_daily(history.clone(), retention));
        Ok(Engine { session, history, notify, config: store, paths, secrets: SecretStore::new(), bridge, keyring })
    }

    pub fn session(&self) -> &SessionHandle {
        &self.session
    }

    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    pub fn notifications(&self) -> Option<&NotifyHandle> {
        self.notify.as_ref()
    }

    /// The config now (a copy); [`config_store`](Self::config_store) to change it.
    pub fn config(&self) -> Config {
        self.config.get()
    }

    /// The one owner of the config while the engine runs: change it only through
    /// [`ConfigStore::update`], never by saving the file beside it.
    pub fn config_store(&self) -> &Arc<ConfigStore> {
        &self.config
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Checks the token against the server through the session itself (there is no
    /// other way to open a socket), and only then keeps it in the keyring and the server
    /// and user id in the config. Returns the user id.
    pub async fn sign_in(&self, server: &str, token: Token, user_id: Option<UserId>) -> Result<UserId, EngineError> {
        crate::config::validate_server_url(server)
            .map_err(|reason| EngineError::BadServer { url: server.to_owned(), reason })?;
        // The user's sign-in wins over the stored token (the session ignores a late one too).
        self.stop_reading_keyring();
        let mut events = self.session.subscribe();
        self.session.set_credentials(Credentials {
            server: server.to_owned(),
            token: token.clone(),
            user_id: user_id.clone(),
        });
        let outcome = tokio::time::timeout(SIGN_IN_WAIT, async {
            let mut started = false;
            loop {
                match events.recv().await {
                    Ok(SessionEvent::State(state)) => match state {
                        SessionState::Connecting { .. } => started = true,
                        _ if !started => {}
                        // Who the session signed in as: the welcome's, else the one given.
                        SessionState::Connected { .. } => return self.session.user_id().ok_or(EngineError::NoUserId),
                        SessionState::SignedOut { reason } => return Err(EngineError::Refused(reason)),
                        SessionState::Backoff { reason, .. } => return Err(EngineError::Unreachable(reason)),
                        SessionState::Stopped => return Err(EngineError::Stopped),
                        SessionState::Authenticating => {}
                    },
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Err(EngineError::Stopped),
                }
            }
        })
        .await
        .unwrap_or(Err(EngineError::Timeout(SIGN_IN_WAIT)));
        let user = match outcome {
            Ok(user) => user,
            Err(e) => {
                self.session.sign_out();
                return Err(e);
            }
        };
        if let Err(e) = self.secrets.set(server, &token).await {
            self.session.sign_out();
            return Err(e.into());
        }
        self.config.update(|c| {
            c.server = Some(server.to_owned());
            c.user_id = Some(user.clone());
        })?;
        Ok(user)
    }

    /// Closes the link, removes the token from the keyring and forgets the user id.
    pub async fn sign_out(&self) -> Result<(), EngineError> {
        self.stop_reading_keyring();
        self.session.sign_out();
        if let Some(server) = self.config.get().server {
            delete_token(&server).await?;
        }
        self.config.update(|c| c.user_id = None)?;
        Ok(())
    }

    /// New heartbeat timings: saved in the config, used from the next connection.
    pub fn save_heartbeat(&self, interval_ms: u64, timeout_ms: u64) -> Result<(), EngineError> {
        let timing = self.config.update(|c| {
            c.heartbeat.interval_ms = interval_ms;
            c.heartbeat.timeout_ms = timeout_ms;
            c.timing()
        })?;
        self.session.set_timing(timing);
        Ok(())
    }

    pub async fn shutdown(&self) {
        self.stop_reading_keyring();
        self.session.shutdown().await;
        self.bridge.abort();
    }

    /// Ends the task reading the stored token, if it still runs. A keyring call it has
    /// in flight finishes on its own thread, unheard.
    fn stop_reading_keyring(&self) {
        if let Some(reader) = &self.keyring {
            reader.abort();
        }
    }

    /// Reconnects at once after resume from sleep or when the network comes up (logind,
    /// NetworkManager). For the long-running modes; a one-off `login` does without.
    pub fn watch_system(&self) {
        crate::wake::spawn(self.session.clone());
    }

    /// The keyring handle, for callers that show the keyring's state.
    pub fn secrets(&self) -> &SecretStore {
        &self.secrets
    }
}

/// Removes the configured server's token from the keyring and forgets the user id,
/// with no engine running (the `logout` command); a running engine has
/// [`Engine::sign_out`].
pub async fn forget_token(paths: &Paths) -> Result<(), EngineError> {
    let config = ConfigStore::load_or_create(&paths.config_file)?;
    if let Some(server) = config.get().server {
        delete_token(&server).await?;
    }
    config.update(|c| c.user_id = None)?;
    Ok(())
}

/// Removes `server`'s token from the keyring; none stored is no error.
async fn delete_token(server: &str) -> Result<(), EngineError> {
    match SecretStore::new().delete(server).await {
        Ok(()) | Err(SecretsError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Follows the session: talks and links coming up go to the notifier; a welcome's user
/// id is kept. With a [`DeliveryTrace`], each talk for the user handed to the notifier is
/// also written there.
async fn bridge(
    session: SessionHandle,
    notify: Option<NotifyHandle>,
    config: Arc<ConfigStore>,
    mut trace: Option<DeliveryTrace>,
) {
    let mut events = session.subscribe();
    loop {
        // Without a trace this is always `None`: no timer, no wake-up.
        let flush_at = trace.as_ref().and_then(DeliveryTrace::flush_due);
        let event = tokio::select! {
            event = events.recv() => event,
            () = sleep_until_some(flush_at) => {
                DeliveryTrace::flush_or_end(&mut trace);
                continue;
            }
        };
        if let (Some(n), Ok(event)) = (&notify, &event) {
            n.session_event(event);
            if let (Some(t), SessionEvent::Talk { talk, for_me: true, .. }) = (trace.as_mut(), event) {
                if let Err(e) = t.record(&talk.talk) {
                    tracing::warn!(error = %e, "delivery trace: cannot write; tracing stops");
                    trace = None;
                }
            }
        }
        match event {
            Ok(SessionEvent::Welcome { user }) => {
                if let Err(e) = config.update(|c| c.user_id = Some(user.id)) {
                    tracing::warn!(error = %e, "could not save the user id");
                }
            }
            Ok(SessionEvent::QueueReset { server, account }) => {
                tracing::warn!(
                    server = ?server,
                    account = %crate::untrusted::untrusted(account.as_str()),
                    "the server lost its queue: talks sent while it was lost may be missing"
                );
            }
            Ok(SessionEvent::State(SessionState::Stopped)) | Err(RecvError::Closed) => {
                DeliveryTrace::flush_or_end(&mut trace);
                return;
            }
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                // The talks are in the history; only their popups are lost to the lag.
                tracing::warn!(missed, "fell behind the session's events");
            }
        }
    }
}

/// The environment variable that turns the [`DeliveryTrace`] on: a file path.
pub const DELIVERY_TRACE_ENV: &str = "TALKBELL_DELIVERY_TRACE";

/// How long a traced line may wait in the buffer.
const TRACE_FLUSH_EVERY: Duration = Duration::from_millis(100);

/// For benchmarks only (talkbell-bench measures delivery latency with it): when
/// `TALKBELL_DELIVERY_TRACE=<file>` is set at [`Engine::start`] (and there is a notifier),
/// the bridge appends one line per talk for the user that it hands to the notifier,
/// `<unix time in µs>\t<talk text>`, with `\`, tab, CR and LF in the text written as
/// `\\`, `\t`, `\r` and `\n`. The writer is buffered and flushed at least every 100 ms
/// while lines wait, and at shutdown (or when dropped). A file that cannot be opened or
/// written is logged and the trace ends; it never stops the engine. Unset, it costs
/// nothing: no file, no timer, one `None` check per event.
struct DeliveryTrace {
    out: BufWriter<File>,
    /// Since when written lines wait unflushed.
    dirty_since: Option<Instant>,
}

impl DeliveryTrace {
    fn from_env() -> Option<DeliveryTrace> {
        let path = std::env::var_os(DELIVERY_TRACE_ENV).filter(|p| !p.is_empty())?;
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(file) => {
                tracing::info!(path = %std::path::Path::new(&path).display(), "delivery trace on (benchmarks)");
                Some(DeliveryTrace { out: BufWriter::with_capacity(64 * 1024, file), dirty_since: None })
            }
            Err(e) => {
                tracing::warn!(path = %std::path::Path::new(&path).display(), error = %e, "delivery trace: cannot open; no trace");
                None
            }
        }
    }

    /// One line, stamped now.
    fn record(&mut self, text: &str) -> std::io::Result<()> {
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        write!(self.out, "{now_us}\t")?;
        let mut rest = text;
        while let Some(i) = rest.find(['\\', '\t', '\r', '\n']) {
            self.out.write_all(&rest.as_bytes()[..i])?;
            let escaped: &[u8] = match rest.as_bytes()[i] {
                b'\\' => b"\\\\",
                b'\t' => b"\\t",
                b'\r' => b"\\r",
                _ => b"\\n",
            };
            self.out.write_all(escaped)?;
            rest = &rest[i + 1..];
        }
        self.out.write_all(rest.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.dirty_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// When the waiting lines must be flushed, if any wait.
    fn flush_due(&self) -> Option<Instant> {
        self.dirty_since.map(|since| since + TRACE_FLUSH_EVERY)
    }

    /// Flushes; on an error the trace ends (it is logged, never fatal).
    fn flush_or_end(trace: &mut Option<DeliveryTrace>) {
        if let Some(t) = trace {
            t.dirty_since = None;
            if let Err(e) = t.out.flush() {
                tracing::warn!(error = %e, "delivery trace: cannot write; tracing stops");
                *trace = None;
            }
        }
    }
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Applies the history's retention limits now and then once a day: one wake-up a day is
/// all it costs while the app sits in the tray.
async fn prune_daily(history: Arc<History>, (max_rows, max_age): (usize, Duration)) {
    let mut day = tokio::time::interval(Duration::from_secs(86_400));
    loop {
        day.tick().await;
        let h = history.clone();
        match tokio::task::spawn_blocking(move || h.prune(max_rows, max_age)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(removed = n, "history pruned to its retention limits"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not prune the history"),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_delivery_trace_writes_one_escaped_line_per_talk_and_asks_for_a_flush_within_100_ms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.tsv");
        let file = OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let mut trace = Some(DeliveryTrace { out: BufWriter::new(file), dirty_since: None });
        let t = trace.as_mut().unwrap();
        assert_eq!(t.flush_due(), None, "nothing waits: no timer");
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros();
        t.record("bench 1 1763900000123456").unwrap();
        t.record("two\tlines\nand a \\ and \r").unwrap();
        assert_eq!(t.flush_due(), Some(Instant::now() + TRACE_FLUSH_EVERY));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "buffered until the flush");
        DeliveryTrace::flush_or_end(&mut trace);
        assert_eq!(trace.as_ref().unwrap().flush_due(), None);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<(u128, &str)> = text
            .lines()
            .map(|l| {
                let (us, talk) = l.split_once('\t').unwrap();
                (us.parse().unwrap(), talk)
            })
            .collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert!(lines.iter().all(|(us, _)| *us >= before));
        assert_eq!(lines[0].1, "bench 1 1763900000123456");
        assert_eq!(lines[1].1, "two\\tlines\\nand a \\\\ and \\r");
    }

    #[test]
    fn without_the_variable_there_is_no_trace() {
        // The variable is not set in the test environment (and is never set by tests).
        if std::env::var_os(DELIVERY_TRACE_ENV).is_none() {
            assert!(DeliveryTrace::from_env().is_none());
        }
    }
}
