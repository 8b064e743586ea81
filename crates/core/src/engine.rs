//! The pieces wired together the one way data flows (DESIGN.md): session → history →
//! ack → notifier. The headless daemon and the desktop shell both run one `Engine`, so
//! neither holds connection logic of its own.
//!
//! The engine owns the config ([`ConfigStore`]) and every task it starts (a `JoinSet`,
//! stopped by [`Engine::shutdown`]); the session owns who the user is, and the engine
//! only keeps the session's word in the config.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::{AbortHandle, JoinSet};

use crate::config::{BadServerUrl, Config, ConfigError, ConfigStore, NotificationConfig, Paths};
use crate::history::{History, HistoryError};
use crate::i18n::{t, text, Lang, LanguageSetting, Msg};
use crate::keyring_wait::{self, Retry};
use crate::notify::quiet::{self, Mute, QuietHours};
use crate::notify::{
    Decision, NotificationKind, Notifier, NotifyGate, NotifyHandle, Outcome, PopupAction, DECISIONS_KEPT,
};
use crate::protocol::{Person, Token, UserId};
use crate::secrets::{SecretStore, SecretsError};
use crate::session::{
    Credentials, Identity, OfflineReason, Session, SessionConfig, SessionEvent, SessionHandle, SessionState,
    SignedOutReason, Start,
};
use crate::unread::{self, UnreadCount};

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
    #[error("{}", .0.as_ref().map_or_else(|| t(Msg::EngineSignedOutMeanwhile), |r| r.to_string()))]
    Refused(Option<SignedOutReason>),
    /// The attempt failed; the reason says how (the session keeps retrying otherwise).
    #[error("{}", text(Msg::EngineUnreachable, &[("reason", _0.to_string().as_str().into())]))]
    Unreachable(OfflineReason),
    /// The session stopped (the engine is shutting down) before the server answered.
    #[error("{}", t(Msg::EngineStopped))]
    Stopped,
    #[error("{}", t(Msg::EngineNoUserId))]
    NoUserId,
    /// A user id was given to a server whose welcome says who the user is.
    #[error("{}", t(Msg::EngineUserIdFromServer))]
    UserIdFromServer,
    #[error("{}", text(Msg::EngineTimeout, &[("seconds", _0.as_secs_f64().into())]))]
    Timeout(Duration),
    #[error("{}", text(Msg::EngineBadServer, &[("url", format!("{url:?}").as_str().into()), ("reason", reason.to_string().as_str().into())]))]
    BadServer { url: String, reason: BadServerUrl },
}

/// What a sign-in does when the server takes the token but says nothing of who the user
/// is (no welcome, and no user id given): [`Identity::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfUserUnknown {
    /// Fails with [`EngineError::NoUserId`], keeping nothing (the command line, which
    /// takes `--user-id`).
    Refuse,
    /// Signs in all the same; the window then asks for the user id
    /// ([`Engine::set_user_id`]).
    SignIn,
}

/// How long a sign-in may take: a server without a welcome only shows it took the token
/// by answering the first heartbeat, so this must exceed the heartbeat interval.
const SIGN_IN_WAIT: Duration = Duration::from_secs(30);

