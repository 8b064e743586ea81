//! The user's token, one per server, in the OS keyring (DESIGN.md: `secrets`).
//!
//! On Linux the keyring is the Secret Service (GNOME Keyring, KWallet, KeePassXC...) on
//! the D-Bus session bus, reached through the `keyring` crate; on macOS and Windows the
//! same calls go to the Keychain and the Credential Manager (keyring's `apple-native` and
//! `windows-native` stores, enabled per target in Cargo.toml; `scripts/check-keyring-targets.sh`
//! asserts it). There is **no fallback**: no file, no environment variable, no memory-only
//! store. A missing or locked keyring is a [`SecretsError`] whose message tells the user
//! what to do, and on a target with no persistent store every call is
//! [`SecretsError::NoPersistentStore`], so signing in fails instead of keeping the token
//! in memory until the next restart.
//!
//! # What ends up in the Secret Service
//! One item per server, in the default collection (normally `login`), with the
//! attributes
//!
//! | attribute     | value                                   |
//! | ------------- | --------------------------------------- |
//! | `service`     | `talkbell` ([`SERVICE`])                |
//! | `username`    | the server URL, exactly as passed in    |
//! | `target`      | `default`                               |
//! | `application` | `rust-keyring`                          |
//!
//! and the label `<server>@talkbell:default (keyring v3.x)`. So, from a shell:
//!
//! ```text
//! secret-tool lookup service talkbell username wss://talk.example.com/ws
//! ```
//!
//! Callers should pass the server URL the config holds, unchanged, so that the same
//! server always finds the same item.
//!
//! # Async
//! The keyring calls are blocking D-Bus round trips (and an unlock prompt can wait for the
//! user), so [`SecretStore::get`], [`set`](SecretStore::set) and
//! [`delete`](SecretStore::delete) run them on a short-lived thread of their own and are
//! safe to await from the daemon's tasks (they need tokio's timer). Code without one (a CLI) uses the
//! `*_blocking` twins, which must not be called from inside an async task.
//! A call that is still waiting after [`SecretStore::timeout`] (default 2 minutes: an
//! unlock prompt nobody answers) gives [`SecretsError::NoAnswer`]; its blocking thread ends
//! when the keyring finally answers.

use std::time::Duration;

use crate::i18n::{t, text, Msg};
use crate::protocol::Token;

/// The Secret Service `service` attribute of every item Talkbell stores.
pub const SERVICE: &str = "talkbell";

/// How long an async call waits for the keyring before giving up (an unlock prompt
/// included).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the token could not be read, stored or removed. Every message says what the user
/// can do about it; none contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// No keyring service can be reached: no D-Bus session bus, or nothing on it that
    /// provides the Secret Service.
    #[error("{}", text(Msg::SecretsNoKeyring, &[("detail", detail.into())]))]
    NoKeyring { detail: String },
    /// The keyring is locked and unlocking it was refused or dismissed.
    #[error("{}", t(Msg::SecretsLocked))]
    Locked,
    /// Nothing is stored for this server: the user must sign in.
    #[error("{}", text(Msg::SecretsNotFound, &[("server", server.into())]))]
    NotFound { server: String },
    /// The keyring did not answer in time; most likely an unlock prompt is waiting.
    #[error("{}", text(Msg::SecretsNoAnswer, &[("seconds", after.as_secs().into())]))]
    NoAnswer { after: Duration },
    /// This build has no persistent keyring (keyring would keep the token in memory only).
    #[error("{}", t(Msg::SecretsNoPersistentStore))]
    NoPersistentStore,
    /// Anything else the keyring reported.
    #[error("{}", text(Msg::SecretsAccess, &[("error", _0.into())]))]
    Access(String),
}

/// Tokens in the OS keyring, one per server URL.
#[derive(Clone, Debug)]
pub struct SecretStore {
    service: String,
    timeout: Duration,
}

impl Default for SecretStore {
    fn default() -> Self {
        Self::new()
    }
}

impl SecretStore {
    /// The store of the app: items with `service` = [`SERVICE`].
    pub fn new() -> Self {
        Self::with_service(SERVICE)
    }

    /// A store under another `service` attribute (tests, a second profile).
    pub fn with_service(service: impl Into<String>) -> Self {
        SecretStore { service: service.into(), timeout: DEFAULT_TIMEOUT }
    }

    /// How long the async calls wait for the keyring (see the module doc).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The token stored for `server`, or [`SecretsError::NotFound`].
    pub async fn get(&self, server: &str) -> Result<Token, SecretsError> {
        let (store, server) = (self.clone(), server.to_owned());
        self.off_thread(move || store.get_blocking(&server)).await
    }

