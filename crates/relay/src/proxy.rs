//! PROXY protocol v2 from trusted proxies (`--trusted-proxy`): behind a load balancer every
//! TCP peer is the balancer, so a connection from a trusted address must start with a
//! binary PROXY v2 header (HAProxy's `send-proxy-v2`), and the client address it carries
//! is the one the relay knows the connection by (logs, per-address limits).
//!
//! - From an address that is not trusted, nothing is read here: a PROXY header's bytes
//!   are just the start of a bad request, and the peer is its own TCP address.
//! - From a trusted address, the header must come whole within the header timeout; a
//!   missing, late or malformed one closes the connection with a log line. Headers are
//!   read in tasks of their own (a silent proxy connection holds up nobody) and before
//!   the connection takes a slot of the connection cap.
//! - A `LOCAL` header (a balancer's own health check) or one without an IP address keeps
//!   the TCP peer's address.
//!
//! Parsing is the `ppp` crate's; this module reads exactly the header's bytes (16, then
//! the length they give), so nothing of the request behind it is consumed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::v2::{Addresses, Command, Header, PROTOCOL_PREFIX};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Headers being read at once; past this, accepting waits for one to end.
const MAX_PENDING: usize = 1024;
/// The fixed part of a v2 header: signature, version and command, family, length.
const FIXED: usize = 16;
/// The longest address block and TLVs taken (HAProxy sends a few dozen bytes).
const MAX_PAYLOAD: usize = 4096;

/// An address or a network (`10.0.0.0/8`, `::1`, `fd00::/8`) proxies connect from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedProxy {
    net: IpAddr,
    prefix: u8,
}

/// Why a `--trusted-proxy` was not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrustedProxyError {
    #[error("--trusted-proxy must be an IP address or a network (ADDRESS/BITS), not {0:?}")]
    NotAnAddress(String),
    #[error("--trusted-proxy {0:?}: the prefix is longer than the address")]
    Prefix(String),
}

impl std::str::FromStr for TrustedProxy {
    type Err = TrustedProxyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || TrustedProxyError::NotAnAddress(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let bits = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        if prefix > bits {
            return Err(TrustedProxyError::Prefix(s.to_owned()));
        }
        Ok(TrustedProxy { net, prefix })
    }
}

impl std::fmt::Display for TrustedProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl TrustedProxy {
    /// Whether `ip` is in this network (an IPv4-mapped IPv6 peer counts as its IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let keep = |bits: u32, width: u32| if bits == 0 { 0 } else { u128::MAX << (width - bits) };
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = keep(u32::from(self.prefix), 32);
                (u128::from(u32::from(net)) & mask) == (u128::from(u32::from(ip)) & mask)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = keep(u32::from(self.prefix), 128);
                (u128::from(net) & mask) == (u128::from(ip) & mask)
            }
            _ => false,
        }
    }
}

/// Why a trusted proxy's connection was closed before its first request.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no PROXY v2 header within {0:?}")]
    Timeout(Duration),
    #[error("the connection ended before its PROXY v2 header: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a PROXY v2 header (the connection must start with its signature)")]
    NoSignature,
    #[error("a PROXY v2 header of {0} bytes, over the {MAX_PAYLOAD} taken")]
    TooLong(usize),
    #[error("a malformed PROXY v2 header: {0}")]
    Malformed(#[from] ppp::v2::ParseError),
}

/// Reads one PROXY v2 header off `tcp` and returns the client address it gives (the TCP
/// peer's for `LOCAL` or a header without an IP address).
async fn read_header(tcp: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, ProxyHeaderError> {
    let mut buf = vec![0u8; FIXED];
    tcp.read_exact(&mut buf).await?;
    if buf[..PROTOCOL_PREFIX.len()] != PROTOCOL_PREFIX[..] {
        return Err(ProxyHeaderError::NoSignature);
    }
    let payload = usize::from(u16::from_be_bytes([buf[FIXED - 2], buf[FIXED - 1]]));
    if payload > MAX_PAYLOAD {
        return Err(ProxyHeaderError::TooLong(payload));
    }
    buf.resize(FIXED + payload, 0);
    tcp.read_exact(&mut buf[FIXED..]).await?;
    let header = Header::try_from(&buf[..])?;
    Ok(match (header.command, header.addresses) {
        (Command::Proxy, Addresses::IPv4(a)) => SocketAddr::new(a.source_address.into(), a.source_port),
        (Command::Proxy, Addresses::IPv6(a)) => SocketAddr::new(a.source_address.into(), a.source_port),
        _ => peer,
    })
}

type Pending = Option<(TcpStream, SocketAddr)>;

/// A trusted proxy's connection: its header within `timeout`, or a log line and `None`.
async fn unwrap_header(mut tcp: TcpStream, peer: SocketAddr, timeout: Duration) -> Pending {
    let read = tokio::time::timeout(timeout, read_header(&mut tcp, peer)).await;
    match read.unwrap_or(Err(ProxyHeaderError::Timeout(timeout))) {
        Ok(client) => Some((tcp, client)),
        Err(e) => {
            tracing::warn!(proxy = %peer, error = %e, "closed a connection from a trusted proxy");
            None
        }
    }
}

/// Accepts TCP connections and hands them on with the address they are known by: the
/// peer's own, or for a trusted proxy the client's from its PROXY header (read in a task
/// of its own).
pub(crate) struct ProxyListener {
    tcp: TcpListener,
    trusted: Vec<TrustedProxy>,
    timeout: Duration,
    pending: JoinSet<Pending>,
}

impl ProxyListener {
    pub fn new(tcp: TcpListener, trusted: Vec<TrustedProxy>, timeout: Duration) -> Self {
        ProxyListener { tcp, trusted, timeout, pending: JoinSet::new() }
    }

    fn is_trusted(&self, peer: SocketAddr) -> bool {
        self.trusted.iter().any(|t| t.contains(peer.ip()))
    }
}

/// Whether an accept error concerns one connection only (the next accept may work).
fn per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

impl axum::serve::Listener for ProxyListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.pending.len() < MAX_PENDING;
            tokio::select! {
                Some(done) = self.pending.join_next() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        if !self.is_trusted(peer) {
                            return (tcp, peer);
                        }
                        self.pending.spawn(unwrap_header(tcp, peer, self.timeout));
                    }
                    Err(e) if per_connection(&e) => tracing::debug!(error = %e, "accept failed"),
                    Err(e) => {
                        // Out of file descriptors, most likely: wait rather than spin.
                        tracing::warn!(error = %e, "accept failed; retrying in a second");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_networks() {
        let p = |s: &str| s.parse::<TrustedProxy>();
        let net = p("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()), "an IPv4-mapped peer");
        let one = p("127.0.0.2").unwrap();
        assert_eq!(one.to_string(), "127.0.0.2/32");
        assert!(one.contains("127.0.0.2".parse().unwrap()) && !one.contains("127.0.0.1".parse().unwrap()));
        assert!(p("0.0.0.0/0").unwrap().contains("203.0.113.9".parse().unwrap()));
        assert!(p("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(!p("fd00::/8").unwrap().contains("10.0.0.1".parse().unwrap()));
        assert!(matches!(p("10.0.0.0/33"), Err(TrustedProxyError::Prefix(_))));
        assert!(matches!(p("proxy.local"), Err(TrustedProxyError::NotAnAddress(_))));
        assert!(matches!(p("10.0.0.0/x"), Err(TrustedProxyError::NotAnAddress(_))));
    }
}
