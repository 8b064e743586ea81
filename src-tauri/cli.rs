//! The `talkbell` binary: its command line, and what `main` does with it. With no
//! subcommand it is the tray app ([`crate::gui`]); the subcommands are the command line
//! and the headless daemon.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use talkbell_core::app;
use talkbell_core::config::{self, Paths};
use talkbell_core::engine::{self, Engine, EngineError, IfUserUnknown};
use talkbell_core::history::{History, HistoryQuery};
use talkbell_core::i18n::{t, text, Msg};
use talkbell_core::protocol::{Token, UserId};

use crate::gui::Start;
use crate::{format, platform};

// The shape of the command line; its words (`--help`) are the catalogue's (`described`).
#[derive(Debug, Parser)]
#[command(name = "talkbell", version)]
pub struct Cli {
    #[command(flatten)]
    pub start: Start,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Login {
        #[arg(long)]
        server: String,
        #[arg(long)]
        user_id: Option<String>,
    },
    Logout,
    Daemon,
    Status {
        #[arg(long)]
        json: bool,
    },
    History {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// What `main` does: parses the command line, sets up the log and the runtime, and runs
/// the tray app or the subcommand.
pub fn run() -> ExitCode {
    app::logging::init();
    // The config's language, else the system's, before the help or any error is written.
    config::choose_language();
    let cli = parse();
    match cli.command {
        // Becomes `talkbell-daemon` where it can (returns only where it cannot).
        Some(Command::Daemon) => platform::exec_daemon(),
        None => platform::before_gui(),
        _ => {}
    }
    let runtime = match app::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let error = text(Msg::CliCannotStart, &[("error", e.to_string().as_str().into())]);
            eprintln!("{}", text(Msg::CliError, &[("program", "talkbell".into()), ("error", error.as_str().into())]));
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None => run_gui(&runtime, cli.start),
        Some(command) => runtime.block_on(run_command(command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let error = format!("{e:#}");
            eprintln!("{}", text(Msg::CliError, &[("program", "talkbell".into()), ("error", error.as_str().into())]));
            app::exit_code(&*e)
        }
    }
}

/// The command line, its words in the chosen language.
fn parse() -> Cli {
    let matches = described(Cli::command()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// What the command line says (`--help`), from the catalogue: the derive above gives its
/// shape, these its words.
fn described(cmd: clap::Command) -> clap::Command {
    fn help(msg: Msg) -> impl FnOnce(clap::Arg) -> clap::Arg {
        move |a| a.help(t(msg))
    }
    let cmd = cmd
        .about(t(Msg::CliAbout))
        .mut_arg("hidden", help(Msg::CliHiddenHelp))
        .mut_arg("open_talk", help(Msg::CliOpenTalkHelp))
        .mut_arg("reply", help(Msg::CliReplyHelp))
        .mut_subcommand("login", |c| {
            c.about(t(Msg::CliLoginAbout))
                .mut_arg("server", help(Msg::CliLoginServerHelp))
                .mut_arg("user_id", help(Msg::CliLoginUserIdHelp))
        })
        .mut_subcommand("logout", |c| c.about(t(Msg::CliLogoutAbout)))
        .mut_subcommand("daemon", |c| c.about(t(Msg::CliDaemonAbout)).after_help(t(Msg::CliDaemonHelp)))
        .mut_subcommand("status", |c| c.about(t(Msg::CliStatusAbout)).mut_arg("json", help(Msg::CliStatusJsonHelp)))
        .mut_subcommand("history", |c| {
            c.about(t(Msg::CliHistoryAbout))
                .mut_arg("json", help(Msg::CliHistoryJsonHelp))
                .mut_arg("search", help(Msg::CliHistorySearchHelp))
                .mut_arg("limit", help(Msg::CliHistoryLimitHelp))
        });
    talkbell_daemon::cli::localised(cmd)
}

/// The tray app, on this (the main) thread, which the window and the tray need; async
/// work runs on `runtime`.
fn run_gui(runtime: &tokio::runtime::Runtime, start: Start) -> Result<()> {
    tauri::async_runtime::set(runtime.handle().clone());
    // The engine spawns its tasks from the main thread too (in Tauri's setup).
    let _in_runtime = runtime.enter();
    crate::gui::run(Paths::from_env()?, start)
}

async fn run_command(command: Command) -> Result<()> {
    let paths = Paths::from_env()?;
    match command {
        Command::Login { server, user_id } => login(paths, &server, user_id).await,
        Command::Logout => {
            engine::forget_token(&paths).await?;
            println!("{}", t(Msg::CliSignedOut));
            Ok(())
        }
        Command::Daemon => talkbell_daemon::run(paths).await,
        Command::History { json, search, limit } => history(paths, json, search, limit),
        Command::Status { json } => status(paths, json).await,
    }
}

/// Reads the profile's lock, status file, config and history; writes nothing.
async fn status(paths: Paths, json: bool) -> Result<()> {
    let snapshot = tokio::task::spawn_blocking(move || talkbell_core::status::read(&paths)).await??;
    if json {
        println!("{}", format::json_for_terminal(&serde_json::to_string_pretty(&snapshot)?));
    } else {
        print!("{}", format::status_text(&snapshot, std::time::SystemTime::now()));
    }
    Ok(())
}

async fn login(paths: Paths, server: &str, user_id: Option<String>) -> Result<()> {
    let mut secret = String::new();
    std::io::stdin().take(64 * 1024).read_to_string(&mut secret).with_context(|| t(Msg::CliTokenUnreadable))?;
    let token = Token::new(secret).with_context(|| t(Msg::CliNoToken))?;
    let user_id = user_id.map(|id| id.parse::<UserId>()).transpose()?;
    let engine = Engine::start(paths, None)?;
    // The command line takes `--user-id` for a server that does not say who the user is.
    let result = engine.sign_in(server, token, user_id, IfUserUnknown::Refuse).await;
    engine.shutdown().await;
    let user = result?.id().map(ToString::to_string).ok_or(EngineError::NoUserId)?;
    println!("{}", text(Msg::CliSignedIn, &[("server", server.into()), ("user", user.as_str().into())]));
    Ok(())
}

fn history(paths: Paths, json: bool, search: Option<String>, limit: usize) -> Result<()> {
    if limit == 0 {
        bail!("{}", t(Msg::CliLimitZero));
    }
    let history = History::open(&paths.history_db)?;
    let entries = history.list(&HistoryQuery { search, limit, ..HistoryQuery::default() })?;
    if json {
        println!("{}", format::json_for_terminal(&serde_json::to_string_pretty(&entries)?));
    } else if entries.is_empty() {
        println!("{}", t(Msg::CliNoTalks));
    } else {
        for e in entries {
            println!("{}", format::history_line(&e));
        }
    }
    Ok(())
}
