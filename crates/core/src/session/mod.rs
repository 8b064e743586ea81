//! The one task that owns the socket (DESIGN.md, PROTOCOL.md §4).
//!
//! [`Session::spawn`] starts the task and returns a [`SessionHandle`]; the handle is the
//! only way to talk to it, so there is never a second path that opens a socket and never
//! more than one attempt in flight. Every state change is a [`SessionEvent::State`] on a
//! broadcast channel, and the current state is always readable from the handle, with who
//! the signed-in user is ([`SessionNow`]): the session owns that fact, and the engine,
//! the sign-in and the unread counts read it from here. A talk is
//! handed to the [`TalkStore`] before it is acked and before any event about it is sent,
//! so nothing is shown that is not stored.

mod backoff;
mod connector;
pub mod outbox;
mod proxy;
mod reason;
mod task;
mod transport;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use backoff::Backoff;
pub use reason::{OfflineReason, ProxyError, Refusal, SignedOutReason, Untrusted};
pub use transport::{ProxySettings, Transport};

use crate::i18n::{t, text, Msg};
use crate::protocol::{Person, ProtocolError, Seq, TalkMessage, Token, UserId};
use outbox::{Outgoing, Queued, Reply, ReplyError};

/// What a [`TalkStore`] call returns: the store works off the async threads (the
/// history's writer thread) and the session awaits it.
pub type StoreFuture<'a, T> = futures_util::future::BoxFuture<'a, Result<T, StoreError>>;

/// Where a hello resumes from: the highest `seq` stored for one account on one server,
/// and the epoch (the queue's lifetime, PROTOCOL.md §3) it counts in, if the server named
/// one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub seq: Seq,
    pub epoch: Option<String>,
}

/// A talk read from the socket, as the session hands it to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub talk: TalkMessage,
    /// The talk came with a `seq` that is not one (negative, fractional, too large, not a
    /// number): it has none, is never acked (so the server sends it on every link), and
    /// is stored once, a repeat told by its server, recipient, sender and text.
    pub unusable_seq: bool,
}

impl Inbound {
    /// A talk whose `seq`, if any, was usable.
    pub fn new(talk: TalkMessage) -> Self {
        Inbound { talk, unusable_seq: false }
    }
}

/// Where talks are kept. The session calls it before acking; `history::History` is the
/// real one. Every call is awaited: a store that writes to a disk does it off the async
/// threads.
pub trait TalkStore: Send + Sync + 'static {
    /// The cursor of `user` on this server, whose seq is sent as `resume` (with its
    /// epoch) in a hello as that user. A `seq` numbers one recipient's talks, so each
    /// account on a server has its own. None: never linked.
    fn cursor<'a>(&'a self, server: &'a str, user: &'a UserId) -> StoreFuture<'a, Option<Cursor>>;
    /// Stores talks received from `server` (what the session read in one go, before one
    /// ack for all of them), counted in the queue lifetime `epoch`. A talk whose `seq` is
    /// already stored for that server, recipient and epoch (or, with an unusable seq,
    /// whose sender and text are) is not stored again and gives [`Stored::Duplicate`].
    /// On an error none is acked, so the server sends them all again and those stored
    /// already are dropped as duplicates.
    fn store_all<'a>(
        &'a self,
        server: &'a str,
        epoch: Option<&'a str>,
        talks: &'a [Inbound],
    ) -> StoreFuture<'a, Vec<Stored>>;
    /// `user` linked to `server` (a hello went out). From then on the server keeps this
    /// device's talks for them, so later hellos must carry a `resume` even if nothing has
    /// been stored yet (the cursor is `Seq(0)`): without one the server replays nothing,
    /// and what it queued while the app was closed would never arrive.
    fn linked<'a>(&'a self, server: &'a str, user: &'a UserId) -> StoreFuture<'a, ()>;
    /// The server named `user`'s queue `epoch` (None: kept as it is): the cursor keeps
    /// it. With `reset` the cursor goes back to 0, as the server's seqs start again.
    fn set_epoch<'a>(
        &'a self,
        server: &'a str,
        user: &'a UserId,
        epoch: Option<&'a str>,
        reset: bool,
    ) -> StoreFuture<'a, ()>;
    /// Keeps `reply` of `from` on `server` as the user's outgoing talk, queued; its row.
    fn queue_reply<'a>(&'a self, server: &'a str, from: &'a Person, reply: &'a Reply) -> StoreFuture<'a, i64>;
    /// The queued replies of `from` on `server`, oldest first.
    fn outbox<'a>(&'a self, server: &'a str, from: &'a UserId) -> StoreFuture<'a, Vec<Queued>>;
    /// The queued reply with send id `id` was answered: `outcome`, at the server's `ts`.
    /// Its row; none when no queued reply has that id.
    fn reply_done<'a>(&'a self, id: &'a str, outcome: &'a Outgoing, ts: Option<i64>) -> StoreFuture<'a, Option<i64>>;
}

