//! Real processes for end-to-end tests: the relay binary on a loopback port, and the
//! `talkbell` binary with config and data dirs of its own.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Generous: CI machines are slow and shared, and none of these bounds is a timing claim.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The desktop tests run inside scripts/desktop-session.sh; outside it they must fail
/// loudly rather than pass without having tested anything.
pub fn require_desktop_session() {
    assert!(
        std::env::var_os("TALKBELL_DESKTOP_SESSION").is_some(),
        "this test needs a private desktop session: run it through scripts/desktop-session.sh"
    );
}

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
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `f` until it returns Some, or panics after [`PATIENCE`].
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        if started.elapsed() > PATIENCE {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Standard error of a child, line by line, kept for assertions and failure reports.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn follow(&self, stream: impl std::io::Read + Send + 'static, name: &'static str) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if std::env::var_os("TALKBELL_TEST_VERBOSE").is_some() {
                    eprintln!("[{name}] {line}");
                }
                lines.lock().unwrap().push(line);
            }
        });
    }
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn count(&self, needle: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }
}

/// A relay process with two users: 1 "wang1" (the app's user) and 2 "wang2" (a sender),
/// plus 3 "wang3" for "someone else".
pub struct Relay {
    pub dir: TempDir,
    pub port: u16,
    pub tokens: Vec<(u64, String)>,
    child: Option<Child>,
    pub log: Log,
}

impl Relay {
    pub fn start() -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let mut relay = Relay { port: free_port(), dir, tokens: Vec::new(), child: None, log: Log::default() };
        for (id, name) in [(1, "wang1"), (2, "wang2"), (3, "wang3")] {
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
        let mut child = Command::new(relay_bin())
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--users"])
            .arg(self.users_file())
            .arg("--db")
            .arg(self.dir.path().join("relay.db"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.log.follow(child.stderr.take().unwrap(), "relay");
        self.child = Some(child);
        let port = self.port;
        eventually("the relay to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
    }

    /// SIGKILL: no close frames, no goodbyes.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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

/// The app's own config and data dirs, so tests never touch the user's.
pub struct App {
    pub home: TempDir,
}

impl App {
    pub fn new() -> App {
        App { home: tempfile::tempdir().unwrap() }
    }

    pub fn config_home(&self) -> PathBuf {
        self.home.path().join("config")
    }

    pub fn data_home(&self) -> PathBuf {
        self.home.path().join("data")
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(talkbell_bin());
        cmd.env("XDG_CONFIG_HOME", self.config_home())
            .env("TALKBELL_DATA_DIR", self.data_home().join("talkbell"))
            .env("TALKBELL_CONFIG_DIR", self.config_home().join("talkbell"))
            .env("RUST_LOG", "info");
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

    pub fn daemon(&self) -> Daemon {
        let mut child = self
            .command()
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Log::default();
        log.follow(child.stderr.take().unwrap(), "daemon");
        Daemon { child: Some(child), log }
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
    child: Option<Child>,
    pub log: Log,
}

impl Daemon {
    /// Waits for the n-th "connected" state line in the daemon's log.
    pub fn wait_connected(&self, n: usize) {
        let log = self.log.clone();
        eventually(&format!("connection #{n}"), || (log.count("state=\"connected\"") >= n).then_some(()));
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the daemon closes its link and exits.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(child.wait());
            });
            rx.recv_timeout(PATIENCE).expect("daemon did not stop on SIGTERM").unwrap();
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What dunst has shown, from `dunstctl history` (newest first).
pub fn dunst_history() -> Vec<(String, String)> {
    let out = Command::new("dunstctl").arg("history").output().expect("dunstctl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let mut shown = Vec::new();
    for group in v["data"].as_array().into_iter().flatten() {
        for n in group.as_array().into_iter().flatten() {
            let summary = n["summary"]["data"].as_str().unwrap_or_default().to_owned();
            let body = n["body"]["data"].as_str().unwrap_or_default().to_owned();
            shown.push((summary, body));
        }
    }
    shown
}

/// `secret-tool lookup` with the attributes Talkbell's keyring entries carry.
pub fn secret_tool_lookup(server: &str) -> Option<String> {
    let out = Command::new("secret-tool")
        .args(["lookup", "service", "talkbell", "username", server])
        .output()
        .expect("secret-tool");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|s| !s.is_empty())
}
