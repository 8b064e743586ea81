//! talkbell-bench: Talkbell's benchmarks (issue 5), against the original browser client.
//!
//! Runs inside a private desktop session (scripts/desktop-session.sh: D-Bus, gnome-keyring,
//! dunst, Xvfb) with the release binaries beside it. Each benchmark (`suite::*`) measures
//! and returns its figures as data; `report` renders them as Markdown (docs/BENCHMARKS.md
//! by default) with the hand-written docs/benchmarks-notes.md woven in, and writes every
//! figure as JSON beside it (docs/benchmarks.json). `scripts/bench.sh` does all of that in
//! one command.
//!
//! 1. idle footprint: PSS, CPU time and wake-ups of the tray app (window closed and open),
//!    the daemon and the browser baseline after 60 s connected and idle;
//! 2. delivery latency: 10,000 talks at 1,000/s, sent → the notifier called (the app's
//!    delivery trace) or the page's handler run (the baseline);
//! 3. burst: 100,000 talks as fast as the relay takes them, until all are in the history;
//! 4. recovery: relay SIGKILLed and back after 2 s; relay SIGSTOPped (half-open link);
//! 5. relay: memory with 10,000 idle clients, talks routed per second to 1,000 clients;
//! 6. start: process start → connected, for `talkbell --hidden` and `talkbell daemon`;
//! 7. cluster: three relay nodes on Redis beside one on SQLite (throughput, latency across
//!    nodes, idle connections held and their memory, Redis's memory per queued talk, the
//!    loss of a node); it needs no desktop session.

// The lints of the workspace's network code (as in talkbell-relay): no unwrap/expect outside
// tests, no cast that can truncate a number or change its sign (a seq, a count, a pid).
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

mod app;
mod browser;
mod relay;
mod report;
mod sender;
mod stats;
mod suite;
mod wsclient;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use talkbell_testkit::{desktop, procfs};

#[derive(Parser, Debug)]
#[command(name = "talkbell-bench", about = "Talkbell's benchmarks (issue 5); writes a Markdown report and its JSON")]
struct Cli {
    /// A short smoke run (small sizes, short idle periods): for development, not for the report.
    #[arg(long)]
    quick: bool,
    /// Only these benchmarks (comma-separated): idle, latency, burst, recovery, relay, start,
    /// cluster.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where to write the report.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    out: PathBuf,
    /// Where to write every figure as JSON (default: benchmarks.json beside the report).
    #[arg(long)]
    json: Option<PathBuf>,
    /// The hand-written notes woven into the report, section by section.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/benchmarks-notes.md"))]
    notes: PathBuf,
    /// Where talkbell and talkbell-relay are (default: beside this program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the relay keeps its queue database (default: /dev/shm, a tmpfs, so that the
    /// disk's fsync rate does not cap the relay; see the report's notes).
    #[arg(long)]
    relay_db_dir: Option<PathBuf>,
    /// Keep the work directory (logs, histories, traces) instead of removing it.
    #[arg(long)]
    keep: bool,
    /// A size of the run, NAME=VALUE (repeatable): a field of `sizes` in the report's JSON,
    /// e.g. `--size burst_talks=20000`; `--size cluster_held=null` holds what the open files allow.
    #[arg(long = "size", value_name = "NAME=VALUE", value_parser = size_arg)]
    sizes: Vec<(String, serde_json::Value)>,
    /// Skip the browser baseline (when Chromium is not available).
    #[arg(long)]
    no_browser: bool,
    #[command(subcommand)]
    hidden: Option<Hidden>,
}

/// The cluster benchmark's client processes.
#[derive(clap::Subcommand, Debug)]
enum Hidden {
    /// Holds idle WebSocket clients (tokens on standard input, one a line).
    #[command(hide = true)]
    Hold {
        /// Relay URLs (comma-separated), connected to in turn.
        #[arg(long, value_delimiter = ',')]
        url: Vec<String>,
        /// The address to connect from.
        #[arg(long)]
        source: std::net::IpAddr,
        #[arg(long)]
        count: usize,
        /// Exits after this many seconds.
        #[arg(long)]
        for_secs: u64,
    },
}

