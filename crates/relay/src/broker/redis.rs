//! The Redis broker: several relays (nodes) share their recipients' queues and routing
//! through one Redis server (`--broker redis://HOST:PORT`), in the shape Centrifugo's
//! Redis broker uses, adapted to per-recipient queues (issue 13).
//!
//! - Per recipient `u`: a stream `tb:{u}:s` whose ids are `<seq>-0`, and a hash
//!   `tb:{u}:meta` with `seq` (the last one given) and `epoch` (the queue's lifetime).
//!   The other keys are written at the top of `redis_lua.rs`.
//! - Every accepted talk is one Lua script (atomic in Redis): the `send` key (known: the
//!   first `seq` is answered and nothing stored), the caps (the recipient's stream
//!   length, the sender's count), `HINCRBY seq`, `XADD`, and a `PUBLISH` of the whole
//!   talk on `tb:{u}:n`. The POST or `send` is answered after the script returns, so an
//!   accepted talk is in Redis (how durably is Redis's `appendfsync`, logged at start).
//! - A node subscribes to `tb:{u}:n` only while it holds connections of `u`
//!   ([`Broker::watch`]); the subscription is confirmed before the hub reads `last_seq`.
//! - Replay is `XRANGE`. Cursors: one stream per recipient, read by every device of that
//!   recipient; each device's cumulative ack is a field of `tb:{u}:dev`, and the stream is
//!   trimmed (`XTRIM MINID`) past the lowest of them, so a talk goes once every device
//!   still known has acked it (the SQLite broker's rule, devices forgotten the same way).
//!   No `XDEL` per device: devices read at their own pace from their own cursor.
//! - Lost wake-ups (the subscription dropped, Redis restarted, a full channel): every
//!   [`CHECK_EVERY`] the node reads the `seq` and `epoch` of up to [`CHECK_BATCH`] watched
//!   recipients, in turns ([`check_turn`]: with more, each one every ⌈n / CHECK_BATCH⌉
//!   checks), and sends the talks it had not (an `XRANGE` from the last one it sent); the
//!   hub drops what a connection has and catches up a gap, so a late or doubled talk does
//!   no harm. A check runs on the subscriber's task, which also confirms new
//!   subscriptions (a hello waits for its own), so its size is bounded.
//! - Epochs: a queue whose `meta` is gone (Redis lost its data) gets a new random epoch
//!   from the next script that touches it; the check above finds it too and tells the
//!   hub ([`Wakeup::NewEpoch`]), which closes the connections of the old epoch so that
//!   their next welcome says `reset` (PROTOCOL.md 3).
//! - A Redis that restarted may have lost its last writes (`appendfsync everysec`, no
//!   append-only file, a failover to a replica): its `seq`s went back within the same
//!   epoch. Each queue's `meta` keeps the `run_id` of the Redis run that last set its
//!   epoch (`boot`), and the first script to touch a queue under another run gives it a
//!   new epoch, in the same atomic step as the `seq` it bumps (the rule, and why no
//!   `seq` can come twice, is at the top of `redis_lua.rs`). So it is done once per
//!   queue and restart, by whichever node comes first, at the cost of one `INFO server`
//!   per append or registration and no scan; and it needs no key of another slot. Only when this node
//!   reads `appendonly yes` and `appendfsync always` from a single Redis ([`Keep`]) does
//!   a restart keep the epochs: nothing accepted was lost. On a cluster a restart always
//!   gives new epochs: a failover to a replica is a new `run_id` too and loses what
//!   replication had not copied yet, whatever `appendfsync` says.
//! - A Redis Cluster (`--broker redis+cluster://HOST:PORT,HOST:PORT,…`, the seed nodes):
//!   one recipient's keys and channel share the `{u}` hash tag, so each script runs on the
//!   recipient's slot; wake-ups are sharded pub/sub there (`SPUBLISH`, `SSUBSCRIBE`, on
//!   RESP3), which the cluster connection re-subscribes after a failover; the check above
//!   covers what a failover drops.
//! - `--deliver-to-all` copies ([`Broker::broadcast`]) go on one channel, [`COPIES`],
//!   that every node subscribes to; each copy names the node that sent it (a random id
//!   per broker), which ignores its own.
//! - Retention ([`Broker::prune`]) covers every recipient's queue, connected or not: a
//!   pass goes on with a bounded `SCAN` of each master for the streams ([`Sweep`]) and
//!   runs the prune script on each; the script deletes only talks past retention.
//! - Redis away: every call fails with [`BrokerError::Unavailable`] (a POST gets 503, a
//!   `send` an `unavailable` error frame: not accepted, so not lost); connections stay;
//!   the connection manager and the subscriber reconnect with back-off, and the first
//!   check after that sends what was missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSubSink};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncCommands, Client, Cmd, Pipeline, PushInfo, RedisError, RedisFuture, Value};
use talkbell_core::protocol::{Person, UserId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::redis_lua::Scripts;
use super::{
    now_ms, Appended, BoxFuture, Broker, BrokerError, Device, DeviceRule, NewTalk, QueueCaps, QueueFull, Registered,
    StoredTalk, Wakeup, SEND_KEY_TTL_MS,
};

/// How often the watched recipients' positions are checked (lost wake-ups).
pub const CHECK_EVERY: Duration = Duration::from_millis(1000);
/// Recipients whose positions one check reads (see the top of this file).
const CHECK_BATCH: usize = 500;
/// How long one Redis call may take before it counts as Redis being away.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Wake-ups waiting for the hub; past it they are dropped and the check finds them.
const WAKEUP_QUEUE: usize = 4096;
/// Talks read per `XRANGE` of a check.
const CHECK_PAGE: usize = 256;
/// The channel of `--deliver-to-all` copies, which every node listens on (no hash tag:
/// it cannot be any recipient's; on a cluster it is one sharded channel).
const COPIES: &str = "tb:copies";
/// Keys one `SCAN` of a retention pass looks at (Redis's hint), and `SCAN`s per master
/// per pass: a pass looks at up to about 10,000 keys of each master.
const SWEEP_COUNT: usize = 1000;
const SWEEP_SCANS: usize = 10;

/// Why the Redis broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum RedisBrokerError {
    #[error("the broker URL {url:?} is not a Redis URL: {source}")]
    Url { url: String, source: RedisError },
    #[error("cannot reach Redis at {url}: {source}")]
    Connect { url: String, source: RedisError },
}

