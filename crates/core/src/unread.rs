//! The user's unread count, kept by the engine and published to whoever shows it (the
//! tray, the window's title): nobody else counts.
//!
//! It is read from the history at start, and again when the user changes (the session's
//! word), when talks are marked read or pruned ([`UnreadCount::recount`]), or when it fell
//! behind the gate's decisions; in between, each talk the gate decides adds one when it is
//! the user's. A count read from the history covers every row up to the newest one at
//! that moment, and a decision for such a row adds nothing: a talk stored just before a
//! count and decided just after is counted once.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{watch, Notify};

use crate::history::History;
use crate::notify::Decision;
use crate::protocol::UserId;
use crate::session::SessionNow;

/// The count's handle: what it is now, and asking for it to be read again.
#[derive(Clone)]
pub struct UnreadCount {
    now: watch::Receiver<u64>,
    recount: Arc<Notify>,
}

impl UnreadCount {
    /// The count now and at every change (the last one stays once the engine stops).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.now.clone()
    }

    /// Reads the count from the history again (talks were marked read or removed);
    /// several asks before it runs are one count.
    pub fn recount(&self) {
        self.recount.notify_one();
    }
}

/// The count and the task that keeps it: the user is `session`'s, the talks the
/// `decisions`' (subscribed before any talk comes).
pub fn start(
    session: watch::Receiver<SessionNow>,
    history: Arc<History>,
    decisions: broadcast::Receiver<Decision>,
) -> (UnreadCount, impl Future<Output = ()> + Send + 'static) {
    let (out, now) = watch::channel(0);
    let recount = Arc::new(Notify::new());
    let keeper = Keeper { session, history, decisions, recount: recount.clone(), out };
    (UnreadCount { now, recount }, keeper.run())
}

struct Keeper {
    session: watch::Receiver<SessionNow>,
    history: Arc<History>,
    decisions: broadcast::Receiver<Decision>,
    recount: Arc<Notify>,
    out: watch::Sender<u64>,
}

/// A count, and the newest row it covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counted {
    count: u64,
    upto: i64,
}

impl Counted {
    /// One more talk decided: the user's (or anyone's, while no user is known, as the
    /// history counts then) adds one, unless the count read from the history had it.
    fn add(&mut self, d: &Decision, anyone: bool) {
        if d.row > self.upto {
            self.upto = d.row;
            if d.for_me || anyone {
                self.count += 1;
            }
        }
    }
}

impl Keeper {
    async fn run(mut self) {
        let mut user = self.session.borrow_and_update().user.clone();
        let Some(mut counted) = self.count(user.clone(), Counted::default()).await else { return };
        self.out.send_replace(counted.count);
        loop {
            let again = tokio::select! {
                decision = self.decisions.recv() => match decision {
                    Ok(d) => {
                        counted.add(&d, user.is_none());
                        false
                    }
                    Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return,
                },
                () = self.recount.notified() => true,
                changed = self.session.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = self.session.borrow_and_update().user.clone();
                    std::mem::replace(&mut user, now) != user
                }
            };
            if again {
                let Some(recounted) = self.count(user.clone(), counted).await else { return };
                counted = recounted;
            }
            self.out.send_if_modified(|n| std::mem::replace(n, counted.count) != counted.count);
        }
    }

    /// `user`'s count read from the history; `old` when it cannot be read (logged).
    /// `None` once the runtime is going away.
    async fn count(&self, user: Option<UserId>, old: Counted) -> Option<Counted> {
        let history = self.history.clone();
        match tokio::task::spawn_blocking(move || history.unread_upto(user.as_ref())).await {
            Ok(Ok((count, upto))) => Some(Counted { count, upto }),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot count the unread talks");
                Some(old)
            }
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::notify::Outcome;
    use crate::protocol::{Person, TalkMessage};
    use crate::session::SessionState;

    fn talk(to: u64, text: &str) -> TalkMessage {
        let person = |id: u64| Person { id: UserId::from(id), name: format!("wang{id}") };
        TalkMessage { from: person(2), to: person(to), talk: text.into(), seq: None, ts: None }
    }

    /// Stores a talk to `to` and returns its decision (not sent yet).
    fn store(history: &History, to: u64, me: u64) -> Decision {
        let talk = talk(to, "hello");
        let crate::session::Stored::New(row) = history.insert("ws://test", &talk).unwrap() else { panic!("stored") };
        Decision { row, talk, for_me: to == me, outcome: Outcome::Popup, at: std::time::SystemTime::now() }
    }

    fn now_as(user: u64) -> SessionNow {
        SessionNow { state: SessionState::SignedOut { reason: None }, user: Some(user.into()), replies: false }
    }

    async fn shows(unread: &mut watch::Receiver<u64>, n: u64) {
        let seen = tokio::time::timeout(Duration::from_secs(10), unread.wait_for(|c| *c == n)).await.is_ok();
        assert!(seen, "the count never showed {n}: {}", *unread.borrow());
    }

    #[tokio::test]
    async fn the_count_starts_from_the_history_adds_the_users_talks_once_and_follows_reads_and_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let history = Arc::new(History::open(&dir.path().join("history.db")).unwrap());
        let old = store(&history, 1, 1);
        store(&history, 1, 1);
        store(&history, 3, 1);
        // Stored before the count is read, decided after: counted once.
        let late = store(&history, 1, 1);
        let (session, session_rx) = watch::channel(now_as(1));
        let (decisions, decisions_rx) = broadcast::channel(16);
        let (unread, keeper) = start(session_rx, history.clone(), decisions_rx);
        let keeper = tokio::spawn(keeper);
        let mut shown = unread.watch();
        shows(&mut shown, 3).await;
        history.mark_read(&[old.row]).unwrap();
        unread.recount();
        shows(&mut shown, 2).await;
        session.send_replace(now_as(3));
        shows(&mut shown, 1).await;
        session.send_replace(now_as(1));
        shows(&mut shown, 2).await;

        decisions.send(late).unwrap();
        decisions.send(store(&history, 1, 1)).unwrap();
        decisions.send(store(&history, 3, 1)).unwrap();
        drop(decisions);
        keeper.await.unwrap();
        assert_eq!(
            *unread.watch().borrow(),
            3,
            "one more for the user, the late one counted once; the last count stays"
        );
    }
}
