//! The relay's queue and routing storage behind one trait, [`Broker`]: the hub
//! (`hub.rs`) talks to it and to nothing below it, and the protocol code (WebSocket,
//! HTTP) talks only to the hub, so neither knows which broker runs.
//!
//! - [`sqlite::Store`]: one process, a SQLite file (the default). Every talk is appended
//!   and handed out by this process, so it has no other node to wake.
//! - [`redis::RedisBroker`]: several relays on one Redis (streams, pub/sub, Lua), chosen
//!   with `--broker redis://…`: an append wakes the other nodes itself,
//!   [`Broker::watch`] subscribes this node to a recipient's wake-ups, and
//!   [`Broker::wakeups`] hands them to the hub.
//!
//! How the hub keeps its ordering rule (replay up to a `seq`, then live with no gap)
//! with any broker is written at the top of `hub.rs`; what it asks of a broker is
//! written on [`Broker::watch`], [`Broker::register`], [`Broker::wake`] and
//! [`Broker::wakeups`].
//!
//! A `send` (PROTOCOL.md 1.4) is appended with an idempotency key ([`NewTalk::key`]): the
//! broker keeps the key with the talk's `seq` and `ts` for [`SEND_KEY_TTL_MS`], and an
//! append with a known key stores nothing and answers the first one's `seq` and `ts`.
//! Keys are per recipient (the hub puts the sender into the key): an id reused for another
//! recipient is another talk.

pub mod redis;
mod redis_lua;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use talkbell_core::protocol::{Person, Seq, TalkMessage, UserId};
use tokio::sync::mpsc;

/// How long a `send`'s idempotency key is kept: PROTOCOL.md promises 24 hours; an hour
/// more covers a clock that is a little off.
pub const SEND_KEY_TTL_MS: i64 = 25 * 3600 * 1000;

/// What a [`Broker`] method returns: a boxed future, so that the trait is object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A duration in milliseconds, as the queue keeps times.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}

/// Which cap refused a talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueFull {
    #[error("the recipient's queue is full ({cap} undelivered talks); try again once they have read some")]
    Recipient { cap: usize },
    #[error("this sender's share of the recipient's queue is full ({cap} undelivered talks); try again once they have read some")]
    Sender { cap: usize },
}

/// Why a broker did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The talk was refused and nothing was stored (see [`QueueCaps`]).
    #[error("{0}")]
    QueueFull(#[from] QueueFull),
    /// The broker is out of reach for now (Redis down): nothing was stored, try again.
    #[error("the queue is out of reach: {0}")]
    Unavailable(String),
    /// The broker itself failed (its database, its network).
    #[error("{0}")]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

/// How many talks a recipient's queue takes. **An accepted talk is never evicted**: past
/// either cap new talks are refused and nothing queued is touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueCaps {
    pub per_recipient: usize,
    pub per_sender: usize,
}

impl QueueCaps {
    /// `per_recipient`, and a tenth of it (at least 1) per sender.
    pub fn new(per_recipient: usize) -> Self {
        QueueCaps { per_recipient, per_sender: (per_recipient / 10).max(1) }
    }
}

/// When a device is forgotten, so that one that never comes back cannot hold its
/// recipient's queue full (the rule is written at the top of `broker/sqlite.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    /// Devices kept per recipient.
    pub max: usize,
    /// A device not seen for this long is forgotten.
    pub expiry_ms: i64,
}

impl Default for DeviceRule {
    fn default() -> Self {
        DeviceRule { max: 16, expiry_ms: 7 * 24 * 3600 * 1000 }
    }
}

/// One device of a recipient (its hello's `uuid`): a cursor once it resumes or acks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub user: UserId,
    pub uuid: String,
}

/// A talk to append: from whom, to whom (as the users table names them), what, when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTalk {
    pub from: Person,
    pub to: Person,
    pub talk: String,
    pub ts: i64,
    /// A `send`'s idempotency key (the sender and the frame's id): one talk per key and
    /// recipient for [`SEND_KEY_TTL_MS`]. None for a POST or a plain talk frame.
    pub key: Option<String>,
}

/// What an append did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    pub ts: i64,
    /// The recipient's queue's epoch the talk is in.
    pub epoch: String,
    /// The key was known: nothing was stored, `seq` and `ts` are the first append's.
    pub duplicate: bool,
}

/// What a broker tells the hub about talks other nodes appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// A talk in the recipient's queue of this epoch.
    Talk { epoch: String, talk: StoredTalk },
    /// The recipient's queue was lost and is now this epoch: connections of another
    /// epoch must reconnect to be told (PROTOCOL.md 3).
    NewEpoch { user: UserId, epoch: String },
    /// Another node's `--deliver-to-all` copy ([`Broker::broadcast`]) of a talk it
    /// delivered: for every connection here but the recipient's.
    Copy(StoredTalk),
}

/// A talk as it is queued for its recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTalk {
    pub seq: u64,
    pub ts: i64,
    pub from: Person,
    pub to: Person,
    pub talk: String,
}

impl StoredTalk {
    pub fn new(appended: &Appended, talk: NewTalk) -> Self {
        StoredTalk { seq: appended.seq, ts: appended.ts, from: talk.from, to: talk.to, talk: talk.talk }
    }

    pub fn message(&self) -> TalkMessage {
        TalkMessage {
            from: self.from.clone(),
            to: self.to.clone(),
            talk: self.talk.clone(),
            seq: Some(Seq(self.seq)),
            ts: Some(self.ts),
        }
    }
}

