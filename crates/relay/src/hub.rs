//! Routing: who is connected, and the one path every talk takes to its recipient.
//!
//! Each recipient has an async lock. Giving a talk its `seq`, committing it and handing
//! it to the recipient's live connections happen under that lock; so do registering a
//! new connection and reading the `seq` its replay must reach. A connection therefore
//! replays exactly the talks up to that `seq` from the database and gets every later one
//! live, in order, with no gap, whatever POSTs run meanwhile.
//!
//! A recipient's lock also guards its count of live connections, so the per-user cap
//! (`max_connections_per_user`) is checked and taken in one step.
//!
//! The users table can be replaced while the relay runs ([`Shared::set_users`]); the
//! recipient locks are not affected by that. A connection whose user is gone from the new
//! table, or whose token changed, is told so under its recipient's lock and closes with
//! 4001; a registration checks the current table under the same lock, so none slips
//! between the swap and that sweep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::extract::ws::Utf8Bytes;
use talkbell_core::protocol::{Person, Seq, ServerFrame, TalkMessage, UserId, MAX_MESSAGE_BYTES};
use tokio::sync::{mpsc, watch, Notify};

use crate::rate::{Buckets, LogThrottle, Suppressed};
use crate::store::{QueueFull, Store, StoreError};
use crate::untrusted::untrusted;
use crate::users::{User, Users};
use crate::{millis, RelayConfig};

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}

/// Lines of one kind logged one by one each second; the rest are summed up.
const LOG_LINES_PER_SECOND: u32 = 5;

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
pub(crate) enum Live {
    /// A talk frame to write.
    Frame(Utf8Bytes),
    /// The user or their token is no longer in the users table: close with 4001.
    Revoked,
}

/// One live connection, as its recipient sees it.
struct Conn {
    tx: mpsc::Sender<Live>,
    /// Who signed in, with which token (hash), to check against a new users table.
    user: User,
    /// The device (hello `uuid`), seen at every maintenance pass while connected.
    uuid: String,
}

/// The live connections of one recipient.
#[derive(Default)]
pub(crate) struct Recipient {
    conns: HashMap<u64, Conn>,
}

type RecipientLock = Arc<tokio::sync::Mutex<Recipient>>;

pub(crate) struct Shared {
    pub cfg: RelayConfig,
    pub store: Store,
    /// Who may connect; replaced whole by [`Shared::set_users`].
    pub users: ArcSwap<Users>,
    /// One entry per user who has been routed to or connected; entries of users removed
    /// since stay, empty. The map's own lock is held only to find or add an entry.
    pub recipients: Mutex<HashMap<UserId, RecipientLock>>,
    /// `POST /v1/talk` per user.
    pub http_buckets: Buckets<UserId>,
    /// Frames before the hello, per peer address.
    pub pre_hello: Buckets<IpAddr>,
    /// Failed logins, per peer address.
    pub login_failures: Buckets<IpAddr>,
    /// The log lines of failed logins and of connections over the cap.
    pub failed_logins: LogThrottle,
    pub over_cap: LogThrottle,
    pub shutdown: watch::Receiver<bool>,
    pub tracker: Arc<Tracker>,
    pub next_conn: AtomicU64,
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
    Store(StoreError),
    #[error("the relay is shutting down")]
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RegisterError {
    #[error("the user or their token is no longer in the users table")]
    Revoked,
    #[error("this user has {0} connections open, the most the relay allows")]
    TooMany(usize),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<StoreError> for DeliverError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::QueueFull(full) => DeliverError::QueueFull(full),
            other => DeliverError::Store(other),
        }
    }
}

/// A registered connection: where its live talks arrive, and where its replay ends.
pub(crate) struct Registration {
    pub conn_id: u64,
    pub last_seq: u64,
    /// What the device has already acked; it is not replayed again.
    pub acked: u64,
    /// The hello named another epoch than the database's: replay from the start.
    pub reset: bool,
    pub live: mpsc::Receiver<Live>,
}

