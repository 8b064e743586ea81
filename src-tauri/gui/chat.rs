//! The window's chat commands: reply to a talk, mute and unmute a sender, and the
//! notification settings (sound, quiet hours, mutes). Each a thin, checked call into the
//! engine; what they change is saved in the config and followed by the gate at once.

use serde::{Deserialize, Serialize};
use talkbell_core::i18n::Msg;
use talkbell_core::notify::quiet::{DayTime, QuietHours};
use talkbell_core::protocol::{Person, UserId, MAX_SEND_TALK_CHARS};
use tauri::{AppHandle, Manager};

use super::commands::{blocking, PAUSE_MAX_MINUTES, USER_ID_MAX};
use super::error::{at_most, in_range, CommandError};
use super::state::Shell;

/// The longest sender's name taken (a popup's title is cut at 100 anyway).
const NAME_MAX: usize = 256;

/// Someone the window names: a user id and the name it shows.
#[derive(Clone, Debug, Deserialize)]
pub struct Someone {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

impl Someone {
    fn person(self) -> Result<Person, CommandError> {
        at_most(Msg::WhatUserId, &self.id, USER_ID_MAX)?;
        let id = self.id.trim();
        if id.is_empty() {
            return Err(CommandError::Empty { what: Msg::WhatUserId });
        }
        at_most(Msg::WhatUserId, &self.name, NAME_MAX)?;
        Ok(Person { id: UserId::new(id.to_owned()), name: self.name })
    }
}

/// Replies `text` to `to`: kept at once (sent when the link takes it); its history row.
#[tauri::command]
pub async fn reply(app: AppHandle, to: Someone, text: String) -> Result<i64, CommandError> {
    // The engine counts characters; a page cannot make it count a megabyte first.
    at_most(Msg::WhatReply, &text, MAX_SEND_TALK_CHARS * 4)?;
    let to = to.person()?;
    let session = app.state::<Shell>().engine.session().clone();
    Ok(session.reply(to, text).await?)
}

/// Mutes `sender` for `minutes` (none: until unmuted).
#[tauri::command]
pub async fn mute_sender(app: AppHandle, sender: Someone, minutes: Option<u64>) -> Result<(), CommandError> {
    let sender = sender.person()?;
    let duration = match minutes {
        Some(m) => Some(std::time::Duration::from_secs(in_range(Msg::WhatMuteMinutes, m, 1, PAUSE_MAX_MINUTES)? * 60)),
        None => None,
    };
    with_shell(app, move |shell| Ok(shell.engine.mute(sender, duration)?)).await
}

#[tauri::command]
pub async fn unmute_sender(app: AppHandle, sender: Someone) -> Result<(), CommandError> {
    let sender = sender.person()?;
    with_shell(app, move |shell| Ok(shell.engine.unmute(&sender.id)?)).await
}

/// A mute as the window lists it.
#[derive(Debug, Serialize)]
pub struct MuteView {
    pub id: String,
    pub name: String,
    /// When it ends (ms since the epoch); none: until unmuted.
    pub until_ms: Option<i64>,
}

/// The notification settings the window shows and saves.
#[derive(Debug, Serialize, Deserialize)]
pub struct NotificationSettings {
    pub sound: bool,
    /// `HH:MM`, both or neither.
    pub quiet_from: Option<String>,
    pub quiet_to: Option<String>,
    /// The mutes in force (ignored when saving: mute and unmute change them).
    #[serde(default, skip_deserializing)]
    pub mutes: Vec<MuteView>,
}

#[tauri::command]
pub async fn get_notifications(app: AppHandle) -> Result<NotificationSettings, CommandError> {
    with_shell(app, |shell| {
        let n = shell.engine.config().notifications;
        let mutes = shell.engine.mutes().into_iter().map(|m| MuteView {
            id: m.sender.to_string(),
            name: m.name,
            until_ms: m.until.map(|t| t.as_millisecond()),
        });
        Ok(NotificationSettings {
            sound: n.sound,
            quiet_from: n.quiet_hours.map(|q| q.from.to_string()),
            quiet_to: n.quiet_hours.map(|q| q.to.to_string()),
            mutes: mutes.collect(),
        })
    })
    .await
}

/// The quiet hours of a `save_notifications` call, checked: both times or none.
pub fn quiet_of(settings: &NotificationSettings) -> Result<Option<QuietHours>, CommandError> {
    let time = |t: &Option<String>| t.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::parse::<DayTime>);
    match (time(&settings.quiet_from), time(&settings.quiet_to)) {
        (None, None) => Ok(None),
        (Some(from), Some(to)) => Ok(Some(QuietHours { from: from?, to: to? })),
        _ => Err(CommandError::Empty { what: Msg::WhatQuietHours }),
    }
}

#[tauri::command]
pub async fn save_notifications(app: AppHandle, settings: NotificationSettings) -> Result<(), CommandError> {
    let quiet = quiet_of(&settings)?;
    with_shell(app, move |shell| {
        shell.engine.set_sound(settings.sound)?;
        Ok(shell.engine.set_quiet_hours(quiet)?)
    })
    .await
}

/// Runs `f` with the shell on tokio's blocking threads (the config file is written).
async fn with_shell<T: Send + 'static>(
    app: AppHandle,
    f: impl FnOnce(&Shell) -> Result<T, CommandError> + Send + 'static,
) -> Result<T, CommandError> {
    blocking(move || f(&app.state::<Shell>())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(from: Option<&str>, to: Option<&str>) -> NotificationSettings {
        NotificationSettings {
            sound: true,
            quiet_from: from.map(str::to_owned),
            quiet_to: to.map(str::to_owned),
            mutes: Vec::new(),
        }
    }

    #[test]
    fn quiet_hours_are_two_times_or_none() {
        let q = quiet_of(&settings(Some("22:00"), Some(" 08:00"))).unwrap().unwrap();
        assert_eq!((q.from.to_string(), q.to.to_string()), ("22:00".into(), "08:00".into()));
        assert!(quiet_of(&settings(None, Some(""))).unwrap().is_none());
        assert_eq!(quiet_of(&settings(Some("22:00"), None)).unwrap_err().kind(), "empty");
        let bad = quiet_of(&settings(Some("25:00"), Some("08:00"))).unwrap_err();
        assert_eq!(bad.kind(), "bad-time");
        assert!(bad.to_string().contains("HH:MM"), "{bad}");
    }

    #[test]
    fn someone_is_a_bounded_non_empty_id() {
        let ok = Someone { id: " 2 ".into(), name: "wang2".into() }.person().unwrap();
        assert_eq!(ok.id, UserId::from(2));
        assert_eq!(Someone { id: " ".into(), name: String::new() }.person().unwrap_err().kind(), "empty");
        let long = Someone { id: "9".repeat(USER_ID_MAX + 1), name: String::new() };
        assert_eq!(long.person().unwrap_err().kind(), "too-long");
    }
}
