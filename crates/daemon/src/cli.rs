//! The command line of `talkbell-daemon`, and what its `main` does.

use std::process::ExitCode;

use clap::{Arg, ArgAction, CommandFactory, FromArgMatches, Parser};
use talkbell_core::app;
use talkbell_core::config::{self, Paths};
use talkbell_core::i18n::{t, text, Msg};

/// The command line: no options beyond these two; the profile comes from the environment.
#[derive(Debug, Parser)]
#[command(name = "talkbell-daemon", version)]
struct Args {}

/// clap's own words of `cmd` and of its subcommands in the process's language, from the
/// catalogue: the usage, options and commands headings, and the help and version flags
/// (`-h`/`--help`, `-V`/`--version`, in place of clap's; the `help` subcommand is left
/// out, `--help` does its work). What its arguments and subcommands say is the caller's
/// (`mut_arg`, `mut_subcommand`). Shared with the `talkbell` binary's command line.
pub fn localised(cmd: clap::Command) -> clap::Command {
    let template = format!(
        "{{before-help}}{{about-with-newline}}\n{} {{usage}}\n\n{{all-args}}{{after-help}}",
        t(Msg::CliUsageHeading)
    );
    let versioned = cmd.get_version().is_some();
    let mut cmd = cmd
        .help_template(template)
        .subcommand_help_heading(t(Msg::CliCommandsHeading))
        .disable_help_flag(true)
        .disable_help_subcommand(true)
        .arg(Arg::new("help").short('h').long("help").action(ArgAction::Help).help(t(Msg::CliHelpHelp)));
    if versioned {
        cmd = cmd.disable_version_flag(true).arg(
            Arg::new("version").short('V').long("version").action(ArgAction::Version).help(t(Msg::CliVersionHelp)),
        );
    }
    let heading = t(Msg::CliOptionsHeading);
    let options: Vec<_> = cmd.get_arguments().filter(|a| !a.is_positional()).map(|a| a.get_id().clone()).collect();
    for id in options {
        cmd = cmd.mut_arg(id, |a| a.help_heading(heading.clone()));
    }
    let subcommands: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(name, localised);
    }
    cmd
}

/// Parses the command line (only `--help` and `--version`), sets up the log and the
/// runtime, and runs the daemon until a signal.
pub fn run() -> ExitCode {
    // The config's language, else the system's, before the help or any error is written.
    config::choose_language();
    let matches =
        localised(Args::command().about(t(Msg::CliDaemonAbout)).after_help(t(Msg::CliDaemonHelp))).get_matches();
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
