//! `talkbell-relay`: serve, add a user, or send a talk.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use talkbell_relay::{HeartbeatHint, RateLimit, RelayConfig, UserId, Users};

#[derive(Parser)]
#[command(name = "talkbell-relay", version, about = "Talkbell's reference talk server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay: WebSocket on /, POST /v1/talk, a durable queue in SQLite.
    Serve(ServeArgs),
    /// Add a user to the users file and print their new token (shown once).
    AddUser {
        /// The users file (TOML); created if missing.
        #[arg(long)]
        users: PathBuf,
        /// The user's id (a number or a string).
        #[arg(long)]
        id: String,
        /// The name others see.
        #[arg(long)]
        name: String,
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

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The users file (TOML; see add-user).
    #[arg(long)]
    users: PathBuf,
    /// The queue database (SQLite); defaults to talkbell-relay.db beside the users file.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Close a connection that sent nothing for this many seconds.
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
    /// Close a connection that has not sent its hello this many seconds after opening.
    #[arg(long, default_value_t = 10)]
    hello_timeout: u64,
    /// Heartbeat interval to suggest to clients in the welcome, in ms.
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// Heartbeat timeout to suggest to clients in the welcome, in ms.
    #[arg(long)]
    heartbeat_timeout_ms: Option<u64>,
    /// Delete talks older than this many days, acked or not.
    #[arg(long, default_value_t = 30)]
    retention_days: u64,
    /// Keep at most this many talks per recipient.
    #[arg(long, default_value_t = 10_000)]
    max_queued: usize,
    /// Frames per second one connection may send (average).
    #[arg(long, default_value_t = 50.0)]
    ws_rate: f64,
    /// Frames one connection may send at once.
    #[arg(long, default_value_t = 100)]
    ws_burst: u32,
    /// POST /v1/talk per second per token (average).
    #[arg(long, default_value_t = 20.0)]
    http_rate: f64,
    /// POST /v1/talk at once per token.
    #[arg(long, default_value_t = 100)]
    http_burst: u32,
    /// Also send every talk, without its seq, to everyone else connected, as the
    /// original servers did (clients pick out their own).
    #[arg(long)]
    deliver_to_all: bool,
}

fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            init_logs("info");
            runtime().and_then(|rt| rt.block_on(serve(args)))
        }
        Command::AddUser { users, id, name } => {
            init_logs("warn");
            add_user(&users, &id, &name)
        }
        Command::Send { server, to, text } => {
            init_logs("warn");
            runtime().and_then(|rt| rt.block_on(send(&server, &to, &text.join(" "))))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("talkbell-relay: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn default_db(users: &Path) -> PathBuf {
    match users.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("talkbell-relay.db"),
        _ => PathBuf::from("talkbell-relay.db"),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let users = Users::load(&args.users)?;
    if users.is_empty() {
        tracing::warn!(file = %args.users.display(), "the users file has no users; nobody can connect");
    }
    let db = args.db.clone().unwrap_or_else(|| default_db(&args.users));
    let mut cfg = RelayConfig::new(args.listen, users, db);
    cfg.idle_timeout = Duration::from_secs(args.idle_timeout.max(1));
    cfg.hello_timeout = Duration::from_secs(args.hello_timeout.max(1));
    if args.heartbeat_interval_ms.is_some() || args.heartbeat_timeout_ms.is_some() {
        cfg.heartbeat_hint =
            Some(HeartbeatHint { interval_ms: args.heartbeat_interval_ms, timeout_ms: args.heartbeat_timeout_ms });
    }
    cfg.retention = Duration::from_secs(args.retention_days.max(1) * 24 * 3600);
    cfg.max_queued_per_recipient = args.max_queued.max(1);
    cfg.deliver_to_all = args.deliver_to_all;
    if !(args.ws_rate > 0.0 && args.http_rate > 0.0) {
        bail!("--ws-rate and --http-rate must be above 0");
    }
    cfg.ws_rate = RateLimit::new(args.ws_rate, args.ws_burst.max(1));
    cfg.http_rate = RateLimit::new(args.http_rate, args.http_burst.max(1));

    let relay = talkbell_relay::start(cfg).await?;
    eprintln!("talkbell-relay: listening on {}", relay.ws_url());
    wait_for_signal().await;
    tracing::info!("shutting down");
    relay.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn add_user(path: &Path, id: &str, name: &str) -> anyhow::Result<()> {
    let id: UserId = id.parse().map_err(|_| anyhow::anyhow!("the id is empty"))?;
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
    let posted = talkbell_relay::post_talk(server, &token, to, text).await?;
    println!("{}", posted.seq);
    Ok(())
}
