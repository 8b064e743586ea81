//! Light WebSocket clients for the relay benchmarks, behaving like the original browser
//! client: the hello on open, `online` after a silence, no acks. [`run`] is one link;
//! [`resuming`] connects again after a loss (with the app's backoff) and resumes from the
//! last seq it got, as the app does. A [`Link`] may bind a source address (to hold more
//! connections than one loopback address has ports for) and record a [`Trace`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use talkbell_core::protocol::{ServerFrame, HEARTBEAT};
use talkbell_core::session::Backoff;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::stats::now_us;

/// What all clients of a benchmark saw, counted together.
#[derive(Default)]
pub struct ClientStats {
    /// Welcomed and still open.
    pub connected: AtomicUsize,
    /// Talks received.
    pub talks: AtomicU64,
    /// Heartbeats sent.
    pub heartbeats: AtomicU64,
    /// Clients whose link ended or never came up.
    pub failed: AtomicUsize,
    /// Set by the last talk received: µs since the Unix epoch.
    pub last_talk_us: AtomicU64,
}

/// What one client saw, when it is asked to record it: µs since the Unix epoch.
#[derive(Default)]
pub struct Trace {
    /// (received, seq, text) of each talk.
    pub talks: Mutex<Vec<(u64, u64, String)>>,
    /// When each link was welcomed.
    pub welcomed: Mutex<Vec<u64>>,
    /// When each welcomed link ended.
    pub lost: Mutex<Vec<u64>>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Trace {
    fn last_seq(&self) -> Option<u64> {
        lock(&self.talks).last().map(|t| t.1)
    }
}

/// Where and how one client connects.
#[derive(Clone)]
pub struct Link {
    /// `ws://HOST:PORT/`, plain only.
    pub url: String,
    pub token: String,
    /// The silence after which it sends `online`.
    pub heartbeat: Duration,
    /// The local address to connect from (any port), if not the system's choice.
    pub source: Option<IpAddr>,
    pub trace: Option<Arc<Trace>>,
}

impl Link {
    pub fn new(url: String, token: String, heartbeat: Duration) -> Link {
        Link { url, token, heartbeat, source: None, trace: None }
    }
}

/// One client, until its link ends (or the task is aborted).
pub async fn run(link: Link, stats: Arc<ClientStats>) -> Result<()> {
    let result = session(&link, &stats, None).await;
    stats.failed.fetch_add(1, Ordering::Relaxed);
    result
}

/// One client that connects again after each loss, waiting as the app does (its backoff
/// from the app's default timings, the attempt count reset by a welcome), and resumes
/// from the last seq it got; until the task is aborted.
pub async fn resuming(link: Link, stats: Arc<ClientStats>) {
    let timing = talkbell_core::config::Config::default().connection;
    let ms = Duration::from_millis;
    let mut backoff = Backoff::new(ms(timing.backoff_min_ms), ms(timing.backoff_max_ms), None);
    let mut attempt = 0;
    loop {
        let resume = link.trace.as_ref().and_then(|t| t.last_seq());
        let welcomes = link.trace.as_ref().map_or(0, |t| lock(&t.welcomed).len());
        let _ = session(&link, &stats, resume).await;
        attempt = if link.trace.as_ref().map_or(0, |t| lock(&t.welcomed).len()) > welcomes { 1 } else { attempt + 1 };
        tokio::time::sleep(backoff.delay(attempt)).await;
    }
}

/// The TCP connection, from `link.source` if set, and the WebSocket handshake over it.
async fn connect(link: &Link) -> Result<WebSocketStream<TcpStream>> {
    let uri: tokio_tungstenite::tungstenite::http::Uri = link.url.parse().context("the URL")?;
    let addr: SocketAddr = format!("{}:{}", uri.host().unwrap_or_default(), uri.port_u16().unwrap_or(80))
        .parse()
        .context("the URL's address")?;
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = link.source {
        socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("binding {ip}"))?;
    }
    let tcp = tokio::time::timeout(Duration::from_secs(30), socket.connect(addr)).await.context("connect")??;
    // Small buffers: tens of thousands of these run in one process.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(link.url.as_str(), tcp, Some(config))
        .await
        .context("WebSocket handshake")?;
    Ok(ws)
}

/// A frame from the relay: the first welcomes the link; a talk is counted (and traced).
fn on_text(link: &Link, stats: &ClientStats, text: &str, welcomed: &mut bool) {
    if !*welcomed {
        *welcomed = true;
        stats.connected.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = &link.trace {
            lock(&t.welcomed).push(now_us());
        }
    }
    if let Ok(ServerFrame::Talk(talk)) = ServerFrame::parse(text) {
        let at = now_us();
        stats.talks.fetch_add(1, Ordering::Relaxed);
        stats.last_talk_us.store(at, Ordering::Relaxed);
        if let (Some(t), Some(seq)) = (&link.trace, talk.seq) {
            lock(&t.talks).push((at, seq.0, talk.talk));
        }
    }
}

async fn session(link: &Link, stats: &ClientStats, resume: Option<u64>) -> Result<()> {
    let mut ws = connect(link).await?;
    let mut hello = serde_json::json!({"uuid": uuid::Uuid::new_v4().to_string(), "token": link.token});
    if let Some(seq) = resume {
        hello["resume"] = seq.into();
    }
    ws.send(Message::Text(hello.to_string().into())).await.context("sending the hello")?;
    let mut welcomed = false;
    let mut quiet_until = Instant::now() + link.heartbeat;
    let mut waiting_answer = false;
    let result = loop {
        tokio::select! {
            msg = ws.next() => {
                quiet_until = Instant::now() + link.heartbeat;
                waiting_answer = false;
                match msg {
                    Some(Ok(Message::Text(text))) => on_text(link, stats, &text, &mut welcomed),
                    Some(Ok(Message::Close(frame))) => break Err(anyhow::anyhow!("closed by the relay: {frame:?}")),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Err(anyhow::anyhow!("read: {e}")),
                    None => break Err(anyhow::anyhow!("the link ended")),
                }
            }
            () = sleep_until(quiet_until) => {
                if waiting_answer {
                    break Err(anyhow::anyhow!("no answer to the heartbeat"));
                }
                if let Err(e) = ws.send(Message::Text(HEARTBEAT.into())).await {
                    break Err(anyhow::anyhow!("sending a heartbeat: {e}"));
                }
                stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                waiting_answer = true;
                quiet_until = Instant::now() + link.heartbeat;
            }
        }
    };
    if welcomed {
        stats.connected.fetch_sub(1, Ordering::Relaxed);
        if let Some(t) = &link.trace {
            lock(&t.lost).push(now_us());
        }
    }
    match result {
        Ok(()) => Ok(()),
        Err(e) if !welcomed => bail!("never welcomed: {e:#}"),
        Err(e) => Err(e),
    }
}
