//! Every talk received, in a SQLite file (WAL) in the platform's data dir, with full-text
//! search and unread marks. The session stores here before it acks (`TalkStore`).
//!
//! One writer and many readers. Every write (a batch of talks, a cursor, read marks,
//! pruning) runs on the writer thread, which owns the one read-write connection and
//! takes its jobs from a channel in order; a commit (`synchronous=FULL`, an fsync) blocks
//! that thread only, never an async worker. The session awaits the commit before it
//! acks, so store-before-ack holds. Reads (the window's list, search, counts) run on
//! read-only connections of their own (`SQLITE_OPEN_READ_ONLY`), which WAL lets read a
//! snapshot while the writer writes: a slow commit never makes a reader wait.
//!
//! The file is private: the data folder is 0700, the database and its -wal/-shm files
//! 0600 (on Unix), and wider modes left by older versions are narrowed at open.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Sender, SyncSender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
use serde::Serialize;

use crate::i18n::{t, text, Msg};
use crate::protocol::{Person, Seq, TalkMessage, UserId};
use crate::session::outbox::{Outgoing, Queued, Reply};
use crate::session::{Cursor, Inbound, StoreError, StoreFuture, Stored, TalkStore};

mod outbox;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{}", text(Msg::HistoryOpen, &[("path", path.display().to_string().as_str().into()), ("error", source.to_string().as_str().into())]))]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("{}", text(Msg::HistoryDir, &[("path", path.display().to_string().as_str().into()), ("error", source.to_string().as_str().into())]))]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("{}", text(Msg::HistoryThread, &[("error", _0.to_string().as_str().into())]))]
    Thread(std::io::Error),
    #[error("{}", t(Msg::HistoryWriterGone))]
    WriterGone,
    #[error("{}", t(Msg::HistoryDiskFull))]
    DiskFull,
    #[error("{}", t(Msg::HistoryBusy))]
    Busy,
    #[error("{}", text(Msg::HistoryCorrupt, &[("detail", _0.into())]))]
    Corrupt(String),
    #[error("{}", text(Msg::HistoryOther, &[("error", _0.to_string().as_str().into())]))]
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
    /// For a reply of the user's: where it stands. None for a talk received.
    pub outgoing: Option<Outgoing>,
}

#[derive(Clone, Debug, Default)]
pub struct HistoryQuery {
    /// Words that must all appear (in the text or the sender's name); prefixes match.
    pub search: Option<String>,
    pub limit: usize,
    /// Only entries older than this id (for paging, newest first).
    pub before: Option<i64>,
    pub only_unread: bool,
    /// Only talks to or from this user (the window's "for me": talks for the user and
    /// the user's own replies; on the original servers the history also holds talks
    /// between others).
    pub involving: Option<UserId>,
}

const SCHEMA_VERSION: i64 = 4;

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

/// From schema 2, where a seq was a repeat of any stored seq of the same recipient: a
/// server that lost its queue numbers from 1 again, and its new talks were dropped. The
/// repeat key gains the queue's epoch ('' where the server names none), the cursor keeps
/// the epoch it counts in, and talks whose seq was unusable are told apart by content.
const MIGRATE_2_TO_3: &str = "
ALTER TABLE talks ADD COLUMN epoch TEXT NOT NULL DEFAULT '';
ALTER TABLE talks ADD COLUMN seq_unusable INTEGER NOT NULL DEFAULT 0;
DROP INDEX talks_server_to_seq;
CREATE UNIQUE INDEX talks_repeat ON talks(server, to_id, epoch, seq) WHERE seq IS NOT NULL;
CREATE UNIQUE INDEX talks_repeat_unsequenced ON talks(server, to_id, epoch, from_id, talk) WHERE seq_unusable = 1;
ALTER TABLE cursors ADD COLUMN epoch TEXT;
";

