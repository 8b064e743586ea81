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
    /// Appended to `serve`'s arguments on every spawn (see [`Relay::start_with`]).
    extra_args: Vec<String>,
}

impl Relay {
    pub fn start() -> Relay {
        Relay::start_with(&[])
    }

    /// Like [`Relay::start`], with more `serve` flags (e.g. `--http-rate`), kept for every
    /// later [`Relay::spawn`].
    pub fn start_with(extra_args: &[&str]) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let mut relay = Relay {
            port: free_port(),
            dir,
            tokens: Vec::new(),
            child: None,
            log: Log::default(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
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
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.log.follow(child.stderr.take().unwrap(), "relay");
        self.child = Some(child);
        let port = self.port;
        eventually("the relay to listen", || std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()));
    }

    /// SIGKILL: no close frames, no goodbyes.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The relay process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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

/// Why a `POST /v1/talk` did not give a seq.
#[derive(Debug)]
pub enum PostError {
    /// No connection at all (the relay is down): the talk was certainly not taken.
    Connect(std::io::Error),
    /// Connected, but no complete answer (the relay died meanwhile): the talk may or may
    /// not have been stored.
    CutOff(String),
    /// A complete answer that is not a 2xx.
    Status(u16, String),
}

/// `POST /v1/talk` over a plain HTTP/1.1 connection to 127.0.0.1:`port` (one request per
/// connection, no retries): the talk's seq on a 2xx answer.
pub fn post_talk(port: u16, token: &str, to: u64, text: &str) -> Result<u64, PostError> {
    use std::io::Read;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(PostError::Connect)?;
    let cut = |what: &str, e: std::io::Error| PostError::CutOff(format!("{what}: {e}"));
    stream.set_read_timeout(Some(PATIENCE)).map_err(|e| cut("set timeout", e))?;
    stream.set_write_timeout(Some(PATIENCE)).map_err(|e| cut("set timeout", e))?;
    let body = serde_json::json!({"to": to, "talk": text}).to_string();
    let request = format!(
        "POST /v1/talk HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| cut("write", e))?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| cut("read", e))?;
    let answer = String::from_utf8_lossy(&answer);
    let Some((head, body)) = answer.split_once("\r\n\r\n") else {
        return Err(PostError::CutOff(format!("incomplete answer: {answer:?}")));
    };
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| PostError::CutOff(format!("no status line: {head:?}")))?;
    let declared: Option<usize> = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
    });
    if declared.is_some_and(|n| body.len() < n) {
        return Err(PostError::CutOff(format!("answer cut short: {answer:?}")));
    }
    if !(200..300).contains(&status) {
        return Err(PostError::Status(status, body.to_owned()));
    }
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| PostError::CutOff(format!("answer body {body:?}: {e}")))?;
    v["seq"].as_u64().ok_or_else(|| PostError::Status(status, format!("no seq in {body}")))
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
        self.command_of(&talkbell_bin())
    }

    /// [`App::command`] for another binary of the app (an installed `/usr/bin/talkbell`,
    /// `talkbell-daemon`), with this app's directories.
    pub fn command_of(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
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

    /// The config file `talkbell login` writes.
    pub fn config_file(&self) -> PathBuf {
        self.config_home().join("talkbell").join("config.toml")
    }

    /// Changes the config file (e.g. shorter heartbeat timings); it must exist (log in
    /// first). The daemon reads it when it starts.
    pub fn edit_config(&self, edit: impl FnOnce(&mut talkbell_core::config::Config)) {
        use talkbell_core::config::Config;
        let path = self.config_file();
        assert!(path.exists(), "no config at {}: log in first", path.display());
        let mut config = Config::load_or_create(&path).unwrap();
        edit(&mut config);
        config.save(&path).unwrap();
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
    child: Option<Child>,
    pub log: Log,
}

impl Daemon {
    /// Starts a long-running process of the app (daemon or tray app), following its log.
    pub fn spawn(mut cmd: Command) -> Daemon {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let log = Log::default();
        log.follow(child.stderr.take().unwrap(), "daemon");
        Daemon { child: Some(child), log }
    }

    /// The daemon's process id (the same after it has become `talkbell-daemon`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

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

/// One popup in dunst's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Popup {
    /// dunst's notification id: it grows with every popup shown.
    pub id: u64,
    pub summary: String,
    pub body: String,
}

/// What dunst has shown, with ids, oldest first. Popups still on screen are not in the
/// history yet: `dunstctl close-all` moves them there.
pub fn dunst_popups() -> Vec<Popup> {
    let out = Command::new("dunstctl").arg("history").output().expect("dunstctl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let mut shown = Vec::new();
    for group in v["data"].as_array().into_iter().flatten() {
        for n in group.as_array().into_iter().flatten() {
            shown.push(Popup {
                id: n["id"]["data"].as_u64().unwrap_or_default(),
                summary: n["summary"]["data"].as_str().unwrap_or_default().to_owned(),
                body: n["body"]["data"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    shown.sort_by_key(|p| p.id);
    shown
}

/// `dunstctl close-all`: every popup on screen goes to the history.
pub fn dunst_close_all() {
    let status = Command::new("dunstctl").arg("close-all").status().expect("dunstctl");
    assert!(status.success(), "dunstctl close-all failed");
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
        cmd.env("XDG_CONFIG_HOME", self.config_home())
            .env("TALKBELL_DATA_DIR", self.data_dir())
            .env("TALKBELL_CONFIG_DIR", self.config_home().join("talkbell"))
            .env("RUST_LOG", "info");
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
    /// Whether the process has not ended yet.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

/// Popups with `body` in them shown so far: those still on screen are closed first, as
/// dunst's history holds only closed ones.
pub fn closed_popups_with(body: &str) -> usize {
    dunst_close_all();
    dunst_history().iter().filter(|(_, b)| b.contains(body)).count()
}
