//! Every talk received, in a SQLite file (WAL) in the platform's data dir, with full-text
//! search and unread marks. The session stores here before it acks (`TalkStore`).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use serde::Serialize;

use crate::protocol::{Person, Seq, TalkMessage, UserId};
use crate::session::{StoreError, Stored, TalkStore};

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot open the history at {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("cannot create {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("the disk is full: the history cannot grow (free some space; nothing stored so far is lost)")]
    DiskFull,
    #[error("the history is busy in another process; try again")]
    Busy,
    #[error("the history file is damaged: {0}")]
    Corrupt(String),
    #[error("history: {0}")]
    Other(rusqlite::Error),
}

impl From<rusqlite::Error> for HistoryError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => HistoryError::DiskFull,
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => HistoryError::Busy,
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => HistoryError::Corrupt(e.to_string()),
            _ => HistoryError::Other(e),
        }
    }
}

/// One stored talk, as the CLI prints it and the UI receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    pub server: String,
    pub seq: Option<u64>,
    pub from: Person,
    pub to: Person,
    pub talk: String,
    /// Server time, ms since the Unix epoch, when the server sent one.
    pub server_ts: Option<i64>,
    /// Local time it was stored, ms since the Unix epoch.
    pub received_at: i64,
    pub read: bool,
}

#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// Words that must all appear (in the text or the sender's name); prefixes match.
    pub search: Option<String>,
    pub limit: usize,
    /// Only entries older than this id (for paging, newest first).
    pub before: Option<i64>,
    pub only_unread: bool,
}

pub struct History {
    conn: Mutex<Connection>,
    /// Wakes the checkpointer after a write; None where it could not start (then SQLite
    /// checkpoints on commit, as by default).
    checkpoint: Option<SyncSender<()>>,
}

const SCHEMA_VERSION: i64 = 2;

/// From schema 1, where a seq and the cursor were per server alone: with two accounts on
/// one server, the second one's talks were taken for repeats of the first one's.
const MIGRATE_1_TO_2: &str = "
DROP INDEX talks_server_seq;
CREATE UNIQUE INDEX talks_server_to_seq ON talks(server, to_id, seq) WHERE seq IS NOT NULL;
CREATE TABLE cursors_2 (
    server   TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (server, user_id)
);
INSERT INTO cursors_2 (server, user_id, last_seq)
    SELECT server, to_id, max(seq) FROM talks WHERE seq IS NOT NULL GROUP BY server, to_id;
-- A schema-1 cursor outlived pruning; it belonged to whoever was signed in, best told by
-- the recipient of the latest talk with a seq.
UPDATE cursors_2 SET last_seq = max(last_seq, coalesce((SELECT c.last_seq FROM cursors c WHERE c.server = cursors_2.server), 0))
    WHERE user_id = (SELECT t.to_id FROM talks t WHERE t.server = cursors_2.server AND t.seq IS NOT NULL ORDER BY t.id DESC LIMIT 1);
DROP TABLE cursors;
ALTER TABLE cursors_2 RENAME TO cursors;
";

const SCHEMA: &str = "
CREATE TABLE talks (
    id          INTEGER PRIMARY KEY,
    server      TEXT NOT NULL,
    seq         INTEGER,
    from_id     TEXT NOT NULL,
    from_name   TEXT NOT NULL,
    to_id       TEXT NOT NULL,
    to_name     TEXT NOT NULL,
    talk        TEXT NOT NULL,
    server_ts   INTEGER,
    received_at INTEGER NOT NULL,
    read        INTEGER NOT NULL DEFAULT 0
);
-- A seq numbers one recipient's talks on one server (PROTOCOL.md 2.1).
CREATE UNIQUE INDEX talks_server_to_seq ON talks(server, to_id, seq) WHERE seq IS NOT NULL;
CREATE INDEX talks_unread ON talks(read, to_id);
-- The highest seq ever stored per server and recipient (the signed-in user): what a
-- hello as that user resumes from. Kept apart from talks, so that pruning old talks
-- never makes the server replay them.
CREATE TABLE cursors (
    server   TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (server, user_id)
);
CREATE VIRTUAL TABLE talks_fts USING fts5(talk, from_name, content='talks', content_rowid='id');
CREATE TRIGGER talks_ai AFTER INSERT ON talks BEGIN
    INSERT INTO talks_fts(rowid, talk, from_name) VALUES (new.id, new.talk, new.from_name);
