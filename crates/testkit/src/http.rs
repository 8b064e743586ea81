//! The `POST /v1/talk` client, over hyper: [`Poster`] keeps one HTTP/1.1 connection alive
//! for request after request (the benchmarks' senders), [`post_talk`] makes one request on
//! a connection of its own, blocking (the tests' threads).

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// How long a connection or an answer may take before the request counts as failed.
pub const BOUND: Duration = Duration::from_secs(30);

/// Why a `POST /v1/talk` did not give a seq.
#[derive(Debug)]
pub enum PostError {
    /// No connection at all (the relay is down): the talk was certainly not taken.
    Connect(std::io::Error),
    /// Connected, but no complete answer (the relay died meanwhile): the talk may or may
    /// not have been stored.
    CutOff(String),
    /// A complete answer that is not a 2xx, or has no seq.
    Status(u16, String),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Connect(e) => write!(f, "cannot connect: {e}"),
            PostError::CutOff(e) => write!(f, "no complete answer: {e}"),
            PostError::Status(status, body) => write!(f, "HTTP {status}: {body}"),
        }
    }
}

impl std::error::Error for PostError {}

/// A keep-alive connection for `POST /v1/talk` to `addr` with `token`: one request at a
/// time, the answer read in full before the next.
pub struct Poster {
    addr: SocketAddr,
    token: String,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Poster {
    pub fn new(addr: SocketAddr, token: &str) -> Poster {
        Poster { addr, token: token.to_owned(), conn: None }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, PostError> {
        let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(self.addr))
            .await
            .map_err(|_| PostError::Connect(std::io::ErrorKind::TimedOut.into()))?
            .map_err(PostError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| PostError::CutOff(format!("handshake: {e}")))?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// Posts a talk from this poster's user to `to`; its seq. A connection the relay
    /// closed between requests is opened again once.
    pub async fn post(&mut self, to: u64, text: &str) -> Result<u64, PostError> {
        let body = Bytes::from(serde_json::json!({"to": to, "talk": text}).to_string());
        let reused = self.conn.as_ref().is_some_and(|c| !c.is_closed());
        let answer = match self.exchange(body.clone(), reused).await {
            // The relay closed an idle keep-alive connection: once more, anew.
            Err(PostError::CutOff(_)) if reused => self.exchange(body, false).await,
            other => other,
        };
        if answer.is_err() {
            self.conn = None;
        }
        answer
    }

    async fn exchange(&mut self, body: Bytes, reuse: bool) -> Result<u64, PostError> {
        let mut conn = match self.conn.take().filter(|_| reuse) {
            Some(c) => c,
            None => self.connect().await?,
        };
        let request = hyper::Request::post("/v1/talk")
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| PostError::CutOff(format!("request: {e}")))?;
        let answer = async {
            conn.ready().await?;
            let answer = conn.send_request(request).await?;
            let status = answer.status().as_u16();
            Ok::<_, hyper::Error>((status, answer.into_body().collect().await?.to_bytes()))
        };
        let (status, body) = tokio::time::timeout(BOUND, answer)
            .await
            .map_err(|_| PostError::CutOff(format!("no answer within {BOUND:?}")))?
            .map_err(|e| PostError::CutOff(e.to_string()))?;
        self.conn = Some(conn);
        let body = String::from_utf8_lossy(&body).into_owned();
        if !(200..300).contains(&status) {
            return Err(PostError::Status(status, body));
        }
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| PostError::CutOff(format!("answer body {body:?}: {e}")))?;
        v["seq"].as_u64().ok_or_else(|| PostError::Status(status, format!("no seq in {body}")))
    }
}

/// `POST /v1/talk` to 127.0.0.1:`port` on a connection of its own, blocking (not from
/// inside an async runtime): the talk's seq on a 2xx answer.
pub fn post_talk(port: u16, token: &str, to: u64, text: &str) -> Result<u64, PostError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PostError::CutOff(format!("a runtime: {e}")))?;
    runtime.block_on(Poster::new(SocketAddr::from(([127, 0, 0, 1], port)), token).post(to, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers every request on a connection with the next seq.
    async fn server() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut seq = 0;
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    seq += 1;
                    let body = if buf[..n].windows(6).any(|w| w == b"\"to\":9") {
                        "{\"error\":\"no such user\"}".to_owned()
                    } else {
                        format!("{{\"seq\":{seq}}}")
                    };
                    let status = if body.contains("error") { "404 Not Found" } else { "200 OK" };
                    let answer = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                    tcp.write_all(answer.as_bytes()).await.unwrap();
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn posts_on_one_connection_and_reports_statuses() {
        let addr = server().await;
        let mut poster = Poster::new(addr, "t");
        assert_eq!(poster.post(1, "a").await.unwrap(), 1);
        assert_eq!(poster.post(1, "b").await.unwrap(), 2);
        assert!(matches!(poster.post(9, "c").await, Err(PostError::Status(404, _))));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(matches!(Poster::new(closed, "t").post(1, "x").await, Err(PostError::Connect(_))));
    }
}