/// What [`TalkStore::store_all`] did with one talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Newly stored, with its row id in the store.
    New(i64),
    /// Already there (same server, recipient, epoch and seq); dropped.
    Duplicate,
}

/// Why a store could not store (or read a cursor). The talk is then not acked, so the
/// server keeps it. `Display` says what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum StoreError {
    /// No space left: nothing more can be stored until some is freed.
    #[error("{}", t(Msg::HistoryDiskFull))]
    DiskFull,
    /// Another process holds the store's lock: retried with the next link.
    #[error("{}", t(Msg::HistoryBusy))]
    Busy,
    /// The store's file is damaged.
    #[error("{}", text(Msg::HistoryCorrupt, &[("detail", detail.into())]))]
    Corrupt { detail: String },
    /// The store stopped working (its writer is gone): restart Talkbell.
    #[error("{}", t(Msg::HistoryStopped))]
    Stopped,
    /// Any other failure, as the store reported it.
    #[error("{}", text(Msg::HistoryFailed, &[("detail", detail.into())]))]
    Other { detail: String },
}

/// Timings of PROTOCOL.md §4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub connect_timeout: Duration,
    /// How long a close handshake may take before the socket is dropped.
    pub close_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub healthy_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            healthy_after: Duration::from_secs(30),
        }
    }
}

/// What the session needs to sign in: which server, and the user's token for it.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// `ws://` or `wss://` URL of the talk server.
    pub server: String,
    pub token: Token,
    /// The user id, if known before the welcome (servers without a welcome need it).
    pub user_id: Option<UserId>,
}

#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// This device's uuid (config).
    pub device_uuid: String,
    pub timing: Timing,
    pub max_message_bytes: usize,
    /// Sent as the `client` extension of the hello.
    pub client_name: Option<String>,
    /// Seeds the backoff jitter, for reproducible tests; `None` in real use.
    pub jitter_seed: Option<u64>,
    /// The roots TLS trusts and the proxies (the system's and the environment's).
    pub transport: Transport,
    /// Who signed in last (the config's user id): the session's user until credentials
    /// or a welcome say otherwise, or a sign-out. `None` in [`SessionConfig::new`].
    pub user_id: Option<UserId>,
}

impl SessionConfig {
    pub fn new(device_uuid: impl Into<String>, timing: Timing) -> Self {
        SessionConfig {
            device_uuid: device_uuid.into(),
            timing,
            max_message_bytes: crate::protocol::MAX_MESSAGE_BYTES,
            client_name: Some(concat!("talkbell/", env!("CARGO_PKG_VERSION")).to_owned()),
            jitter_seed: None,
            transport: Transport::from_env(),
            user_id: None,
        }
    }
}

/// The state machine's states (DESIGN.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// No credentials, or the server refused them, or the stored token cannot be read
    /// from the keyring yet: no attempts until credentials are set. `None`: nobody has
    /// signed in (or the user signed out).
    SignedOut { reason: Option<SignedOutReason> },
    /// Opening TCP/TLS/WebSocket (attempt counts from 1 since the last healthy link).
    Connecting { attempt: u32 },
    /// Socket open, hello sent, waiting for the first frame.
    Authenticating,
    /// Up, and who the server took the hello as ([`Identity`]).
    Connected { user: Identity },
    /// Waiting before the next attempt, and why the last one failed.
    Backoff { attempt: u32, delay: Duration, until: std::time::SystemTime, reason: OfflineReason },
    /// Shut down for good.
    Stopped,
}

/// Who the signed-in user is on a live link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The server's welcome named the user.
    Welcomed(Person),
    /// The server sent no welcome (an original-style server): the user id given at sign-in
    /// or set since ([`SessionHandle::set_user_id`]).
    Given(UserId),
    /// The server sent no welcome and no user id is known: connected, but this server does
    /// not say who the user is, so no talk can be told as theirs until a user id is set.
    Unknown,
}

impl Identity {
    /// The user's id, where it is known.
    pub fn id(&self) -> Option<&UserId> {
        match self {
            Identity::Welcomed(p) => Some(&p.id),
            Identity::Given(id) => Some(id),
            Identity::Unknown => None,
        }
    }

    /// The person the welcome named, if one did.
    pub fn welcomed(&self) -> Option<&Person> {
        match self {
            Identity::Welcomed(p) => Some(p),
            _ => None,
        }
    }
}

