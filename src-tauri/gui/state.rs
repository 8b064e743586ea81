//! What every part of the shell reaches through Tauri's state.

use std::sync::atomic::{AtomicU64, Ordering};

use talkbell_core::engine::Engine;

pub struct Shell {
    pub engine: Engine,
    /// The user's unread talks, as last counted (the actions module counts them
    /// again when a talk for the user comes, the window marks some read, or the state
    /// changes): the status reads this, never the history.
    unread: AtomicU64,
}

impl Shell {
    pub fn new(engine: Engine) -> Shell {
        Shell { engine, unread: AtomicU64::new(0) }
    }

    pub fn unread(&self) -> u64 {
        self.unread.load(Ordering::Relaxed)
    }

    pub fn set_unread(&self, n: u64) {
        self.unread.store(n, Ordering::Relaxed);
    }
}
