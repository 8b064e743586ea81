//! The settings of `serve`: each one from its command-line flag, else from the config
//! file (`--config FILE`, TOML, keys named like the long flags in snake_case), else its
//! default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{HeartbeatHint, RateLimit, RelayConfig, TlsFiles, Users};
use serde::Deserialize;

/// The flags of `serve`, and the keys of its config file. Every one is optional here; the
/// defaults apply after the flags and the file are merged.
#[derive(clap::Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// A TOML file with any of the options below (snake_case keys: listen, users, db,
    /// tls_cert, …); a flag given here overrides the file.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The users file (TOML; see add-user). Required, here or in the config file.
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// The queue database (SQLite) [default: talkbell-relay.db beside the users file].
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Where the queues and routing live: `sqlite` (the --db file, one relay),
    /// `redis://HOST:PORT` (several relays on one Redis) or
    /// `redis+cluster://HOST:PORT,HOST:PORT,…` (a Redis Cluster's seed nodes) [default: sqlite].
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// Close a connection that sent nothing for this many seconds [default: 60].
    #[arg(long)]
    pub idle_timeout: Option<u64>,
    /// Close a connection that has not sent its hello this many seconds after opening
    /// [default: 10].
    #[arg(long)]
    pub hello_timeout: Option<u64>,
    /// Heartbeat interval to suggest to clients in the welcome, in ms [default: none].
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    /// Heartbeat timeout to suggest to clients in the welcome, in ms [default: none].
    #[arg(long)]
    pub heartbeat_timeout_ms: Option<u64>,
    /// Delete talks older than this many days, acked or not [default: 30].
    #[arg(long)]
    pub retention_days: Option<u64>,
    /// Queue at most this many undelivered talks per recipient; past it new talks are
    /// refused (HTTP 507, queue_full), none is evicted [default: 10000].
    #[arg(long)]
    pub max_queued: Option<usize>,
    /// Of a recipient's queue, at most this many talks from one sender [default: a
    /// tenth of --max-queued].
    #[arg(long)]
    pub max_queued_per_sender: Option<usize>,
    /// Devices (cursors) kept per user; past it the least recently seen one is forgotten
    /// [default: 16].
    #[arg(long)]
    pub max_devices_per_user: Option<usize>,
    /// Forget a device not seen for this many days [default: 7].
    #[arg(long)]
    pub device_expiry_days: Option<u64>,
    /// Open connections in all; past it new ones are closed at once [default: 10000].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Open WebSocket connections per user; the next is refused (close 1013)
    /// [default: 32].
    #[arg(long)]
    pub max_connections_per_user: Option<usize>,
    /// Close an HTTP connection whose request headers take longer than this many
    /// seconds [default: 10].
    #[arg(long)]
    pub header_timeout: Option<u64>,
    /// Answer 408 to a POST /v1/talk whose body takes longer than this many seconds
    /// [default: 10].
    #[arg(long)]
    pub body_timeout: Option<u64>,
    /// Frames per second one connection may send, on average [default: 50].
    #[arg(long)]
    pub ws_rate: Option<f64>,
    /// Frames one connection may send at once [default: 100].
    #[arg(long)]
    pub ws_burst: Option<u32>,
    /// POST /v1/talk per second per token, on average [default: 20].
    #[arg(long)]
    pub http_rate: Option<f64>,
    /// POST /v1/talk at once per token [default: 100].
    #[arg(long)]
    pub http_burst: Option<u32>,
    /// Failed logins per second per peer address, on average; past it logins from that
    /// address are refused unread [default: 1].
    #[arg(long)]
    pub failed_login_rate: Option<f64>,
    /// Failed logins at once per peer address [default: 10].
    #[arg(long)]
    pub failed_login_burst: Option<u32>,
    /// Frames before the hello per second per peer address, on average; past it the
    /// connection is closed [default: 5].
    #[arg(long)]
    pub pre_hello_rate: Option<f64>,
    /// Frames before the hello at once per peer address [default: 20].
    #[arg(long)]
    pub pre_hello_burst: Option<u32>,
    /// Also send every talk, without its seq, to everyone else connected, as the
    /// original servers did (clients pick out their own). `--deliver-to-all=false` turns
    /// off what the config file turned on [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub deliver_to_all: Option<bool>,
    /// The TLS certificate chain (PEM): the listener then serves TLS only, WebSocket
    /// and HTTP. Needs --tls-key. Read again on SIGHUP.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// A load balancer's address or network (`10.0.0.5`, `10.0.0.0/24`; repeatable):
    /// its connections must start with a PROXY v2 header (HAProxy's send-proxy-v2), whose
    /// client address the logs and per-address limits then use. The header must come
    /// within --header-timeout; from other peers a PROXY header is not honoured. In the
    /// config file, a list [default: none].
    #[arg(long, value_name = "ADDR_OR_CIDR")]
    pub trusted_proxy: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    TrustedProxy(#[from] crate::TrustedProxyError),
    #[error("cannot read the config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the config file {path} is not valid: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("no users file: give --users FILE, or `users = \"FILE\"` in the config file")]
    NoUsers,
    #[error("TLS needs both a certificate and a key: {missing} is not set")]
    HalfTls { missing: &'static str },
    #[error("ws_rate, http_rate, failed_login_rate and pre_hello_rate must be above 0")]
    BadRate,
    #[error("{0}")]
    Broker(#[from] crate::BrokerUrlError),
}

/// What `serve` runs with, once flags, file and defaults are merged.
#[derive(Debug)]
pub struct Settings {
    pub users: PathBuf,
    pub relay: RelayConfig,
}

/// A path from the config file: a relative one is taken from the file's directory.
fn beside(config: &Path, path: PathBuf) -> PathBuf {
    match config.parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    }
}

/// Reads a config file; its relative paths are made relative to its directory.
pub fn read_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let mut file: ServeArgs =
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })?;
    file.users = file.users.map(|p| beside(path, p));
    file.db = file.db.map(|p| beside(path, p));
    file.tls_cert = file.tls_cert.map(|p| beside(path, p));
    file.tls_key = file.tls_key.map(|p| beside(path, p));
    Ok(file)
}

