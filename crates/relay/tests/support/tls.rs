//! A certificate authority made in the test (rcgen), server certificates it signs, and
//! wss clients that trust it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use talkbell_relay::TlsFiles;
pub use talkbell_testkit::tls::{Ca, Leaf};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::{Connector, MaybeTlsStream};

use super::{Ws, WAIT};

/// Server certificates for the relay, from the test kit's CA.
pub trait RelayCerts {
    /// A certificate for `localhost` and `127.0.0.1`, named `common_name`.
    fn server(&self, common_name: &str) -> Leaf;
    /// A certificate for `names`, expired or not.
    fn server_with(&self, common_name: &str, names: &[&str], expired: bool) -> Leaf;
}

impl RelayCerts for Ca {
    fn server(&self, common_name: &str) -> Leaf {
        self.leaf(&["localhost", "127.0.0.1"], common_name)
    }

    fn server_with(&self, common_name: &str, names: &[&str], expired: bool) -> Leaf {
        if expired {
            self.expired_leaf(names)
        } else {
            self.leaf(names, common_name)
        }
    }
}

/// Writes cert.pem and key.pem in `dir` (replacing them) and names them for the relay.
pub fn tls_files(leaf: &Leaf, dir: &Path) -> TlsFiles {
    let (cert, key) = leaf.write_to(dir);
    TlsFiles { cert, key }
}

/// A client config trusting only `ca`.
pub fn client_config(ca: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Connects over wss trusting only `ca`; returns the socket and the server's certificate.
pub async fn connect_wss(url: &str, ca: &CertificateDer<'static>) -> (Ws, CertificateDer<'static>) {
    let connector = Connector::Rustls(client_config(ca));
    let (ws, _) =
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector)))
            .await
            .expect("connect in time")
            .expect("connect over wss");
    let peer = match ws.get_ref() {
        MaybeTlsStream::Rustls(tls) => tls.get_ref().1.peer_certificates().expect("a server certificate")[0].clone(),
        _ => panic!("not a TLS connection"),
    };
    (ws, peer)
}

/// A wss WebSocket over `tcp` trusting only `ca`, after `prefix` (a PROXY header, say) is
/// written on it in the clear; the handshake's error if the relay refused it.
pub async fn wss_over(
    mut tcp: TcpStream,
    prefix: &[u8],
    url: &str,
    ca: &CertificateDer<'static>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    tcp.write_all(prefix).await.unwrap();
    let connector = Connector::Rustls(client_config(ca));
    let handshake = tokio_tungstenite::client_async_tls_with_config(url, tcp, None, Some(connector));
    tokio::time::timeout(WAIT, handshake).await.expect("a handshake in time").map(|(ws, _)| ws)
}

/// TLS over `tcp` to 127.0.0.1, trusting only `ca`.
pub async fn tls_over(tcp: TcpStream, ca: &CertificateDer<'static>) -> TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(client_config(ca));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp)).await.expect("a handshake in time").expect("TLS")
}