    /// Stores (or replaces) the token for `server`.
    pub async fn set(&self, server: &str, token: &Token) -> Result<(), SecretsError> {
        let (store, server, token) = (self.clone(), server.to_owned(), token.clone());
        self.off_thread(move || store.set_blocking(&server, &token)).await
    }

    /// Removes the token for `server`. Removing a token that is not there is not an error
    /// (signing out twice is fine).
    pub async fn delete(&self, server: &str) -> Result<(), SecretsError> {
        let (store, server) = (self.clone(), server.to_owned());
        self.off_thread(move || store.delete_blocking(&server)).await
    }

    /// [`get`](Self::get) for code outside any async runtime.
    pub fn get_blocking(&self, server: &str) -> Result<Token, SecretsError> {
        let secret = self.entry(server)?.get_password().map_err(|e| classify(e, server))?;
        // An empty item is as good as none: the user has to sign in.
        Token::new(secret).map_err(|_| SecretsError::NotFound { server: server.to_owned() })
    }

    /// [`set`](Self::set) for code outside any async runtime.
    pub fn set_blocking(&self, server: &str, token: &Token) -> Result<(), SecretsError> {
        self.entry(server)?.set_password(token.expose()).map_err(|e| classify(e, server))
    }

    /// [`delete`](Self::delete) for code outside any async runtime.
    pub fn delete_blocking(&self, server: &str) -> Result<(), SecretsError> {
        match self.entry(server)?.delete_credential().map_err(|e| classify(e, server)) {
            Ok(()) | Err(SecretsError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn entry(&self, server: &str) -> Result<keyring::Entry, SecretsError> {
        if server.is_empty() {
            return Err(SecretsError::Access("the server URL is empty".into()));
        }
        platform::persistent()?;
        keyring::Entry::new(&self.service, server).map_err(|e| classify(e, server))
    }

    async fn off_thread<T, F>(&self, f: F) -> Result<T, SecretsError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, SecretsError> + Send + 'static,
    {
        // A thread of its own rather than tokio's blocking pool: a call that never returns
        // (a prompt nobody answers, a bus that never replies) must not hold up the
        // runtime's shutdown, which waits for the blocking pool.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("talkbell-keyring".into())
            .spawn(move || {
                let _ = tx.send(f());
            })
            .map_err(|e| SecretsError::Access(format!("cannot start the keyring thread: {e}")))?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(result)) => result,
            // The thread ended without an answer: the keyring call panicked.
            Ok(Err(_)) => Err(SecretsError::Access("the keyring call failed unexpectedly".into())),
            Err(_) => Err(SecretsError::NoAnswer { after: self.timeout }),
        }
    }
}

/// Maps the keyring crate's errors to what the user can act on. Never includes the secret
/// (keyring's `BadEncoding` carries the stored bytes: they are dropped here).
fn classify(err: keyring::Error, server: &str) -> SecretsError {
    use keyring::Error as K;
    match err {
        K::NoEntry => SecretsError::NotFound { server: server.to_owned() },
        K::BadEncoding(_) => {
            SecretsError::Access(format!("the item stored for {server} is not text; delete it (or sign in again)"))
        }
        K::TooLong(what, max) => SecretsError::Access(format!("{what} is longer than {max}")),
        K::Invalid(what, why) => SecretsError::Access(format!("{what} is invalid: {why}")),
        K::Ambiguous(items) => SecretsError::Access(format!(
            "{} items are stored for {server}; remove the extra ones in \"Passwords and Keys\"",
            items.len()
        )),
        K::NoStorageAccess(inner) => platform::classify(inner.as_ref()).unwrap_or(SecretsError::Locked),
        K::PlatformFailure(inner) => {
            platform::classify(inner.as_ref()).unwrap_or_else(|| SecretsError::Access(inner.to_string()))
        }
        other => SecretsError::Access(other.to_string()),
    }
}

#[cfg(target_os = "linux")]
mod platform {
    //! The Secret Service errors under keyring's boxes.
    use super::SecretsError;
    use secret_service::Error as Ss;

    /// D-Bus error names that mean "nobody provides the Secret Service here".
    const NO_SERVICE: &[&str] = &[
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
        "org.freedesktop.DBus.Error.Spawn",
        "org.freedesktop.DBus.Error.NoServer",
        "org.freedesktop.DBus.Error.Disconnected",
    ];

    /// The Secret Service keeps items across restarts.
    pub(super) fn persistent() -> Result<(), SecretsError> {
        Ok(())
    }

