//! `talkbell-relay serve` as a child process of a test or a benchmark, on a loopback port:
//! its standard error followed, its readiness waited for (the port takes connections, or
//! its "listening on" line), and ended by its id. Each caller finds the binary its own way
//! (`CARGO_BIN_EXE_talkbell-relay`, the target dir, a `--bin-dir`) and makes its users file.

use std::io;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

use crate::child::{Log, Spawned};
use crate::wait::Poll;

/// How to run `talkbell-relay serve --listen 127.0.0.1:PORT --users USERS --db DB ARGS`.
#[derive(Clone, Debug)]
pub struct Serve {
    pub bin: PathBuf,
    pub port: u16,
    pub users: PathBuf,
    pub db: PathBuf,
    /// More `serve` flags.
    pub args: Vec<String>,
    /// Its `RUST_LOG`.
    pub rust_log: String,
    /// A file its standard error is copied to.
    pub log_file: Option<PathBuf>,
}

impl Serve {
    /// On a free port, logging at `info`.
    pub fn new(bin: impl Into<PathBuf>, users: impl Into<PathBuf>, db: impl Into<PathBuf>) -> io::Result<Serve> {
        Ok(Serve {
            bin: bin.into(),
            port: free_port()?,
            users: users.into(),
            db: db.into(),
            args: Vec::new(),
            rust_log: "info".into(),
            log_file: None,
        })
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--users"])
            .arg(&self.users)
            .arg("--db")
            .arg(&self.db)
            .args(&self.args)
            .env("RUST_LOG", &self.rust_log);
        cmd
    }

    /// Starts the relay, its standard error added to `log`; does not wait for it.
    pub fn spawn(&self, log: &Log) -> io::Result<Spawned> {
        Spawned::spawn_logged(&mut self.command(), "relay", log.clone(), self.log_file.as_deref())
    }

    /// One look: Some(Ok) once the port takes connections, Some(Err) if the relay has exited.
    fn ready(&self, relay: &mut Spawned) -> Option<io::Result<()>> {
        if let Some(status) = relay.exited() {
            let e = io::Error::other(format!("the relay exited ({status}) at start:\n{}", relay.log.tail(20)));
            return Some(Err(e));
        }
        TcpStream::connect(("127.0.0.1", self.port)).ok().map(|_| Ok(()))
    }

    /// Waits (blocking) until `relay` takes connections on the port.
    pub fn wait_ready(&self, relay: &mut Spawned, poll: Poll) -> io::Result<()> {
        poll.check(|| self.ready(relay)).unwrap_or_else(|| Err(self.not_ready(relay, poll)))?;
        Ok(())
    }

    /// [`Serve::wait_ready`] in async code.
    pub async fn wait_ready_async(&self, relay: &mut Spawned, poll: Poll) -> io::Result<()> {
        poll.check_async(|| self.ready(relay)).await.unwrap_or_else(|| Err(self.not_ready(relay, poll)))?;
        Ok(())
    }

    fn not_ready(&self, relay: &Spawned, poll: Poll) -> io::Error {
        io::Error::other(format!(
            "the relay is not listening on port {} after {:?}:\n{}",
            self.port,
            poll.bound,
            relay.log.tail(20)
        ))
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The URL (ws://… or wss://…) of the relay's "listening on" log line.
pub fn listening_url(log: &Log) -> Option<String> {
    log.find_from(0, "listening on ")?.split("listening on ").nth(1).map(|u| u.trim().to_owned())
}
