//! The `talkbell` binary: its command line, and what `main` does with it. With no
//! subcommand it is the tray app ([`crate::gui`]); the subcommands are the command line
//! and the headless daemon.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use talkbell_core::app;
use talkbell_core::config::Paths;
use talkbell_core::engine::{self, Engine};
use talkbell_core::history::{History, HistoryQuery};
use talkbell_core::i18n::{self, t, text, Msg};
use talkbell_core::protocol::{Token, UserId};

use crate::gui::Start;
use crate::{format, platform};

#[derive(Debug, Parser)]
#[command(name = "talkbell", version)]
pub struct Cli {
    /// Start in the tray only, with no window (as at login).
    #[arg(long, global = true)]
    pub hidden: bool,
    /// Open the window at this talk (its id in the history). The headless daemon starts
    /// the app so from a popup's Open or Reply, and stops: the app waits for the profile.
    #[arg(long, value_name = "ID")]
    pub open_talk: Option<i64>,
    /// With --open-talk: the talk's reply box open.
    #[arg(long, requires = "open_talk")]
    pub reply: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in: reads the token from standard input, checks it against the server, and
    /// keeps it in the OS keyring.
    Login {
        /// The talk server, ws:// or wss://.
        #[arg(long)]
        server: String,
        /// Your user id, for servers that do not send a welcome.
        #[arg(long)]
        user_id: Option<String>,
    },
    /// Sign out: removes the token from the keyring.
    Logout,
    /// Runs headless: the connection, the history and notifications, no window.
    Daemon,
    /// Prints the state of this profile's tray app or daemon (why offline or signed
    /// out), the server, the user and the unread count.
    Status {
        /// One JSON object instead of lines of text (keys: running, process, state,
        /// reason, retry_at_ms, server, user, user_name, unread).
        #[arg(long)]
        json: bool,
    },
    /// Prints the history, newest first.
    History {
        /// One JSON array instead of lines of text.
        #[arg(long)]
        json: bool,
        /// Only talks matching these words.
        #[arg(long)]
        search: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// What `main` does: parses the command line, sets up the log and the runtime, and runs
/// the tray app or the subcommand.
pub fn run() -> ExitCode {
    app::logging::init();
    // The config's language, else the system's, before the help or any error is written.
    i18n::choose_for_profile();
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
        None => run_gui(&runtime, Start { hidden: cli.hidden, open_talk: cli.open_talk, reply: cli.reply }),
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

/// The command line, its description in the chosen language.
fn parse() -> Cli {
    let matches = Cli::command().about(t(Msg::CliAbout)).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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
    let result = engine.sign_in(server, token, user_id).await;
    engine.shutdown().await;
    let user = result?;
    let user = user.to_string();
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
