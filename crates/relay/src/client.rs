//! The client of `POST /v1/talk`, for `talkbell-relay send` and for tests.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{header, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use talkbell_core::protocol::UserId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::users::IntoUserId;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What the relay answered to a talk it stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posted {
    pub seq: u64,
    /// Milliseconds since the Unix epoch, server time.
    pub ts: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("bad server URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("the token cannot be sent: it has characters not allowed in a header")]
    BadToken,
    #[error("cannot find the server {host}: {source}")]
    Resolve { host: String, source: std::io::Error },
    #[error("{addr} refused the connection: is the relay running there?")]
    Refused { addr: String, source: std::io::Error },
    #[error("{addr} did not answer within {} s", .after.as_secs())]
    ConnectTimeout { addr: String, after: Duration },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("{host} is not a name a certificate can be for: {source}")]
    BadHostName { host: String, source: rustls::pki_types::InvalidDnsNameError },
    #[error("TLS with {host} failed: {source}")]
    Tls { host: String, source: rustls::Error },
    #[error("TLS with {host} failed: {source}")]
    TlsIo { host: String, source: std::io::Error },
    #[error("the server's certificate is not trusted: {}", untrusted_reason(.cause))]
    Untrusted { host: String, cause: rustls::CertificateError },
    #[error("the server's certificate is not valid for the name {host}: {cause}")]
    WrongHost { host: String, cause: rustls::CertificateError },
    #[error("the server's certificate has expired")]
    Expired { host: String, cause: rustls::CertificateError },
    #[error("the server's certificate is not valid yet (is this machine's clock right?)")]
    NotYetValid { host: String, cause: rustls::CertificateError },
    #[error("{host} did not answer in TLS: is it a plain http:// server?")]
    NotTls { host: String },
    #[error("the server did not answer in HTTP: is it a TLS server (https://)?")]
    NotHttp,
    #[error("the server did not answer within {} s", .after.as_secs())]
    Timeout { after: Duration },
    #[error("the server answered {status}: {message}")]
    Http { status: u16, message: String },
    #[error("the request cannot be written: {0}")]
    Request(#[source] axum::http::Error),
    #[error("the HTTP exchange failed: {0}")]
    Protocol(#[source] hyper::Error),
    #[error("the server's answer cannot be read: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the server's answer is not understood: {0}")]
    BadResponse(#[source] serde_json::Error),
}

impl SendError {
    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            SendError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

struct Target {
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, SendError> {
    let bad = |reason: &str| SendError::BadUrl { url: url.to_owned(), reason: reason.to_owned() };
    let trimmed = url.trim();
    let with_scheme = if trimmed.contains("://") { trimmed.to_owned() } else { format!("http://{trimmed}") };
    let uri: Uri = with_scheme.parse().map_err(|e| bad(&format!("{e}")))?;
    let tls = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http") | Some("ws") => false,
        Some("https") | Some("wss") => true,
        _ => return Err(bad("the scheme must be http, https, ws or wss")),
    };
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL are not supported; use the token"));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = format!("{}/v1/talk", uri.path().trim_end_matches('/'));
    Ok(Target { tls, host, port, authority: authority.as_str().to_owned(), path })
}

/// The operating system's trusted certificates (on Linux the system bundle, or the
/// files `SSL_CERT_FILE` and `SSL_CERT_DIR` name), read once per process. A system with
/// no readable store falls back to the public roots built in (webpki-roots).
fn root_store() -> rustls::RootCertStore {
    let loaded = rustls_native_certs::load_native_certs();
    for e in &loaded.errors {
        tracing::warn!(error = %e, "cannot read some of the system's trusted certificates");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(loaded.certs);
    if unusable > 0 {
        tracing::debug!(unusable, "some system certificates cannot be used and were skipped");
    }
    if roots.is_empty() {
        tracing::warn!("the system has no trusted certificates; using the built-in public roots");
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    static TLS: OnceLock<Result<Arc<rustls::ClientConfig>, rustls::Error>> = OnceLock::new();
    TLS.get_or_init(|| {
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(root_store())
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    })
    .clone()
}

/// The error of a failed TLS handshake, told apart by what the user can do about it.
fn tls_error(host: &str, e: std::io::Error) -> SendError {
    use rustls::CertificateError as C;
    let host = host.to_owned();
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).cloned() else {
        return SendError::TlsIo { host, source: e };
    };
    match tls {
        rustls::Error::InvalidCertificate(c @ (C::NotValidForName | C::NotValidForNameContext { .. })) => {
            SendError::WrongHost { host, cause: c }
        }
        rustls::Error::InvalidCertificate(c @ (C::Expired | C::ExpiredContext { .. })) => {
            SendError::Expired { host, cause: c }
        }
        rustls::Error::InvalidCertificate(c @ (C::NotValidYet | C::NotValidYetContext { .. })) => {
            SendError::NotYetValid { host, cause: c }
        }
        rustls::Error::InvalidCertificate(c) => SendError::Untrusted { host, cause: c },
        rustls::Error::InvalidMessage(_) => SendError::NotTls { host },
        other => SendError::Tls { host, source: other },
    }
}

/// The reason a certificate is not trusted, in words.
/// The reason a certificate is not trusted, in words (the same as talkbell-core's).
fn untrusted_reason(e: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    match e {
        C::UnknownIssuer => {
            "unknown issuer (self-signed, or from a certificate authority not in the system store)".into()
        }
        C::BadSignature => "its signature is not valid".into(),
        C::Revoked => "it has been revoked".into(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => "it is not meant for a TLS server".into(),
        C::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            "it is a certificate authority's certificate, used as the server's own".into()
        }
        C::Other(other) => other.to_string(),
        other => other.to_string(),
    }
}

/// Posts a talk to a relay and returns its `seq` and `ts` once the relay has stored it.
///
/// `http_url` is the relay's base URL: `http://host:port` (a path prefix is kept, for a
/// relay behind a proxy); `ws://` and `wss://` are taken as `http://` and `https://`.
pub async fn post_talk(
    http_url: impl AsRef<str>,
    token: impl AsRef<str>,
    to: impl IntoUserId,
    text: impl AsRef<str>,
) -> Result<Posted, SendError> {
    let target = parse_url(http_url.as_ref())?;
    let request = talk_request(&target, token.as_ref(), to.into_user_id(), text.as_ref())?;
    let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, round_trip(&target, request))
        .await
        .map_err(|_| SendError::Timeout { after: REQUEST_TIMEOUT })??;
    answer(status, &bytes)
}

/// The `POST /v1/talk` request, its token marked sensitive.
fn talk_request(target: &Target, token: &str, to: UserId, text: &str) -> Result<Request<Full<Bytes>>, SendError> {
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| SendError::BadToken)?;
    auth.set_sensitive(true);
    let body = serde_json::json!({"to": to, "talk": text}).to_string();
    Request::post(target.path.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::AUTHORIZATION, auth)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, concat!("talkbell-relay/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from(body)))
        .map_err(SendError::Request)
}

/// Connects (TCP within the connect timeout, then TLS if the URL says so) and sends the
/// request; the answer's status and body.
async fn round_trip(target: &Target, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), SendError> {
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, connect(target)).await {
        Ok(tcp) => tcp?,
        Err(_) => {
            let addr = format!("{}:{}", target.host, target.port);
            return Err(SendError::ConnectTimeout { addr, after: CONNECT_TIMEOUT });
        }
    };
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return exchange(tcp, request, false).await;
    }
    let host = || target.host.clone();
    let name = rustls::pki_types::ServerName::try_from(target.host.clone())
        .map_err(|source| SendError::BadHostName { host: host(), source })?;
    let config = tls_config().map_err(|source| SendError::Tls { host: host(), source })?;
    let stream =
        tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| tls_error(&target.host, e))?;
    exchange(stream, request, true).await
}