pub struct Engine {
    session: SessionHandle,
    history: Arc<History>,
    notify: Option<NotifyHandle>,
    /// What became of each talk's popup: the gate's decisions, or [`Outcome::Off`].
    decisions: broadcast::Sender<Decision>,
    /// The user's unread count, kept from the decisions.
    unread: UnreadCount,
    config: Arc<ConfigStore>,
    paths: Paths,
    secrets: SecretStore,
    /// Every task the engine starts (the bridge, the daily pruning, the keyring reader,
    /// the notification gate, the wake watch, a popup's reply; in a benchmark's build,
    /// the delivery trace): all stopped by [`Engine::shutdown`].
    tasks: Mutex<JoinSet<()>>,
    /// The task reading the stored token ([`keyring_wait`]), while there is one.
    keyring: Option<AbortHandle>,
    /// Where the engine's tasks run (the runtime it was started in): a popup's action may
    /// come on a thread of its own.
    runtime: tokio::runtime::Handle,
    /// What shows the popups (while notifications are on): also what says a reply written
    /// in a popup was not sent.
    popups: Option<Arc<dyn Notifier>>,
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
        let mut tasks = JoinSet::new();
        let keyring = config.server.clone().map(|server| {
            tasks.spawn(keyring_wait::read(session.clone(), SecretStore::new(), server, Retry::default()))
        });
        let (decisions, _) = broadcast::channel(DECISIONS_KEPT);
        let (unread, counting) = unread::start(session.watch(), history.clone(), decisions.subscribe());
        tasks.spawn(counting);
        #[cfg(feature = "delivery-trace")]
        if let Some(trace) = crate::notify::trace::DeliveryTrace::from_env() {
            tasks.spawn(trace.follow(decisions.subscribe()));
        }
        let popups = notifier.filter(|_| config.notifications.enabled);
        let notify = popups.clone().map(|n| start_gate(n, &config, decisions.clone(), &mut tasks));
        let followers = Followers { notify: notify.clone(), decisions: decisions.clone(), unread: unread.clone() };
        tasks.spawn(bridge(session.clone(), followers, store.clone()));
        tasks.spawn(prune_daily(history.clone(), retention, unread.clone()));
        let tasks = Mutex::new(tasks);
        Ok(Engine {
            session,
            history,
            notify,
            decisions,
            unread,
            config: store,
            paths,
            secrets: SecretStore::new(),
            tasks,
            keyring,
            runtime: tokio::runtime::Handle::current(),
            popups,
        })
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

    /// What became of each new talk's popup, from now on, one [`Decision`] per talk in
    /// the order they came: the gate's, or [`Outcome::Off`] when no gate runs.
    pub fn decisions(&self) -> broadcast::Receiver<Decision> {
        self.decisions.subscribe()
    }

    /// The user's unread talks (the session's user; while none is known, all), now and at
    /// every change: the engine's count, which the shells show and never count again.
    pub fn unread(&self) -> tokio::sync::watch::Receiver<u64> {
        self.unread.watch()
    }

