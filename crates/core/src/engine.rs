//! The pieces wired together the one way data flows (DESIGN.md): session → history →
//! ack → notifier. The headless daemon and the desktop shell both run one `Engine`, so
//! neither holds connection logic of its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError, Paths};
use crate::history::{History, HistoryError};
use crate::notify::{NotifyGate, NotifyHandle, Notifier};
use crate::protocol::{Token, UserId};
use crate::secrets::{SecretStore, SecretsError};
use crate::session::{
    Credentials, Session, SessionConfig, SessionEvent, SessionHandle, SessionState,
};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("the server refused the token: {0}")]
    Refused(String),
    #[error("could not reach the server: {0}")]
    Unreachable(String),
    #[error("the server accepted the token but did not say who you are; sign in again with --user-id")]
    NoUserId,
    #[error("no answer from the server within {0:?}")]
    Timeout(Duration),
    #[error("invalid server URL {url:?}: {reason}")]
    BadServer { url: String, reason: String },
}

/// How long a sign-in may take: a server without a welcome only shows it took the token
/// by answering the first heartbeat, so this must exceed the heartbeat interval.
const SIGN_IN_WAIT: Duration = Duration::from_secs(30);

pub struct Engine {
    session: SessionHandle,
    history: Arc<History>,
    notify: Option<NotifyHandle>,
    config: Arc<Mutex<Config>>,
    paths: Paths,
    secrets: SecretStore,
    bridge: JoinHandle<()>,
}

impl Engine {
    /// Loads the config (making it on first start), opens the history, reads the token
    /// for the configured server from the keyring and starts the session. With no token
    /// stored the session waits, signed out. `notifier` is `None` where nothing should
    /// pop up (e.g. while signing in from the command line).
    pub async fn start(paths: Paths, notifier: Option<Arc<dyn Notifier>>) -> Result<Engine, EngineError> {
        let config = Config::load_or_create(&paths.config_file)?;
        let history = Arc::new(History::open(&paths.history_db)?);
        let retention = (config.history.max_rows, Duration::from_secs(config.history.max_age_days.saturating_mul(86_400)));
        let credentials = match &config.server {
            None => None,
            Some(server) => {
                match SecretStore::new().get(server).await {
                    Ok(token) => Some(Credentials { server: server.clone(), token, user_id: config.user_id.clone() }),
                    Err(SecretsError::NotFound { .. }) => {
                        tracing::info!("no token in the keyring: signed out until `talkbell login`");
                        None
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let mut session_config = SessionConfig::new(config.device_uuid.to_string(), config.timing());
        session_config.client_name = Some(concat!("talkbell/", env!("CARGO_PKG_VERSION")).into());
        let session = Session::spawn(session_config, credentials, history.clone());
        let notify = notifier
            .filter(|_| config.notifications.enabled)
            .map(|n| NotifyGate::spawn(n, config.notify_settings()));
        let config = Arc::new(Mutex::new(config));
        let bridge = tokio::spawn(bridge(session.clone(), notify.clone(), config.clone(), paths.clone()));
        tokio::spawn(prune_daily(history.clone(), retention));
        Ok(Engine { session, history, notify, config, paths, secrets: SecretStore::new(), bridge })
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

    pub fn config(&self) -> Config {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
                        SessionState::Connected { user: Some(user) } => return Ok(user.id),
                        SessionState::Connected { user: None } => {
                            return user_id.clone().ok_or(EngineError::NoUserId)
                        }
                        SessionState::SignedOut { reason } => {
                            return Err(EngineError::Refused(reason.unwrap_or_default()))
                        }
                        SessionState::Backoff { reason, .. } => return Err(EngineError::Unreachable(reason)),
                        SessionState::Stopped => return Err(EngineError::Unreachable("stopped".into())),
                        SessionState::Authenticating => {}
                    },
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Err(EngineError::Unreachable("stopped".into())),
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
        let mut config = self.config();
        config.server = Some(server.to_owned());
        config.user_id = Some(user.clone());
        config.save(&self.paths.config_file)?;
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(user)
    }

    /// Closes the link and removes the token from the keyring.
    pub async fn sign_out(&self) -> Result<(), EngineError> {
        self.session.sign_out();
        forget_token(&self.paths).await
    }

    /// New heartbeat timings: saved in the config, used from the next connection.
    pub fn save_heartbeat(&self, interval_ms: u64, timeout_ms: u64) -> Result<(), EngineError> {
        let mut config = self.config();
        config.heartbeat.interval_ms = interval_ms;
        config.heartbeat.timeout_ms = timeout_ms;
        config.save(&self.paths.config_file)?;
        self.session.set_timing(config.timing());
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    pub async fn shutdown(&self) {
        self.session.shutdown().await;
        self.bridge.abort();
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

/// Removes the configured server's token from the keyring and forgets the user id; no
/// running session is needed (the `logout` command).
pub async fn forget_token(paths: &Paths) -> Result<(), EngineError> {
    let mut config = Config::load_or_create(&paths.config_file)?;
    if let Some(server) = config.server.clone() {
        match SecretStore::new().delete(&server).await {
            Ok(()) | Err(SecretsError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    config.user_id = None;
    config.save(&paths.config_file)?;
    Ok(())
}

/// Follows the session: talks and links coming up go to the notifier; a welcome's user
/// id is kept.
async fn bridge(session: SessionHandle, notify: Option<NotifyHandle>, config: Arc<Mutex<Config>>, paths: Paths) {
    let mut events = session.subscribe();
    loop {
        let event = events.recv().await;
        if let (Some(n), Ok(event)) = (&notify, &event) {
            n.session_event(event);
        }
        match event {
            Ok(SessionEvent::Welcome { user }) => {
                let mut c = config.lock().unwrap_or_else(|e| e.into_inner());
                if c.user_id.as_ref() != Some(&user.id) {
                    c.user_id = Some(user.id);
                    if let Err(e) = c.save(&paths.config_file) {
                        tracing::warn!(error = %e, "could not save the user id");
                    }
                }
            }
            Ok(SessionEvent::State(SessionState::Stopped)) | Err(RecvError::Closed) => return,
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                // The talks are in the history; only their popups are lost to the lag.
                tracing::warn!(missed, "fell behind the session's events");
            }
        }
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
