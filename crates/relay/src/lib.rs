//! talkbell-relay: the reference talk server (DESIGN.md, PROTOCOL.md).
//!
//! - A WebSocket on `/` (and on any other path, for old clients): hello → welcome or a
//!   rejection with close code 4001, `online` answered with `online`, talks routed to every
//!   live connection of their recipient with a per-recipient `seq` and a `ts`, acks.
//! - `POST /v1/talk` with `Authorization: Bearer <token>` and `{"to": ID, "talk": TEXT}`.
//! - A durable queue in SQLite ([`store`]), replayed on a hello with `resume`; a full
//!   queue refuses new talks (HTTP 507, `queue_full`) and never evicts one; its epoch,
//!   `last_seq` and features are in the welcome.
//! - Bounds on hostile peers: header and body timeouts, connection caps in all and per
//!   user, failed logins and frames before the hello limited per peer address, and what
//!   a peer sends escaped in the logs ([`untrusted`]).
//! - Optionally TLS on the same listener for both ([`RelayConfig::tls`]), the certificate
//!   swapped by [`Relay::reload_tls`]; the users table swapped by [`Relay::set_users`].
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
pub mod cli;
mod client;
mod http;
mod hub;
pub mod rate;
mod serve;
pub mod store;
mod tls;
mod untrusted;
pub mod users;
mod ws;

pub use atomic::ReplaceError;
pub use tls::{TlsError, TlsFiles};

pub use client::{post_talk, Posted, SendError};
pub use rate::RateLimit;
pub use untrusted::{untrusted, Untrusted};
pub use users::{IntoUserId, User, Users, UsersError};

use hub::{Shared, Tracker};
use store::{Store, StoreError};
use tls::Tls;

/// Everything the relay needs to run. Build it with [`RelayConfig::new`] and change the
/// fields that matter; the defaults are those of `talkbell-relay serve`.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Where to listen; port 0 picks a free one ([`Relay::local_addr`] tells which).
    pub listen: SocketAddr,
    pub users: Users,
    /// The SQLite file of the durable queue (created if missing).
    pub db: PathBuf,
    /// A connection with no frame from the client for this long is closed (default 60 s).
    pub idle_timeout: Duration,
    /// A connection that has not sent its hello this long after opening is closed
    /// (default 10 s).
    pub hello_timeout: Duration,
    /// Heartbeat timing sent in the welcome; none by default.
    pub heartbeat_hint: Option<HeartbeatHint>,
    /// Talks older than this are deleted even if not acked (default 30 days).
    pub retention: Duration,
    /// At most this many talks are queued per recipient; past it new talks are refused
    /// (HTTP 507, `queue_full`) and none is evicted (default 10,000).
    pub max_queued_per_recipient: usize,
    /// At most this many of a recipient's queued talks may come from one sender; `None`
    /// is a tenth of `max_queued_per_recipient` (the default).
    pub max_queued_per_sender: Option<usize>,
    /// Devices (cursors) kept per user; past it the least recently seen is forgotten
    /// (default 16).
    pub max_devices_per_user: usize,
    /// A device not seen for this long is forgotten (default 7 days).
    pub device_expiry: Duration,
    /// Open connections in all (HTTP and WebSocket); past it new ones are closed at once
    /// (default 10,000).
    pub max_connections: usize,
    /// Open WebSocket connections per user; the next one is refused with close 1013
    /// (default 32).
    pub max_connections_per_user: usize,
    /// An HTTP request's headers must arrive within this long of the connection being
    /// ready for them (default 10 s).
    pub header_timeout: Duration,
    /// A `POST /v1/talk` body must arrive within this long (default 10 s).
    pub body_timeout: Duration,
    /// Frames before the hello, per peer address (default 5/s, burst 20); past it the
    /// connection is closed with 1008.
    pub pre_hello_rate: RateLimit,
    /// Failed logins (unknown token, in a hello or a POST) per peer address (default
    /// 1/s, burst 10); past it logins from that address are refused without a look at
    /// the token (close 1013, HTTP 429).
    pub failed_login_rate: RateLimit,
    /// Frames a connection may send (default 50/s, burst 100).
    pub ws_rate: RateLimit,
    /// `POST /v1/talk` per token (default 20/s, burst 100).
    pub http_rate: RateLimit,
    /// Largest `POST /v1/talk` body (default 256 KiB; the talk frame itself must also fit
    /// in 64 KiB).
    pub http_body_limit: usize,
    /// Talks waiting to be written to one slow connection before it is dropped (it gets
    /// them again on resume); default 1024.
    pub connection_queue: usize,
    /// How long [`Relay::shutdown`] waits for connections to close (default 5 s).
    pub shutdown_grace: Duration,
    /// Also send every talk to every other live connection, as the original servers did
    /// (the client picks out its own by `to.id`). Those copies carry no `seq` (that is
    /// the recipient's numbering) and are not queued. Off by default.
    pub deliver_to_all: bool,
    /// Serve TLS only (WebSocket and HTTP) with this certificate and key; plain by default.
    pub tls: Option<TlsFiles>,
}