/// What the session publishes at every change ([`SessionHandle::watch`]): its state, and
/// who the signed-in user is, so that nobody else keeps a user id of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionNow {
    pub state: SessionState,
    /// Who the session signs in as: the server's welcome, else the credentials' user id
    /// (at start [`SessionConfig::user_id`]). `None`: not known yet (a first sign-in
    /// without a user id, before the welcome), or signed out by the user.
    pub user: Option<UserId>,
    /// Whether the server takes replies (its last welcome listed `send`): then a reply
    /// may be written, online or not (it waits in the outbox).
    pub replies: bool,
}

/// Everything the session tells its subscribers.
#[derive(Clone, Debug)]
pub enum SessionEvent {
    State(SessionState),
    /// A new talk, stored. `for_me` is true when `to.id` is the signed-in user.
    /// `replay` is true for a talk the server replayed (its seq is at most the welcome's
    /// `last_seq`): a catch-up, not a live talk. Without a `last_seq` nothing is a replay.
    Talk {
        talk: TalkMessage,
        row: i64,
        for_me: bool,
        replay: bool,
    },
    /// The server lost the queue of `account` (a new epoch, or `reset`, PROTOCOL.md §3):
    /// its cursor was reset and the history kept. Talks sent while the queue was lost
    /// may be missing; the user should be told so.
    QueueReset {
        server: String,
        account: UserId,
    },
    /// A reply of the user's changed where it stands (kept queued, sent, failed).
    Reply {
        row: i64,
        outgoing: Outgoing,
    },
    /// A talk with a seq already stored was dropped.
    Duplicate {
        seq: Seq,
    },
    /// A frame that was not understood was counted and dropped; the link stays up.
    Dropped {
        error: ProtocolError,
    },
    /// A frame over the size limit: refused, and the link is reconnected.
    Oversized {
        size: usize,
        limit: usize,
    },
    /// A talk could not be stored; it was not acked and the link is reconnected.
    StoreFailed {
        error: StoreError,
    },
    /// The server said who we are.
    Welcome {
        user: Person,
    },
}

/// Counters a status line or a test can read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub connects: u64,
    pub talks: u64,
    pub duplicates: u64,
    pub dropped_frames: u64,
    pub oversized_frames: u64,
    pub heartbeats_sent: u64,
}

impl SessionState {
    /// Signed out because the stored token cannot be read from the keyring yet (see
    /// [`SignedOutReason::is_keyring`]).
    pub fn waiting_for_keyring(&self) -> bool {
        matches!(self, SessionState::SignedOut { reason: Some(r) } if r.is_keyring())
    }

    /// A short word for a status line, a tray tooltip or a log.
    pub fn label(&self) -> &'static str {
        match self {
            SessionState::SignedOut { .. } => "signed out",
            SessionState::Connecting { .. } => "connecting",
            SessionState::Authenticating => "authenticating",
            SessionState::Connected { .. } => "connected",
            SessionState::Backoff { .. } => "offline",
            SessionState::Stopped => "stopped",
        }
    }
}

/// What the engine's keyring reader found for the configured server
/// ([`SessionHandle::keyring_answer`]).
#[derive(Clone, Debug)]
pub enum KeyringAnswer {
    /// The stored token: sign in with it.
    Token(Credentials),
    /// Nothing is stored: signed out until the user signs in (no reason shown).
    Missing,
    /// It cannot be read (yet): signed out for this reason.
    Unreadable(SignedOutReason),
}

/// What a handle asks the task to do.
#[derive(Debug)]
pub(crate) enum Command {
    ReconnectNow,
    SetCredentials(Credentials),
    FromKeyring(KeyringAnswer),
    SignOut,
    SetTiming(Timing),
    SetUserId(UserId),
    Reply { to: Person, text: String, done: oneshot::Sender<Result<i64, ReplyError>> },
    Shutdown { done: oneshot::Sender<()> },
}

/// Counters shared between the task (writer) and handles (readers).
pub(crate) type SharedStats = Arc<Mutex<SessionStats>>;

/// The caller's side of a session. Cheap to clone; the task stops when the last handle is
/// dropped or on [`SessionHandle::shutdown`].
#[derive(Clone)]
pub struct SessionHandle {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<SessionEvent>,
    now: watch::Receiver<SessionNow>,
    stats: SharedStats,
}

/// Namespace for starting a session.
pub struct Session;

/// How many events a slow subscriber may fall behind before it misses some. History is
/// not at risk (it is written before events are sent); a lagging subscriber learns how
/// many it missed from `RecvError::Lagged`.
const EVENT_BUFFER: usize = 4096;

/// How a session starts ([`Session::spawn_with`]).
#[derive(Clone, Debug)]
pub enum Start {
    /// Connecting at once with these credentials.
    SignedIn(Credentials),
    /// Signed out, for this reason, until credentials are set.
    SignedOut(Option<SignedOutReason>),
}

