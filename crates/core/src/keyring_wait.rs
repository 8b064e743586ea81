//! Reading the stored token in the background, until the keyring can give it.
//!
//! [`Engine::start`](crate::engine::Engine::start) never waits for the keyring: with a
//! server configured, the session starts signed out
//! ([`SignedOutReason::ReadingKeyring`]) and the task of [`read`], owned by the engine,
//! reads the token and hands what it found to the session
//! ([`SessionHandle::keyring_answer`]):
//!
//! - the token: the session connects by itself, and the task ends;
//! - nothing stored: signed out until the user signs in (no reason shown, no retry);
//! - why it cannot be read: the keyring is locked, there is no keyring, it does not answer,
//!   or it reported an error. The session is signed out with that reason (told once; the
//!   same reason again changes nothing) and the task tries again after a back-off (5 s,
//!   doubling, at most 5 min: [`Retry`]), and at once when the Secret Service reports a
//!   change: `CollectionChanged`, a collection's `PropertiesChanged` (its `Locked`), or a
//!   Secret Service appearing on the session bus (`NameOwnerChanged`). A build without a
//!   persistent keyring gives up after the first try.
//!
//! **Prompts.** Only the first read may bring up the keyring's unlock prompt, as any app
//! reading the keyring at login does. Every read is preceded by the Secret Service's
//! `SearchItems`, which never prompts and tells whether the item is in a locked
//! collection: if it is, the state says "locked" at once (while the first read's prompt
//! waits for the user), and the retries do not read at all until the search finds the
//! item unlocked. So a locked keyring asks for its password once per start, never at each
//! retry. Where there is no Secret Service to ask (Windows, macOS), every retry reads.
//!
//! gnome-keyring sends no signal when the login keyring is unlocked through its control
//! socket (what PAM does at login): such an unlock is noticed by the next retry. An unlock
//! through the Secret Service (its prompt answered, Seahorse) is noticed at once.
//!
//! The task also ends as soon as the session is no longer signed out for a keyring reason:
//! a sign-in (or sign-out) made meanwhile wins, and the session ignores a late answer.

use std::time::Duration;

use tokio::sync::watch;

use crate::protocol::Token;
use crate::secrets::{SecretStore, SecretsError};
use crate::session::{Credentials, KeyringAnswer, SessionHandle, SessionNow, SignedOutReason};

/// How long a question to the session bus may take (connecting, `SearchItems`).
const BUS_WAIT: Duration = Duration::from_secs(10);

/// When the reads after a failed one happen: `first` after the first failure, doubling
/// after each further one, never more than `max` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { first: Duration::from_secs(5), max: Duration::from_secs(300) }
    }
}

impl Retry {
    /// The wait after `failures` failed reads in a row (1 or more).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }
}

/// Starts reading the token for `server` from `store` (see the module doc) on the current
/// tokio runtime. `session` should be signed out for a keyring reason (e.g. started with
/// [`SignedOutReason::ReadingKeyring`]); otherwise the task ends at once. The token goes
/// to the session with the session's own user id ([`SessionHandle::user_id`]). For tests
/// (the `test-hooks` feature); the engine runs [`read`] in its own tasks.
#[cfg(any(test, feature = "test-hooks"))]
pub fn spawn(session: SessionHandle, store: SecretStore, server: String, retry: Retry) -> tokio::task::JoinHandle<()> {
    tokio::spawn(read(session, store, server, retry))
}

/// The reader, for a caller that owns its tasks (the engine's `JoinSet`).
pub async fn read(session: SessionHandle, store: SecretStore, server: String, retry: Retry) {
    let states = session.watch();
    Reader { session, store, server, retry, told: None }.run(states).await
}

struct Reader {
    session: SessionHandle,
    store: SecretStore,
    server: String,
    retry: Retry,
    /// The reason last handed to the session (and logged).
    told: Option<SignedOutReason>,
}

/// What one read found.
enum Outcome {
    Token(Token),
    Missing,
    Unreadable { reason: SignedOutReason, retry: bool },
}

/// Why the wait between two reads ended.
enum Wake {
    Timer,
    /// A signal from the Secret Service; `false`: the watch's connection ended.
    Signal(bool),
}

