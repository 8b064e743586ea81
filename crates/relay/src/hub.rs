//! Routing: who is connected, and the one path every talk takes to its recipient.
//!
//! Each recipient has an async lock. Giving a talk its `seq`, committing it and handing
//! it to the recipient's live connections happen under that lock; so do registering a
//! new connection and reading the `seq` its replay must reach. A connection therefore
//! replays exactly the talks up to that `seq` from the database and gets every later one
//! live, in order, with no gap, whatever POSTs run meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use talkbell_core::protocol::{Person, Seq, ServerFrame, TalkMessage, UserId, MAX_MESSAGE_BYTES};
use tokio::sync::{mpsc, watch, Notify};

use crate::rate::TokenBucket;
use crate::store::{Store, StoreError};
use crate::users::User;
use crate::RelayConfig;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

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

/// The live connections of one recipient.
#[derive(Default)]
pub(crate) struct Recipient {
    conns: HashMap<u64, mpsc::Sender<Utf8Bytes>>,
}

pub(crate) struct Shared {
    pub cfg: RelayConfig,
    pub store: Store,
    /// One entry per user, made at start; the users table does not change while running.
    pub recipients: HashMap<UserId, Arc<tokio::sync::Mutex<Recipient>>>,
    pub http_buckets: Mutex<HashMap<UserId, TokenBucket>>,
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
    Store(#[from] StoreError),
    #[error("the relay is shutting down")]
    Stopped,
}

/// A registered connection: where its live talks arrive, and where its replay ends.
pub(crate) struct Registration {
    pub conn_id: u64,
    pub last_seq: u64,
    /// What the device has already acked; it is not replayed again.
    pub acked: u64,
    pub live: mpsc::Receiver<Utf8Bytes>,
}

/// Hands a frame to every live connection of a recipient.
fn send_to_all(recipient: &mut Recipient, frame: &Utf8Bytes) {
    recipient.conns.retain(|id, tx| match tx.try_send(frame.clone()) {
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
        let recipient = self.recipients.get(&to).ok_or(DeliverError::UnknownRecipient)?;
        let to = self.cfg.users.get(&to).ok_or(DeliverError::UnknownRecipient)?.person();
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
        let cap = self.cfg.max_queued_per_recipient;
        let (from, to, text) = (msg.from.clone(), msg.to.clone(), msg.talk.clone());
        let seq = self.store.run(move |c| Store::insert(c, &from, &to, &text, ts, cap)).await?;
        msg.seq = Some(Seq(seq));
        msg.ts = Some(ts);
        let to_id = msg.to.id.clone();
        let copy = self.cfg.deliver_to_all.then(|| TalkMessage { seq: None, ..msg.clone() });
        let frame: Utf8Bytes = ServerFrame::Talk(msg).to_text().into();
        send_to_all(&mut guard, &frame);
        drop(guard);
        if let Some(copy) = copy {
            let frame: Utf8Bytes = ServerFrame::Talk(copy).to_text().into();
            for (user, others) in &self.recipients {
                if *user != to_id {
                    send_to_all(&mut *others.lock().await, &frame);
                }
            }
        }
        tracing::debug!(to = %to_id, seq, "talk delivered");
        Ok((seq, ts))
    }

    /// Records the device and registers the connection for live talks, under the
    /// recipient's lock. Talks up to `last_seq` are the replay's; later ones come live.
    pub async fn register(&self, user: &UserId, uuid: &str, resume: Option<u64>) -> Result<Registration, StoreError> {
        let recipient = self.recipients.get(user).expect("every authenticated user has a recipient entry");
        let mut guard = recipient.lock().await;
        let (u, d) = (user.clone(), uuid.to_owned());
        let reg = self.store.run(move |c| Store::register_device(c, &u, &d, resume, now_ms())).await?;
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.cfg.connection_queue.max(1));
        guard.conns.insert(conn_id, tx);
        Ok(Registration { conn_id, last_seq: reg.last_seq, acked: reg.acked, live: rx })
    }

    pub async fn unregister(&self, user: &UserId, conn_id: u64, uuid: &str) {
        if let Some(recipient) = self.recipients.get(user) {
            recipient.lock().await.conns.remove(&conn_id);
        }
        let (u, d) = (user.clone(), uuid.to_owned());
        if let Err(e) = self.store.run(move |c| Store::touch_device(c, &u, &d, now_ms())).await {
            tracing::warn!(error = %e, "could not record a device's last visit");
        }
    }

    /// Whether this user may make another HTTP request now.
    pub fn http_allowed(&self, user: &UserId) -> bool {
        let now = Instant::now();
        let mut buckets = self.http_buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| !b.is_full_at(now));
        }
        buckets.entry(user.clone()).or_insert_with(|| TokenBucket::new_at(self.cfg.http_rate, now)).try_take_at(now)
    }
}

/// Deletes talks and devices past the retention limit, now and then, until shutdown.
pub(crate) async fn maintenance(shared: Arc<Shared>) {
    let retention = shared.cfg.retention;
    let every = (retention / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
    let mut stop = shared.shutdown.clone();
    loop {
        let cutoff = now_ms().saturating_sub(retention.as_millis().min(i64::MAX as u128) as i64);
        match shared.store.run(move |c| Store::prune_older_than(c, cutoff)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(talks = n, "deleted talks past the retention limit"),
            Err(e) => tracing::warn!(error = %e, "retention pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = crate::ws::stopped(&mut stop) => return,
        }
    }
}
