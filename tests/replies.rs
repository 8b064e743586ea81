//! Replies end to end (PROTOCOL.md 1.4): two signed-in users on the real relay answer
//! each other, and a reply written while the relay is frozen (the link dies with it, and
//! the answer to whatever got through is lost) is delivered exactly once after the thaw.
//! Each user is the engine's session with a real SQLite history, as the app and the
//! daemon run it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Peer, Relay, PATIENCE};
use talkbell_core::history::{History, HistoryQuery};
use talkbell_core::protocol::Person;
use talkbell_core::session::outbox::Outgoing;
use talkbell_core::session::{SessionEvent, SessionHandle, SessionState, Timing};
use tokio::sync::broadcast::Receiver;

struct User {
    session: SessionHandle,
    events: Receiver<SessionEvent>,
    history: Arc<History>,
    _peer: Peer,
}

/// Quick to notice a dead link, so that the freeze is over in seconds.
fn timing() -> Timing {
    Timing {
        heartbeat_interval: Duration::from_millis(500),
        heartbeat_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        ..Timing::default()
    }
}

/// User `id` of the relay, signed in and connected.
async fn signed_in(relay: &Relay, id: u64) -> User {
    let peer = Peer::start(relay, id, timing());
    let (session, history) = (peer.session.clone(), peer.history.clone());
    let events = session.subscribe();
    connected(&session).await;
    assert!(session.watch().borrow().replies, "the relay takes replies");
    User { session, events, history, _peer: peer }
}

async fn connected(session: &SessionHandle) {
    let up = session.wait_for(|s| matches!(s, SessionState::Connected { .. }));
    tokio::time::timeout(PATIENCE, up).await.expect("connected in time");
}

fn person(id: u64) -> Person {
    Person { id: id.into(), name: format!("wang{id}") }
}

/// The next event `pick` takes, within [`PATIENCE`].
async fn next<T>(events: &mut Receiver<SessionEvent>, pick: impl FnMut(&SessionEvent) -> Option<T>) -> T {
    talkbell_testkit::wait::next_picked(events, PATIENCE, "the event", pick).await
}

/// Waits until reply `row` is answered; where it stands then.
async fn answered(user: &mut User, row: i64) -> Outgoing {
    next(&mut user.events, |e| match e {
        SessionEvent::Reply { row: r, outgoing } if *r == row && *outgoing != Outgoing::Queued => {
            Some(outgoing.clone())
        }
        _ => None,
    })
    .await
}

/// Waits for a talk with `text`; who sent it.
async fn heard(user: &mut User, text: &str) -> Person {
    next(&mut user.events, |e| match e {
        SessionEvent::Talk { talk, for_me: true, .. } if talk.talk == text => Some(talk.from.clone()),
        _ => None,
    })
    .await
}

fn copies(user: &User, text: &str) -> usize {
    let all = user.history.list(&HistoryQuery { limit: 10_000, ..Default::default() }).unwrap();
    all.iter().filter(|e| e.talk == text && e.outgoing.is_none()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_answer_each_other_through_the_relay() {
    let relay = Relay::start();
    let (mut wang1, mut wang2) = (signed_in(&relay, 1).await, signed_in(&relay, 2).await);

    let row = wang1.session.reply(person(2), "on my way".into()).await.unwrap();
    assert_eq!(heard(&mut wang2, "on my way").await, person(1), "the relay names the token's user as the sender");
    assert_eq!(answered(&mut wang1, row).await, Outgoing::Sent);
    let back = wang2.session.reply(person(1), "好的，等你".into()).await.unwrap();
    assert_eq!(heard(&mut wang1, "好的，等你").await, person(2));
    assert_eq!(answered(&mut wang2, back).await, Outgoing::Sent);

    let kept = wang1.history.get(row).unwrap().unwrap();
    assert_eq!((kept.from.id, kept.to.id, kept.outgoing), (1.into(), 2.into(), Some(Outgoing::Sent)));
    assert!(kept.server_ts.is_some(), "the relay's time of the sent");
    // To someone the relay does not know: refused for good, and said why.
    let nobody = wang1.session.reply(person(99), "anyone?".into()).await.unwrap();
    assert!(matches!(answered(&mut wang1, nobody).await, Outgoing::Failed { .. }));
    for user in [&wang1, &wang2] {
        user.session.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_written_while_the_relay_is_frozen_is_delivered_once_after_it() {
    let relay = Relay::start();
    let (mut wang1, mut wang2) = (signed_in(&relay, 1).await, signed_in(&relay, 2).await);
    relay.freeze();
    let row = wang1.session.reply(person(2), "sent into the freeze".into()).await.unwrap();
    // The link dies with the relay; the reply waits in the outbox.
    let down = wang1.session.wait_for(|s| matches!(s, SessionState::Backoff { .. }));
    tokio::time::timeout(PATIENCE, down).await.expect("the frozen link declared dead");
    let queued = wang1.history.get(row).unwrap().unwrap();
    assert_eq!(queued.outgoing, Some(Outgoing::Queued));

    relay.thaw();
    assert_eq!(answered(&mut wang1, row).await, Outgoing::Sent);
    heard(&mut wang2, "sent into the freeze").await;
    // The relay delivers in order: once the marker is in, a second copy would be too.
    tokio::task::block_in_place(|| relay.post(1, 2, "marker after the reply")).expect("posted");
    heard(&mut wang2, "marker after the reply").await;
    assert_eq!(copies(&wang2, "sent into the freeze"), 1, "delivered exactly once");
    for user in [&wang1, &wang2] {
        user.session.shutdown().await;
    }
}