impl Reader {
    async fn run(mut self, mut states: watch::Receiver<SessionNow>) {
        let mut watch = platform::Watch::open().await;
        let mut failures = 0u32;
        loop {
            let outcome = tokio::select! {
                outcome = self.attempt(watch.as_ref(), failures == 0) => outcome,
                () = left_keyring_wait(&mut states) => return,
            };
            match outcome {
                Outcome::Token(token) => return self.hand_over(token),
                Outcome::Missing => {
                    tracing::info!("no token in the keyring: signed out until `talkbell login`");
                    return self.session.keyring_answer(KeyringAnswer::Missing);
                }
                Outcome::Unreadable { reason, retry } => {
                    self.tell(reason);
                    if !retry {
                        return;
                    }
                }
            }
            failures = failures.saturating_add(1);
            let delay = self.retry.delay(failures);
            tracing::debug!(
                failures,
                ?delay,
                "next read of the keyring after the delay, or on the Secret Service's signal"
            );
            let woke = tokio::select! {
                () = tokio::time::sleep(delay) => Wake::Timer,
                alive = platform::changed(&mut watch) => Wake::Signal(alive),
                () = left_keyring_wait(&mut states) => return,
            };
            match woke {
                Wake::Timer | Wake::Signal(true) => {}
                Wake::Signal(false) => watch = None,
            }
            if watch.is_none() {
                watch = platform::Watch::open().await;
            }
        }
    }

    /// One read: first the search that never prompts, then (unless it says the item is
    /// locked and this is a retry) the keyring's own read.
    async fn attempt(&mut self, watch: Option<&platform::Watch>, first: bool) -> Outcome {
        let probe = match watch {
            Some(w) => w.probe(self.store.service(), &self.server).await,
            None => Probe::Read,
        };
        match probe {
            Probe::NoAnswer => return Outcome::Unreadable { reason: SignedOutReason::KeyringNoAnswer, retry: true },
            Probe::Locked if !first => {
                tracing::debug!(
                    "the keyring is still locked: not read, so that it does not ask for its password again"
                );
                return Outcome::Unreadable { reason: SignedOutReason::KeyringLocked, retry: true };
            }
            // Said now: the read below may wait a while for the unlock prompt's answer.
            Probe::Locked => self.tell(SignedOutReason::KeyringLocked),
            Probe::Read => {}
        }
        tracing::debug!("asking the keyring for the token");
        outcome_of(self.store.get(&self.server).await)
    }

    fn hand_over(&self, token: Token) {
        tracing::info!("the token is read from the keyring: connecting");
        let credentials = Credentials { server: self.server.clone(), token, user_id: self.session.user_id() };
        self.session.keyring_answer(KeyringAnswer::Token(credentials));
    }

    /// Hands `reason` to the session and logs it, once per reason.
    fn tell(&mut self, reason: SignedOutReason) {
        if self.told.as_ref() == Some(&reason) {
            return;
        }
        tracing::warn!(%reason, "cannot read the token from the keyring; connecting by itself once it can");
        self.session.keyring_answer(KeyringAnswer::Unreadable(reason.clone()));
        self.told = Some(reason);
    }
}

fn outcome_of(read: Result<Token, SecretsError>) -> Outcome {
    let unreadable = |reason| Outcome::Unreadable { reason, retry: true };
    match read {
        Ok(token) => Outcome::Token(token),
        Err(SecretsError::NotFound { .. }) => Outcome::Missing,
        Err(SecretsError::Locked) => unreadable(SignedOutReason::KeyringLocked),
        Err(SecretsError::NoKeyring { detail }) => unreadable(SignedOutReason::NoKeyring { detail }),
        Err(SecretsError::NoAnswer { .. }) => unreadable(SignedOutReason::KeyringNoAnswer),
        Err(SecretsError::Access(detail)) => unreadable(SignedOutReason::KeyringFailed { detail }),
        Err(SecretsError::NoPersistentStore) => {
            Outcome::Unreadable { reason: SignedOutReason::NoPersistentKeyring, retry: false }
        }
    }
}

/// Resolves once the session is no longer signed out for a keyring reason (or is gone).
async fn left_keyring_wait(states: &mut watch::Receiver<SessionNow>) {
    let _ = states.wait_for(|now| !now.state.waiting_for_keyring()).await;
}

/// What the search that never prompts says about the stored item.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
enum Probe {
    /// Found in a locked collection: reading it would prompt.
    Locked,
    /// The Secret Service did not answer in time.
    NoAnswer,
    /// Found unlocked, or not found, or the search failed: the read says which.
    Read,
}

#[cfg(target_os = "linux")]
mod platform {
    //! The Secret Service on the session bus: its signals, and `SearchItems`.
    use std::collections::HashMap;

    use futures_util::stream::{select_all, SelectAll};
    use futures_util::{FutureExt, StreamExt};
    use zbus::message::Type;
    use zbus::{Connection, MatchRule, MessageStream, OwnedObjectPath};

    use super::{Probe, BUS_WAIT};

    const SECRETS: &str = "org.freedesktop.secrets";
    const SERVICE_PATH: &str = "/org/freedesktop/secrets";
    const SERVICE: &str = "org.freedesktop.Secret.Service";
    const COLLECTION: &str = "org.freedesktop.Secret.Collection";

    pub(super) struct Watch {
        bus: Connection,
        signals: SelectAll<MessageStream>,
    }

