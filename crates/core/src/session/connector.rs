//! Opening one WebSocket: DNS, TCP (directly or through an HTTP CONNECT proxy), TLS and
//! the handshake, all within the connect timeout. Each failure is an [`OfflineReason`]
//! that names its cause.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{TlsError, UrlError};
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::reason::{self, OfflineReason};
use super::transport::Transport;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<Wire>>;

/// Why a socket could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// HTTP 401/403 to the handshake: the server refuses us; do not retry on our own.
    Rejected { status: u16 },
    /// Anything else: try again later.
    Failed(OfflineReason),
}

impl From<OfflineReason> for ConnectError {
    fn from(reason: OfflineReason) -> Self {
        ConnectError::Failed(reason)
    }
}

pub(crate) fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(max_message_bytes)).max_frame_size(Some(max_message_bytes))
}

/// Where a server URL points.
struct Target {
    request: Request,
    /// Without IPv6 brackets.
    host: String,
    port: u16,
    tls: bool,
}

impl Target {
    fn parse(server: &str) -> Result<Target, OfflineReason> {
        let bad = |detail: String| OfflineReason::BadUrl { url: server.to_owned(), detail };
        let request = server.into_client_request().map_err(|e| bad(e.to_string()))?;
        let uri = request.uri();
        let tls = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => return Err(bad("it must start with ws:// or wss://".into())),
        };
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(bad("it names no host".into()));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target { request, host, port, tls })
    }
}

pub(crate) async fn open(
    server: &str,
    transport: &Transport,
    timeout: Duration,
    max_message_bytes: usize,
) -> Result<Ws, ConnectError> {
    let target = Target::parse(server)?;
    match tokio::time::timeout(timeout, handshake(target, transport, max_message_bytes)).await {
        Err(_) => Err(OfflineReason::TimedOut { after: timeout }.into()),
        Ok(result) => result,
    }
}

async fn handshake(target: Target, transport: &Transport, max_message_bytes: usize) -> Result<Ws, ConnectError> {
    let connector = match (target.tls, transport.tls()) {
        (false, _) => Connector::Plain,
        (true, Some(config)) => Connector::Rustls(config),
        (true, None) => return Err(OfflineReason::Tls { detail: "TLS is not available in this build".into() }.into()),
    };
    let tcp = match transport.proxy_for(&target.host, target.port, target.tls) {
        // The proxy resolves the server's name: inside a company, often the only one that can.
        Some(proxy) => super::proxy::tunnel(&proxy, &target.host, target.port).await.map_err(OfflineReason::from)?,
        None => dial(&target.host, target.port).await?,
    };
    let first = Arc::new(OnceLock::new());
    let wire = Wire { tcp, first: first.clone() };
    let (host, tls) = (target.host.clone(), target.tls);
    let attempt = tokio_tungstenite::client_async_tls_with_config(
        target.request,
        wire,
        Some(ws_config(max_message_bytes)),
        Some(connector),
    );
    match attempt.await {
        Ok((ws, _response)) => Ok(ws),
        Err(e) => Err(classify(e, &host, tls, first.get().copied())),
    }
}

/// TCP to the first address of `host` that answers.
async fn dial(host: &str, port: u16) -> Result<TcpStream, OfflineReason> {
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| OfflineReason::Dns { host: host.to_owned(), detail: e.to_string() })?
        .collect();
    let mut last = OfflineReason::Dns { host: host.to_owned(), detail: "no address".into() };
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = OfflineReason::Refused { addr: addr.to_string() };
            }
            Err(e) => last = OfflineReason::Unreachable { addr: addr.to_string(), detail: e.to_string() },
        }
    }
    Err(last)
}

/// What a failed TLS or WebSocket handshake means. `first` is the first byte the server
/// sent: a TLS record to a `ws://` URL, or plain text to a `wss://` one, says the scheme
/// is wrong whatever the error it caused.
fn classify(err: WsError, host: &str, tls: bool, first: Option<u8>) -> ConnectError {
    let speaks_tls = first.map(reason::is_tls_record);
    let reason = match err {
        WsError::Http(response) => {
            let status = response.status().as_u16();
            if status == 401 || status == 403 {
                return ConnectError::Rejected { status };
            }
            // nginx answers plain HTTP on its TLS port with 400 and says why in the body.
            let body = response.body().as_deref().unwrap_or_default();
            if !tls && status == 400 && contains(body, NGINX_PLAIN_TO_TLS) {
                OfflineReason::PortSpeaksTls
            } else {
                OfflineReason::Http { status }
            }
        }
        _ if !tls && speaks_tls == Some(true) => OfflineReason::PortSpeaksTls,
        WsError::Tls(TlsError::Rustls(e)) => reason::from_rustls(&e, host, first),
        WsError::Io(e) => io_reason(&e, host, tls, first),
        WsError::Tls(TlsError::InvalidDnsName) => {
            OfflineReason::BadUrl { url: host.to_owned(), detail: "not a host name TLS can check".into() }
        }
        WsError::Url(UrlError::TlsFeatureNotEnabled) => OfflineReason::Tls { detail: "TLS is not available".into() },
        WsError::Url(e) => OfflineReason::BadUrl { url: host.to_owned(), detail: e.to_string() },
        _ if tls && speaks_tls == Some(false) => OfflineReason::PortSpeaksPlain,
        other => OfflineReason::Handshake { detail: other.to_string() },
    };
    ConnectError::Failed(reason)
}

