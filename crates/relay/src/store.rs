//! The durable queue: SQLite (WAL, `synchronous = FULL`).
//!
//! - `counters`: each recipient's last `seq`. It outlives the talks, so a `seq` is never
//!   given twice, across restarts too.
//! - `talks`: each recipient's talks that some device may still need, by `seq`.
//! - `devices`: every device (hello `uuid`) that has connected as a recipient, with the
//!   highest `seq` it acked. A talk is deleted once every device of its recipient acked
//!   it, when it is older than the retention limit, or when the recipient has more than
//!   the per-recipient cap queued.
//!
//! The connection is synchronous; callers run it on the blocking pool through
//! [`Store::run`], so a commit never stalls the async workers.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use talkbell_core::protocol::{Person, Seq, TalkMessage, UserId};

const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {0} is newer than this relay knows ({SCHEMA_VERSION})")]
    NewerSchema(i64),
    #[error("database task failed: {0}")]
    Task(String),
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The recipient's last `seq` at the moment of registering: a replay covers up to
    /// this one, live talks start after it.
    pub last_seq: u64,
    /// What this device has acked (its `resume` included): a replay starts after it.
    pub acked: u64,
}

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// A private in-memory database (unit tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: readers never block the writer. FULL: a commit is on disk when it returns,
        // so a 200 for a POST means the talk survives a power cut.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema(version));
        }
        conn.execute_batch(
            "BEGIN;
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
             CREATE TABLE IF NOT EXISTS devices (
                 recipient TEXT NOT NULL,
                 uuid      TEXT NOT NULL,
                 acked     INTEGER NOT NULL,
                 last_seen INTEGER NOT NULL,
                 PRIMARY KEY (recipient, uuid)
             ) WITHOUT ROWID;
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
        Ok(Store { conn: Arc::new(Mutex::new(conn)) })
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

    /// Gives the talk the recipient's next `seq`, stores it and commits. Keeps at most
    /// `cap` talks for the recipient. Returns the `seq`.
    pub fn insert(
        conn: &mut Connection,
        from: &Person,
        to: &Person,
        talk: &str,
        ts: i64,
        cap: usize,
    ) -> Result<u64, StoreError> {
        let tx = conn.transaction()?;
        let seq: i64 = tx.query_row(
            "INSERT INTO counters (recipient, last_seq) VALUES (?1, 1)
             ON CONFLICT (recipient) DO UPDATE SET last_seq = last_seq + 1
             RETURNING last_seq",
            params![to.id.as_str()],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO talks (recipient, seq, ts, from_id, from_name, to_name, talk)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![to.id.as_str(), seq, ts, from.id.as_str(), from.name, to.name, talk],
        )?;
        let cap = to_i64(cap.max(1) as u64);
        if seq > cap {
            tx.execute("DELETE FROM talks WHERE recipient = ?1 AND seq <= ?2", params![to.id.as_str(), seq - cap])?;
        }
        tx.commit()?;
        Ok(seq as u64)
    }

    /// The recipient's last `seq` (0 before the first talk).
    pub fn last_seq(conn: &Connection, recipient: &UserId) -> Result<u64, StoreError> {
        let last: Option<i64> = conn
            .query_row("SELECT last_seq FROM counters WHERE recipient = ?1", params![recipient.as_str()], |r| r.get(0))
            .optional()?;
        Ok(last.unwrap_or(0).max(0) as u64)
    }

    /// Records that `uuid` connected as `recipient`. A `resume` counts as an ack of
    /// everything up to it (the client says it has stored those). A new device without
    /// `resume` starts with nothing acked. Returns the recipient's last `seq` and what the
    /// device has acked so far.
    pub fn register_device(
        conn: &mut Connection,
        recipient: &UserId,
        uuid: &str,
        resume: Option<u64>,
        now_ms: i64,
    ) -> Result<Registered, StoreError> {
        let tx = conn.transaction()?;
        let last_seq = Self::last_seq(&tx, recipient)?;
        let acked = to_i64(resume.unwrap_or(0).min(last_seq));
        tx.execute(
            "INSERT INTO devices (recipient, uuid, acked, last_seen) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (recipient, uuid) DO UPDATE
             SET acked = max(acked, excluded.acked), last_seen = excluded.last_seen",
            params![recipient.as_str(), uuid, acked, now_ms],
        )?;
        let acked: i64 = tx.query_row(
            "SELECT acked FROM devices WHERE recipient = ?1 AND uuid = ?2",
            params![recipient.as_str(), uuid],
            |r| r.get(0),
        )?;
        if resume.is_some() {
            Self::prune_acked(&tx, recipient)?;
        }
        tx.commit()?;
        Ok(Registered { last_seq, acked: acked.max(0) as u64 })
    }

    /// Records a cumulative ack from a device and deletes what every device has acked.
    pub fn ack(conn: &mut Connection, recipient: &UserId, uuid: &str, seq: u64, now_ms: i64) -> Result<(), StoreError> {
        let tx = conn.transaction()?;
        let last_seq = Self::last_seq(&tx, recipient)?;
        let acked = to_i64(seq.min(last_seq));
        // An upsert: a device whose row went with the retention pass while it stayed
        // connected is recorded again.
        tx.execute(
            "INSERT INTO devices (recipient, uuid, acked, last_seen) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (recipient, uuid) DO UPDATE
             SET acked = max(acked, excluded.acked), last_seen = excluded.last_seen",
            params![recipient.as_str(), uuid, acked, now_ms],
        )?;
        Self::prune_acked(&tx, recipient)?;
        tx.commit()?;
        Ok(())
    }

    fn prune_acked(conn: &Connection, recipient: &UserId) -> Result<usize, StoreError> {
        Ok(conn.execute(
            "DELETE FROM talks WHERE recipient = ?1
             AND seq <= (SELECT min(acked) FROM devices WHERE recipient = ?1)",
            params![recipient.as_str()],
        )?)
    }

    /// Notes that a device was seen (on disconnect), so that retention keeps it.
    pub fn touch_device(conn: &Connection, recipient: &UserId, uuid: &str, now_ms: i64) -> Result<(), StoreError> {
        conn.execute(
            "UPDATE devices SET last_seen = max(last_seen, ?3) WHERE recipient = ?1 AND uuid = ?2",
            params![recipient.as_str(), uuid, now_ms],
        )?;
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
        let rows =
            stmt.query_map(params![recipient.as_str(), to_i64(after), to_i64(upto), to_i64(limit as u64)], |r| {
                Ok(StoredTalk {
                    seq: r.get::<_, i64>(0)?.max(0) as u64,
                    ts: r.get(1)?,
                    from: Person { id: UserId::new(r.get::<_, String>(2)?), name: r.get(3)? },
                    to: Person { id: recipient.clone(), name: r.get(4)? },
                    talk: r.get(5)?,
                })
            })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Deletes talks older than `cutoff_ms` and devices not seen since then. Returns how
    /// many talks went.
    pub fn prune_older_than(conn: &mut Connection, cutoff_ms: i64) -> Result<usize, StoreError> {
        let tx = conn.transaction()?;
        let talks = tx.execute("DELETE FROM talks WHERE ts < ?1", params![cutoff_ms])?;
        tx.execute("DELETE FROM devices WHERE last_seen < ?1", params![cutoff_ms])?;
        tx.commit()?;
        Ok(talks)
    }

    /// How many talks are queued for `recipient` (tests, logs).
    pub fn queued(conn: &Connection, recipient: &UserId) -> Result<usize, StoreError> {
        let n: i64 =
            conn.query_row("SELECT count(*) FROM talks WHERE recipient = ?1", params![recipient.as_str()], |r| {
                r.get(0)
            })?;
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str, name: &str) -> Person {
        Person { id: id.into(), name: name.into() }
    }

    #[test]
    fn seq_is_per_recipient_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::open(&path).unwrap();
        store
            .run_sync(|c| {
                assert_eq!(Store::insert(c, &p("2", "b"), &p("1", "a"), "x", 10, 100)?, 1);
                assert_eq!(Store::insert(c, &p("2", "b"), &p("1", "a"), "y", 11, 100)?, 2);
                assert_eq!(Store::insert(c, &p("1", "a"), &p("2", "b"), "z", 12, 100)?, 1);
                Ok(())
            })
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        store
            .run_sync(|c| {
                assert_eq!(Store::last_seq(c, &"1".into())?, 2);
                assert_eq!(Store::insert(c, &p("2", "b"), &p("1", "a"), "w", 13, 100)?, 3);
                let all = Store::range(c, &"1".into(), 0, u64::MAX, 10)?;
                let seqs: Vec<u64> = all.iter().map(|t| t.seq).collect();
                assert_eq!(seqs, vec![1, 2, 3]);
                assert_eq!(all[0].talk, "x");
                assert_eq!(all[0].from, p("2", "b"));
                assert_eq!(all[0].ts, 10);
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
                    Store::insert(c, &p("2", "b"), &p("1", "a"), "t", i, 100)?;
                }
                // No device yet: everything stays.
                assert_eq!(Store::queued(c, &r)?, 5);
                let reg = Store::register_device(c, &r, "dev-a", None, 0)?;
                assert_eq!(reg, Registered { last_seq: 5, acked: 0 });
                let reg = Store::register_device(c, &r, "dev-b", Some(2), 0)?;
                assert_eq!(reg, Registered { last_seq: 5, acked: 2 });
                Store::ack(c, &r, "dev-a", 4, 0)?;
                // dev-b has only 2.
                assert_eq!(Store::queued(c, &r)?, 3);
                Store::ack(c, &r, "dev-b", 5, 0)?;
                assert_eq!(Store::queued(c, &r)?, 1);
                // Acks never go backwards, nor past the last seq.
                Store::ack(c, &r, "dev-a", 1, 0)?;
                Store::ack(c, &r, "dev-a", 99, 0)?;
                assert_eq!(Store::queued(c, &r)?, 0);
                // A device coming back with a lower resume keeps what it acked.
                let reg = Store::register_device(c, &r, "dev-a", Some(1), 0)?;
                assert_eq!(reg, Registered { last_seq: 5, acked: 5 });
                let acked: i64 = c.query_row("SELECT acked FROM devices WHERE uuid = 'dev-a'", [], |row| row.get(0))?;
                assert_eq!(acked, 5);
                // A device that acks is recorded, and holds what it has not acked.
                Store::insert(c, &p("2", "b"), &p("1", "a"), "t", 9, 100)?;
                Store::ack(c, &r, "newcomer", 5, 0)?;
                Store::ack(c, &r, "dev-a", 6, 0)?;
                Store::ack(c, &r, "dev-b", 6, 0)?;
                assert_eq!(Store::queued(c, &r)?, 1);
                Store::ack(c, &r, "newcomer", 6, 0)?;
                assert_eq!(Store::queued(c, &r)?, 0);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn cap_and_retention() {
        let store = Store::open_in_memory().unwrap();
        let r: UserId = "1".into();
        store
            .run_sync(|c| {
                for i in 0..10 {
                    Store::insert(c, &p("2", "b"), &p("1", "a"), "t", i * 1000, 3)?;
                }
                let seqs: Vec<u64> = Store::range(c, &r, 0, u64::MAX, 100)?.iter().map(|t| t.seq).collect();
                assert_eq!(seqs, vec![8, 9, 10]);
                Store::register_device(c, &r, "old", None, 500)?;
                assert_eq!(Store::prune_older_than(c, 9000)?, 2);
                assert_eq!(Store::queued(c, &r)?, 1);
                let devices: i64 = c.query_row("SELECT count(*) FROM devices", [], |row| row.get(0))?;
                assert_eq!(devices, 0);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn range_pages() {
        let store = Store::open_in_memory().unwrap();
        let r: UserId = "1".into();
        store
            .run_sync(|c| {
                for i in 0..7 {
                    Store::insert(c, &p("2", "b"), &p("1", "a"), &format!("t{i}"), i, 100)?;
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
