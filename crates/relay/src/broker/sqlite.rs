//! The durable queue: SQLite (WAL, `synchronous = FULL`), in a folder made 0700, its
//! database, `-wal` and `-shm` files 0600 (see [`private_files`]).
//!
//! - `meta`: the database's `epoch`, a random id made with the database. It names the
//!   lifetime of every queue in it (PROTOCOL.md 3): a deleted database is a new epoch.
//! - `counters`: each recipient's last `seq`. It outlives the talks, so a `seq` is never
//!   given twice within an epoch, across restarts too.
//! - `talks`: each recipient's talks that some device may still need, by `seq`.
//! - `send_keys`: the idempotency key of each `send` (PROTOCOL.md 1.4) with the `seq` and
//!   `ts` it got, per recipient, kept [`SEND_KEY_TTL_MS`] after the append (the
//!   maintenance pass deletes older ones), whether or not the talk is still queued.
//! - `devices`: every device (hello `uuid`) that does delivery for a recipient (it sent a
//!   `resume` or an ack), with the highest `seq` it acked (its cursor) and when it was
//!   last seen. A hello with neither (an original client, which never acks) records
//!   nothing, so a client that never acks cannot hold the queue.
//!
//! The rule for talks: **an accepted talk is never evicted.** A talk [`Store::insert`]
//! gave a `seq` stays until every device of its recipient has acked it, or until it is
//! older than the retention limit; nothing else deletes it. A recipient holds at most
//! [`QueueCaps::per_recipient`] talks, and at most [`QueueCaps::per_sender`] from any
//! one sender; past either, new talks are refused with [`StoreError::QueueFull`] (HTTP
//! 507, `queue_full` on a WebSocket) and nothing queued is touched.
//!
//! The rule for devices: a talk counts against its recipient's queue until every device
//! still known has acked it, so a device that never comes back would hold the queue
//! full. A device is therefore forgotten (its row and cursor deleted, its unacked backlog
//! no longer holding talks) when it has not been seen for [`DeviceRule::expiry_ms`]
//! (7 days by default), or when its recipient has more than [`DeviceRule::max`] devices
//! (the least recently seen go first; the one registering or acking is kept). A device
//! is seen when it connects, acks or disconnects, and at every maintenance pass while it
//! is connected. A recipient with no device left keeps its talks until retention (a new
//! device may resume from 0); a forgotten device that returns is a new device.
//!
//! The rule for commits (group commit): **an append is answered only once its talk is
//! durable**, and one fsync covers every append, ack and `seen` that was waiting.
//! [`Broker::append`], [`Broker::ack`] and [`Broker::seen`] hand their job to one writer
//! thread (a channel, in the order of the calls). The writer takes every job waiting, at
//! most [`MAX_BATCH`], runs them in one transaction in that order and commits once
//! (`synchronous = FULL`: one fsync for the batch), then answers each caller. So:
//!
//! - An append's place is taken when [`Broker::append`] is *called*: two calls for one
//!   recipient get their `seq`s in the order of the calls (the hub relies on that to hand
//!   talks out in order; see `hub.rs`). `seq`s stay per recipient and consecutive.
//! - Each job runs in a savepoint of the batch's transaction: a job that is refused (a
//!   full queue, [`StoreError::QueueFull`]) or fails alone is rolled back alone, and the
//!   others of its batch go on. The caps count the talks accepted earlier in the same
//!   batch, and a `send` key appended earlier in the batch makes a later append with the
//!   same key a duplicate, as across batches.
//! - A batch whose commit fails (or whose transaction SQLite rolled back, a full disk,
//!   say) stores none of its jobs, and every caller of it gets
//!   [`StoreError::Commit`]; their `seq`s were given to nobody, so the next batch gives
//!   them again, and a `seq` is still never given twice.
//! - [`MAX_BATCH`] bounds what one commit carries, so no caller waits behind a
//!   transaction of unbounded size. The channel itself holds no more than the requests
//!   in flight: each caller waits for its answer.
//!
//! The other calls (register, replay, prune) run on the blocking pool through
//! [`Store::run`], on the same connection (a mutex the writer takes for each batch), so
//! neither a commit nor a read ever stalls the async workers. This broker is one
//! process's: every talk is appended and handed out by the relay that holds the file, so
//! it has no other node to wake.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use talkbell_core::protocol::{Person, UserId};
use tokio::sync::{mpsc, oneshot};

use super::{
    now_ms, Appended, BoxFuture, Broker, BrokerError, Device, DeviceRule, NewTalk, QueueCaps, QueueFull, Registered,
    StoredTalk, Wakeup, SEND_KEY_TTL_MS,
};

const SCHEMA_VERSION: i64 = 3;

/// The most jobs (appends, acks, `seen`s) one commit carries.
pub const MAX_BATCH: usize = 256;

/// A device's cursor as [`Store::register_device`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The recipient's last `seq`.
    pub last_seq: u64,
    /// What the device has acked.
    pub acked: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {0} is newer than this relay knows ({SCHEMA_VERSION})")]
    NewerSchema(i64),
    #[error("database task failed: {0}")]
    Task(String),
    #[error("{0}")]
    QueueFull(#[from] QueueFull),
    #[error("cannot make the database's folder or files private ({path}): {source}")]
    Private { path: std::path::PathBuf, source: std::io::Error },
    /// The commit of a batch failed: none of its jobs is stored.
    #[error("the queue's commit of {jobs} job(s) failed, none of them is stored: {source}")]
    Commit { jobs: usize, source: Arc<rusqlite::Error> },
    #[error("cannot start the queue's writer thread: {0}")]
    Thread(std::io::Error),
    #[error("the queue's writer thread has stopped")]
    WriterGone,
}

/// The SQLite queue. As a [`Broker`] it enforces its [`QueueCaps`] and [`DeviceRule`]
/// ([`Store::with_limits`]; the relay's defaults otherwise).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    writer: Arc<Writer>,
    epoch: Arc<str>,
    caps: QueueCaps,
    rule: DeviceRule,
}

/// What an insert did: the talk's `seq` and `ts`, and whether its key was known.
type Inserted = (u64, i64, bool);

/// Where the writer answers a job.
type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A job for the writer thread: one of a batch, answered once the batch is committed.
enum Job {
    Append { talk: NewTalk, caps: QueueCaps, reply: Reply<Inserted> },
    Ack { device: Device, seq: u64, now_ms: i64, rule: DeviceRule, reply: Reply<()> },
    Seen { devices: Vec<Device>, now_ms: i64, reply: Reply<()> },
}

/// A job run inside its batch, with what it will answer once the batch is committed.
enum Done {
    Append(Reply<Inserted>, Result<Inserted, StoreError>),
    Unit(Reply<()>, Result<(), StoreError>),
}

/// The writer thread and its channel. Dropped with the last [`Store`]: the channel closes,
/// the thread finishes what it has and ends, and the drop waits for it, so the database
/// is closed once the store is gone.
struct Writer {
    jobs: Option<std_mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    tally: Arc<Tally>,
}

