//! A small keep-alive HTTP/1.1 client for `POST /v1/talk`: one request at a time per
//! connection, the answer read in full (Content-Length) before the next request.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Poster {
    addr: SocketAddr,
    token: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Poster {
    pub fn new(addr: SocketAddr, token: &str) -> Poster {
        Poster { addr, token: token.to_owned(), stream: None, buf: Vec::with_capacity(4096) }
    }

    async fn stream(&mut self) -> Result<&mut TcpStream> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
            s.set_nodelay(true)?;
            self.buf.clear();
            return Ok(self.stream.insert(s));
        }
        self.stream.as_mut().context("no connection")
    }

    /// Posts a talk; returns its seq. A connection closed by the relay between requests
    /// is opened again once.
    pub async fn post(&mut self, to: u64, text: &str) -> Result<u64> {
        let body = serde_json::json!({"to": to, "talk": text}).to_string();
        let request = format!(
            "POST /v1/talk HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        for attempt in 0..2 {
            let fresh = self.stream.is_none();
            match self.exchange(request.as_bytes()).await {
                Ok(answer) => return answer,
                Err(e) if attempt == 0 && !fresh => {
                    // The relay closed an idle keep-alive connection: once more, anew.
                    tracing::debug!("POST on a reused connection failed ({e:#}); reconnecting");
                    self.stream = None;
                }
                Err(e) => {
                    self.stream = None;
                    return Err(e);
                }
            }
        }
        unreachable!()
    }

    /// Sends one request and reads one answer. The outer error is the connection's (retry
    /// on a new one); the inner one is the relay's answer.
    async fn exchange(&mut self, request: &[u8]) -> Result<Result<u64>> {
        self.stream().await?.write_all(request).await?;
        let (status, body) = self.read_answer().await?;
        if !(200..300).contains(&status) {
            return Ok(Err(anyhow::anyhow!("HTTP {status}: {}", String::from_utf8_lossy(&body))));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).context("the answer is not JSON")?;
        Ok(v["seq"].as_u64().context("no seq in the answer"))
    }

    async fn read_answer(&mut self) -> Result<(u16, Vec<u8>)> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.read_more().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("answer head not UTF-8")?;
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no status")?;
        let mut length = None;
        let mut close = false;
        for line in head.split("\r\n").skip(1) {
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("connection") && value.trim().eq_ignore_ascii_case("close") {
                    close = true;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked answers are not supported");
                }
            }
        }
        let length = length.context("an answer without Content-Length")?;
        while self.buf.len() < head_end + length {
            self.read_more().await?;
        }
        let body = self.buf[head_end..head_end + length].to_vec();
        self.buf.drain(..head_end + length);
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }

    async fn read_more(&mut self) -> Result<()> {
        let stream = self.stream.as_mut().context("not connected")?;
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the relay closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
