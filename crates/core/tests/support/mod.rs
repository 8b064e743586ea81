//! A scripted WebSocket server on a real socket, and a real history, for session tests.
//!
//! The relay never misbehaves on purpose, so the cases where a server goes silent, sends
//! garbage or refuses us are played by this server instead; it speaks over real TCP.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use talkbell_core::history::{History, HistoryError, HistoryQuery};
use talkbell_core::protocol::{Seq, TalkMessage, Token, UserId};
use talkbell_core::session::{
    Credentials, ProxySettings, SessionConfig, SessionEvent, SessionHandle, SessionState, Timing, Transport,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type ServerWs = WebSocketStream<TcpStream>;

/// A server whose every accepted connection is handed to `script`, with its index.
pub struct Scripted {
    pub addr: SocketAddr,
    pub accepted: Arc<Mutex<usize>>,
}

impl Scripted {
    pub async fn start<F, Fut>(script: F) -> Scripted
    where
        F: Fn(usize, ServerWs) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(0));
        let count = accepted.clone();
        let script = Arc::new(script);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let n = {
                    let mut c = count.lock().unwrap();
                    *c += 1;
                    *c
                };
                let script = script.clone();
                tokio::spawn(async move {
                    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                        .max_message_size(None)
                        .max_frame_size(None);
                    if let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await {
                        script(n, ws).await;
                    }
                });
            }
        });
        Scripted { addr, accepted }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap()
    }
}

/// Reads the next text frame a client sent, answering nothing.
pub async fn next_text(ws: &mut ServerWs) -> Option<String> {
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Text(t) = m {
            return Some(t.to_string());
        }
    }
    None
}

pub async fn send_text(ws: &mut ServerWs, text: impl Into<String>) {
    let _ = ws.send(Message::text(text.into())).await;
}

/// Keeps reading until the client goes, answering `online` with `online`; every text
/// frame is forwarded to `seen`.
pub async fn echo_heartbeats(mut ws: ServerWs, seen: mpsc::UnboundedSender<String>) {
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Text(t) = m {
            let t = t.to_string();
            if t == "online" {
                let _ = ws.send(Message::text("online")).await;
            }
            let _ = seen.send(t);
        }
    }
}

/// The session's store in these tests: the real history, in a file in `dir`.
pub fn history(dir: &tempfile::TempDir) -> Arc<History> {
    Arc::new(History::open(&dir.path().join("data/history.sqlite3")).unwrap())
}

/// The texts of every talk in `h`, oldest first.
pub fn texts(h: &History) -> Vec<String> {
    let mut all: Vec<String> =
        h.list(&HistoryQuery { limit: 100, ..Default::default() }).unwrap().into_iter().map(|e| e.talk).collect();
    all.reverse();
    all
}

/// Caps `h` and fills it (with talks from another server, ever shorter down to one
/// character) until it is a full disk: any talk stored next fails with `DiskFull` until
/// [`make_room`].
pub fn fill_up(h: &History) {
    h.set_max_pages_for_test(64);
    let mut seq = 0;
    for len in [100_000, 10_000, 1_000, 100, 10, 1] {
        let text = "z".repeat(len);
        loop {
            seq += 1;
            let filler = TalkMessage { seq: Some(Seq(seq)), ..TalkMessage::for_test("filler", &text) };
            match h.insert("ws://filler.invalid/", &filler) {
                Ok(_) => assert!(seq < 10_000, "the capped file never fills up"),
                Err(HistoryError::DiskFull) => break,
                Err(e) => panic!("filling the history up: {e}"),
            }
        }
    }
}

/// Lifts the cap [`fill_up`] set: there is room again.
pub fn make_room(h: &History) {
    h.set_max_pages_for_test(1_000_000);
}

pub fn fast_timing() -> Timing {
    Timing {
        heartbeat_interval: Duration::from_millis(300),
        heartbeat_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(5),
        close_timeout: Duration::from_millis(500),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        healthy_after: Duration::from_secs(30),
    }
}

pub fn config(timing: Timing) -> SessionConfig {
    let mut c = SessionConfig::new("device-uuid-1", timing);
    c.jitter_seed = Some(7);
    // Whatever proxies the machine's environment names, these servers are local.
    c.transport = Transport::new(rustls::RootCertStore::empty(), &ProxySettings::default());
    c
}

pub fn creds(url: &str, user: Option<u64>) -> Credentials {
    Credentials {
        server: url.to_owned(),
        token: Token::new("secret-token-1").unwrap(),
        user_id: user.map(UserId::from),
    }
}

/// Waits (generously) for an event that `pick` accepts.
pub async fn wait_event<T>(
    rx: &mut broadcast::Receiver<SessionEvent>,
    pick: impl FnMut(&SessionEvent) -> Option<T>,
) -> T {
    talkbell_testkit::wait::next_picked(rx, Duration::from_secs(20), "an event", pick).await
}

pub async fn wait_state(handle: &SessionHandle, pred: impl Fn(&SessionState) -> bool) -> SessionState {
    tokio::time::timeout(Duration::from_secs(20), handle.wait_for(pred)).await.expect("timed out waiting for a state")
}

pub const SAMPLE: &str = r#"{"form": {"id": 2, "name": "wang2", "talk": "hello"}, "to": {"id": 1, "name": "wang1"}}"#;

pub fn talk_json(seq: u64, to: u64, text: &str) -> String {
    format!(
        r#"{{"form": {{"id": 2, "name": "wang2", "talk": "{text}"}}, "to": {{"id": {to}, "name": "u{to}"}}, "seq": {seq}}}"#
    )
}

/// Everything logged on the test's thread, as text. The session's task must run there
/// too: the tests that read it use a current-thread runtime.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Starts capturing this thread's log, at debug, until the guard is dropped.
    pub fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub fn lines_with(&self, text: &str) -> usize {
        self.text().lines().filter(|l| l.contains(text)).count()
    }

    pub fn warnings_with(&self, text: &str) -> usize {
        self.text().lines().filter(|l| l.contains("WARN") && l.contains(text)).count()
    }

    /// Waits (driving the runtime) until `n` lines contain `text`.
    pub async fn wait_for(&self, n: usize, text: &str) {
        let what = format!("{n} log lines with {text:?}");
        let poll = talkbell_testkit::wait::Poll::up_to(Duration::from_secs(30)).every(Duration::from_millis(20));
        poll.until_async(&what, || (self.lines_with(text) >= n).then_some(())).await;
    }
}

/// A notifier that keeps what it is asked to show, for tests of what would pop up.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<talkbell_core::notify::Notification>>);

impl talkbell_core::notify::Notifier for Recorder {
    fn show(&self, n: &talkbell_core::notify::Notification) -> Result<(), talkbell_core::notify::NotifyError> {
        self.0.lock().unwrap().push(n.clone());
        Ok(())
    }
}
