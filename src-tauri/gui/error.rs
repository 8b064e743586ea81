//! What a command's failure tells the window: `{"kind": "...", "message": "..."}`. The
//! kind is for code (stable, kebab-case like the states), the message for a person (it
//! says what to do).

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use talkbell_core::config::BadServerUrl;
use talkbell_core::engine::EngineError;
use talkbell_core::history::HistoryError;
use talkbell_core::i18n::{t, text, Msg};
use talkbell_core::notify::quiet::BadDayTime;
use talkbell_core::protocol::ProtocolError;
use talkbell_core::secrets::SecretsError;
use talkbell_core::session::outbox::ReplyError;

/// Each message in the process's language (the catalogue's `cmd-…` and `what-…`).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A number the window sent is outside what the command takes.
    #[error("{}", out_of_range(*what, *min, *max, *got))]
    OutOfRange { what: Msg, min: u64, max: u64, got: u64 },
    /// A number of seconds the window sent is outside what the command takes.
    #[error("{}", seconds_out_of_range(*what, *min, *max, *got))]
    SecondsOutOfRange { what: Msg, min: f64, max: f64, got: f64 },
    /// What the window sent for a number of seconds is none (an empty field, or no number).
    #[error("{}", text(Msg::CmdNotSeconds, &[("what", t(*what).as_str().into())]))]
    NotSeconds { what: Msg },
    /// A text or a list the window sent is longer than the command takes.
    #[error("{}", too_long(*what, *len, *max))]
    TooLong { what: Msg, len: usize, max: usize },
    /// A required text is empty.
    #[error("{}", text(Msg::CmdEmpty, &[("what", t(*what).as_str().into())]))]
    Empty { what: Msg },
    /// Not a ws:// or wss:// URL.
    #[error("{}", text(Msg::CmdBadServer, &[("url", url.into()), ("reason", reason.to_string().as_str().into())]))]
    BadServer { url: String, reason: BadServerUrl },
    /// Not a user id.
    #[error("{}", text(Msg::CmdBadUserId, &[("reason", _0.to_string().as_str().into())]))]
    BadUserId(#[source] ProtocolError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Starting at login could not be turned on or off.
    #[error("{}", text(Msg::CmdAutostart, &[("error", _0.to_string().as_str().into())]))]
    Autostart(#[source] tauri_plugin_autostart::Error),
    /// The reply was not kept (the engine says why).
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// Not a time of day.
    #[error(transparent)]
    BadTime(#[from] BadDayTime),
    /// The work ran on a blocking thread that failed (the app is shutting down).
    #[error("{}", text(Msg::CmdInterrupted, &[("error", _0.to_string().as_str().into())]))]
    Interrupted(#[source] tauri::Error),
}

/// The numbers go in as text: they are not counted, and an f64 would round a u64.
fn out_of_range(what: Msg, min: u64, max: u64, got: u64) -> String {
    let (min, max, got) = (min.to_string(), max.to_string(), got.to_string());
    let what = t(what);
    let args = [
        ("what", what.as_str().into()),
        ("min", min.as_str().into()),
        ("max", max.as_str().into()),
        ("got", got.as_str().into()),
    ];
    text(Msg::CmdOutOfRange, &args)
}

fn seconds_out_of_range(what: Msg, min: f64, max: f64, got: f64) -> String {
    let what = t(what);
    let args = [("what", what.as_str().into()), ("min", min.into()), ("max", max.into()), ("got", got.into())];
    text(Msg::CmdOutOfRangeSeconds, &args)
}

fn too_long(what: Msg, len: usize, max: usize) -> String {
    let (len, max, what) = (len.to_string(), max.to_string(), t(what));
    text(Msg::CmdTooLong, &[("what", what.as_str().into()), ("len", len.as_str().into()), ("max", max.as_str().into())])
}

impl CommandError {
    pub fn kind(&self) -> &'static str {
        match self {
            CommandError::OutOfRange { .. } | CommandError::SecondsOutOfRange { .. } => "out-of-range",
            CommandError::NotSeconds { .. } => "not-seconds",
            CommandError::TooLong { .. } => "too-long",
            CommandError::Empty { .. } => "empty",
            CommandError::BadServer { .. } => "bad-server",
            CommandError::BadUserId(_) => "bad-user-id",
            CommandError::History(_) => "history",
            CommandError::Engine(e) => engine_kind(e),
            CommandError::Autostart(_) => "autostart",
            CommandError::Reply(_) => "reply",
            CommandError::BadTime(_) => "bad-time",
            CommandError::Interrupted(_) => "interrupted",
        }
    }
}

/// The kind of an engine's failure: what went wrong, so the window can tell them apart.
fn engine_kind(e: &EngineError) -> &'static str {
    match e {
        EngineError::Config(_) => "config",
        EngineError::History(_) => "history",
        EngineError::Secrets(s) => match s {
            SecretsError::NoKeyring { .. } => "no-keyring",
            SecretsError::Locked => "keyring-locked",
            SecretsError::NotFound { .. } => "token-not-found",
            SecretsError::NoAnswer { .. } => "keyring-no-answer",
            SecretsError::NoPersistentStore => "no-persistent-keyring",
            SecretsError::Access(_) => "keyring-failed",
        },
        EngineError::Refused(_) => "refused",
        EngineError::Unreachable(_) => "unreachable",
        EngineError::Stopped => "stopped",
        EngineError::NoUserId => "no-user-id",
        EngineError::UserIdFromServer => "user-id-from-server",
        EngineError::Timeout(_) => "timeout",
        EngineError::BadServer { .. } => "bad-server",
    }
}

impl From<tauri::Error> for CommandError {
    fn from(e: tauri::Error) -> Self {
        CommandError::Interrupted(e)
    }
}

impl Serialize for CommandError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("CommandError", 2)?;
        s.serialize_field("kind", self.kind())?;
        s.serialize_field("message", &self.to_string())?;
        s.end()
    }
}