/// What the writer thread has done: commits tried, and the jobs they carried.
#[derive(Default)]
struct Tally {
    commits: AtomicU64,
    jobs: AtomicU64,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the caps count inside one batch: each recipient's queued talks, and each
/// sender's among them, read once from the database and then kept up to date with the
/// talks the batch accepts. An ack in the batch (which deletes talks) drops its
/// recipient's counts, so they are read again.
#[derive(Default)]
struct Counts {
    queued: HashMap<UserId, usize>,
    by_sender: HashMap<(UserId, UserId), usize>,
}

impl Counts {
    fn queued(&mut self, conn: &Connection, recipient: &UserId) -> Result<usize, StoreError> {
        if let Some(n) = self.queued.get(recipient) {
            return Ok(*n);
        }
        let n = Store::queued(conn, recipient)?;
        self.queued.insert(recipient.clone(), n);
        Ok(n)
    }

    fn by_sender(&mut self, conn: &Connection, recipient: &UserId, sender: &UserId) -> Result<usize, StoreError> {
        let key = (recipient.clone(), sender.clone());
        if let Some(n) = self.by_sender.get(&key) {
            return Ok(*n);
        }
        let n: i64 = conn
            .prepare_cached("SELECT count(*) FROM talks WHERE recipient = ?1 AND from_id = ?2")?
            .query_row(params![recipient.as_str(), sender.as_str()], |r| r.get(0))?;
        self.by_sender.insert(key, to_usize(n));
        Ok(to_usize(n))
    }

    /// A talk from `sender` to `recipient` was accepted (after both were read).
    fn accepted(&mut self, recipient: &UserId, sender: &UserId) {
        if let Some(n) = self.queued.get_mut(recipient) {
            *n += 1;
        }
        if let Some(n) = self.by_sender.get_mut(&(recipient.clone(), sender.clone())) {
            *n += 1;
        }
    }

