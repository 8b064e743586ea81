//! How a socket reaches a server: the roots TLS trusts and the proxies that carry it.
//!
//! [`Transport::from_env`] is what the app uses: the operating system's certificate store
//! and the proxy variables of the environment. Tests (and anyone who needs another
//! policy) build one from values with [`Transport::new`], without touching the process's
//! environment.
//!
//! # Roots
//! The roots come from `rustls-native-certs`: on Linux the system bundle
//! (`/etc/ssl/certs/...`), on macOS the Keychain, on Windows the system store, and on
//! every platform `SSL_CERT_FILE` / `SSL_CERT_DIR` instead when set. They are loaded once
//! per process (reading and parsing a bundle of ~150 certificates on every attempt would
//! cost more than the attempt). A company CA installed while the app runs is seen after
//! a restart.
//!
//! Only when that store holds no usable certificate (a minimal container, a broken
//! `SSL_CERT_FILE`) are the Mozilla roots of `webpki-roots` used instead, so that public
//! servers still work. They are never *added* to a non-empty system store: the system
//! store is the administrator's policy, and a root removed or distrusted there must stay
//! untrusted here too.
//!
//! # Proxies
//! `hyper-util`'s matcher reads `HTTPS_PROXY`/`https_proxy` for `wss://`,
//! `HTTP_PROXY`/`http_proxy` for `ws://`, `ALL_PROXY`/`all_proxy` for both and
//! `NO_PROXY`/`no_proxy` (curl's rules: domains and their subdomains, IPs, CIDRs, `*`).
//! The connector then tunnels with HTTP CONNECT (session/proxy.rs).

use std::fmt;
use std::sync::{Arc, OnceLock};

use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use rustls::RootCertStore;
use tokio_tungstenite::tungstenite::http::Uri;

/// Roots and proxies for opening sockets. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    tls: Option<Arc<rustls::ClientConfig>>,
    roots: usize,
    proxies: Arc<Matcher>,
}

/// Which proxy carries which URL, as values rather than environment variables. Each
/// field takes what the variable of the same name would hold; empty means none.
#[derive(Clone, Default)]
pub struct ProxySettings {
    /// `https_proxy`: for `wss://`.
    pub https: String,
    /// `http_proxy`: for `ws://`.
    pub http: String,
    /// `all_proxy`: for both, when the one above is empty.
    pub all: String,
    /// `no_proxy`: hosts reached directly.
    pub no: String,
}

impl fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Proxy URLs may hold a password: only say which are set.
        f.debug_struct("ProxySettings")
            .field("https", &!self.https.is_empty())
            .field("http", &!self.http.is_empty())
            .field("all", &!self.all.is_empty())
            .field("no", &self.no)
            .finish()
    }
}

impl Transport {
    /// The system's roots (loaded once per process) and the environment's proxies.
    pub fn from_env() -> Self {
        static SYSTEM: OnceLock<(Option<Arc<rustls::ClientConfig>>, usize)> = OnceLock::new();
        let (tls, roots) = SYSTEM
            .get_or_init(|| {
                let roots = system_roots();
                let count = roots.len();
                (client_config(roots), count)
            })
            .clone();
        Transport { tls, roots, proxies: Arc::new(Matcher::from_env()) }
    }

    /// These roots and these proxies.
    pub fn new(roots: RootCertStore, proxies: &ProxySettings) -> Self {
        let count = roots.len();
        let matcher = Matcher::builder()
            .https(proxies.https.as_str())
            .http(proxies.http.as_str())
            .all(proxies.all.as_str())
            .no(proxies.no.as_str())
            .build();
        Transport { tls: client_config(roots), roots: count, proxies: Arc::new(matcher) }
    }

    /// How many roots TLS trusts.
    pub fn root_count(&self) -> usize {
        self.roots
    }

    pub(crate) fn tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }

    /// The proxy for `host:port` (`tls`: a `wss://` URL), if one is set and `no_proxy`
    /// does not name the host.
    pub(crate) fn proxy_for(&self, host: &str, port: u16, tls: bool) -> Option<Intercept> {
        let scheme = if tls { "https" } else { "http" };
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let uri: Uri = format!("{scheme}://{authority}/").parse().ok()?;
        self.proxies.intercept(&uri)
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The matcher's Debug shows proxy URLs without their credentials.
        f.debug_struct("Transport").field("roots", &self.roots).field("proxies", &self.proxies).finish()
    }
}

/// The operating system's roots, or the Mozilla roots if it has none usable.
fn system_roots() -> RootCertStore {
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(%error, "could not read part of the system's certificate store");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    if added > 0 {
        tracing::debug!(added, ignored, "trusting the system's certificate store");
        return roots;
    }
    tracing::warn!(
        ignored,
        "the system's certificate store holds no usable certificate: trusting the built-in public roots"
    );
    RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

/// A client configuration with ring as the one provider.
fn client_config(roots: RootCertStore) -> Option<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(https: &str, no: &str) -> ProxySettings {
        ProxySettings { https: https.into(), no: no.into(), ..ProxySettings::default() }
    }

    #[test]
    fn proxies_are_matched_as_curl_does() {
        let t = Transport::new(
            RootCertStore::empty(),
            &settings("http://u:secret@proxy.example:3128", "corp.example, 10.0.0.0/8"),
        );
        let cases = [
            ("talk.example", 443, true, Some("proxy.example:3128")),
            ("talk.corp.example", 443, true, None),
            ("corp.example", 443, true, None),
            ("notcorp.example", 443, true, Some("proxy.example:3128")),
            ("10.1.2.3", 443, true, None),
            ("talk.example", 80, false, None),
        ];
        for (host, port, tls, want) in cases {
            let got =
                t.proxy_for(host, port, tls).map(|i| i.uri().authority().map(|a| a.to_string()).unwrap_or_default());
            assert_eq!(got.as_deref(), want, "{host}:{port} tls={tls}");
        }
        let proxy = t.proxy_for("talk.example", 443, true).unwrap();
        assert_eq!(proxy.basic_auth().unwrap(), "Basic dTpzZWNyZXQ=");
    }

    #[test]
    fn debug_output_names_no_proxy_password() {
        let s = settings("http://u:secret@proxy.example:3128", "");
        let t = Transport::new(RootCertStore::empty(), &s);
        let text = format!("{t:?} {s:?}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn all_proxy_covers_both_schemes_and_ipv6_hosts_are_matched() {
        let s = ProxySettings { all: "http://proxy.example:8080".into(), no: "::1".into(), ..ProxySettings::default() };
        let t = Transport::new(RootCertStore::empty(), &s);
        assert!(t.proxy_for("talk.example", 80, false).is_some());
        assert!(t.proxy_for("talk.example", 443, true).is_some());
        assert!(t.proxy_for("::1", 443, true).is_none());
    }
}