/// `got` within `min..=max`, or [`CommandError::OutOfRange`].
pub fn in_range(what: Msg, got: u64, min: u64, max: u64) -> Result<u64, CommandError> {
    if (min..=max).contains(&got) {
        Ok(got)
    } else {
        Err(CommandError::OutOfRange { what, min, max, got })
    }
}

/// A number of seconds (decimals allowed) within `min_ms..=max_ms` milliseconds, in whole
/// milliseconds; none (the page's empty field or a text that is no number) or a value
/// that is not finite is [`CommandError::NotSeconds`].
pub fn seconds_in_range(what: Msg, got: Option<f64>, min_ms: u64, max_ms: u64) -> Result<u64, CommandError> {
    let seconds = got.filter(|s| s.is_finite()).ok_or(CommandError::NotSeconds { what })?;
    let ms = (seconds * 1000.0).round();
    #[allow(clippy::cast_precision_loss)]
    let (min, max) = (min_ms as f64, max_ms as f64);
    if (min..=max).contains(&ms) {
        // Within min_ms..=max_ms, so a whole number that fits.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(ms as u64)
    } else {
        Err(CommandError::SecondsOutOfRange { what, min: min / 1000.0, max: max / 1000.0, got: seconds })
    }
}

/// `text` of at most `max` characters, or [`CommandError::TooLong`].
pub fn at_most(what: Msg, text: &str, max: usize) -> Result<(), CommandError> {
    let len = text.chars().count();
    if len <= max {
        Ok(())
    } else {
        Err(CommandError::TooLong { what, len, max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_reach_the_window_as_kind_and_message() {
        let e = in_range(Msg::WhatPauseMinutes, u64::MAX, 1, 10_080).unwrap_err();
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({
                "kind": "out-of-range",
                "message": format!("the pause in minutes must be from 1 to 10080, not {}", u64::MAX),
            })
        );
        let e = at_most(Msg::WhatSearch, &"x".repeat(2000), 1000).unwrap_err();
        assert_eq!(serde_json::to_value(&e).unwrap()["kind"], "too-long");
        assert_eq!(e.to_string(), "the search is too long: 2000, at most 1000");
        assert!(at_most(Msg::WhatSearch, "字字", 2).is_ok());
    }

    #[test]
    fn every_kind_is_kebab_case_and_an_engine_failure_says_which() {
        use talkbell_core::session::OfflineReason;
        let engine = |e: EngineError| CommandError::Engine(e);
        let cases = [
            (CommandError::NotSeconds { what: Msg::WhatPauseMinutes }, "not-seconds"),
            (CommandError::Empty { what: Msg::WhatToken }, "empty"),
            (CommandError::BadServer { url: "x".into(), reason: BadServerUrl::NoScheme }, "bad-server"),
            (CommandError::BadUserId(ProtocolError::NotAnObject), "bad-user-id"),
            (CommandError::History(HistoryError::WriterGone), "history"),
            (CommandError::Reply(ReplyError::Empty), "reply"),
            (CommandError::Interrupted(tauri::Error::WindowNotFound), "interrupted"),
            (engine(EngineError::Secrets(SecretsError::Locked)), "keyring-locked"),
            (engine(EngineError::Secrets(SecretsError::NoPersistentStore)), "no-persistent-keyring"),
            (engine(EngineError::Refused(None)), "refused"),
            (engine(EngineError::Unreachable(OfflineReason::CertExpired)), "unreachable"),
            (engine(EngineError::Stopped), "stopped"),
            (engine(EngineError::NoUserId), "no-user-id"),
            (engine(EngineError::UserIdFromServer), "user-id-from-server"),
            (engine(EngineError::Timeout(std::time::Duration::from_secs(30))), "timeout"),
        ];
        for (error, kind) in cases {
            let json = serde_json::to_value(&error).unwrap();
            assert_eq!(json["kind"], kind, "{error:?}");
            assert_eq!(json["message"], error.to_string(), "{error:?}");
            assert!(!error.to_string().is_empty(), "{error:?}");
        }
        let unreachable = engine(EngineError::Unreachable(OfflineReason::CertExpired));
        assert!(unreachable.to_string().contains("the server's certificate has expired"), "{unreachable}");
    }
}
