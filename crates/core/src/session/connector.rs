//! Opening one WebSocket: TCP, TLS and the handshake, within the connect timeout.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a socket could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// HTTP 401/403 to the handshake: the server refuses us; do not retry on our own.
    Rejected(String),
    /// Anything else (refused, DNS, TLS, timeout, bad URL): try again later.
    Failed(String),
}

/// One TLS configuration for the process, with ring as the provider and the Mozilla
/// roots, so that `wss://` works without a system certificate store.
fn tls() -> Option<Arc<rustls::ClientConfig>> {
    static TLS: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    TLS.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Some(Arc::new(config))
    })
    .clone()
}

pub(crate) fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(max_message_bytes)).max_frame_size(Some(max_message_bytes))
}

pub(crate) async fn open(server: &str, timeout: Duration, max_message_bytes: usize) -> Result<Ws, ConnectError> {
    let request = server
        .into_client_request()
        .map_err(|e| ConnectError::Failed(format!("invalid server URL {server:?}: {e}")))?;
    let connector = if request.uri().scheme_str() == Some("wss") {
        match tls() {
            Some(config) => Some(Connector::Rustls(config)),
            None => return Err(ConnectError::Failed("TLS is not available".into())),
        }
    } else {
        Some(Connector::Plain)
    };
    let attempt =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(ws_config(max_message_bytes)), true, connector);
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Err(ConnectError::Failed(format!("no connection within {timeout:?}"))),
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(WsError::Http(response))) => {
            let status = response.status();
            if status.as_u16() == 401 || status.as_u16() == 403 {
                Err(ConnectError::Rejected(format!("the server answered HTTP {status}")))
            } else {
                Err(ConnectError::Failed(format!("the server answered HTTP {status}")))
            }
        }
        Ok(Err(e)) => Err(ConnectError::Failed(e.to_string())),
    }
}