/// Redis away (down, loading, failing over, unreachable) is [`BrokerError::Unavailable`],
/// which the sender may retry; anything else (a script error, a reply this code did not
/// expect) is a bug here, [`BrokerError::Failed`].
fn err(e: RedisError) -> BrokerError {
    use redis::{ErrorKind, ServerErrorKind as S};
    let away = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::Io
                | ErrorKind::Client
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    S::BusyLoading | S::TryAgain | S::ClusterDown | S::MasterDown | S::ReadOnly | S::Moved | S::Ask
                )
        );
    if away {
        BrokerError::Unavailable(e.to_string())
    } else {
        BrokerError::Failed(Box::new(e))
    }
}

/// A connection to one Redis server (reconnecting by itself) or to a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where the subscriber hears wake-ups: its own pub/sub connection to one server, or
/// the cluster connection's pushes (sharded pub/sub).
enum Source {
    Single(Client),
    Cluster(mpsc::UnboundedReceiver<PushInfo>),
}

/// The keys of one recipient.
struct Keys(String);

impl Keys {
    fn of(user: &UserId) -> Keys {
        Keys(format!("tb:{{{}}}", user.as_str()))
    }
    fn meta(&self) -> String {
        format!("{}:meta", self.0)
    }
    fn stream(&self) -> String {
        format!("{}:s", self.0)
    }
    fn from(&self) -> String {
        format!("{}:from", self.0)
    }
    fn dev(&self) -> String {
        format!("{}:dev", self.0)
    }
    fn seen(&self) -> String {
        format!("{}:seen", self.0)
    }
    fn send_key(&self, key: &str) -> String {
        format!("{}:k:{key}", self.0)
    }
    fn channel(&self) -> String {
        format!("{}:n", self.0)
    }
}

/// The user a wake-up channel belongs to.
fn user_of_channel(channel: &str) -> Option<UserId> {
    let inner = channel.strip_prefix("tb:{")?.strip_suffix("}:n")?;
    Some(UserId::new(inner))
}

/// What this node has sent the hub of a watched recipient.
#[derive(Clone, Debug, Default)]
struct Known {
    last: u64,
    epoch: Option<String>,
}

/// The recipients watched here, shared by the broker and its subscriber task.
#[derive(Default)]
struct Watched(Mutex<HashMap<UserId, Known>>);

impl Watched {
    fn lock(&self) -> MutexGuard<'_, HashMap<UserId, Known>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what the hub has of `user` (a registration's `last_seq`, an append).
    fn saw(&self, user: &UserId, epoch: &str, seq: u64) {
        if let Some(known) = self.lock().get_mut(user) {
            if known.epoch.as_deref() == Some(epoch) {
                known.last = known.last.max(seq);
            } else {
                *known = Known { last: seq, epoch: Some(epoch.to_owned()) };
            }
        }
    }
}

/// The recipients the check numbered `turn` reads: `users` in the order of their ids,
/// from `turn × batch` on (wrapping), at most `batch` of them; so ⌈n / batch⌉ turns in a
/// row read each recipient once.
fn check_turn(mut users: Vec<(UserId, Known)>, turn: usize, batch: usize) -> Vec<(UserId, Known)> {
    if users.len() <= batch {
        return users;
    }
    users.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let from = turn.wrapping_mul(batch) % users.len();
    users.rotate_left(from);
    users.truncate(batch);
    users
}

/// Whether a Redis restart keeps the queues' epochs: only a single Redis that says
/// `appendonly yes` and `appendfsync always` (read at start and at every check, so a
/// `CONFIG SET` is seen within [`CHECK_EVERY`]). Anything else (another mode, `CONFIG`
/// refused, a cluster) gives every queue a new epoch after a restart.
struct Keep {
    cluster: bool,
    always: AtomicBool,
}

impl Keep {
    /// The scripts' `keep` argument.
    fn arg(&self) -> &'static str {
        if !self.cluster && self.always.load(Ordering::Relaxed) {
            "1"
        } else {
            "0"
        }
    }

    /// Reads the durability again (not on a cluster). While Redis is away the last
    /// reading stays: it describes the run that went away, which is what the first
    /// scripts after a restart must know. A refused `CONFIG GET` is not `always`.
    async fn refresh(&self, conn: &mut Conn) {
        if self.cluster {
            return;
        }
        match read_durability(conn).await {
            Err(BrokerError::Unavailable(_)) => {}
            read => self.always.store(read.ok().is_some_and(|d| d.always()), Ordering::Relaxed),
        }
    }
}

/// A master whose keys the retention sweep covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Master {
    /// The one Redis server.
    Single,
    /// A cluster's master, by the address `CLUSTER NODES` gives.
    Node { host: String, port: u16 },
}

