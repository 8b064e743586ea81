//! How history entries and the status read on a terminal.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use talkbell_core::history::HistoryEntry;
use talkbell_core::i18n::{t, text, Msg};
use talkbell_core::instance::ProcessKind;
use talkbell_core::status::{describe, Facts, Snapshot};
use talkbell_core::untrusted::escaped;

/// `2026-11-24T03:00:05Z  wang2 → wang1  hello` (unread ones marked with `*`).
pub fn history_line(e: &HistoryEntry) -> String {
    let mark = if e.read { ' ' } else { '*' };
    // Names and text come from the network: escaped, so that a talk can neither reach the
    // terminal with an escape sequence nor look like another entry with a newline.
    format!(
        "{mark} {}  {} → {}  {}",
        rfc3339_ms(e.received_at),
        escaped(&e.from.name),
        escaped(&e.to.name),
        escaped(&e.talk)
    )
}

/// A time in ms since the epoch as RFC 3339 (seconds), or as the number when RFC 3339
/// cannot write it (before 1970, after 9999, or past what `SystemTime` holds): humantime's
/// `Display` fails there, and `format!` would panic on it.
fn rfc3339_ms(ms: i64) -> String {
    let shown = u64::try_from(ms).ok().and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms))).and_then(|t| {
        let mut out = String::new();
        write!(out, "{}", humantime::format_rfc3339_seconds(t)).ok()?;
        Some(out)
    });
    shown.unwrap_or_else(|| format!("{ms} ms"))
}