/// What a hello asks of the queue.
pub(crate) struct Resume<'a> {
    pub seq: Option<u64>,
    pub epoch: Option<&'a str>,
}

/// Hands a frame to every live connection of a recipient.
fn send_to_all(recipient: &mut Recipient, frame: &Utf8Bytes) {
    recipient.conns.retain(|id, conn| match conn.tx.try_send(Live::Frame(frame.clone())) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            // Dropping its sender ends the connection once it has written what it has;
            // it gets the rest on resume.
            tracing::warn!(conn = id, "a connection is too slow to keep up; dropping it");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    });
}

impl Shared {
    pub fn new(
        cfg: RelayConfig,
        store: Store,
        users: Users,
        shutdown: watch::Receiver<bool>,
        tracker: Arc<Tracker>,
    ) -> Self {
        Shared {
            store,
            users: ArcSwap::from_pointee(users),
            recipients: Default::default(),
            http_buckets: Buckets::new(cfg.http_rate),
            pre_hello: Buckets::new(cfg.pre_hello_rate),
            login_failures: Buckets::new(cfg.failed_login_rate),
            failed_logins: LogThrottle::new(LOG_LINES_PER_SECOND),
            over_cap: LogThrottle::new(LOG_LINES_PER_SECOND),
            shutdown,
            tracker,
            next_conn: Default::default(),
            cfg,
        }
    }

    /// The recipient entry of a user, made on first use.
    fn recipient(&self, id: &UserId) -> RecipientLock {
        let mut map = self.recipients.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.clone()).or_default().clone()
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
    /// client hanging up) cannot leave a talk committed but not fanned out.
    pub async fn deliver(self: &Arc<Self>, from: &User, to: &UserId, talk: String) -> Result<(u64, i64), DeliverError> {
        let shared = self.clone();
        let from = from.person();
        let to = to.clone();
        tokio::spawn(async move { shared.deliver_inner(from, to, talk).await })
            .await
            .map_err(|_| DeliverError::Stopped)?
    }

    async fn deliver_inner(&self, from: Person, to: UserId, talk: String) -> Result<(u64, i64), DeliverError> {
        let person = self.users.load().get(&to).ok_or(DeliverError::UnknownRecipient)?.person();
        let recipient = self.recipient(&to);
        let to = person;
        if talk.trim().is_empty() {
            return Err(DeliverError::Empty);
        }
        let mut msg = TalkMessage { from, to, talk, seq: Some(Seq(u64::MAX)), ts: Some(now_ms()) };
        // The largest the frame can get, with the widest seq.
        if ServerFrame::Talk(msg.clone()).to_text().len() > MAX_MESSAGE_BYTES {
            return Err(DeliverError::TooLarge);
        }

        let mut guard = recipient.lock().await;
        let ts = now_ms();
        let caps = self.cfg.queue_caps();
        let (from, to, text) = (msg.from.clone(), msg.to.clone(), msg.talk.clone());
        let seq = self.store.run(move |c| Store::insert(c, &from, &to, &text, ts, caps)).await?;
        msg.seq = Some(Seq(seq));
        msg.ts = Some(ts);
        let to_id = msg.to.id.clone();
        let copy = self.cfg.deliver_to_all.then(|| TalkMessage { seq: None, ..msg.clone() });
        let frame: Utf8Bytes = ServerFrame::Talk(msg).to_text().into();
        send_to_all(&mut guard, &frame);
        drop(guard);
        if let Some(copy) = copy {
            let frame: Utf8Bytes = ServerFrame::Talk(copy).to_text().into();
            for (user, others) in self.all_recipients() {
                if user != to_id {
                    send_to_all(&mut *others.lock().await, &frame);
                }
            }
        }
        tracing::debug!(to = %untrusted(to_id.as_str()), seq, "talk delivered");
        Ok((seq, ts))
    }