    /// Marks the talks `rows` read; the unread count follows. Returns how many were unread.
    pub fn mark_read(&self, rows: &[i64]) -> Result<usize, EngineError> {
        let marked = self.history.mark_read(rows)?;
        if marked > 0 {
            self.unread.recount();
        }
        Ok(marked)
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
    /// and user id in the config. Returns who the server took the token as.
    pub async fn sign_in(
        &self,
        server: &str,
        token: Token,
        user_id: Option<UserId>,
        if_unknown: IfUserUnknown,
    ) -> Result<Identity, EngineError> {
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
                        SessionState::Connected { user: Identity::Unknown } if if_unknown == IfUserUnknown::Refuse => {
                            return Err(EngineError::NoUserId)
                        }
                        SessionState::Connected { user } => return Ok(user),
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
            c.user_id = user.id().cloned();
        })?;
        Ok(user)
    }

    /// Who the user is, on a server that does not say ([`Identity::Unknown`], or to
    /// correct an id given before): kept in the config, and the session's from now on.
    /// Refused where the server's welcome named the user.
    pub fn set_user_id(&self, id: UserId) -> Result<(), EngineError> {
        if matches!(self.session.state(), SessionState::Connected { user: Identity::Welcomed(_) }) {
            return Err(EngineError::UserIdFromServer);
        }
        self.config.update(|c| c.user_id = Some(id.clone()))?;
        self.session.set_user_id(id);
        Ok(())
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

    /// New heartbeat timings and, if given, a language: saved in one change of the config
    /// (all or nothing); the timings are used from the next connection, the language is
    /// this process's from now on (returned).
    pub fn save_settings(
        &self,
        interval_ms: u64,
        timeout_ms: u64,
        language: Option<LanguageSetting>,
    ) -> Result<Option<Lang>, EngineError> {
        let timing = self.config.update(|c| {
            c.heartbeat.interval_ms = interval_ms;
            c.heartbeat.timeout_ms = timeout_ms;
            c.language = language.unwrap_or(c.language);
            c.timing()
        })?;
        self.session.set_timing(timing);
        Ok(language.map(crate::i18n::choose))
    }

    /// Mutes `sender` for `duration` (none, or longer than the calendar holds: until
    /// unmuted), in place of any mute it had. Saved in the config; the gate follows at
    /// once.
    pub fn mute(&self, sender: Person, duration: Option<Duration>) -> Result<(), EngineError> {
        let now = Timestamp::now();
        let until = duration.and_then(|d| SignedDuration::try_from(d).ok()).and_then(|d| now.checked_add(d).ok());
        let mute = Mute { sender: sender.id, name: sender.name, until };
        self.change_hush(|n| n.mutes = quiet::with_mute(&n.mutes, mute, now))
    }

    /// Does what a popup's action asks that needs no window: "Mark read" marks its talks
    /// read, "Mute" mutes its sender for [`PopupAction::MUTE_FOR`], a reply written in the
    /// popup goes to the outbox ([`Engine::reply_from_popup`]). Returns the action back
    /// when it is the shell's to do ("Open", "Reply").
    pub fn on_popup_action(&self, action: PopupAction) -> Result<Option<PopupAction>, EngineError> {
        match action {
            PopupAction::MarkRead(kind) => {
                self.mark_read(&rows_of(kind))?;
                Ok(None)
            }
            PopupAction::MuteHour(sender) => {
                self.mute(sender, Some(PopupAction::MUTE_FOR))?;
                Ok(None)
            }
            PopupAction::Replied { kind, to, text: talk } => {
                self.reply_from_popup(kind, to, talk);
                Ok(None)
            }
            shell @ (PopupAction::Open(_) | PopupAction::Reply(_)) => Ok(Some(shell)),
        }
    }

    /// A reply written in a popup: into the session's outbox, as the window's Reply (sent
    /// once a link that takes replies is up), and its talk read. One the session refuses
    /// (too long, empty, a server without replies, signed out) is not sent at all, cut or
    /// otherwise: a popup says so, with the reason. Runs on a task of the engine.
    pub fn reply_from_popup(&self, kind: NotificationKind, to: Person, talk: String) {
        let (session, history, popups) = (self.session.clone(), self.history.clone(), self.popups.clone());
        let unread = self.unread.clone();
        let reply = async move {
            let row = match &kind {
                NotificationKind::Talk { row } => Some(*row),
                NotificationKind::Summary { .. } => None,
            };
            match session.reply(to.clone(), talk).await {
                Ok(_) => match tokio::task::spawn_blocking(move || history.mark_read(&rows_of(kind))).await {
                    Ok(Ok(0)) | Err(_) => {}
                    Ok(Ok(_)) => unread.recount(),
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot mark a replied talk read"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "a reply written in a popup was not taken");
                    let Some(popups) = popups else { return };
                    let popup = crate::notify::Notification {
                        title: text(Msg::PopupReplyNotSentTitle, &[("name", to.name.as_str().into())]),
                        body: e.to_string(),
                        kind: row.map_or(NotificationKind::Summary { rows: Vec::new() }, |row| {
                            NotificationKind::Talk { row }
                        }),
                        sound: false,
                        sender: None,
                    };
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || popups.show(&popup)).await {
                        tracing::warn!(error = %e, "cannot say that a reply was not sent");
                    }
                }
            }
        };
        self.spawn(reply);
    }

    /// Ends `sender`'s mute (and drops mutes that have ended).
    pub fn unmute(&self, sender: &UserId) -> Result<(), EngineError> {
        self.change_hush(|n| n.mutes = quiet::without_mute(&n.mutes, sender, Timestamp::now()))
    }

    /// The mutes in force now.
    pub fn mutes(&self) -> Vec<Mute> {
        let now = Timestamp::now();
        self.config.get().notifications.mutes.into_iter().filter(|m| m.holds(now)).collect()
    }

    /// New quiet hours (none: no quiet hours). Refused when they start and end at once.
    pub fn set_quiet_hours(&self, quiet: Option<QuietHours>) -> Result<(), EngineError> {
        self.change_hush(|n| n.quiet_hours = quiet)
    }

    /// Popups with or without sound.
    pub fn set_sound(&self, on: bool) -> Result<(), EngineError> {
        self.change_hush(|n| n.sound = on)
    }

    /// Changes the notification settings with `f`, saves them and hands the gate its new
    /// quiet hours, mutes and sound.
    fn change_hush(&self, f: impl FnOnce(&mut NotificationConfig)) -> Result<(), EngineError> {
        let hush = self.config.update(|c| {
            f(&mut c.notifications);
            c.hush()
        })?;
        if let Some(n) = &self.notify {
            n.set_hush(hush);
        }
        Ok(())
    }

    /// Closes the link and stops every task of the engine, the notification gate
    /// included; returns once they have all ended.
    pub async fn shutdown(&self) {
        self.stop_reading_keyring();
        self.session.shutdown().await;
        if let Some(n) = &self.notify {
            n.shutdown();
        }
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
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
        self.spawn(crate::wake::run(self.session.clone()));
    }

    /// Keeps the profile's status file (`talkbell status`) up to date for `process`, the
    /// holder of the profile's lock, until the engine stops.
    pub fn publish_status(&self, process: crate::instance::Holder) {
        let publisher = crate::status::publisher(&self.session, &self.paths, process);
        self.spawn(publisher);
    }

    /// Runs `task` as one of the engine's, on its runtime, once the tasks that have ended
    /// are let go (a popup's reply is one, and the engine may run for months).
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        spawn_reaped(&mut self.tasks.lock().unwrap_or_else(|e| e.into_inner()), task, &self.runtime);
    }
}

