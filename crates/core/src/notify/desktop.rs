//! The real [`Notifier`]: notify-rust, i.e. the freedesktop notification service over
//! D-Bus on Linux (GNOME Shell, KDE Plasma, dunst, mako...), the native centres elsewhere.

use std::sync::atomic::{AtomicIsize, AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use super::text::{popup_body, popup_title};
use super::{Notification, Notifier, NotifyError, PopupAction};
use crate::i18n::{t, text, Msg};

/// The application name the notification service shows.
pub const APP_NAME: &str = "Talkbell";

/// At most this many popups wait for a click at once (one thread each, each ending when its
/// popup closes). Popups beyond that are shown without a click action.
const MAX_CLICK_WAITERS: usize = 8;

type ActionCallback = dyn Fn(PopupAction) + Send + Sync;
type ReplyOffered = dyn Fn() -> bool + Send + Sync;

/// Shows notifications through the desktop's notification service.
///
/// - app name "Talkbell", the hints of `chat_hints` (category `im.received`, desktop entry,
///   urgency, sound), a popup timeout (default 10 s);
/// - a `default` action ("Open"), and where the service lists `actions` in its
///   capabilities "Mark read" and, on a popup of one talk, "Mute wang2 for 1 hour": when a
///   callback is set with [`on_action`](Self::on_action), what the user picks calls it with
///   a [`PopupAction`], on a background thread (never the caller's);
/// - `show` never blocks for longer than the call timeout (default 10 s): each call runs
///   on a short thread of its own, and while one is stuck (a notification service that
///   does not answer) the next fail at once with [`NotifyError::NoAnswer`] instead of
///   piling up more stuck threads.
#[derive(Clone)]
pub struct DesktopNotifier {
    inner: Arc<Inner>,
}

struct Inner {
    app_name: String,
    timeout: Duration,
    call_timeout: Duration,
    on_action: Option<Arc<ActionCallback>>,
    /// Whether a popup of one talk offers "Reply" now (none: never).
    offer_reply: Option<Arc<ReplyOffered>>,
    /// Whether the shell has a window for "Open" and for "Reply" where the service has
    /// no reply field of its own.
    window: bool,
    /// The popups waiting for a reply written in them, and the listener that hears it.
    #[cfg(all(unix, not(target_os = "macos")))]
    replies: Arc<super::inline::Replies>,
    /// Calls that timed out and whose thread is still blocked.
    stuck: AtomicIsize,
    click_waiters: AtomicUsize,
    /// What the service can do (asked once).
    caps: OnceLock<Caps>,
}

/// The capabilities of the notification service that change what a popup carries.
#[derive(Clone, Copy, Debug, Default)]
struct Caps {
    /// It renders markup in the body (then the text is escaped).
    body_markup: bool,
    /// It shows actions beside the default one.
    actions: bool,
    /// It takes a reply written in the popup (`NotificationReplied`).
    inline_reply: bool,
}

impl Default for DesktopNotifier {
    fn default() -> Self {
        Self::new()
    }
}

impl DesktopNotifier {
    pub fn new() -> Self {
        DesktopNotifier {
            inner: Arc::new(Inner {
                app_name: APP_NAME.to_owned(),
                timeout: Duration::from_secs(10),
                call_timeout: Duration::from_secs(10),
                on_action: None,
                offer_reply: None,
                window: true,
                #[cfg(all(unix, not(target_os = "macos")))]
                replies: Arc::default(),
                stuck: AtomicIsize::new(0),
                click_waiters: AtomicUsize::new(0),
                caps: OnceLock::new(),
            }),
        }
    }

    /// How long a popup stays up (the service may cap it).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.map(|i| i.timeout = timeout)
    }

    /// How long `show` waits for the notification service.
    pub fn with_call_timeout(self, timeout: Duration) -> Self {
        self.map(|i| i.call_timeout = timeout)
    }

    /// Calls `callback` (on a background thread) when the user clicks a popup or picks
    /// one of its actions.
    pub fn on_action(self, callback: impl Fn(PopupAction) + Send + Sync + 'static) -> Self {
        self.map(|i| i.on_action = Some(Arc::new(callback)))
    }

    /// Offers "Reply" on a popup of one talk whenever `now` says replies can be written
    /// (the shell asks its session: the server takes them). Where the service lists
    /// `inline-reply`, it is a field in the popup ([`PopupAction::Replied`]); elsewhere
    /// an action that opens the window's reply box ([`PopupAction::Reply`]), unless
    /// [`with_window`](Self::with_window) says there is no window.
    pub fn offer_reply(self, now: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.map(|i| i.offer_reply = Some(Arc::new(now)))
    }

    /// Whether the shell has a window to open (the default). Without, a popup offers no
    /// "Open" (a click only closes it) and replies only in the popup's own field.
    pub fn with_window(self, available: bool) -> Self {
        self.map(|i| i.window = available)
    }

    /// Builder steps happen before the notifier is shared, so the Arc is still unique;
    /// if it is not, the settings are copied into a new one.
    fn map(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            app_name: shared.app_name.clone(),
            timeout: shared.timeout,
            call_timeout: shared.call_timeout,
            on_action: shared.on_action.clone(),
            offer_reply: shared.offer_reply.clone(),
            window: shared.window,
            #[cfg(all(unix, not(target_os = "macos")))]
            replies: Arc::default(),
            stuck: AtomicIsize::new(0),
            click_waiters: AtomicUsize::new(0),
            caps: OnceLock::new(),
        });
        f(&mut inner);
        DesktopNotifier { inner: Arc::new(inner) }
    }
}

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