    /// Records the device and registers the connection for live talks, under the
    /// recipient's lock. Talks up to `last_seq` are the replay's; later ones come live.
    /// Refused when the user is no longer in the current users table with that token, or
    /// has as many connections open as the per-user cap. A hello naming another epoch
    /// than the database's is a reset: its `resume` counts for nothing.
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
        let reset = resume.epoch.is_some_and(|e| e != self.store.epoch());
        let seq = if reset { None } else { resume.seq };
        let (u, d, rule) = (user.id.clone(), uuid.to_owned(), self.cfg.device_rule());
        let reg = self.store.run(move |c| Store::register_device(c, &u, &d, seq, now_ms(), rule)).await?;
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.cfg.connection_queue.max(1));
        guard.conns.insert(conn_id, Conn { tx, user: user.clone(), uuid: uuid.to_owned() });
        Ok(Registration { conn_id, last_seq: reg.last_seq, acked: reg.acked, reset, live: rx })
    }

    pub async fn unregister(&self, user: &UserId, conn_id: u64, uuid: &str) {
        let recipient = self.recipients.lock().unwrap_or_else(|p| p.into_inner()).get(user).cloned();
        if let Some(recipient) = recipient {
            recipient.lock().await.conns.remove(&conn_id);
        }
        let seen = vec![(user.clone(), uuid.to_owned())];
        if let Err(e) = self.store.run(move |c| Store::touch_devices(c, &seen, now_ms())).await {
            tracing::warn!(error = %e, "could not record a device's last visit");
        }
    }

    /// The devices of every live connection.
    async fn live_devices(&self) -> Vec<(UserId, String)> {
        let mut out = Vec::new();
        for (id, recipient) in self.all_recipients() {
            out.extend(recipient.lock().await.conns.values().map(|c| (id.clone(), c.uuid.clone())));
        }
        out
    }

    /// Whether this user may make another HTTP request now.
    pub fn http_allowed(&self, user: &UserId) -> bool {
        self.http_buckets.try_take(user)
    }

    /// Whether logins from this address are refused for now (too many failed).
    pub fn logins_blocked(&self, ip: IpAddr) -> bool {
        !self.login_failures.has_token(&ip)
    }

    /// Counts a failed login from `peer` and logs it, at most a few lines a second.
    pub fn failed_login(&self, peer: &str, ip: IpAddr, what: &str) {
        self.login_failures.try_take(&ip);
        let (log, summary) = self.failed_logins.event(peer);
        log_failed_logins(summary);
        if log {
            tracing::info!(%peer, "failed login: {what}");
        }
    }
}

pub(crate) fn log_failed_logins(summary: Option<Suppressed>) {
    if let Some(s) = summary {
        tracing::info!(last_from = %s.last, "{} more failed logins not logged one by one", s.count);
    }
}

pub(crate) fn log_over_cap(summary: Option<Suppressed>) {
    if let Some(s) = summary {
        tracing::warn!(last_from = %s.last, "{} more connections over the cap closed", s.count);
    }
}

/// Now and then until shutdown: marks the devices of live connections seen, deletes
/// talks past the retention limit and forgets devices past the device expiry; every
/// second, sums up the log lines that were held back.
pub(crate) async fn maintenance(shared: Arc<Shared>) {
    let retention = shared.cfg.retention;
    let every =
        (retention / 4).min(shared.cfg.device_expiry / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut stop = shared.shutdown.clone();
    let mut next_pass = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(every.min(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::ws::stopped(&mut stop) => return,
        }
        log_failed_logins(shared.failed_logins.flush());
        log_over_cap(shared.over_cap.flush());
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
    let pass = shared
        .store
        .run(move |c| {
            Store::touch_devices(c, &live, now)?;
            Store::expire(c, talk_cutoff, device_cutoff)
        })
        .await;
    match pass {
        Ok(0) => {}
        Ok(n) => tracing::info!(talks = n, "deleted talks past the retention limit"),
        Err(e) => tracing::warn!(error = %e, "retention pass failed"),
    }
}