impl Session {
    /// Starts the task on the current tokio runtime. Without credentials it waits,
    /// signed out, for [`SessionHandle::set_credentials`].
    pub fn spawn(config: SessionConfig, credentials: Option<Credentials>, store: Arc<dyn TalkStore>) -> SessionHandle {
        let start = match credentials {
            Some(c) => Start::SignedIn(c),
            None => Start::SignedOut(None),
        };
        Session::spawn_with(config, start, store)
    }

    /// [`Session::spawn`], starting signed out with a reason if need be (e.g.
    /// [`SignedOutReason::ReadingKeyring`] while the engine reads the stored token). The
    /// state is readable from the handle at once.
    pub fn spawn_with(config: SessionConfig, start: Start, store: Arc<dyn TalkStore>) -> SessionHandle {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let first = match &start {
            Start::SignedIn(c) => SessionNow {
                state: SessionState::SignedOut { reason: None },
                user: c.user_id.clone().or_else(|| config.user_id.clone()),
                replies: false,
            },
            Start::SignedOut(reason) => SessionNow {
                state: SessionState::SignedOut { reason: reason.clone() },
                user: config.user_id.clone(),
                replies: false,
            },
        };
        let (now_tx, now) = watch::channel(first);
        let stats = SharedStats::default();
        let task = task::SessionTask::new(config, start, store, command_rx, events.clone(), now_tx, stats.clone());
        tokio::spawn(task.run());
        SessionHandle { commands, events, now, stats }
    }
}

impl SessionHandle {
    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.events.subscribe()
    }

    /// The state now.
    pub fn state(&self) -> SessionState {
        self.now.borrow().state.clone()
    }

    /// Who the signed-in user is now (see [`SessionNow::user`]).
    pub fn user_id(&self) -> Option<UserId> {
        self.now.borrow().user.clone()
    }

    /// A receiver that sees every latest state and user; handy to wait for one.
    pub fn watch(&self) -> watch::Receiver<SessionNow> {
        self.now.clone()
    }

    pub fn stats(&self) -> SessionStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Skip any backoff wait and try now; on a live link, reconnect. Ignored when
    /// signed out (a rejected token must not be retried on its own).
    pub fn reconnect_now(&self) {
        let _ = self.commands.send(Command::ReconnectNow);
    }

    /// Sign in (again), to this server with this token; connects at once.
    pub fn set_credentials(&self, credentials: Credentials) {
        let _ = self.commands.send(Command::SetCredentials(credentials));
    }

    /// What the engine's keyring reader found. It is taken only while the session is
    /// signed out for a keyring reason ([`SignedOutReason::is_keyring`]): a sign-in (or a
    /// sign-out) made meanwhile wins, and a late answer never replaces its credentials.
    pub fn keyring_answer(&self, answer: KeyringAnswer) {
        let _ = self.commands.send(Command::FromKeyring(answer));
    }

    /// Close the link and forget the credentials until new ones are set.
    pub fn sign_out(&self) {
        let _ = self.commands.send(Command::SignOut);
    }

    /// Who the user is, on a server that sends no welcome ([`Identity::Unknown`] or
    /// [`Identity::Given`]): talks to this id are the user's from now on, on this link and
    /// the next. A welcome's word wins over it.
    pub fn set_user_id(&self, id: UserId) {
        let _ = self.commands.send(Command::SetUserId(id));
    }

    /// New timings; they apply from the next connection.
    pub fn set_timing(&self, timing: Timing) {
        let _ = self.commands.send(Command::SetTiming(timing));
    }

    /// Replies `text` to `to` (PROTOCOL.md 1.4): checked, kept in the history's outbox and
    /// sent when a link that takes replies is up. Its row in the history; where it stands
    /// later comes as [`SessionEvent::Reply`].
    pub async fn reply(&self, to: Person, text: String) -> Result<i64, ReplyError> {
        outbox::check_text(&text)?;
        let (done, result) = oneshot::channel();
        self.commands.send(Command::Reply { to, text, done }).map_err(|_| ReplyError::Stopped)?;
        result.await.unwrap_or(Err(ReplyError::Stopped))
    }

    /// Closes the link (close handshake bounded in time) and stops the task.
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Shutdown { done }).is_ok() {
            let _ = finished.await;
        }
    }

    /// Waits until `pred` holds for the state, or the session stops.
    pub async fn wait_for(&self, pred: impl Fn(&SessionState) -> bool) -> SessionState {
        let mut rx = self.now.clone();
        let result = rx.wait_for(|n| pred(&n.state) || n.state == SessionState::Stopped).await;
        match result {
            Ok(now) => now.state.clone(),
            Err(_) => SessionState::Stopped,
        }
    }
}
