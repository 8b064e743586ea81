//! Certificates made by the test (rcgen), a TLS WebSocket server on a real socket that
//! sends a welcome, and a small HTTP CONNECT proxy that counts what it carries.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

pub const WELCOME: &str = r#"{"type": "welcome", "user": {"id": 1, "name": "wang1"}}"#;

/// A certificate authority made for one test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Roots holding this CA alone.
    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der()).unwrap();
        roots
    }

    /// A leaf for these names (an IP address becomes an IP SAN).
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    /// A leaf whose validity ended yesterday.
    pub fn expired_leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }

    fn leaf_with(&self, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "talkbell test server");
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { chain: vec![cert.der().clone()], key: key.serialize_der() }
    }
}

impl Leaf {
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)
            .unwrap();
        Arc::new(config)
    }
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
        let acceptor = tokio_rustls::TlsAcceptor::from(leaf.server_config());
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