/// The masters of a cluster in `CLUSTER NODES`'s answer: lines of `id host:port@bus[,name]
/// flags …`, the ones whose flags say `master` and not `fail`.
fn cluster_masters(nodes: &str) -> Vec<Master> {
    let master = |line: &str| {
        let mut fields = line.split_whitespace().skip(1);
        let addr = fields.next()?;
        let flags = fields.next()?;
        let is_master = flags.split(',').any(|f| f == "master") && !flags.contains("fail");
        let (host, port) = addr.split(['@', ',']).next()?.rsplit_once(':')?;
        let port = port.parse().ok()?;
        (is_master && !host.is_empty()).then(|| Master::Node { host: host.to_owned(), port })
    };
    nodes.lines().filter_map(master).collect()
}

/// Where each master's retention sweep is: its `SCAN` cursor (0: start again).
#[derive(Default)]
struct Sweep(Mutex<HashMap<Master, u64>>);

impl Sweep {
    fn lock(&self) -> MutexGuard<'_, HashMap<Master, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cursor(&self, master: &Master) -> u64 {
        self.lock().get(master).copied().unwrap_or(0)
    }

    fn set(&self, master: &Master, cursor: u64) {
        self.lock().insert(master.clone(), cursor);
    }

    /// Drops the cursors of masters that are no longer (a failover, a resharding).
    fn forget_others(&self, masters: &[Master]) {
        self.lock().retain(|m, _| masters.contains(m));
    }
}

enum Command {
    Watch(UserId, oneshot::Sender<Result<(), BrokerError>>),
    Unwatch(UserId),
}

/// The Redis broker ([`Broker`]); see the top of this file.
pub struct RedisBroker {
    url: String,
    conn: Conn,
    /// `PUBLISH`, or `SPUBLISH` on a cluster.
    publish: &'static str,
    /// This node, in the copies it broadcasts.
    node: String,
    scripts: Arc<Scripts>,
    caps: QueueCaps,
    rule: DeviceRule,
    keep: Arc<Keep>,
    sweep: Sweep,
    watched: Arc<Watched>,
    commands: mpsc::UnboundedSender<Command>,
    wakeups: Mutex<Option<mpsc::Receiver<Wakeup>>>,
    subscriber: JoinHandle<()>,
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

/// The URL without its user and password, for logs.
fn redacted(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((_, host)) => format!("redis://{host}"),
        None => url.to_owned(),
    }
}

/// A new epoch: 128 random bits in hex.
fn new_epoch() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn to_u64(s: &str) -> u64 {
    s.parse().unwrap_or(0)
}

