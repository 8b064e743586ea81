//! How history entries and the status read on a terminal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use talkbell_core::history::HistoryEntry;
use talkbell_core::instance::ProcessKind;
use talkbell_core::status::{Snapshot, StateKind};

/// `2026-11-24T03:00:05Z  wang2 → wang1  hello` (unread ones marked with `*`).
pub fn history_line(e: &HistoryEntry) -> String {
    let when = UNIX_EPOCH + Duration::from_millis(e.received_at.max(0) as u64);
    let mark = if e.read { ' ' } else { '*' };
    // One line per talk: a newline inside a talk would look like another entry.
    let text = e.talk.replace(['\n', '\r'], " ");
    format!("{mark} {}  {} → {}  {}", humantime::format_rfc3339_seconds(when), e.from.name, e.to.name, text)
}

/// `talkbell status`: one `Label: value` line each for the state, why, the next attempt,
/// the process, the server, the user and the unread count (the lines that apply).
pub fn status_text(s: &Snapshot, now: SystemTime) -> String {
    let mut lines = vec![("State", s.state.label().to_owned())];
    match (&s.reason, s.state) {
        (Some(reason), _) => lines.push(("Reason", reason.clone())),
        (None, StateKind::SignedOut) => {
            lines.push(("Reason", "not signed in: run `talkbell login --server URL`".into()))
        }
        (None, StateKind::NotRunning) => lines.push((
            "Reason",
            "no tray app or daemon runs for this profile: start `talkbell` or `talkbell daemon`".into(),
        )),
        (None, _) => {}
    }
    if let Some(at) = s.retry_at_ms {
        let wait = (UNIX_EPOCH + Duration::from_millis(at)).duration_since(now).unwrap_or_default();
        lines.push(("Next try", format!("in {} s", wait.as_secs_f64().ceil() as u64)));
    }
    if let Some(p) = s.process {
        let name = match p.kind {
            ProcessKind::TrayApp => "the tray app (talkbell)",
            ProcessKind::Daemon => "talkbell-daemon",
        };
        lines.push(("Process", format!("{name}, pid {}", p.pid)));
    }
    lines.push(("Server", s.server.clone().unwrap_or_else(|| "none (not signed in)".into())));
    let user = match (&s.user_name, &s.user) {
        (Some(name), Some(id)) => format!("{name} (id {id})"),
        (None, Some(id)) => format!("id {id}"),
        (Some(name), None) => name.clone(),
        (None, None) => "none".into(),
    };
    lines.push(("User", user));
    lines.push(("Unread", s.unread.to_string()));
    lines.iter().map(|(label, value)| format!("{:<9} {value}\n", format!("{label}:"))).collect()
}

#[cfg(test)]
mod tests {
    use talkbell_core::instance::Holder;

    use super::*;

    #[test]
    fn the_status_reads_as_lines_of_label_and_value() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let daemon = Some(Holder { kind: ProcessKind::Daemon, pid: 77 });
        let base = Snapshot {
            running: true,
            process: daemon,
            state: StateKind::Connected,
            reason: None,
            retry_at_ms: None,
            server: Some("wss://talk.example.com/ws".into()),
            user: Some("1".into()),
            user_name: Some("wang1".into()),
            unread: 2,
        };
        let offline = Snapshot {
            state: StateKind::Offline,
            reason: Some("could not reach the server: refused".into()),
            retry_at_ms: Some(1_700_000_002_500),
            user_name: None,
            ..base.clone()
        };
        let not_running =
            Snapshot { running: false, process: None, state: StateKind::NotRunning, user_name: None, ..base.clone() };
        let cases = [
            (
                base.clone(),
                "State:    connected\nProcess:  talkbell-daemon, pid 77\nServer:   wss://talk.example.com/ws\n\
                 User:     wang1 (id 1)\nUnread:   2\n",
            ),
            (
                offline,
                "State:    offline\nReason:   could not reach the server: refused\nNext try: in 3 s\n\
                 Process:  talkbell-daemon, pid 77\nServer:   wss://talk.example.com/ws\nUser:     id 1\nUnread:   2\n",
            ),
            (
                not_running,
                "State:    not running\nReason:   no tray app or daemon runs for this profile: start `talkbell` or \
                 `talkbell daemon`\nServer:   wss://talk.example.com/ws\nUser:     id 1\nUnread:   2\n",
            ),
        ];
        for (snapshot, text) in cases {
            assert_eq!(status_text(&snapshot, now), text);
        }
    }
}
