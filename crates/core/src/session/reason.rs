//! Why the session is offline or signed out: one typed reason per cause a person can act
//! on.
//!
//! Every failed attempt and every lost link ends in an [`OfflineReason`], carried by
//! [`SessionState::Backoff`](super::SessionState::Backoff). Its `Display` is the text
//! the window, the tray, the CLI and the log show, in the process's language (the
//! catalogue's `reason-…`, `untrusted-…`, `proxy-…`, `signed-out-…` and `refusal-…`); none of them contains a token or a
//! proxy password. All of them are retried with the back-off (a CA may be installed, a
//! certificate renewed, a proxy come back); only the server refusing the token signs out.
//!
//! A session signed out for a cause other than "nobody signed in" carries a
//! [`SignedOutReason`] in [`SessionState::SignedOut`](super::SessionState::SignedOut):
//! the server refused the token, or the token stored in the keyring cannot be read yet
//! (the engine then reads it again by itself, see `crate::keyring_wait`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::i18n::{t, text, Msg};

/// Why the last attempt failed or the last link ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "facts")]
#[non_exhaustive]
pub enum OfflineReason {
    /// The server URL cannot be used (not `ws://`/`wss://`, no host, ...).
    #[error("{}", text(Msg::ReasonBadUrl, &[("url", format!("{url:?}").as_str().into()), ("detail", detail.into())]))]
    BadUrl { url: String, detail: String },
    /// The host name does not resolve.
    #[error("{}", text(Msg::ReasonDns, &[("host", host.into()), ("detail", detail.into())]))]
    Dns { host: String, detail: String },
    /// TCP connection refused: nothing listens there.
    #[error("{}", text(Msg::ReasonRefused, &[("addr", addr.into())]))]
    Refused { addr: String },
    /// No route, network down, host unreachable, reset.
    #[error("{}", text(Msg::ReasonUnreachable, &[("addr", addr.into()), ("detail", detail.into())]))]
    Unreachable { addr: String, detail: String },
    /// TCP, proxy, TLS and the WebSocket handshake did not finish within the connect timeout.
    #[error("{}", text(Msg::ReasonTimedOut, &[("seconds", after.as_secs_f64().into())]))]
    TimedOut { after: Duration },
    /// The certificate chain does not lead to a root this computer trusts.
    #[error("{}", text(Msg::ReasonCertUntrusted, &[("why", _0.to_string().as_str().into())]))]
    CertUntrusted(Untrusted),
    /// The certificate is valid, but not for the host name in the server URL.
    #[error("{}", text(Msg::ReasonCertWrongHost, &[("why", wrong_host(expected, presented).as_str().into())]))]
    CertWrongHost { expected: String, presented: Vec<String> },
    /// The certificate's validity ended.
    #[error("{}", t(Msg::ReasonCertExpired))]
    CertExpired,
    /// The certificate's validity has not begun (often a wrong clock here).
    #[error("{}", t(Msg::ReasonCertNotYetValid))]
    CertNotYetValid,
    /// A `ws://` URL to a port that answers with TLS.
    #[error("{}", t(Msg::ReasonPortSpeaksTls))]
    PortSpeaksTls,
    /// A `wss://` URL to a port that answers in plain text.
    #[error("{}", t(Msg::ReasonPortSpeaksPlain))]
    PortSpeaksPlain,
    /// Any other TLS failure (an alert from the server, no common cipher, ...).
    #[error("{}", text(Msg::ReasonTls, &[("detail", detail.into())]))]
    Tls { detail: String },
    /// The proxy could not carry the connection.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The server answered the WebSocket handshake with an HTTP status other than 101.
    #[error("{}", text(Msg::ReasonHttp, &[("status", status.to_string().as_str().into())]))]
    Http { status: u16 },
    /// The server's answer to the handshake is not a WebSocket upgrade.
    #[error("{}", text(Msg::ReasonHandshake, &[("detail", detail.into())]))]
    Handshake { detail: String },
    /// Nothing came back for a heartbeat: the link is dead.
    #[error("{}", text(Msg::ReasonHeartbeatTimeout, &[("seconds", after.as_secs_f64().into())]))]
    HeartbeatTimeout { after: Duration },
    /// The server closed the link (a close frame, or the end of the stream).
    #[error("{}", closed(*code))]
    Closed { code: Option<u16> },
    /// Reading from or writing to the link failed.
    #[error("{}", text(Msg::ReasonLost, &[("detail", detail.into())]))]
    Lost { detail: String },
    /// A frame over the size limit (PROTOCOL.md §5).
    #[error("{}", text(Msg::ReasonOversized, &[("size", (*size).into()), ("limit", (*limit).into())]))]
    Oversized { size: usize, limit: usize },
    /// The history could not store a talk or be read for the hello.
    #[error("{}", text(Msg::ReasonHistory, &[("error", _0.to_string().as_str().into())]))]
    History(StoreError),
}

