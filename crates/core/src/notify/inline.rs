//! Inline replies: where the notification service lists `inline-reply` in its
//! capabilities (KDE Plasma, swaync), a popup of one talk carries a reply field, and the
//! service answers with the signal `NotificationReplied(id, text)`.
//!
//! notify-rust's wait for a popup's action knows only `ActionInvoked` and
//! `NotificationClosed`, so the replies are heard here: one listener thread per notifier,
//! started with its first popup that offers a reply, subscribed to the service's signals
//! (only those sent by the owner of `org.freedesktop.Notifications`). It keeps the popups
//! that offer a reply by the id the service gave them (the last [`KEPT`]), forgets one
//! when the service says it closed, and hands a reply to its popup's callback as
//! [`PopupAction::Replied`]. The text is handed over whole, however long: the session
//! checks it against PROTOCOL.md's cap and refuses it rather than cut it.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

use super::{Notification, PopupAction};

/// The capability a service lists when it takes replies in the popup.
pub(super) const CAPABILITY: &str = "inline-reply";
/// The action key that asks for the reply field (KDE's; swaync reads the same).
pub(super) const ACTION: &str = "inline-reply";
/// The hint with the field's placeholder text.
pub(super) const PLACEHOLDER_HINT: &str = "x-kde-reply-placeholder-text";

/// At most this many popups wait for a reply; an older one is forgotten.
const KEPT: usize = 64;

/// How long a reply to an id not kept yet waits for a popup being shown to get it (the
/// service may answer before `Notify` has returned here).
const WAIT_FOR_SHOWN: Duration = Duration::from_secs(5);

const SERVICE: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";

type Callback = dyn Fn(PopupAction) + Send + Sync;

/// The popups waiting for a reply, and the listener that hears them.
#[derive(Default)]
pub(super) struct Replies {
    waiting: Mutex<Waiting>,
    /// Signalled when a popup is kept or a call to show one ends.
    changed: Condvar,
    /// Whether the listener is subscribed (set once, by its first start).
    listening: OnceLock<bool>,
}

#[derive(Default)]
struct Waiting {
    popups: VecDeque<(u32, Notification)>,
    /// Calls to show a popup with a reply field under way: a reply to an id not kept yet
    /// may be for one of them.
    showing: usize,
}

impl Replies {
    /// Starts the listener unless it runs; whether it does (subscribed within `within`).
    pub(super) fn listen(self: &Arc<Self>, callback: &Arc<Callback>, within: Duration) -> bool {
        *self.listening.get_or_init(|| {
            let (ready, subscribed) = mpsc::channel();
            let (replies, callback) = (self.clone(), callback.clone());
            let spawned = std::thread::Builder::new()
                .name("talkbell-notify-replies".into())
                .spawn(move || zbus::block_on(replies.run(callback, ready)));
            let up = spawned.is_ok() && subscribed.recv_timeout(within).unwrap_or(false);
            if !up {
                tracing::warn!("cannot listen for replies written in popups; popups offer no reply field");
            }
            up
        })
    }

    /// A popup with a reply field is about to be shown.
    pub(super) fn showing(&self) {
        self.lock().showing += 1;
    }

    /// It was shown, as `id` (`None`: it was not).
    pub(super) fn shown(&self, id: Option<u32>, n: &Notification) {
        let mut waiting = self.lock();
        waiting.showing = waiting.showing.saturating_sub(1);
        if let Some(id) = id {
            waiting.popups.retain(|(kept, _)| *kept != id);
            if waiting.popups.len() >= KEPT {
                waiting.popups.pop_front();
            }
            waiting.popups.push_back((id, n.clone()));
        }
        self.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The popup `id`, taken out; while popups are being shown, waits a little for it.
    fn take(&self, id: u32) -> Option<Notification> {
        let find = |w: &Waiting| w.popups.iter().position(|(kept, _)| *kept == id);
        let guard = self.lock();
        let (mut waiting, _) = self
            .changed
            .wait_timeout_while(guard, WAIT_FOR_SHOWN, |w| find(w).is_none() && w.showing > 0)
            .unwrap_or_else(|e| e.into_inner());
        let at = find(&waiting)?;
        waiting.popups.remove(at).map(|(_, n)| n)
    }

    fn forget(&self, id: u32) {
        self.lock().popups.retain(|(kept, _)| *kept != id);
    }

    /// The listener: says on `ready` whether it is subscribed, then hands each reply on.
    async fn run(self: Arc<Self>, callback: Arc<Callback>, ready: mpsc::Sender<bool>) {
        let mut signals = match subscribe().await {
            Ok(signals) => signals,
            Err(e) => {
                tracing::debug!(error = %e, "cannot subscribe to the notification service's signals");
                let _ = ready.send(false);
                return;
            }
        };
        let _ = ready.send(true);
        while let Some(message) = signals.next().await {
            let Ok(message) = message else { continue };
            let member = message.header().member().map(|m| m.to_string());
            match member.as_deref() {
                Some("NotificationReplied") => {
                    let Ok((id, text)) = message.body().deserialize::<(u32, String)>() else { continue };
                    if let Some(action) = self.take(id).and_then(|n| replied(n, text)) {
                        callback(action);
                    }
                }
                Some("NotificationClosed") => {
                    if let Ok((id, _reason)) = message.body().deserialize::<(u32, u32)>() {
                        self.forget(id);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The service's signals, from its owner only, on a connection of the listener's own.
async fn subscribe() -> zbus::Result<MessageStream> {
    let bus = Connection::session().await?;
    let rule = MatchRule::builder().msg_type(Type::Signal).sender(SERVICE).path(PATH).interface(SERVICE).build()?;
    MessageStream::for_match_rule(rule, &bus, None).await
}

/// What a reply `text` to popup `n` asks for (a popup of one talk from someone).
fn replied(n: Notification, text: String) -> Option<PopupAction> {
    Some(PopupAction::Replied { to: n.sender?, kind: n.kind, text })
}