/// From schema 3, which kept received talks only: the user's replies are kept too, with
/// where each stands (PROTOCOL.md 1.4; session/outbox.rs).
const MIGRATE_3_TO_4: &str = "
ALTER TABLE talks ADD COLUMN send_id TEXT;
ALTER TABLE talks ADD COLUMN send_state TEXT;
ALTER TABLE talks ADD COLUMN send_error TEXT;
ALTER TABLE talks ADD COLUMN send_message TEXT;
CREATE UNIQUE INDEX talks_send_id ON talks(send_id) WHERE send_id IS NOT NULL;
";

const SCHEMA: &str = "
CREATE TABLE talks (
    id           INTEGER PRIMARY KEY,
    server       TEXT NOT NULL,
    seq          INTEGER,
    from_id      TEXT NOT NULL,
    from_name    TEXT NOT NULL,
    to_id        TEXT NOT NULL,
    to_name      TEXT NOT NULL,
    talk         TEXT NOT NULL,
    server_ts    INTEGER,
    received_at  INTEGER NOT NULL,
    read         INTEGER NOT NULL DEFAULT 0,
    -- The lifetime of the recipient's queue the seq counts in (PROTOCOL.md 3); '' where
    -- the server names none.
    epoch        TEXT NOT NULL DEFAULT '',
    -- 1: the talk came with a seq that is not one (stored without it, never acked).
    seq_unusable INTEGER NOT NULL DEFAULT 0,
    -- A reply of the user's (session/outbox.rs): the id of its send, where it stands
    -- ('queued', 'sent', 'failed'), and why it failed. NULL for a talk received.
    send_id      TEXT,
    send_state   TEXT,
    send_error   TEXT,
    send_message TEXT
);
CREATE UNIQUE INDEX talks_send_id ON talks(send_id) WHERE send_id IS NOT NULL;
-- A seq numbers one recipient's talks in one queue lifetime on one server (PROTOCOL.md
-- 2.1, 3): a repeat has the same server, recipient, epoch and seq.
CREATE UNIQUE INDEX talks_repeat ON talks(server, to_id, epoch, seq) WHERE seq IS NOT NULL;
-- A talk with an unusable seq is replayed on every link (it is never acked): a repeat
-- of one has the same server, recipient, epoch, sender and text.
CREATE UNIQUE INDEX talks_repeat_unsequenced ON talks(server, to_id, epoch, from_id, talk) WHERE seq_unusable = 1;
CREATE INDEX talks_unread ON talks(read, to_id);
-- The highest seq ever stored per server and recipient (the signed-in user), in the
-- queue lifetime `epoch` (NULL: none named): what a hello as that user resumes from.
-- Kept apart from talks, so that pruning old talks never makes the server replay them.
CREATE TABLE cursors (
    server   TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    epoch    TEXT,
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
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A count from SQLite (never negative).
fn count_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// WAL pages after which the writer checkpoints itself (SQLite's default is 1,000).
const WRITER_CHECKPOINT_PAGES: i64 = 10_000;

/// Idle read-only connections kept for the next reads.
const IDLE_READERS: usize = 4;

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

/// Work for the writer thread, run on its connection.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The writer thread: the one read-write connection, fed jobs in order by a channel. It
/// ends when the channel closes (the history is dropped), after the jobs already sent.
struct Writer {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn spawn(mut conn: Connection, checkpoint: Option<SyncSender<()>>) -> Result<Writer, HistoryError> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                    // The WAL may have grown: the checkpointer folds it back in.
                    if let Some(tx) = &checkpoint {
                        let _ = tx.try_send(());
                    }
                }
            })
            .map_err(HistoryError::Thread)?;
        Ok(Writer { jobs: Some(jobs), thread: Some(thread) })
    }

    fn submit(&self, job: Job) -> Result<(), HistoryError> {
        self.jobs.as_ref().ok_or(HistoryError::WriterGone)?.send(job).map_err(|_| HistoryError::WriterGone)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once its queue is done; waiting for it
        // closes the file before the history is gone.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Read-only connections, each used by one reader at a time.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn open(&self) -> Result<Connection, HistoryError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let open_err = |source| HistoryError::Open { path: self.path.clone(), source };
        let conn = Connection::open_with_flags(&self.path, flags).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        Ok(conn)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, HistoryError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        Ok(result?)
    }
}