/// Why a certificate is not trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Untrusted {
    /// No trusted root issued it: self-signed, or from a CA not in the system store.
    #[error("{}", t(Msg::UntrustedUnknownIssuer))]
    UnknownIssuer,
    #[error("{}", t(Msg::UntrustedRevoked))]
    Revoked,
    #[error("{}", t(Msg::UntrustedBadSignature))]
    BadSignature,
    /// It may not be used for a TLS server.
    #[error("{}", t(Msg::UntrustedInvalidPurpose))]
    InvalidPurpose,
    /// What rustls said, for the rarer cases.
    #[error("{0}")]
    Other(String),
}

/// Why a proxy could not carry the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProxyError {
    /// TCP to the proxy failed.
    #[error("{}", text(Msg::ProxyUnreachable, &[("proxy", proxy.into()), ("detail", detail.into())]))]
    Unreachable { proxy: String, detail: String },
    /// HTTP 407: the proxy wants credentials, or refused the ones given.
    #[error("{}", text(Msg::ProxyAuthRequired, &[("proxy", proxy.into())]))]
    AuthRequired { proxy: String },
    /// Any other answer than 2xx to the CONNECT (403 forbidden, 502 bad gateway, ...).
    #[error("{}", proxy_refused(proxy, target, *status))]
    Refused { proxy: String, target: String, status: u16 },
    /// The answer to the CONNECT is not HTTP.
    #[error("{}", text(Msg::ProxyBadAnswer, &[("proxy", proxy.into())]))]
    BadAnswer { proxy: String },
    /// A proxy URL this client cannot use (SOCKS, https://).
    #[error("{}", text(Msg::ProxyUnsupported, &[("scheme", format!("{scheme:?}").as_str().into())]))]
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
    #[error("{}", t(Msg::SignedOutReadingKeyring))]
    ReadingKeyring,
    /// The keyring holding the token is locked.
    #[error("{}", t(Msg::SignedOutKeyringLocked))]
    KeyringLocked,
    /// No keyring service can be reached (no session bus, no Secret Service on it).
    #[error("{}", text(Msg::SignedOutNoKeyring, &[("detail", detail.into())]))]
    NoKeyring { detail: String },
    /// The keyring did not answer in time; most likely an unlock prompt is waiting.
    #[error("{}", t(Msg::SignedOutKeyringNoAnswer))]
    KeyringNoAnswer,
    /// The keyring answered with an error other than the above.
    #[error("{}", text(Msg::SignedOutKeyringFailed, &[("detail", detail.into())]))]
    KeyringFailed { detail: String },
    /// This build has no persistent keyring, so there is no stored token to read.
    #[error("{}", t(Msg::SignedOutNoPersistentKeyring))]
    NoPersistentKeyring,
}

/// How the server refused the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// An HTTP status instead of the WebSocket upgrade (401, 403).
    #[error("{}", text(Msg::RefusalHttp, &[("status", status.to_string().as_str().into())]))]
    Http { status: u16 },
    /// A close frame with code 4001 or 4003, and the server's words if it gave any.
    #[error("{}", close_words(*code, reason.as_deref()))]
    Close { code: u16, reason: Option<String> },
    /// An `unauthorized` or `forbidden` error frame, with its message.
    #[error("{}", text(Msg::RefusalError, &[("message", message.into())]))]
    Error { message: String },
}

fn close_words(code: u16, reason: Option<&str>) -> String {
    match reason {
        Some(r) => text(Msg::RefusalCloseWords, &[("reason", r.into())]),
        None => text(Msg::RefusalCloseCode, &[("code", code.to_string().as_str().into())]),
    }
}

fn closed(code: Option<u16>) -> String {
    match code {
        Some(c) => text(Msg::ReasonClosedCode, &[("code", c.to_string().as_str().into())]),
        None => t(Msg::ReasonClosed),
    }
}

fn proxy_refused(proxy: &str, target: &str, status: u16) -> String {
    let status = status.to_string();
    text(Msg::ProxyRefused, &[("proxy", proxy.into()), ("target", target.into()), ("status", status.as_str().into())])
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
        text(Msg::ReasonCertNotFor, &[("expected", expected.into())])
    } else {
        let presented = presented.join(", ");
        text(Msg::ReasonCertValidFor, &[("presented", presented.as_str().into()), ("expected", expected.into())])
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
