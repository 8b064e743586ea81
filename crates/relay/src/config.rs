//! What the relay runs with: [`RelayConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use talkbell_core::protocol::HeartbeatHint;

use crate::broker::{millis, DeviceRule, QueueCaps};
use crate::proxy::TrustedProxy;
use crate::rate::RateLimit;
use crate::tls::TlsFiles;
use crate::users::Users;

/// Where the queues and routing live (`--broker`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BrokerUrl {
    /// The SQLite file [`RelayConfig::db`]: one relay.
    #[default]
    Sqlite,
    /// One Redis server, `redis://HOST:PORT[/DB]`: several relays share it.
    Redis(String),
    /// A Redis Cluster, `redis+cluster://HOST:PORT,HOST:PORT,…`: its seed nodes, each as
    /// `redis://HOST:PORT`.
    RedisCluster(Vec<String>),
}

/// Why a `--broker` was not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
    #[error("--broker must be sqlite, redis://HOST:PORT or redis+cluster://HOST:PORT,HOST:PORT,…, not {0:?}")]
    Unknown(String),
    #[error("--broker redis://… needs a host: {0:?}")]
    NoHost(String),
}

impl std::str::FromStr for BrokerUrl {
    type Err = BrokerUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "sqlite" {
            return Ok(BrokerUrl::Sqlite);
        }
        if let Some(seeds) = s.strip_prefix("redis+cluster://") {
            let seeds: Vec<String> =
                seeds.split(',').map(str::trim).filter(|h| !h.is_empty()).map(|h| format!("redis://{h}")).collect();
            if seeds.is_empty() {
                return Err(BrokerUrlError::NoHost(s.to_owned()));
            }
            return Ok(BrokerUrl::RedisCluster(seeds));
        }
        match s.strip_prefix("redis://") {
            Some("") => Err(BrokerUrlError::NoHost(s.to_owned())),
            Some(_) => Ok(BrokerUrl::Redis(s.to_owned())),
            None => Err(BrokerUrlError::Unknown(s.to_owned())),
        }
    }
}

/// Everything the relay needs to run. Build it with [`RelayConfig::new`] and change the
/// fields that matter; the defaults are those of `talkbell-relay serve`.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Where to listen; port 0 picks a free one (`Relay::local_addr` tells which).
    pub listen: SocketAddr,
    pub users: Users,
    /// The SQLite file of the durable queue (created if missing), when `broker` is SQLite.
    pub db: PathBuf,
    /// Where the queues and routing live (default: SQLite, `db`).
    pub broker: BrokerUrl,
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
    /// How long `Relay::shutdown` waits for connections to close (default 5 s).
    pub shutdown_grace: Duration,
    /// Also send every talk to every other live connection, as the original servers did
    /// (the client picks out its own by `to.id`). Those copies carry no `seq` (that is
    /// the recipient's numbering) and are not queued. Off by default.
    pub deliver_to_all: bool,
    /// Serve TLS only (WebSocket and HTTP) with this certificate and key; plain by default.
    pub tls: Option<TlsFiles>,
    /// Load balancers whose connections start with a PROXY v2 header, whose client
    /// address then stands for the peer's (logs, per-address limits); none by default.
    /// The header must come within `header_timeout`.
    pub trusted_proxies: Vec<TrustedProxy>,
}

impl RelayConfig {
    pub fn new(listen: SocketAddr, users: Users, db: impl Into<PathBuf>) -> Self {
        RelayConfig {
            listen,
            users,
            db: db.into(),
            broker: BrokerUrl::Sqlite,
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
            trusted_proxies: Vec::new(),
        }
    }

    /// The queue's caps: the recipient's, and one sender's share of it.
    pub fn queue_caps(&self) -> QueueCaps {
        let mut caps = QueueCaps::new(self.max_queued_per_recipient.max(1));
        if let Some(per_sender) = self.max_queued_per_sender {
            caps.per_sender = per_sender.max(1);
        }
        caps
    }

    /// When a device is forgotten.
    pub fn device_rule(&self) -> DeviceRule {
        DeviceRule { max: self.max_devices_per_user.max(1), expiry_ms: millis(self.device_expiry) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!("sqlite".parse(), Ok(BrokerUrl::Sqlite));
        assert_eq!("redis://127.0.0.1:6379".parse(), Ok(BrokerUrl::Redis("redis://127.0.0.1:6379".into())));
        assert_eq!(
            "redis+cluster://a:1, b:2,c:3".parse(),
            Ok(BrokerUrl::RedisCluster(vec!["redis://a:1".into(), "redis://b:2".into(), "redis://c:3".into()]))
        );
        assert!(matches!("redis://".parse::<BrokerUrl>(), Err(BrokerUrlError::NoHost(_))));
        assert!(matches!("redis+cluster://,".parse::<BrokerUrl>(), Err(BrokerUrlError::NoHost(_))));
        assert!(matches!("postgres://x".parse::<BrokerUrl>(), Err(BrokerUrlError::Unknown(_))));
    }
}
