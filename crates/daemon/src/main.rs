//! `talkbell-daemon`: what `talkbell daemon` runs (see the library's doc).

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

use clap::Parser;
use talkbell_core::config::Paths;

/// The command line: no options beyond these two; the profile comes from the environment.
#[derive(Debug, Parser)]
#[command(
    name = "talkbell-daemon",
    version,
    about = "Talkbell without a window: the connection, the history and popups, until SIGTERM.",
    after_help = "Environment:\n  \
        TALKBELL_CONFIG_DIR  the config dir (default $XDG_CONFIG_HOME/talkbell)\n  \
        TALKBELL_DATA_DIR    the data dir (default $XDG_DATA_HOME/talkbell)\n  \
        RUST_LOG             the log filter (logs go to standard error)\n\n\
        One Talkbell runs per profile (these two dirs): with the tray app or another daemon\n\
        running, this exits with code 75 saying which one runs. Sign in first with\n\
        `talkbell login --server URL`; `talkbell status` shows the state."
)]
struct Args {}

fn main() -> std::process::ExitCode {
    let Args {} = Args::parse();
    talkbell_daemon::logging::init();
    let result = talkbell_daemon::runtime()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(async { talkbell_daemon::run(Paths::from_env()?).await }));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("talkbell-daemon: {e:#}");
            talkbell_daemon::exit_code(&e)
        }
    }
}
