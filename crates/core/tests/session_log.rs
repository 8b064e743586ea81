//! The log while offline: one warning per reason, not one per attempt. A server down for
//! an hour must not write a line every few seconds; a new reason is a new warning.

mod support;
mod support_tls;

use support::*;
use support_tls::*;
use talkbell_core::session::{OfflineReason, ProxySettings, Session, SessionState, Transport, Untrusted};

/// Everything logged on this thread, as text.
// The session's task runs on this (current-thread) runtime, so the thread's subscriber
// sees its events.
#[tokio::test]
async fn one_warning_per_offline_reason_not_per_attempt() {
    let (captured, _guard) = Captured::start();

    // Nothing listens on the port at first.
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let ca = Ca::new("Talkbell Test CA");
    let mut config = config(fast_timing());
    config.transport = Transport::new(ca.roots(), &ProxySettings::default());
    let url = format!("wss://{addr}/");
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config, Some(creds(&url, Some(1))), history(&dir));
    wait_state(&session, |s| matches!(s, SessionState::Backoff { attempt, .. } if *attempt >= 4)).await;
    assert_eq!(captured.warnings_with("refused the connection"), 1);

    // Then a server with a certificate from another CA comes up there: a new reason.
    let other = Ca::new("Someone Else's CA");
    let _server = TlsServer::start_on(addr, &other.leaf(&["127.0.0.1"], "talkbell test server")).await;
    let untrusted = OfflineReason::CertUntrusted(Untrusted::UnknownIssuer);
    let seen =
        wait_state(&session, |s| matches!(s, SessionState::Backoff { reason, .. } if *reason == untrusted)).await;
    let SessionState::Backoff { attempt: first, .. } = seen else { unreachable!() };
    wait_state(&session, |s| matches!(s, SessionState::Backoff { attempt, .. } if *attempt >= first + 2)).await;
    assert_eq!(captured.warnings_with("the server's certificate is not trusted"), 1);
    assert_eq!(captured.warnings_with("refused the connection"), 1);
    session.shutdown().await;
}