/// What nginx says, in a 400's body, to plain HTTP on a TLS port.
const NGINX_PLAIN_TO_TLS: &[u8] = b"plain HTTP request was sent to HTTPS port";

/// What the server did when a `wss://` handshake ends before TLS is up, with no word.
const TLS_HUNG_UP: &str =
    "the server closed the connection during the TLS handshake (if this port does not speak TLS, use ws://)";

/// An I/O error of the handshake: tokio-rustls wraps rustls' errors in one.
fn io_reason(e: &std::io::Error, host: &str, tls: bool, first: Option<u8>) -> OfflineReason {
    if let Some(rustls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return reason::from_rustls(rustls, host, first);
    }
    match first.map(reason::is_tls_record) {
        Some(false) if tls => OfflineReason::PortSpeaksPlain,
        None if tls && e.kind() == std::io::ErrorKind::UnexpectedEof => {
            OfflineReason::Tls { detail: TLS_HUNG_UP.into() }
        }
        _ => OfflineReason::Lost { detail: e.to_string() },
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The TCP stream under TLS and the WebSocket, noting the first byte the server sends.
pub(crate) struct Wire {
    tcp: TcpStream,
    first: Arc<OnceLock<u8>>,
}

impl AsyncRead for Wire {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if let Some(byte) = buf.filled().get(before) {
            if self.first.get().is_none() {
                let _ = self.first.set(*byte);
            }
        }
        polled
    }
}

impl AsyncWrite for Wire {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::reason::Untrusted;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    use tokio_tungstenite::tungstenite::http;

    fn http_error(status: u16, body: &[u8]) -> WsError {
        let response = http::Response::builder().status(status).body(Some(body.to_vec())).unwrap();
        WsError::Http(Box::new(response))
    }

    fn rustls_io(e: rustls::Error) -> WsError {
        WsError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    fn failed(err: WsError, tls: bool, first: Option<u8>) -> Option<OfflineReason> {
        match classify(err, "talk.example", tls, first) {
            ConnectError::Failed(reason) => Some(reason),
            ConnectError::Rejected { .. } => None,
        }
    }

    #[test]
    fn handshake_errors_become_reasons() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let eof = || WsError::Io(std::io::ErrorKind::UnexpectedEof.into());
        let garbage = || WsError::Protocol(ProtocolError::HandshakeIncomplete);
        let nginx = b"<html><center>The plain HTTP request was sent to HTTPS port</center></html>";
        let cases: Vec<(WsError, bool, Option<u8>, Option<OfflineReason>)> = vec![
            (http_error(401, b""), true, Some(0x16), None),
            (http_error(403, b""), false, Some(b'H'), None),
            (http_error(404, b""), true, Some(0x16), Some(OfflineReason::Http { status: 404 })),
            (http_error(400, nginx), false, Some(b'H'), Some(OfflineReason::PortSpeaksTls)),
            (http_error(400, b"bad"), false, Some(b'H'), Some(OfflineReason::Http { status: 400 })),
            (
                rustls_io(unknown.clone()),
                true,
                Some(0x16),
                Some(OfflineReason::CertUntrusted(Untrusted::UnknownIssuer)),
            ),
            (
                WsError::Tls(TlsError::Rustls(Box::new(unknown))),
                true,
                Some(0x16),
                Some(OfflineReason::CertUntrusted(Untrusted::UnknownIssuer)),
            ),
            (garbage(), false, Some(0x15), Some(OfflineReason::PortSpeaksTls)),
            (eof(), false, Some(0x15), Some(OfflineReason::PortSpeaksTls)),
            (eof(), true, Some(b'H'), Some(OfflineReason::PortSpeaksPlain)),
            (eof(), true, None, Some(OfflineReason::Tls { detail: TLS_HUNG_UP.into() })),
            (eof(), false, None, Some(OfflineReason::Lost { detail: "unexpected end of file".into() })),
        ];
        for (i, (err, tls, first, want)) in cases.into_iter().enumerate() {
            assert_eq!(failed(err, tls, first), want, "case {i}");
        }
    }

    #[test]
    fn urls_are_checked_before_any_socket() {
        let cases = [
            ("wss://talk.example/ws", Ok(("talk.example", 443, true))),
            ("ws://127.0.0.1:8080/ws", Ok(("127.0.0.1", 8080, false))),
            ("ws://[::1]:9/ws", Ok(("::1", 9, false))),
            ("https://talk.example/ws", Err(())),
            ("not a url", Err(())),
        ];
        for (url, want) in cases {
            let got = Target::parse(url).map(|t| (t.host, t.port, t.tls));
            match (got, want) {
                (Ok((h, p, t)), Ok((wh, wp, wt))) => assert_eq!((h.as_str(), p, t), (wh, wp, wt), "{url}"),
                (Err(OfflineReason::BadUrl { .. }), Err(())) => {}
                (got, _) => panic!("{url}: {:?}", got.map(|_| ())),
            }
        }
    }
}
