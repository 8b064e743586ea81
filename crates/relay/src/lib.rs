//! talkbell-relay: the reference talk server (DESIGN.md, PROTOCOL.md).
//!
//! - A WebSocket on `/` (and on any other path, for old clients): hello → welcome or a
//!   rejection with close code 4001, `online` answered with `online`, talks routed to every
//!   live connection of their recipient with a per-recipient `seq` and a `ts`, acks.
//! - `POST /v1/talk` with `Authorization: Bearer <token>` and `{"to": ID, "talk": TEXT}`.
//! - A durable queue behind one trait ([`broker::Broker`]): SQLite ([`broker::sqlite`],
//!   the default, one process) or Redis ([`broker::redis`], several nodes, one server or
//!   a cluster; [`RelayConfig::broker`]), replayed on a hello with `resume`; a full queue
//!   refuses new talks (HTTP 507, `queue_full`) and never evicts one; its epoch,
//!   `last_seq` and features are in the welcome.
//! - `send` frames (PROTOCOL.md 1.4): one talk per (sender, id), answered `sent` once
//!   stored.
//! - Bounds on hostile peers: header and body timeouts, connection caps in all and per
//!   user, failed logins and frames before the hello limited per peer address, and what
//!   a peer sends escaped in the logs ([`untrusted`]). Behind a load balancer the peer
//!   address is the client's, from the PROXY v2 header of a trusted proxy
//!   ([`RelayConfig::trusted_proxies`]).
//! - Optionally TLS on the same listener for both ([`RelayConfig::tls`]), the certificate
//!   swapped by [`Relay::reload_tls`]; the users table swapped by [`Relay::set_users`].
//! - The `talkbell-relay` command line ([`cli`]): serve, manage the users file, send.
//!
//! Inside, dependencies go one way: the listener (`serve.rs`) → HTTP (`http.rs`) →
//! WebSocket (`ws.rs`) → routing (`hub.rs`) → the broker; the hub's locking rule is
//! written at its top.
//!
//! Other crates' tests start it in-process:
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use talkbell_relay::{RelayConfig, Users};
//! let mut users = Users::new();
//! let token = users.add(1, "wang1");
//! let dir = tempfile::tempdir()?;
//! let relay = talkbell_relay::start(RelayConfig::new(
//!     "127.0.0.1:0".parse()?,
//!     users,
//!     dir.path().join("relay.db"),
//! ))
//! .await?;
//! let posted = talkbell_relay::post_talk(&relay.http_url(), &token, 1, "hello").await?;
//! assert_eq!(posted.seq, 1);
//! relay.shutdown().await;
//! # Ok(()) }
//! ```

// The lints of a network service: no unwrap/expect outside tests, no cast that can
// truncate a number or change its sign (a seq, a size). Tests are other crates, or cfg(test).
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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use talkbell_core::protocol::{HeartbeatHint, UserId};

mod atomic;
pub mod broker;
pub mod cli;
mod client;
mod config;
mod gate;
mod http;
mod hub;
mod proxy;
pub mod rate;
mod serve;
mod tls;
pub mod users;
mod ws;

pub use atomic::ReplaceError;
pub use tls::{TlsError, TlsFiles};

pub use client::{post_talk, Posted, SendError};
pub use config::{BrokerUrl, BrokerUrlError, RelayConfig};
pub use proxy::{TrustedProxy, TrustedProxyError};
pub use rate::RateLimit;
/// Text from a peer, made fit for a log line: core's one mapping (a hello's uuid and client
/// name, a user id from a request, a path, a parse error quoting the frame).
pub use talkbell_core::untrusted::{untrusted, Untrusted};
pub use users::{IntoUserId, User, Users, UsersError};

