//! The one task that owns the socket (DESIGN.md, PROTOCOL.md §4).
//!
//! API contract (implementation in progress):
//! - [`Session::spawn`] starts the task and returns a [`SessionHandle`].
//! - Every state change is a [`SessionEvent::State`] on a broadcast channel, and the
//!   current state is always readable from [`SessionHandle::state`].
//! - A talk is handed to the [`TalkStore`] before it is acked and before any event about
//!   it is sent, so a talk is never shown that is not stored.

use std::sync::Arc;
use std::time::Duration;

use crate::protocol::{Person, ProtocolError, Seq, TalkMessage, Token, UserId};

/// Where talks are kept. The session calls it before acking; `history::History` is the
/// real one. Calls are short and synchronous (a local SQLite write).
pub trait TalkStore: Send + Sync + 'static {
    /// The highest `seq` stored for this server, sent as `resume` in the hello.
    fn last_seq(&self, server: &str) -> Result<Option<Seq>, StoreError>;
    /// Stores a talk received from `server`. A talk whose `seq` is already stored for
    /// that server is not stored again and gives [`Stored::Duplicate`].
    fn store(&self, server: &str, talk: &TalkMessage) -> Result<Stored, StoreError>;
}

/// What [`TalkStore::store`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// Newly stored, with its row id in the store.
    New(i64),
    /// Already there (same server and seq); dropped.
    Duplicate,
}

/// A store that could not store. The talk is then not acked, so the server keeps it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

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

/// What the session needs to sign in.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub token: Token,
    /// The user id, if known before the welcome (servers without a welcome need it).
    pub user_id: Option<UserId>,
}

#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// `ws://` or `wss://` URL of the talk server.
    pub server: String,
    /// This device's uuid (config).
    pub device_uuid: String,
    pub timing: Timing,
    pub max_message_bytes: usize,
    /// Sent as the `client` extension of the hello.
    pub client_name: Option<String>,
}

/// The state machine's states (DESIGN.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// No credentials, or the server refused them: no attempts until new ones are set.
    SignedOut { reason: Option<String> },
    /// Opening TCP/TLS/WebSocket (attempt counts from 1 since the last healthy link).
    Connecting { attempt: u32 },
    /// Socket open, hello sent, waiting for the first frame.
    Authenticating,
    /// Up. `user` is who the server says we are (welcome) or the configured id.
    Connected { user: Option<Person> },
    /// Waiting before the next attempt.
    Backoff { attempt: u32, delay: Duration, until: std::time::SystemTime, reason: String },
    /// Shut down for good.
    Stopped,
}

/// Everything the session tells its subscribers.
#[derive(Clone, Debug)]
pub enum SessionEvent {
    State(SessionState),
    /// A new talk, stored. `for_me` is true when `to.id` is the signed-in user.
    Talk { talk: TalkMessage, row: i64, for_me: bool },
    /// A talk with a seq already stored was dropped.
    Duplicate { seq: Seq },
    /// A frame that was not understood was counted and dropped; the link stays up.
    Dropped { error: ProtocolError },
    /// A frame over the size limit: refused, and the link is reconnected.
    Oversized { size: usize, limit: usize },
    /// A talk could not be stored; it was not acked and the link is reconnected.
    StoreFailed { error: String },
    /// The server said who we are.
    Welcome { user: Person },
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

#[allow(dead_code)]
pub(crate) struct Placeholder(Arc<()>);
