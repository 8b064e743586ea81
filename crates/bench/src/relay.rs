//! The relay as a process of its own (so that its memory can be measured and it can be
//! killed, frozen and restarted), with a users file made through the relay's library.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use talkbell_relay::Users;

use crate::child::Spawned;
use crate::Env;

/// Log level of the relay: its start line (with a time stamp, for the recovery benchmark),
/// warnings and errors. At `info` it writes a line per talk posted and per connection,
/// which would be measured as the relay's cost.
const RELAY_LOG: &str = "warn,talkbell_relay=info,talkbell_relay::http=warn,talkbell_relay::ws=warn";

/// The `serve` flags of a relay that takes a flood: its HTTP rate limit off, and room for
/// `max_queued` talks per recipient, all of them from one sender if need be (the relay's
/// default gives one sender a tenth of a recipient's queue). The reports quote them.
pub fn flood_flags(max_queued: u64) -> Vec<String> {
    let q = max_queued.to_string();
    ["--http-rate", "1000000000", "--http-burst", "1000000000", "--max-queued", &q, "--max-queued-per-sender", &q]
        .map(str::to_owned)
        .to_vec()
}

pub struct RelayProc {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    users_file: PathBuf,
    pub db: PathBuf,
    args: Vec<String>,
    /// Token of each user, by id.
    tokens: HashMap<u64, String>,
    pub proc: Option<Spawned>,
    name: String,
    /// How long the last start took, from the spawn to the "listening" line.
    pub start_took: Duration,
}

/// Users 1..=n named `user<id>`, except 1 "wang1" and 2 "wang2" as in the demo.
pub fn user_name(id: u64) -> String {
    match id {
        1 => "wang1".into(),
        2 => "wang2".into(),
        _ => format!("user{id}"),
    }
}

impl RelayProc {
    /// Makes a users file with users 1..=`users` in a new directory, and starts the relay
    /// on a free port with its queue database under `env.relay_db_dir`.
    pub async fn start(env: &Env, name: &str, users: u64, extra_args: &[String]) -> Result<RelayProc> {
        let dir = env.work.join(name);
        std::fs::create_dir_all(&dir)?;
        let db_dir = env.relay_db_dir.join(format!("talkbell-bench-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&db_dir)?;
        let users_file = dir.join("users.toml");
        let made = Instant::now();
        let mut table = Users::new();
        let mut tokens = HashMap::new();
        for id in 1..=users {
            tokens.insert(id, table.add(id, user_name(id)));
        }
        table.save(&users_file).context("writing the users file")?;
        tracing::debug!(
            users,
            took_ms = u64::try_from(made.elapsed().as_millis()).unwrap_or(u64::MAX),
            "users file made"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut relay = RelayProc {
            bin: env.bin("talkbell-relay"),
            dir,
            port,
            users_file,
            db: db_dir.join("relay.db"),
            args: extra_args.to_vec(),
            tokens,
            proc: None,
            name: name.to_owned(),
            start_took: Duration::ZERO,
        };
        relay.spawn().await?;
        Ok(relay)
    }

    pub fn token(&self, id: u64) -> &str {
        &self.tokens[&id]
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid)
    }

    /// Starts the relay process; returns the time stamp of its "listening" log line, once
    /// the port takes connections.
    pub async fn spawn(&mut self) -> Result<SystemTime> {
        if self.proc.is_some() {
            bail!("the relay is already running");
        }
        let mut cmd = Command::new(&self.bin);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{}", self.port), "--users"])
            .arg(&self.users_file)
            .arg("--db")
            .arg(&self.db)
            .args(&self.args)
            .env("RUST_LOG", RELAY_LOG);
        let p = Spawned::spawn(&mut cmd, "talkbell-relay", Some(&self.dir.join("relay.log")))?;
        let log = p.log.clone();
        let from = 0;
        self.proc = Some(p);
        let started = Instant::now();
        loop {
            if std::net::TcpStream::connect(self.addr()).is_ok() {
                break;
            }
            if !self.proc.as_mut().is_some_and(Spawned::is_running) {
                bail!("the relay {} exited at start:\n{}", self.name, log.tail(20));
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the relay {} is not listening after 60 s:\n{}", self.name, log.tail(20));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let listening = log.wait_for(from, "talkbell-relay listening", Duration::from_secs(10)).await?;
        self.start_took =
            listening.duration_since(self.proc.as_ref().map_or(listening, |p| p.spawned_at)).unwrap_or_default();
        Ok(listening)
    }

    /// SIGKILL: no close frames, no goodbyes.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn freeze(&self) -> Result<()> {
        self.proc.as_ref().context("the relay is not running")?.signal(libc::SIGSTOP)
    }

    pub fn thaw(&self) -> Result<()> {
        self.proc.as_ref().context("the relay is not running")?.signal(libc::SIGCONT)
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        if let Some(p) = &self.proc {
            // A frozen relay would not die of SIGTERM; SIGKILL works either way.
            let _ = p.signal(libc::SIGCONT);
        }
        self.kill();
        if let Some(dir) = self.db.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