impl Notifier for DesktopNotifier {
    fn show(&self, n: &Notification) -> Result<(), NotifyError> {
        let after = self.inner.call_timeout;
        if self.inner.stuck.load(Ordering::SeqCst) > 0 {
            return Err(NotifyError::NoAnswer { after });
        }
        let state = Arc::new(AtomicU8::new(RUNNING));
        let (tx, rx) = mpsc::channel();
        let (inner, n2, thread_state) = (self.inner.clone(), n.clone(), state.clone());
        std::thread::Builder::new()
            .name("talkbell-notify".into())
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.show_now(&n2)))
                    .unwrap_or_else(|_| Err(NotifyError::Failed("the notification library panicked".into())));
                if thread_state.swap(DONE, Ordering::SeqCst) == ABANDONED {
                    inner.stuck.fetch_sub(1, Ordering::SeqCst);
                }
                let _ = tx.send(result);
            })
            .map_err(|e| NotifyError::Failed(format!("cannot start a thread: {e}")))?;
        match rx.recv_timeout(after) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.inner.stuck.fetch_add(1, Ordering::SeqCst);
                if state.compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                    // It finished just now after all.
                    self.inner.stuck.fetch_sub(1, Ordering::SeqCst);
                    return rx.recv().unwrap_or(Err(NotifyError::NoAnswer { after }));
                }
                Err(NotifyError::NoAnswer { after })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(NotifyError::Failed("the notification thread ended without an answer".into()))
            }
        }
    }
}

impl Inner {
    /// The blocking call to the notification service.
    fn show_now(self: &Arc<Self>, n: &Notification) -> Result<(), NotifyError> {
        // Whoever built it, a popup carries only what can travel, within PROTOCOL.md §5.
        let (title, body) = (popup_title(&n.title), popup_body(&n.body));
        let caps = self.caps();
        let body = if caps.body_markup { escape_markup(&body) } else { body };
        let mut popup = notify_rust::Notification::new();
        popup
            .appname(&self.app_name)
            .summary(&title)
            .body(&body)
            .timeout(notify_rust::Timeout::Milliseconds(u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX)));
        if self.window {
            popup.action(ACTION_OPEN, &t(Msg::PopupActionOpen));
        }
        let inline = caps.actions && self.actions(&mut popup, n, caps);
        #[cfg(all(unix, not(target_os = "macos")))]
        chat_hints(&mut popup, n.sound);
        let shown = popup.show().map_err(|e| classify(&e.to_string(), self.call_timeout));
        #[cfg(all(unix, not(target_os = "macos")))]
        if inline {
            self.replies.shown(shown.as_ref().ok().map(notify_rust::NotificationHandle::id), n);
        }
        #[cfg(not(all(unix, not(target_os = "macos"))))]
        let _ = inline;
        let handle = shown?;

