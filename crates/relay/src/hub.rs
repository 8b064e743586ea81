//! Routing: who is connected here, and the one path every talk takes to its recipient.
//! The queue and the routing between nodes are the [`Broker`]'s; the hub talks to it and
//! to nothing below it, and the WebSocket and HTTP code talk only to the hub.
//!
//! Each recipient has an async lock. A talk is delivered in two steps under it, with the
//! wait for the broker's commit between them, so that many talks to one recipient can
//! share a commit (the SQLite broker's group commit): under the lock, the talk takes its
//! *turn* (the next in the recipient's line) and [`Broker::append`] is called; the lock
//! is let go while the append becomes durable; then, under the lock again, the turn is
//! marked done, and every talk at the head of the line whose turn is done is handed to
//! the recipient's live connections here and the other nodes are woken
//! ([`Broker::wake`]), in the order of the turns. A talk that was refused, failed or was a
//! duplicate is skipped in the line. Registering a new connection here and reading the
//! `seq` its replay must reach ([`Broker::register`]) happen under the same lock, so
//! every talk is handed out either before a registration (it was durable by then, so the
//! `seq` read covers it and the replay has it) or after it, to the new connection too
//! (which drops it if its replay has it: the cursor below). A connection therefore
//! replays exactly the talks up to that `seq` from the broker and gets every later one
//! live, in order, with no gap, whatever POSTs run meanwhile.
//!
//! Each connection also keeps the `seq` it has been given up to (its replay's end at
//! first). A talk at or below it is not handed to it again, and a talk past the next one
//! first hands it a catch-up, the talks between, which it replays from the broker. With
//! one process (SQLite) neither ever happens: its appends get their `seq`s in the order
//! they are called, which is the order of the turns. Talks from other nodes
//! ([`Broker::wakeups`]), and this node's own talks with a broker that numbers them when
//! the append runs rather than when it is called (Redis), are not ordered by this node's
//! lock: the broker's promise (a registration reads `last_seq` only once later talks
//! reach this node) and that cursor keep the rule for them.
//!
//! Watching: a node hears another node's talks for a recipient only while it watches
//! them ([`Broker::watch`]). The hub watches under the recipient's lock *before* the
//! first connection of that recipient here registers (so the subscription is confirmed
//! before `last_seq` is read: subscribe first, then read), and unwatches under the same
//! lock once the last one is gone (or the first one's registration failed). So whenever
//! a connection is in the table its recipient is watched, and every talk appended after
//! its `last_seq` reaches it, through this node's lock or through the wake-ups. A
//! wake-up lost anyway (a dropped subscription) is the broker's to find again: it checks
//! the watched recipients' last `seq`s now and then and sends what it had not.
//!
//! Epochs: each connection keeps the epoch its welcome named, and its acks name it. A
//! talk (or a [`Wakeup::NewEpoch`]) of another epoch means the recipient's queue was
//! lost, or may have lost its last talks (a Redis restart): those connections are
//! closed (1012) so that their next hello is told (`reset`, PROTOCOL.md 3).
//!
//! `deliver_to_all`: every talk delivered here is also copied (without its `seq`) to
//! every other connection here, and handed to the other nodes ([`Broker::broadcast`]),
//! whose copies ([`Wakeup::Copy`]) this node hands to its own connections the same way.
//!
//! A recipient's lock also guards its count of live connections, so the per-user cap
//! (`max_connections_per_user`) is checked and taken in one step.
//!
//! The users table can be replaced while the relay runs ([`Shared::set_users`]); the
//! recipient locks are not affected by that. A connection whose user is gone from the new
//! table, or whose token changed, is told so under its recipient's lock and closes with
//! 4001; a registration checks the current table under the same lock, so none slips
//! between the swap and that sweep.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::extract::ws::Utf8Bytes;
use talkbell_core::protocol::{Person, Seq, ServerFrame, TalkMessage, UserId, MAX_MESSAGE_BYTES};
use tokio::sync::{mpsc, watch, Notify};

