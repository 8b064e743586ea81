//! The relay binary as a child process (talkbell-testkit's): its standard error collected
//! line by line, its URL taken from the "listening on" line, signals sent by pid.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

use talkbell_testkit::child::Spawned;
use talkbell_testkit::relay::listening_url;

use super::eventually;

pub const BIN: &str = env!("CARGO_BIN_EXE_talkbell-relay");

pub struct Served {
    pub child: Spawned,
    /// ws://… or wss://…, from the relay's "listening on" line.
    pub url: String,
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
        let mut child = Spawned::spawn(cmd.env("RUST_LOG", rust_log), "relay", None).unwrap();
        let url = eventually("the relay to say where it listens", || {
            if let Some(status) = child.exited() {
                panic!("serve exited with {status}:\n{}", child.log.text());
            }
            listening_url(&child.log)
        })
        .await;
        Served { child, url }
    }

    pub fn lines(&self) -> Vec<String> {
        self.child.log.lines()
    }

    pub fn log(&self) -> String {
        self.child.log.text()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.child.log.count(needle)
    }

    /// Waits until `needle` has appeared in the log at least `times` times.
    pub async fn wait_log(&self, needle: &str, times: usize) {
        eventually(&format!("{needle:?} in the log"), || (self.count(needle) >= times).then_some(())).await;
    }

    pub fn pid(&self) -> u32 {
        self.child.pid
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.pid();
        let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    }

    /// SIGHUP, then waits for the relay to have handled it (`times`: the how-many-th).
    pub async fn reload(&self, times: usize) {
        self.signal("-HUP");
        self.wait_log("reload done", times).await;
    }

    /// SIGTERM and a clean exit.
    pub async fn stop(mut self) -> String {
        let ended = self.child.terminate(super::WAIT);
        let status = ended.status.unwrap_or_else(|| panic!("no exit within {:?}:\n{}", super::WAIT, self.log()));
        assert!(status.success(), "exit status {status}:\n{}", self.log());
        self.log()
    }
}

/// Runs a users-file subcommand of the binary (`["remove-user", "--id", "2"]`) on the
/// file `users`, as an operator would, and returns what it printed (a new token, or "").
pub async fn users_cmd(args: &[&str], users: &Path) -> String {
    let out = tokio::process::Command::new(BIN)
        .args(&args[..1])
        .arg("--users")
        .arg(users)
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