        #[cfg(all(unix, not(target_os = "macos")))]
        if let Some(callback) = self.on_action.clone() {
            self.wait_for_action(handle, n.clone(), callback);
        }
        #[cfg(not(all(unix, not(target_os = "macos"))))]
        let _ = handle;
        Ok(())
    }

    /// The actions beside "Open" on a service that shows them: "Mark read", and on a popup
    /// of one talk "Mute" and, where the server takes replies, "Reply". Whether the reply
    /// is a field in the popup (then the listener for it runs and waits for its id).
    fn actions(self: &Arc<Self>, popup: &mut notify_rust::Notification, n: &Notification, caps: Caps) -> bool {
        popup.action(ACTION_MARK_READ, &t(Msg::PopupActionMarkRead));
        let Some(sender) = &n.sender else { return false };
        let name = popup_title(&sender.name);
        popup.action(ACTION_MUTE_HOUR, &text(Msg::PopupActionMute, &[("name", name.as_str().into())]));
        if !self.offer_reply.as_ref().is_some_and(|now| now()) {
            return false;
        }
        #[cfg(all(unix, not(target_os = "macos")))]
        if caps.inline_reply && self.listen_for_replies() {
            popup.action(super::inline::ACTION, &t(Msg::PopupActionReply)).hint(notify_rust::Hint::Custom(
                super::inline::PLACEHOLDER_HINT.into(),
                text(Msg::PopupReplyPlaceholder, &[("name", name.as_str().into())]),
            ));
            self.replies.showing();
            return true;
        }
        #[cfg(not(all(unix, not(target_os = "macos"))))]
        let _ = caps;
        if self.window {
            popup.action(ACTION_REPLY, &t(Msg::PopupActionReply));
        }
        false
    }

    /// Whether replies written in popups are heard (the listener runs; it needs the
    /// action callback).
    #[cfg(all(unix, not(target_os = "macos")))]
    fn listen_for_replies(&self) -> bool {
        self.on_action.as_ref().is_some_and(|callback| self.replies.listen(callback, self.call_timeout))
    }

    /// What the service can do (asked once; unknown = nothing, asked again next time).
    fn caps(&self) -> Caps {
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            if let Some(known) = self.caps.get() {
                return *known;
            }
            match notify_rust::get_capabilities() {
                Ok(caps) => {
                    let has = |name: &str| caps.iter().any(|c| c == name);
                    *self.caps.get_or_init(|| Caps {
                        body_markup: has("body-markup"),
                        actions: has("actions"),
                        inline_reply: has(super::inline::CAPABILITY),
                    })
                }
                Err(_) => Caps::default(),
            }
        }
        #[cfg(not(all(unix, not(target_os = "macos"))))]
        Caps::default()
    }

    #[cfg(all(unix, not(target_os = "macos")))]
    fn wait_for_action(
        self: &Arc<Self>,
        handle: notify_rust::NotificationHandle,
        n: Notification,
        callback: Arc<ActionCallback>,
    ) {
        if self.click_waiters.fetch_add(1, Ordering::SeqCst) >= MAX_CLICK_WAITERS {
            self.click_waiters.fetch_sub(1, Ordering::SeqCst);
            tracing::debug!("too many popups waiting for a click; this one has no click action");
            return;
        }
        let inner = self.clone();
        let spawned = std::thread::Builder::new().name("talkbell-notify-click".into()).spawn(move || {
            // Returns when the popup is clicked or closed (expired, dismissed).
            let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handle.wait_for_action(|key| {
                    if let Some(action) = picked(key, &n) {
                        callback(action);
                    }
                })
            }));
            if waited.is_err() {
                tracing::warn!("waiting for a click on a notification failed");
            }
            inner.click_waiters.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            self.click_waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The keys of a popup's actions on the bus.
const ACTION_OPEN: &str = "default";
const ACTION_MARK_READ: &str = "mark-read";
const ACTION_MUTE_HOUR: &str = "mute-1h";
const ACTION_REPLY: &str = "reply";

/// What the action `key` of popup `n` asks for (`None`: the popup closed, or a key it
/// never offered).
fn picked(key: &str, n: &Notification) -> Option<PopupAction> {
    match key {
        ACTION_OPEN => Some(PopupAction::Open(n.kind.clone())),
        ACTION_MARK_READ => Some(PopupAction::MarkRead(n.kind.clone())),
        ACTION_MUTE_HOUR => n.sender.clone().map(PopupAction::MuteHour),
        ACTION_REPLY => Some(PopupAction::Reply(n.kind.clone())),
        _ => None,
    }
}

/// The freedesktop hints of a chat app's popup: a received instant message, from the
/// app menu's `talkbell` entry, normal urgency, and the theme's message sound while
/// sound is on (an explicit silence when it is off, so no default sound plays).
#[cfg(all(unix, not(target_os = "macos")))]
fn chat_hints(popup: &mut notify_rust::Notification, sound: bool) {
    popup
        .hint(notify_rust::Hint::Category("im.received".into()))
        .hint(notify_rust::Hint::DesktopEntry("talkbell".into()))
        .urgency(notify_rust::Urgency::Normal);
    if sound {
        popup.hint(notify_rust::Hint::SoundName("message-new-instant".into()));
    } else {
        popup.hint(notify_rust::Hint::SuppressSound(true));
    }
}

