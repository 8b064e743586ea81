//! The tray menu's items as actions: the one place their ids are written
//! ([`MenuAction::id`], by the tray) and read back ([`MenuAction::parse`], by the actions).

use talkbell_core::notify::MuteLength;

/// What a tray menu item does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MenuAction {
    /// The first line: the status in words (never enabled).
    Status,
    Open,
    Reconnect,
    PauseHour,
    PauseForever,
    Resume,
    SignOut,
    Quit,
    /// Recent: opens the window at this talk (its history row).
    OpenTalk {
        row: i64,
    },
    /// Recent: mutes this talk's sender for `length`.
    MuteSender {
        length: MuteLength,
        row: i64,
    },
}

/// The items whose id names them alone.
const FIXED: [MenuAction; 8] = [
    MenuAction::Status,
    MenuAction::Open,
    MenuAction::Reconnect,
    MenuAction::PauseHour,
    MenuAction::PauseForever,
    MenuAction::Resume,
    MenuAction::SignOut,
    MenuAction::Quit,
];

impl MenuAction {
    /// The menu item's id.
    pub fn id(self) -> String {
        let fixed = match self {
            MenuAction::Status => "status",
            MenuAction::Open => "open",
            MenuAction::Reconnect => "reconnect",
            MenuAction::PauseHour => "pause-hour",
            MenuAction::PauseForever => "pause-forever",
            MenuAction::Resume => "resume",
            MenuAction::SignOut => "sign-out",
            MenuAction::Quit => "quit",
            MenuAction::OpenTalk { row } => return format!("recent-open-{row}"),
            MenuAction::MuteSender { length, row } => return format!("recent-mute-{}-{row}", length.id()),
        };
        fixed.to_owned()
    }

    /// The action of the item with `id`; none for an id the tray does not write.
    pub fn parse(id: &str) -> Option<MenuAction> {
        if let Some(action) = FIXED.into_iter().find(|a| a.id() == id) {
            return Some(action);
        }
        if let Some(row) = id.strip_prefix("recent-open-") {
            return row.parse().ok().map(|row| MenuAction::OpenTalk { row });
        }
        let (length, row) = id.strip_prefix("recent-mute-")?.rsplit_once('-')?;
        Some(MenuAction::MuteSender { length: MuteLength::from_id(length)?, row: row.parse().ok()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_reads_back_from_its_id() {
        let recent = [MenuAction::OpenTalk { row: 1 }, MenuAction::OpenTalk { row: 9_007_199_254_740_993 }];
        let mutes = MuteLength::ALL.into_iter().map(|length| MenuAction::MuteSender { length, row: 42 });
        let all: Vec<MenuAction> = FIXED.into_iter().chain(recent).chain(mutes).collect();
        for action in &all {
            assert_eq!(MenuAction::parse(&action.id()), Some(*action), "{}", action.id());
        }
        let ids: std::collections::HashSet<String> = all.iter().map(|a| a.id()).collect();
        assert_eq!(ids.len(), all.len(), "two actions share an id");
        assert_eq!(MenuAction::MuteSender { length: MuteLength::EightHours, row: 7 }.id(), "recent-mute-eight-hours-7");
    }

    #[test]
    fn an_id_the_tray_does_not_write_is_no_action() {
        for id in [
            "",
            "pause",
            "recent-open-",
            "recent-open-x",
            "recent-mute-hour",
            "recent-mute-year-3",
            "recent-mute-hour-",
        ] {
            assert_eq!(MenuAction::parse(id), None, "{id}");
        }
    }
}
