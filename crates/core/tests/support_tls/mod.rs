//! The test's certificates (the testkit's), a TLS WebSocket server on a real socket that
//! sends a welcome, and a small HTTP CONNECT proxy that counts what it carries.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

pub const WELCOME: &str = r#"{"type": "welcome", "user": {"id": 1, "name": "wang1"}}"#;

pub use talkbell_testkit::tls::{Ca, Leaf};

/// A rustls server config presenting `leaf`.
fn server_config(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key) = leaf.chain_and_key();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// A `wss://` server: TLS with one leaf, the WebSocket handshake, a welcome after the
/// hello, then `online` answered until the client goes.
pub struct TlsServer {
    pub addr: SocketAddr,
    accepted: Arc<Mutex<usize>>,
    welcomed: Arc<Mutex<usize>>,
}

impl TlsServer {
    pub async fn start(leaf: &Leaf) -> TlsServer {
        Self::start_on("127.0.0.1:0".parse().unwrap(), leaf).await
    }

    /// The same, on this address.
    pub async fn start_on(addr: SocketAddr, leaf: &Leaf) -> TlsServer {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(leaf));
        let (accepted, welcomed) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
        let (count, sent) = (accepted.clone(), welcomed.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                *count.lock().unwrap() += 1;
                let (acceptor, sent) = (acceptor.clone(), sent.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let Ok(ws) = tokio_tungstenite::accept_async(tls).await else { return };
                    serve(ws, sent).await;
                });
            }
        });
        TlsServer { addr, accepted, welcomed }
    }

    /// `wss://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("wss://{}/", self.addr)
    }

    /// TCP connections accepted (one per attempt).
    pub fn accepted(&self) -> usize {
        *self.accepted.lock().unwrap()
    }

    pub fn welcomed(&self) -> usize {
        *self.welcomed.lock().unwrap()
    }
}

async fn serve<S>(mut ws: tokio_tungstenite::WebSocketStream<S>, sent: Arc<Mutex<usize>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut welcomed = false;
    while let Some(Ok(m)) = ws.next().await {
        let Message::Text(text) = m else { continue };
        if !welcomed && text.contains("\"token\"") {
            welcomed = true;
            *sent.lock().unwrap() += 1;
            let _ = ws.send(Message::text(WELCOME)).await;
        } else if text.as_str() == "online" {
            let _ = ws.send(Message::text("online")).await;
        }
    }
}

/// What the proxy answers a CONNECT with.
#[derive(Clone, Copy, Debug)]
pub enum ProxyMode {
    /// 200, then the bytes both ways.
    Tunnel,
    /// This status (407 asks for credentials), then close.
    Refuse(u16),
}

/// One CONNECT the proxy saw.
#[derive(Clone, Debug)]
pub struct Connect {
    /// `host:port` of the request line.
    pub target: String,
    /// The `Proxy-Authorization` header, if any.
    pub authorization: Option<String>,
}

/// An HTTP proxy that knows only CONNECT.
pub struct Proxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Connect>>>,
}

impl Proxy {
    pub async fn start(mode: ProxyMode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(carry(tcp, mode, log.clone()));
            }
        });
        Proxy { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connects(&self) -> Vec<Connect> {
        self.seen.lock().unwrap().clone()
    }
}

async fn carry(mut client: TcpStream, mode: ProxyMode, seen: Arc<Mutex<Vec<Connect>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or_default().to_owned();
    let mut parts = request.split(' ');
    if parts.next() != Some("CONNECT") {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n").await;
        return;
    }
    let target = parts.next().unwrap_or_default().to_owned();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_owned());
    seen.lock().unwrap().push(Connect { target: target.clone(), authorization });
    match mode {
        ProxyMode::Refuse(status) => {
            let answer = format!(
                "HTTP/1.1 {status} Refused\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = client.write_all(answer.as_bytes()).await;
        }
        ProxyMode::Tunnel => {
            let Ok(mut server) = TcpStream::connect(&target).await else {
                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                return;
            };
            if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        }
    }
}
