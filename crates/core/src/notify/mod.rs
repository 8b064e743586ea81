//! Native notifications: what to show ([`NotifyGate`]) and how ([`Notifier`]).
//!
//! The gate is a tokio task fed every new stored talk. It shows only talks for the
//! signed-in user, none while paused, and turns a burst into one summary instead of a
//! flood (see [`gate`]). What it decides to show goes to a [`Notifier`]: the real one is
//! [`DesktopNotifier`] (notify-rust: the freedesktop notification service on Linux, the
//! native centres on macOS and Windows); tests use a recording fake. Built for the
//! benchmarks (the `delivery-trace` feature), `trace` records when each talk was decided.

mod desktop;
pub mod gate;
#[cfg(all(unix, not(target_os = "macos")))]
mod inline;
pub mod quiet;
pub mod text;
#[cfg(feature = "delivery-trace")]
pub mod trace;

use std::time::Duration;

use crate::i18n::{text, Msg};
use crate::protocol::Person;

pub use desktop::DesktopNotifier;
pub use gate::{Decision, NotifyGate, NotifyHandle, NotifySettings, NotifyStats, Outcome, DECISIONS_KEPT};

/// The environment variable that turns the benchmark's delivery trace on (a file path) in
/// builds with the `delivery-trace` feature (`notify::trace`); other builds ignore it.
pub const DELIVERY_TRACE_ENV: &str = "TALKBELL_DELIVERY_TRACE";

/// Something that can put a notification on the screen. `show` may block for a D-Bus
/// round trip: the gate calls it off the async threads.
pub trait Notifier: Send + Sync {
    fn show(&self, n: &Notification) -> Result<(), NotifyError>;
}

/// One popup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub title: String,
    pub body: String,
    /// What a click on it should open.
    pub kind: NotificationKind,
    /// Whether it plays the notification sound (the settings' sound, set by the gate).
    pub sound: bool,
    /// Who sent its talk, for a popup of one talk (what "Mute" mutes).
    pub sender: Option<Person>,
}

/// What a person did with a popup ([`DesktopNotifier::on_action`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PopupAction {
    /// Clicked it (its default action, "Open"): the window at its talks.
    Open(NotificationKind),
    /// "Mark read": its talks are read, and no window opens.
    MarkRead(NotificationKind),
    /// "Mute <sender> for 1 hour".
    MuteHour(Person),
    /// "Reply": the window at its talk, the reply box open (offered only where the shell
    /// says replies can be written, [`DesktopNotifier::offer_reply`], and where the
    /// service has no reply field of its own).
    Reply(NotificationKind),
    /// A reply written in the popup's own field (a service with `inline-reply`): `text`
    /// to `to`, the sender of the popup's talk. The text is whole, not checked yet.
    Replied { kind: NotificationKind, to: Person, text: String },
}

impl PopupAction {
    /// How long "Mute" mutes.
    pub const MUTE_FOR: Duration = Duration::from_secs(3600);
}

/// How long a sender is muted for, as the tray's Recent and the window offer it (a popup
/// offers the hour alone: [`PopupAction::MuteHour`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MuteLength {
    Hour,
    EightHours,
    UntilUnmuted,
}

impl MuteLength {
    pub const ALL: [MuteLength; 3] = [MuteLength::Hour, MuteLength::EightHours, MuteLength::UntilUnmuted];

    /// How long it lasts; none: until unmuted.
    pub fn duration(self) -> Option<Duration> {
        match self {
            MuteLength::Hour => Some(PopupAction::MUTE_FOR),
            MuteLength::EightHours => Some(Duration::from_secs(8 * 3600)),
            MuteLength::UntilUnmuted => None,
        }
    }

    /// Its name in menu ids and the window's commands.
    pub fn id(self) -> &'static str {
        match self {
            MuteLength::Hour => "hour",
            MuteLength::EightHours => "eight-hours",
            MuteLength::UntilUnmuted => "until-unmuted",
        }
    }

    pub fn from_id(id: &str) -> Option<MuteLength> {
        MuteLength::ALL.into_iter().find(|l| l.id() == id)
    }

    /// "Mute <name> for …", for a menu.
    pub fn menu_label(self) -> crate::i18n::Msg {
        use crate::i18n::Msg;
        match self {
            MuteLength::Hour => Msg::PopupActionMute,
            MuteLength::EightHours => Msg::MuteEightHours,
            MuteLength::UntilUnmuted => Msg::MuteUntilUnmuted,
        }
    }
}

/// What a notification stands for; handed back to the click callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotificationKind {
    /// One talk, by its row in the history.
    Talk { row: i64 },
    /// Several talks of a burst, by their rows, oldest first.
    Summary { rows: Vec<i64> },
}

impl NotificationKind {
    /// The talk a window opens at for it (a summary's first).
    pub fn first_row(&self) -> Option<i64> {
        match self {
            NotificationKind::Talk { row } => Some(*row),
            NotificationKind::Summary { rows } => rows.first().copied(),
        }
    }
}

/// Why a notification could not be shown. The gate counts these and carries on; each
/// message says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The session bus is there, but nothing on it provides the notification service
    /// (`org.freedesktop.DBus.Error.ServiceUnknown`, `NameHasNoOwner`, a failed activation).
    #[error("{}", text(Msg::NotifyNoService, &[("detail", detail.into())]))]
    NoService { detail: String },
    /// The D-Bus session bus cannot be reached (no address, no socket, a failed handshake)
    /// or it closed the connection.
    #[error("{}", text(Msg::NotifyBus, &[("detail", detail.into())]))]
    Bus { detail: String },
    /// The notification service (or the bus on its behalf) answered the call with a D-Bus
    /// error: it is running, and refused or failed this one popup.
    #[error("{}", text(Msg::NotifyRefused, &[("name", name.into()), ("message", message.into())]))]
    Refused { name: String, message: String },
    /// The service did not answer in time (an earlier call may still be stuck).
    #[error("{}", text(Msg::NotifyNoAnswer, &[("seconds", after.as_secs().into())]))]
    NoAnswer { after: Duration },
    /// Anything else the notification library reported.
    #[error("{}", text(Msg::NotifyFailed, &[("error", _0.into())]))]
    Failed(String),
}
