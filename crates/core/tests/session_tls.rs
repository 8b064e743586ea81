//! `wss://` against a TLS server the test makes, with certificates the test makes, and
//! through an HTTP CONNECT proxy the test starts. Roots and proxies are passed as a
//! [`Transport`] value, so nothing here reads or changes the process's environment
//! (session_tls_env.rs does, in a binary of its own).

mod support;
mod support_tls;

use support::*;
use support_tls::*;
use talkbell_core::session::{
    Identity, OfflineReason, ProxyError, ProxySettings, Session, SessionHandle, SessionState, Transport, Untrusted,
};

/// A session signed in to `url` through `transport`, and the folder of its history.
fn spawn(url: &str, transport: Transport) -> (tempfile::TempDir, SessionHandle) {
    let mut config = config(fast_timing());
    config.transport = transport;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config, Some(creds(url, Some(1))), history(&dir));
    (dir, session)
}

fn direct(ca: &Ca) -> Transport {
    Transport::new(ca.roots(), &ProxySettings::default())
}

/// Waits until the session backs off, and returns why.
async fn offline_reason(session: &SessionHandle) -> OfflineReason {
    match wait_state(session, |s| matches!(s, SessionState::Backoff { .. })).await {
        SessionState::Backoff { reason, .. } => reason,
        other => panic!("not backing off: {other:?}"),
    }
}

async fn connected_as_wang1(session: &SessionHandle) {
    let state = wait_state(session, |s| matches!(s, SessionState::Connected { user: Identity::Welcomed(_) })).await;
    let SessionState::Connected { user: Identity::Welcomed(user) } = state else { panic!("{state:?}") };
    assert_eq!(user.name, "wang1");
}

#[tokio::test]
async fn a_server_certificate_from_the_trusted_ca_connects_and_gets_the_welcome() {
    let ca = Ca::new("Talkbell Test CA");
    let server = TlsServer::start(&ca.leaf(&["127.0.0.1", "localhost"], "talkbell test server")).await;
    let (_dir, session) = spawn(&server.url(), direct(&ca));
    connected_as_wang1(&session).await;
    assert_eq!(server.welcomed(), 1);

    // The host name form of the URL checks the DNS name of the same certificate.
    let (_dir, by_name) = spawn(&format!("wss://localhost:{}/", server.addr.port()), direct(&ca));
    connected_as_wang1(&by_name).await;
    session.shutdown().await;
    by_name.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_untrusted_and_retried_with_backoff() {
    let (ca, other) = (Ca::new("Talkbell Test CA"), Ca::new("Someone Else's CA"));
    let server = TlsServer::start(&other.leaf(&["127.0.0.1"], "talkbell test server")).await;
    let (_dir, session) = spawn(&server.url(), direct(&ca));
    let want = OfflineReason::CertUntrusted(Untrusted::UnknownIssuer);
    assert_eq!(offline_reason(&session).await, want);
    assert!(want.to_string().starts_with("the server's certificate is not trusted: unknown issuer"), "{want}");
    // It keeps trying (a fixed CA or certificate may appear), and says the same each time.
    let state = wait_state(&session, |s| matches!(s, SessionState::Backoff { attempt, .. } if *attempt >= 3)).await;
    assert!(matches!(state, SessionState::Backoff { ref reason, .. } if *reason == want), "{state:?}");
    assert!(server.accepted() >= 3, "{} attempts reached the server", server.accepted());
    assert_eq!(server.welcomed(), 0);
    session.shutdown().await;
}

#[tokio::test]
async fn a_certificate_for_another_host_name_says_so() {
    let ca = Ca::new("Talkbell Test CA");
    let server = TlsServer::start(&ca.leaf(&["other.example"], "talkbell test server")).await;
    let (_dir, session) = spawn(&server.url(), direct(&ca));
    let reason = offline_reason(&session).await;
    assert_eq!(
        reason,
        OfflineReason::CertWrongHost { expected: "127.0.0.1".into(), presented: vec!["other.example".into()] }
    );
    assert_eq!(
        reason.to_string(),
        "the server's certificate is for another host name: it is valid for other.example, not for 127.0.0.1"
    );
    session.shutdown().await;
}

#[tokio::test]
async fn an_expired_certificate_says_so() {
    let ca = Ca::new("Talkbell Test CA");
    let server = TlsServer::start(&ca.expired_leaf(&["127.0.0.1"])).await;
    let (_dir, session) = spawn(&server.url(), direct(&ca));
    let reason = offline_reason(&session).await;
    assert_eq!(reason, OfflineReason::CertExpired);
    assert_eq!(reason.to_string(), "the server's certificate has expired");
    session.shutdown().await;
}

#[tokio::test]
async fn ws_to_a_tls_port_says_use_wss() {
    let ca = Ca::new("Talkbell Test CA");
    let server = TlsServer::start(&ca.leaf(&["127.0.0.1"], "talkbell test server")).await;
    let (_dir, session) = spawn(&format!("ws://{}/", server.addr), direct(&ca));
    let reason = offline_reason(&session).await;
    assert_eq!(reason, OfflineReason::PortSpeaksTls);
    assert_eq!(reason.to_string(), "this port speaks TLS: use wss://");
    session.shutdown().await;
}

#[tokio::test]
async fn wss_to_a_plain_port_says_use_ws() {
    let ca = Ca::new("Talkbell Test CA");
    // A plain HTTP server: it answers the TLS hello with an HTTP error.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
        }
    });
    let (_dir, session) = spawn(&format!("wss://{addr}/"), direct(&ca));
    let reason = offline_reason(&session).await;
    assert_eq!(reason, OfflineReason::PortSpeaksPlain);
    assert_eq!(reason.to_string(), "this port does not speak TLS: use ws://");
    session.shutdown().await;
}

