//! Real processes for end-to-end tests: the relay binary on a loopback port, and the
//! `talkbell` binary with config and data dirs of its own. What the benchmarks share with
//! them is in talkbell-testkit (re-exported here under the names the tests use).
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use talkbell_testkit::child::Log;
use talkbell_testkit::child::Spawned;
// Re-exports for the tests that want them; not every test binary does.
#[allow(unused_imports)]
pub use talkbell_testkit::desktop::require_session as require_desktop_session;
pub use talkbell_testkit::dunst::{self, Popup};
pub use talkbell_testkit::http::{post_talk, PostError};
use talkbell_testkit::relay::Serve;
pub use talkbell_testkit::wait::Poll;
use tempfile::TempDir;

/// Generous: CI machines are slow and shared, and none of these bounds is a timing claim.
pub const PATIENCE: Duration = Duration::from_secs(30);

fn target_dir() -> PathBuf {
    // tests run from target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// The relay binary, built by `cargo test --workspace` (or built here if missing).
pub fn relay_bin() -> PathBuf {
    let bin = target_dir().join("talkbell-relay");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "talkbell-relay", "--bin", "talkbell-relay"])
            .status()
            .expect("cargo build talkbell-relay");
        assert!(status.success());
    }
    bin
}

pub fn talkbell_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_talkbell"))
}

pub fn free_port() -> u16 {
    talkbell_testkit::relay::free_port().unwrap()
}

/// Polls `f` every 100 ms until it returns Some, or panics after [`PATIENCE`].
pub fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    Poll::up_to(PATIENCE).until(what, f)
}

/// A relay process with two users: 1 "wang1" (the app's user) and 2 "wang2" (a sender),
/// plus 3 "wang3" for "someone else".
pub struct Relay {
    pub dir: TempDir,
    pub port: u16,
    pub tokens: Vec<(u64, String)>,
    child: Option<Spawned>,
    /// Every run's standard error, one after the other.
    pub log: Log,
    /// How it is run, with the extra `serve` flags of [`Relay::start_with`].
    serve: Serve,
}

impl Relay {
    pub fn start() -> Relay {
        Relay::start_with(&[])
    }

    /// Like [`Relay::start`], with more `serve` flags (e.g. `--http-rate`), kept for every
    /// later [`Relay::spawn`].
    pub fn start_with(extra_args: &[&str]) -> Relay {
        Relay::start_with_users(extra_args, &[(1, "wang1"), (2, "wang2"), (3, "wang3")])
    }

