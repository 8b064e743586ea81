//! Replies (PROTOCOL.md 1.4 `send`): the user's own talks, kept in an outbox until the
//! server has them.
//!
//! - A reply is stored first (the history keeps it as the user's outgoing talk, *queued*),
//!   with a fresh `id` it keeps for good; the caller gets its row at once, linked or not.
//! - On a link whose welcome lists `send`, the queued replies of that server and account
//!   go out in the order they were written, each once per link; a new one goes out at
//!   once. The server answers `sent` (the reply is *sent*, with the server's time) or an
//!   error carrying the `id`.
//! - A refusal that will not change (`too_long`, `unknown_recipient`, any code not known
//!   to pass) makes the reply *failed*, with the server's reason. One that may pass later
//!   (`queue_full`, `rate_limited`, `unavailable`) leaves it queued, sent again on the next
//!   link. A reply whose answer was lost with the link is sent again with the same `id`,
//!   and the server delivers it once however often it comes.
//! - A server whose welcome does not list `send` (the original servers have no welcome
//!   at all) takes no replies: new ones are refused ([`ReplyError::NotOffered`]), and those
//!   queued for it fail with [`SendFailure::NotOffered`].

use serde::{Deserialize, Serialize};

use crate::i18n::{t, text, Msg};
use crate::protocol::{Person, MAX_SEND_TALK_CHARS};

/// A reply: what the user said to whom, and the `id` of its `send` frame, the same on
/// every try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub id: String,
    pub to: Person,
    pub talk: String,
}

/// A queued reply, with its row in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    pub row: i64,
    pub reply: Reply,
}

/// Where a reply of the user's stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Outgoing {
    /// Waiting for a link (or for the server's answer).
    Queued,
    /// In the recipient's queue on the server.
    Sent,
    /// Refused for good; `message` is the server's (or Talkbell's) words.
    Failed { reason: SendFailure, message: String },
}

/// Why a reply failed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendFailure {
    /// Longer than the server takes.
    TooLong,
    /// The server knows no such user.
    UnknownRecipient,
    /// The server does not take replies (its welcome does not list `send`).
    NotOffered,
    /// Another refusal.
    Refused,
}

impl SendFailure {
    /// The kebab-free code kept in the history (and its reading back; unknown is
    /// [`SendFailure::Refused`]).
    pub fn code(self) -> &'static str {
        match self {
            SendFailure::TooLong => "too_long",
            SendFailure::UnknownRecipient => "unknown_recipient",
            SendFailure::NotOffered => "not_offered",
            SendFailure::Refused => "refused",
        }
    }

    pub fn from_code(code: &str) -> SendFailure {
        match code {
            "too_long" => SendFailure::TooLong,
            "unknown_recipient" => SendFailure::UnknownRecipient,
            "not_offered" => SendFailure::NotOffered,
            _ => SendFailure::Refused,
        }
    }
}

/// What an error frame answering a `send` means for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It may pass later: it stays queued.
    TryAgain,
    /// It never will.
    Failed(SendFailure),
}

impl Answer {
    /// The answer an error `code` gives (PROTOCOL.md 1.4).
    pub fn of_code(code: &str) -> Answer {
        match code {
            "queue_full" | "rate_limited" | "unavailable" => Answer::TryAgain,
            other => Answer::Failed(SendFailure::from_code(other)),
        }
    }
}

/// Why a reply was not taken. Each message in the process's language.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("{}", t(Msg::ReplyEmpty))]
    Empty,
    #[error("{}", too_long(*chars))]
    TooLong { chars: usize },
    #[error("{}", t(Msg::ReplySignedOut))]
    SignedOut,
    #[error("{}", t(Msg::ReplyUnknownUser))]
    UnknownUser,
    #[error("{}", t(Msg::ReplyNotOffered))]
    NotOffered,
    #[error("{}", text(Msg::ReplyNotKept, &[("error", _0.to_string().as_str().into())]))]
    Store(super::StoreError),
    #[error("{}", t(Msg::ReplyStopped))]
    Stopped,
}

fn too_long(chars: usize) -> String {
    let (chars, max) = (chars.to_string(), MAX_SEND_TALK_CHARS.to_string());
    text(Msg::ReplyTooLong, &[("chars", chars.as_str().into()), ("max", max.as_str().into())])
}

/// A reply's text, checked before it is kept: not blank, at most
/// [`MAX_SEND_TALK_CHARS`] characters.
pub fn check_text(text: &str) -> Result<(), ReplyError> {
    if text.trim().is_empty() {
        return Err(ReplyError::Empty);
    }
    match text.chars().count() {
        chars if chars > MAX_SEND_TALK_CHARS => Err(ReplyError::TooLong { chars }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_checked_before_it_is_kept() {
        let table: &[(&str, usize, Option<ReplyError>)] = &[
            ("hello", 1, None),
            ("x", MAX_SEND_TALK_CHARS, None),
            ("好", MAX_SEND_TALK_CHARS, None),
            ("x", MAX_SEND_TALK_CHARS + 1, Some(ReplyError::TooLong { chars: MAX_SEND_TALK_CHARS + 1 })),
            (" ", 3, Some(ReplyError::Empty)),
            ("\n", 1, Some(ReplyError::Empty)),
            ("", 0, Some(ReplyError::Empty)),
        ];
        for (unit, times, want) in table {
            let text = unit.repeat(*times);
            assert_eq!(check_text(&text).err(), *want, "{unit:?} × {times}");
        }
    }

    #[test]
    fn error_codes_are_kept_queued_or_failed() {
        let table = [
            ("queue_full", Answer::TryAgain),
            ("rate_limited", Answer::TryAgain),
            ("unavailable", Answer::TryAgain),
            ("too_long", Answer::Failed(SendFailure::TooLong)),
            ("unknown_recipient", Answer::Failed(SendFailure::UnknownRecipient)),
            ("something_new", Answer::Failed(SendFailure::Refused)),
        ];
        for (code, want) in table {
            assert_eq!(Answer::of_code(code), want, "{code}");
        }
        for f in [SendFailure::TooLong, SendFailure::UnknownRecipient, SendFailure::NotOffered, SendFailure::Refused] {
            assert_eq!(SendFailure::from_code(f.code()), f);
        }
    }
}
