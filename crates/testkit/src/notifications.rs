//! A stand-in notification service on the session bus: what KDE Plasma or swaync are to
//! the app, small enough to watch. It owns `org.freedesktop.Notifications`, lists the
//! capabilities it is given (e.g. `actions`, `body`, `inline-reply`), records each
//! `Notify` call, and sends `NotificationReplied` (then `NotificationClosed`) when a test
//! writes a reply into one of its popups.
//!
//! The desktop session of scripts/desktop-session.sh runs dunst, which owns the name: a
//! test that wants this service runs in a session of its own without dunst
//! ([`crate::desktop::without_notification_daemon`]).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc as channel;
use zbus::{OwnedVariant, Variant};

const NAME: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";

/// One `Notify` call the service took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notified {
    /// The id it answered with (1, 2, …).
    pub id: u32,
    pub app: String,
    pub summary: String,
    pub body: String,
    /// (key, label) pairs, in the order given.
    pub actions: Vec<(String, String)>,
    /// Each hint: a string's text, anything else in GVariant's text form.
    pub hints: BTreeMap<String, String>,
}

impl Notified {
    /// The label of action `key`, if the popup has it.
    pub fn action(&self, key: &str) -> Option<&str> {
        self.actions.iter().find(|(k, _)| k == key).map(|(_, label)| label.as_str())
    }
}

enum Command {
    Reply { id: u32, text: String, done: mpsc::Sender<zbus::Result<()>> },
    Stop,
}

/// The running service (its own thread and bus connection); stopped on drop, releasing
/// the name.
pub struct NotificationService {
    notified: Arc<Mutex<Vec<Notified>>>,
    commands: channel::UnboundedSender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl NotificationService {
    /// Owns the service's name on the session bus, listing `capabilities`. An error when
    /// the name is taken (a notification daemon runs) or the bus cannot be reached.
    pub fn start(capabilities: &[&str]) -> io::Result<NotificationService> {
        let notified = Arc::new(Mutex::new(Vec::new()));
        let service = Service {
            notified: notified.clone(),
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
        };
        let (commands, received) = channel::unbounded_channel();
        let (ready, up) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("notification-stand-in".into())
            .spawn(move || zbus::block_on(serve(service, received, ready)))?;
        match up.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(NotificationService { notified, commands, thread: Some(thread) }),
            Ok(Err(e)) => Err(io::Error::other(format!("the stand-in cannot own {NAME}: {e}"))),
            Err(_) => Err(io::Error::other(format!("the stand-in did not own {NAME} within 30 s"))),
        }
    }

    /// Every popup shown so far, oldest first.
    pub fn notified(&self) -> Vec<Notified> {
        self.notified.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Writes `text` into popup `id`'s reply field and sends it, as a person does:
    /// `NotificationReplied(id, text)`, then the popup closes (`NotificationClosed`).
    pub fn reply(&self, id: u32, text: &str) -> io::Result<()> {
        let (done, answer) = mpsc::channel();
        self.commands
            .send(Command::Reply { id, text: text.to_owned(), done })
            .map_err(|_| io::Error::other("the stand-in has stopped"))?;
        match answer.recv_timeout(Duration::from_secs(30)) {
            Ok(sent) => sent.map_err(|e| io::Error::other(format!("cannot send the signal: {e}"))),
            Err(_) => Err(io::Error::other("the stand-in did not send the signal within 30 s")),
        }
    }
}

impl Drop for NotificationService {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves until told to stop; says on `ready` whether it owns the name.
async fn serve(
    service: Service,
    mut commands: channel::UnboundedReceiver<Command>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let built = async { zbus::connection::Builder::session().serve_at(PATH, service).name(NAME).build().await };
    let bus = match built.await {
        Ok(bus) => bus,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Some(Command::Reply { id, text, done }) = commands.recv().await {
        let sent = async {
            bus.emit_signal(None::<&str>, PATH, NAME, "NotificationReplied", &(id, text.as_str())).await?;
            // 2: dismissed by the user.
            bus.emit_signal(None::<&str>, PATH, NAME, "NotificationClosed", &(id, 2u32)).await
        };
        let _ = done.send(sent.await);
    }
}

struct Service {
    notified: Arc<Mutex<Vec<Notified>>>,
    capabilities: Vec<String>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Service {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &mut self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        hints: HashMap<String, OwnedVariant>,
        _expire_timeout: i32,
    ) -> u32 {
        let mut notified = self.notified.lock().unwrap_or_else(|e| e.into_inner());
        let id = u32::try_from(notified.len()).unwrap_or(u32::MAX - 1) + 1;
        let actions = actions.chunks(2).map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default())).collect();
        let hints = hints
            .iter()
            .map(|(k, v)| {
                let text = match &**v {
                    Variant::Str(s) => s.as_str().to_owned(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        notified.push(Notified { id, app: app_name, summary, body, actions, hints });
        id
    }

    fn get_capabilities(&self) -> Vec<String> {
        self.capabilities.clone()
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        ("stand-in".into(), "talkbell-tests".into(), "1".into(), "1.2".into())
    }

    fn close_notification(&self, _id: u32) {}
}