impl RedisBroker {
    /// Connects to Redis at `url` (it must answer now), logs its durability, and starts
    /// the subscriber task.
    pub async fn connect(url: &str, caps: QueueCaps, rule: DeviceRule) -> Result<Self, RedisBrokerError> {
        let client = Client::open(url).map_err(|source| RedisBrokerError::Url { url: redacted(url), source })?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|source| RedisBrokerError::Connect { url: redacted(url), source })?;
        Ok(Self::with(redacted(url), Conn::Single(conn), Source::Single(client), caps, rule).await)
    }

    /// Connects to the Redis Cluster these seed nodes (`redis://HOST:PORT`) belong to.
    pub async fn connect_cluster(urls: &[String], caps: QueueCaps, rule: DeviceRule) -> Result<Self, RedisBrokerError> {
        let name = urls.iter().map(|u| redacted(u)).collect::<Vec<_>>().join(",");
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let client = ClusterClientBuilder::new(urls.to_vec())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(push_tx)
            .connection_timeout(RESPONSE_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(2)
            .build()
            .map_err(|source| RedisBrokerError::Url { url: name.clone(), source })?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|source| RedisBrokerError::Connect { url: name.clone(), source })?;
        Ok(Self::with(format!("cluster {name}"), Conn::Cluster(conn), Source::Cluster(push_rx), caps, rule).await)
    }

    async fn with(url: String, mut conn: Conn, source: Source, caps: QueueCaps, rule: DeviceRule) -> Self {
        let cluster = matches!(conn, Conn::Cluster(_));
        let durability = read_durability(&mut conn).await.ok();
        log_durability(&url, durability.as_ref(), cluster);
        let keep = Arc::new(Keep { cluster, always: AtomicBool::new(durability.is_some_and(|d| d.always())) });
        let publish = if cluster { "SPUBLISH" } else { "PUBLISH" };
        let scripts = Arc::new(Scripts::new());
        let watched = Arc::new(Watched::default());
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (wake_tx, wake_rx) = mpsc::channel(WAKEUP_QUEUE);
        let node = new_epoch();
        let subscriber = Subscriber {
            node: node.clone(),
            conn: conn.clone(),
            scripts: scripts.clone(),
            keep: keep.clone(),
            watched: watched.clone(),
            wakeups: wake_tx,
            turn: AtomicUsize::new(0),
        };
        let subscriber = tokio::spawn(subscriber.run(source, command_rx));
        RedisBroker {
            url,
            conn,
            publish,
            node,
            scripts,
            caps,
            rule,
            keep,
            sweep: Sweep::default(),
            watched,
            commands,
            wakeups: Mutex::new(Some(wake_rx)),
            subscriber,
        }
    }

    async fn append_talk(&self, talk: NewTalk) -> Result<Appended, BrokerError> {
        let keys = Keys::of(&talk.to.id);
        let send_key = keys.send_key(talk.key.as_deref().unwrap_or(""));
        let reply: Vec<String> = self
            .scripts
            .append
            .key(keys.meta())
            .key(keys.stream())
            .key(keys.from())
            .key(send_key)
            .arg(if talk.key.is_some() { "1" } else { "0" })
            .arg(talk.from.id.as_str())
            .arg(&talk.from.name)
            .arg(talk.to.id.as_str())
            .arg(&talk.to.name)
            .arg(&talk.talk)
            .arg(talk.ts)
            .arg(self.caps.per_recipient.max(1))
            .arg(self.caps.per_sender.max(1))
            .arg(new_epoch())
            .arg(SEND_KEY_TTL_MS)
            .arg(keys.channel())
            .arg(self.publish)
            .arg(self.keep.arg())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        let field = |i: usize| reply.get(i).map(String::as_str).unwrap_or("");
        let appended = |duplicate| Appended {
            seq: to_u64(field(1)),
            ts: field(2).parse().unwrap_or(talk.ts),
            epoch: field(3).to_owned(),
            duplicate,
        };
        match field(0) {
            "ok" => {
                let a = appended(false);
                self.watched.saw(&talk.to.id, &a.epoch, a.seq);
                Ok(a)
            }
            "dup" => Ok(appended(true)),
            "full_recipient" => Err(QueueFull::Recipient { cap: self.caps.per_recipient.max(1) }.into()),
            "full_sender" => Err(QueueFull::Sender { cap: self.caps.per_sender.max(1) }.into()),
            other => Err(BrokerError::Failed(format!("unexpected reply from the append script: {other:?}").into())),
        }
    }

    async fn register_device(
        &self,
        device: Device,
        resume: Option<u64>,
        epoch: Option<String>,
    ) -> Result<Registered, BrokerError> {
        let keys = Keys::of(&device.user);
        let now = now_ms();
        let reply: Vec<String> = self
            .scripts
            .register
            .key(keys.meta())
            .key(keys.stream())
            .key(keys.from())
            .key(keys.dev())
            .key(keys.seen())
            .arg(&device.uuid)
            .arg(resume.map(|r| r.to_string()).unwrap_or_default())
            .arg(epoch.unwrap_or_default())
            .arg(now)
            .arg(new_epoch())
            .arg(now.saturating_sub(self.rule.expiry_ms))
            .arg(self.rule.max.max(1))
            .arg(self.keep.arg())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        let field = |i: usize| reply.get(i).map(String::as_str).unwrap_or("");
        let reg = Registered {
            last_seq: to_u64(field(0)),
            acked: to_u64(field(1)),
            epoch: field(2).to_owned(),
            reset: field(3) == "1",
        };
        self.watched.saw(&device.user, &reg.epoch, reg.last_seq);
        Ok(reg)
    }

    async fn range(&self, user: &UserId, after: u64, upto: u64, limit: usize) -> Result<Vec<StoredTalk>, BrokerError> {
        range(&mut self.conn.clone(), user, after, upto, limit).await
    }

    async fn ack_device(&self, device: Device, seq: u64, epoch: String) -> Result<(), BrokerError> {
        let keys = Keys::of(&device.user);
        let now = now_ms();
        let counted: i64 = self
            .scripts
            .ack
            .key(keys.meta())
            .key(keys.stream())
            .key(keys.from())
            .key(keys.dev())
            .key(keys.seen())
            .arg(&device.uuid)
            .arg(seq)
            .arg(now)
            .arg(now.saturating_sub(self.rule.expiry_ms))
            .arg(self.rule.max.max(1))
            .arg(&epoch)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        if counted == 0 {
            tracing::debug!(user = %crate::untrusted(device.user.as_str()), "an ack of an old epoch; ignored");
        }
        Ok(())
    }

    async fn touch(&self, devices: Vec<Device>) -> Result<(), BrokerError> {
        if devices.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        // One command each, at once: on a cluster they go to different slots.
        let touches = devices.iter().map(|d| {
            let mut conn = self.conn.clone();
            async move { conn.hset::<_, _, _, ()>(Keys::of(&d.user).seen(), &d.uuid, now).await }
        });
        join_all(touches).await.into_iter().collect::<Result<Vec<()>, _>>().map_err(err)?;
        Ok(())
    }

    /// Retention over every recipient's queue, connected anywhere or not: on each master
    /// (the one server, or every master of a cluster) a bounded part of a `SCAN` for the
    /// streams, going on next pass from where this one stopped ([`Sweep`]), and the
    /// prune script for each stream found. The script deletes only talks older than
    /// `talks_before_ms`.
    async fn prune_all(&self, talks_before_ms: i64, devices_before_ms: i64) -> Result<usize, BrokerError> {
        let masters = self.masters().await?;
        self.sweep.forget_others(&masters);
        let mut pruned = 0usize;
        for master in &masters {
            for stream in self.scan_streams(master).await? {
                pruned += self.prune_stream(&stream, talks_before_ms, devices_before_ms).await?;
            }
        }
        Ok(pruned)
    }

    /// The masters whose keys a sweep must cover: the one server, or a cluster's
    /// masters as `CLUSTER NODES` lists them (failed ones left out).
    async fn masters(&self) -> Result<Vec<Master>, BrokerError> {
        let Conn::Cluster(_) = &self.conn else { return Ok(vec![Master::Single]) };
        let nodes: String =
            redis::cmd("CLUSTER").arg("NODES").query_async(&mut self.conn.clone()).await.map_err(err)?;
        Ok(cluster_masters(&nodes))
    }

    /// The streams of the next part of `master`'s sweep: at most [`SWEEP_SCANS`] `SCAN`
    /// calls of [`SWEEP_COUNT`] keys each.
    async fn scan_streams(&self, master: &Master) -> Result<Vec<String>, BrokerError> {
        let mut cursor = self.sweep.cursor(master);
        let mut streams = Vec::new();
        for _ in 0..SWEEP_SCANS {
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("tb:{*}:s")
                .arg("COUNT")
                .arg(SWEEP_COUNT)
                .arg("TYPE")
                .arg("stream")
                .clone();
            let reply = match (master, &self.conn) {
                (Master::Node { host, port }, Conn::Cluster(cluster)) => {
                    let to = SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port };
                    cluster.clone().route_command(scan, RoutingInfo::SingleNode(to)).await.map_err(err)?
                }
                _ => scan.query_async::<Value>(&mut self.conn.clone()).await.map_err(err)?,
            };
            let (next, keys): (u64, Vec<String>) =
                redis::from_redis_value(reply).map_err(|e| BrokerError::Failed(Box::new(e)))?;
            streams.extend(keys);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        self.sweep.set(master, cursor);
        Ok(streams)
    }

    async fn prune_stream(
        &self,
        stream: &str,
        talks_before_ms: i64,
        devices_before_ms: i64,
    ) -> Result<usize, BrokerError> {
        let Some(base) = stream.strip_suffix(":s") else { return Ok(0) };
        let keys = Keys(base.to_owned());
        let n: i64 = self
            .scripts
            .prune
            .key(keys.stream())
            .key(keys.from())
            .key(keys.dev())
            .key(keys.seen())
            .arg(talks_before_ms)
            .arg(devices_before_ms)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn command(&self, command: Command) -> Result<(), BrokerError> {
        self.commands.send(command).map_err(|_| BrokerError::Unavailable("the subscriber has stopped".into()))
    }

    async fn watch_user(&self, user: &UserId) -> Result<(), BrokerError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Watch(user.clone(), tx)).await?;
        rx.await.map_err(|_| BrokerError::Unavailable("the subscriber has stopped".into()))?
    }
}

