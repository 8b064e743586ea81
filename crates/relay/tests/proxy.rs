//! PROXY protocol v2 from trusted proxies (`--trusted-proxy`), over real sockets: the test
//! plays the balancer from 127.0.0.2 (trusted) and plain peers from 127.0.0.1 (not), and
//! sends the header HAProxy's `send-proxy-v2` sends, in front of plain HTTP and of TLS.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::json;
use support::child::Served;
use support::tls::{tls_files, tls_over, wss_over, Ca, RelayCerts};
use support::*;
use talkbell_testkit::haproxy::{proxy_v2_header, proxy_v2_local};

/// The balancer's address, trusted by every relay here.
const PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// A peer that is no proxy.
const PLAIN: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A client out on the internet, as the balancer saw it.
fn client(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, n)), 40_000 + u16::from(n))
}

struct Behind {
    relay: Served,
    token: String,
    _dir: tempfile::TempDir,
}

impl Behind {
    async fn start(flags: &[&str]) -> Behind {
        let (dir, file, token, _) = users_file();
        let flags = [&["--trusted-proxy", "127.0.0.2"][..], flags].concat();
        let relay = Served::start_logged(serve_args(&file, &flags), "info,talkbell_relay=debug").await;
        Behind { relay, token, _dir: dir }
    }

    fn addr(&self) -> SocketAddr {
        self.relay.url.trim_start_matches("ws://").trim_end_matches('/').parse().unwrap()
    }

