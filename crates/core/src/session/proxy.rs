//! A tunnel through an HTTP proxy: `CONNECT host:port`, then the stream is the server's.
//!
//! Basic credentials come from the proxy URL's userinfo (`http://user:pass@proxy:3128`)
//! and go only into the `Proxy-Authorization` header; they are never logged and never in
//! an error. The caller bounds the whole exchange with the connect timeout.

use hyper_util::client::proxy::matcher::Intercept;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::reason::ProxyError;

/// The longest answer head to a CONNECT that is read.
const MAX_HEAD: usize = 8 * 1024;

/// Opens a tunnel to `host:port` through `proxy`.
pub(crate) async fn tunnel(proxy: &Intercept, host: &str, port: u16) -> Result<TcpStream, ProxyError> {
    let uri = proxy.uri();
    let scheme = uri.scheme_str().unwrap_or("http");
    if scheme != "http" {
        return Err(ProxyError::Unsupported { scheme: scheme.to_owned() });
    }
    let name = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let proxy_host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let proxy_port = uri.port_u16().unwrap_or(80);
    let mut stream = TcpStream::connect((proxy_host, proxy_port))
        .await
        .map_err(|e| ProxyError::Unreachable { proxy: name.clone(), detail: e.to_string() })?;
    let _ = stream.set_nodelay(true);
    let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    if let Some(auth) = proxy.basic_auth() {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(auth.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let lost = |e: std::io::Error| ProxyError::Unreachable { proxy: name.clone(), detail: e.to_string() };
    stream.write_all(&request).await.map_err(lost)?;
    let head = read_head(&mut stream).await.map_err(lost)?;
    match head.as_deref().and_then(status_of) {
        Some(status) if (200..300).contains(&status) => Ok(stream),
        Some(407) => Err(ProxyError::AuthRequired { proxy: name }),
        Some(status) => Err(ProxyError::Refused { proxy: name, target, status }),
        None => Err(ProxyError::BadAnswer { proxy: name }),
    }
}

/// The answer's head, up to and with the blank line; `None` if it is too long or the
/// proxy closed first. Read a byte at a time, so that nothing after the head (the
/// server's first bytes) is taken from the stream.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while head.len() < MAX_HEAD {
        if stream.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
        if head.ends_with(b"\r\n\r\n") {
            return Ok(Some(head));
        }
    }
    Ok(None)
}

/// The status of an HTTP/1.x answer head.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?;
    if status.len() != 3 {
        return None;
    }
    status.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::status_of;

    #[test]
    fn status_lines() {
        let cases: [(&[u8], Option<u16>); 6] = [
            (b"HTTP/1.1 200 Connection established\r\n\r\n", Some(200)),
            (b"HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n", Some(407)),
            (b"HTTP/1.1 502\r\n\r\n", Some(502)),
            (b"SSH-2.0-OpenSSH\r\n\r\n", None),
            (b"HTTP/1.1 20 OK\r\n\r\n", None),
            (b"\x15\x03\x03\x00\x02\x02\x32\r\n\r\n", None),
        ];
        for (head, want) in cases {
            assert_eq!(status_of(head), want, "{:?}", String::from_utf8_lossy(head));
        }
    }
}