/// Up to `limit` talks of `user` with `after < seq <= upto`, by `XRANGE`.
async fn range(
    conn: &mut Conn,
    user: &UserId,
    after: u64,
    upto: u64,
    limit: usize,
) -> Result<Vec<StoredTalk>, BrokerError> {
    if after >= upto {
        return Ok(Vec::new());
    }
    type Entry = (String, HashMap<String, String>);
    let entries: Vec<Entry> = redis::cmd("XRANGE")
        .arg(Keys::of(user).stream())
        .arg(format!("{}-0", after.saturating_add(1)))
        .arg(format!("{upto}-0"))
        .arg("COUNT")
        .arg(limit.max(1))
        .query_async(conn)
        .await
        .map_err(err)?;
    Ok(entries.into_iter().filter_map(|(id, fields)| stored_talk(user, &id, fields)).collect())
}

fn stored_talk(user: &UserId, id: &str, mut f: HashMap<String, String>) -> Option<StoredTalk> {
    let seq = id.strip_suffix("-0")?.parse().ok()?;
    let mut take = |name: &str| f.remove(name).unwrap_or_default();
    Some(StoredTalk {
        seq,
        ts: take("ts").parse().unwrap_or(0),
        from: Person { id: UserId::new(take("from_id")), name: take("from_name") },
        to: Person { id: user.clone(), name: take("to_name") },
        talk: take("talk"),
    })
}

/// A reply of Redis this code did not expect.
#[derive(Debug, thiserror::Error)]
enum Unexpected {
    #[error("CONFIG GET gave no {0}")]
    Config(&'static str),
}

/// What Redis says of its durability.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Durability {
    appendonly: String,
    appendfsync: String,
}

impl Durability {
    /// Nothing accepted is lost in a crash.
    fn always(&self) -> bool {
        self.appendonly == "yes" && self.appendfsync == "always"
    }
}

/// `appendonly` and `appendfsync`, in one `CONFIG GET`; [`BrokerError::Unavailable`]
/// when Redis is away, another error when it refuses (a managed Redis that renamed
/// `CONFIG`) or answers something else.
async fn read_durability(conn: &mut Conn) -> Result<Durability, BrokerError> {
    let cmd = redis::cmd("CONFIG").arg("GET").arg("appendonly").arg("appendfsync").clone();
    let mut pairs = cmd.query_async::<HashMap<String, String>>(conn).await.map_err(err)?;
    let mut take =
        |name: &'static str| pairs.remove(name).ok_or(BrokerError::Failed(Box::new(Unexpected::Config(name))));
    Ok(Durability { appendonly: take("appendonly")?, appendfsync: take("appendfsync")? })
}

/// Logs what an accepted talk survives, and what a Redis restart does to the epochs.
fn log_durability(url: &str, durability: Option<&Durability>, cluster: bool) {
    let unknown = || "unknown (CONFIG GET refused)".to_owned();
    let appendonly = durability.map_or_else(unknown, |d| d.appendonly.clone());
    let appendfsync = durability.map_or_else(unknown, |d| d.appendfsync.clone());
    let survives = match (appendonly.as_str(), appendfsync.as_str()) {
        ("yes", "always") => "an accepted talk survives a Redis crash",
        ("yes", "everysec") => "up to a second of accepted talks is at risk in a Redis crash",
        ("yes", _) => "accepted talks since the OS last flushed are at risk in a Redis crash",
        _ => "accepted talks since the last snapshot are lost in a Redis crash (appendonly is off)",
    };
    let restart = if !cluster && durability.is_some_and(Durability::always) {
        "a Redis restart keeps the queues' epochs"
    } else {
        "a Redis restart gives every queue a new epoch (clients are told talks may be missing)"
    };
    tracing::info!(broker = %url, %appendonly, %appendfsync, "Redis durability: {survives}; {restart}");
}

