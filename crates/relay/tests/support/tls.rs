//! A certificate authority made in the test (rcgen), server certificates it signs, and
//! wss clients that trust it.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use talkbell_relay::TlsFiles;
use tokio_tungstenite::{Connector, MaybeTlsStream};

use super::{Ws, WAIT};

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate, PEM (what SSL_CERT_FILE points at).
    pub pem: String,
    pub der: CertificateDer<'static>,
}

/// A server certificate for `localhost` and `127.0.0.1`, and its key.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa { pem: cert.pem(), der: cert.der().clone(), issuer: Issuer::new(params, key) }
    }

    pub fn server(&self, common_name: &str) -> ServerCert {
        self.server_with(common_name, &["localhost", "127.0.0.1"], false)
    }

    /// A server certificate for the names given; `expired`: valid only in 2020.
    pub fn server_with(&self, common_name: &str, names: &[&str], expired: bool) -> ServerCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ServerCert { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    /// Writes the CA's certificate to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, &self.pem).unwrap();
    }
}

impl ServerCert {
    /// Writes cert.pem and key.pem in `dir` (replacing them) and names them.
    pub fn write_to(&self, dir: &Path) -> TlsFiles {
        let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&files.cert, &self.cert_pem).unwrap();
        std::fs::write(&files.key, &self.key_pem).unwrap();
        files
    }
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