/// JSON text for a terminal. serde_json escapes C0 control characters (ESC included), but
/// writes DEL, the C1 controls (U+009B is a CSI to some terminals) and the invisible
/// direction overrides as they are; these are written `\uXXXX` here. They can only occur
/// inside JSON strings, where the escape means the same character, so the JSON reads back
/// the same.
pub fn json_for_terminal(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        // The newlines are the pretty printer's own (serde_json escapes those in strings).
        if c != '\n' && c != '\\' && !talkbell_core::untrusted::is_kept(c) {
            // Every such character is in the Basic Multilingual Plane: one \uXXXX.
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The labels of `talkbell status`'s lines.
const STATUS_LABELS: [Msg; 7] = [
    Msg::CliStatusState,
    Msg::CliStatusReason,
    Msg::CliStatusNextTry,
    Msg::CliStatusProcess,
    Msg::CliStatusServer,
    Msg::CliStatusUser,
    Msg::CliStatusUnread,
];

/// `talkbell status`: one `Label: value` line each for the state, why, the next attempt,
/// the process, the server, the user and the unread count (the lines that apply), in the
/// process's language.
pub fn status_text(s: &Snapshot, now: SystemTime) -> String {
    let words = describe(&Facts::of_snapshot(s), now);
    let mut lines = vec![(Msg::CliStatusState, words.label)];
    if let Some(reason) = words.detail.or(words.advice) {
        lines.push((Msg::CliStatusReason, reason));
    }
    if let Some(next_try) = words.next_try {
        lines.push((Msg::CliStatusNextTry, next_try));
    }
    if let Some(p) = s.process {
        let name = t(match p.kind {
            ProcessKind::TrayApp => Msg::CliProcessTrayApp,
            ProcessKind::Daemon => Msg::CliProcessDaemon,
        });
        lines.push((
            Msg::CliStatusProcess,
            text(Msg::CliProcessPid, &[("process", name.as_str().into()), ("pid", p.pid.into())]),
        ));
    }
    lines.push((Msg::CliStatusServer, s.server.clone().unwrap_or_else(|| t(Msg::CliServerNone))));
    let user = match (&s.user_name, &s.user) {
        (Some(name), Some(id)) => {
            text(Msg::CliUserNameId, &[("name", name.into()), ("id", id.to_string().as_str().into())])
        }
        (None, Some(id)) => text(Msg::CliUserId, &[("id", id.to_string().as_str().into())]),
        (Some(name), None) => name.clone(),
        (None, None) if s.user_unknown => t(Msg::CliUserUnknown),
        (None, None) => t(Msg::CliUserNone),
    };
    lines.push((Msg::CliStatusUser, user));
    lines.push((Msg::CliStatusUnread, s.unread.to_string()));
    // The values line up after the longest label there can be.
    let width = STATUS_LABELS.iter().map(|&label| t(label).chars().count()).max().unwrap_or(0);
    // The reason can quote the server, and the user's name is the server's word too.
    lines.iter().map(|(label, value)| format!("{:<width$} {}\n", t(*label), escaped(value))).collect()
}

#[cfg(test)]
mod tests {
    use talkbell_core::instance::Holder;
    use talkbell_core::status::StateKind;

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
            reason_kind: None,
            offline_reason: None,
            retry_at_ms: None,
            server: Some("wss://talk.example.com/ws".into()),
            user: Some("1".into()),
            user_name: Some("wang1".into()),
            user_unknown: false,
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
        let unknown = Snapshot { user: None, user_name: None, user_unknown: true, ..base.clone() };
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
            (
                unknown,
                "State:    connected\nProcess:  talkbell-daemon, pid 77\nServer:   wss://talk.example.com/ws\n\
                 User:     unknown: this server doesn't say who you are (set your user id in the window, or sign in \
                 again with `talkbell login --user-id ID`)\nUnread:   2\n",
            ),
        ];
        for (snapshot, text) in cases {
            assert_eq!(status_text(&snapshot, now), text);
        }
    }

    #[test]
    fn what_the_server_says_reaches_the_terminal_escaped() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let hostile = Snapshot {
            running: true,
            process: None,
            state: StateKind::SignedOut,
            reason: Some("the server refused the token: \u{1b}]0;pwned\u{7}\nState:    connected".into()),
            reason_kind: Some(talkbell_core::status::ReasonKind::ServerRefused),
            offline_reason: None,
            retry_at_ms: None,
            server: Some("ws://x/".into()),
            user: Some("1".into()),
            user_name: Some("wang\u{1b}[2J".into()),
            user_unknown: false,
            unread: 0,
        };
        let text = status_text(&hostile, now);
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text:?}");
        assert!(text.contains("Reason:   the server refused the token: \\u{1b}]0;pwned\\u{7}\\nState:"), "{text}");
        assert!(text.contains("User:     wang\\u{1b}[2J (id 1)"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("State:")).count(), 1, "{text}");
    }

    #[test]
    fn json_for_a_terminal_escapes_what_serde_json_leaves_and_reads_back_the_same() {
        let value = serde_json::json!({"talk": "esc\u{1b} csi\u{9b}2J del\u{7f} rlo\u{202e} nul\u{0} 字 \\ \"q\""});
        let plain = serde_json::to_string_pretty(&value).expect("json");
        assert!(
            plain.contains('\u{9b}') && plain.contains('\u{202e}'),
            "serde_json leaves C1 and overrides raw: {plain:?}"
        );
        assert!(!plain.contains('\u{1b}'), "serde_json escapes C0 itself");
        let safe = json_for_terminal(&plain);
        assert!(!safe.chars().any(|c| c.is_control() && c != '\n' || c == '\u{202e}'), "{safe:?}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).expect("still JSON"), value);
    }

    #[test]
    fn a_history_line_carries_no_control_character() {
        use talkbell_core::protocol::{Person, UserId};
        let entry = HistoryEntry {
            id: 1,
            server: "ws://x/".into(),
            seq: Some(1),
            from: Person { id: UserId::from(2), name: "wang2\u{1b}]0;title\u{7}".into() },
            to: Person { id: UserId::from(1), name: "wang1".into() },
            talk: "clear\u{1b}[2J\u{9b}H\nnext line\u{0}".into(),
            server_ts: None,
            received_at: 0,
            read: true,
            outgoing: None,
        };
        let line = history_line(&entry);
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert!(
            line.ends_with("wang2\\u{1b}]0;title\\u{7} → wang1  clear\\u{1b}[2J\\u{9b}H\\nnext line\\u{0}"),
            "{line}"
        );
    }

    #[test]
    fn a_time_rfc3339_cannot_write_is_shown_as_its_number() {
        assert_eq!(rfc3339_ms(1_700_000_005_900), "2023-11-14T22:13:25Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        // Year 10000 and beyond: humantime's Display fails, which format! turns into a panic.
        assert_eq!(rfc3339_ms(253_402_300_800_000), "253402300800000 ms");
        assert_eq!(rfc3339_ms(i64::MAX), format!("{} ms", i64::MAX));
        assert_eq!(rfc3339_ms(-1), "-1 ms");
    }
}