    /// A POST from `from` with `prefix` before it; the status (0: closed with no answer).
    async fn post(&self, from: IpAddr, prefix: &[u8], token: &str) -> u16 {
        let tcp = tcp_from(from, self.addr()).await;
        let body = json!({"to": 2, "talk": "hi"}).to_string();
        let head = post_head(Some(&format!("Bearer {token}")));
        let answer = raw_exchange(tcp, self.addr(), prefix, &head, body.as_bytes()).await;
        answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// A POST through the balancer for `client`.
    async fn post_for(&self, client: SocketAddr, token: &str) -> u16 {
        self.post(PROXY, &proxy_v2_header(client, self.addr()), token).await
    }

    fn lines_with(&self, needle: &str) -> Vec<String> {
        self.relay.lines().into_iter().filter(|l| l.contains(needle)).collect()
    }
}

/// Failed logins are counted against the client address of the balancer's header: one
/// client behind the proxy is rate limited, another behind the same proxy is not, and the
/// logs name the client, never the proxy. WebSockets come through the header too.
#[tokio::test]
async fn a_trusted_proxys_header_sets_the_address_the_limits_count() {
    let relay = Behind::start(&["--failed-login-rate", "0.01", "--failed-login-burst", "3"]).await;
    for _ in 0..3 {
        assert_eq!(relay.post_for(client(7), "wrong").await, 401);
    }
    assert_eq!(relay.post_for(client(7), "wrong").await, 429, "client 7 is limited");
    assert_eq!(relay.post_for(client(7), &relay.token).await, 429, "even with a good token");
    assert_eq!(relay.post_for(client(8), "wrong").await, 401, "client 8, same proxy, is not");
    assert_eq!(relay.post_for(client(8), &relay.token).await, 200);
    assert_eq!(relay.post(PLAIN, b"", &relay.token).await, 200, "nor is the proxy itself");

    let failed = relay.lines_with("failed login");
    assert!(failed.iter().any(|l| l.contains("peer=198.51.100.7:40007")), "{failed:#?}");
    assert!(relay.lines_with("127.0.0.2").is_empty(), "{}", relay.relay.log());

    // A WebSocket through the balancer: limited for client 7, served for client 9.
    let header = proxy_v2_header(client(7), relay.addr());
    let mut limited = ws_over(tcp_from(PROXY, relay.addr()).await, &header, &relay.relay.url).await;
    send_text(&mut limited, hello_text(&relay.token, "dev-7", None)).await;
    assert_eq!(close_code(&mut limited).await, Some(1013));
    let header = proxy_v2_header(client(9), relay.addr());
    let mut ws = ws_over(tcp_from(PROXY, relay.addr()).await, &header, &relay.relay.url).await;
    send_text(&mut ws, hello_text(&relay.token, "dev-9", Some(0))).await;
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    assert_alive(&mut ws).await;
    // A LOCAL header (the balancer's health check) is the proxy's own connection.
    assert_eq!(relay.post(PROXY, &proxy_v2_local(), &relay.token).await, 200);
}

/// A peer that is not a trusted proxy cannot forge its address: its PROXY header is the
/// start of a bad request (400), and its failed logins count against its own address.
#[tokio::test]
async fn an_untrusted_peers_forged_header_is_not_believed() {
    let relay = Behind::start(&["--failed-login-rate", "0.01", "--failed-login-burst", "3"]).await;
    let forged = proxy_v2_header(client(9), relay.addr());
    assert_eq!(relay.post(PLAIN, &forged, &relay.token).await, 400, "not a request");
    for _ in 0..3 {
        assert_eq!(relay.post(PLAIN, b"", "wrong").await, 401);
    }
    assert_eq!(relay.post(PLAIN, b"", &relay.token).await, 429, "127.0.0.1 is limited, as itself");
    assert_eq!(relay.post_for(client(9), &relay.token).await, 200, "the forged client is not");
    let failed = relay.lines_with("failed login");
    assert!(failed.iter().all(|l| l.contains("peer=127.0.0.1:")), "{failed:#?}");
    assert!(!failed.is_empty());
}

/// A trusted proxy's connection that sends no header is closed within the header
/// timeout, with a log line, and holds no slot of the connection cap meanwhile; one that
/// starts with something else is closed at once, unanswered.
#[tokio::test]
async fn a_trusted_peer_without_a_header_is_dropped_in_time_and_holds_no_slot() {
    let relay = Behind::start(&["--header-timeout", "2", "--max-connections", "1"]).await;
    let mut silent = tcp_from(PROXY, relay.addr()).await;
    // The only slot is free for the proxy's next connection, a proper one.
    assert_eq!(relay.post_for(client(5), &relay.token).await, 200);
    assert!(wait_closed(&mut silent, "a proxy connection without a header").await.is_empty());
    relay.relay.wait_log("no PROXY v2 header within 2s", 1).await;

    let head = "GET /v1/health HTTP/1.1\n";
    let answer = raw_exchange(tcp_from(PROXY, relay.addr()).await, relay.addr(), b"", head, b"").await;
    assert_eq!(answer, "", "unanswered");
    relay.relay.wait_log("not a PROXY v2 header", 1).await;
    let mut bad = proxy_v2_header(client(5), relay.addr());
    bad[12] = 0x31; // version 3
    assert_eq!(relay.post(PROXY, &bad, &relay.token).await, 0);
    relay.relay.wait_log("malformed PROXY v2 header", 1).await;
    let closed = relay.lines_with("closed a connection from a trusted proxy");
    assert!(closed.iter().all(|l| l.contains("proxy=127.0.0.2:")), "{closed:#?}");
    assert_eq!(relay.post_for(client(6), &relay.token).await, 200, "and the proxy is served still");
}

/// A TLS relay behind a trusted proxy (HAProxy in `mode tcp` with `send-proxy-v2`): the
/// header comes in the clear, then the TLS handshake. The client address in it is what
/// the failed-login limit counts and the log names; a peer that is no proxy and sends a
/// header before its handshake is refused, and one inside TLS is a bad request.
#[tokio::test]
async fn a_proxy_header_before_tls_names_the_client_and_only_from_a_trusted_proxy() {
    let ca = Ca::new("Talkbell Test CA");
    let (dir, file, token, _) = users_file();
    let files = tls_files(&ca.server("relay behind a proxy"), dir.path());
    let (cert, key) = (files.cert.display().to_string(), files.key.display().to_string());
    let flags = ["--trusted-proxy", "127.0.0.2", "--tls-cert", &cert, "--tls-key", &key];
    let limits = ["--failed-login-rate", "0.01", "--failed-login-burst", "2"];
    let relay = Served::start_logged(serve_args(&file, &[&flags[..], &limits[..]].concat()), "info").await;
    assert!(relay.url.starts_with("wss://"), "{}", relay.url);
    let addr: SocketAddr = relay.url.trim_start_matches("wss://").trim_end_matches('/').parse().unwrap();
    let through_proxy = async |n: u8| {
        let tcp = tcp_from(PROXY, addr).await;
        wss_over(tcp, &proxy_v2_header(client(n), addr), &relay.url, &ca.der()).await.expect("wss through the proxy")
    };

    for _ in 0..2 {
        let mut ws = through_proxy(7).await;
        send_text(&mut ws, hello_text("wrong", "dev-7", None)).await;
        assert_eq!(close_code(&mut ws).await, Some(4001));
    }
    let mut limited = through_proxy(7).await;
    send_text(&mut limited, hello_text(&token, "dev-7", None)).await;
    assert_eq!(next_json(&mut limited).await["code"], "rate_limited", "client 7 is limited, a good token too");
    assert_eq!(close_code(&mut limited).await, Some(1013));
    let mut other = through_proxy(8).await;
    send_text(&mut other, hello_text(&token, "dev-8", Some(0))).await;
    assert_eq!(next_json(&mut other).await["type"], "welcome", "client 8, same proxy, is not");
    let failed: Vec<String> = relay.lines().into_iter().filter(|l| l.contains("failed login")).collect();
    assert!(failed.len() >= 2 && failed.iter().all(|l| l.contains("peer=198.51.100.7:40007")), "{failed:#?}");
    let signed_in: Vec<String> = relay.lines().into_iter().filter(|l| l.contains("signed in")).collect();
    assert!(signed_in.iter().any(|l| l.contains("198.51.100.8:40008")), "{signed_in:#?}");
    assert!(!relay.log().contains("127.0.0.2:"), "{}", relay.log());

    // A peer that is no proxy: a header before TLS is not a TLS handshake.
    let forged = proxy_v2_header(client(9), addr);
    assert!(wss_over(tcp_from(PLAIN, addr).await, &forged, &relay.url, &ca.der()).await.is_err());
    // Inside TLS it is the start of a bad request, not an address.
    let tls = tls_over(tcp_from(PLAIN, addr).await, &ca.der()).await;
    let body = json!({"to": 2, "talk": "hi"}).to_string();
    let answer = raw_exchange(tls, addr, &forged, &post_head(Some(&format!("Bearer {token}"))), body.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    // And the same peer without a header is served over TLS, as itself.
    let mut plain = wss_over(tcp_from(PLAIN, addr).await, b"", &relay.url, &ca.der()).await.expect("wss");
    send_text(&mut plain, hello_text(&token, "dev-plain", Some(0))).await;
    assert_eq!(next_json(&mut plain).await["type"], "welcome");
    assert_alive(&mut other).await;
    assert!(!relay.log().contains("198.51.100.9"), "the forged address is never believed");
}