    impl Watch {
        /// A session bus connection that hears the Secret Service's changes; `None`
        /// without a session bus (the reads then tell why).
        pub(super) async fn open() -> Option<Watch> {
            match tokio::time::timeout(BUS_WAIT, connect()).await {
                Ok(Ok(watch)) => Some(watch),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cannot watch the Secret Service: retrying on a timer only");
                    None
                }
                Err(_) => {
                    tracing::debug!("the session bus does not answer: retrying on a timer only");
                    None
                }
            }
        }

        /// Searches the item keyring's Secret Service store keeps the token in (the
        /// attributes keyring 3 searches by: service, username = the server, target =
        /// default). Never prompts.
        pub(super) async fn probe(&self, service: &str, server: &str) -> Probe {
            let attributes = HashMap::from([("service", service), ("username", server), ("target", "default")]);
            let body = (attributes,);
            let search = self.bus.call_method(Some(SECRETS), SERVICE_PATH, Some(SERVICE), "SearchItems", &body);
            let reply = match tokio::time::timeout(BUS_WAIT, search).await {
                Ok(Ok(reply)) => reply,
                // No Secret Service, or an error: the read classifies it.
                Ok(Err(_)) => return Probe::Read,
                Err(_) => return Probe::NoAnswer,
            };
            match reply.body().deserialize::<(Vec<OwnedObjectPath>, Vec<OwnedObjectPath>)>() {
                Ok((unlocked, locked)) if unlocked.is_empty() && !locked.is_empty() => Probe::Locked,
                _ => Probe::Read,
            }
        }

        /// The next signal (those already queued with it are taken too). `false` once
        /// the connection has ended.
        async fn next_change(&mut self) -> bool {
            loop {
                match self.signals.next().await {
                    Some(Ok(_)) => {
                        while let Some(Some(_)) = self.signals.next().now_or_never() {}
                        return true;
                    }
                    Some(Err(_)) => {}
                    None => return false,
                }
            }
        }
    }

    /// The next change the Secret Service signals; never, without a watch.
    pub(super) async fn changed(watch: &mut Option<Watch>) -> bool {
        match watch {
            Some(w) => w.next_change().await,
            None => std::future::pending().await,
        }
    }

    async fn connect() -> zbus::Result<Watch> {
        let bus = Connection::session().await?;
        let signal = || MatchRule::builder().msg_type(Type::Signal);
        let rules = [
            signal().sender(SECRETS).path(SERVICE_PATH).interface(SERVICE).member("CollectionChanged").build()?,
            signal()
                .sender(SECRETS)
                .path_namespace(SERVICE_PATH)
                .interface("org.freedesktop.DBus.Properties")
                .member("PropertiesChanged")
                .arg(0, COLLECTION)
                .build()?,
            signal()
                .sender("org.freedesktop.DBus")
                .interface("org.freedesktop.DBus")
                .member("NameOwnerChanged")
                .arg(0, SECRETS)
                .build()?,
        ];
        let mut streams = Vec::with_capacity(rules.len());
        for rule in rules {
            streams.push(MessageStream::for_match_rule(rule, &bus, None).await?);
        }
        Ok(Watch { bus, signals: select_all(streams) })
    }
}

#[cfg(not(target_os = "linux"))]
mod platform {
    //! No Secret Service: no signals, no search; every retry reads.
    use super::Probe;

    pub(super) struct Watch;

    impl Watch {
        pub(super) async fn open() -> Option<Watch> {
            None
        }

        pub(super) async fn probe(&self, _service: &str, _server: &str) -> Probe {
            Probe::Read
        }
    }

    pub(super) async fn changed(_watch: &mut Option<Watch>) -> bool {
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retries_double_from_five_seconds_to_five_minutes() {
        let retry = Retry::default();
        let secs: Vec<u64> = (1..=9).map(|n| retry.delay(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(retry.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn every_keyring_error_has_its_reason_and_only_a_missing_store_ends_the_retries() {
        let cases = [
            (SecretsError::Locked, SignedOutReason::KeyringLocked, true),
            (
                SecretsError::NoKeyring { detail: "no bus".into() },
                SignedOutReason::NoKeyring { detail: "no bus".into() },
                true,
            ),
            (SecretsError::NoAnswer { after: Duration::from_secs(120) }, SignedOutReason::KeyringNoAnswer, true),
            (SecretsError::Access("x".into()), SignedOutReason::KeyringFailed { detail: "x".into() }, true),
            (SecretsError::NoPersistentStore, SignedOutReason::NoPersistentKeyring, false),
        ];
        for (error, want, want_retry) in cases {
            match outcome_of(Err(error.clone())) {
                Outcome::Unreadable { reason, retry } => assert_eq!((reason, retry), (want, want_retry), "{error:?}"),
                _ => panic!("{error:?} is not unreadable"),
            }
        }
        assert!(matches!(outcome_of(Err(SecretsError::NotFound { server: "s".into() })), Outcome::Missing));
    }
}
