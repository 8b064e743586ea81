//! talkbell-core: everything of Talkbell that is not GUI.
//!
//! Data flows one way (DESIGN.md): socket frame → [`protocol`] → [`session`] event →
//! [`history`] (stored) → ack → [`notify`] → the shell. Nothing here knows of Tauri.

pub mod protocol;
pub mod session;
pub mod untrusted;

#[cfg(feature = "desktop")]
pub mod config;
#[cfg(feature = "desktop")]
pub mod engine;
#[cfg(feature = "desktop")]
pub mod history;
#[cfg(feature = "desktop")]
pub mod instance;
#[cfg(feature = "desktop")]
pub mod keyring_wait;
#[cfg(feature = "desktop")]
pub mod notify;
#[cfg(feature = "desktop")]
pub mod secrets;
#[cfg(feature = "desktop")]
pub mod status;
#[cfg(feature = "desktop")]
pub mod wake;
