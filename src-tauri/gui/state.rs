//! What every part of the shell reaches through Tauri's state.

use std::sync::Mutex;

use talkbell_core::engine::Engine;

/// How many talks Recent lists.
pub const RECENT_KEPT: usize = 5;

/// One talk in Recent: its row, its sender and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentTalk {
    pub row: i64,
    pub from: talkbell_core::protocol::Person,
    pub talk: String,
}

pub struct Shell {
    pub engine: Engine,
    /// The last talks for the user, newest first (the tray's Recent).
    recent: Mutex<Vec<RecentTalk>>,
}

impl Shell {
    pub fn new(engine: Engine) -> Shell {
        Shell { engine, recent: Mutex::new(Vec::new()) }
    }

    /// The last talks for the user, newest first.
    pub fn recent(&self) -> Vec<RecentTalk> {
        self.recent.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// `talk` came: the newest of the last [`RECENT_KEPT`].
    pub fn add_recent(&self, talk: RecentTalk) {
        if let Ok(mut recent) = self.recent.lock() {
            recent.insert(0, talk);
            recent.truncate(RECENT_KEPT);
        }
    }

    /// The talk `row` of the last ones, if it is one.
    pub fn recent_talk(&self, row: i64) -> Option<RecentTalk> {
        self.recent().into_iter().find(|r| r.row == row)
    }
}