impl RelayConfig {
    pub fn new(listen: SocketAddr, users: Users, db: impl Into<PathBuf>) -> Self {
        RelayConfig {
            listen,
            users,
            db: db.into(),
            idle_timeout: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(10),
            heartbeat_hint: None,
            retention: Duration::from_secs(30 * 24 * 3600),
            max_queued_per_recipient: 10_000,
            max_queued_per_sender: None,
            max_devices_per_user: 16,
            device_expiry: Duration::from_secs(7 * 24 * 3600),
            max_connections: 10_000,
            max_connections_per_user: 32,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            pre_hello_rate: RateLimit::new(5.0, 20),
            failed_login_rate: RateLimit::new(1.0, 10),
            ws_rate: RateLimit::new(50.0, 100),
            http_rate: RateLimit::new(20.0, 100),
            http_body_limit: 256 * 1024,
            connection_queue: 1024,
            shutdown_grace: Duration::from_secs(5),
            deliver_to_all: false,
            tls: None,
        }
    }

    /// The queue's caps: the recipient's, and one sender's share of it.
    pub fn queue_caps(&self) -> store::QueueCaps {
        let mut caps = store::QueueCaps::new(self.max_queued_per_recipient.max(1));
        if let Some(per_sender) = self.max_queued_per_sender {
            caps.per_sender = per_sender.max(1);
        }
        caps
    }

    /// When a device is forgotten.
    pub fn device_rule(&self) -> store::DeviceRule {
        store::DeviceRule { max: self.max_devices_per_user.max(1), expiry_ms: millis(self.device_expiry) }
    }
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot open the queue database {path}: {source}")]
    Db { path: PathBuf, source: StoreError },
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
    maintenance: Option<JoinHandle<()>>,
    tracker: Arc<Tracker>,
    grace: Duration,
    shared: Arc<Shared>,
    tls: Option<Arc<Tls>>,
}

/// Starts the relay: opens the database, reads the TLS files, binds, and serves in the
/// background.
pub async fn start(mut cfg: RelayConfig) -> Result<Relay, RelayError> {
    let db = cfg.db.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&db))
        .await
        .map_err(|e| RelayError::Db { path: cfg.db.clone(), source: StoreError::Task(e.to_string()) })?
        .map_err(|source| RelayError::Db { path: cfg.db.clone(), source })?;
    let tls = cfg.tls.clone().map(Tls::new).transpose()?.map(Arc::new);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| RelayError::Bind { addr: cfg.listen, source })?;
    let local_addr = listener.local_addr()?;

    let grace = cfg.shutdown_grace;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let tracker = Arc::new(Tracker::default());
    let users = std::mem::take(&mut cfg.users);
    let shared = Arc::new(Shared::new(cfg, store, users, shutdown_rx.clone(), tracker.clone()));
    tracing::info!(
        addr = %local_addr,
        tls = tls.is_some(),
        users = shared.users.load().len(),
        db = %shared.cfg.db.display(),
        epoch = shared.store.epoch(),
        "talkbell-relay listening"
    );

    let serve = tokio::spawn(serve::serve(listener, tls.clone(), shared.clone(), shutdown_rx));
    let maintenance = tokio::spawn(hub::maintenance(shared.clone()));

    Ok(Relay {
        local_addr,
        shutdown_tx,
        serve: Some(serve),
        maintenance: Some(maintenance),
        tracker,
        grace,
        shared,
        tls,
    })
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
        self.shared.users.load_full()
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

    /// The epoch of the queue database (PROTOCOL.md 3).
    pub fn epoch(&self) -> &str {
        self.shared.store.epoch()
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
        if let Some(m) = self.maintenance.take() {
            m.abort();
            let _ = m.await;
        }
        tracing::info!("talkbell-relay stopped");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(m) = &self.maintenance {
            m.abort();
        }
    }
}