use broker::redis::{RedisBroker, RedisBrokerError};
use broker::sqlite::{Store, StoreError};
use broker::Broker;
use hub::{Shared, Tracker};
use tls::Tls;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot open the queue database {path}: {source}")]
    Db { path: PathBuf, source: StoreError },
    #[error("{0}")]
    Redis(#[from] RedisBrokerError),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running relay. Dropping it stops it too, without waiting.
pub struct Relay {
    local_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    serve: Option<JoinHandle<()>>,
    /// The maintenance pass and the wake-ups from other nodes: stopped, not awaited.
    background: Vec<JoinHandle<()>>,
    tracker: Arc<Tracker>,
    grace: Duration,
    shared: Arc<Shared>,
    tls: Option<Arc<Tls>>,
    /// The SQLite queue's epoch; empty with Redis, whose epochs are per recipient.
    epoch: String,
}

/// Opens the broker the config names: the SQLite file, or a connection to Redis.
/// Returns it with the SQLite epoch (empty for Redis).
async fn open_broker(cfg: &RelayConfig) -> Result<(Box<dyn Broker>, String), RelayError> {
    match &cfg.broker {
        BrokerUrl::Sqlite => {
            let db = cfg.db.clone();
            let store = tokio::task::spawn_blocking(move || Store::open(&db))
                .await
                .map_err(|e| RelayError::Db { path: cfg.db.clone(), source: StoreError::Task(e.to_string()) })?
                .map_err(|source| RelayError::Db { path: cfg.db.clone(), source })?
                .with_limits(cfg.queue_caps(), cfg.device_rule());
            let epoch = store.epoch().to_owned();
            Ok((Box::new(store), epoch))
        }
        BrokerUrl::Redis(url) => {
            let broker = RedisBroker::connect(url, cfg.queue_caps(), cfg.device_rule()).await?;
            Ok((Box::new(broker), String::new()))
        }
        BrokerUrl::RedisCluster(seeds) => {
            let broker = RedisBroker::connect_cluster(seeds, cfg.queue_caps(), cfg.device_rule()).await?;
            Ok((Box::new(broker), String::new()))
        }
    }
}

/// Starts the relay: opens the broker (the SQLite file, or Redis), reads the TLS files,
/// binds, and serves in the background.
pub async fn start(mut cfg: RelayConfig) -> Result<Relay, RelayError> {
    let (broker, epoch) = open_broker(&cfg).await?;
    let tls = cfg.tls.clone().map(Tls::new).transpose()?.map(Arc::new);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| RelayError::Bind { addr: cfg.listen, source })?;
    let local_addr = listener.local_addr()?;

    let grace = cfg.shutdown_grace;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let tracker = Arc::new(Tracker::default());
    let users = std::mem::take(&mut cfg.users);
    let shared = Arc::new(Shared::new(cfg, broker, users, shutdown_rx, tracker.clone()));
    tracing::info!(
        addr = %local_addr,
        tls = tls.is_some(),
        users = shared.users().len(),
        db = %shared.config().db.display(),
        broker = %shared.broker_name(),
        "talkbell-relay listening"
    );

    let serve = tokio::spawn(serve::serve(listener, tls.clone(), shared.clone()));
    let background = vec![tokio::spawn(hub::maintenance(shared.clone())), tokio::spawn(hub::wakeups(shared.clone()))];

    Ok(Relay { local_addr, shutdown_tx, serve: Some(serve), background, tracker, grace, shared, tls, epoch })
}

fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

impl Relay {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the listener serves TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `ws://127.0.0.1:PORT/`, or `wss://127.0.0.1:PORT/` with TLS (an unspecified listen
    /// address becomes the loopback one).
    pub fn ws_url(&self) -> String {
        let scheme = if self.is_tls() { "wss" } else { "ws" };
        format!("{scheme}://{}/", reachable(self.local_addr))
    }

    /// `http://127.0.0.1:PORT`, or `https://…` with TLS (no trailing slash).
    pub fn http_url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", reachable(self.local_addr))
    }

    /// Puts a new users table in force: later hellos and POSTs use it at once, and the
    /// open connections of users it no longer has (or whose token it changed) are closed
    /// with 4001. Returns how many were closed.
    pub async fn set_users(&self, users: Users) -> usize {
        self.shared.set_users(users).await
    }

    /// The users table in force.
    pub fn users(&self) -> Arc<Users> {
        self.shared.users()
    }

    /// Reads the TLS certificate and key again and uses them for new connections; open
    /// ones keep theirs. On an error the old ones stay. Does nothing without TLS.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// The TLS files, when TLS is on.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref().map(|t| t.files())
    }

    /// How many WebSocket connections are open (tests).
    pub fn connections(&self) -> usize {
        self.tracker.count()
    }

    /// The epoch of the SQLite queue database (PROTOCOL.md 3); empty with Redis, whose
    /// epochs are per recipient.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Stops accepting, closes every connection with 1001 and waits for them (at most
    /// the configured grace, 5 s by default).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        let grace = self.grace;
        if let Some(serve) = self.serve.take() {
            if tokio::time::timeout(grace, serve).await.is_err() {
                tracing::warn!("HTTP requests still running at shutdown");
            }
        }
        if tokio::time::timeout(grace, self.tracker.wait_idle()).await.is_err() {
            tracing::warn!(open = self.tracker.count(), "connections still open at shutdown");
        }
        for task in std::mem::take(&mut self.background) {
            task.abort();
            let _ = task.await;
        }
        tracing::info!("talkbell-relay stopped");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        for task in &self.background {
            task.abort();
        }
    }
}
