//! Why the session is offline or signed out: one typed reason per cause a person can act
//! on.
//!
//! Every failed attempt and every lost link ends in an [`OfflineReason`], carried by
//! [`SessionState::Backoff`](super::SessionState::Backoff). Its `Display` is the text
//! the window, the tray, the CLI and the log show; none of them contains a token or a
//! proxy password. All of them are retried with the back-off (a CA may be installed, a
//! certificate renewed, a proxy come back); only the server refusing the token signs out.
//!
//! A session signed out for a cause other than "nobody signed in" carries a
//! [`SignedOutReason`] in [`SessionState::SignedOut`](super::SessionState::SignedOut):
//! the server refused the token, or the token stored in the keyring cannot be read yet
//! (the engine then reads it again by itself, see `crate::keyring_wait`).

use std::time::Duration;

use super::StoreError;

/// Why the last attempt failed or the last link ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfflineReason {
    /// The server URL cannot be used (not `ws://`/`wss://`, no host, ...).
    #[error("the server URL {url:?} cannot be used: {detail}")]
    BadUrl { url: String, detail: String },
    /// The host name does not resolve.
    #[error("the server's name {host} cannot be resolved: {detail}")]
    Dns { host: String, detail: String },
    /// TCP connection refused: nothing listens there.
    #[error("the server {addr} refused the connection: is it running, and is the port right?")]
    Refused { addr: String },
    /// No route, network down, host unreachable, reset.
    #[error("the server {addr} cannot be reached: {detail}")]
    Unreachable { addr: String, detail: String },
    /// TCP, proxy, TLS and the WebSocket handshake did not finish within the connect timeout.
    #[error("no connection within {} s", after.as_secs_f64())]
    TimedOut { after: Duration },
    /// The certificate chain does not lead to a root this computer trusts.
    #[error("the server's certificate is not trusted: {0}")]
    CertUntrusted(Untrusted),
    /// The certificate is valid, but not for the host name in the server URL.
    #[error("the server's certificate is for another host name: {}", wrong_host(expected, presented))]
    CertWrongHost { expected: String, presented: Vec<String> },
    /// The certificate's validity ended.
    #[error("the server's certificate has expired")]
    CertExpired,
    /// The certificate's validity has not begun (often a wrong clock here).
    #[error("the server's certificate is not valid yet: is this computer's clock right?")]
    CertNotYetValid,
    /// A `ws://` URL to a port that answers with TLS.
    #[error("this port speaks TLS: use wss://")]
    PortSpeaksTls,
    /// A `wss://` URL to a port that answers in plain text.
    #[error("this port does not speak TLS: use ws://")]
    PortSpeaksPlain,
    /// Any other TLS failure (an alert from the server, no common cipher, ...).
    #[error("the TLS handshake failed: {detail}")]
    Tls { detail: String },
    /// The proxy could not carry the connection.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The server answered the WebSocket handshake with an HTTP status other than 101.
    #[error("the server answered HTTP {status} instead of opening a WebSocket: is the URL's path right?")]
    Http { status: u16 },
    /// The server's answer to the handshake is not a WebSocket upgrade.
    #[error("the WebSocket handshake failed: {detail}")]
    Handshake { detail: String },
    /// Nothing came back for a heartbeat: the link is dead.
    #[error("no answer to the heartbeat within {} s", after.as_secs_f64())]
    HeartbeatTimeout { after: Duration },
    /// The server closed the link (a close frame, or the end of the stream).
    #[error("the server closed the connection{}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Closed { code: Option<u16> },
    /// Reading from or writing to the link failed.
    #[error("the connection was lost: {detail}")]
    Lost { detail: String },
    /// A frame over the size limit (PROTOCOL.md §5).
    #[error("refused a message of {size} bytes (limit {limit})")]
    Oversized { size: usize, limit: usize },
    /// The history could not store a talk or be read for the hello.
    #[error("the history cannot be used: {0}")]
    History(StoreError),
}

/// Why a certificate is not trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Untrusted {
    /// No trusted root issued it: self-signed, or from a CA not in the system store.
    #[error("unknown issuer (self-signed, or from a certificate authority not in the system store)")]
    UnknownIssuer,
    #[error("it has been revoked")]
    Revoked,
    #[error("its signature is not valid")]
    BadSignature,
    /// It may not be used for a TLS server.
    #[error("it is not meant for a TLS server")]
    InvalidPurpose,
    /// What rustls said, for the rarer cases.
    #[error("{0}")]
    Other(String),
}