pub struct History {
    writer: Writer,
    readers: Readers,
}

/// The database file and its WAL companions.
fn db_files(path: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    [path.to_path_buf(), with("-wal"), with("-shm")]
}

/// The data folder 0700, the database and its -wal/-shm files 0600 (SQLite makes the
/// -wal and -shm files with the database's mode, so a database made 0600 keeps them so);
/// wider modes of existing ones are narrowed, and logged.
fn make_private(path: &Path) -> Result<(), HistoryError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::config::private_dir(dir).map_err(|source| HistoryError::Dir { path: dir.to_path_buf(), source })?;
    }
    crate::config::create_private_file(path)
        .map_err(|source| HistoryError::Dir { path: path.to_path_buf(), source })?;
    for file in db_files(path) {
        crate::config::narrow_file_mode(&file);
    }
    Ok(())
}

/// The writer's connection: WAL, synchronous=FULL, the schema at its version.
fn open_writer(path: &Path) -> Result<Connection, HistoryError> {
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
    let steps = match version {
        0 => SCHEMA.to_owned(),
        1 => format!("{MIGRATE_1_TO_2} {MIGRATE_2_TO_3} {MIGRATE_3_TO_4}"),
        2 => format!("{MIGRATE_2_TO_3} {MIGRATE_3_TO_4}"),
        3 => MIGRATE_3_TO_4.to_owned(),
        SCHEMA_VERSION => String::new(),
        newer => {
            return Err(HistoryError::Corrupt(format!(
                "{} was written by a newer Talkbell (schema {newer})",
                path.display()
            )))
        }
    };
    if !steps.is_empty() {
        conn.execute_batch(&format!("BEGIN; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
            .map_err(open_err)?;
        if version != 0 {
            tracing::info!(from = version, to = SCHEMA_VERSION, "history schema migrated");
        }
    }
    Ok(conn)
}

impl History {
    /// Opens (creating if needed) the history file, and starts its writer thread.
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        make_private(path)?;
        let conn = open_writer(path)?;
        let checkpoint = spawn_checkpointer(path);
        if checkpoint.is_some() {
            // The writer checkpoints only as a backstop, where a long burst outruns the
            // checkpointer (whose passive checkpoints cannot reset a WAL that keeps
            // growing): a WAL without bound would slow every page lookup.
            conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
                .map_err(|source| HistoryError::Open { path: path.to_path_buf(), source })?;
        }
        // The -wal and -shm files exist now; a mode SQLite gave them is checked too.
        for file in db_files(path) {
            crate::config::narrow_file_mode(&file);
        }
        let writer = Writer::spawn(conn, checkpoint)?;
        Ok(History { writer, readers: Readers { path: path.to_path_buf(), idle: Mutex::new(Vec::new()) } })
    }

    /// Runs `f` on the writer thread and waits for it, blocking this thread (for callers
    /// outside the async runtime: the CLI, the main thread, `spawn_blocking`).
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, HistoryError> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let (tx, rx) = sync_channel(1);
        self.writer.submit(Box::new(move |c| {
            let _ = tx.send(f(c));
        }))?;
        rx.recv().map_err(|_| HistoryError::WriterGone)?
    }

    /// Runs `f` on the writer thread; the caller's task waits, its thread does not.
    async fn write_async<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, HistoryError> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.writer.submit(Box::new(move |c| {
            let _ = tx.send(f(c));
        }))?;
        rx.await.map_err(|_| HistoryError::WriterGone)?
    }

    /// Stores a talk; a (server, recipient, seq) already present is not stored again.
    pub fn insert(&self, server: &str, talk: &TalkMessage) -> Result<Stored, HistoryError> {
        let mut stored = self.insert_all(server, std::slice::from_ref(talk))?;
        Ok(stored.pop().unwrap_or(Stored::Duplicate))
    }

    /// Stores talks in one transaction (one commit, one sync of the file for all of
    /// them): all, or none on an error. A (server, recipient, seq) already present is not
    /// stored again. The talks count in no epoch.
    pub fn insert_all(&self, server: &str, talks: &[TalkMessage]) -> Result<Vec<Stored>, HistoryError> {
        let server = server.to_owned();
        let talks: Vec<Inbound> = talks.iter().map(|t| Inbound::new(t.clone())).collect();
        self.write(move |c| insert_batch(c, &server, None, &talks))
    }

    /// [`insert_all`](Self::insert_all) for the session: in the queue lifetime `epoch`,
    /// with talks whose seq was unusable, awaited without blocking the async thread.
    pub async fn insert_batch(
        &self,
        server: &str,
        epoch: Option<&str>,
        talks: &[Inbound],
    ) -> Result<Vec<Stored>, HistoryError> {
        let (server, epoch, talks) = (server.to_owned(), epoch.map(str::to_owned), talks.to_vec());
        self.write_async(move |c| insert_batch(c, &server, epoch.as_deref(), &talks)).await
    }

    /// Records that `user` linked to `server`: the cursor is 0 until a talk is stored, so
    /// that the next hello resumes from 0 rather than asking for nothing. Never lowers a
    /// cursor.
    pub fn mark_linked(&self, server: &str, user: &UserId) -> Result<(), HistoryError> {
        let (server, user) = (server.to_owned(), user.clone());
        self.write(move |c| mark_linked(c, &server, &user))
    }

    /// The server names `user`'s queue `epoch`: the cursor keeps it (and is made if
    /// there was none). With `reset` the cursor goes back to 0: old and new seqs are not
    /// comparable (PROTOCOL.md 3). The talks stored stay.
    pub fn set_epoch(&self, server: &str, user: &UserId, epoch: Option<&str>, reset: bool) -> Result<(), HistoryError> {
        let (server, user, epoch) = (server.to_owned(), user.clone(), epoch.map(str::to_owned));
        self.write(move |c| set_epoch(c, &server, &user, epoch.as_deref(), reset))
    }

    /// The highest seq stored for `user`'s talks from `server` (None: never linked).
    pub fn last_stored_seq(&self, server: &str, user: &UserId) -> Result<Option<Seq>, HistoryError> {
        Ok(self.cursor(server, user)?.map(|c| c.seq))
    }

    /// The cursor of `user` on `server`: the seq and the epoch it counts in.
    pub fn cursor(&self, server: &str, user: &UserId) -> Result<Option<Cursor>, HistoryError> {
        self.readers.read(|c| read_cursor(c, server, user))
    }

    /// Newest first.
    pub fn list(&self, q: &HistoryQuery) -> Result<Vec<HistoryEntry>, HistoryError> {
        let mut sql = String::from(
            "SELECT t.id, t.server, t.seq, t.from_id, t.from_name, t.to_id, t.to_name, t.talk, t.server_ts,
                    t.received_at, t.read, t.send_state, t.send_error, t.send_message FROM talks t",
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
        if let Some(user) = &q.involving {
            filters.push("(t.to_id = ? OR t.from_id = ?)");
            args.push(user.as_str().to_owned().into());
            args.push(user.as_str().to_owned().into());
        }
        if !filters.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&filters.join(" AND "));
        }
        sql.push_str(" ORDER BY t.id DESC LIMIT ?");
        args.push(i64::try_from(q.limit).unwrap_or(i64::MAX).into());
        self.readers.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), entry_from_row)?;
            rows.collect()
        })
    }

    pub fn get(&self, id: i64) -> Result<Option<HistoryEntry>, HistoryError> {
        self.readers.read(|c| {
            c.query_row(
                "SELECT id, server, seq, from_id, from_name, to_id, to_name, talk, server_ts, received_at, read,
                        send_state, send_error, send_message
                 FROM talks WHERE id = ?1",
                [id],
                entry_from_row,
            )
            .optional()
        })
    }

    pub fn mark_read(&self, ids: &[i64]) -> Result<usize, HistoryError> {
        let ids = ids.to_vec();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let mut changed = 0;
            {
                let mut stmt = tx.prepare_cached("UPDATE talks SET read = 1 WHERE id = ?1 AND read = 0")?;
                for id in ids {
                    changed += stmt.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(changed)
        })
    }

    pub fn mark_all_read(&self) -> Result<usize, HistoryError> {
        self.write(|c| Ok(c.execute("UPDATE talks SET read = 1 WHERE read = 0", [])?))
    }

    /// Unread talks; with a user, only those addressed to that user.
    pub fn unread_count(&self, for_user: Option<&UserId>) -> Result<u64, HistoryError> {
        let n: i64 = self.readers.read(|conn| match for_user {
            Some(user) => {
                conn.query_row("SELECT count(*) FROM talks WHERE read = 0 AND to_id = ?1", [user.as_str()], |r| {
                    r.get(0)
                })
            }
            None => conn.query_row("SELECT count(*) FROM talks WHERE read = 0", [], |r| r.get(0)),
        })?;
        Ok(count_of(n))
    }

    /// [`unread_count`](Self::unread_count) and the newest row it counted among, read at
    /// one moment (one statement): a talk stored later has a higher row.
    pub fn unread_upto(&self, for_user: Option<&UserId>) -> Result<(u64, i64), HistoryError> {
        const NEWEST: &str = "coalesce((SELECT max(id) FROM talks), 0)";
        let (n, newest): (i64, i64) = self.readers.read(|conn| match for_user {
            Some(user) => conn.query_row(
                &format!("SELECT (SELECT count(*) FROM talks WHERE read = 0 AND to_id = ?1), {NEWEST}"),
                [user.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ),
            None => conn.query_row(&format!("SELECT (SELECT count(*) FROM talks WHERE read = 0), {NEWEST}"), [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            }),
        })?;
        Ok((count_of(n), newest))
    }

    /// Forgets talks beyond the newest `max_rows` or older than `max_age`.
    pub fn prune(&self, max_rows: usize, max_age: Duration) -> Result<usize, HistoryError> {
        let cutoff = now_ms().saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        let max_rows = i64::try_from(max_rows).unwrap_or(i64::MAX);
        self.write(move |conn| {
            // A reply still queued is the user's own words not sent yet: never pruned.
            let by_age = conn.execute(
                "DELETE FROM talks WHERE received_at < ?1 AND coalesce(send_state, '') != 'queued'",
                [cutoff],
            )?;
            let by_count = conn.execute(
                "DELETE FROM talks WHERE coalesce(send_state, '') != 'queued'
                   AND id NOT IN (SELECT id FROM talks ORDER BY id DESC LIMIT ?1)",
                [max_rows],
            )?;
            Ok(by_age + by_count)
        })
    }

    /// Caps the file at `pages` pages, which to SQLite is a full disk. For tests (the
    /// `test-hooks` feature, which core's own tests turn on).
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn set_max_pages_for_test(&self, pages: u32) {
        let _ = self.write(move |c| Ok(c.pragma_update(None, "max_page_count", pages)?));
    }

    /// Holds a write transaction open on the writer thread for `hold` (a row inserted and
    /// not committed, then rolled back), as a slow commit would. Returns once it is open.
    /// For tests (the `test-hooks` feature).
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn hold_write_for_test(&self, hold: Duration) -> Result<(), HistoryError> {
        let (open_tx, open_rx) = sync_channel(1);
        self.writer.submit(Box::new(move |c| {
            let held = c.execute_batch(
                "BEGIN IMMEDIATE; INSERT INTO talks (server, from_id, from_name, to_id, to_name, talk, received_at)
                 VALUES ('held', '0', 'held', '0', 'held', 'not committed', 0);",
            );
            let _ = open_tx.send(held.map_err(HistoryError::from));
            std::thread::sleep(hold);
            let _ = c.execute_batch("ROLLBACK");
        }))?;
        open_rx.recv().map_err(|_| HistoryError::WriterGone)?
    }

    pub fn count(&self) -> Result<u64, HistoryError> {
        let n: i64 = self.readers.read(|c| c.query_row("SELECT count(*) FROM talks", [], |r| r.get(0)))?;
        Ok(count_of(n))
    }
}

