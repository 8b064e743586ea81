//! A scripted WebSocket server on a real socket, and a recording store, for session tests.
//!
//! The relay never misbehaves on purpose, so the cases where a server goes silent, sends
//! garbage or refuses us are played by this server instead; it speaks over real TCP.
#![allow(dead_code)]

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use talkbell_core::protocol::{Seq, TalkMessage, Token, UserId};
use talkbell_core::session::{
    Credentials, ProxySettings, SessionConfig, SessionEvent, SessionHandle, SessionState, StoreError, Stored,
    TalkStore, Timing, Transport,
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

/// A TalkStore in memory, standing in for the SQLite history in these unit-level tests
/// (the real one is tested against a real file in the app's tests).
#[derive(Default)]
pub struct MemStore {
    pub talks: Mutex<Vec<TalkMessage>>,
    seqs: Mutex<HashSet<(String, String, u64)>>,
    pub fail: Mutex<bool>,
}

impl TalkStore for MemStore {
    fn last_seq(&self, server: &str, user: &UserId) -> Result<Option<Seq>, StoreError> {
        let seqs = self.seqs.lock().unwrap();
        Ok(seqs.iter().filter(|(s, u, _)| s == server && u == user.as_str()).map(|(_, _, n)| Seq(*n)).max())
    }
    fn store(&self, server: &str, talk: &TalkMessage) -> Result<Stored, StoreError> {
        if *self.fail.lock().unwrap() {
            return Err(StoreError("disk full".into()));
        }
        if let Some(seq) = talk.seq {
            if !self.seqs.lock().unwrap().insert((server.to_owned(), talk.to.id.as_str().to_owned(), seq.0)) {
                return Ok(Stored::Duplicate);
            }
        }
        let mut talks = self.talks.lock().unwrap();
        talks.push(talk.clone());
        Ok(Stored::New(talks.len() as i64))
    }
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
    mut pick: impl FnMut(&SessionEvent) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    if let Some(t) = pick(&ev) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event channel closed: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await.expect("timed out waiting for an event")
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
