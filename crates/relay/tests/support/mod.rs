//! Shared helpers: a relay in-process on 127.0.0.1:0 with three users (restarted, posted
//! to and its database read through [`Env`]), WebSocket clients (tokio-tungstenite), a raw
//! HTTP/1.1 client for requests `post_talk` never makes, and [`wait_until`], the one way
//! to wait for a condition;
//! [`tls`]: a test CA and wss clients; [`child`]: the relay binary as a child process.
#![allow(dead_code)]

pub mod child;
pub mod tls;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use talkbell_relay::broker::sqlite::{Store, StoreError};
use talkbell_relay::{post_talk, Relay, RelayConfig, UserId, Users};
use talkbell_testkit::wait::Poll;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for a frame that must come.
pub const WAIT: Duration = Duration::from_secs(10);

/// How tests wait for a condition that no event announces: up to three times [`WAIT`]
/// (these conditions may involve child processes, rate limits refilling or a database on
/// a shared machine), looking every 25 ms.
pub const POLL: Poll = Poll::up_to(Duration::from_secs(30)).every(Duration::from_millis(25));

/// Checks `check` until it gives Some, or panics after [`POLL`]'s bound.
pub async fn wait_until<T>(what: &str, check: impl AsyncFnMut() -> Option<T>) -> T {
    POLL.until_with(what, check).await
}

/// [`wait_until`] for a check that does not wait itself.
pub async fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    POLL.until_async(what, check).await
}

pub struct Env {
    pub relay: Relay,
    pub dir: tempfile::TempDir,
    pub users: Users,
    pub db: PathBuf,
    /// Tokens of the users 1 (wang1), 2 (wang2) and 3 (wang3), by index 1..=3.
    pub tokens: Vec<String>,
}

impl Env {
    pub fn token(&self, user: usize) -> &str {
        &self.tokens[user]
    }

    pub fn ws_url(&self) -> String {
        self.relay.ws_url()
    }

    pub fn http_url(&self) -> String {
        self.relay.http_url()
    }

    /// A config like the first one, on the same database and users, for a restart.
    pub fn config(&self) -> RelayConfig {
        test_config(self.users.clone(), self.db.clone())
    }

    /// Stops the relay, runs `meanwhile` on the database's path, and starts it again on
    /// the same users and database.
    pub async fn restart(self, meanwhile: impl FnOnce(&Path)) -> Env {
        let Env { relay, dir, users, db, tokens } = self;
        relay.shutdown().await;
        meanwhile(&db);
        let relay = start_on(users.clone(), db.clone()).await;
        Env { relay, dir, users, db, tokens }
    }

    /// Posts `n` talks from user 2 to `to` ("{prefix}0", "{prefix}1", …); their seqs.
    pub async fn post_n(&self, to: u64, n: usize, prefix: &str) -> Vec<u64> {
        let mut seqs = Vec::new();
        for i in 0..n {
            seqs.push(post_talk(&self.http_url(), self.token(2), to, &format!("{prefix}{i}")).await.unwrap().seq);
        }
        seqs
    }

    /// One POST as `sender`: the status and the JSON body.
    pub async fn post_as(&self, sender: usize, to: u64, text: &str) -> (u16, Value) {
        let body = json!({"to": to, "talk": text}).to_string();
        raw_post(self.relay.local_addr(), Some(&format!("Bearer {}", self.token(sender))), body.as_bytes()).await
    }

