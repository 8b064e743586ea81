//! The relay binary as a child process: its standard error collected line by line, its
//! URL taken from the "listening on" line, signals sent by pid.

use std::ffi::OsStr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::eventually;

pub const BIN: &str = env!("CARGO_BIN_EXE_talkbell-relay");

pub struct Served {
    pub child: Child,
    /// ws://… or wss://…, from the relay's "listening on" line.
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    /// Runs `talkbell-relay serve ARGS` (RUST_LOG=info) and waits until it listens.
    pub async fn start<I, S>(args: I) -> Served
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::start_logged(args, "info").await
    }

    /// Like [`Served::start`], with `RUST_LOG` set to `rust_log`.
    pub async fn start_logged<I, S>(args: I, rust_log: &str) -> Served
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").args(args);
        Self::launch(cmd, rust_log).await
    }

    /// Runs `sh -c SCRIPT talkbell-relay serve ARGS`: the script ends with `exec "$0"
    /// "$@"` to become the relay (after a `ulimit`, say).
    pub async fn start_in_shell<I, S>(script: &str, args: I) -> Served
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).arg(BIN).arg("serve").args(args);
        Self::launch(cmd, "info").await
    }

    async fn launch(mut cmd: Command, rust_log: &str) -> Served {
        let mut child = cmd
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let mut served = Served { child, url: String::new(), log };
        served.url = eventually("the relay to say where it listens", || {
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("serve exited with {status}:\n{}", served.log());
            }
            served.lines().iter().find_map(|l| l.split("listening on ").nth(1).map(|u| u.trim().to_owned()))
        })
        .await;
        served
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn log(&self) -> String {
        self.lines().join("\n")
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until `needle` has appeared in the log at least `times` times.
    pub async fn wait_log(&self, needle: &str, times: usize) {
        eventually(&format!("{needle:?} in the log"), || (self.count(needle) >= times).then_some(())).await;
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the relay is running")
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("the relay is running");
        let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    }

    /// SIGHUP, then waits for the relay to have handled it (`times`: the how-many-th).
    pub async fn reload(&self, times: usize) {
        self.signal("-HUP");
        self.wait_log("reload done", times).await;
    }

    /// SIGTERM and a clean exit.
    pub async fn stop(mut self) -> String {
        self.signal("-TERM");
        let status = tokio::time::timeout(super::WAIT, self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "exit status {status}:\n{}", self.log());
        self.log()
    }
}