/// What registering a device found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The recipient's last `seq` at the moment of registering: a replay covers up to
    /// this one, live talks start after it.
    pub last_seq: u64,
    /// What this device has acked (its `resume` included) in this epoch: a replay, a
    /// reset's too, starts after it.
    pub acked: u64,
    /// The epoch of the recipient's queue (PROTOCOL.md 3).
    pub epoch: String,
    /// The hello named another epoch: its `resume` counted for nothing, and the replay
    /// starts at the new queue's beginning.
    pub reset: bool,
}

/// The queue and routing storage of the relay.
///
/// Object-safe, used as `Box<dyn Broker>` rather than as a type parameter: the relay
/// picks its broker once at start, the hub and the protocol code then carry no type
/// parameter and cannot tell brokers apart, and the boxed future of each call costs
/// nothing beside what a call does (a SQLite commit, a network round trip).
///
/// Caps and the device rule are the broker's own, given when it is made.
pub trait Broker: Send + Sync + 'static {
    /// What the start-up log names this broker by: the SQLite file's epoch (one for all
    /// its queues), or the Redis address. Epochs themselves are per recipient
    /// ([`Registered::epoch`]).
    fn describe(&self) -> String;

    /// Gives the talk its recipient's next `seq` and stores it durably, all or nothing;
    /// or refuses it with [`BrokerError::QueueFull`], storing nothing and using no `seq`,
    /// when the recipient's queue or the sender's share of it is full. A `seq` is never
    /// given twice within an epoch. A talk with a known [`NewTalk::key`] is not stored
    /// again: the first one's `seq` and `ts` come back, marked a duplicate. Resolves only
    /// once the talk is durable.
    ///
    /// The talk's place among its recipient's talks is taken either when `append` is
    /// called (SQLite: two calls for one recipient get their `seq`s in the order of the
    /// calls, whenever their futures run) or when the future runs (Redis, whose script
    /// numbers it). The hub calls it under the recipient's lock and awaits it outside,
    /// so appends for one recipient run side by side; it hands them out in the order of
    /// its calls, and its connections' cursors put talks of the second kind in order.
    fn append(&self, talk: NewTalk) -> BoxFuture<'_, Result<Appended, BrokerError>>;

    /// This node holds connections of `user` from now on: talks other nodes append for
    /// them must reach [`Broker::wakeups`]. Resolves once that holds (the subscription is
    /// confirmed). The hub calls it, under the recipient's lock, before registering the
    /// first connection of `user` here, and [`Broker::unwatch`] once the last one went.
    fn watch<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// This node holds no connection of `user` any more.
    fn unwatch<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// Records that `device` connected. A `resume` acks everything up to it and makes the
    /// device a cursor; without one only a known device is seen. An `epoch` other than
    /// the queue's is a reset: the `resume` counts for nothing. Returns the recipient's
    /// last `seq`, what the device has acked in the queue's epoch (0 for a new queue;
    /// after a reset too the replay starts after it), and the queue's epoch.
    ///
    /// Every talk appended for this recipient after that `last_seq` was read, on any
    /// node, is handed out on this node (by this node's hub, or through
    /// [`Broker::wakeups`]): the hub watches first, then registers.
    fn register(
        &self,
        device: Device,
        resume: Option<u64>,
        epoch: Option<String>,
    ) -> BoxFuture<'_, Result<Registered, BrokerError>>;

    /// Up to `limit` talks of `user` with `after < seq <= upto`, in `seq` order.
    fn replay(
        &self,
        user: UserId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredTalk>, BrokerError>>;

    /// A cumulative ack from a device: it has stored everything up to `seq` of the queue
    /// `epoch` (its connection's). Talks every device of the recipient has acked are
    /// deleted. An ack of another epoch than the queue's counts for nothing: its `seq`s
    /// name other talks.
    fn ack(&self, device: Device, seq: u64, epoch: String) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// These devices are still around (connected, or just gone): not forgotten yet.
    fn seen(&self, devices: Vec<Device>) -> BoxFuture<'_, Result<(), BrokerError>>;

    /// Retention: deletes talks older than `talks_before_ms`, acked or not, forgets
    /// devices not seen since `devices_before_ms`, and deletes what the devices left have
    /// all acked. Returns how many talks went past retention.
    fn prune(&self, talks_before_ms: i64, devices_before_ms: i64) -> BoxFuture<'_, Result<usize, BrokerError>>;

    /// Tells the other nodes that hold connections of `talk.to` that it is waiting
    /// (this node's hub has already handed it to its own). The hub calls it for each
    /// talk it appends, under the recipient's lock, in `seq` order; a failure loses no
    /// talk (it is stored, and a resume or the next wake-up's catch-up brings it). A
    /// broker whose append wakes the others itself (Redis) does nothing here.
    fn wake<'a>(&'a self, talk: &'a StoredTalk) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// `--deliver-to-all` (the original servers' mode): hands a copy of `talk` to the
    /// other nodes, whose hubs give it to their connections of everyone but its recipient
    /// ([`Wakeup::Copy`]). The hub calls it after its own connections got their copies.
    /// Best effort, as a copy was on the original servers: it has no `seq` and is not
    /// queued, so a node that misses one (Redis away) never sends it. A broker without
    /// other nodes does nothing.
    fn broadcast<'a>(&'a self, talk: &'a StoredTalk) -> BoxFuture<'a, Result<(), BrokerError>>;

    /// The talks other nodes appended for recipients watched here ([`Broker::watch`]),
    /// the epochs that replaced lost queues, and other nodes' copies, taken once by the hub at start; `None`
    /// when there are no other nodes. Talks may come late, twice, or out of order: the
    /// hub drops what a connection has and replays what it skipped.
    fn wakeups(&self) -> Option<mpsc::Receiver<Wakeup>>;
}