END;
CREATE TRIGGER talks_ad AFTER DELETE ON talks BEGIN
    INSERT INTO talks_fts(talks_fts, rowid, talk, from_name) VALUES ('delete', old.id, old.talk, old.from_name);
END;
";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// WAL pages after which the writer checkpoints itself (SQLite's default is 1,000).
const WRITER_CHECKPOINT_PAGES: i64 = 10_000;

/// Folds the WAL back into the database file on a thread and connection of its own. A
/// checkpoint fsyncs the file; run by the writer (SQLite's default, every 1,000 pages) it
/// stalled the talk being stored, and with it the ack and the popup, for as long as the
/// disk took. Idle, the thread sleeps in `recv` and costs no wake-ups.
fn spawn_checkpointer(path: &Path) -> Option<SyncSender<()>> {
    let conn = Connection::open(path).ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    let (tx, rx) = sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("history-checkpoint".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                // One checkpoint for a burst of commits, not one each.
                std::thread::sleep(Duration::from_millis(200));
                while rx.try_recv().is_ok() {}
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "history checkpoint");
                }
            }
        })
        .ok()?;
    Some(tx)
}

/// User text as an FTS5 query that cannot be a syntax error: every word a quoted prefix
/// term, all required.
fn fts_query(search: &str) -> Option<String> {
    let terms: Vec<String> = search.split_whitespace().map(|w| format!("\"{}\"*", w.replace('"', "\"\""))).collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

impl History {
    /// Opens (creating if needed) the history file.
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| HistoryError::Dir { path: dir.to_path_buf(), source })?;
        }
        let open_err = |source| HistoryError::Open { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        // FULL: a commit is on the disk before it returns, because the ack that follows
        // lets the server forget the talk; with NORMAL a power cut could lose what was
        // acked. The session stores what it read in one go in one commit, so a replay or
        // a burst pays one sync per batch, not one per talk.
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(open_err)?;
        match version {
            0 => {
                conn.execute_batch(&format!("BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
                    .map_err(open_err)?;
            }
            1 => {
                conn.execute_batch(&format!("BEGIN; {MIGRATE_1_TO_2} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
                    .map_err(open_err)?;
            }
            SCHEMA_VERSION => {}
            newer => {
                return Err(HistoryError::Corrupt(format!(
                    "{} was written by a newer Talkbell (schema {newer})",
                    path.display()
                )))
            }
        }
        let checkpoint = spawn_checkpointer(path);
        if checkpoint.is_some() {
            // The writer checkpoints only as a backstop, where a long burst outruns the
            // checkpointer (whose passive checkpoints cannot reset a WAL that keeps
            // growing): a WAL without bound would slow every page lookup.
            conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES).map_err(open_err)?;
        }
        Ok(History { conn: Mutex::new(conn), checkpoint })
    }

    /// After a write: the WAL grew, the checkpointer will fold it back in.
    fn wrote(&self) {
        if let Some(tx) = &self.checkpoint {
            let _ = tx.try_send(());
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a talk; a (server, recipient, seq) already present is not stored again.
    pub fn insert(&self, server: &str, talk: &TalkMessage) -> Result<Stored, HistoryError> {
        let mut stored = self.insert_all(server, std::slice::from_ref(talk))?;
        Ok(stored.pop().unwrap_or(Stored::Duplicate))
    }

    /// Stores talks in one transaction (one commit, one sync of the file for all of
    /// them): all, or none on an error. A (server, recipient, seq) already present is not
    /// stored again.
    pub fn insert_all(&self, server: &str, talks: &[TalkMessage]) -> Result<Vec<Stored>, HistoryError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut stored = Vec::with_capacity(talks.len());
        let mut cursors: Vec<(&str, i64)> = Vec::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO talks (server, seq, from_id, from_name, to_id, to_name, talk, server_ts, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let received_at = now_ms();
            for talk in talks {
                let seq = talk.seq.map(|s| s.0 as i64);
                let inserted = insert.execute(params![
                    server,
                    seq,
                    talk.from.id.as_str(),
                    talk.from.name,
                    talk.to.id.as_str(),
                    talk.to.name,
                    talk.talk,
                    talk.ts,
                    received_at
                ])?;
                if inserted == 0 {
                    stored.push(Stored::Duplicate);
                    continue;
                }
                stored.push(Stored::New(tx.last_insert_rowid()));
                if let Some(seq) = seq {
                    let to = talk.to.id.as_str();
                    match cursors.iter_mut().find(|(user, _)| *user == to) {
                        Some((_, last)) => *last = (*last).max(seq),
                        None => cursors.push((to, seq)),
                    }
                }
            }
        }
        for (user, seq) in cursors {
            tx.prepare_cached(
                "INSERT INTO cursors (server, user_id, last_seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT(server, user_id) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
            )?
            .execute(params![server, user, seq])?;
        }
        tx.commit()?;
        drop(conn);
        if stored.iter().any(|s| matches!(s, Stored::New(_))) {
            self.wrote();
        }
        Ok(stored)
    }

    /// Records that `user` linked to `server`: the cursor is 0 until a talk is stored, so
    /// that the next hello resumes from 0 rather than asking for nothing. Never lowers a
    /// cursor.
    pub fn mark_linked(&self, server: &str, user: &UserId) -> Result<(), HistoryError> {
        self.conn().execute(
            "INSERT OR IGNORE INTO cursors (server, user_id, last_seq) VALUES (?1, ?2, 0)",
            params![server, user.as_str()],
        )?;
        self.wrote();
        Ok(())
    }

    /// The highest seq stored for `user`'s talks from `server` (None: never linked).
    pub fn last_stored_seq(&self, server: &str, user: &UserId) -> Result<Option<Seq>, HistoryError> {
        let seq: Option<i64> = self
            .conn()
            .query_row(
                "SELECT last_seq FROM cursors WHERE server = ?1 AND user_id = ?2",
                params![server, user.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq.map(|s| Seq(s as u64)))
    }

    /// Newest first.
    pub fn list(&self, q: &HistoryQuery) -> Result<Vec<HistoryEntry>, HistoryError> {
        let mut sql = String::from(
            "SELECT t.id, t.server, t.seq, t.from_id, t.from_name, t.to_id, t.to_name, t.talk, t.server_ts,
                    t.received_at, t.read FROM talks t",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut filters: Vec<&str> = Vec::new();
        if let Some(fts) = q.search.as_deref().and_then(fts_query) {
            sql.push_str(" JOIN talks_fts f ON f.rowid = t.id");
            filters.push("talks_fts MATCH ?");
            args.push(fts.into());
        }
        if let Some(before) = q.before {
            filters.push("t.id < ?");
            args.push(before.into());
        }
        if q.only_unread {
            filters.push("t.read = 0");
        }
        if !filters.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&filters.join(" AND "));
        }
        sql.push_str(" ORDER BY t.id DESC LIMIT ?");
        args.push((q.limit.min(i64::MAX as usize) as i64).into());
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), entry_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn get(&self, id: i64) -> Result<Option<HistoryEntry>, HistoryError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, server, seq, from_id, from_name, to_id, to_name, talk, server_ts, received_at, read
                 FROM talks WHERE id = ?1",
                [id],
                entry_from_row,
            )
            .optional()?)
    }

    pub fn mark_read(&self, ids: &[i64]) -> Result<usize, HistoryError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut changed = 0;
        {
            let mut stmt = tx.prepare_cached("UPDATE talks SET read = 1 WHERE id = ?1 AND read = 0")?;
            for id in ids {
                changed += stmt.execute([id])?;
            }
        }
        tx.commit()?;
        drop(conn);
        self.wrote();
        Ok(changed)
    }

    pub fn mark_all_read(&self) -> Result<usize, HistoryError> {
        let changed = self.conn().execute("UPDATE talks SET read = 1 WHERE read = 0", [])?;
        self.wrote();
        Ok(changed)
    }

    /// Unread talks; with a user, only those addressed to that user.
    pub fn unread_count(&self, for_user: Option<&UserId>) -> Result<u64, HistoryError> {
        let conn = self.conn();
        let n: i64 = match for_user {
            Some(user) => {
                conn.query_row("SELECT count(*) FROM talks WHERE read = 0 AND to_id = ?1", [user.as_str()], |r| {
                    r.get(0)
                })?
            }
            None => conn.query_row("SELECT count(*) FROM talks WHERE read = 0", [], |r| r.get(0))?,
        };
        Ok(n as u64)
    }

    /// Forgets talks beyond the newest `max_rows` or older than `max_age`.
    pub fn prune(&self, max_rows: usize, max_age: Duration) -> Result<usize, HistoryError> {
        let cutoff = now_ms() - max_age.as_millis().min(i64::MAX as u128) as i64;
        let conn = self.conn();
        let by_age = conn.execute("DELETE FROM talks WHERE received_at < ?1", [cutoff])?;
        let by_count = conn.execute(
            "DELETE FROM talks WHERE id NOT IN (SELECT id FROM talks ORDER BY id DESC LIMIT ?1)",
            [max_rows.min(i64::MAX as usize) as i64],
        )?;
        drop(conn);
        self.wrote();
        Ok(by_age + by_count)
    }

    /// Caps the file at `pages` pages, which to SQLite is a full disk. For tests.
    #[doc(hidden)]
    pub fn set_max_pages_for_test(&self, pages: u32) {
        let _ = self.conn().pragma_update(None, "max_page_count", pages);
    }

    pub fn count(&self) -> Result<u64, HistoryError> {
        let n: i64 = self.conn().query_row("SELECT count(*) FROM talks", [], |r| r.get(0))?;
        Ok(n as u64)
    }
}

fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryEntry> {
    Ok(HistoryEntry {
        id: r.get(0)?,
        server: r.get(1)?,
        seq: r.get::<_, Option<i64>>(2)?.map(|s| s as u64),
        from: Person { id: UserId::new(r.get::<_, String>(3)?), name: r.get(4)? },
        to: Person { id: UserId::new(r.get::<_, String>(5)?), name: r.get(6)? },
        talk: r.get(7)?,
        server_ts: r.get(8)?,
        received_at: r.get(9)?,
        read: r.get(10)?,
    })
}

impl TalkStore for History {
    fn last_seq(&self, server: &str, user: &UserId) -> Result<Option<Seq>, StoreError> {
        self.last_stored_seq(server, user).map_err(|e| StoreError(e.to_string()))
    }

    fn store(&self, server: &str, talk: &TalkMessage) -> Result<Stored, StoreError> {
        self.insert(server, talk).map_err(|e| StoreError(e.to_string()))
    }

    fn store_all(&self, server: &str, talks: &[TalkMessage]) -> Result<Vec<Stored>, StoreError> {
        self.insert_all(server, talks).map_err(|e| StoreError(e.to_string()))
    }

    fn linked(&self, server: &str, user: &UserId) -> Result<(), StoreError> {
        self.mark_linked(server, user).map_err(|e| StoreError(e.to_string()))
    }
}
