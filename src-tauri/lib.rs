//! The desktop app's shell: the command line ([`cli`], which `main` runs), the tray app
//! with its window ([`gui`]), terminal output ([`format`]) and what it asks of the
//! operating system ([`platform`]). Everything that is not presentation lives in
//! talkbell-core.

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

pub mod cli;
pub mod format;
pub mod gui;
mod platform;