/// Lets go of the ended tasks in `tasks`, then spawns `task` there on `runtime`.
fn spawn_reaped(
    tasks: &mut JoinSet<()>,
    task: impl std::future::Future<Output = ()> + Send + 'static,
    runtime: &tokio::runtime::Handle,
) -> AbortHandle {
    while tasks.try_join_next().is_some() {}
    tasks.spawn_on(task, runtime)
}

/// The rows of the talks a popup stands for.
fn rows_of(kind: NotificationKind) -> Vec<i64> {
    match kind {
        NotificationKind::Talk { row } => vec![row],
        NotificationKind::Summary { rows } => rows,
    }
}

/// Starts the notification gate in `tasks`.
fn start_gate(
    notifier: Arc<dyn Notifier>,
    config: &Config,
    decisions: broadcast::Sender<Decision>,
    tasks: &mut JoinSet<()>,
) -> NotifyHandle {
    let (handle, gate) = NotifyGate::start(notifier, config.notify_settings(), decisions);
    handle.set_hush(config.hush());
    tasks.spawn(gate);
    handle
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

/// Who the bridge hands each talk to.
struct Followers {
    notify: Option<NotifyHandle>,
    decisions: broadcast::Sender<Decision>,
    /// Counted again when talks were missed.
    unread: UnreadCount,
}

/// Follows the session: talks go to the notifier; a welcome's user id is kept in the
/// config. With no notifier, each talk's decision is [`Outcome::Off`].
async fn bridge(session: SessionHandle, followers: Followers, config: Arc<ConfigStore>) {
    let Followers { notify, decisions, unread } = followers;
    let mut events = session.subscribe();
    loop {
        let event = events.recv().await;
        if let (Some(n), Ok(event)) = (&notify, &event) {
            n.session_event(event);
        } else if let Ok(SessionEvent::Talk { talk, row, for_me, .. }) = &event {
            // No gate to decide: the decision is that notifications are off.
            let _ = decisions.send(Decision {
                row: *row,
                talk: talk.clone(),
                for_me: *for_me,
                outcome: Outcome::Off,
                at: std::time::SystemTime::now(),
            });
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
            Ok(SessionEvent::State(SessionState::Stopped)) | Err(RecvError::Closed) => return,
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                // The talks are in the history; only their popups are lost to the lag.
                tracing::warn!(missed, "fell behind the session's events");
                unread.recount();
            }
        }
    }
}

/// Applies the history's retention limits now and then once a day: one wake-up a day is
/// all it costs while the app sits in the tray. The unread count follows what it removes.
async fn prune_daily(history: Arc<History>, (max_rows, max_age): (usize, Duration), unread: UnreadCount) {
    let mut day = tokio::time::interval(Duration::from_secs(86_400));
    loop {
        day.tick().await;
        let h = history.clone();
        match tokio::task::spawn_blocking(move || h.prune(max_rows, max_age)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                tracing::info!(removed = n, "history pruned to its retention limits");
                unread.recount();
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not prune the history"),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_has_ended_is_let_go_when_the_next_one_starts() {
        let runtime = tokio::runtime::Handle::current();
        let mut tasks = JoinSet::new();
        let ended: Vec<AbortHandle> = (0..3).map(|_| spawn_reaped(&mut tasks, async {}, &runtime)).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !ended.iter().all(AbortHandle::is_finished) {
            assert!(std::time::Instant::now() < deadline, "the tasks never ended");
            tokio::task::yield_now().await;
        }
        assert_eq!(tasks.len(), 3, "ended, not let go yet");
        spawn_reaped(&mut tasks, std::future::pending(), &runtime);
        assert_eq!(tasks.len(), 1, "only the running one is kept");
    }
}
