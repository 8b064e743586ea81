//! TLS for the relay's listener: the certificate and key from PEM files, swapped in place
//! on [`Tls::reload`] (open connections keep the session they have), and a listener that
//! hands axum only connections whose handshake finished.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::proxy::ProxyListener;

/// A handshake not done in this long is dropped (the protocol's connect timeout).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at once; past this, accepting waits for one to end.
const MAX_HANDSHAKES: usize = 1024;

/// Where the relay's certificate chain and private key are (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate, then any intermediates.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate or key could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {source}")]
    Cert { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("the TLS certificate file {0} holds no certificate")]
    NoCert(PathBuf),
    #[error("cannot read the TLS key {path}: {source}")]
    Key { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("the TLS key {path} cannot be used with the certificate {cert}: {source}")]
    Mismatch { path: PathBuf, cert: PathBuf, source: rustls::Error },
    #[error("cannot set up TLS: {0}")]
    Config(#[source] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks a certificate chain and its key.
fn load(files: &TlsFiles, provider: &rustls::crypto::CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_err = |source| TlsError::Cert { path: files.cert.clone(), source };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(cert_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(cert_err)?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(files.cert.clone()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Key { path: files.key.clone(), source })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Mismatch {
        path: files.key.clone(),
        cert: files.cert.clone(),
        source,
    })
}

/// Hands every handshake the certificate in force at that moment.
#[derive(Debug)]
struct Resolver(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The relay's TLS side: the files, the certificate in force, and the acceptor.
pub(crate) struct Tls {
    files: TlsFiles,
    provider: Arc<rustls::crypto::CryptoProvider>,
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
}

impl Tls {
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = provider();
        let key = load(&files, &provider)?;
        let resolver = Arc::new(Resolver(ArcSwap::from_pointee(key)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { files, provider, resolver, acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    /// Reads the files again and puts the new certificate in force for new handshakes.
    /// On an error the old one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load(&self.files, &self.provider)?;
        self.resolver.0.store(Arc::new(key));
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// TLS over what `tcp` accepts (after any PROXY header: the balancer sends it in the
    /// clear, before the client's handshake).
    pub fn listener(&self, tcp: ProxyListener) -> TlsListener {
        TlsListener { tcp, acceptor: self.acceptor.clone(), handshakes: JoinSet::new() }
    }
}

type Handshake = Option<(TlsStream<TcpStream>, SocketAddr)>;

/// Accepts TCP connections and runs their handshakes in tasks of their own, so that a
/// slow or silent client holds up nobody. A failed handshake (a plain HTTP client, a
/// client that does not trust the certificate) is logged at debug and forgotten.
pub(crate) struct TlsListener {
    tcp: ProxyListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Handshake>,
}

async fn handshake(acceptor: TlsAcceptor, tcp: TcpStream, peer: SocketAddr) -> Handshake {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some((stream, peer)),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %crate::untrusted(&e.to_string()), "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.handshakes.len() < MAX_HANDSHAKES;
            tokio::select! {
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
                (tcp, peer) = self.tcp.accept(), if room => {
                    self.handshakes.spawn(handshake(self.acceptor.clone(), tcp, peer));
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &std::path::Path, name: &str) -> TlsFiles {
        let leaf = talkbell_testkit::tls::Ca::new(name).localhost();
        let files = TlsFiles { cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")) };
        std::fs::write(&files.cert, &leaf.cert_pem).unwrap();
        std::fs::write(&files.key, &leaf.key_pem).unwrap();
        files
    }

    #[test]
    fn bad_files_are_refused_and_the_old_certificate_stays() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_pair(dir.path(), "a");
        let b = write_pair(dir.path(), "b");
        let tls = Tls::new(a.clone()).unwrap();
        let before = tls.resolver.0.load_full();

        let missing = TlsFiles { cert: dir.path().join("none.crt"), key: a.key.clone() };
        assert!(matches!(Tls::new(missing), Err(TlsError::Cert { .. })));
        std::fs::write(dir.path().join("empty.crt"), "").unwrap();
        let empty = TlsFiles { cert: dir.path().join("empty.crt"), key: a.key.clone() };
        assert!(matches!(Tls::new(empty), Err(TlsError::NoCert(_))));
        let crossed = TlsFiles { cert: a.cert.clone(), key: b.key.clone() };
        let err = Tls::new(crossed).err().expect("a key of another certificate is refused");
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");

        // The files change under a running relay: a mismatched pair is refused, and the
        // certificate in force is still the first.
        std::fs::copy(&b.key, &a.key).unwrap();
        assert!(matches!(tls.reload(), Err(TlsError::Mismatch { .. })));
        assert!(Arc::ptr_eq(&before, &tls.resolver.0.load_full()));
        std::fs::copy(&b.cert, &a.cert).unwrap();
        tls.reload().unwrap();
        assert_ne!(before.cert, tls.resolver.0.load_full().cert);
    }
}
