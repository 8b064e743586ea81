//! The command line of `talkbell-daemon`, and what its `main` does.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser};
use talkbell_core::app;
use talkbell_core::config::Paths;
use talkbell_core::i18n::{self, t, text, Msg};

/// The command line: no options beyond these two; the profile comes from the environment.
#[derive(Debug, Parser)]
#[command(name = "talkbell-daemon", version)]
struct Args {}

/// Parses the command line (only `--help` and `--version`), sets up the log and the
/// runtime, and runs the daemon until a signal.
pub fn run() -> ExitCode {
    // The config's language, else the system's, before the help or any error is written.
    i18n::choose_for_profile();
    let matches = Args::command().about(t(Msg::CliDaemonAbout)).after_help(t(Msg::CliDaemonHelp)).get_matches();
    let Args {} = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    app::logging::init();
    let result = app::runtime()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(async { crate::run(Paths::from_env()?).await }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let error = format!("{e:#}");
            let line = text(Msg::CliError, &[("program", crate::BINARY.into()), ("error", error.as_str().into())]);
            eprintln!("{line}");
            app::exit_code(&*e)
        }
    }
}