/// The task that holds the pub/sub connection: subscribes and unsubscribes as the hub
/// watches, forwards wake-ups, and checks the watched recipients' positions.
struct Subscriber {
    /// This node: its own copies come back on [`COPIES`] and are dropped.
    node: String,
    conn: Conn,
    scripts: Arc<Scripts>,
    keep: Arc<Keep>,
    watched: Arc<Watched>,
    wakeups: mpsc::Sender<Wakeup>,
    /// The number of the next check ([`check_turn`]).
    turn: AtomicUsize,
}

/// Why a subscription ended.
enum Ended {
    /// The connection dropped: connect again.
    Lost,
    /// The broker is gone.
    Stopped,
}

impl Subscriber {
    async fn run(self, source: Source, commands: mpsc::UnboundedReceiver<Command>) {
        match source {
            Source::Single(client) => self.run_single(client, commands).await,
            Source::Cluster(pushes) => self.run_cluster(pushes, commands).await,
        }
    }

    /// On a cluster: sharded subscriptions on the cluster connection, which re-subscribes
    /// by itself after a reconnect or a failover.
    async fn run_cluster(
        self,
        mut pushes: mpsc::UnboundedReceiver<PushInfo>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let Conn::Cluster(cluster) = self.conn.clone() else { return };
        // Re-subscribed by the cluster connection after a reconnect, like the others.
        if let Err(e) = cluster.clone().ssubscribe(COPIES).await {
            tracing::warn!(error = %e, "cannot subscribe to the copies of other nodes' talks");
        }
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None => return,
                    Some(command) => self.on_cluster_command(&mut cluster.clone(), command).await,
                },
                push = pushes.recv() => match push.and_then(redis::Msg::from_push_info) {
                    Some(msg) => self.on_message(msg.get_channel_name(), msg.get_payload_bytes()),
                    None if pushes.is_closed() => return,
                    None => {}
                },
                _ = tick.tick() => self.tick().await,
            }
        }
    }

    async fn on_cluster_command(&self, cluster: &mut ClusterConnection, command: Command) {
        match command {
            Command::Watch(user, reply) => {
                if self.watched.lock().contains_key(&user) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                let subscribed = cluster.ssubscribe(Keys::of(&user).channel()).await;
                if subscribed.is_ok() {
                    self.watched.lock().insert(user, Known::default());
                }
                let _ = reply.send(subscribed.map_err(err));
            }
            Command::Unwatch(user) => {
                if self.watched.lock().remove(&user).is_some() {
                    if let Err(e) = cluster.sunsubscribe(Keys::of(&user).channel()).await {
                        tracing::debug!(error = %e, "could not unsubscribe; the check ignores it");
                    }
                }
            }
        }
    }

    async fn run_single(self, client: Client, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut delay = Duration::from_millis(100);
        loop {
            match client.get_async_pubsub().await {
                Ok(pubsub) => {
                    delay = Duration::from_millis(100);
                    if let Ended::Stopped = self.subscribed(pubsub, &mut commands).await {
                        return;
                    }
                    tracing::warn!("the Redis subscription dropped; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, retry_in = ?delay, "cannot subscribe to Redis"),
            }
            // While away: watch requests fail (the hello is refused, try again), unwatch
            // requests are taken.
            let away = tokio::time::sleep(delay);
            tokio::pin!(away);
            loop {
                tokio::select! {
                    _ = &mut away => break,
                    command = commands.recv() => match command {
                        None => return,
                        Some(Command::Watch(_, reply)) => {
                            let _ = reply.send(Err(BrokerError::Unavailable("Redis is out of reach".into())));
                        }
                        Some(Command::Unwatch(user)) => {
                            self.watched.lock().remove(&user);
                        }
                    },
                }
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn subscribed(&self, pubsub: redis::aio::PubSub, commands: &mut mpsc::UnboundedReceiver<Command>) -> Ended {
        let (mut sink, mut stream) = pubsub.split();
        if sink.subscribe(COPIES).await.is_err() {
            return Ended::Lost;
        }
        let users: Vec<UserId> = self.watched.lock().keys().cloned().collect();
        for user in &users {
            if sink.subscribe(Keys::of(user).channel()).await.is_err() {
                return Ended::Lost;
            }
        }
        if !users.is_empty() {
            tracing::info!(recipients = users.len(), "subscribed to Redis again");
        }
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None => return Ended::Stopped,
                    Some(command) => if !self.on_command(&mut sink, command).await {
                        return Ended::Lost;
                    },
                },
                msg = stream.next() => match msg {
                    None => return Ended::Lost,
                    Some(msg) => self.on_message(msg.get_channel_name(), msg.get_payload_bytes()),
                },
                _ = tick.tick() => self.tick().await,
            }
        }
    }

    /// False when the connection failed.
    async fn on_command(&self, sink: &mut PubSubSink, command: Command) -> bool {
        match command {
            Command::Watch(user, reply) => {
                if self.watched.lock().contains_key(&user) {
                    let _ = reply.send(Ok(()));
                    return true;
                }
                let subscribed = sink.subscribe(Keys::of(&user).channel()).await;
                let ok = subscribed.is_ok();
                if ok {
                    self.watched.lock().insert(user, Known::default());
                }
                let _ = reply.send(subscribed.map_err(err));
                ok
            }
            Command::Unwatch(user) => {
                if self.watched.lock().remove(&user).is_none() {
                    return true;
                }
                sink.unsubscribe(Keys::of(&user).channel()).await.is_ok()
            }
        }
    }

    /// A published talk: to the hub, unless it is full (the check finds it again).
    fn on_message(&self, channel: &str, payload: &[u8]) {
        if channel == COPIES {
            return self.on_copy(payload);
        }
        let Some(user) = user_of_channel(channel) else { return };
        let Some((epoch, talk)) = parse_wakeup(&user, payload) else {
            tracing::warn!(channel = %crate::untrusted(channel), "a wake-up that is not a talk; ignored");
            return;
        };
        if !self.watched.lock().contains_key(&user) {
            return;
        }
        let seq = talk.seq;
        if self.wakeups.try_send(Wakeup::Talk { epoch: epoch.clone(), talk }).is_ok() {
            self.watched.saw(&user, &epoch, seq);
        }
    }

    /// Once every [`CHECK_EVERY`]: the durability read again, the positions checked.
    async fn tick(&self) {
        self.keep.refresh(&mut self.conn.clone()).await;
        self.check().await;
    }

    /// Another node's `--deliver-to-all` copy: to the hub (dropped when it is full: a
    /// copy is best effort). This node's own are dropped here.
    fn on_copy(&self, payload: &[u8]) {
        match serde_json::from_slice::<Copy>(payload) {
            Ok(copy) if copy.origin == self.node => {}
            Ok(copy) => {
                let _ = self.wakeups.try_send(Wakeup::Copy(copy.talk()));
            }
            Err(e) => tracing::warn!(error = %e, "a copy that is not a talk; ignored"),
        }
    }

    /// This turn's watched recipients' `seq` and `epoch` against what was sent to the hub.
    async fn check(&self) {
        let all: Vec<(UserId, Known)> = self.watched.lock().iter().map(|(u, k)| (u.clone(), k.clone())).collect();
        let users = check_turn(all, self.turn.fetch_add(1, Ordering::Relaxed), CHECK_BATCH);
        if users.is_empty() {
            return;
        }
        // One HMGET each, at once (multiplexed): on a cluster they go to different slots.
        let reads = users.iter().map(|(user, _)| {
            let mut conn = self.conn.clone();
            async move {
                let cmd = redis::cmd("HMGET").arg(Keys::of(user).meta()).arg("seq").arg("epoch").clone();
                cmd.query_async::<(Option<u64>, Option<String>)>(&mut conn).await
            }
        });
        let positions = match join_all(reads).await.into_iter().collect::<Result<Vec<_>, _>>() {
            Ok(p) => p,
            Err(e) => return tracing::debug!(error = %e, "the position check failed; trying again later"),
        };
        let mut conn = self.conn.clone();
        for ((user, known), (seq, epoch)) in users.into_iter().zip(positions) {
            if let Err(e) = self.catch_up(&mut conn, &user, &known, seq.unwrap_or(0), epoch).await {
                tracing::debug!(error = %e, "a catch-up failed; trying again later");
            }
        }
    }

    /// Sends the hub what it lacks of `user`: a new epoch, or the talks after `known.last`.
    async fn catch_up(
        &self,
        conn: &mut Conn,
        user: &UserId,
        known: &Known,
        seq: u64,
        epoch: Option<String>,
    ) -> Result<(), BrokerError> {
        let epoch = match epoch {
            Some(e) => e,
            // The queue is gone while its connections are here: give it its new epoch now.
            None if known.epoch.is_some() => self
                .scripts
                .epoch
                .key(Keys::of(user).meta())
                .arg(new_epoch())
                .arg(self.keep.arg())
                .invoke_async(conn)
                .await
                .map_err(err)?,
            None => return Ok(()),
        };
        if known.epoch.as_deref().is_some_and(|k| k != epoch) {
            tracing::warn!(user = %crate::untrusted(user.as_str()), epoch = %epoch, "a recipient's queue was lost in Redis; new epoch");
            if self.wakeups.try_send(Wakeup::NewEpoch { user: user.clone(), epoch: epoch.clone() }).is_ok() {
                self.watched.saw(user, &epoch, seq);
            }
            return Ok(());
        }
        let mut after = known.last;
        while after < seq {
            let page = range(conn, user, after, seq, CHECK_PAGE).await?;
            let Some(last) = page.last().map(|t| t.seq) else { break };
            for talk in page {
                let at = talk.seq;
                if self.wakeups.try_send(Wakeup::Talk { epoch: epoch.clone(), talk }).is_err() {
                    return Ok(());
                }
                self.watched.saw(user, &epoch, at);
            }
            after = last;
        }
        // Trimmed or missing ones (acked by every device meanwhile) are not waited for.
        self.watched.saw(user, &epoch, seq);
        Ok(())
    }
}

/// A wake-up's payload: the talk the append script published, and its epoch.
fn parse_wakeup(user: &UserId, payload: &[u8]) -> Option<(String, StoredTalk)> {
    #[derive(serde::Deserialize)]
    struct Payload {
        epoch: String,
        seq: String,
        ts: String,
        from_id: String,
        from_name: String,
        to_name: String,
        talk: String,
    }
    let p: Payload = serde_json::from_slice(payload).ok()?;
    let talk = StoredTalk {
        seq: p.seq.parse().ok()?,
        ts: p.ts.parse().ok()?,
        from: Person { id: UserId::new(p.from_id), name: p.from_name },
        to: Person { id: user.clone(), name: p.to_name },
        talk: p.talk,
    };
    Some((p.epoch, talk))
}

/// A `--deliver-to-all` copy on [`COPIES`]: the talk, and the node that sent it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Copy {
    origin: String,
    seq: u64,
    ts: i64,
    from_id: String,
    from_name: String,
    to_id: String,
    to_name: String,
    talk: String,
}