    /// Runs `f` on the relay's database through a read-only connection of the test's
    /// own, which never holds up the relay's writes (nor makes them fail).
    fn peek<R>(&self, f: impl FnOnce(&rusqlite::Connection) -> Result<R, StoreError>) -> R {
        let conn = rusqlite::Connection::open_with_flags(&self.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        conn.busy_timeout(WAIT).unwrap();
        f(&conn).unwrap()
    }

    /// How many talks are queued for `user`.
    pub fn queued(&self, user: u64) -> usize {
        self.peek(|c| Store::queued(c, &UserId::from(user)))
    }

    /// How many devices `user` has.
    pub fn devices(&self, user: u64) -> usize {
        self.peek(|c| Store::devices(c, &UserId::from(user)))
    }

    /// Sends an ack of `seq` on `ws`, the connection of `user`'s device `uuid`, and waits
    /// until the relay has recorded it (acks are written at most every 100 ms).
    pub async fn ack(&self, ws: &mut Ws, user: u64, uuid: &str, seq: u64) {
        send_text(ws, json!({"type": "ack", "seq": seq}).to_string()).await;
        self.wait_acked(user, uuid, seq).await;
    }

    /// Waits until `user`'s device `uuid` has acked `seq` or more.
    pub async fn wait_acked(&self, user: u64, uuid: &str, seq: u64) {
        let acked = |c: &rusqlite::Connection| {
            let sql = "SELECT acked FROM devices WHERE recipient = ?1 AND uuid = ?2";
            let acked = c.query_row(sql, [user.to_string(), uuid.to_owned()], |r| r.get::<_, i64>(0));
            Ok(acked.ok())
        };
        let what = format!("device {uuid} of user {user} to ack {seq}");
        eventually(&what, || self.peek(acked).filter(|&a| a >= i64::try_from(seq).unwrap()).map(drop)).await;
    }
}

pub fn test_config(users: Users, db: PathBuf) -> RelayConfig {
    let mut cfg = RelayConfig::new("127.0.0.1:0".parse().unwrap(), users, db);
    // Tests post quickly; the limits have tests of their own.
    cfg.http_rate = talkbell_relay::RateLimit::unlimited();
    cfg.ws_rate = talkbell_relay::RateLimit::unlimited();
    cfg
}

pub async fn start() -> Env {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut RelayConfig)) -> Env {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut users = Users::new();
    let mut tokens = vec![String::new()];
    for i in 1..=3u64 {
        tokens.push(users.add(i, format!("wang{i}")));
    }
    let db = dir.path().join("relay.db");
    let mut cfg = test_config(users.clone(), db.clone());
    tweak(&mut cfg);
    let relay = talkbell_relay::start(cfg).await.expect("relay starts");
    Env { relay, dir, users, db, tokens }
}

/// A relay of the test config on these users and this database.
pub async fn start_on(users: Users, db: PathBuf) -> Relay {
    talkbell_relay::start(test_config(users, db)).await.expect("relay starts")
}

/// Says hello with a token the relay must refuse: the error frame, then close 4001.
pub async fn refused(url: &str, token: &str) {
    let mut ws = connect(url).await;
    send_text(&mut ws, hello_text(token, "refused-dev", None)).await;
    let err = next_json(&mut ws).await;
    assert_eq!(err["code"], "unauthorized", "{err}");
    assert_eq!(close_code(&mut ws).await, Some(4001));
}

pub async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect");
    ws
}

pub fn hello_text(token: &str, uuid: &str, resume: Option<u64>) -> String {
    let mut v = json!({"uuid": uuid, "token": token, "client": "test/0"});
    if let Some(r) = resume {
        v["resume"] = r.into();
    }
    v.to_string()
}

/// A hello with `resume` and the `epoch` it was stored with.
pub fn hello_with_epoch(token: &str, uuid: &str, resume: u64, epoch: &str) -> String {
    json!({"uuid": uuid, "token": token, "client": "test/0", "resume": resume, "epoch": epoch}).to_string()
}

/// Connects, sends `hello` and returns the socket and the welcome.
pub async fn welcomed(url: &str, hello: String) -> (Ws, Value) {
    let mut ws = connect(url).await;
    send_text(&mut ws, hello).await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

/// A `send` frame (PROTOCOL.md 1.4).
pub fn send_frame(id: &str, to: u64, talk: &str) -> String {
    json!({"type": "send", "id": id, "to": {"id": to}, "talk": talk}).to_string()
}

/// Sends a `send` and returns the answer, a `sent` or an error frame (talks to this same
/// connection in between are skipped).
pub async fn sent(ws: &mut Ws, id: &str, to: u64, talk: &str) -> Value {
    send_text(ws, send_frame(id, to, talk)).await;
    loop {
        let v = next_json(ws).await;
        if v.get("form").is_none() {
            return v;
        }
    }
}

pub async fn send_text(ws: &mut Ws, text: impl Into<String>) {
    ws.send(Message::text(text.into())).await.expect("send");
}

/// Connects, says hello and checks the welcome.
pub async fn signed_in(url: &str, token: &str, uuid: &str, resume: Option<u64>) -> Ws {
    let mut ws = connect(url).await;
    send_text(&mut ws, hello_text(token, uuid, resume)).await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws
}

/// The next frame, which must be text (pings and pongs skipped).
pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .expect("a frame");
        match msg {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

pub async fn next_json(ws: &mut Ws) -> Value {
    let text = next_text(ws).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The next talk's seq, checking it is a talk.
pub async fn next_talk(ws: &mut Ws) -> Value {
    let v = next_json(ws).await;
    assert!(v.get("form").is_some(), "expected a talk, got {v}");
    v
}

/// Reads until the close frame and returns its code (None: closed without one).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("the close in time") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("connection failed instead of closing: {e}"),
            None => return None,
        }
    }
}