    /// Like [`Relay::start_with`], with these users (id, name) in place of the three.
    pub fn start_with_users(extra_args: &[&str], users: &[(u64, &str)]) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let mut serve = Serve::new(relay_bin(), dir.path().join("users.toml"), dir.path().join("relay.db")).unwrap();
        serve.args = extra_args.iter().map(|s| s.to_string()).collect();
        let mut relay = Relay { port: serve.port, dir, tokens: Vec::new(), child: None, log: Log::default(), serve };
        for &(id, name) in users {
            let token = relay.add_user(id, name);
            relay.tokens.push((id, token));
        }
        relay.spawn();
        relay
    }

    pub fn users_file(&self) -> PathBuf {
        self.dir.path().join("users.toml")
    }

    fn add_user(&self, id: u64, name: &str) -> String {
        let out = Command::new(relay_bin())
            .args(["add-user", "--users"])
            .arg(self.users_file())
            .args(["--id", &id.to_string(), "--name", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "add-user: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub fn token(&self, id: u64) -> &str {
        &self.tokens.iter().find(|(i, _)| *i == id).unwrap().1
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none());
        let mut child = self.serve.spawn(&self.log).unwrap();
        self.serve.wait_ready(&mut child, Poll::up_to(PATIENCE)).unwrap();
        self.child = Some(child);
    }

    /// SIGKILL: no close frames, no goodbyes.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// The relay process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid)
    }

    /// SIGSTOP: the process freezes with its sockets open; the kernel still completes TCP
    /// handshakes and buffers what peers send, but nothing answers.
    pub fn freeze(&self) {
        signal(self.pid().expect("the relay is not running"), "STOP");
    }

    /// SIGCONT after [`Relay::freeze`].
    pub fn thaw(&self) {
        signal(self.pid().expect("the relay is not running"), "CONT");
    }

    /// `POST /v1/talk` in-process, from `from` to `to` (see [`post_talk`]).
    pub fn post(&self, from: u64, to: u64, text: &str) -> Result<u64, PostError> {
        post_talk(self.port, self.token(from), to, text)
    }

    /// Sends a talk from `from` to `to` through the `send` command; returns its seq.
    pub fn send(&self, from: u64, to: u64, text: &str) -> u64 {
        let out = Command::new(relay_bin())
            .args(["send", "--server", &self.url(), "--to", &to.to_string(), text])
            .env("TALKBELL_TOKEN", self.token(from))
            .output()
            .unwrap();
        assert!(out.status.success(), "send: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("send printed no seq: {stdout}"))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `kill -SIG pid`.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().expect("kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// The app's own config and data dirs, so tests never touch the user's.
pub struct App {
    pub home: TempDir,
    /// The `LC_ALL` of every process it starts: the language they speak is the test's
    /// choice, never the machine's.
    pub locale: &'static str,
}

impl App {
    /// An app in English (`LC_ALL=C.UTF-8`).
    pub fn new() -> App {
        App::in_locale("C.UTF-8")
    }

    /// An app whose processes run with `LC_ALL=locale` (`zh_CN.UTF-8`: in Chinese).
    pub fn in_locale(locale: &'static str) -> App {
        App { home: tempfile::tempdir().unwrap(), locale }
    }

    /// The environment every process of this app gets: its dirs, its locale, its log.
    fn with_env<'c>(&self, cmd: &'c mut Command, data_dir: PathBuf) -> &'c mut Command {
        cmd.env("XDG_CONFIG_HOME", self.config_home())
            .env("TALKBELL_DATA_DIR", data_dir)
            .env("TALKBELL_CONFIG_DIR", self.config_home().join("talkbell"))
            .env("LC_ALL", self.locale)
            .env("RUST_LOG", "info")
    }

    pub fn config_home(&self) -> PathBuf {
        self.home.path().join("config")
    }

    pub fn data_home(&self) -> PathBuf {
        self.home.path().join("data")
    }

    pub fn command(&self) -> Command {
        self.command_of(&talkbell_bin())
    }

    /// [`App::command`] for another binary of the app (an installed `/usr/bin/talkbell`,
    /// `talkbell-daemon`), with this app's directories.
    pub fn command_of(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        self.with_env(&mut cmd, self.data_home().join("talkbell"));
        cmd
    }

    /// `talkbell login`, the token on standard input.
    pub fn login(&self, server: &str, token: &str, extra: &[&str]) -> std::process::Output {
        let mut child = self
            .command()
            .args(["login", "--server", server])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// The config file `talkbell login` writes.
    pub fn config_file(&self) -> PathBuf {
        self.config_home().join("talkbell").join("config.toml")
    }

    /// Changes the config file (e.g. shorter heartbeat timings); it must exist (log in
    /// first). The daemon reads it when it starts.
    pub fn edit_config(&self, edit: impl FnOnce(&mut talkbell_core::config::Config)) {
        let path = self.config_file();
        assert!(path.exists(), "no config at {}: log in first", path.display());
        talkbell_core::config::ConfigStore::load_or_create(&path).unwrap().update(edit).unwrap();
    }

    /// Signs in to `relay` as user 1 (wang1), starts the daemon and waits for its link.
    pub fn signed_in_daemon(&self, relay: &Relay) -> Daemon {
        let out = self.login(&relay.url(), relay.token(1), &[]);
        assert!(out.status.success(), "login failed: {}", String::from_utf8_lossy(&out.stderr));
        let daemon = self.daemon();
        daemon.wait_connected(1);
        daemon
    }

    pub fn daemon(&self) -> Daemon {
        let mut cmd = self.command();
        cmd.arg("daemon");
        Daemon::spawn(cmd)
    }

    pub fn history_json(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        let out = self.command().args(["history", "--json"]).args(extra).output().unwrap();
        assert!(out.status.success(), "history: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn history_texts(&self) -> Vec<String> {
        self.history_json(&["--limit", "100000"])
            .iter()
            .map(|e| e["talk"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Every file under the app's config and data dirs, read as bytes.
    pub fn files_containing(&self, needle: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![self.home.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(bytes) = std::fs::read(&path) {
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        found.push(path);
                    }
                }
            }
        }
        found
    }
}

pub struct Daemon {
    child: Option<Spawned>,
    pub log: Log,
}

impl Daemon {
    /// Starts a long-running process of the app (daemon or tray app), following its log.
    pub fn spawn(mut cmd: Command) -> Daemon {
        let child = Spawned::spawn(&mut cmd, "daemon", None).unwrap();
        Daemon { log: child.log.clone(), child: Some(child) }
    }

    /// The daemon's process id (the same after it has become `talkbell-daemon`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid)
    }

    /// Waits for the n-th "connected" state line in the daemon's log.
    pub fn wait_connected(&self, n: usize) {
        let log = self.log.clone();
        eventually(&format!("connection #{n}"), || (log.count("state=\"connected\"") >= n).then_some(()));
    }

    /// SIGTERM: the daemon closes its link and exits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            assert!(child.terminate(PATIENCE).status.is_some(), "daemon did not stop on SIGTERM");
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }
}

/// What dunst has shown, from `dunstctl history` (newest first): (summary, body).
pub fn dunst_history() -> Vec<(String, String)> {
    dunst::history().expect("dunstctl history").into_iter().map(|p| (p.summary, p.body)).collect()
}

/// What dunst has shown, with ids, oldest first. Popups still on screen are not in the
/// history yet: `dunstctl close-all` moves them there.
pub fn dunst_popups() -> Vec<Popup> {
    let mut shown = dunst::history().expect("dunstctl history");
    shown.sort_by_key(|p| p.id);
    shown
}

/// dunst's screen is the session's, shared by the tests of one binary that run at once:
/// a test that picks from a popup's menu holds it for writing ([`picking_from_popups`]),
/// so that no other test closes the popup it is about to pick from; closing popups
/// (below) holds it for reading.
static SCREEN: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Holds dunst's screen while this test picks from popups' menus (see [`SCREEN`]): taken
/// before its popups show, kept until they are closed.
pub fn picking_from_popups() -> Screen {
    Screen { _held: SCREEN.write().unwrap_or_else(|e| e.into_inner()) }
}

/// dunst's screen, this test's alone (see [`SCREEN`]).
pub struct Screen {
    _held: std::sync::RwLockWriteGuard<'static, ()>,
}

impl Screen {
    /// [`dunst_close_all`] while holding the screen.
    pub fn close_all(&self) {
        dunst::close_all().expect("dunstctl close-all");
    }

    /// [`closed_popups_with`] while holding the screen.
    pub fn closed_popups_with(&self, body: &str) -> usize {
        dunst::shown().expect("dunstctl").iter().filter(|p| p.body.contains(body)).count()
    }
}

fn closing_popups() -> std::sync::RwLockReadGuard<'static, ()> {
    SCREEN.read().unwrap_or_else(|e| e.into_inner())
}

