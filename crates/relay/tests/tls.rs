//! TLS on the relay's listener: wss and https with a CA made here, `send` trusting the
//! system store (SSL_CERT_FILE), plain clients on the TLS port, and a certificate rotated
//! on SIGHUP under an open connection.

mod support;

use std::process::Stdio;

use support::child::{Served, BIN};
use support::tls::{connect_wss, tls_files, Ca, RelayCerts};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `talkbell-relay send` with the given SSL_CERT_FILE (None: unset), as user 2 to user 1.
async fn send_with_ca(server: &str, token: &str, ca_file: Option<&std::path::Path>) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["send", "--server", server, "--to", "1", "over", "tls"])
        .env("TALKBELL_TOKEN", token)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::null());
    if let Some(f) = ca_file {
        cmd.env("SSL_CERT_FILE", f);
    }
    tokio::time::timeout(WAIT, cmd.output()).await.unwrap().unwrap()
}

#[tokio::test]
async fn wss_gets_a_welcome_and_send_trusts_the_system_store() {
    let ca = Ca::new("Talkbell Test CA");
    let dir = tempfile::tempdir().unwrap();
    let files = tls_files(&ca.server("relay one"), dir.path());
    let env = start_with(|c| c.tls = Some(files)).await;
    let port = env.relay.local_addr().port();
    assert_eq!(env.ws_url(), format!("wss://127.0.0.1:{port}/"));
    assert_eq!(env.http_url(), format!("https://127.0.0.1:{port}"));

    let (mut ws, _) = connect_wss(&env.ws_url(), &ca.der()).await;
    send_text(&mut ws, hello_text(env.token(1), "dev", None)).await;
    assert_eq!(next_json(&mut ws).await["user"]["name"], "wang1");

    let ca_file = dir.path().join("ca.pem");
    ca.write(&ca_file);
    let out = send_with_ca(&env.http_url(), env.token(2), Some(&ca_file)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    assert_eq!(next_talk(&mut ws).await["form"]["talk"], "over tls");

    // Another CA in the store, or the machine's own store alone: not trusted, and said so.
    let other = dir.path().join("other-ca.pem");
    Ca::new("Some Other CA").write(&other);
    for ca_file in [Some(other.as_path()), None] {
        let out = send_with_ca(&env.ws_url(), env.token(2), ca_file).await;
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("the server's certificate is not trusted: unknown issuer"), "{err}");
    }
    // None of those reached the relay: the next talk is seq 2.
    let out = send_with_ca(&env.http_url(), env.token(2), Some(&ca_file)).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n");
    assert_eq!(next_talk(&mut ws).await["seq"], 2);
}

#[tokio::test]
async fn plain_clients_on_the_tls_port_fail_and_nothing_else_does() {
    let ca = Ca::new("Talkbell Test CA");
    let dir = tempfile::tempdir().unwrap();
    let files = tls_files(&ca.server("relay"), dir.path());
    let env = start_with(|c| c.tls = Some(files)).await;
    let addr = env.relay.local_addr();

    // Plain ws:// gets no WebSocket.
    let plain = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(format!("ws://{addr}/"))).await.unwrap();
    assert!(plain.is_err(), "a plain WebSocket on the TLS port");
    // Plain HTTP gets no HTTP answer, and the connection ends.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await.expect("the relay hangs up");
    assert!(!String::from_utf8_lossy(&out).contains("HTTP/1.1"), "{out:?}");
    // `send` to the TLS port over http:// fails too, and says what is likely wrong.
    let out = send_with_ca(&format!("http://{addr}"), env.token(2), None).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is it a TLS server (https://)?"), "{err}");
    // And a plain relay asked for TLS says it is not TLS.
    let plain_env = start().await;
    let out = send_with_ca(&plain_env.http_url().replace("http://", "https://"), env.token(2), None).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("did not answer in TLS"), "{err}");

    // The relay still serves TLS clients.
    let (mut ws, _) = connect_wss(&env.ws_url(), &ca.der()).await;
    send_text(&mut ws, hello_text(env.token(3), "dev", None)).await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    assert_alive(&mut ws).await;
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_rotates_the_certificate_under_an_open_connection() {
    let ca = Ca::new("Talkbell Test CA");
    let dir = tempfile::tempdir().unwrap();
    let first = ca.server("relay first");
    let files = tls_files(&first, dir.path());
    let users_file = dir.path().join("users.toml");
    let mut users = talkbell_relay::Users::new();
    let token = users.add(1, "wang1");
    users.save(&users_file).unwrap();
    let relay = Served::start([
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--users".as_ref(),
        users_file.as_os_str(),
        "--tls-cert".as_ref(),
        files.cert.as_os_str(),
        "--tls-key".as_ref(),
        files.key.as_os_str(),
    ])
    .await;
    assert!(relay.url.starts_with("wss://127.0.0.1:"), "{}", relay.url);
    let (mut open, seen) = connect_wss(&relay.url, &ca.der()).await;
    assert_eq!(seen, first.der);
    send_text(&mut open, hello_text(&token, "dev", None)).await;
    assert_eq!(next_json(&mut open).await["type"], "welcome");

    let second = ca.server("relay second");
    tls_files(&second, dir.path());
    relay.reload(1).await;
    assert!(relay.log().contains("reloaded the TLS certificate"), "{}", relay.log());
    let (mut fresh, seen) = connect_wss(&relay.url, &ca.der()).await;
    assert_eq!(seen, second.der, "a new connection gets the new certificate");
    send_text(&mut fresh, hello_text(&token, "dev-2", None)).await;
    assert_eq!(next_json(&mut fresh).await["type"], "welcome");
    assert_alive(&mut open).await;

    // A broken PEM: the second certificate stays in force, and the log says why.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    relay.reload(2).await;
    let warning = relay.lines().into_iter().find(|l| l.contains("TLS certificate did not load")).expect("a warning");
    assert!(warning.contains("WARN") && warning.contains("cert.pem"), "{warning}");
    let (_, seen) = connect_wss(&relay.url, &ca.der()).await;
    assert_eq!(seen, second.der);
    assert_alive(&mut open).await;
    assert_alive(&mut fresh).await;

    // Plain clients on the port: refused quietly (debug at most; this runs at info).
    let port = relay.url.trim_start_matches("wss://127.0.0.1:").trim_end_matches('/').to_owned();
    for _ in 0..3 {
        let mut tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut out)).await.expect("the relay hangs up");
    }
    assert_alive(&mut open).await;
    let log = relay.stop().await;
    assert!(!log.to_lowercase().contains("handshake"), "handshake failures are logged at debug only:\n{log}");
    assert!(!log.contains(&token), "a token is in the log");
}

#[tokio::test]
async fn send_tells_a_wrong_name_and_an_expired_certificate_apart() {
    let ca = Ca::new("Talkbell Test CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca.write(&ca_file);
    let cases = [
        (ca.server_with("elsewhere", &["relay.example"], false), "not valid for the name 127.0.0.1"),
        (ca.server_with("old", &["localhost", "127.0.0.1"], true), "has expired"),
    ];
    for (n, (cert, want)) in cases.into_iter().enumerate() {
        let sub = dir.path().join(n.to_string());
        std::fs::create_dir(&sub).unwrap();
        let files = tls_files(&cert, &sub);
        let env = start_with(|c| c.tls = Some(files)).await;
        let out = send_with_ca(&env.http_url(), env.token(2), Some(&ca_file)).await;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{want:?} missing in: {err}");
    }
}
