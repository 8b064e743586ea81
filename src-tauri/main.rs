//! `talkbell`: the desktop app's binary. With no subcommand it is the tray app; the
//! subcommands are the command line and the headless daemon.

use std::io::Read;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;
use talkbell_app::cli::{Cli, Command};
use talkbell_core::config::Paths;
use talkbell_core::engine::{self, Engine};
use talkbell_core::history::{History, HistoryQuery};
use talkbell_core::notify::DesktopNotifier;
use talkbell_core::protocol::{Token, UserId};

fn main() -> std::process::ExitCode {
    talkbell_app::logging::init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // Two workers are plenty for one socket; fewer threads, fewer wake-ups.
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("talkbell: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let Some(command) = cli.command else {
        // The window and tray need the main thread; async work runs on this runtime.
        tauri::async_runtime::set(runtime.handle().clone());
        // The engine spawns its tasks from the main thread too (in Tauri's setup).
        let _in_runtime = runtime.enter();
        let result = Paths::from_env().map_err(anyhow::Error::from).and_then(|p| talkbell_app::gui::run(p, cli.hidden));
        return match result {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("talkbell: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    };
    match runtime.block_on(run(command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("talkbell: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<()> {
    let paths = Paths::from_env()?;
    match command {
        Command::Login { server, user_id } => login(paths, &server, user_id).await,
        Command::Logout => {
            engine::forget_token(&paths).await?;
            println!("Signed out; the token is removed from the keyring.");
            Ok(())
        }
        Command::Daemon => daemon(paths).await,
        Command::History { json, search, limit } => history(paths, json, search, limit),
    }
}

async fn login(paths: Paths, server: &str, user_id: Option<String>) -> Result<()> {
    let mut secret = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut secret)
        .context("could not read the token from standard input")?;
    let token = Token::new(secret).context("no token on standard input")?;
    let user_id = user_id.map(|id| id.parse::<UserId>()).transpose()?;
    let engine = Engine::start(paths, None).await?;
    let result = engine.sign_in(server, token, user_id).await;
    engine.shutdown().await;
    let user = result?;
    println!("Signed in to {server} as user {user}; the token is in the keyring.");
    Ok(())
}

async fn daemon(paths: Paths) -> Result<()> {
    let notifier = Arc::new(DesktopNotifier::new());
    let engine = Engine::start(paths, Some(notifier)).await?;
    engine.watch_system();
    if engine.config().server.is_none() {
        tracing::warn!("no server configured: run `talkbell login --server URL` first");
    }
    wait_for_signal().await?;
    tracing::info!("shutting down");
    engine.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn history(paths: Paths, json: bool, search: Option<String>, limit: usize) -> Result<()> {
    if limit == 0 {
        bail!("--limit must be at least 1");
    }
    let history = History::open(&paths.history_db)?;
    let entries = history.list(&HistoryQuery { search, limit, before: None, only_unread: false })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else if entries.is_empty() {
        println!("(no talks yet)");
    } else {
        for e in entries {
            println!("{}", talkbell_app::format::history_line(&e));
        }
    }
    Ok(())
}