/// The flags over the file: each field from `cli` when given there.
fn merge(cli: ServeArgs, file: ServeArgs) -> ServeArgs {
    macro_rules! pick {
        ($($f:ident),*) => { ServeArgs { config: cli.config, $($f: cli.$f.or(file.$f)),* } };
    }
    pick!(
        listen,
        users,
        db,
        broker,
        idle_timeout,
        hello_timeout,
        heartbeat_interval_ms,
        heartbeat_timeout_ms,
        retention_days,
        max_queued,
        max_queued_per_sender,
        max_devices_per_user,
        device_expiry_days,
        max_connections,
        max_connections_per_user,
        header_timeout,
        body_timeout,
        ws_rate,
        ws_burst,
        http_rate,
        http_burst,
        failed_login_rate,
        failed_login_burst,
        pre_hello_rate,
        pre_hello_burst,
        deliver_to_all,
        tls_cert,
        tls_key,
        trusted_proxy
    )
}

fn default_db(users: &Path) -> PathBuf {
    match users.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("talkbell-relay.db"),
        _ => PathBuf::from("talkbell-relay.db"),
    }
}

fn tls_files(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<TlsFiles>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::HalfTls { missing: "tls_key (--tls-key)" }),
        (None, Some(_)) => Err(ConfigError::HalfTls { missing: "tls_cert (--tls-cert)" }),
    }
}

/// `n` days (at least one).
fn days(n: u64) -> Duration {
    Duration::from_secs(n.clamp(1, 365_000) * 24 * 3600)
}

/// A rate limit from its flags or defaults; the rate must be above 0.
fn rate(
    per_second: Option<f64>,
    default: f64,
    burst: Option<u32>,
    default_burst: u32,
) -> Result<RateLimit, ConfigError> {
    let per_second = per_second.unwrap_or(default);
    // NaN is refused too.
    if per_second.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(ConfigError::BadRate);
    }
    Ok(RateLimit::new(per_second, burst.unwrap_or(default_burst).max(1)))
}