    /// Talks of `recipient` may have been deleted: read again next time.
    fn forget(&mut self, recipient: &UserId) {
        self.queued.remove(recipient);
        self.by_sender.retain(|(r, _), _| r != recipient);
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// A new epoch: 128 random bits in hex.
fn new_epoch() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Store {
    /// Opens (or creates) the database at `path`, its folder and files private first.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        private_files(path)?;
        let conn = Connection::open(path)?;
        let store = Self::init(conn)?;
        // The -wal and -shm files exist now; they take the database's mode, and an
        // old one of another mode is fixed.
        private_files(path)?;
        Ok(store)
    }

    /// A private in-memory database (unit tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: readers never block the writer. FULL: a commit is on disk when it returns,
        // so a 200 for a POST means the talk survives a power cut.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema(version));
        }
        // Version 2 adds `meta` (the epoch) and the index by sender; a version-1 file
        // gets both here, and its epoch with them. Version 3 adds `send_keys`.
        let tx = conn.transaction()?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (
                 key   TEXT PRIMARY KEY,
                 value TEXT NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS counters (
                 recipient TEXT PRIMARY KEY,
                 last_seq  INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS talks (
                 recipient TEXT NOT NULL,
                 seq       INTEGER NOT NULL,
                 ts        INTEGER NOT NULL,
                 from_id   TEXT NOT NULL,
                 from_name TEXT NOT NULL,
                 to_name   TEXT NOT NULL,
                 talk      TEXT NOT NULL,
                 PRIMARY KEY (recipient, seq)
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS talks_by_ts ON talks (ts);
             CREATE INDEX IF NOT EXISTS talks_by_sender ON talks (recipient, from_id);
             CREATE TABLE IF NOT EXISTS devices (
                 recipient TEXT NOT NULL,
                 uuid      TEXT NOT NULL,
                 acked     INTEGER NOT NULL,
                 last_seen INTEGER NOT NULL,
                 PRIMARY KEY (recipient, uuid)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS send_keys (
                 recipient TEXT NOT NULL,
                 key       TEXT NOT NULL,
                 seq       INTEGER NOT NULL,
                 ts        INTEGER NOT NULL,
                 PRIMARY KEY (recipient, key)
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS send_keys_by_ts ON send_keys (ts);
             PRAGMA user_version = 3;",
        )?;
        tx.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)", params![new_epoch()])?;
        let epoch: String = tx.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| r.get(0))?;
        tx.commit()?;
        let conn = Arc::new(Mutex::new(conn));
        let (jobs, rx) = std_mpsc::channel();
        let tally = Arc::new(Tally::default());
        let thread = {
            let (conn, tally) = (conn.clone(), tally.clone());
            std::thread::Builder::new()
                .name("queue-writer".into())
                .spawn(move || write_batches(&conn, &rx, &tally))
                .map_err(StoreError::Thread)?
        };
        Ok(Store {
            conn,
            writer: Arc::new(Writer { jobs: Some(jobs), thread: Some(thread), tally }),
            epoch: epoch.into(),
            caps: QueueCaps::new(10_000),
            rule: DeviceRule::default(),
        })
    }

    /// The caps [`Broker::append`] enforces and the rule by which [`Broker::register`]
    /// and [`Broker::ack`] forget devices.
    pub fn with_limits(self, caps: QueueCaps, rule: DeviceRule) -> Self {
        Store { caps, rule, ..self }
    }

    /// The lifetime of every queue in this database (PROTOCOL.md 3).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// How many commits the writer has made so far, and how many jobs (appends, acks,
    /// `seen`s) they carried.
    pub fn commits(&self) -> (u64, u64) {
        let tally = &self.writer.tally;
        (tally.commits.load(Ordering::Relaxed), tally.jobs.load(Ordering::Relaxed))
    }

    /// Runs `f` on the connection, on the blocking pool.
    pub async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` on the connection on this thread (tests, start-up).
    pub fn run_sync<R>(&self, f: impl FnOnce(&mut Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// Hands a job to the writer thread now (its place in the order is taken here, not
    /// when the future is first polled); the future resolves once its batch is committed.
    fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce(Reply<T>) -> Job,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        // A send that fails drops the job and its reply, so the answer says the writer is gone.
        if let Some(jobs) = &self.writer.jobs {
            let _ = jobs.send(job(reply));
        }
        async move { answer.await.map_err(|_| StoreError::WriterGone)? }
    }

    /// Gives the talk the recipient's next `seq`, stores it and commits; or refuses it,
    /// touching nothing, when the recipient's queue or this sender's share of it is full.
    /// Returns the `seq`.
    pub fn insert(
        conn: &mut Connection,
        from: &Person,
        to: &Person,
        talk: &str,
        ts: i64,
        caps: QueueCaps,
    ) -> Result<u64, StoreError> {
        let new = NewTalk { from: from.clone(), to: to.clone(), talk: talk.to_owned(), ts, key: None };
        Ok(Self::insert_keyed(conn, &new, caps)?.0)
    }

    /// [`Store::insert`] with the talk's idempotency key: a known key stores nothing and
    /// returns the first talk's `seq` and `ts`, and true. Returns `(seq, ts, duplicate)`.
    pub fn insert_keyed(conn: &mut Connection, new: &NewTalk, caps: QueueCaps) -> Result<(u64, i64, bool), StoreError> {
        let tx = conn.transaction()?;
        let inserted = Self::insert_in(&tx, new, caps, &mut Counts::default())?;
        tx.commit()?;
        Ok(inserted)
    }

    /// The insert itself, in the caller's transaction, the caps counted with `counts`.
    fn insert_in(
        conn: &Connection,
        new: &NewTalk,
        caps: QueueCaps,
        counts: &mut Counts,
    ) -> Result<Inserted, StoreError> {
        let (from, to) = (&new.from, &new.to);
        if let Some(key) = &new.key {
            let known: Option<(i64, i64)> = conn
                .prepare_cached("SELECT seq, ts FROM send_keys WHERE recipient = ?1 AND key = ?2")?
                .query_row(params![to.id.as_str(), key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((seq, ts)) = known {
                return Ok((to_u64(seq), ts, true));
            }
        }
        if counts.queued(conn, &to.id)? >= caps.per_recipient.max(1) {
            return Err(QueueFull::Recipient { cap: caps.per_recipient.max(1) }.into());
        }
        if counts.by_sender(conn, &to.id, &from.id)? >= caps.per_sender.max(1) {
            return Err(QueueFull::Sender { cap: caps.per_sender.max(1) }.into());
        }
        let seq: i64 = conn
            .prepare_cached(
                "INSERT INTO counters (recipient, last_seq) VALUES (?1, 1)
                 ON CONFLICT (recipient) DO UPDATE SET last_seq = last_seq + 1
                 RETURNING last_seq",
            )?
            .query_row(params![to.id.as_str()], |r| r.get(0))?;
        conn.prepare_cached(
            "INSERT INTO talks (recipient, seq, ts, from_id, from_name, to_name, talk)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![to.id.as_str(), seq, new.ts, from.id.as_str(), from.name, to.name, new.talk])?;
        if let Some(key) = &new.key {
            conn.prepare_cached("INSERT INTO send_keys (recipient, key, seq, ts) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![to.id.as_str(), key, seq, new.ts])?;
        }
        counts.accepted(&to.id, &from.id);
        Ok((to_u64(seq), new.ts, false))
    }

    /// The recipient's last `seq` (0 before the first talk).
    pub fn last_seq(conn: &Connection, recipient: &UserId) -> Result<u64, StoreError> {
        let last: Option<i64> = conn
            .query_row("SELECT last_seq FROM counters WHERE recipient = ?1", params![recipient.as_str()], |r| r.get(0))
            .optional()?;
        Ok(to_u64(last.unwrap_or(0)))
    }

    /// Records that `uuid` connected as `recipient`. A `resume` counts as an ack of
    /// everything up to it (the client says it has stored those) and makes the device a
    /// cursor; without one, a device already known is only seen, and an unknown one is
    /// not recorded. Forgets devices past `rule`. Returns the recipient's last `seq` and
    /// what the device has acked so far.
    pub fn register_device(
        conn: &mut Connection,
        recipient: &UserId,
        uuid: &str,
        resume: Option<u64>,
        now_ms: i64,
        rule: DeviceRule,
    ) -> Result<Cursor, StoreError> {
        let tx = conn.transaction()?;
        let last_seq = Self::last_seq(&tx, recipient)?;
        match resume {
            Some(resume) => Self::upsert_device(&tx, recipient, uuid, to_i64(resume.min(last_seq)), now_ms)?,
            None => Self::touch(&tx, recipient, uuid, now_ms)?,
        }
        let acked: Option<i64> = tx
            .query_row(
                "SELECT acked FROM devices WHERE recipient = ?1 AND uuid = ?2",
                params![recipient.as_str(), uuid],
                |r| r.get(0),
            )
            .optional()?;
        Self::forget_devices(&tx, recipient, uuid, now_ms, rule)?;
        Self::prune_acked(&tx, recipient)?;
        tx.commit()?;
        Ok(Cursor { last_seq, acked: to_u64(acked.unwrap_or(0)) })
    }

    fn touch(conn: &Connection, recipient: &UserId, uuid: &str, now_ms: i64) -> Result<(), StoreError> {
        conn.execute(
            "UPDATE devices SET last_seen = max(last_seen, ?3) WHERE recipient = ?1 AND uuid = ?2",
            params![recipient.as_str(), uuid, now_ms],
        )?;
        Ok(())
    }

    /// Records a cumulative ack from a device and deletes what every device has acked.
    pub fn ack(
        conn: &mut Connection,
        recipient: &UserId,
        uuid: &str,
        seq: u64,
        now_ms: i64,
        rule: DeviceRule,
    ) -> Result<(), StoreError> {
        let tx = conn.transaction()?;
        Self::ack_in(&tx, recipient, uuid, seq, now_ms, rule)?;
        tx.commit()?;
        Ok(())
    }

    /// The ack itself, in the caller's transaction.
    fn ack_in(
        conn: &Connection,
        recipient: &UserId,
        uuid: &str,
        seq: u64,
        now_ms: i64,
        rule: DeviceRule,
    ) -> Result<(), StoreError> {
        let last_seq = Self::last_seq(conn, recipient)?;
        // An upsert: a device forgotten while it stayed connected is recorded again.
        Self::upsert_device(conn, recipient, uuid, to_i64(seq.min(last_seq)), now_ms)?;
        Self::forget_devices(conn, recipient, uuid, now_ms, rule)?;
        Self::prune_acked(conn, recipient)?;
        Ok(())
    }

    fn upsert_device(
        conn: &Connection,
        recipient: &UserId,
        uuid: &str,
        acked: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        conn.execute(
            "INSERT INTO devices (recipient, uuid, acked, last_seen) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (recipient, uuid) DO UPDATE
             SET acked = max(acked, excluded.acked), last_seen = max(last_seen, excluded.last_seen)",
            params![recipient.as_str(), uuid, acked, now_ms],
        )?;
        Ok(())
    }

    /// Forgets the recipient's devices unseen for the rule's expiry, then the least
    /// recently seen past its cap; `keep` (the device at hand) stays. Returns how many.
    fn forget_devices(
        conn: &Connection,
        recipient: &UserId,
        keep: &str,
        now_ms: i64,
        rule: DeviceRule,
    ) -> Result<usize, StoreError> {
        let cutoff = now_ms.saturating_sub(rule.expiry_ms);
        let stale = conn.execute(
            "DELETE FROM devices WHERE recipient = ?1 AND uuid != ?2 AND last_seen < ?3",
            params![recipient.as_str(), keep, cutoff],
        )?;
        let others = to_i64(u64::try_from(rule.max.max(1) - 1).unwrap_or(u64::MAX));
        let over = conn.execute(
            "DELETE FROM devices WHERE recipient = ?1 AND uuid IN (
                 SELECT uuid FROM devices WHERE recipient = ?1 AND uuid != ?2
                 ORDER BY last_seen DESC, uuid LIMIT -1 OFFSET ?3)",
            params![recipient.as_str(), keep, others],
        )?;
        if stale + over > 0 {
            tracing::info!(
                user = %crate::untrusted(recipient.as_str()),
                unseen = stale,
                over_cap = over,
                "forgot devices; their unacked talks no longer hold the queue"
            );
        }
        Ok(stale + over)
    }

    fn prune_acked(conn: &Connection, recipient: &UserId) -> Result<usize, StoreError> {
        Ok(conn.execute(
            "DELETE FROM talks WHERE recipient = ?1
             AND seq <= (SELECT min(acked) FROM devices WHERE recipient = ?1)",
            params![recipient.as_str()],
        )?)
    }

    /// Notes that devices were seen (on disconnect, and while connected), so that they
    /// are not forgotten.
    pub fn touch_devices(conn: &mut Connection, devices: &[Device], now_ms: i64) -> Result<(), StoreError> {
        let tx = conn.transaction()?;
        Self::touch_all(&tx, devices, now_ms)?;
        tx.commit()?;
        Ok(())
    }

    fn touch_all(conn: &Connection, devices: &[Device], now_ms: i64) -> Result<(), StoreError> {
        for device in devices {
            Self::touch(conn, &device.user, &device.uuid, now_ms)?;
        }
        Ok(())
    }

    /// Up to `limit` talks of `recipient` with `after < seq <= upto`, in order.
    pub fn range(
        conn: &Connection,
        recipient: &UserId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<StoredTalk>, StoreError> {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, ts, from_id, from_name, to_name, talk FROM talks
             WHERE recipient = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
        )?;
        let limit = to_i64(u64::try_from(limit).unwrap_or(u64::MAX));
        let rows = stmt.query_map(params![recipient.as_str(), to_i64(after), to_i64(upto), limit], |r| {
            Ok(StoredTalk {
                seq: to_u64(r.get::<_, i64>(0)?),
                ts: r.get(1)?,
                from: Person { id: UserId::new(r.get::<_, String>(2)?), name: r.get(3)? },
                to: Person { id: recipient.clone(), name: r.get(4)? },
                talk: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The maintenance pass: deletes talks older than `talk_cutoff_ms`, forgets devices
    /// not seen since `device_cutoff_ms`, deletes what the remaining devices of their
    /// recipients have all acked, and the `send` keys older than `key_cutoff_ms`.
    /// Returns how many talks went past retention.
    pub fn expire(
        conn: &mut Connection,
        talk_cutoff_ms: i64,
        device_cutoff_ms: i64,
        key_cutoff_ms: i64,
    ) -> Result<usize, StoreError> {
        let tx = conn.transaction()?;
        let talks = tx.execute("DELETE FROM talks WHERE ts < ?1", params![talk_cutoff_ms])?;
        tx.execute("DELETE FROM send_keys WHERE ts < ?1", params![key_cutoff_ms])?;
        let forgotten: Vec<String> = {
            let mut stmt = tx.prepare("DELETE FROM devices WHERE last_seen < ?1 RETURNING recipient")?;
            let rows = stmt.query_map(params![device_cutoff_ms], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut recipients = forgotten.clone();
        recipients.sort();
        recipients.dedup();
        for recipient in &recipients {
            Self::prune_acked(&tx, &UserId::new(recipient.clone()))?;
        }
        tx.commit()?;
        if !forgotten.is_empty() {
            tracing::info!(devices = forgotten.len(), "forgot devices not seen within the device expiry");
        }
        Ok(talks)
    }

    /// How many talks are queued for `recipient`.
    pub fn queued(conn: &Connection, recipient: &UserId) -> Result<usize, StoreError> {
        let n: i64 =
            conn.query_row("SELECT count(*) FROM talks WHERE recipient = ?1", params![recipient.as_str()], |r| {
                r.get(0)
            })?;
        Ok(to_usize(n))
    }

    /// How many devices `recipient` has (tests, logs).
    pub fn devices(conn: &Connection, recipient: &UserId) -> Result<usize, StoreError> {
        let n: i64 =
            conn.query_row("SELECT count(*) FROM devices WHERE recipient = ?1", params![recipient.as_str()], |r| {
                r.get(0)
            })?;
        Ok(to_usize(n))
    }
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::QueueFull(full) => BrokerError::QueueFull(full),
            other => BrokerError::Failed(Box::new(other)),
        }
    }
}

impl Broker for Store {
    fn describe(&self) -> String {
        format!("sqlite (epoch {})", self.epoch)
    }

    fn append(&self, talk: NewTalk) -> BoxFuture<'_, Result<Appended, BrokerError>> {
        let inserted = self.submit(|reply| Job::Append { talk, caps: self.caps, reply });
        Box::pin(async move {
            let (seq, ts, duplicate) = inserted.await?;
            Ok(Appended { seq, ts, epoch: self.epoch.to_string(), duplicate })
        })
    }

    /// One process: every talk is appended and handed out here.
    fn watch<'a>(&'a self, _user: &'a UserId) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn unwatch<'a>(&'a self, _user: &'a UserId) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn register(
        &self,
        device: Device,
        resume: Option<u64>,
        epoch: Option<String>,
    ) -> BoxFuture<'_, Result<Registered, BrokerError>> {
        let rule = self.rule;
        let reset = epoch.is_some_and(|e| *e != *self.epoch);
        let resume = if reset { None } else { resume };
        Box::pin(async move {
            let Device { user, uuid } = device;
            let cursor = self.run(move |c| Store::register_device(c, &user, &uuid, resume, now_ms(), rule)).await?;
            Ok(Registered { last_seq: cursor.last_seq, acked: cursor.acked, epoch: self.epoch.to_string(), reset })
        })
    }

    fn replay(
        &self,
        user: UserId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredTalk>, BrokerError>> {
        Box::pin(async move { Ok(self.run(move |c| Store::range(c, &user, after, upto, limit)).await?) })
    }

    /// One epoch for the database's life: an ack of another names another database.
    fn ack(&self, device: Device, seq: u64, epoch: String) -> BoxFuture<'_, Result<(), BrokerError>> {
        if *epoch != *self.epoch {
            return Box::pin(async { Ok(()) });
        }
        let acked = self.submit(|reply| Job::Ack { device, seq, now_ms: now_ms(), rule: self.rule, reply });
        Box::pin(async move { Ok(acked.await?) })
    }

    fn seen(&self, devices: Vec<Device>) -> BoxFuture<'_, Result<(), BrokerError>> {
        let seen = self.submit(|reply| Job::Seen { devices, now_ms: now_ms(), reply });
        Box::pin(async move { Ok(seen.await?) })
    }

    fn prune(&self, talks_before_ms: i64, devices_before_ms: i64) -> BoxFuture<'_, Result<usize, BrokerError>> {
        let keys_before_ms = now_ms().saturating_sub(SEND_KEY_TTL_MS);
        Box::pin(async move {
            Ok(self.run(move |c| Store::expire(c, talks_before_ms, devices_before_ms, keys_before_ms)).await?)
        })
    }

    fn wake<'a>(&'a self, _talk: &'a StoredTalk) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// One process: the hub's own copies reached every connection there is.
    fn broadcast<'a>(&'a self, _talk: &'a StoredTalk) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn wakeups(&self) -> Option<mpsc::Receiver<Wakeup>> {
        None
    }
}

/// The writer thread: every job waiting (at most [`MAX_BATCH`]) in one transaction and
/// one commit, batch after batch, until every [`Store`] is gone. The batch is taken once
/// the connection is the writer's, so jobs that came while a read held it join it.
fn write_batches(conn: &Mutex<Connection>, jobs: &std_mpsc::Receiver<Job>, tally: &Tally) {
    while let Ok(first) = jobs.recv() {
        let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut batch = Vec::with_capacity(MAX_BATCH.min(64));
        batch.push(first);
        batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
        // Counted before the answers go, so a caller that has its answer sees its commit.
        tally.jobs.fetch_add(u64::try_from(batch.len()).unwrap_or(u64::MAX), Ordering::Relaxed);
        tally.commits.fetch_add(1, Ordering::Relaxed);
        commit_batch(&mut guard, batch);
    }
    let (commits, jobs) = (tally.commits.load(Ordering::Relaxed), tally.jobs.load(Ordering::Relaxed));
    tracing::debug!(commits, jobs, "the queue's writer stopped");
}

/// Runs a batch's jobs in one transaction, each in a savepoint, commits once, then
/// answers each caller; if the transaction cannot go on or the commit fails, every
/// caller of the batch gets [`StoreError::Commit`] and nothing of it is stored.
fn commit_batch(conn: &mut Connection, batch: Vec<Job>) {
    let jobs = batch.len();
    let mut done = Vec::with_capacity(jobs);
    let mut not_run = Vec::new();
    let mut batch = batch.into_iter();
    let committed = (|| {
        let mut tx = conn.transaction()?;
        let mut counts = Counts::default();
        for job in batch.by_ref() {
            match run_job(&mut tx, job, &mut counts) {
                Ran::Done(d) => done.push(d),
                Ran::Fatal(d, e) => {
                    done.push(d);
                    return Err(e);
                }
                Ran::NotRun(job, e) => {
                    not_run.push(job);
                    return Err(e);
                }
            }
        }
        tx.commit()
    })();
    match committed {
        Ok(()) => done.into_iter().for_each(Done::send),
        Err(e) => {
            tracing::error!(error = %e, jobs, "the queue's commit failed; every talk and ack of the batch is refused");
            let source = Arc::new(e);
            let failed = || StoreError::Commit { jobs, source: source.clone() };
            done.into_iter().for_each(|d| d.fail(failed()));
            not_run.into_iter().chain(batch).for_each(|job| job.fail(failed()));
        }
    }
}

/// What running one job of a batch came to.
enum Ran {
    /// It ran, and the batch goes on (the job itself may have been refused or failed).
    Done(Done),
    /// It ran, but the batch's transaction cannot go on.
    Fatal(Done, rusqlite::Error),
    /// Its savepoint could not be made: the batch's transaction cannot go on.
    NotRun(Job, rusqlite::Error),
}

/// One job in its own savepoint of the batch's transaction: kept if it did what was
/// asked, rolled back alone if it was refused or failed. A savepoint that cannot be made
/// or ended, or a transaction SQLite rolled back itself (a full disk, say), fails the
/// batch.
fn run_job(tx: &mut Transaction<'_>, job: Job, counts: &mut Counts) -> Ran {
    let sp = match tx.savepoint() {
        Ok(sp) => sp,
        Err(e) => return Ran::NotRun(job, e),
    };
    let done = job.run(&sp, counts);
    let ended = if done.is_ok() { sp.commit() } else { sp.finish() };
    match ended {
        Err(e) => Ran::Fatal(done, e),
        Ok(()) if tx.is_autocommit() => Ran::Fatal(done, rolled_back()),
        Ok(()) => Ran::Done(done),
    }
}

/// The error of a batch whose transaction SQLite ended on its own.
fn rolled_back() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
        Some("the batch's transaction was rolled back".into()),
    )
}

impl Job {
    /// Runs the job on `conn` (a savepoint of its batch's transaction).
    fn run(self, conn: &Connection, counts: &mut Counts) -> Done {
        match self {
            Job::Append { talk, caps, reply } => Done::Append(reply, Store::insert_in(conn, &talk, caps, counts)),
            Job::Ack { device, seq, now_ms, rule, reply } => {
                // The ack may delete talks of its recipient.
                counts.forget(&device.user);
                Done::Unit(reply, Store::ack_in(conn, &device.user, &device.uuid, seq, now_ms, rule))
            }
            Job::Seen { devices, now_ms, reply } => Done::Unit(reply, Store::touch_all(conn, &devices, now_ms)),
        }
    }

    fn fail(self, e: StoreError) {
        match self {
            Job::Append { reply, .. } => drop(reply.send(Err(e))),
            Job::Ack { reply, .. } | Job::Seen { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

impl Done {
    fn is_ok(&self) -> bool {
        match self {
            Done::Append(_, result) => result.is_ok(),
            Done::Unit(_, result) => result.is_ok(),
        }
    }

    fn send(self) {
        match self {
            Done::Append(reply, result) => drop(reply.send(result)),
            Done::Unit(reply, result) => drop(reply.send(result)),
        }
    }

    fn fail(self, e: StoreError) {
        match self {
            Done::Append(reply, _) => drop(reply.send(Err(e))),
            Done::Unit(reply, _) => drop(reply.send(Err(e))),
        }
    }
}

/// The database's folder and files, private: a missing folder is made 0700, a missing
/// database file is made 0600 (SQLite gives its `-wal` and `-shm` files the database's
/// mode), and an existing database, `-wal`, `-shm` or `-journal` file of another mode
/// is set to 0600. An existing folder that holds nothing but the database's files is set
/// to 0700; one that holds other files too (the database beside the users file, say) is
/// left alone with a warning, since the files in it are private anyway. Each change is
/// logged.
#[cfg(unix)]
pub fn private_files(db: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Private { path, source }
    };
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(err(&dir))?;
        tracing::info!(dir = %dir.display(), "made the queue database's folder (0700)");
    }
    if !db.exists() {
        std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(db).map_err(err(db))?;
    }
    let name = db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let ours = |file: &str| file == name || ["-wal", "-shm", "-journal"].iter().any(|s| file == format!("{name}{s}"));
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = dir.join(format!("{name}{suffix}"));
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if mode != 0o600 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err(&path))?;
            tracing::info!(file = %path.display(), from = %format!("{mode:04o}"), to = "0600", "made a queue file private");
        }
    }
    let mode = std::fs::metadata(&dir).map_err(err(&dir))?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let only_ours = std::fs::read_dir(&dir)
            .map_err(err(&dir))?
            .all(|e| e.is_ok_and(|e| ours(&e.file_name().to_string_lossy())));
        if only_ours {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(err(&dir))?;
            tracing::info!(dir = %dir.display(), from = %format!("{mode:04o}"), to = "0700", "made the queue database's folder private");
        } else {
            tracing::warn!(
                dir = %dir.display(),
                mode = %format!("{mode:04o}"),
                "the queue database's folder is open to others and holds other files, so it is left as it is; the database's files are 0600"
            );
        }
    }
    Ok(())
}

/// Elsewhere the folder and files keep what the system gives them.
#[cfg(not(unix))]
pub fn private_files(_db: &Path) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: QueueCaps = QueueCaps { per_recipient: 100, per_sender: 100 };
    const RULE: DeviceRule = DeviceRule { max: 16, expiry_ms: 1_000_000 };

    fn p(id: &str, name: &str) -> Person {
        Person { id: id.into(), name: name.into() }
    }

    #[test]
    fn seq_is_per_recipient_and_survives_reopen_with_its_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::open(&path).unwrap();
        let epoch = store.epoch().to_owned();
        assert_eq!(epoch.len(), 32);
        store
            .run_sync(|c| {
                assert_eq!(Store::insert(c, &p("2", "b"), &p("1", "a"), "x", 10, CAPS)?, 1);
                assert_eq!(Store::insert(c, &p("2", "b"), &p("1", "a"), "y", 11, CAPS)?, 2);
                assert_eq!(Store::insert(c, &p("1", "a"), &p("2", "b"), "z", 12, CAPS)?, 1);
                Ok(())
            })
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.epoch(), epoch, "the epoch is the database's");
        store
            .run_sync(|c| {
                assert_eq!(Store::last_seq(c, &"1".into())?, 2);
                assert_eq!(Store::insert(c, &p("2", "b"), &p("1", "a"), "w", 13, CAPS)?, 3);
                let all = Store::range(c, &"1".into(), 0, u64::MAX, 10)?;
                let seqs: Vec<u64> = all.iter().map(|t| t.seq).collect();
                assert_eq!(seqs, vec![1, 2, 3]);
                assert_eq!(all[0].talk, "x");
                assert_eq!(all[0].from, p("2", "b"));
                assert_eq!(all[0].ts, 10);
                Ok(())
            })
            .unwrap();
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("q.db{suffix}")));
        }
        let store = Store::open(&path).unwrap();
        assert_ne!(store.epoch(), epoch, "a new database is a new epoch");
    }

    #[test]
    fn a_version_1_database_gets_an_epoch_and_keeps_its_talks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE counters (recipient TEXT PRIMARY KEY, last_seq INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE talks (recipient TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
                 from_id TEXT NOT NULL, from_name TEXT NOT NULL, to_name TEXT NOT NULL, talk TEXT NOT NULL,
                 PRIMARY KEY (recipient, seq)) WITHOUT ROWID;
             CREATE TABLE devices (recipient TEXT NOT NULL, uuid TEXT NOT NULL, acked INTEGER NOT NULL,
                 last_seen INTEGER NOT NULL, PRIMARY KEY (recipient, uuid)) WITHOUT ROWID;
             INSERT INTO counters VALUES ('1', 1);
             INSERT INTO talks VALUES ('1', 1, 5, '2', 'b', 'a', 'old');
             PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.epoch().len(), 32);
        store
            .run_sync(|c| {
                assert_eq!(Store::range(c, &"1".into(), 0, 10, 10)?[0].talk, "old");
                assert_eq!(Store::insert(c, &p("2", "b"), &p("1", "a"), "new", 6, CAPS)?, 2);
                let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
                assert_eq!(v, SCHEMA_VERSION);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn talks_go_once_every_device_acked_them() {
        let store = Store::open_in_memory().unwrap();
        let r: UserId = "1".into();
        store
            .run_sync(|c| {
                for i in 0..5 {
                    Store::insert(c, &p("2", "b"), &p("1", "a"), "t", i, CAPS)?;
                }
                // No device yet: everything stays.
                assert_eq!(Store::queued(c, &r)?, 5);
                let reg = Store::register_device(c, &r, "dev-a", None, 0, RULE)?;
                assert_eq!(reg, Cursor { last_seq: 5, acked: 0 });
                assert_eq!(Store::devices(c, &r)?, 0, "a hello without resume is no cursor");
                let reg = Store::register_device(c, &r, "dev-b", Some(2), 0, RULE)?;
                assert_eq!(reg, Cursor { last_seq: 5, acked: 2 });
                Store::ack(c, &r, "dev-a", 4, 0, RULE)?;
                // dev-b has only 2.
                assert_eq!(Store::queued(c, &r)?, 3);
                Store::ack(c, &r, "dev-b", 5, 0, RULE)?;
                assert_eq!(Store::queued(c, &r)?, 1);
                // Acks never go backwards, nor past the last seq.
                Store::ack(c, &r, "dev-a", 1, 0, RULE)?;
                Store::ack(c, &r, "dev-a", 99, 0, RULE)?;
                assert_eq!(Store::queued(c, &r)?, 0);
                // A device coming back with a lower resume keeps what it acked.
                let reg = Store::register_device(c, &r, "dev-a", Some(1), 0, RULE)?;
                assert_eq!(reg, Cursor { last_seq: 5, acked: 5 });
                let acked: i64 = c.query_row("SELECT acked FROM devices WHERE uuid = 'dev-a'", [], |row| row.get(0))?;
                assert_eq!(acked, 5);
                // A device that acks is recorded, and holds what it has not acked.
                Store::insert(c, &p("2", "b"), &p("1", "a"), "t", 9, CAPS)?;
                Store::ack(c, &r, "newcomer", 5, 0, RULE)?;
                Store::ack(c, &r, "dev-a", 6, 0, RULE)?;
                Store::ack(c, &r, "dev-b", 6, 0, RULE)?;
                assert_eq!(Store::queued(c, &r)?, 1);
                Store::ack(c, &r, "newcomer", 6, 0, RULE)?;
                assert_eq!(Store::queued(c, &r)?, 0);
                Ok(())
            })
            .unwrap();
    }

    /// A full queue refuses; nothing accepted is evicted; a sender's share is its own.
    #[test]
    fn a_full_queue_refuses_and_keeps_every_accepted_talk() {
        let store = Store::open_in_memory().unwrap();
        let r: UserId = "1".into();
        let caps = QueueCaps { per_recipient: 5, per_sender: 3 };
        store
            .run_sync(|c| {
                for i in 0..3 {
                    Store::insert(c, &p("2", "b"), &p("1", "a"), &format!("b{i}"), i, caps)?;
                }
                let refused = Store::insert(c, &p("2", "b"), &p("1", "a"), "b3", 3, caps).unwrap_err();
                assert!(matches!(refused, StoreError::QueueFull(QueueFull::Sender { cap: 3 })), "{refused}");
                // Another sender still gets through, up to the recipient's cap.
                assert_eq!(Store::insert(c, &p("3", "c"), &p("1", "a"), "c0", 4, caps)?, 4);
                assert_eq!(Store::insert(c, &p("3", "c"), &p("1", "a"), "c1", 5, caps)?, 5);
                let refused = Store::insert(c, &p("4", "d"), &p("1", "a"), "d0", 6, caps).unwrap_err();
                assert!(matches!(refused, StoreError::QueueFull(QueueFull::Recipient { cap: 5 })), "{refused}");
                // A refusal uses no seq, and every accepted talk is still there.
                let talks: Vec<String> = Store::range(c, &r, 0, u64::MAX, 100)?.into_iter().map(|t| t.talk).collect();
                assert_eq!(talks, ["b0", "b1", "b2", "c0", "c1"]);
                assert_eq!(Store::last_seq(c, &r)?, 5);
                // Once read, there is room again.
                Store::register_device(c, &r, "dev", Some(2), 0, RULE)?;
                assert_eq!(Store::insert(c, &p("2", "b"), &p("1", "a"), "b3", 7, caps)?, 6);
                Ok(())
            })
            .unwrap();
        assert_eq!(QueueCaps::new(10_000), QueueCaps { per_recipient: 10_000, per_sender: 1000 });
        assert_eq!(QueueCaps::new(5).per_sender, 1);
    }

    #[test]
    fn stale_and_over_cap_devices_are_forgotten() {
        let store = Store::open_in_memory().unwrap();
        let r: UserId = "1".into();
        let rule = DeviceRule { max: 3, expiry_ms: 1000 };
        store
            .run_sync(|c| {
                for i in 0..4 {
                    Store::insert(c, &p("2", "b"), &p("1", "a"), "t", i, CAPS)?;
                }
                // A device that saw nothing and never comes back holds all four.
                Store::register_device(c, &r, "gone", Some(0), 0, rule)?;
                Store::register_device(c, &r, "phone", Some(4), 500, rule)?;
                assert_eq!(Store::queued(c, &r)?, 4);
                // Seen 1000 ms ago or more: forgotten when another device comes, and its
                // backlog goes with what the others acked.
                Store::ack(c, &r, "phone", 4, 1000, rule)?;
                assert_eq!(Store::devices(c, &r)?, 2, "0 is not yet 1000 ms before 1000");
                Store::ack(c, &r, "phone", 4, 1001, rule)?;
                assert_eq!(Store::devices(c, &r)?, 1);
                assert_eq!(Store::queued(c, &r)?, 0);

                // Over the cap, the least recently seen goes first; the one at hand stays.
                for (i, d) in ["a", "b", "c"].iter().enumerate() {
                    Store::register_device(c, &r, d, Some(0), 1100 + i64::try_from(i).unwrap(), rule)?;
                }
                let mut left: Vec<String> = c
                    .prepare("SELECT uuid FROM devices ORDER BY uuid")?
                    .query_map([], |row| row.get(0))?
                    .collect::<Result<_, _>>()?;
                left.sort();
                assert_eq!(left, ["a", "b", "c"], "phone (seen at 1001) went");

                // The maintenance pass forgets the unseen too.
                Store::touch_devices(c, &[Device { user: r.clone(), uuid: "c".to_owned() }], 5000)?;
                Store::expire(c, 0, 2000, 0)?;
                assert_eq!(Store::devices(c, &r)?, 1);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn retention() {
        let store = Store::open_in_memory().unwrap();
        let r: UserId = "1".into();
        store
            .run_sync(|c| {
                for i in 0..10 {
                    Store::insert(c, &p("2", "b"), &p("1", "a"), "t", i * 1000, CAPS)?;
                }
                Store::register_device(c, &r, "old", Some(0), 500, RULE)?;
                assert_eq!(Store::expire(c, 9000, 9000, 0)?, 9);
                assert_eq!(Store::queued(c, &r)?, 1);
                assert_eq!(Store::devices(c, &r)?, 0);
                Ok(())
            })
            .unwrap();
    }

    /// One talk per key and recipient: a retry gets the first one's seq and ts, stores
    /// nothing, and uses no seq; the key outlives the talk's ack; it goes after its TTL.
    #[test]
    fn a_known_send_key_stores_nothing_and_answers_the_first_seq() {
        let store = Store::open_in_memory().unwrap();
        let r: UserId = "1".into();
        let keyed = |key: &str, ts: i64| NewTalk {
            from: p("2", "b"),
            to: p("1", "a"),
            talk: format!("k{key}"),
            ts,
            key: Some(key.into()),
        };
        store
            .run_sync(|c| {
                assert_eq!(Store::insert_keyed(c, &keyed("x", 10), CAPS)?, (1, 10, false));
                assert_eq!(Store::insert_keyed(c, &keyed("x", 20), CAPS)?, (1, 10, true));
                assert_eq!(Store::insert_keyed(c, &keyed("y", 30), CAPS)?, (2, 30, false));
                assert_eq!(Store::queued(c, &r)?, 2);
                // Acked and deleted, the key still answers.
                Store::register_device(c, &r, "dev", Some(2), 0, RULE)?;
                assert_eq!(Store::queued(c, &r)?, 0);
                assert_eq!(Store::insert_keyed(c, &keyed("x", 40), CAPS)?, (1, 10, true));
                // The same key for another recipient is another talk.
                let other = NewTalk { to: p("3", "c"), ..keyed("x", 50) };
                assert_eq!(Store::insert_keyed(c, &other, CAPS)?, (1, 50, false));
                // Past its TTL the key is gone.
                Store::expire(c, 0, 0, 11)?;
                assert_eq!(Store::insert_keyed(c, &keyed("x", 60), CAPS)?, (3, 60, false));
                Ok(())
            })
            .unwrap();
    }

    fn talk(from: &str, to: &str, text: &str) -> NewTalk {
        NewTalk {
            from: p(from, &format!("u{from}")),
            to: p(to, &format!("u{to}")),
            talk: text.into(),
            ts: 1,
            key: None,
        }
    }

    fn keyed(to: &str, key: &str) -> NewTalk {
        NewTalk { key: Some(key.into()), ..talk("2", to, &format!("k{key}")) }
    }

    /// Calls `append` for each talk while the connection is held here, so that the writer
    /// finds all their jobs waiting once it gets the connection: one batch, one commit.
    fn in_one_batch(store: &Store, talks: Vec<NewTalk>) -> Vec<Result<Appended, BrokerError>> {
        let (commits, _) = store.commits();
        let appends = store.run_sync(|_| Ok(talks.into_iter().map(|t| store.append(t)).collect::<Vec<_>>())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let results = rt.block_on(futures_util::future::join_all(appends));
        assert_eq!(store.commits().0, commits + 1, "one commit for the batch");
        results
    }

    fn seqs(results: &[Result<Appended, BrokerError>]) -> Vec<Result<(u64, bool), String>> {
        results.iter().map(|r| r.as_ref().map(|a| (a.seq, a.duplicate)).map_err(|e| e.to_string())).collect()
    }

    fn texts(store: &Store, to: &str) -> Vec<(u64, String)> {
        let all = store.run_sync(|c| Store::range(c, &to.into(), 0, u64::MAX, 10_000)).unwrap();
        all.into_iter().map(|t| (t.seq, t.talk)).collect()
    }

    /// Appends from many tasks at once, to two recipients: each recipient's answered
    /// seqs are 1..=N, each once, and every answered talk is in the file once it is
    /// opened again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_get_consecutive_seqs_and_are_all_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::open(&path).unwrap().with_limits(CAPS_WIDE, RULE);
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut answered = Vec::new();
                    for i in 0..50 {
                        let to = if i % 2 == 0 { "1" } else { "3" };
                        let text = format!("t{task}-{i}");
                        let appended = store.append(talk("2", to, &text)).await.unwrap();
                        answered.push((to, appended.seq, text));
                    }
                    answered
                })
            })
            .collect();
        let mut answered = Vec::new();
        for t in tasks {
            answered.extend(t.await.unwrap());
        }
        let (commits, jobs) = store.commits();
        assert_eq!(jobs, 400);
        assert!(commits <= jobs);
        drop(store);

        let store = Store::open(&path).unwrap();
        for to in ["1", "3"] {
            let mut mine: Vec<(u64, String)> =
                answered.iter().filter(|a| a.0 == to).map(|a| (a.1, a.2.clone())).collect();
            mine.sort();
            let want: Vec<u64> = (1..=200).collect();
            assert_eq!(mine.iter().map(|m| m.0).collect::<Vec<_>>(), want, "recipient {to}: distinct, consecutive");
            assert_eq!(texts(&store, to), mine, "recipient {to}: every answered talk is in the file");
        }
    }

    const CAPS_WIDE: QueueCaps = QueueCaps { per_recipient: 10_000, per_sender: 10_000 };

    /// A talk past a cap in the middle of a batch is refused alone: the talks around it
    /// are stored, the caps count the batch's own talks, and a refusal uses no seq.
    #[test]
    fn a_full_queue_in_a_batch_refuses_only_its_talk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::open(&path).unwrap().with_limits(QueueCaps { per_recipient: 5, per_sender: 3 }, RULE);
        let batch = ["2", "2", "2", "2", "3", "3", "4", "3"].iter().enumerate();
        let results = in_one_batch(&store, batch.map(|(i, from)| talk(from, "1", &format!("{from}.{i}"))).collect());
        let sender = QueueFull::Sender { cap: 3 }.to_string();
        let recipient = QueueFull::Recipient { cap: 5 }.to_string();
        assert_eq!(
            seqs(&results),
            [Ok((1, false)), Ok((2, false)), Ok((3, false)), Err(sender), Ok((4, false)), Ok((5, false))]
                .into_iter()
                .chain([Err(recipient.clone()), Err(recipient)])
                .collect::<Vec<_>>()
        );
        assert!(matches!(results[3], Err(BrokerError::QueueFull(QueueFull::Sender { cap: 3 }))));
        drop(store);
        let store = Store::open(&path).unwrap();
        let stored: Vec<String> = texts(&store, "1").into_iter().map(|t| t.1).collect();
        assert_eq!(stored, ["2.0", "2.1", "2.2", "3.4", "3.5"]);
    }

    /// Within one batch a repeated key is a duplicate of the first, as across batches.
    #[test]
    fn a_key_repeated_in_a_batch_is_a_duplicate() {
        let store = Store::open_in_memory().unwrap();
        let results = in_one_batch(&store, vec![keyed("1", "x"), keyed("1", "x"), keyed("1", "y"), keyed("3", "x")]);
        assert_eq!(seqs(&results), [Ok((1, false)), Ok((1, true)), Ok((2, false)), Ok((1, false))]);
        assert_eq!(texts(&store, "1"), [(1, "kx".to_owned()), (2, "ky".to_owned())]);
        assert_eq!(store.run_sync(|c| Store::last_seq(c, &"1".into())).unwrap(), 2);
    }

    /// A batch whose commit fails (here a deferred foreign key that one talk of it breaks)
    /// fails every caller with the commit's error and stores none of it; its seqs were
    /// given to nobody, so the next talk gets the first of them.
    #[test]
    fn a_failed_commit_fails_the_whole_batch_and_stores_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::open(&path).unwrap();
        store
            .run_sync(|c| {
                c.execute_batch(
                    "PRAGMA foreign_keys = ON;
                     CREATE TABLE parent (id INTEGER PRIMARY KEY);
                     CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
                     CREATE TRIGGER poison AFTER INSERT ON talks WHEN NEW.talk = 'poison'
                     BEGIN INSERT INTO child VALUES (1); END;",
                )?;
                Ok(())
            })
            .unwrap();
        assert_eq!(in_one_batch(&store, vec![talk("2", "1", "first")])[0].as_ref().unwrap().seq, 1);
        let results = in_one_batch(&store, vec![talk("2", "1", "a"), talk("2", "1", "poison"), talk("2", "3", "b")]);
        for r in &results {
            let Err(BrokerError::Failed(e)) = r else { panic!("a commit failure, not {r:?}") };
            let e = e.downcast_ref::<StoreError>();
            assert!(matches!(e, Some(StoreError::Commit { jobs: 3, .. })), "{e:?}");
        }
        let next = in_one_batch(&store, vec![talk("2", "1", "next")]);
        assert_eq!(next[0].as_ref().unwrap().seq, 2);
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(texts(&store, "1"), [(1, "first".to_owned()), (2, "next".to_owned())]);
        assert_eq!(texts(&store, "3"), []);
    }

    #[test]
    fn range_pages() {
        let store = Store::open_in_memory().unwrap();
        let r: UserId = "1".into();
        store
            .run_sync(|c| {
                for i in 0..7 {
                    Store::insert(c, &p("2", "b"), &p("1", "a"), &format!("t{i}"), i, CAPS)?;
                }
                let page: Vec<u64> = Store::range(c, &r, 2, 6, 3)?.iter().map(|t| t.seq).collect();
                assert_eq!(page, vec![3, 4, 5]);
                let page: Vec<u64> = Store::range(c, &r, 5, 6, 3)?.iter().map(|t| t.seq).collect();
                assert_eq!(page, vec![6]);
                Ok(())
            })
            .unwrap();
    }
}
