//! The command line of `talkbell-relay`: serve, manage the users file, or send a talk.
//! The binary's `main` is [`run`].

mod settings;

// Signals and the open-file limit: Unix has both; elsewhere Ctrl-C stops the relay.
#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(not(unix), path = "other.rs")]
mod os;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::{Relay, UserId, Users};
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use settings::{ServeArgs, Settings};

#[derive(Parser)]
#[command(name = "talkbell-relay", version, about = "Talkbell's reference talk server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay: WebSocket on /, POST /v1/talk, a durable queue in SQLite. SIGHUP
    /// reads the users file and the TLS certificate again.
    Serve(Box<ServeArgs>),
    /// Add a user to the users file and print their new token (shown once).
    AddUser {
        /// The users file (TOML); created (mode 0640) if missing, else its owner, group
        /// and mode are kept.
        #[arg(long)]
        users: PathBuf,
        /// The user's id (a number or a string).
        #[arg(long)]
        id: String,
        /// The name others see.
        #[arg(long)]
        name: String,
    },
    /// Remove a user from the users file (a running relay applies it on SIGHUP).
    RemoveUser {
        /// The users file (TOML).
        #[arg(long)]
        users: PathBuf,
        /// The user's id.
        #[arg(long)]
        id: String,
    },
    /// Give a user a new token and print it (shown once); the old one stops working once
    /// the relay reloads the file (SIGHUP).
    RotateToken {
        /// The users file (TOML).
        #[arg(long)]
        users: PathBuf,
        /// The user's id.
        #[arg(long)]
        id: String,
    },
    /// Send a talk through a relay's POST /v1/talk and print its seq. The sender's token
    /// comes from TALKBELL_TOKEN, or else from the first line of standard input.
    Send {
        /// The relay: http://host:port (ws:// and wss:// work too).
        #[arg(long)]
        server: String,
        /// The recipient's user id.
        #[arg(long)]
        to: String,
        /// What to say.
        #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
        text: Vec<String>,
    },
}

/// Libraries that log frames or request bytes at trace (a hello, token and all): held to
/// at most debug, whatever `RUST_LOG` says.
const PAYLOAD_TARGETS: [&str; 6] = ["tungstenite", "tokio_tungstenite", "hyper", "hyper_util", "axum", "tower_http"];

/// Logs to stderr, filtered by `RUST_LOG` (else `default`) and, on top of it, by
/// [`PAYLOAD_TARGETS`]' cap: a line must pass both, so the cap never lets more through
/// than `RUST_LOG` asked for.
fn init_logs(default: &str) {
    use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let cap = PAYLOAD_TARGETS
        .iter()
        .fold(Targets::new().with_default(LevelFilter::TRACE), |t, target| t.with_target(*target, LevelFilter::DEBUG));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter.and(cap));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Runs the command line of `talkbell-relay` and says how it went.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            init_logs("info");
            runtime().and_then(|rt| rt.block_on(serve(*args)))
        }
        Command::AddUser { users, id, name } => {
            init_logs("warn");
            add_user(&users, &id, &name)
        }
        Command::RemoveUser { users, id } => {
            init_logs("warn");
            remove_user(&users, &id)
        }
        Command::RotateToken { users, id } => {
            init_logs("warn");
            rotate_token(&users, &id)
        }
        Command::Send { server, to, text } => {
            init_logs("warn");
            runtime().and_then(|rt| rt.block_on(send(&server, &to, &text.join(" "))))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("talkbell-relay: error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause once: most messages already include their cause.
fn report(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // SIGHUP's default would end the process: take it over before anything else.
    let mut signals = os::Signals::new()?;
    let settings = Settings::resolve(args)?;
    let users = Users::load(&settings.users)?;
    if users.is_empty() {
        tracing::warn!(file = %settings.users.display(), "the users file has no users; nobody can connect");
    }
    let mut cfg = settings.relay.clone();
    cfg.users = users;
    os::raise_open_files(cfg.max_connections);
    let relay = crate::start(cfg).await?;
    eprintln!("talkbell-relay: listening on {}", relay.ws_url());
    loop {
        match signals.next().await {
            os::Signal::Stop => break,
            os::Signal::Reload => reload(&relay, &settings.users).await,
        }
    }
    tracing::info!("shutting down");
    relay.shutdown().await;
    Ok(())
}

/// SIGHUP: the users file and the TLS certificate again; what does not load leaves the
/// old one in force.
async fn reload(relay: &Relay, users_file: &Path) {
    match Users::load(users_file) {
        Ok(users) => {
            let count = users.len();
            let closed = relay.set_users(users).await;
            tracing::info!(file = %users_file.display(), users = count, closed, "reloaded the users file");
        }
        Err(e) => tracing::warn!(error = %e, "the users file did not load; keeping the old one"),
    }
    if let Some(files) = relay.tls_files() {
        let cert = files.cert.display().to_string();
        match relay.reload_tls() {
            Ok(()) => tracing::info!(%cert, "reloaded the TLS certificate"),
            Err(e) => tracing::warn!(error = %e, "the TLS certificate did not load; keeping the old one"),
        }
    }
    tracing::info!("reload done");
}

fn add_user(path: &Path, id: &str, name: &str) -> anyhow::Result<()> {
    let id = parse_id(id)?;
    let mut users = Users::load_or_new(path)?;
    let token = users.try_add(id.clone(), name).with_context(|| format!("cannot add to {}", path.display()))?;
    users.save(path)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")?;
    out.flush()?;
    eprintln!(
        "talkbell-relay: added user {id} ({}) to {}; the token above is shown only this once",
        name.trim(),
        path.display()
    );
    Ok(())
}

fn parse_id(id: &str) -> anyhow::Result<UserId> {
    id.parse().map_err(|_| anyhow::anyhow!("the id is empty"))
}

fn remove_user(path: &Path, id: &str) -> anyhow::Result<()> {
    let id = parse_id(id)?;
    let mut users = Users::load(path)?;
    let user = users.remove(id).with_context(|| format!("cannot remove from {}", path.display()))?;
    users.save(path)?;
    eprintln!(
        "talkbell-relay: removed user {} ({}) from {}; a running relay applies it on SIGHUP",
        user.id,
        user.name,
        path.display()
    );
    Ok(())
}

fn rotate_token(path: &Path, id: &str) -> anyhow::Result<()> {
    let id = parse_id(id)?;
    let mut users = Users::load(path)?;
    let token = users.rotate_token(id.clone()).with_context(|| format!("cannot change {}", path.display()))?;
    users.save(path)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{token}")?;
    out.flush()?;
    eprintln!(
        "talkbell-relay: user {id} has a new token (above, shown only this once) in {}; the old one stops \
         working when a running relay gets SIGHUP",
        path.display()
    );
    Ok(())
}

fn read_token() -> anyhow::Result<String> {
    if let Ok(t) = std::env::var("TALKBELL_TOKEN") {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_owned());
        }
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("token: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("cannot read the token from standard input")?;
    let token = line.trim();
    if token.is_empty() {
        bail!("no token: set TALKBELL_TOKEN or give the token on standard input");
    }
    Ok(token.to_owned())
}

async fn send(server: &str, to: &str, text: &str) -> anyhow::Result<()> {
    let to: UserId = to.parse().map_err(|_| anyhow::anyhow!("the recipient id is empty"))?;
    let token = read_token()?;
    let posted = crate::post_talk(server, &token, to, text).await?;
    println!("{}", posted.seq);
    Ok(())
}