/// A heartbeat round trip: proves the connection is still open and served, and that
/// nothing came before the answer (a replay is written before the first frame is read).
pub async fn assert_alive(ws: &mut Ws) {
    send_text(ws, "online").await;
    assert_eq!(next_text(ws).await, "online");
}

/// Sends a ping with `mark` and returns the text frames that arrive before its pong: the
/// relay answers frames in order, so these are the answers to all it was sent before.
pub async fn texts_before_pong(ws: &mut Ws, mark: &[u8]) -> Vec<String> {
    ws.send(Message::Ping(mark.to_vec().into())).await.expect("send a ping");
    let mut texts = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .expect("a frame");
        match msg {
            Message::Pong(p) if p.as_ref() == mark => return texts,
            Message::Text(t) => texts.push(t.to_string()),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text or the pong, got {other:?}"),
        }
    }
}

/// One raw HTTP/1.1 request; returns the status and the body.
pub async fn raw_http(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let text = raw_exchange(tcp, addr, b"", head, body).await;
    let status: u16 =
        text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A TCP connection to `addr` from the local address `from` (on Linux any 127.x.y.z is a
/// loopback address: a test plays several machines).
pub async fn tcp_from(from: std::net::IpAddr, addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(from, 0)).unwrap();
    tokio::time::timeout(WAIT, socket.connect(addr)).await.expect("connect in time").expect("connect")
}

/// A WebSocket from the local address `from` (any 127.x.y.z reaches the relay).
pub async fn connect_from(from: std::net::IpAddr, relay: std::net::SocketAddr, url: &str) -> Ws {
    ws_over(tcp_from(from, relay).await, b"", url).await
}

/// A WebSocket over `tcp` after `prefix` (a PROXY header, say) is written on it.
pub async fn ws_over(mut tcp: TcpStream, prefix: &[u8], url: &str) -> Ws {
    tcp.write_all(prefix).await.unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await.expect("handshake");
    ws
}

/// Writes `prefix` (a PROXY header, say) and one raw HTTP/1.1 request on `tcp` (a TCP
/// or TLS stream); returns
/// everything that came back until the server closed (empty if it closed at once).
pub async fn raw_exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut tcp: S,
    addr: std::net::SocketAddr,
    prefix: &[u8],
    head: &str,
    body: &[u8],
) -> String {
    let mut req = head.replace('\n', "\r\n");
    if !req.ends_with("\r\n") {
        req.push_str("\r\n");
    }
    req.push_str(&format!("Host: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len()));
    let _ = tcp.write_all(&[prefix, req.as_bytes()].concat()).await;
    // The server may answer (413) before reading the whole body; ignore a failed write.
    let _ = tcp.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await.expect("an answer in time");
    String::from_utf8_lossy(&out).to_string()
}

/// The head of a POST /v1/talk with the given Authorization header (if any).
pub fn post_head(auth: Option<&str>) -> String {
    let mut head = String::from("POST /v1/talk HTTP/1.1\nContent-Type: application/json\n");
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\n"));
    }
    head
}

/// A POST /v1/talk with the given Authorization header (if any) and body.
pub async fn raw_post(addr: std::net::SocketAddr, auth: Option<&str>, body: &[u8]) -> (u16, Value) {
    let (status, body) = raw_http(addr, &post_head(auth), body).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {body:?}"));
    (status, v)
}

/// A users file with wang1 and wang2 in a new directory; their tokens.
pub fn users_file() -> (tempfile::TempDir, std::path::PathBuf, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    let mut users = Users::new();
    let t1 = users.add(1, "wang1");
    let t2 = users.add(2, "wang2");
    users.save(&file).unwrap();
    (dir, file, t1, t2)
}

pub fn serve_args(file: &std::path::Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["--listen".into(), "127.0.0.1:0".into(), "--users".into()];
    args.push(file.into());
    args.extend(extra.iter().map(Into::into));
    args
}

/// Reads until the peer closes (or resets); panics if it is still open after the deadline.
pub async fn wait_closed(tcp: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    match tokio::time::timeout(WAIT * 3, tcp.read_to_end(&mut got)).await {
        Ok(_) => got,
        Err(_) => panic!("{what}: the relay kept the connection open"),
    }
}