/// Why a proxy could not carry the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// TCP to the proxy failed.
    #[error("the proxy {proxy} cannot be reached: {detail}")]
    Unreachable { proxy: String, detail: String },
    /// HTTP 407: the proxy wants credentials, or refused the ones given.
    #[error(
        "the proxy {proxy} asks for a user name and password (HTTP 407): put them in the proxy URL \
         (http://user:password@host:port) of https_proxy"
    )]
    AuthRequired { proxy: String },
    /// Any other answer than 2xx to the CONNECT (403 forbidden, 502 bad gateway, ...).
    #[error("the proxy {proxy} refused to connect to {target} (HTTP {status})")]
    Refused { proxy: String, target: String, status: u16 },
    /// The answer to the CONNECT is not HTTP.
    #[error("the proxy {proxy} did not answer the CONNECT with HTTP")]
    BadAnswer { proxy: String },
    /// A proxy URL this client cannot use (SOCKS, https://).
    #[error("the proxy URL scheme {scheme:?} is not supported: use an http:// proxy")]
    Unsupported { scheme: String },
}

/// Why the session is signed out, when it is not only that nobody has signed in (or the
/// user signed out). `Display` is the text the window, the tray, the CLI and the log show.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignedOutReason {
    /// The server refused the token: only a new sign-in helps.
    #[error(transparent)]
    Refused(Refusal),
    /// The engine is reading the stored token from the keyring (at start).
    #[error("reading the token from the keyring")]
    ReadingKeyring,
    /// The keyring holding the token is locked.
    #[error("the keyring is locked: unlock it to connect")]
    KeyringLocked,
    /// No keyring service can be reached (no session bus, no Secret Service on it).
    #[error(
        "no keyring is available ({detail}): start one (GNOME Keyring, KWallet or KeePassXC \
         with Secret Service enabled) to connect"
    )]
    NoKeyring { detail: String },
    /// The keyring did not answer in time; most likely an unlock prompt is waiting.
    #[error("the keyring does not answer: if it asks for its password, answer it to connect")]
    KeyringNoAnswer,
    /// The keyring answered with an error other than the above.
    #[error("the token cannot be read from the keyring: {detail}")]
    KeyringFailed { detail: String },
    /// This build has no persistent keyring, so there is no stored token to read.
    #[error("no persistent keyring on this platform: sign in again after each start")]
    NoPersistentKeyring,
}

/// How the server refused the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// An HTTP status instead of the WebSocket upgrade (401, 403).
    #[error("the server refused the token (HTTP {status})")]
    Http { status: u16 },
    /// A close frame with code 4001 or 4003, and the server's words if it gave any.
    #[error("the server refused the token{}", close_words(*code, reason.as_deref()))]
    Close { code: u16, reason: Option<String> },
    /// An `unauthorized` or `forbidden` error frame, with its message.
    #[error("the server refused the token: {message}")]
    Error { message: String },
}

fn close_words(code: u16, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!(": {r}"),
        None => format!(" (close code {code})"),
    }
}

impl SignedOutReason {
    /// Signed out because the stored token cannot be read from the keyring (yet): the
    /// engine reads it again by itself, and a sign-in made meanwhile wins.
    pub fn is_keyring(&self) -> bool {
        !matches!(self, SignedOutReason::Refused(_))
    }
}

impl OfflineReason {
    /// A problem with the server's certificate: the tray's first line names it, since a
    /// person must act on it and retrying alone will not help.
    pub fn is_certificate(&self) -> bool {
        matches!(
            self,
            OfflineReason::CertUntrusted(_)
                | OfflineReason::CertWrongHost { .. }
                | OfflineReason::CertExpired
                | OfflineReason::CertNotYetValid
        )
    }
}

fn wrong_host(expected: &str, presented: &[String]) -> String {
    if presented.is_empty() {
        format!("it is not valid for {expected}")
    } else {
        format!("it is valid for {}, not for {expected}", presented.join(", "))
    }
}

/// The reason for a rustls error seen while opening a link. `first_byte` is the first
/// byte the server sent, if any: a TLS record starts with 0x14-0x17, so anything else
/// means the port speaks plain text.
pub(crate) fn from_rustls(err: &rustls::Error, host: &str, first_byte: Option<u8>) -> OfflineReason {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::Expired | C::ExpiredContext { .. } => OfflineReason::CertExpired,
            C::NotValidYet | C::NotValidYetContext { .. } => OfflineReason::CertNotYetValid,
            C::NotValidForName => OfflineReason::CertWrongHost { expected: host.to_owned(), presented: Vec::new() },
            C::NotValidForNameContext { expected, presented } => OfflineReason::CertWrongHost {
                expected: expected.to_str().into_owned(),
                presented: presented.iter().map(|p| unquoted(p)).collect(),
            },
            C::UnknownIssuer => OfflineReason::CertUntrusted(Untrusted::UnknownIssuer),
            C::Revoked => OfflineReason::CertUntrusted(Untrusted::Revoked),
            C::BadSignature => OfflineReason::CertUntrusted(Untrusted::BadSignature),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                OfflineReason::CertUntrusted(Untrusted::InvalidPurpose)
            }
            other => OfflineReason::CertUntrusted(Untrusted::Other(other.to_string())),
        },
        _ if first_byte.is_some_and(|b| !is_tls_record(b)) => OfflineReason::PortSpeaksPlain,
        other => OfflineReason::Tls { detail: other.to_string() },
    }
}

