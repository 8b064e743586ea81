//! The desktop app's shell: command line, logging, and (soon) the Tauri window and tray.
//! Everything that is not presentation lives in talkbell-core.

pub mod cli;
pub mod format;
pub mod gui;