/// The TCP connection: the host's addresses looked up, then each tried in turn.
async fn connect(target: &Target) -> Result<TcpStream, SendError> {
    let addr = format!("{}:{}", target.host, target.port);
    let addrs: Vec<_> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|source| SendError::Resolve { host: target.host.clone(), source })?
        .collect();
    TcpStream::connect(&addrs[..]).await.map_err(|source| match source.kind() {
        std::io::ErrorKind::ConnectionRefused => SendError::Refused { addr, source },
        _ => SendError::Connect { addr, source },
    })
}

/// A 200's `seq` and `ts`, or the error the relay gave (its `error` field, else the body
/// or the status's reason).
fn answer(status: StatusCode, bytes: &[u8]) -> Result<Posted, SendError> {
    if status == StatusCode::OK {
        #[derive(serde::Deserialize)]
        struct Answer {
            seq: u64,
            ts: i64,
        }
        let a: Answer = serde_json::from_slice(bytes).map_err(SendError::BadResponse)?;
        return Ok(Posted { seq: a.seq, ts: a.ts });
    }
    let message = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(bytes).trim().to_owned();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                text.chars().take(300).collect()
            }
        });
    Err(SendError::Http { status: status.as_u16(), message })
}

async fn exchange<S>(stream: S, request: Request<Full<Bytes>>, tls: bool) -> Result<(StatusCode, Bytes), SendError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A TLS server answers plain HTTP with a TLS alert, which is not HTTP.
    let proto = |e: hyper::Error| {
        if e.is_parse() && !tls {
            SendError::NotHttp
        } else {
            SendError::Protocol(e)
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(proto)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let resp = sender.send_request(request).await.map_err(proto)?;
        let status = resp.status();
        let bytes =
            Limited::new(resp.into_body(), MAX_RESPONSE_BYTES).collect().await.map_err(SendError::Body)?.to_bytes();
        Ok((status, bytes))
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("ws://127.0.0.1:8080/").unwrap();
        assert!(!t.tls);
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("127.0.0.1", 8080, "/v1/talk"));
        let t = parse_url("wss://relay.example/base/").unwrap();
        assert!(t.tls);
        assert_eq!((t.port, t.path.as_str(), t.authority.as_str()), (443, "/base/v1/talk", "relay.example"));
        let t = parse_url("http://[::1]:9").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        let t = parse_url("localhost:1234").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("localhost", 1234, false));
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://u:p@x").is_err());
    }
}
