//! The `talkbell` binary with config and data directories of its own: signed in once with
//! `talkbell login` (token to the keyring of the desktop session), then started as the
//! daemon, the tray app (`--hidden`) or the tray app with its window.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use talkbell_core::config::{Config, ConfigStore, Paths};
use talkbell_core::notify::DELIVERY_TRACE_ENV;
use talkbell_testkit::child::Spawned;
use talkbell_testkit::wait::Poll;

use crate::Env;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    /// `talkbell daemon`: headless.
    Daemon,
    /// `talkbell --hidden`: the tray, no window.
    Tray,
    /// `talkbell`: the tray and its window.
    Window,
}

impl Mode {
    pub fn args(self) -> &'static [&'static str] {
        match self {
            Mode::Daemon => &["daemon"],
            Mode::Tray => &["--hidden"],
            Mode::Window => &[],
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Mode::Daemon => "`talkbell daemon` (headless)",
            Mode::Tray => "`talkbell --hidden` (tray, window closed)",
            Mode::Window => "`talkbell` (tray and window open)",
        }
    }
}

/// The app's log line for a link coming up.
pub const CONNECTED: &str = "state=\"connected\"";

pub struct AppHome {
    bin: PathBuf,
    pub root: PathBuf,
    pub paths: Paths,
    name: String,
}

impl AppHome {
    /// Config and data under `parent` (the work directory, or a tmpfs for a diagnostic run).
    pub fn new(env: &Env, parent: &Path, name: &str) -> Result<AppHome> {
        let root = parent.join(name);
        std::fs::create_dir_all(&root)?;
        Ok(AppHome { bin: env.bin("talkbell"), paths: Paths::in_dir(&root), root, name: name.to_owned() })
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("TALKBELL_CONFIG_DIR", self.root.join("config"))
            .env("TALKBELL_DATA_DIR", self.root.join("data"))
            .env("RUST_LOG", "info")
            .env_remove(DELIVERY_TRACE_ENV);
        cmd
    }

    /// `talkbell login --server URL`, the token on standard input.
    pub fn login(&self, server: &str, token: &str) -> Result<()> {
        let mut child = self
            .command()
            .args(["login", "--server", server])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting talkbell login")?;
        child.stdin.take().context("stdin")?.write_all(token.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("talkbell login failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Changes the config file (after login).
    pub fn edit_config(&self, edit: impl FnOnce(&mut Config)) -> Result<Config> {
        let store = ConfigStore::load_or_create(&self.paths.config_file)?;
        Ok(store.update(|config| {
            edit(config);
            config.clone()
        })?)
    }

    /// Starts the app; `trace` turns the delivery trace on (TALKBELL_DELIVERY_TRACE).
    pub fn spawn(&self, mode: Mode, trace: Option<&Path>) -> Result<Spawned> {
        let mut cmd = self.command();
        cmd.args(mode.args());
        if let Some(t) = trace {
            cmd.env(DELIVERY_TRACE_ENV, t);
        }
        Ok(Spawned::spawn(&mut cmd, "talkbell", Some(&self.root.join(format!("{}.log", self.name))))?)
    }

    /// A read-only connection to the app's history.
    pub fn history(&self) -> Result<rusqlite::Connection> {
        let c = rusqlite::Connection::open_with_flags(
            &self.paths.history_db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {}", self.paths.history_db.display()))?;
        c.busy_timeout(Duration::from_secs(5))?;
        Ok(c)
    }
}

/// Waits for the app's `n`-th "connected" line (counting all lines of its log); returns
/// the line's time stamp.
pub async fn wait_connected(app: &mut Spawned, n: usize, within: Duration) -> Result<SystemTime> {
    let check = || match app.log.times_from(0, CONNECTED).get(n - 1) {
        Some(t) => Some(Ok(*t)),
        None if !app.is_running() => Some(Err(anyhow::anyhow!("talkbell exited before connecting"))),
        None => None,
    };
    let found = Poll::up_to(within).every(Duration::from_millis(5)).check_async(check).await;
    let found = found.unwrap_or_else(|| Err(anyhow::anyhow!("talkbell not connected within {within:?}")));
    found.with_context(|| format!("its log ends:\n{}", app.log.tail(20)))
}
