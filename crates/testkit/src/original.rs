//! A talk server as the original ones were, for the cases the relay does not play: it
//! takes any hello, sends no welcome (so it never says who the user is), answers the
//! heartbeat `online` with `online`, and sends every talk to every connection without a
//! `seq` (PROTOCOL.md version 1). It runs on a real loopback socket, on a thread of its
//! own, so that synchronous tests (a desktop app under WebDriver) can use it; it stops
//! when dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// The server; [`OriginalServer::talk`] sends a talk to everyone connected.
pub struct OriginalServer {
    addr: SocketAddr,
    talks: broadcast::Sender<String>,
    hellos: Arc<Mutex<Vec<String>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OriginalServer {
    /// Listening on a free loopback port.
    pub fn start() -> io::Result<OriginalServer> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let (talks, _) = broadcast::channel(64);
        let hellos = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel();
        let (accept_talks, accept_hellos) = (talks.clone(), hellos.clone());
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    () = accept(listener, accept_talks, accept_hellos) => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(OriginalServer { addr, talks, hellos, stop: Some(stop), thread: Some(thread) })
    }

    /// `ws://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Sends `text` from `from` (id, name) to user `to`, in the original spelling (`form`),
    /// to every connection, as the original servers did.
    pub fn talk(&self, from: (u64, &str), to: u64, text: &str) {
        let frame = serde_json::json!({
            "form": {"id": from.0, "name": from.1, "talk": text},
            "to": {"id": to},
        });
        // Nobody connected is no error: the original servers kept nothing either.
        let _ = self.talks.send(frame.to_string());
    }

    /// The hellos received so far, as sent.
    pub fn hellos(&self) -> Vec<String> {
        self.hellos.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for OriginalServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(listener: TcpListener, talks: broadcast::Sender<String>, hellos: Arc<Mutex<Vec<String>>>) {
    let mut links = tokio::task::JoinSet::new();
    while let Ok((tcp, _)) = listener.accept().await {
        links.spawn(link(tcp, talks.subscribe(), hellos.clone()));
    }
}

/// One connection: the hello, then heartbeats answered and talks sent, until it closes.
async fn link(tcp: TcpStream, mut talks: broadcast::Receiver<String>, hellos: Arc<Mutex<Vec<String>>>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
    let mut hello_seen = false;
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) if !hello_seen => {
                    hello_seen = true;
                    hellos.lock().unwrap_or_else(|e| e.into_inner()).push(text.to_string());
                }
                Some(Ok(Message::Text(text))) if text.as_str() == "online" => {
                    if ws.send(Message::text("online")).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            talk = talks.recv() => match talk {
                Ok(talk) if hello_seen => {
                    if ws.send(Message::text(talk)).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
