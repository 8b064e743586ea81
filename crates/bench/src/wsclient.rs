//! Light WebSocket clients for the relay benchmark, behaving like the original browser
//! client: the hello on open, `online` after 5 s without a frame, no acks, no resume.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use talkbell_core::protocol::{ServerFrame, HEARTBEAT};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

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

/// One client, until its link ends (or the task is aborted). `heartbeat` is the silence
/// after which it sends `online`.
pub async fn run(url: String, token: String, stats: Arc<ClientStats>, heartbeat: Duration) -> Result<()> {
    let result = link(&url, &token, &stats, heartbeat).await;
    stats.failed.fetch_add(1, Ordering::Relaxed);
    result
}

async fn link(url: &str, token: &str, stats: &ClientStats, heartbeat: Duration) -> Result<()> {
    // Small buffers: ten thousand of these run in one process.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), true).await.context("WebSocket handshake")?;
    let hello = serde_json::json!({"uuid": uuid::Uuid::new_v4().to_string(), "token": token}).to_string();
    ws.send(Message::Text(hello.into())).await.context("sending the hello")?;
    let mut welcomed = false;
    let mut quiet_until = Instant::now() + heartbeat;
    let mut waiting_answer = false;
    let result = loop {
        tokio::select! {
            msg = ws.next() => {
                quiet_until = Instant::now() + heartbeat;
                waiting_answer = false;
                match msg {
                    Some(Ok(Message::Text(text))) => {
                        if !welcomed {
                            welcomed = true;
                            stats.connected.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Ok(ServerFrame::Talk(_)) = ServerFrame::parse(&text) {
                            stats.talks.fetch_add(1, Ordering::Relaxed);
                            stats.last_talk_us.store(crate::stats::now_us(), Ordering::Relaxed);
                        }
                    }
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
                quiet_until = Instant::now() + heartbeat;
            }
        }
    };
    if welcomed {
        stats.connected.fetch_sub(1, Ordering::Relaxed);
    }
    match result {
        Ok(()) => Ok(()),
        Err(e) if !welcomed => bail!("never welcomed: {e:#}"),
        Err(e) => Err(e),
    }
}
