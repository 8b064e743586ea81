//! Resume from sleep and the network coming up, as told by logind and NetworkManager on
//! the system D-Bus, turned into "reconnect now" (PROTOCOL.md §4): after either, the old
//! socket is most likely dead and waiting for the heartbeat to notice wastes seconds.
//!
//! Without a system bus, logind or NetworkManager the app works as before (the heartbeat
//! and its wall-clock check still notice a dead link); that is logged once, at start.

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

use crate::session::SessionHandle;

const LOGIND: &str = "org.freedesktop.login1";
const NETWORK_MANAGER: &str = "org.freedesktop.NetworkManager";
/// NM_STATE_CONNECTED_GLOBAL: full network access.
const NM_CONNECTED_GLOBAL: u32 = 70;

/// Why the watcher asked for a reconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    Resumed,
    NetworkUp,
}

/// Watches the system bus (`DBUS_SYSTEM_BUS_ADDRESS` if set) for as long as the session
/// lives.
pub fn spawn(session: SessionHandle) -> JoinHandle<()> {
    tokio::spawn(run(session))
}

/// What [`spawn`] runs, for a caller that owns its tasks (the engine's `JoinSet`).
pub async fn run(session: SessionHandle) {
    match Connection::system().await {
        Ok(bus) => watch(bus, session).await,
        Err(e) => {
            tracing::info!(error = %e, "no system D-Bus: sleep and network changes are noticed by the heartbeat only")
        }
    }
}

async fn signals(
    bus: &Connection,
    sender: &str,
    path: &str,
    interface: &str,
    member: &str,
) -> zbus::Result<MessageStream> {
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .sender(sender)
        .path(path)
        .interface(interface)
        .member(member)
        .build()?;
    MessageStream::for_match_rule(rule, bus, None).await
}

async fn has_owner(bus: &Connection, name: &'static str) -> bool {
    let Ok(dbus) = zbus::fdo::DBusProxy::new(bus).await else { return false };
    let Ok(name) = zbus::names::BusName::try_from(name) else { return false };
    dbus.name_has_owner(name).await.unwrap_or(false)
}

/// Watches `bus` until the session stops; each wake is a `reconnect_now()`.
pub async fn watch(bus: Connection, session: SessionHandle) {
    let sleep =
        signals(&bus, LOGIND, "/org/freedesktop/login1", "org.freedesktop.login1.Manager", "PrepareForSleep").await;
    let network = signals(
        &bus,
        NETWORK_MANAGER,
        "/org/freedesktop/NetworkManager",
        "org.freedesktop.NetworkManager",
        "StateChanged",
    )
    .await;
    let (mut sleep, mut network) = match (sleep, network) {
        (Ok(s), Ok(n)) => (s, n),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot watch the system bus: sleep and network changes are noticed by the heartbeat only");
            return;
        }
    };
    // Subscribed first, so that a service that starts later is still heard.
    for (name, what) in [(LOGIND, "resume from sleep"), (NETWORK_MANAGER, "the network coming up")] {
        if !has_owner(&bus, name).await {
            tracing::info!(service = name, "not on the system bus: {what} is noticed by the heartbeat only");
        }
    }
    let mut states = session.watch();
    let mut last_network: Option<u32> = None;
    loop {
        let wake = tokio::select! {
            Some(Ok(msg)) = sleep.next() => match msg.body().deserialize::<bool>() {
                // `true` is "about to sleep"; nothing to do until we are back.
                Ok(false) => Some(Wake::Resumed),
                _ => None,
            },
            Some(Ok(msg)) = network.next() => match msg.body().deserialize::<u32>() {
                Ok(state) => {
                    let was = last_network.replace(state);
                    let up = state >= NM_CONNECTED_GLOBAL && was.is_none_or(|w| w < NM_CONNECTED_GLOBAL);
                    up.then_some(Wake::NetworkUp)
                }
                Err(_) => None,
            },
            changed = states.changed() => {
                if changed.is_err() || states.borrow().state == crate::session::SessionState::Stopped {
                    return;
                }
                None
            }
            else => return,
        };
        if let Some(wake) = wake {
            tracing::info!(?wake, "reconnecting now");
            session.reconnect_now();
        }
    }
}