/// `dunstctl close-all`: every popup on screen goes to the history.
pub fn dunst_close_all() {
    let _screen = closing_popups();
    dunst::close_all().expect("dunstctl close-all");
}

/// Popups in dunst's history with `body` in them (those on screen not counted).
pub fn popups_with(body: &str) -> usize {
    dunst_history().iter().filter(|(_, b)| b.contains(body)).count()
}

/// `secret-tool lookup` with the attributes Talkbell's keyring entries carry.
pub fn secret_tool_lookup(server: &str) -> Option<String> {
    let out = Command::new("secret-tool")
        .args(["lookup", "service", "talkbell", "username", server])
        .output()
        .expect("secret-tool");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|s| !s.is_empty())
}

// ---- one app per profile, `talkbell status` ------------------------------------------

/// The `talkbell-daemon` binary (the headless daemon, built beside `talkbell`).
pub fn talkbell_daemon_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_talkbell-daemon"))
}

/// Runs `cmd` to its end with its output captured; panics if it takes over [`PATIENCE`].
pub fn output_within_patience(cmd: &mut Command) -> std::process::Output {
    output_within(cmd, PATIENCE)
}

/// Runs `cmd` to its end with its output captured; panics if it takes over `bound`.
pub fn output_within(cmd: &mut Command, bound: Duration) -> std::process::Output {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(bound) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("{:?} did not end within {bound:?}", cmd.get_program());
        }
    }
}

impl App {
    /// The profile's data dir (`TALKBELL_DATA_DIR`).
    pub fn data_dir(&self) -> PathBuf {
        self.data_home().join("talkbell")
    }

    /// `talkbell-daemon` itself (not through `talkbell daemon`), with this app's dirs.
    pub fn daemon_bin_command(&self) -> Command {
        let mut cmd = Command::new(talkbell_daemon_bin());
        self.with_env(&mut cmd, self.data_dir());
        cmd
    }

    /// `talkbell status --json`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let out = output_within_patience(self.command().args(["status", "--json"]));
        assert!(out.status.success(), "status --json: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status --json: {e}: {:?}", out.stdout))
    }

    /// `talkbell status`, as a person reads it.
    pub fn status_text(&self) -> String {
        let out = output_within_patience(self.command().arg("status"));
        assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Daemon {
    /// How the process ended (None while it runs).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(Spawned::exited)
    }

    /// Whether the process has not ended yet.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(Spawned::is_running)
    }
}

/// Popups with `body` in them shown so far: those still on screen are closed first, as
/// dunst's history holds only closed ones.
pub fn closed_popups_with(body: &str) -> usize {
    let _screen = closing_popups();
    dunst::shown().expect("dunstctl").iter().filter(|p| p.body.contains(body)).count()
}

/// A user of `relay` as the engine runs one: the session on a SQLite history of its own
/// (in a temp dir), signed in with the relay's token for `id`. For tests that want a
/// second signed-in user beside the app (one app per desktop session).
pub struct Peer {
    pub session: talkbell_core::session::SessionHandle,
    pub history: std::sync::Arc<talkbell_core::history::History>,
    _dir: TempDir,
}

impl Peer {
    pub fn start(relay: &Relay, id: u64, timing: talkbell_core::session::Timing) -> Peer {
        use talkbell_core::session::{Credentials, Session, SessionConfig};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.sqlite3");
        let history = std::sync::Arc::new(talkbell_core::history::History::open(&path).unwrap());
        let token = talkbell_core::protocol::Token::new(relay.token(id)).unwrap();
        let creds = Credentials { server: relay.url(), token, user_id: None };
        let session = Session::spawn(SessionConfig::new(format!("peer-{id}"), timing), Some(creds), history.clone());
        Peer { session, history, _dir: dir }
    }
}
