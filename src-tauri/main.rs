//! `talkbell`: the desktop app's binary. With no subcommand it is the tray app; the
//! subcommands are the command line and the headless daemon.

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

use std::io::Read;

use anyhow::{bail, Context, Result};
use clap::Parser;
use talkbell_app::cli::{Cli, Command};
use talkbell_core::config::Paths;
use talkbell_core::engine::{self, Engine};
use talkbell_core::history::{History, HistoryQuery};
use talkbell_core::protocol::{Token, UserId};

fn main() -> std::process::ExitCode {
    talkbell_daemon::logging::init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Daemon) => exec_daemon(),
        // Before GTK starts, while this is the only thread: GTK would otherwise open a GL
        // display at start for its visuals, which loads the GPU driver (or Mesa's
        // llvmpipe, 30 MB) into the tray process for its whole life, window or none. The
        // window's web view then draws without GL, which this small page does not miss.
        // Setting GDK_GL yourself (e.g. GDK_GL=always) overrides this.
        None if std::env::var_os("GDK_GL").is_none() => std::env::set_var("GDK_GL", "disable"),
        _ => {}
    }
    let runtime = match talkbell_daemon::runtime() {
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
        return exit(result);
    };
    exit(runtime.block_on(run(command)))
}

fn exit(result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("talkbell: {e:#}");
            talkbell_daemon::exit_code(&e)
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
        Command::Daemon => talkbell_daemon::run(paths).await,
        Command::History { json, search, limit } => history(paths, json, search, limit),
        Command::Status { json } => status(paths, json).await,
    }
}

/// Reads the profile's lock, status file, config and history; writes nothing.
async fn status(paths: Paths, json: bool) -> Result<()> {
    let snapshot = tokio::task::spawn_blocking(move || talkbell_core::status::read(&paths)).await??;
    if json {
        println!("{}", talkbell_app::format::json_for_terminal(&serde_json::to_string_pretty(&snapshot)?));
    } else {
        print!("{}", talkbell_app::format::status_text(&snapshot, std::time::SystemTime::now()));
    }
    Ok(())
}

async fn login(paths: Paths, server: &str, user_id: Option<String>) -> Result<()> {
    let mut secret = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut secret)
        .context("could not read the token from standard input")?;
    let token = Token::new(secret).context("no token on standard input")?;
    let user_id = user_id.map(|id| id.parse::<UserId>()).transpose()?;
    let engine = Engine::start(paths, None)?;
    let result = engine.sign_in(server, token, user_id).await;
    engine.shutdown().await;
    let user = result?;
    println!("Signed in to {server} as user {user}; the token is in the keyring.");
    Ok(())
}

/// Becomes `talkbell-daemon` (beside this binary) in the same process: the headless
/// daemon then maps none of the GUI's libraries this binary is linked with, which cost
/// it about 40 MB. Returns only where that binary is missing or cannot be run; the daemon
/// then runs here, the same code with the larger footprint.
fn exec_daemon() {
    use std::os::unix::process::CommandExt;
    let Some(path) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(talkbell_daemon::BINARY)))
        .filter(|path| path.is_file())
    else {
        tracing::info!("{} not found beside this binary; the daemon runs in this process", talkbell_daemon::BINARY);
        return;
    };
    let error = std::process::Command::new(&path).exec();
    tracing::warn!(path = %path.display(), %error, "cannot run the headless daemon binary; the daemon runs in this process");
}

fn history(paths: Paths, json: bool, search: Option<String>, limit: usize) -> Result<()> {
    if limit == 0 {
        bail!("--limit must be at least 1");
    }
    let history = History::open(&paths.history_db)?;
    let entries = history.list(&HistoryQuery { search, limit, before: None, only_unread: false })?;
    if json {
        println!("{}", talkbell_app::format::json_for_terminal(&serde_json::to_string_pretty(&entries)?));
    } else if entries.is_empty() {
        println!("(no talks yet)");
    } else {
        for e in entries {
            println!("{}", talkbell_app::format::history_line(&e));
        }
    }
    Ok(())
}
