//! What a command's failure tells the window: `{"kind": "...", "message": "..."}`. The
//! kind is for code (stable, snake_case), the message for a person (it says what to do).

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use talkbell_core::engine::EngineError;
use talkbell_core::history::HistoryError;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A number the window sent is outside what the command takes.
    #[error("{what} must be from {min} to {max}, not {got}")]
    OutOfRange { what: &'static str, min: u64, max: u64, got: u64 },
    /// A text or a list the window sent is longer than the command takes.
    #[error("{what} is too long: {len}, at most {max}")]
    TooLong { what: &'static str, len: usize, max: usize },
    /// A required text is empty.
    #[error("{what} is empty")]
    Empty { what: &'static str },
    /// Not a ws:// or wss:// URL.
    #[error("the server URL {url:?} is not usable: {reason}")]
    BadServer { url: String, reason: String },
    /// Not a user id.
    #[error("the user id is not usable: {0}")]
    BadUserId(String),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Starting at login could not be turned on or off.
    #[error("start at login: {0}")]
    Autostart(String),
    /// The work ran on a blocking thread that failed (the app is shutting down).
    #[error("the request could not finish: {0}")]
    Interrupted(String),
}

impl CommandError {
    pub fn kind(&self) -> &'static str {
        match self {
            CommandError::OutOfRange { .. } => "out_of_range",
            CommandError::TooLong { .. } => "too_long",
            CommandError::Empty { .. } => "empty",
            CommandError::BadServer { .. } => "bad_server",
            CommandError::BadUserId(_) => "bad_user_id",
            CommandError::History(_) => "history",
            CommandError::Engine(_) => "engine",
            CommandError::Autostart(_) => "autostart",
            CommandError::Interrupted(_) => "interrupted",
        }
    }
}

impl From<tauri::Error> for CommandError {
    fn from(e: tauri::Error) -> Self {
        CommandError::Interrupted(e.to_string())
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
pub fn in_range(what: &'static str, got: u64, min: u64, max: u64) -> Result<u64, CommandError> {
    if (min..=max).contains(&got) {
        Ok(got)
    } else {
        Err(CommandError::OutOfRange { what, min, max, got })
    }
}

/// `text` of at most `max` characters, or [`CommandError::TooLong`].
pub fn at_most(what: &'static str, text: &str, max: usize) -> Result<(), CommandError> {
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
        let e = in_range("the pause in minutes", u64::MAX, 1, 10_080).unwrap_err();
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({
                "kind": "out_of_range",
                "message": format!("the pause in minutes must be from 1 to 10080, not {}", u64::MAX),
            })
        );
        let e = at_most("the search", &"x".repeat(2000), 1000).unwrap_err();
        assert_eq!(serde_json::to_value(&e).unwrap()["kind"], "too_long");
        assert!(at_most("the search", "字字", 2).is_ok());
    }
}
