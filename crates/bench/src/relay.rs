//! The relay as a process of its own (talkbell-testkit's, so that its memory can be
//! measured and it can be killed, frozen and restarted), with a users file made through
//! the relay's library (ten thousand users in a moment).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use talkbell_relay::Users;
use talkbell_testkit::child::{Log, Spawned};
use talkbell_testkit::relay::Serve;
use talkbell_testkit::wait::Poll;

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

/// A users file and the token of each user, by id.
#[derive(Clone)]
pub struct UsersFile {
    pub path: PathBuf,
    tokens: Arc<HashMap<u64, String>>,
}

impl UsersFile {
    /// Users 1..=`users` in `dir/users.toml` (`dir` made if missing).
    pub fn make(dir: &Path, users: u64) -> Result<UsersFile> {
        std::fs::create_dir_all(dir)?;
        let mut table = Users::new();
        let tokens = (1..=users).map(|id| (id, table.add(id, user_name(id)))).collect();
        let path = dir.join("users.toml");
        table.save(&path).context("writing the users file")?;
        Ok(UsersFile { path, tokens: Arc::new(tokens) })
    }

    pub fn token(&self, id: u64) -> &str {
        self.tokens.get(&id).map_or("", String::as_str)
    }
}

pub struct RelayProc {
    serve: Serve,
    users: UsersFile,
    pub proc: Option<Spawned>,
    /// How long the last start took, from the spawn to the "listening" line.
    pub start_took: Duration,
}

/// Users 1..=n named `user<id>`, except 1 "wang1" and 2 "wang2" as in the demo.
fn user_name(id: u64) -> String {
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
        let users = UsersFile::make(&env.work.join(name), users)?;
        Self::start_with(env, name, &users, &env.relay_db_dir, extra_args).await
    }

    /// Starts the relay on `users` (a file several relays may share), on a free port, with
    /// its queue database in a new directory under `db_parent`.
    pub async fn start_with(
        env: &Env,
        name: &str,
        users: &UsersFile,
        db_parent: &Path,
        extra_args: &[String],
    ) -> Result<RelayProc> {
        let dir = env.work.join(name);
        let db_dir = db_parent.join(format!("talkbell-bench-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(&db_dir)?;
        let mut serve = Serve::new(env.bin("talkbell-relay"), &users.path, db_dir.join("relay.db"))?;
        serve.args = extra_args.to_vec();
        serve.rust_log = RELAY_LOG.into();
        serve.log_file = Some(dir.join("relay.log"));
        let mut relay = RelayProc { serve, users: users.clone(), proc: None, start_took: Duration::ZERO };
        relay.spawn().await?;
        Ok(relay)
    }

    pub fn token(&self, id: u64) -> &str {
        self.users.token(id)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.serve.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.serve.port))
    }

    pub fn pids(&self) -> Vec<u32> {
        self.proc.iter().map(|p| p.pid).collect()
    }

    /// Starts the relay process; returns the time stamp of its "listening" log line, once
    /// the port takes connections.
    pub async fn spawn(&mut self) -> Result<SystemTime> {
        anyhow::ensure!(self.proc.is_none(), "the relay is already running");
        let mut p = self.serve.spawn(&Log::default())?;
        self.serve
            .wait_ready_async(&mut p, Poll::up_to(Duration::from_secs(60)).every(Duration::from_millis(2)))
            .await?;
        let listening = || p.log.times_from(0, "talkbell-relay listening").first().copied();
        let listening =
            Poll::up_to(Duration::from_secs(10)).every(Duration::from_millis(5)).check_async(listening).await;
        let listening =
            listening.with_context(|| format!("no \"listening\" line; the log ends:\n{}", p.log.tail(15)))?;
        self.start_took = listening.duration_since(p.spawned_at).unwrap_or_default();
        self.proc = Some(p);
        Ok(listening)
    }

    /// SIGKILL: no close frames, no goodbyes.
    pub fn kill(&mut self) {
        self.proc = None;
    }

    pub fn signal(&self, sig: libc::c_int) -> Result<()> {
        Ok(self.proc.as_ref().context("the relay is not running")?.signal(sig)?)
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = self.serve.db.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