impl Copy {
    fn of(origin: &str, talk: &StoredTalk) -> Copy {
        Copy {
            origin: origin.to_owned(),
            seq: talk.seq,
            ts: talk.ts,
            from_id: talk.from.id.as_str().to_owned(),
            from_name: talk.from.name.clone(),
            to_id: talk.to.id.as_str().to_owned(),
            to_name: talk.to.name.clone(),
            talk: talk.talk.clone(),
        }
    }

    fn talk(self) -> StoredTalk {
        StoredTalk {
            seq: self.seq,
            ts: self.ts,
            from: Person { id: UserId::new(self.from_id), name: self.from_name },
            to: Person { id: UserId::new(self.to_id), name: self.to_name },
            talk: self.talk,
        }
    }
}

impl Broker for RedisBroker {
    fn describe(&self) -> String {
        format!("redis ({}; epochs per recipient)", self.url)
    }

    fn append(&self, talk: NewTalk) -> BoxFuture<'_, Result<Appended, BrokerError>> {
        Box::pin(self.append_talk(talk))
    }

    fn watch<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(self.watch_user(user))
    }

    fn unwatch<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(self.command(Command::Unwatch(user.clone())))
    }

    fn register(
        &self,
        device: Device,
        resume: Option<u64>,
        epoch: Option<String>,
    ) -> BoxFuture<'_, Result<Registered, BrokerError>> {
        Box::pin(self.register_device(device, resume, epoch))
    }

    fn replay(
        &self,
        user: UserId,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<StoredTalk>, BrokerError>> {
        Box::pin(async move { self.range(&user, after, upto, limit).await })
    }

    fn ack(&self, device: Device, seq: u64, epoch: String) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(self.ack_device(device, seq, epoch))
    }

    fn seen(&self, devices: Vec<Device>) -> BoxFuture<'_, Result<(), BrokerError>> {
        Box::pin(self.touch(devices))
    }

    fn prune(&self, talks_before_ms: i64, devices_before_ms: i64) -> BoxFuture<'_, Result<usize, BrokerError>> {
        Box::pin(self.prune_all(talks_before_ms, devices_before_ms))
    }

    /// The append script published the wake-up already.
    fn wake<'a>(&'a self, _talk: &'a StoredTalk) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn broadcast<'a>(&'a self, talk: &'a StoredTalk) -> BoxFuture<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let payload =
                serde_json::to_string(&Copy::of(&self.node, talk)).map_err(|e| BrokerError::Failed(Box::new(e)))?;
            let cmd = redis::cmd(self.publish).arg(COPIES).arg(payload).clone();
            let _: i64 = cmd.query_async(&mut self.conn.clone()).await.map_err(err)?;
            Ok(())
        })
    }

    fn wakeups(&self) -> Option<mpsc::Receiver<Wakeup>> {
        self.wakeups.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_in_turns_read_every_recipient_once_per_round() {
        let users: Vec<(UserId, Known)> =
            (0..1234).map(|i| (UserId::from(format!("u-{i}").as_str()), Known::default())).collect();
        let few = check_turn(users[..7].to_vec(), 5, 500);
        assert_eq!(few.len(), 7, "a node with fewer than a batch checks them all each time");
        for start in [0, 3, 1_000_001] {
            let mut seen: Vec<String> = (start..start + 3)
                .flat_map(|turn| check_turn(users.clone(), turn, 500))
                .map(|(u, _)| u.as_str().to_owned())
                .collect();
            assert_eq!(seen.len(), 1500, "three turns of at most 500");
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), 1234, "three turns from {start} miss nobody");
        }
    }

    #[test]
    fn channels_name_their_recipient() {
        let keys = Keys::of(&UserId::from("u-7"));
        assert_eq!(keys.channel(), "tb:{u-7}:n");
        assert_eq!(keys.stream(), "tb:{u-7}:s");
        assert_eq!(user_of_channel(&keys.channel()), Some(UserId::from("u-7")));
        assert_eq!(user_of_channel("other"), None);
    }

    #[test]
    fn cluster_nodes_give_the_live_masters() {
        let nodes = "07c3 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460\n\
                     67ed 127.0.0.1:30002@40002,host-b master - 0 1 2 connected 5461-10922\n\
                     292f 127.0.0.1:30003@40003 master,fail - 0 1 3 connected\n\
                     e7d1 127.0.0.1:30004@40004 slave 07c3 0 1 1 connected\n\
                     garbage\n";
        let node = |port| Master::Node { host: "127.0.0.1".into(), port };
        assert_eq!(cluster_masters(nodes), [node(30001), node(30002)]);
    }

    #[test]
    fn a_password_in_the_url_is_never_logged() {
        assert_eq!(redacted("redis://:s3cret@10.0.0.1:6379/0"), "redis://10.0.0.1:6379/0");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn wakeups_parse_or_are_ignored() {
        let user = UserId::from(1);
        let payload = br#"{"epoch":"e","seq":"3","ts":"5","from_id":"2","from_name":"b","to_id":"1","to_name":"a","talk":"hi\/x"}"#;
        let (epoch, talk) = parse_wakeup(&user, payload).unwrap();
        assert_eq!((epoch.as_str(), talk.seq, talk.ts, talk.talk.as_str()), ("e", 3, 5, "hi/x"));
        assert!(parse_wakeup(&user, b"{}").is_none());
        assert!(parse_wakeup(&user, b"\xff").is_none());
    }
}