use crate::broker::{millis, now_ms, Broker, BrokerError, Device, NewTalk, QueueFull, StoredTalk, Wakeup};
use crate::config::RelayConfig;
use crate::gate::Gate;
use crate::users::{User, Users};
use talkbell_core::untrusted::untrusted;

/// Talks replayed per broker read.
const REPLAY_PAGE: usize = 256;

/// Counts open WebSocket connections so that shutdown can wait for them.
#[derive(Default)]
pub(crate) struct Tracker {
    count: AtomicUsize,
    idle: Notify,
}

pub(crate) struct TrackGuard(Arc<Tracker>);

impl Tracker {
    pub fn track(self: &Arc<Self>) -> TrackGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        TrackGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What a connection's live channel carries.
#[derive(Debug)]
pub(crate) enum Live {
    /// A talk frame to write.
    Frame(Utf8Bytes),
    /// Talks `after < seq <= upto` did not come here in order: replay them first.
    CatchUp { after: u64, upto: u64 },
    /// The user or their token is no longer in the users table: close with 4001.
    Revoked,
    /// The recipient's queue was lost (a new epoch): reconnect to be told.
    Reset,
}

/// One live connection, as its recipient sees it.
struct Conn {
    tx: mpsc::Sender<Live>,
    /// Who signed in, with which token (hash), to check against a new users table.
    user: User,
    /// The device (hello `uuid`), seen at every maintenance pass while connected.
    uuid: String,
    /// The `seq` this connection has been given (or its replay gives) up to.
    upto: u64,
    /// The epoch of the queue its welcome named.
    epoch: String,
}

impl Conn {
    /// Hands the talk `seq` (its frame) to this connection, after a catch-up of what it
    /// skipped; nothing if it has it. False when the connection is gone or too slow
    /// (dropping its sender ends it once it has written what it has; it gets the rest
    /// on resume).
    fn hand(&mut self, id: u64, seq: u64, frame: &Utf8Bytes) -> bool {
        if seq <= self.upto {
            return true;
        }
        let catch_up = (seq > self.upto + 1).then(|| Live::CatchUp { after: self.upto, upto: seq - 1 });
        self.upto = seq;
        let sent = catch_up
            .map_or(Ok(()), |c| self.tx.try_send(c))
            .and_then(|()| self.tx.try_send(Live::Frame(frame.clone())));
        self.sent(id, sent)
    }