    pub(super) fn classify(err: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<SecretsError> {
        let ss = err.downcast_ref::<Ss>()?;
        Some(match ss {
            Ss::Locked | Ss::Prompt => SecretsError::Locked,
            Ss::Unavailable => {
                SecretsError::NoKeyring { detail: "no D-Bus session bus or Secret Service found".into() }
            }
            Ss::NoResult => SecretsError::Access("the Secret Service returned no result".into()),
            Ss::Crypto(what) => SecretsError::Access(format!("the session encryption failed: {what}")),
            Ss::Zbus(_) | Ss::ZbusFdo(_) | Ss::Zvariant(_) => {
                let text = ss.to_string();
                if text.contains("org.freedesktop.Secret.Error.IsLocked") {
                    SecretsError::Locked
                } else if io_error_in(ss) || NO_SERVICE.iter().any(|name| text.contains(name)) {
                    SecretsError::NoKeyring { detail: text }
                } else {
                    SecretsError::Access(text)
                }
            }
            // `secret_service::Error` is non-exhaustive.
            _ => SecretsError::Access(ss.to_string()),
        })
    }

    /// A connection that failed at the socket level: no bus to talk to.
    fn io_error_in(err: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(err);
        while let Some(e) = next {
            // zbus keeps its I/O errors in an Arc.
            if e.is::<std::io::Error>() || e.is::<std::sync::Arc<std::io::Error>>() {
                return true;
            }
            next = e.source();
        }
        false
    }
}

#[cfg(any(target_os = "windows", target_os = "macos"))]
mod platform {
    //! The Credential Manager and the Keychain: keyring's own error kinds say enough.
    use super::SecretsError;

    pub(super) fn persistent() -> Result<(), SecretsError> {
        Ok(())
    }

    pub(super) fn classify(_: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<SecretsError> {
        None
    }
}

#[cfg(not(any(target_os = "linux", target_os = "windows", target_os = "macos")))]
mod platform {
    //! No persistent store: keyring would fall back to its in-memory mock.
    pub(super) use super::no_store::{classify, persistent};
}

/// What a target without a persistent keyring does: refuse every call. Compiled on every
/// target so that its test runs here.
#[cfg_attr(any(target_os = "linux", target_os = "windows", target_os = "macos"), allow(dead_code))]
mod no_store {
    use super::SecretsError;

    pub(super) fn persistent() -> Result<(), SecretsError> {
        Err(SecretsError::NoPersistentStore)
    }

    pub(super) fn classify(_: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<SecretsError> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_actionable_and_name_no_secret() {
        let not_found = classify(keyring::Error::NoEntry, "wss://a.example/ws");
        assert_eq!(not_found, SecretsError::NotFound { server: "wss://a.example/ws".into() });
        assert!(not_found.to_string().contains("sign in"));

        let bad = classify(keyring::Error::BadEncoding(b"hunter2\xff".to_vec()), "s");
        assert!(matches!(bad, SecretsError::Access(_)));
        assert!(!format!("{bad} {bad:?}").contains("hunter2"));

        assert!(SecretsError::Locked.to_string().contains("Unlock"));
        let none = SecretsError::NoKeyring { detail: "x".into() };
        assert!(none.to_string().contains("GNOME Keyring"));
        assert!(SecretsError::NoAnswer { after: Duration::from_secs(120) }.to_string().contains("120 s"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn secret_service_errors_are_classified() {
        let boxed = |e: secret_service::Error| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) };
        assert_eq!(
            classify(keyring::Error::NoStorageAccess(boxed(secret_service::Error::Prompt)), "s"),
            SecretsError::Locked
        );
        assert_eq!(
            classify(keyring::Error::NoStorageAccess(boxed(secret_service::Error::Locked)), "s"),
            SecretsError::Locked
        );
        assert!(matches!(
            classify(keyring::Error::PlatformFailure(boxed(secret_service::Error::Unavailable)), "s"),
            SecretsError::NoKeyring { .. }
        ));
    }

    #[test]
    fn a_target_without_a_persistent_store_refuses_to_keep_the_token() {
        let refused = no_store::persistent();
        assert_eq!(refused, Err(SecretsError::NoPersistentStore));
        let text = SecretsError::NoPersistentStore.to_string();
        assert!(
            text.starts_with("no persistent keyring on this platform: the token would be lost at restart"),
            "{text}"
        );
    }

    /// The targets Talkbell ships for have a real store (the features are checked by
    /// scripts/check-keyring-targets.sh; this checks the code path that uses them).
    #[cfg(any(target_os = "linux", target_os = "windows", target_os = "macos"))]
    #[test]
    fn shipped_targets_have_a_persistent_store() {
        assert_eq!(platform::persistent(), Ok(()));
    }

    #[test]
    fn empty_server_is_refused_before_the_keyring() {
        let store = SecretStore::new();
        assert!(matches!(store.get_blocking(""), Err(SecretsError::Access(_))));
    }
}