/// What a failed call to the notification service means.
///
/// notify-rust 4.19 keeps the zbus error it wraps private (its `ErrorKind` has no
/// accessor and its `Error` no `source`), so this reads zbus 6's `Display` of each
/// variant: a D-Bus error reply (`Error::MethodError`, `Error::FDO`) is written
/// `<error name>: <message>`; a failed connection `failed to connect to …`, `I/O error: …`,
/// `address error: …` or `D-Bus handshake failed: …`. The tests hold each case to a real
/// bus (notify_dunst.rs) so that a change of these words shows.
fn classify(text: &str, call_timeout: Duration) -> NotifyError {
    const BUS: &[&str] = &["failed to connect to", "I/O error", "address error", "D-Bus handshake failed"];
    if let Some((name, message)) = dbus_error_reply(text) {
        let dbus = |n: &str| name.strip_prefix("org.freedesktop.DBus.Error.").is_some_and(|rest| rest == n);
        return if dbus("ServiceUnknown")
            || dbus("NameHasNoOwner")
            || name.starts_with("org.freedesktop.DBus.Error.Spawn.")
        {
            NotifyError::NoService { detail: text.to_owned() }
        } else if dbus("NoReply") || dbus("Timeout") || dbus("TimedOut") {
            NotifyError::NoAnswer { after: call_timeout }
        } else if dbus("Disconnected") || dbus("NoServer") {
            NotifyError::Bus { detail: text.to_owned() }
        } else {
            NotifyError::Refused { name: name.to_owned(), message: message.to_owned() }
        };
    }
    if BUS.iter().any(|prefix| text.starts_with(prefix)) {
        NotifyError::Bus { detail: text.to_owned() }
    } else {
        NotifyError::Failed(text.to_owned())
    }
}

/// `<error name>: <message>` split, when it starts with a D-Bus error name (two or more
/// dot-separated elements of `[A-Za-z0-9_]`, none starting with a digit).
fn dbus_error_reply(text: &str) -> Option<(&str, &str)> {
    let (name, message) = text.split_once(": ")?;
    let elements: Vec<&str> = name.split('.').collect();
    let element_ok = |e: &&str| {
        !e.is_empty()
            && !e.starts_with(|c: char| c.is_ascii_digit())
            && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    (elements.len() >= 2 && name.len() <= 255 && elements.iter().all(element_ok)).then_some((name, message))
}

/// The body markup of the notification spec is a small subset of HTML: the message text
/// must show as text, never as markup.
fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(escape_markup(r#"<b>hi</b> & "you""#), r#"&lt;b&gt;hi&lt;/b&gt; &amp; "you""#);
        assert_eq!(escape_markup("hello"), "hello");
    }

    #[test]
    fn errors_are_classified_by_what_happened() {
        let t = Duration::from_secs(10);
        let cases = [
            (
                "org.freedesktop.DBus.Error.ServiceUnknown: The name org.freedesktop.Notifications was not provided",
                "NoService",
            ),
            ("org.freedesktop.DBus.Error.NameHasNoOwner: no owner", "NoService"),
            ("org.freedesktop.DBus.Error.Spawn.ServiceNotFound: not found", "NoService"),
            ("org.freedesktop.DBus.Error.NoReply: did not receive a reply", "NoAnswer"),
            ("org.freedesktop.DBus.Error.Disconnected: gone", "Bus"),
            ("org.freedesktop.DBus.Error.InvalidArgs: bad body", "Refused"),
            ("org.example.Notify.Error.Full: too many popups", "Refused"),
            ("failed to connect to `unix:path=/x`: Connection refused (os error 111)", "Bus"),
            ("I/O error: Connection reset by peer (os error 104)", "Bus"),
            ("address error: unsupported transport", "Bus"),
            ("D-Bus handshake failed: no auth", "Bus"),
            ("Invalid D-Bus method reply", "Failed"),
            ("not a name: something", "Failed"),
        ];
        for (text, want) in cases {
            let got = classify(text, t);
            let kind = match &got {
                NotifyError::NoService { .. } => "NoService",
                NotifyError::NoAnswer { .. } => "NoAnswer",
                NotifyError::Bus { .. } => "Bus",
                NotifyError::Refused { .. } => "Refused",
                NotifyError::Failed(_) => "Failed",
            };
            assert_eq!(kind, want, "{text}: {got:?}");
        }
        let refused = classify("org.freedesktop.DBus.Error.InvalidArgs: bad body", t);
        assert_eq!(
            refused,
            NotifyError::Refused { name: "org.freedesktop.DBus.Error.InvalidArgs".into(), message: "bad body".into() }
        );
        assert!(!refused.to_string().contains("no notification service"), "{refused}");
    }

    #[test]
    fn builder_settings_stick() {
        let n = DesktopNotifier::new()
            .with_timeout(Duration::from_secs(3))
            .with_call_timeout(Duration::from_secs(4))
            .on_action(|_| {});
        assert_eq!(n.inner.timeout, Duration::from_secs(3));
        assert_eq!(n.inner.call_timeout, Duration::from_secs(4));
        assert!(n.inner.on_action.is_some());
        assert_eq!(n.inner.app_name, "Talkbell");
    }
}
