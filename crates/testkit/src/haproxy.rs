//! Debian's `haproxy` for the tests: started in the foreground (`-db`) on 127.0.0.1 with a
//! config made from a deployment's (deploy/haproxy.cfg: its timeouts, checks and
//! `send-proxy-v2` kept; its `bind`, `server` lines, logging and daemon settings made fit
//! for a test), waited for, and killed when dropped. And the PROXY v2 header it sends to a
//! server with `send-proxy-v2`, made by hand for tests that play the balancer themselves.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::child::Spawned;
use crate::relay::free_port;
use crate::wait::Poll;

/// How long a start may take, until the health check through it answers.
const READY: Poll = Poll::up_to(Duration::from_secs(20));

/// Lines of the deployment's config that make no sense under a test (a daemon, a chroot,
/// another user, the system log).
const DROPPED: [&str; 5] = ["chroot ", "user ", "group ", "daemon", "log /"];

/// The deployment's `template` made fit for a test: the frontend on 127.0.0.1:`port`, one
/// `server` line per port of `nodes` (in place of the template's), logs to standard error,
/// at most `maxconn` connections (each takes two of the open files of a test machine).
pub fn config_for(template: &str, port: u16, nodes: &[u16], maxconn: u32) -> String {
    let mut out = String::new();
    let mut servers_written = false;
    for line in template.lines() {
        let word = line.trim_start();
        if DROPPED.iter().any(|d| word.starts_with(d)) {
            if word.starts_with("log /") {
                out.push_str("    log stderr format raw local0 notice\n");
            }
            continue;
        }
        if word.starts_with("bind ") {
            out.push_str(&format!("    bind 127.0.0.1:{port}\n"));
        } else if word.starts_with("server ") {
            if !servers_written {
                for (i, node) in nodes.iter().enumerate() {
                    out.push_str(&format!("    server relay{} 127.0.0.1:{node}\n", i + 1));
                }
                servers_written = true;
            }
        } else if word.starts_with("maxconn ") {
            out.push_str(&format!("    maxconn {maxconn}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A running `haproxy`.
pub struct HaProxy {
    pub port: u16,
    pub child: Spawned,
}

impl HaProxy {
    /// Writes [`config_for`] into `dir`, starts `haproxy -db` on it, and waits until a
    /// health check through it (`GET /v1/health`) is answered 200.
    pub fn start(dir: &Path, template: &str, nodes: &[u16], maxconn: u32) -> io::Result<HaProxy> {
        let port = free_port()?;
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, config_for(template, port, nodes, maxconn))?;
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db").arg("-f").arg(&cfg);
        let mut child = Spawned::spawn(&mut cmd, "haproxy", None)?;
        let ready = READY.check(|| {
            if let Some(status) = child.exited() {
                return Some(Err(io::Error::other(format!("haproxy exited ({status}):\n{}", child.log.tail(20)))));
            }
            (health(port) == Some(200)).then_some(Ok(()))
        });
        let ready = ready.unwrap_or_else(|| Err(io::Error::other(format!("haproxy on {port}: no healthy answer"))));
        ready.map(|()| HaProxy { port, child })
    }

    /// `ws://127.0.0.1:PORT/`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// The status of `GET /v1/health` through 127.0.0.1:`port`, if one came.
pub fn health(port: u16) -> Option<u16> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    tcp.write_all(b"GET /v1/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    let _ = tcp.read_to_string(&mut out);
    out.split_whitespace().nth(1)?.parse().ok()
}

/// The 12 bytes every PROXY v2 header starts with.
pub const PROXY_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY v2 header (`PROXY`, TCP) saying `client` connected to `server`; both must be
/// IPv4 or both IPv6 (panics otherwise: a test's mistake).
pub fn proxy_v2_header(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut out = PROXY_V2_SIGNATURE.to_vec();
    out.push(0x21); // version 2, PROXY
    let addresses: Vec<u8> = match (client, server) {
        (SocketAddr::V4(c), SocketAddr::V4(s)) => {
            out.push(0x11); // IPv4, stream
            [c.ip().octets().to_vec(), s.ip().octets().to_vec()].concat()
        }
        (SocketAddr::V6(c), SocketAddr::V6(s)) => {
            out.push(0x21); // IPv6, stream
            [c.ip().octets().to_vec(), s.ip().octets().to_vec()].concat()
        }
        _ => panic!("a PROXY header's addresses are of one family: {client} {server}"),
    };
    let ports = [client.port().to_be_bytes(), server.port().to_be_bytes()].concat();
    let len = u16::try_from(addresses.len() + ports.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend(addresses);
    out.extend(ports);
    out
}

/// A PROXY v2 `LOCAL` header (a balancer's own connection, a health check): no address.
pub fn proxy_v2_local() -> Vec<u8> {
    let mut out = PROXY_V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out
}
