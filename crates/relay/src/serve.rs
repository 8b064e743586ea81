//! The listener's loop: accepts connections (TCP, or TLS once its handshake is done),
//! caps how many are open, and serves each with hyper's HTTP/1 (with upgrades, for
//! WebSocket) under a header read timeout.
//!
//! The address a peer is known by (for logs and the per-address rate limits) is decided
//! here, once, and handed to handlers as `ConnectInfo<SocketAddr>`: the TCP peer, or
//! behind a trusted proxy the client address of its PROXY v2 header ([`crate::proxy`]).
//! Nothing past this loop knows whether a proxy is in front.
//!
//! A connection holds a [`Slot`] of the total cap for as long as it lives: the HTTP
//! connection's task holds one, and a WebSocket upgrade takes a clone into its task, so
//! an upgraded connection keeps counting after hyper hands it over.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::http::Slot;
use crate::hub::Shared;
use crate::proxy::ProxyListener;
use crate::tls::Tls;

/// Serves HTTP and WebSocket upgrades on the listener, through TLS when it is on, until
/// shutdown; then waits for the HTTP connections (upgraded ones are the tracker's).
pub(crate) async fn serve(listener: tokio::net::TcpListener, tls: Option<Arc<Tls>>, shared: Arc<Shared>) {
    let cfg = shared.config();
    let listener = ProxyListener::new(listener, cfg.trusted_proxies.clone(), cfg.header_timeout);
    match tls {
        Some(tls) => accept_loop(tls.listener(listener), shared).await,
        None => accept_loop(listener, shared).await,
    }
}

async fn accept_loop<L>(mut listener: L, shared: Arc<Shared>)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = crate::http::router(shared.clone());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(shared.config().header_timeout);
    let http = Arc::new(http);
    let open = Arc::new(Semaphore::new(shared.config().max_connections.max(1)));
    // Every connection task holds a receiver; all of them gone means all are done.
    let (done_tx, done_rx) = watch::channel(());
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.stopped() => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            shared.gate().over_cap(&peer.to_string(), shared.config().max_connections);
            drop(io);
            continue;
        };
        let task = Connection {
            app: app.clone(),
            http: http.clone(),
            peer,
            slot: Slot::new(permit),
            shared: shared.clone(),
            _done: done_rx.clone(),
        };
        tokio::spawn(task.run(io));
    }
    drop(done_rx);
    drop(listener);
    done_tx.closed().await;
}

struct Connection {
    app: Router,
    http: Arc<hyper::server::conn::http1::Builder>,
    peer: SocketAddr,
    slot: Slot,
    shared: Arc<Shared>,
    /// Held until the connection ends; the loop waits for every one to go.
    _done: watch::Receiver<()>,
}

impl Connection {
    async fn run<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self, io: I) {
        let (app, peer, slot) = (self.app.clone(), self.peer, self.slot.clone());
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(slot.clone());
            app.clone().oneshot(req)
        });
        let conn = self.http.serve_connection(TokioIo::new(io), service).with_upgrades();
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            _ = self.shared.stopped() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            if e.is_timeout() {
                tracing::debug!(peer = %self.peer, "no complete request headers in time; closed");
            } else {
                tracing::debug!(peer = %self.peer, error = %e, "HTTP connection ended with an error");
            }
        }
    }
}
