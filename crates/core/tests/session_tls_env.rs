//! What the app does: [`SessionConfig::new`] takes its roots and proxies from the
//! process's environment (`SSL_CERT_FILE`, `https_proxy`, `no_proxy`). The environment is
//! the process's, so this binary holds one test, which sets it before anything reads it.

mod support;
mod support_tls;

use support::*;
use support_tls::*;
use talkbell_core::session::{Identity, Session, SessionConfig, SessionState};

const PROXY_VARS: [&str; 8] =
    ["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"];

#[tokio::test]
async fn the_environment_names_the_ca_and_the_proxy() {
    let ca = Ca::new("Talkbell Env CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("company-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let server = TlsServer::start(&ca.leaf(&["127.0.0.1"], "talkbell test server")).await;
    let proxy = Proxy::start(ProxyMode::Tunnel).await;
    for var in PROXY_VARS {
        std::env::remove_var(var);
    }
    std::env::remove_var("SSL_CERT_DIR");
    std::env::set_var("SSL_CERT_FILE", &ca_file);
    std::env::set_var("https_proxy", proxy.url());
    std::env::set_var("no_proxy", "example.com");

    let config = SessionConfig { jitter_seed: Some(7), ..SessionConfig::new("device-uuid-1", fast_timing()) };
    assert_eq!(config.transport.root_count(), 1, "SSL_CERT_FILE holds the one CA");
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config, Some(creds(&server.url(), Some(1))), history(&dir));
    let state = wait_state(&session, |s| matches!(s, SessionState::Connected { user: Identity::Welcomed(_) })).await;
    assert!(matches!(state, SessionState::Connected { .. }), "{state:?}");
    let connects = proxy.connects();
    assert_eq!(connects.len(), 1, "{connects:?}");
    assert_eq!(connects[0].target, server.addr.to_string());
    assert_eq!(connects[0].authorization, None);
    session.shutdown().await;
}