    fn sent(&self, id: u64, sent: Result<(), mpsc::error::TrySendError<Live>>) -> bool {
        match sent {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(conn = id, "a connection is too slow to keep up; dropping it");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// The live connections of one recipient, and the line of talks being appended for them.
#[derive(Default)]
struct Recipient {
    conns: HashMap<u64, Conn>,
    /// The turns not yet handed out, oldest first.
    line: VecDeque<Turn>,
    /// The number of the turn at the head of `line`, and of the next one to take.
    head: u64,
    next: u64,
}

/// A talk's place in its recipient's line.
enum Turn {
    /// Its append runs.
    Appending,
    /// Its append is done: the talk to hand out (with its queue's epoch), or nothing
    /// (refused, failed, a duplicate).
    Done(Option<(String, StoredTalk)>),
}

impl Recipient {
    /// The next turn in the line.
    fn take_turn(&mut self) -> u64 {
        self.line.push_back(Turn::Appending);
        self.next += 1;
        self.next - 1
    }

    /// Marks `turn` done with what it hands out (if anything); returns the talks now at
    /// the head of the line, in the order of their turns, to hand out.
    fn turn_done(&mut self, turn: u64, talk: Option<(String, StoredTalk)>) -> Vec<(String, StoredTalk)> {
        let at = usize::try_from(turn.saturating_sub(self.head)).unwrap_or(usize::MAX);
        if let Some(slot) = self.line.get_mut(at) {
            *slot = Turn::Done(talk);
        }
        let mut ready = Vec::new();
        while matches!(self.line.front(), Some(Turn::Done(_))) {
            if let Some(Turn::Done(Some(talk))) = self.line.pop_front() {
                ready.push(talk);
            }
            self.head += 1;
        }
        ready
    }
}

type RecipientLock = Arc<tokio::sync::Mutex<Recipient>>;

/// What every connection and request shares: the configuration, the broker, the users
/// table, who is connected here, the gate, and whether the relay is stopping.
pub(crate) struct Shared {
    cfg: RelayConfig,
    broker: Box<dyn Broker>,
    /// Who may connect; replaced whole by [`Shared::set_users`].
    users: ArcSwap<Users>,
    /// One entry per user who has been routed to or connected; entries of users removed
    /// since stay, empty. The map's own lock is held only to find or add an entry.
    recipients: Mutex<HashMap<UserId, RecipientLock>>,
    gate: Gate,
    shutdown: watch::Receiver<bool>,
    tracker: Arc<Tracker>,
    next_conn: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliverError {
    #[error("unknown recipient")]
    UnknownRecipient,
    #[error("the talk is too large (a talk frame is at most {MAX_MESSAGE_BYTES} bytes)")]
    TooLarge,
    #[error("the talk is empty")]
    Empty,
    #[error("{0}")]
    QueueFull(QueueFull),
    #[error("{0}")]
    Broker(BrokerError),
    #[error("{0}")]
    Unavailable(BrokerError),
    #[error("the relay is shutting down")]
    Stopped,
}

/// Where a delivered talk is: its `seq` and `ts` in the recipient's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub seq: u64,
    pub ts: i64,
}

impl From<BrokerError> for DeliverError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::QueueFull(full) => DeliverError::QueueFull(full),
            e @ BrokerError::Unavailable(_) => DeliverError::Unavailable(e),
            other => DeliverError::Broker(other),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RegisterError {
    #[error("the user or their token is no longer in the users table")]
    Revoked,
    #[error("this user has {0} connections open, the most the relay allows")]
    TooMany(usize),
    /// The broker is out of reach for now (try again).
    #[error("{0}")]
    Unavailable(BrokerError),
    #[error("{0}")]
    Broker(BrokerError),
}

impl From<BrokerError> for RegisterError {
    fn from(e: BrokerError) -> Self {
        match e {
            e @ BrokerError::Unavailable(_) => RegisterError::Unavailable(e),
            other => RegisterError::Broker(other),
        }
    }
}

/// A registered connection: where its live talks arrive, and where its replay ends.
pub(crate) struct Registration {
    pub conn_id: u64,
    pub last_seq: u64,
    /// What the device has already acked; it is not replayed again.
    pub acked: u64,
    /// The epoch of the recipient's queue, for the welcome.
    pub epoch: String,
    /// The hello named another epoch than the queue's: replay from the start.
    pub reset: bool,
    pub live: mpsc::Receiver<Live>,
}

/// What a hello asks of the queue.
pub(crate) struct Resume<'a> {
    pub seq: Option<u64>,
    pub epoch: Option<&'a str>,
}

/// One page of a replay: the talks, and where the next page starts if there may be one.
pub(crate) struct ReplayPage {
    pub talks: Vec<TalkMessage>,
    pub next: Option<u64>,
}

/// Hands a frame without a `seq` (a copy for everyone) to every live connection of a
/// recipient.
fn copy_to_all(recipient: &mut Recipient, frame: &Utf8Bytes) {
    recipient.conns.retain(|id, conn| conn.sent(*id, conn.tx.try_send(Live::Frame(frame.clone()))));
}

/// Hands the talk `seq` of the queue `epoch` to every live connection of a recipient that
/// lacks it; connections of another epoch are told to reconnect instead.
fn hand_to_all(recipient: &mut Recipient, epoch: &str, seq: u64, frame: &Utf8Bytes) {
    reset_others(recipient, epoch);
    recipient.conns.retain(|id, conn| conn.hand(*id, seq, frame));
}

/// The recipient's queue is now `epoch`: connections of another one are told to
/// reconnect (their next welcome says `reset`) and leave the table.
fn reset_others(recipient: &mut Recipient, epoch: &str) {
    recipient.conns.retain(|id, conn| {
        if conn.epoch == epoch {
            return true;
        }
        tracing::info!(conn = id, epoch = %untrusted(epoch), "the recipient's queue has a new epoch; closing a connection of the old one");
        // A full channel means too slow; dropping the sender closes it all the same.
        let _ = conn.tx.try_send(Live::Reset);
        false
    });
}

impl Shared {
    pub fn new(
        cfg: RelayConfig,
        broker: Box<dyn Broker>,
        users: Users,
        shutdown: watch::Receiver<bool>,
        tracker: Arc<Tracker>,
    ) -> Self {
        Shared {
            broker,
            users: ArcSwap::from_pointee(users),
            recipients: Default::default(),
            gate: Gate::new(&cfg),
            shutdown,
            tracker,
            next_conn: Default::default(),
            cfg,
        }
    }

    pub fn config(&self) -> &RelayConfig {
        &self.cfg
    }

    /// The budgets of who is let in.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// What the broker is, for the start-up log.
    pub fn broker_name(&self) -> String {
        self.broker.describe()
    }

    /// The users table in force.
    pub fn users(&self) -> Arc<Users> {
        self.users.load_full()
    }

    /// The user whose token this is, in the table in force.
    pub fn authenticate(&self, token: &str) -> Option<User> {
        self.users.load().authenticate(token).cloned()
    }

    /// Resolves once the relay is stopping.
    pub async fn stopped(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn is_stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Counts a WebSocket connection until the guard is dropped; shutdown waits for it.
    pub fn track(&self) -> TrackGuard {
        self.tracker.track()
    }

    /// The recipient entry of a user, made on first use.
    fn recipient(&self, id: &UserId) -> RecipientLock {
        let mut map = self.recipients.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.clone()).or_default().clone()
    }

    /// The recipient entry of a user, if there is one.
    fn existing_recipient(&self, id: &UserId) -> Option<RecipientLock> {
        self.recipients.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    fn all_recipients(&self) -> Vec<(UserId, RecipientLock)> {
        let map = self.recipients.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(id, r)| (id.clone(), r.clone())).collect()
    }

    /// Puts a new users table in force for every later hello and POST, and closes (4001)
    /// the connections of users it no longer has or whose token it changed. Returns how
    /// many connections were closed.
    pub async fn set_users(&self, users: Users) -> usize {
        self.users.store(Arc::new(users));
        let mut closed = 0;
        for (_, recipient) in self.all_recipients() {
            let mut guard = recipient.lock().await;
            let users = self.users.load();
            guard.conns.retain(|_, conn| {
                if users.still_valid(&conn.user) {
                    return true;
                }
                // A full queue means the connection is too slow; dropping its sender
                // closes it all the same, and its next hello is refused.
                let _ = conn.tx.try_send(Live::Revoked);
                closed += 1;
                false
            });
        }
        closed
    }

    /// Delivers a talk from `from` to `to`: `seq`, commit, then every live connection of
    /// the recipient. Runs in its own task, so that a caller that goes away (an HTTP
    /// client hanging up) cannot leave a talk committed but not fanned out. A `send`'s
    /// `key` (its id) makes it idempotent: a retry gets the first one's `seq` and `ts`
    /// and is handed to nobody.
    pub async fn deliver(
        self: &Arc<Self>,
        from: &User,
        to: &UserId,
        talk: String,
        key: Option<&str>,
    ) -> Result<Delivered, DeliverError> {
        let shared = self.clone();
        let from = from.person();
        let to = to.clone();
        // The sender is part of the key: one talk per (sender, id).
        let key = key.map(|k| format!("{}:{}:{k}", from.id.as_str().len(), from.id.as_str()));
        tokio::spawn(async move { shared.deliver_inner(from, to, talk, key).await })
            .await
            .map_err(|_| DeliverError::Stopped)?
    }

    async fn deliver_inner(
        &self,
        from: Person,
        to: UserId,
        talk: String,
        key: Option<String>,
    ) -> Result<Delivered, DeliverError> {
        let person = self.users.load().get(&to).ok_or(DeliverError::UnknownRecipient)?.person();
        let recipient = self.recipient(&to);
        if talk.trim().is_empty() {
            return Err(DeliverError::Empty);
        }
        let widest = TalkMessage { from, to: person, talk, seq: Some(Seq(u64::MAX)), ts: Some(now_ms()) };
        // The largest the frame can get, with the widest seq.
        if ServerFrame::Talk(widest.clone()).to_text().len() > MAX_MESSAGE_BYTES {
            return Err(DeliverError::TooLarge);
        }

        let new = NewTalk { from: widest.from, to: widest.to, talk: widest.talk, ts: now_ms(), key };
        // The turn and the append's place in the broker's order are taken together; every
        // path below marks the turn done (this task is not cancelled: it is spawned).
        let (turn, appending) = {
            let mut guard = recipient.lock().await;
            (guard.take_turn(), self.broker.append(new.clone()))
        };
        let appended = appending.await;
        let talk = match &appended {
            Ok(a) if !a.duplicate => Some((a.epoch.clone(), StoredTalk::new(a, new))),
            _ => None,
        };
        let copy = talk.as_ref().filter(|_| self.cfg.deliver_to_all).map(|(_, t)| t.clone());
        let mut guard = recipient.lock().await;
        for (epoch, talk) in guard.turn_done(turn, talk) {
            self.hand_out_appended(&mut guard, &epoch, &talk).await;
        }
        drop(guard);
        let appended = appended?;
        let delivered = Delivered { seq: appended.seq, ts: appended.ts };
        if appended.duplicate {
            tracing::debug!(to = %untrusted(to.as_str()), seq = appended.seq, "a send retried; delivered before");
        }
        if let Some(copy) = copy {
            self.copy_to_everyone(&copy).await;
            if let Err(e) = self.broker.broadcast(&copy).await {
                tracing::warn!(error = %e, seq = copy.seq, "could not hand a copy of a talk to the other nodes");
            }
        }
        Ok(delivered)
    }

    /// Hands a talk this node appended to the recipient's live connections here and wakes
    /// the other nodes (under the recipient's lock, in the order of the turns).
    async fn hand_out_appended(&self, recipient: &mut Recipient, epoch: &str, talk: &StoredTalk) {
        let frame: Utf8Bytes = ServerFrame::Talk(talk.message()).to_text().into();
        hand_to_all(recipient, epoch, talk.seq, &frame);
        if let Err(e) = self.broker.wake(talk).await {
            tracing::warn!(error = %e, seq = talk.seq, "could not wake the other nodes for a talk");
        }
        tracing::debug!(to = %untrusted(talk.to.id.as_str()), seq = talk.seq, "talk delivered");
    }

    /// `deliver_to_all`: a copy without the `seq` (the recipient's numbering, not
    /// theirs) to every other live connection here (of this node's talks, and of other
    /// nodes' through [`Broker::broadcast`]).
    async fn copy_to_everyone(&self, talk: &StoredTalk) {
        let copy = TalkMessage { seq: None, ..talk.message() };
        let frame: Utf8Bytes = ServerFrame::Talk(copy).to_text().into();
        for (user, others) in self.all_recipients() {
            if user != talk.to.id {
                copy_to_all(&mut *others.lock().await, &frame);
            }
        }
    }

    /// What another node did: a talk to this node's connections of its recipient, a new
    /// epoch that closes the connections of another one, or a copy for everyone.
    async fn hand_out(&self, wakeup: &Wakeup) {
        match wakeup {
            Wakeup::Talk { epoch, talk } => {
                let Some(recipient) = self.existing_recipient(&talk.to.id) else { return };
                let frame: Utf8Bytes = ServerFrame::Talk(talk.message()).to_text().into();
                hand_to_all(&mut *recipient.lock().await, epoch, talk.seq, &frame);
            }
            Wakeup::NewEpoch { user, epoch } => {
                let Some(recipient) = self.existing_recipient(user) else { return };
                reset_others(&mut *recipient.lock().await, epoch);
            }
            // A node without `deliver_to_all` keeps to its own rule.
            Wakeup::Copy(talk) if self.cfg.deliver_to_all => self.copy_to_everyone(talk).await,
            Wakeup::Copy(_) => {}
        }
    }

    /// Records the device and registers the connection for live talks, under the
    /// recipient's lock. Talks up to `last_seq` are the replay's; later ones come live.
    /// Refused when the user is no longer in the current users table with that token, or
    /// has as many connections open as the per-user cap. A hello naming another epoch
    /// than the broker's is a reset: its `resume` counts for nothing.
    pub async fn register(&self, user: &User, uuid: &str, resume: Resume<'_>) -> Result<Registration, RegisterError> {
        let recipient = self.recipient(&user.id);
        let mut guard = recipient.lock().await;
        if !self.users.load().still_valid(user) {
            return Err(RegisterError::Revoked);
        }
        let cap = self.cfg.max_connections_per_user.max(1);
        if guard.conns.len() >= cap {
            return Err(RegisterError::TooMany(cap));
        }
        // Watch first, then read `last_seq` (the rule at the top).
        if guard.conns.is_empty() {
            self.broker.watch(&user.id).await?;
        }
        let device = Device { user: user.id.clone(), uuid: uuid.to_owned() };
        let reg = match self.broker.register(device, resume.seq, resume.epoch.map(str::to_owned)).await {
            Ok(reg) => reg,
            Err(e) => {
                self.unwatch_if_none(&user.id, &guard).await;
                return Err(e.into());
            }
        };
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.cfg.connection_queue.max(1));
        let conn = Conn { tx, user: user.clone(), uuid: uuid.to_owned(), upto: reg.last_seq, epoch: reg.epoch.clone() };
        guard.conns.insert(conn_id, conn);
        Ok(Registration {
            conn_id,
            last_seq: reg.last_seq,
            acked: reg.acked,
            epoch: reg.epoch,
            reset: reg.reset,
            live: rx,
        })
    }

    /// Stops watching `user` when no connection of theirs is left here (under their lock).
    async fn unwatch_if_none(&self, user: &UserId, recipient: &Recipient) {
        if !recipient.conns.is_empty() {
            return;
        }
        if let Err(e) = self.broker.unwatch(user).await {
            tracing::warn!(error = %e, "could not stop watching a recipient");
        }
    }

    pub async fn unregister(&self, user: &UserId, conn_id: u64, uuid: &str) {
        if let Some(recipient) = self.existing_recipient(user) {
            let mut guard = recipient.lock().await;
            // Removed here, or already (too slow, revoked, reset): unwatch if it was the last.
            guard.conns.remove(&conn_id);
            self.unwatch_if_none(user, &guard).await;
        }
        let seen = vec![Device { user: user.clone(), uuid: uuid.to_owned() }];
        if let Err(e) = self.broker.seen(seen).await {
            tracing::warn!(error = %e, "could not record a device's last visit");
        }
    }

    /// One page of `user`'s talks with `after < seq <= upto`, from the broker.
    pub async fn replay_page(&self, user: &UserId, after: u64, upto: u64) -> Result<ReplayPage, BrokerError> {
        let page = self.broker.replay(user.clone(), after, upto, REPLAY_PAGE).await?;
        let next = page.last().map(|t| t.seq).filter(|_| page.len() >= REPLAY_PAGE);
        Ok(ReplayPage { talks: page.iter().map(StoredTalk::message).collect(), next })
    }

    /// A device's cumulative ack, in the queue `epoch` its connection was welcomed to.
    pub async fn ack(&self, user: &UserId, uuid: &str, seq: u64, epoch: &str) -> Result<(), BrokerError> {
        self.broker.ack(Device { user: user.clone(), uuid: uuid.to_owned() }, seq, epoch.to_owned()).await
    }

    /// The devices of every live connection.
    async fn live_devices(&self) -> Vec<Device> {
        let mut out = Vec::new();
        for (id, recipient) in self.all_recipients() {
            let guard = recipient.lock().await;
            out.extend(guard.conns.values().map(|c| Device { user: id.clone(), uuid: c.uuid.clone() }));
        }
        out
    }
}

/// Hands out the talks other nodes appended ([`Broker::wakeups`]; none with one
/// process), until shutdown.
pub(crate) async fn wakeups(shared: Arc<Shared>) {
    let Some(mut wakeups) = shared.broker.wakeups() else { return };
    loop {
        let wakeup = tokio::select! {
            wakeup = wakeups.recv() => wakeup,
            _ = shared.stopped() => return,
        };
        match wakeup {
            Some(wakeup) => shared.hand_out(&wakeup).await,
            None => return,
        }
    }
}

/// Now and then until shutdown: marks the devices of live connections seen, deletes
/// talks past the retention limit and forgets devices past the device expiry; every
/// second, sums up the log lines that were held back.
pub(crate) async fn maintenance(shared: Arc<Shared>) {
    let cfg = shared.config();
    let every =
        (cfg.retention / 4).min(cfg.device_expiry / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut next_pass = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(every.min(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.stopped() => return,
        }
        shared.gate.flush_logs();
        if tokio::time::Instant::now() >= next_pass {
            expire(&shared).await;
            next_pass = tokio::time::Instant::now() + every;
        }
    }
}

async fn expire(shared: &Shared) {
    let now = now_ms();
    let live = shared.live_devices().await;
    let talk_cutoff = now.saturating_sub(millis(shared.cfg.retention));
    let device_cutoff = now.saturating_sub(millis(shared.cfg.device_expiry));
    let pass = async {
        shared.broker.seen(live).await?;
        shared.broker.prune(talk_cutoff, device_cutoff).await
    };
    match pass.await {
        Ok(0) => {}
        Ok(n) => tracing::info!(talks = n, "deleted talks past the retention limit"),
        Err(e) => tracing::warn!(error = %e, "retention pass failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Appended, BoxFuture, Registered};

    /// A broker of several nodes, as far as the hub sees it: the talks other nodes
    /// appended arrive through `wakeups`, in whatever order the test sends them.
    struct OtherNodes {
        last_seq: u64,
        wakeups: Mutex<Option<mpsc::Receiver<Wakeup>>>,
    }

    fn done<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, Result<T, BrokerError>> {
        Box::pin(std::future::ready(Ok(value)))
    }

    impl Broker for OtherNodes {
        fn describe(&self) -> String {
            "test".into()
        }
        fn append(&self, talk: NewTalk) -> BoxFuture<'_, Result<Appended, BrokerError>> {
            done(Appended { seq: self.last_seq + 1, ts: talk.ts, epoch: "test".into(), duplicate: false })
        }
        fn watch<'a>(&'a self, _user: &'a UserId) -> BoxFuture<'a, Result<(), BrokerError>> {
            done(())
        }
        fn unwatch<'a>(&'a self, _user: &'a UserId) -> BoxFuture<'a, Result<(), BrokerError>> {
            done(())
        }
        fn register(
            &self,
            _device: Device,
            _resume: Option<u64>,
            _epoch: Option<String>,
        ) -> BoxFuture<'_, Result<Registered, BrokerError>> {
            done(Registered { last_seq: self.last_seq, acked: 0, epoch: "test".into(), reset: false })
        }
        fn replay(&self, _: UserId, _: u64, _: u64, _: usize) -> BoxFuture<'_, Result<Vec<StoredTalk>, BrokerError>> {
            done(Vec::new())
        }
        fn ack(&self, _device: Device, _seq: u64, _epoch: String) -> BoxFuture<'_, Result<(), BrokerError>> {
            done(())
        }
        fn seen(&self, _devices: Vec<Device>) -> BoxFuture<'_, Result<(), BrokerError>> {
            done(())
        }
        fn prune(&self, _: i64, _: i64) -> BoxFuture<'_, Result<usize, BrokerError>> {
            done(0)
        }
        fn wake<'a>(&'a self, _talk: &'a StoredTalk) -> BoxFuture<'a, Result<(), BrokerError>> {
            done(())
        }
        fn broadcast<'a>(&'a self, _talk: &'a StoredTalk) -> BoxFuture<'a, Result<(), BrokerError>> {
            done(())
        }
        fn wakeups(&self) -> Option<mpsc::Receiver<Wakeup>> {
            self.wakeups.lock().unwrap().take()
        }
    }

    fn talk(seq: u64) -> StoredTalk {
        let person = |id: u64| Person { id: id.into(), name: format!("wang{id}") };
        StoredTalk { seq, ts: 1, from: person(2), to: person(1), talk: format!("t{seq}") }
    }

    /// What a connection's channel gets: `seq`s of frames, and catch-ups as (after, upto).
    fn seen(live: Live) -> (u64, u64) {
        match live {
            Live::Frame(frame) => {
                let v: serde_json::Value = serde_json::from_str(frame.as_str()).unwrap();
                (v["seq"].as_u64().unwrap(), 0)
            }
            Live::CatchUp { after, upto } => (after, upto),
            Live::Revoked => panic!("revoked"),
            Live::Reset => (0, 1),
        }
    }

    /// Appends that end out of turn are handed out in the order their turns were taken;
    /// a turn with nothing to hand out (refused, failed, a duplicate) lets the next go.
    #[test]
    fn turns_hand_talks_out_in_the_order_they_were_taken() {
        let mut r = Recipient::default();
        let (a, b, c, d) = (r.take_turn(), r.take_turn(), r.take_turn(), r.take_turn());
        let t = |seq| Some(("e".to_owned(), talk(seq)));
        let out = |v: Vec<(String, StoredTalk)>| v.into_iter().map(|(_, t)| t.seq).collect::<Vec<_>>();
        assert_eq!(out(r.turn_done(c, t(2))), Vec::<u64>::new(), "its turn has not come");
        assert_eq!(out(r.turn_done(a, t(1))), [1]);
        assert_eq!(out(r.turn_done(b, None)), [2], "b had nothing: c goes");
        assert_eq!(out(r.turn_done(d, t(3))), [3]);
        assert!(r.line.is_empty());
        let e = r.take_turn();
        assert_eq!(out(r.turn_done(e, t(4))), [4]);
    }

    /// Talks from other nodes that come late, twice or out of order still reach a
    /// connection once each, in order: what it has is dropped, what it skipped it is
    /// told to replay first.
    #[tokio::test]
    async fn wakeups_from_other_nodes_keep_the_order_with_catch_ups() {
        let (tx, rx) = mpsc::channel(16);
        let broker = OtherNodes { last_seq: 2, wakeups: Mutex::new(Some(rx)) };
        let mut users = Users::new();
        users.add(1, "wang1");
        let user = users.get(&UserId::from(1)).unwrap().clone();
        let cfg = RelayConfig::new("127.0.0.1:0".parse().unwrap(), Users::new(), "unused.db");
        let (_stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(cfg, Box::new(broker), users, stop_rx, Arc::default()));
        let mut reg = shared.register(&user, "dev", Resume { seq: Some(0), epoch: None }).await.unwrap();
        assert_eq!(reg.last_seq, 2, "1 and 2 are the replay's");
        tokio::spawn(wakeups(shared.clone()));

        for seq in [2, 4, 3, 5, 5, 1, 6] {
            tx.send(Wakeup::Talk { epoch: "test".into(), talk: talk(seq) }).await.unwrap();
        }
        let mut got = Vec::new();
        while got.last() != Some(&(6, 0)) {
            got.push(seen(reg.live.recv().await.unwrap()));
        }
        assert_eq!(got, [(2, 3), (4, 0), (5, 0), (6, 0)], "catch-up of 3, then 4, 5 and 6 once");

        // A talk of another epoch: the queue was lost, the connection is told to reconnect.
        tx.send(Wakeup::Talk { epoch: "new".into(), talk: talk(1) }).await.unwrap();
        assert_eq!(seen(reg.live.recv().await.unwrap()), (0, 1), "reset");
        assert!(reg.live.recv().await.is_none(), "and dropped from the table");
    }
}