/// The seq a talk is stored with, and whether it came with one that is unusable: a seq
/// past what SQLite holds is one too (the parser refuses those, this is the backstop).
fn stored_seq(inbound: &Inbound) -> (Option<i64>, bool) {
    match inbound.talk.seq.map(Seq::to_i64) {
        Some(Some(seq)) if !inbound.unusable_seq => (Some(seq), false),
        Some(_) => (None, true),
        None => (None, inbound.unusable_seq),
    }
}

/// One transaction for a batch: the talks, then the cursors they move.
fn insert_batch(
    conn: &mut Connection,
    server: &str,
    epoch: Option<&str>,
    talks: &[Inbound],
) -> Result<Vec<Stored>, HistoryError> {
    let tx = conn.transaction()?;
    let mut stored = Vec::with_capacity(talks.len());
    let mut cursors: Vec<(&str, i64)> = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO talks (server, epoch, seq, seq_unusable, from_id, from_name, to_id, to_name, talk,
                 server_ts, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let received_at = now_ms();
        for inbound in talks {
            let talk = &inbound.talk;
            let (seq, unusable) = stored_seq(inbound);
            let inserted = insert.execute(params![
                server,
                epoch.unwrap_or(""),
                seq,
                unusable,
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
    advance_cursors(&tx, server, epoch, &cursors)?;
    tx.commit()?;
    Ok(stored)
}

/// Moves each recipient's cursor to the highest seq of the batch. Within one epoch a
/// cursor only grows; in another epoch (a recipient whose cursor was not reset) it counts
/// afresh. A batch in no epoch keeps the cursor's own.
fn advance_cursors(
    tx: &rusqlite::Transaction<'_>,
    server: &str,
    epoch: Option<&str>,
    cursors: &[(&str, i64)],
) -> Result<(), HistoryError> {
    let mut advance = tx.prepare_cached(
        "INSERT INTO cursors (server, user_id, last_seq, epoch) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(server, user_id) DO UPDATE SET
             last_seq = CASE WHEN excluded.epoch IS NULL OR epoch IS excluded.epoch
                             THEN max(last_seq, excluded.last_seq) ELSE excluded.last_seq END,
             epoch = coalesce(excluded.epoch, epoch)",
    )?;
    for (user, seq) in cursors {
        advance.execute(params![server, user, seq, epoch])?;
    }
    Ok(())
}

fn mark_linked(conn: &mut Connection, server: &str, user: &UserId) -> Result<(), HistoryError> {
    conn.execute(
        "INSERT OR IGNORE INTO cursors (server, user_id, last_seq) VALUES (?1, ?2, 0)",
        params![server, user.as_str()],
    )?;
    Ok(())
}

/// The cursor's epoch (and with `reset`, its seq back to 0). Adopting an epoch where
/// none was stored names the queue the talks stored so far came from: they are counted in
/// it too, so that a replay of one of them after the adoption is still a repeat.
fn set_epoch(
    conn: &mut Connection,
    server: &str,
    user: &UserId,
    epoch: Option<&str>,
    reset: bool,
) -> Result<(), HistoryError> {
    let tx = conn.transaction()?;
    if let (Some(epoch), false) = (epoch, reset) {
        let stored = read_cursor(&tx, server, user)?.and_then(|c| c.epoch);
        if stored.is_none() {
            tx.execute(
                "UPDATE OR IGNORE talks SET epoch = ?3 WHERE server = ?1 AND to_id = ?2 AND epoch = ''",
                params![server, user.as_str(), epoch],
            )?;
        }
    }
    tx.execute(
        "INSERT INTO cursors (server, user_id, last_seq, epoch) VALUES (?1, ?2, 0, ?3)
         ON CONFLICT(server, user_id) DO UPDATE SET
             last_seq = CASE WHEN ?4 THEN 0 ELSE last_seq END,
             epoch = coalesce(excluded.epoch, epoch)",
        params![server, user.as_str(), epoch, reset],
    )?;
    tx.commit()?;
    Ok(())
}

fn read_cursor(conn: &Connection, server: &str, user: &UserId) -> rusqlite::Result<Option<Cursor>> {
    let row: Option<(i64, Option<String>)> = conn
        .query_row(
            "SELECT last_seq, epoch FROM cursors WHERE server = ?1 AND user_id = ?2",
            params![server, user.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.map(|(seq, epoch)| Cursor { seq: Seq::from_i64(seq).unwrap_or(Seq(0)), epoch }))
}

fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryEntry> {
    Ok(HistoryEntry {
        id: r.get(0)?,
        server: r.get(1)?,
        seq: r.get::<_, Option<i64>>(2)?.and_then(|s| u64::try_from(s).ok()),
        from: Person { id: UserId::new(r.get::<_, String>(3)?), name: r.get(4)? },
        to: Person { id: UserId::new(r.get::<_, String>(5)?), name: r.get(6)? },
        talk: r.get(7)?,
        server_ts: r.get(8)?,
        received_at: r.get(9)?,
        read: r.get(10)?,
        outgoing: outbox::outgoing(r.get(11)?, r.get(12)?, r.get(13)?),
    })
}

fn store_error(e: HistoryError) -> StoreError {
    match e {
        HistoryError::DiskFull => StoreError::DiskFull,
        HistoryError::Busy => StoreError::Busy,
        HistoryError::Corrupt(detail) => StoreError::Corrupt { detail },
        HistoryError::WriterGone => StoreError::Stopped,
        other => StoreError::Other { detail: other.to_string() },
    }
}

/// The session's side. Every call runs on the writer thread (a cursor read there sees
/// every write sent before it) and is awaited without blocking the async thread.
impl TalkStore for History {
    fn cursor<'a>(&'a self, server: &'a str, user: &'a UserId) -> StoreFuture<'a, Option<Cursor>> {
        let (server, user) = (server.to_owned(), user.clone());
        Box::pin(
            async move { self.write_async(move |c| Ok(read_cursor(c, &server, &user)?)).await.map_err(store_error) },
        )
    }

    fn store_all<'a>(
        &'a self,
        server: &'a str,
        epoch: Option<&'a str>,
        talks: &'a [Inbound],
    ) -> StoreFuture<'a, Vec<Stored>> {
        Box::pin(async move { self.insert_batch(server, epoch, talks).await.map_err(store_error) })
    }

    fn linked<'a>(&'a self, server: &'a str, user: &'a UserId) -> StoreFuture<'a, ()> {
        let (server, user) = (server.to_owned(), user.clone());
        Box::pin(async move { self.write_async(move |c| mark_linked(c, &server, &user)).await.map_err(store_error) })
    }

    fn set_epoch<'a>(
        &'a self,
        server: &'a str,
        user: &'a UserId,
        epoch: Option<&'a str>,
        reset: bool,
    ) -> StoreFuture<'a, ()> {
        let (server, user, epoch) = (server.to_owned(), user.clone(), epoch.map(str::to_owned));
        Box::pin(async move {
            self.write_async(move |c| set_epoch(c, &server, &user, epoch.as_deref(), reset)).await.map_err(store_error)
        })
    }

    fn queue_reply<'a>(&'a self, server: &'a str, from: &'a Person, reply: &'a Reply) -> StoreFuture<'a, i64> {
        let (server, from, reply) = (server.to_owned(), from.clone(), reply.clone());
        Box::pin(async move {
            self.write_async(move |c| outbox::queue(c, &server, &from, &reply, now_ms())).await.map_err(store_error)
        })
    }

    fn outbox<'a>(&'a self, server: &'a str, from: &'a UserId) -> StoreFuture<'a, Vec<Queued>> {
        let (server, from) = (server.to_owned(), from.clone());
        Box::pin(async move { self.write_async(move |c| outbox::queued(c, &server, &from)).await.map_err(store_error) })
    }

    fn reply_done<'a>(&'a self, id: &'a str, outcome: &'a Outgoing, ts: Option<i64>) -> StoreFuture<'a, Option<i64>> {
        let (id, outcome) = (id.to_owned(), outcome.clone());
        Box::pin(
            async move { self.write_async(move |c| outbox::answered(c, &id, &outcome, ts)).await.map_err(store_error) },
        )
    }
}
