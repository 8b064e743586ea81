//! talkbell-core: everything of Talkbell that is not GUI.
//!
//! Data flows one way (DESIGN.md): socket frame → [`protocol`] → [`session`] event →
//! [`history`] (stored) → ack → [`notify`] → the shell. Nothing here knows of Tauri.

// The lints of a network client: no unwrap/expect outside tests, no cast that can
// truncate a number or change its sign (a seq, a size). Tests are other crates, or cfg(test).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_possible_wrap
    )
)]

pub mod i18n;
pub mod protocol;
pub mod session;
pub mod untrusted;

#[cfg(feature = "desktop")]
pub mod app;
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
pub mod unread;
#[cfg(feature = "desktop")]
pub mod wake;
