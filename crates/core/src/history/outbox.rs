//! The user's replies in the history (session/outbox.rs says how they travel): a reply is
//! a row of `talks` from the user, read, with its `send_id` and where it stands.

use rusqlite::{params, Connection, OptionalExtension};

use super::HistoryError;
use crate::protocol::{Person, UserId};
use crate::session::outbox::{Outgoing, Queued, Reply, SendFailure};

const QUEUED: &str = "queued";
const SENT: &str = "sent";
const FAILED: &str = "failed";

/// Keeps `reply` of `from` on `server`, queued; its row.
pub(super) fn queue(
    conn: &mut Connection,
    server: &str,
    from: &Person,
    reply: &Reply,
    now: i64,
) -> Result<i64, HistoryError> {
    conn.execute(
        "INSERT INTO talks (server, from_id, from_name, to_id, to_name, talk, received_at, read, send_id, send_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?9)",
        params![
            server,
            from.id.as_str(),
            from.name,
            reply.to.id.as_str(),
            reply.to.name,
            reply.talk,
            now,
            reply.id,
            QUEUED
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The replies of `from` on `server` still queued, oldest first.
pub(super) fn queued(conn: &mut Connection, server: &str, from: &UserId) -> Result<Vec<Queued>, HistoryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, send_id, to_id, to_name, talk FROM talks
         WHERE send_state = ?1 AND server = ?2 AND from_id = ?3 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![QUEUED, server, from.as_str()], |r| {
        Ok(Queued {
            row: r.get(0)?,
            reply: Reply {
                id: r.get(1)?,
                to: Person { id: UserId::new(r.get::<_, String>(2)?), name: r.get(3)? },
                talk: r.get(4)?,
            },
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The reply with send id `id` was answered (sent at the server's `ts`, or failed); its
/// row, or none when no queued reply has that id (an answer given twice changes nothing).
pub(super) fn answered(
    conn: &mut Connection,
    id: &str,
    outcome: &Outgoing,
    ts: Option<i64>,
) -> Result<Option<i64>, HistoryError> {
    let (state, error, message) = match outcome {
        Outgoing::Queued => (QUEUED, None, None),
        Outgoing::Sent => (SENT, None, None),
        Outgoing::Failed { reason, message } => (FAILED, Some(reason.code()), Some(message.as_str())),
    };
    let row = conn
        .query_row(
            "UPDATE talks SET send_state = ?2, send_error = ?3, send_message = ?4, server_ts = coalesce(?5, server_ts)
             WHERE send_id = ?1 AND send_state = ?6 RETURNING id",
            params![id, state, error, message, ts, QUEUED],
            |r| r.get(0),
        )
        .optional()?;
    Ok(row)
}

/// Where a row's reply stands, from its columns (none for a talk received).
pub(super) fn outgoing(state: Option<String>, error: Option<String>, message: Option<String>) -> Option<Outgoing> {
    match state.as_deref()? {
        SENT => Some(Outgoing::Sent),
        FAILED => Some(Outgoing::Failed {
            reason: SendFailure::from_code(error.as_deref().unwrap_or_default()),
            message: message.unwrap_or_default(),
        }),
        _ => Some(Outgoing::Queued),
    }
}