/// rustls presents names as `DnsName("a.example")` or `IpAddress(..)`; a person reads
/// `a.example`.
fn unquoted(presented: &str) -> String {
    match (presented.find('"'), presented.rfind('"')) {
        (Some(start), Some(end)) if end > start => presented[start + 1..end].to_owned(),
        _ => presented.to_owned(),
    }
}

/// Whether `byte` can start a TLS record (change_cipher_spec, alert, handshake, data).
pub(crate) fn is_tls_record(byte: u8) -> bool {
    (0x14..=0x17).contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::CertificateError as C;

    fn cert(e: C) -> rustls::Error {
        rustls::Error::InvalidCertificate(e)
    }

    #[test]
    fn rustls_errors_become_reasons() {
        let wrong_name = C::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.1").map(|n| n.to_owned()).unwrap(),
            presented: vec!["DnsName(\"other.example\")".into()],
        };
        let cases: Vec<(rustls::Error, Option<u8>, OfflineReason)> = vec![
            (cert(C::UnknownIssuer), Some(0x16), OfflineReason::CertUntrusted(Untrusted::UnknownIssuer)),
            (cert(C::Expired), Some(0x16), OfflineReason::CertExpired),
            (cert(C::NotValidYet), Some(0x16), OfflineReason::CertNotYetValid),
            (cert(C::Revoked), Some(0x16), OfflineReason::CertUntrusted(Untrusted::Revoked)),
            (
                cert(wrong_name),
                Some(0x16),
                OfflineReason::CertWrongHost { expected: "127.0.0.1".into(), presented: vec!["other.example".into()] },
            ),
            (
                cert(C::NotValidForName),
                Some(0x16),
                OfflineReason::CertWrongHost { expected: "a.example".into(), presented: vec![] },
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                Some(b'H'),
                OfflineReason::PortSpeaksPlain,
            ),
        ];
        for (err, first, want) in cases {
            assert_eq!(from_rustls(&err, "a.example", first), want, "{err:?}");
        }
        let alert =
            from_rustls(&rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure), "h", Some(0x15));
        assert!(matches!(alert, OfflineReason::Tls { .. }), "{alert:?}");
    }

    #[test]
    fn texts_say_what_is_wrong() {
        let cases = [
            (
                OfflineReason::CertUntrusted(Untrusted::UnknownIssuer),
                "the server's certificate is not trusted: unknown issuer (self-signed",
            ),
            (OfflineReason::CertExpired, "the server's certificate has expired"),
            (
                OfflineReason::CertWrongHost { expected: "127.0.0.1".into(), presented: vec!["other.example".into()] },
                "the server's certificate is for another host name: it is valid for other.example, not for 127.0.0.1",
            ),
            (OfflineReason::PortSpeaksTls, "this port speaks TLS: use wss://"),
            (OfflineReason::PortSpeaksPlain, "this port does not speak TLS: use ws://"),
            (OfflineReason::Closed { code: Some(1001) }, "the server closed the connection (code 1001)"),
            (OfflineReason::Closed { code: None }, "the server closed the connection"),
            (OfflineReason::TimedOut { after: Duration::from_millis(1500) }, "no connection within 1.5 s"),
            (ProxyError::AuthRequired { proxy: "p:3128".into() }.into(), "the proxy p:3128 asks for a user name"),
        ];
        for (reason, start) in cases {
            let text = reason.to_string();
            assert!(text.starts_with(start), "{text:?} does not start with {start:?}");
        }
        assert!(OfflineReason::CertExpired.is_certificate());
        assert!(!OfflineReason::PortSpeaksTls.is_certificate());
    }

    #[test]
    fn signed_out_reasons_say_what_to_do() {
        let cases = [
            (SignedOutReason::KeyringLocked, "the keyring is locked: unlock it to connect"),
            (
                SignedOutReason::KeyringNoAnswer,
                "the keyring does not answer: if it asks for its password, answer it to connect",
            ),
            (SignedOutReason::Refused(Refusal::Http { status: 401 }), "the server refused the token (HTTP 401)"),
            (
                SignedOutReason::Refused(Refusal::Close { code: 4001, reason: None }),
                "the server refused the token (close code 4001)",
            ),
            (
                SignedOutReason::Refused(Refusal::Close { code: 4003, reason: Some("banned".into()) }),
                "the server refused the token: banned",
            ),
            (
                SignedOutReason::Refused(Refusal::Error { message: "bad token".into() }),
                "the server refused the token: bad token",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
        }
        assert!(SignedOutReason::KeyringLocked.is_keyring());
        assert!(SignedOutReason::ReadingKeyring.is_keyring());
        assert!(!SignedOutReason::Refused(Refusal::Http { status: 403 }).is_keyring());
    }
}
