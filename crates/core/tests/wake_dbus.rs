//! Resume and network-up signals on a real (private) D-Bus cause an immediate reconnect.
//! A stand-in service owns the logind and NetworkManager names on the private session bus
//! of scripts/desktop-session.sh and emits their signals, as the real ones do on the
//! system bus.

mod support;

use std::time::Duration;

use support::*;
use talkbell_core::session::{Session, SessionEvent, SessionState, Timing};
use talkbell_testkit::wait::Poll;
use tokio::sync::mpsc;
use zbus::Connection;

/// Signals are broadcast on the one bus, so these tests take turns. An async mutex: the
/// turn is held across the test's awaits, each test on a runtime of its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn require_desktop_session() -> tokio::sync::MutexGuard<'static, ()> {
    let turn = ONE_AT_A_TIME.lock().await;
    talkbell_testkit::desktop::require_session();
    turn
}

/// Owns the two names, as logind and NetworkManager would.
async fn stand_in() -> Connection {
    let service = Connection::session().await.expect("private session bus");
    service.request_name("org.freedesktop.login1").await.unwrap();
    service.request_name("org.freedesktop.NetworkManager").await.unwrap();
    service
}

async fn prepare_for_sleep(service: &Connection, start: bool) {
    service
        .emit_signal(
            None::<&str>,
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager",
            "PrepareForSleep",
            &start,
        )
        .await
        .unwrap();
}

async fn network_state(service: &Connection, state: u32) {
    service
        .emit_signal(
            None::<&str>,
            "/org/freedesktop/NetworkManager",
            "org.freedesktop.NetworkManager",
            "StateChanged",
            &state,
        )
        .await
        .unwrap();
}

/// Starts the watcher on the private bus and returns once it is subscribed, so that a
/// signal sent next is heard.
async fn watch(session: &talkbell_core::session::SessionHandle) {
    let bus = Connection::session().await.expect("private session bus");
    let watcher = talkbell_core::wake::Watcher::subscribe(bus).await.expect("subscribed");
    tokio::spawn(watcher.run(session.clone()));
}

/// Long waits everywhere, so that only a wake can explain a quick reconnect.
fn patient_timing() -> Timing {
    Timing {
        heartbeat_interval: Duration::from_secs(600),
        heartbeat_timeout: Duration::from_secs(600),
        backoff_min: Duration::from_secs(600),
        backoff_max: Duration::from_secs(600),
        ..fast_timing()
    }
}

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn resume_from_sleep_reconnects_a_live_link_at_once() {
    let _turn = require_desktop_session().await;
    // Says hello back at once, so the link is up without waiting for a heartbeat.
    let server = Scripted::start(|_, mut ws| async move {
        next_text(&mut ws).await;
        send_text(&mut ws, "online").await;
        echo_heartbeats(ws, mpsc::unbounded_channel().0).await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(patient_timing()), Some(creds(&server.url(), Some(1))), history(&dir));
    let service = stand_in().await;
    watch(&session).await;
    wait_state(&session, |s| matches!(s, SessionState::Connected { .. })).await;

    // Going to sleep changes nothing (the unit tests of wake.rs); waking up reconnects.
    prepare_for_sleep(&service, true).await;
    prepare_for_sleep(&service, false).await;
    Poll::up_to(Duration::from_secs(10))
        .every(Duration::from_millis(20))
        .until_async("a reconnect after resume", || (server.accepted() >= 2).then_some(()))
        .await;
    wait_state(&session, |s| matches!(s, SessionState::Connected { .. })).await;
    session.shutdown().await;
}

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn the_network_coming_up_ends_a_backoff_wait_at_once() {
    let _turn = require_desktop_session().await;
    // Nothing listens: the first attempt fails and the next one is 10 minutes away.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(patient_timing()), Some(creds(&url, Some(1))), history(&dir));
    let mut events = session.subscribe();
    let service = stand_in().await;
    watch(&session).await;
    wait_state(&session, |s| matches!(s, SessionState::Backoff { .. })).await;

    // Still offline (e.g. connecting, 40): no attempt (the unit tests of wake.rs). Fully
    // online (70): an attempt now.
    network_state(&service, 40).await;
    network_state(&service, 70).await;
    let attempt = wait_event(&mut events, |e| match e {
        SessionEvent::State(SessionState::Connecting { attempt }) if *attempt > 1 => Some(*attempt),
        _ => None,
    })
    .await;
    // Within wait_event's bound, far below the 10-minute backoff it cut short.
    assert_eq!(attempt, 2);
    session.shutdown().await;
}

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn without_logind_or_network_manager_the_session_just_works() {
    let _turn = require_desktop_session().await;
    let server = Scripted::start(|_, ws| echo_heartbeats(ws, mpsc::unbounded_channel().0)).await;
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), history(&dir));
    // A bus where nobody owns the names; the watcher must neither fail nor reconnect.
    watch(&session).await;
    wait_state(&session, |s| matches!(s, SessionState::Connected { .. })).await;
    // Three heartbeats answered on the first link: a reconnect would have shown by then.
    Poll::up_to(Duration::from_secs(30))
        .every(Duration::from_millis(20))
        .until_async("three heartbeats", || (session.stats().heartbeats_sent >= 3).then_some(()))
        .await;
    assert_eq!(server.accepted(), 1);
    assert!(matches!(session.state(), SessionState::Connected { .. }));
    session.shutdown().await;
}