#[tokio::test]
async fn through_an_http_connect_proxy_with_basic_auth() {
    let ca = Ca::new("Talkbell Test CA");
    let server = TlsServer::start(&ca.leaf(&["127.0.0.1"], "talkbell test server")).await;
    let proxy = Proxy::start(ProxyMode::Tunnel).await;
    let https = format!("http://alice:s%3Acret@{}", proxy.addr);
    let transport = Transport::new(ca.roots(), &ProxySettings { https, ..ProxySettings::default() });
    let (_dir, session) = spawn(&server.url(), transport);
    connected_as_wang1(&session).await;
    let connects = proxy.connects();
    assert_eq!(connects.len(), 1, "{connects:?}");
    assert_eq!(connects[0].target, server.addr.to_string());
    // alice:s:cret
    assert_eq!(connects[0].authorization.as_deref(), Some("Basic YWxpY2U6czpjcmV0"));
    session.shutdown().await;
}

#[tokio::test]
async fn no_proxy_naming_the_host_goes_direct() {
    let ca = Ca::new("Talkbell Test CA");
    let server = TlsServer::start(&ca.leaf(&["127.0.0.1"], "talkbell test server")).await;
    let proxy = Proxy::start(ProxyMode::Tunnel).await;
    let settings =
        ProxySettings { https: proxy.url(), no: "example.com, 127.0.0.0/8".into(), ..ProxySettings::default() };
    let (_dir, session) = spawn(&server.url(), Transport::new(ca.roots(), &settings));
    connected_as_wang1(&session).await;
    assert_eq!(proxy.connects().len(), 0);
    session.shutdown().await;
}

#[tokio::test]
async fn a_proxy_that_wants_credentials_is_its_own_reason() {
    let ca = Ca::new("Talkbell Test CA");
    let server = TlsServer::start(&ca.leaf(&["127.0.0.1"], "talkbell test server")).await;
    let proxy = Proxy::start(ProxyMode::Refuse(407)).await;
    let settings = ProxySettings { all: proxy.url(), ..ProxySettings::default() };
    let (_dir, session) = spawn(&server.url(), Transport::new(ca.roots(), &settings));
    let reason = offline_reason(&session).await;
    assert_eq!(reason, OfflineReason::Proxy(ProxyError::AuthRequired { proxy: proxy.addr.to_string() }));
    assert!(reason.to_string().contains("(HTTP 407)"), "{reason}");
    assert_eq!(server.accepted(), 0);
    session.shutdown().await;
}

#[tokio::test]
async fn a_proxy_that_refuses_or_is_not_there_is_a_proxy_reason() {
    let ca = Ca::new("Talkbell Test CA");
    let server = TlsServer::start(&ca.leaf(&["127.0.0.1"], "talkbell test server")).await;
    let proxy = Proxy::start(ProxyMode::Refuse(403)).await;
    let settings = ProxySettings { https: proxy.url(), ..ProxySettings::default() };
    let (_dir, session) = spawn(&server.url(), Transport::new(ca.roots(), &settings));
    let reason = offline_reason(&session).await;
    let want = ProxyError::Refused { proxy: proxy.addr.to_string(), target: server.addr.to_string(), status: 403 };
    assert_eq!(reason, OfflineReason::Proxy(want));
    session.shutdown().await;

    // A port where nothing listens.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    let settings = ProxySettings { https: format!("http://{gone_addr}"), ..ProxySettings::default() };
    let (_dir, session) = spawn(&server.url(), Transport::new(ca.roots(), &settings));
    let reason = offline_reason(&session).await;
    assert!(
        matches!(reason, OfflineReason::Proxy(ProxyError::Unreachable { ref proxy, .. }) if *proxy == gone_addr.to_string()),
        "{reason:?}"
    );
    session.shutdown().await;
}

#[tokio::test]
async fn a_port_where_nothing_listens_is_refused() {
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = gone.local_addr().unwrap();
    drop(gone);
    let (_dir, session) = spawn(&format!("wss://{addr}/"), direct(&Ca::new("Talkbell Test CA")));
    assert_eq!(offline_reason(&session).await, OfflineReason::Refused { addr: addr.to_string() });
    session.shutdown().await;
}

#[tokio::test]
async fn wss_to_a_plain_websocket_server_that_hangs_up_suggests_ws() {
    // A plain WebSocket server drops a connection whose first bytes are not HTTP.
    let server = Scripted::start(|_, ws| echo_heartbeats(ws, tokio::sync::mpsc::unbounded_channel().0)).await;
    let (_dir, session) = spawn(&format!("wss://{}/", server.addr), direct(&Ca::new("Talkbell Test CA")));
    let reason = offline_reason(&session).await;
    assert!(matches!(reason, OfflineReason::Tls { .. } | OfflineReason::PortSpeaksPlain), "{reason:?}");
    assert!(reason.to_string().contains("ws://"), "{reason}");
    session.shutdown().await;
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_dns_reason() {
    let (_dir, session) = spawn("wss://nothing.invalid/", direct(&Ca::new("Talkbell Test CA")));
    let reason = offline_reason(&session).await;
    assert!(matches!(reason, OfflineReason::Dns { ref host, .. } if host == "nothing.invalid"), "{reason:?}");
    assert!(reason.to_string().starts_with("the server's name nothing.invalid cannot be resolved"), "{reason}");
    session.shutdown().await;
}
