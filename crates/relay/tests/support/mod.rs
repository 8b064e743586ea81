//! Shared helpers: a relay in-process on 127.0.0.1:0 with three users, WebSocket clients
//! (tokio-tungstenite), and a raw HTTP/1.1 client for requests `post_talk` never makes;
//! [`tls`]: a test CA and wss clients; [`child`]: the relay binary as a child process.
#![allow(dead_code)]

pub mod child;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use talkbell_relay::{Relay, RelayConfig, Users};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for a frame that must come.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `check` until it gives Some, or panics after [`WAIT`] (three times over: these
/// conditions involve child processes on a shared machine).
pub async fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    talkbell_testkit::wait::Poll::up_to(WAIT * 3).every(Duration::from_millis(20)).until_async(what, check).await
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

/// Nothing arrives for `d`.
pub async fn expect_silence(ws: &mut Ws, d: Duration) {
    if let Ok(Some(msg)) = tokio::time::timeout(d, ws.next()).await {
        panic!("expected nothing, got {msg:?}");
    }
}

/// A heartbeat round trip: proves the connection is still open and served.
pub async fn assert_alive(ws: &mut Ws) {
    send_text(ws, "online").await;
    assert_eq!(next_text(ws).await, "online");
}

/// One raw HTTP/1.1 request; returns the status and the body.
pub async fn raw_http(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = head.replace('\n', "\r\n");
    if !req.ends_with("\r\n") {
        req.push_str("\r\n");
    }
    req.push_str(&format!("Host: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len()));
    tcp.write_all(req.as_bytes()).await.unwrap();
    // The server may answer (413) before reading the whole body; ignore a failed write.
    let _ = tcp.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await.expect("an answer in time");
    let text = String::from_utf8_lossy(&out).to_string();
    let status: u16 =
        text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A POST /v1/talk with the given Authorization header (if any) and body.
pub async fn raw_post(addr: std::net::SocketAddr, auth: Option<&str>, body: &[u8]) -> (u16, Value) {
    let mut head = String::from("POST /v1/talk HTTP/1.1\nContent-Type: application/json\n");
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\n"));
    }
    let (status, body) = raw_http(addr, &head, body).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {body:?}"));
    (status, v)
}