/// Declares [`Sizes`], each field with the issue's size and the `--quick` one.
macro_rules! sizes {
    ($($(#[$doc:meta])* $name:ident: $t:ty = $issue:expr, $quick:expr;)*) => {
        /// The sizes of a run: the issue's by default, small ones with `--quick`.
        #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
        pub struct Sizes { $($(#[$doc])* pub $name: $t,)* }

        impl Sizes {
            fn new(quick: bool) -> Sizes {
                Sizes { $($name: if quick { $quick } else { $issue },)* }
            }
        }
    };
}

sizes! {
    idle_secs: u64 = 60, 10;
    latency_talks: u64 = 10_000, 1_000;
    latency_rate: f64 = 1_000.0, 1_000.0;
    burst_talks: u64 = 100_000, 10_000;
    recovery_rounds: usize = 20, 3;
    halfopen_rounds: usize = 3, 1;
    relay_idle_clients: usize = 10_000, 1_000;
    relay_idle_secs: u64 = 20, 5;
    route_clients: usize = 1_000, 100;
    route_talks: u64 = 50_000, 5_000;
    disk_talks: u64 = 2_000, 300;
    start_runs: usize = 10, 3;
    cluster_burst: u64 = 20_000, 2_000;
    cluster_paced: u64 = 10_000, 1_000;
    /// Idle connections per node (None: what the open files allow).
    cluster_held: Option<u64> = None, Some(1_000);
    cluster_via_haproxy: u64 = 9_000, 1_000;
    cluster_idle_secs: u64 = 20, 5;
    cluster_queued_recipients: u64 = 2_000, 200;
    cluster_queued_talks: u64 = 20_000, 2_000;
    cluster_failover_clients: u64 = 300, 60;
    cluster_kills: usize = 6, 2;
}

/// What every benchmark needs.
pub struct Env {
    pub work: PathBuf,
    pub bin_dir: PathBuf,
    pub relay_db_dir: PathBuf,
    pub sizes: Sizes,
    pub quick: bool,
    pub browser: bool,
    /// The soft open-file limit, raised to the hard one.
    pub nofile: u64,
}

impl Env {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

pub const BENCHMARKS: &[&str] = &["idle", "latency", "burst", "recovery", "relay", "start", "cluster"];

/// The benchmarks that run without a desktop session or the desktop app.
const HEADLESS: &[&str] = &["cluster"];

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("talkbell-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Some(Hidden::Hold { url, source, count, for_secs }) = cli.hidden {
        procfs::raise_nofile();
        return suite::cluster::hold(url, source, count, for_secs).await;
    }
    if let Some(name) = cli.only.iter().find(|n| !BENCHMARKS.contains(&n.as_str())) {
        bail!("unknown benchmark {name:?} (known: {})", BENCHMARKS.join(", "));
    }
    let selected: Vec<&str> =
        BENCHMARKS.iter().copied().filter(|b| cli.only.is_empty() || cli.only.iter().any(|o| o == b)).collect();
    let headless = selected.iter().all(|b| HEADLESS.contains(b));
    if !headless && !desktop::in_session() {
        bail!(
            "run inside a private desktop session: scripts/desktop-session.sh talkbell-bench … (or scripts/bench.sh)"
        );
    }
    let work = tempfile::Builder::new().prefix("talkbell-bench-").tempdir().context("making the work directory")?;
    let env = make_env(&cli, headless, work.path())?;
    tracing::info!(work = %env.work.display(), nofile = env.nofile, quick = env.quick, "talkbell-bench starting");
    let json = cli.json.clone().unwrap_or_else(|| cli.out.with_file_name("benchmarks.json"));
    let notes = std::fs::read_to_string(&cli.notes).unwrap_or_else(|e| {
        tracing::warn!("no notes woven in ({}: {e})", cli.notes.display());
        String::new()
    });
    let mut results = report::Results::new(&env, report::previous(&json));
    let began = Instant::now();
    for name in selected {
        let started = Instant::now();
        tracing::info!(benchmark = name, "running");
        let result = suite::run(name, &env).await;
        if let Err(e) = &result {
            tracing::error!(benchmark = name, "failed: {e:#}");
        }
        results.add(name, started.elapsed(), result, began.elapsed());
        // Write as we go, so that a later failure leaves what was measured.
        report::write(&results, &notes, &cli.out, &json)?;
    }
    tracing::info!(out = %cli.out.display(), json = %json.display(), took = %stats::secs(began.elapsed()), "report written");
    if cli.keep {
        tracing::info!(dir = %work.keep().display(), "work directory kept");
    }
    Ok(())
}

/// The run's [`Env`]: the binaries checked, the sizes with the command line's overrides.
fn make_env(cli: &Cli, headless: bool, work: &Path) -> Result<Env> {
    let bin_dir = match cli.bin_dir.clone() {
        Some(d) => d,
        None => std::env::current_exe()?.parent().context("the program's directory")?.to_path_buf(),
    };
    let bins: &[&str] = if headless { &["talkbell-relay"] } else { &["talkbell", "talkbell-relay"] };
    if let Some(bin) = bins.iter().map(|b| bin_dir.join(b)).find(|b| !b.exists()) {
        bail!("{} is missing: build it first (cargo build --release -p talkbell -p talkbell-relay)", bin.display());
    }
    let shm = Path::new("/dev/shm");
    let relay_db_dir =
        cli.relay_db_dir.clone().unwrap_or_else(|| if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() });
    let sizes = sized(Sizes::new(cli.quick), &cli.sizes)?;
    let (quick, browser, nofile) = (cli.quick, !cli.no_browser, procfs::raise_nofile());
    Ok(Env { work: work.to_path_buf(), bin_dir, relay_db_dir, sizes, quick, browser, nofile })
}

/// `NAME=VALUE` of `--size`, the value as JSON; a number must be above 0.
fn size_arg(arg: &str) -> Result<(String, serde_json::Value), String> {
    let (name, value) = arg.split_once('=').ok_or("expected NAME=VALUE")?;
    let value: serde_json::Value = serde_json::from_str(value).map_err(|e| format!("{value:?}: {e}"))?;
    if value.as_f64().is_some_and(|v| v <= 0.0) {
        return Err(format!("{name} must be above 0"));
    }
    Ok((name.to_owned(), value))
}

/// `sizes` with the `--size` overrides.
fn sized(sizes: Sizes, overrides: &[(String, serde_json::Value)]) -> Result<Sizes> {
    let mut fields = serde_json::to_value(sizes)?;
    let known: Vec<String> = fields.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    for (name, value) in overrides {
        let field = fields.get_mut(name).with_context(|| format!("no size {name:?} (known: {})", known.join(", ")))?;
        *field = value.clone();
    }
    serde_json::from_value(fields).context("a --size value of the wrong type")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_set_by_name() {
        let set = |args: &[&str]| {
            let args: Result<Vec<_>, String> = args.iter().map(|a| size_arg(a)).collect();
            sized(Sizes::new(true), &args?).map_err(|e| e.to_string())
        };
        let s = set(&["burst_talks=20000", "cluster_held=null", "latency_rate=500.5"]).unwrap();
        assert_eq!((s.burst_talks, s.cluster_held, s.latency_rate), (20_000, None, 500.5));
        assert!(set(&["burst_talk=1"]).unwrap_err().contains("no size \"burst_talk\" (known: "));
        assert!(set(&["idle_secs=0"]).is_err() && set(&["idle_secs=x"]).is_err() && set(&["start_runs=1.5"]).is_err());
    }
}