impl Settings {
    /// Merges the flags, the config file (if `--config` names one) and the defaults. The
    /// users table is left empty: the caller loads the file.
    pub fn resolve(cli: ServeArgs) -> Result<Settings, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => ServeArgs::default(),
        };
        let a = merge(cli, file);
        let users = a.users.ok_or(ConfigError::NoUsers)?;
        let listen = a.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let db = a.db.unwrap_or_else(|| default_db(&users));
        let mut cfg = RelayConfig::new(listen, Users::new(), db);
        if let Some(url) = a.broker {
            cfg.broker = url.parse().map_err(ConfigError::Broker)?;
        }
        cfg.idle_timeout = Duration::from_secs(a.idle_timeout.unwrap_or(60).max(1));
        cfg.hello_timeout = Duration::from_secs(a.hello_timeout.unwrap_or(10).max(1));
        if a.heartbeat_interval_ms.is_some() || a.heartbeat_timeout_ms.is_some() {
            cfg.heartbeat_hint =
                Some(HeartbeatHint { interval_ms: a.heartbeat_interval_ms, timeout_ms: a.heartbeat_timeout_ms });
        }
        cfg.retention = days(a.retention_days.unwrap_or(30));
        cfg.max_queued_per_recipient = a.max_queued.unwrap_or(10_000).max(1);
        cfg.max_queued_per_sender = a.max_queued_per_sender.map(|n| n.max(1));
        cfg.max_devices_per_user = a.max_devices_per_user.unwrap_or(16).max(1);
        cfg.device_expiry = days(a.device_expiry_days.unwrap_or(7));
        cfg.max_connections = a.max_connections.unwrap_or(10_000).max(1);
        cfg.max_connections_per_user = a.max_connections_per_user.unwrap_or(32).max(1);
        cfg.header_timeout = Duration::from_secs(a.header_timeout.unwrap_or(10).max(1));
        cfg.body_timeout = Duration::from_secs(a.body_timeout.unwrap_or(10).max(1));
        cfg.deliver_to_all = a.deliver_to_all.unwrap_or(false);
        cfg.ws_rate = rate(a.ws_rate, 50.0, a.ws_burst, 100)?;
        cfg.http_rate = rate(a.http_rate, 20.0, a.http_burst, 100)?;
        cfg.failed_login_rate = rate(a.failed_login_rate, 1.0, a.failed_login_burst, 10)?;
        cfg.pre_hello_rate = rate(a.pre_hello_rate, 5.0, a.pre_hello_burst, 20)?;
        cfg.tls = tls_files(a.tls_cert, a.tls_key)?;
        cfg.trusted_proxies =
            a.trusted_proxy.unwrap_or_default().iter().map(|p| p.parse()).collect::<Result<_, _>>()?;
        Ok(Settings { users, relay: cfg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("relay.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_flags_override_the_file_and_relative_paths_are_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "listen = \"127.0.0.1:9000\"\nusers = \"users.toml\"\nidle_timeout = 5\ndeliver_to_all = true\n",
        );
        let cli =
            ServeArgs { config: Some(path), idle_timeout: Some(7), deliver_to_all: Some(false), ..Default::default() };
        let s = Settings::resolve(cli).unwrap();
        assert_eq!(s.users, dir.path().join("users.toml"));
        assert_eq!(s.relay.db, dir.path().join("talkbell-relay.db"));
        assert_eq!(s.relay.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(s.relay.idle_timeout, Duration::from_secs(7));
        assert!(!s.relay.deliver_to_all);
        assert!(s.relay.tls.is_none());
    }

    #[test]
    fn bad_files_name_the_file_the_line_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "users = \"u.toml\"\n\nlisten_on = \"x\"\n");
        let err = Settings::resolve(ServeArgs { config: Some(path.clone()), ..Default::default() }).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("listen_on"), "{text}");

        let path = write(dir.path(), "idle_timeout = \"soon\"\n");
        let err = Settings::resolve(ServeArgs { config: Some(path), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");

        assert!(matches!(Settings::resolve(ServeArgs::default()), Err(ConfigError::NoUsers)));
        let half = ServeArgs { users: Some("u".into()), tls_cert: Some("c.pem".into()), ..Default::default() };
        assert!(matches!(Settings::resolve(half), Err(ConfigError::HalfTls { .. })));
    }

    #[test]
    fn the_broker_comes_from_the_flag_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let users = Some(PathBuf::from("u"));
        let s = Settings::resolve(ServeArgs { users: users.clone(), ..Default::default() }).unwrap();
        assert_eq!(s.relay.broker, crate::BrokerUrl::Sqlite);
        let path = write(dir.path(), "users = \"u\"\nbroker = \"redis://127.0.0.1:6379\"\n");
        let s = Settings::resolve(ServeArgs { config: Some(path.clone()), ..Default::default() }).unwrap();
        assert_eq!(s.relay.broker, crate::BrokerUrl::Redis("redis://127.0.0.1:6379".into()));
        let flag =
            ServeArgs { config: Some(path), broker: Some("redis+cluster://a:1,b:2".into()), ..Default::default() };
        let s = Settings::resolve(flag).unwrap();
        assert_eq!(s.relay.broker, crate::BrokerUrl::RedisCluster(vec!["redis://a:1".into(), "redis://b:2".into()]));
        let bad = ServeArgs { users, broker: Some("mysql://x".into()), ..Default::default() };
        assert!(matches!(Settings::resolve(bad), Err(ConfigError::Broker(_))));
    }

    #[test]
    fn the_packaged_config_file_is_valid() {
        let file: ServeArgs = toml::from_str(include_str!("../../debian/relay.toml")).unwrap();
        assert_eq!(file.users.as_deref(), Some(Path::new("/etc/talkbell-relay/users.toml")));
        assert_eq!(file.db.as_deref(), Some(Path::new("/var/lib/talkbell-relay/relay.db")));
        assert_eq!(file.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert!(file.tls_cert.is_none() && file.tls_key.is_none());
    }

    #[test]
    fn the_caps_and_timeouts_have_their_defaults_and_keys() {
        let s = Settings::resolve(ServeArgs { users: Some("u".into()), ..Default::default() }).unwrap();
        let caps = s.relay.queue_caps();
        assert_eq!((caps.per_recipient, caps.per_sender), (10_000, 1000));
        assert_eq!(s.relay.device_rule().max, 16);
        assert_eq!(s.relay.device_expiry, Duration::from_secs(7 * 24 * 3600));
        assert_eq!((s.relay.max_connections, s.relay.max_connections_per_user), (10_000, 32));
        assert_eq!((s.relay.header_timeout, s.relay.body_timeout), (Duration::from_secs(10), Duration::from_secs(10)));

        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "users = \"u\"\nmax_queued = 500\nmax_devices_per_user = 4\ndevice_expiry_days = 2\n\
             max_connections = 9\nmax_connections_per_user = 3\nheader_timeout = 2\nbody_timeout = 3\n\
             failed_login_rate = 0.5\nfailed_login_burst = 4\npre_hello_rate = 2.0\npre_hello_burst = 6\n",
        );
        let cli = ServeArgs { config: Some(path), max_queued_per_sender: Some(7), ..Default::default() };
        let r = Settings::resolve(cli).unwrap().relay;
        assert_eq!((r.queue_caps().per_recipient, r.queue_caps().per_sender), (500, 7));
        assert_eq!((r.device_rule().max, r.device_expiry), (4, Duration::from_secs(2 * 24 * 3600)));
        assert_eq!((r.max_connections, r.max_connections_per_user), (9, 3));
        assert_eq!((r.header_timeout, r.body_timeout), (Duration::from_secs(2), Duration::from_secs(3)));
        assert_eq!(r.failed_login_rate, RateLimit::new(0.5, 4));
        assert_eq!(r.pre_hello_rate, RateLimit::new(2.0, 6));
        let bad = ServeArgs { users: Some("u".into()), failed_login_rate: Some(0.0), ..Default::default() };
        assert!(matches!(Settings::resolve(bad), Err(ConfigError::BadRate)));
    }

    /// Every commented default in the packaged file is a real key with a valid value.
    #[test]
    fn the_packaged_files_commented_defaults_are_valid_keys() {
        let text = include_str!("../../debian/relay.toml");
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| {
                l.split_once(" = ")
                    .is_some_and(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            })
            .collect();
        assert!(keys.len() > 15, "{keys:?}");
        let uncommented: String = keys.iter().map(|l| format!("{}\n", l.split(" #").next().unwrap_or(l))).collect();
        let file: ServeArgs = toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        assert_eq!(file.max_queued_per_sender, Some(1000));
        assert_eq!(file.max_connections_per_user, Some(32));
        assert_eq!(file.device_expiry_days, Some(7));
    }

    #[test]
    fn trusted_proxies_come_from_repeated_flags_or_a_list_in_the_file() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let args = ["serve", "--users", "u", "--trusted-proxy", "10.0.0.5", "--trusted-proxy", "fd00::/8"];
        let r = Settings::resolve(Cli::try_parse_from(args).unwrap().serve).unwrap().relay;
        let shown: Vec<String> = r.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.5/32", "fd00::/8"]);
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "users = \"u\"\ntrusted_proxy = [\"127.0.0.0/8\"]\n");
        let r = Settings::resolve(ServeArgs { config: Some(path), ..Default::default() }).unwrap().relay;
        assert_eq!(r.trusted_proxies, vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(Settings::resolve(ServeArgs::default()).is_err());
        let bad = ServeArgs { users: Some("u".into()), trusted_proxy: Some(vec!["lb".into()]), ..Default::default() };
        assert!(matches!(Settings::resolve(bad), Err(ConfigError::TrustedProxy(_))));
    }

    #[test]
    fn the_deployed_node_config_is_valid() {
        let file: ServeArgs = toml::from_str(include_str!("../../../../deploy/node-1.toml")).unwrap();
        let s = Settings::resolve(file).unwrap();
        assert_eq!(s.relay.broker, crate::BrokerUrl::Redis("redis://127.0.0.1:6379".into()));
        assert_eq!(s.relay.trusted_proxies, vec!["10.0.0.10".parse().unwrap()]);
    }

    #[test]
    fn deliver_to_all_is_a_switch_that_can_be_turned_off() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let parse = |args: &[&str]| Cli::try_parse_from([&["serve"], args].concat()).unwrap().serve.deliver_to_all;
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&["--deliver-to-all"]), Some(true));
        assert_eq!(parse(&["--deliver-to-all=false"]), Some(false));
        assert_eq!(parse(&["--deliver-to-all", "--listen", "127.0.0.1:1"]), Some(true));
    }
}
