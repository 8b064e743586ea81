//! Resume from sleep and the network coming up, as told by logind and NetworkManager on
//! the system D-Bus, turned into "reconnect now" (PROTOCOL.md §4): after either, the old
//! socket is most likely dead and waiting for the heartbeat to notice wastes seconds.
//!
//! Without a system bus, logind or NetworkManager the app works as before (the heartbeat
//! and its wall-clock check still notice a dead link); that is logged once, at start.

use futures_util::StreamExt;
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
/// lives; the caller owns the task (the engine's `JoinSet`).
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

/// The two signal streams, subscribed: a signal sent after [`Watcher::subscribe`] has
/// returned is heard (the bus has the match rules), whoever owns the names by then.
pub struct Watcher {
    bus: Connection,
    sleep: MessageStream,
    network: MessageStream,
}

impl Watcher {
    /// Subscribes to logind's `PrepareForSleep` and NetworkManager's `StateChanged`.
    pub async fn subscribe(bus: Connection) -> zbus::Result<Watcher> {
        let sleep =
            signals(&bus, LOGIND, "/org/freedesktop/login1", "org.freedesktop.login1.Manager", "PrepareForSleep")
                .await?;
        let network = signals(
            &bus,
            NETWORK_MANAGER,
            "/org/freedesktop/NetworkManager",
            "org.freedesktop.NetworkManager",
            "StateChanged",
        )
        .await?;
        Ok(Watcher { bus, sleep, network })
    }

    /// Turns wakes into `reconnect_now()` until the session stops.
    pub async fn run(mut self, session: SessionHandle) {
        // Subscribed first, so that a service that starts later is still heard.
        for (name, what) in [(LOGIND, "resume from sleep"), (NETWORK_MANAGER, "the network coming up")] {
            if !has_owner(&self.bus, name).await {
                tracing::info!(service = name, "not on the system bus: {what} is noticed by the heartbeat only");
            }
        }
        let mut states = session.watch();
        let mut wakes = Wakes::default();
        loop {
            let signal = tokio::select! {
                Some(Ok(msg)) = self.sleep.next() => msg.body().deserialize::<bool>().ok().map(Signal::PrepareForSleep),
                Some(Ok(msg)) = self.network.next() => msg.body().deserialize::<u32>().ok().map(Signal::NetworkState),
                changed = states.changed() => {
                    if changed.is_err() || states.borrow().state == crate::session::SessionState::Stopped {
                        return;
                    }
                    None
                }
                else => return,
            };
            if let Some(wake) = signal.and_then(|s| wakes.decide(s)) {
                tracing::info!(?wake, "reconnecting now");
                session.reconnect_now();
            }
        }
    }
}

/// Watches `bus` until the session stops; each wake is a `reconnect_now()`.
pub async fn watch(bus: Connection, session: SessionHandle) {
    match Watcher::subscribe(bus).await {
        Ok(watcher) => watcher.run(session).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the system bus: sleep and network changes are noticed by the heartbeat only")
        }
    }
}

/// A signal the watcher heard, with its argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    /// `true`: about to sleep; `false`: back.
    PrepareForSleep(bool),
    /// NetworkManager's `NMState`.
    NetworkState(u32),
}

/// Which signals are a wake: the decision, apart from the bus.
#[derive(Debug, Default)]
struct Wakes {
    last_network: Option<u32>,
}

impl Wakes {
    fn decide(&mut self, signal: Signal) -> Option<Wake> {
        match signal {
            // "About to sleep": nothing to do until we are back.
            Signal::PrepareForSleep(going) => (!going).then_some(Wake::Resumed),
            Signal::NetworkState(state) => {
                let was = self.last_network.replace(state);
                let up = state >= NM_CONNECTED_GLOBAL && was.is_none_or(|w| w < NM_CONNECTED_GLOBAL);
                up.then_some(Wake::NetworkUp)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_and_the_network_reaching_global_are_wakes_and_nothing_else_is() {
        let mut w = Wakes::default();
        let cases = [
            (Signal::PrepareForSleep(true), None),
            (Signal::PrepareForSleep(false), Some(Wake::Resumed)),
            // Connecting (40), then site-only (60): not up yet.
            (Signal::NetworkState(40), None),
            (Signal::NetworkState(60), None),
            (Signal::NetworkState(70), Some(Wake::NetworkUp)),
            // Still up: no second reconnect.
            (Signal::NetworkState(70), None),
            (Signal::NetworkState(20), None),
            (Signal::NetworkState(70), Some(Wake::NetworkUp)),
        ];
        for (signal, expected) in cases {
            assert_eq!(w.decide(signal), expected, "{signal:?}");
        }
    }

    #[test]
    fn the_first_state_heard_counts_as_a_change_when_it_is_up() {
        assert_eq!(Wakes::default().decide(Signal::NetworkState(70)), Some(Wake::NetworkUp));
    }
}
