//! HAProxy for the tests: the PROXY v2 header it sends to a server with `send-proxy-v2`,
//! made by hand for tests that play the balancer themselves.

use std::net::SocketAddr;

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
