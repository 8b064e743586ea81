//! How history entries read on a terminal.

use std::time::{Duration, UNIX_EPOCH};

use talkbell_core::history::HistoryEntry;

/// `2026-11-24T03:00:05Z  wang2 → wang1  hello` (unread ones marked with `*`).
pub fn history_line(e: &HistoryEntry) -> String {
    let when = UNIX_EPOCH + Duration::from_millis(e.received_at.max(0) as u64);
    let mark = if e.read { ' ' } else { '*' };
    // One line per talk: a newline inside a talk would look like another entry.
    let text = e.talk.replace(['\n', '\r'], " ");
    format!("{mark} {}  {} → {}  {}", humantime::format_rfc3339_seconds(when), e.from.name, e.to.name, text)
}
