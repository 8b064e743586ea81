//! The session and a real history against servers that lose their queue, replay, and
//! send talks with unusable extension fields (PROTOCOL.md §2.3, §3), over real sockets.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::*;
use talkbell_core::history::HistoryQuery;
use talkbell_core::protocol::{Seq, UserId};
use talkbell_core::session::{Cursor, Session, SessionEvent};
use talkbell_testkit::wait::Poll;
use tokio::sync::mpsc;

fn welcome(extra: &str) -> String {
    format!(r#"{{"type": "welcome", "user": {{"id": 1, "name": "u1"}}{extra}}}"#)
}

/// A talk to user 1 with these extension fields.
fn talk_with(text: &str, ext: &str) -> String {
    format!(r#"{{"form": {{"id": 2, "name": "wang2", "talk": "{text}"}}, "to": {{"id": 1, "name": "u1"}}, {ext}}}"#)
}

/// What the client sent so far, by link, as JSON (heartbeats only counted).
#[derive(Default)]
struct Sent {
    frames: Vec<(usize, Value)>,
    heartbeats: Vec<usize>,
}

impl Sent {
    fn take(&mut self, seen: &mut mpsc::UnboundedReceiver<(usize, String)>) -> &mut Self {
        while let Ok((link, text)) = seen.try_recv() {
            if text == "online" {
                self.heartbeats.push(link);
            } else {
                self.frames.push((link, serde_json::from_str(&text).unwrap()));
            }
        }
        self
    }

    /// Waits (generously) for two more heartbeats on link `n`. The client sends a
    /// heartbeat after an interval of silence, so the second one left after every ack
    /// for what it had been told: the ack is there by then, or never comes.
    async fn settle(&mut self, seen: &mut mpsc::UnboundedReceiver<(usize, String)>, n: usize) {
        let beats = |s: &mut Self| s.heartbeats.iter().filter(|l| **l == n).count();
        let before = beats(self.take(seen));
        let poll = Poll::up_to(Duration::from_secs(20)).every(Duration::from_millis(20));
        let what = format!("two more heartbeats on link {n}");
        poll.until_async(&what, || (beats(self.take(seen)) >= before + 2).then_some(())).await;
    }

    /// Waits (generously) until link `n` has acked `seq`.
    async fn wait_ack(&mut self, seen: &mut mpsc::UnboundedReceiver<(usize, String)>, n: usize, seq: u64) {
        let poll = Poll::up_to(Duration::from_secs(20)).every(Duration::from_millis(20));
        if poll.check_async(|| acks(&self.take(seen).of(n)).contains(&seq).then_some(())).await.is_none() {
            panic!("link {n} never acked {seq}: {:?}", self.of(n));
        }
    }

    /// The frames of link `n`.
    fn of(&self, n: usize) -> Vec<Value> {
        self.frames.iter().filter(|(link, _)| *link == n).map(|(_, v)| v.clone()).collect()
    }
}

fn acks(frames: &[Value]) -> Vec<u64> {
    frames.iter().filter(|f| f["type"] == "ack").map(|f| f["seq"].as_u64().unwrap()).collect()
}

/// A server whose link `n` sends `script[n - 1]` after the hello, then answers heartbeats;
/// every frame the client sends is forwarded with its link's number.
async fn server(script: Vec<Vec<String>>) -> (Scripted, mpsc::UnboundedReceiver<(usize, String)>) {
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let script = Arc::new(script);
    let server = Scripted::start(move |n, mut ws| {
        let seen = seen_tx.clone();
        let frames = script.get(n - 1).cloned().unwrap_or_default();
        async move {
            let _ = seen.send((n, next_text(&mut ws).await.unwrap()));
            for f in frames {
                send_text(&mut ws, f).await;
            }
            let (tx, mut rx) = mpsc::unbounded_channel();
            let forward = tokio::spawn(async move {
                while let Some(text) = rx.recv().await {
                    let _ = seen.send((n, text));
                }
            });
            echo_heartbeats(ws, tx).await;
            let _ = forward.await;
        }
    })
    .await;
    (server, seen)
}

/// Waits until `n` talk events (new or repeated) have come.
async fn talks_told(events: &mut tokio::sync::broadcast::Receiver<SessionEvent>, n: usize) -> Vec<SessionEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        out.push(
            wait_event(events, |e| {
                matches!(e, SessionEvent::Talk { .. } | SessionEvent::Duplicate { .. }).then(|| e.clone())
            })
            .await,
        );
    }
    out
}

#[tokio::test]
async fn a_server_that_lost_its_queue_gets_its_new_talks_stored_and_the_user_told() {
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir);
    let (server, mut seen) = server(vec![
        vec![welcome(r#", "epoch": "E1", "last_seq": 0"#), talk_json(1, 1, "one"), talk_json(2, 1, "two")],
        // The relay's database was deleted: a new epoch, seqs from 1 again.
        vec![welcome(r#", "epoch": "E2", "reset": true, "last_seq": 1"#), talk_json(1, 1, "after the loss")],
        vec![welcome(r#", "epoch": "E2", "last_seq": 1"#)],
    ])
    .await;
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), h.clone());
    let mut events = session.subscribe();
    let mut sent = Sent::default();
    talks_told(&mut events, 2).await;
    sent.wait_ack(&mut seen, 1, 2).await;
    let link1 = sent.take(&mut seen).of(1);
    assert!(link1[0].get("epoch").is_none(), "nothing stored yet: {}", link1[0]);
    assert_eq!(acks(&link1).last(), Some(&2));

    session.reconnect_now();
    let reset = wait_event(&mut events, |e| match e {
        SessionEvent::QueueReset { server, account } => Some((server.clone(), account.clone())),
        _ => None,
    })
    .await;
    assert_eq!(reset, (server.url(), UserId::from(1)));
    let told = talks_told(&mut events, 1).await;
    assert!(
        matches!(&told[0], SessionEvent::Talk { talk, replay: true, .. } if talk.talk == "after the loss"),
        "a new talk, not a repeat of seq 1: {told:?}"
    );
    sent.wait_ack(&mut seen, 2, 1).await;
    sent.settle(&mut seen, 2).await;
    let link2 = sent.take(&mut seen).of(2);
    assert_eq!((link2[0]["resume"].as_u64(), link2[0]["epoch"].as_str()), (Some(2), Some("E1")), "{}", link2[0]);
    assert_eq!(acks(&link2), [1]);
    assert_eq!(texts(&h), ["one", "two", "after the loss"], "the history is kept");
    assert_eq!(
        h.cursor(&server.url(), &UserId::from(1)).unwrap(),
        Some(Cursor { seq: Seq(1), epoch: Some("E2".into()) })
    );

    session.reconnect_now();
    wait_event(&mut events, |e| matches!(e, SessionEvent::Welcome { .. }).then_some(())).await;
    let link3 = sent.take(&mut seen).of(3);
    assert_eq!((link3[0]["resume"].as_u64(), link3[0]["epoch"].as_str()), (Some(1), Some("E2")), "{}", link3[0]);
    session.shutdown().await;
}

#[tokio::test]
async fn no_stored_epoch_adopts_the_servers_and_another_epoch_resets_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir);
    let (server, mut seen) = server(vec![
        // A server from before epochs.
        vec![welcome(""), talk_json(3, 1, "old server")],
        // The same queue, now with an epoch: adopted, nothing reset.
        vec![welcome(r#", "epoch": "E1""#), talk_json(4, 1, "same queue")],
        // Another epoch, without `reset`: the queue is still another one.
        vec![welcome(r#", "epoch": "E9""#), talk_json(1, 1, "new queue")],
    ])
    .await;
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), h.clone());
    let mut events = session.subscribe();
    let mut sent = Sent::default();
    talks_told(&mut events, 1).await;
    sent.settle(&mut seen, 1).await;
    session.reconnect_now();
    let told = talks_told(&mut events, 1).await;
    assert!(matches!(&told[0], SessionEvent::Talk { talk, .. } if talk.talk == "same queue"), "{told:?}");
    sent.settle(&mut seen, 2).await;
    let link2 = sent.take(&mut seen).of(2);
    assert_eq!(link2[0]["resume"], 3);
    assert!(link2[0].get("epoch").is_none(), "none stored yet: {}", link2[0]);
    assert_eq!(
        h.cursor(&server.url(), &UserId::from(1)).unwrap(),
        Some(Cursor { seq: Seq(4), epoch: Some("E1".into()) })
    );

    session.reconnect_now();
    let told = talks_told(&mut events, 1).await;
    assert!(matches!(&told[0], SessionEvent::Talk { talk, .. } if talk.talk == "new queue"), "{told:?}");
    sent.settle(&mut seen, 3).await;
    let link3 = sent.take(&mut seen).of(3);
    assert_eq!((link3[0]["resume"].as_u64(), link3[0]["epoch"].as_str()), (Some(4), Some("E1")));
    assert_eq!(
        h.cursor(&server.url(), &UserId::from(1)).unwrap(),
        Some(Cursor { seq: Seq(1), epoch: Some("E9".into()) })
    );
    assert_eq!(texts(&h), ["old server", "same queue", "new queue"]);
    session.shutdown().await;
}

#[tokio::test]
async fn adopting_an_epoch_and_a_server_without_epochs_tell_the_user_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir);
    let (server, mut seen) = server(vec![
        vec![welcome(""), talk_json(1, 1, "a")],
        vec![welcome(""), talk_json(1, 1, "a"), talk_json(2, 1, "b")],
        vec![welcome(r#", "epoch": "E1""#), talk_json(3, 1, "c")],
    ])
    .await;
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), h.clone());
    let mut events = session.subscribe();
    // Every event, for the check below (talks_told passes over the others).
    let mut every = session.subscribe();
    let mut sent = Sent::default();
    let mut all = talks_told(&mut events, 1).await;
    for link in 1..=2 {
        sent.settle(&mut seen, link).await;
        session.reconnect_now();
        all.extend(talks_told(&mut events, if all.len() == 1 { 2 } else { 1 }).await);
    }
    sent.settle(&mut seen, 3).await;
    let mut welcomes = 0;
    while let Ok(e) = every.try_recv() {
        assert!(!matches!(e, SessionEvent::QueueReset { .. }), "{e:?}");
        welcomes += usize::from(matches!(e, SessionEvent::Welcome { .. }));
    }
    assert_eq!(welcomes, 3, "every link's events were read");
    assert!(matches!(all[1], SessionEvent::Duplicate { seq: Seq(1) }), "a repeat is still a repeat: {all:?}");
    assert_eq!(texts(&h), ["a", "b", "c"]);
    session.shutdown().await;
}

#[tokio::test]
async fn talks_up_to_the_welcomes_last_seq_are_the_replay_and_later_ones_live() {
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir);
    let (server, _seen) = server(vec![vec![
        welcome(r#", "epoch": "E1", "last_seq": 2"#),
        talk_json(1, 1, "missed 1"),
        talk_json(2, 1, "missed 2"),
        talk_json(3, 1, "live 3"),
        talk_with("no seq", r#""ts": 5"#),
    ]])
    .await;
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), h.clone());
    let mut events = session.subscribe();
    let told: Vec<(String, bool)> = talks_told(&mut events, 4)
        .await
        .into_iter()
        .map(|e| match e {
            SessionEvent::Talk { talk, replay, .. } => (talk.talk, replay),
            other => panic!("{other:?}"),
        })
        .collect();
    let want = [("missed 1", true), ("missed 2", true), ("live 3", false), ("no seq", false)];
    assert_eq!(told, want.map(|(t, r)| (t.to_owned(), r)));
    session.shutdown().await;
}

#[tokio::test]
async fn on_a_server_without_welcome_or_seq_nothing_is_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir);
    let (server, _seen) = server(vec![vec![SAMPLE.to_owned(), SAMPLE.to_owned(), SAMPLE.to_owned()]]).await;
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), h.clone());
    let mut events = session.subscribe();
    for e in talks_told(&mut events, 3).await {
        assert!(matches!(e, SessionEvent::Talk { replay: false, for_me: true, .. }), "{e:?}");
    }
    session.shutdown().await;
}

#[tokio::test]
async fn a_talk_whose_ts_is_not_a_time_is_stored_without_it_and_acked() {
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir);
    let (server, mut seen) = server(vec![vec![
        talk_with("far future", r#""seq": 1, "ts": 1e30"#),
        talk_with("before 1970", r#""seq": 2, "ts": -5"#),
        talk_with("a string", r#""seq": 3, "ts": "noon""#),
    ]])
    .await;
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), h.clone());
    let mut events = session.subscribe();
    let mut sent = Sent::default();
    talks_told(&mut events, 3).await;
    sent.settle(&mut seen, 1).await;
    let entries = h.list(&HistoryQuery { limit: 10, ..Default::default() }).unwrap();
    assert_eq!(entries.len(), 3, "not dropped: {entries:?}");
    assert!(entries.iter().all(|e| e.server_ts.is_none() && e.seq.is_some()), "{entries:?}");
    sent.wait_ack(&mut seen, 1, 3).await;
    assert_eq!(acks(&sent.take(&mut seen).of(1)).last(), Some(&3));
    session.shutdown().await;
}

#[tokio::test]
async fn a_talk_with_an_unusable_seq_is_stored_once_and_never_acked() {
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir);
    let odd = vec![
        talk_with("negative", r#""seq": -1"#),
        talk_with("fractional", r#""seq": 41.5"#),
        talk_with("too large", r#""seq": 18446744073709551616"#),
        talk_with("not a number", r#""seq": "x7""#),
    ];
    let mut second = odd.clone();
    second.push(talk_json(5, 1, "fine"));
    // Never acked, the server sends them on every link.
    let (server, mut seen) = server(vec![odd.clone(), second, odd]).await;
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), h.clone());
    let mut events = session.subscribe();
    let mut sent = Sent::default();
    let first = talks_told(&mut events, 4).await;
    assert!(first.iter().all(|e| matches!(e, SessionEvent::Talk { replay: false, .. })), "{first:?}");
    sent.settle(&mut seen, 1).await;
    session.reconnect_now();
    let second = talks_told(&mut events, 1).await;
    assert!(matches!(&second[0], SessionEvent::Talk { talk, .. } if talk.talk == "fine"), "{second:?}");
    assert_eq!(session.stats().duplicates, 4, "the unusable seqs' talks are repeats, by their text");
    sent.wait_ack(&mut seen, 2, 5).await;
    sent.settle(&mut seen, 2).await;
    session.reconnect_now();
    Poll::up_to(Duration::from_secs(20))
        .every(Duration::from_millis(20))
        .until_async("the third link's repeats", || (session.stats().duplicates >= 8).then_some(()))
        .await;
    sent.settle(&mut seen, 3).await;
    assert_eq!(texts(&h), ["negative", "fractional", "too large", "not a number", "fine"]);
    assert!(acks(&sent.take(&mut seen).of(1)).is_empty(), "nothing acks an unusable seq");
    assert_eq!(acks(&sent.take(&mut seen).of(2)), [5], "the ack is the usable seq's alone");
    assert!(acks(&sent.take(&mut seen).of(3)).is_empty());
    session.shutdown().await;
}

#[tokio::test]
async fn the_ack_waits_for_the_commit_and_the_async_thread_stays_free_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir);
    let go = Arc::new(tokio::sync::Notify::new());
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(String, std::time::Instant)>();
    let server = {
        let go = go.clone();
        Scripted::start(move |_, mut ws| {
            let (go, seen) = (go.clone(), seen_tx.clone());
            async move {
                next_text(&mut ws).await;
                send_text(&mut ws, welcome("")).await;
                go.notified().await;
                send_text(&mut ws, talk_json(1, 1, "on a slow disk")).await;
                while let Some(text) = next_text(&mut ws).await {
                    let _ = seen.send((text, std::time::Instant::now()));
                }
            }
        })
        .await
    };
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), h.clone());
    let mut events = session.subscribe();
    wait_event(&mut events, |e| matches!(e, SessionEvent::Welcome { .. }).then_some(())).await;
    // A commit that takes 1.5 s: the writer thread is busy with it.
    let hold = Duration::from_millis(1500);
    h.hold_write_for_test(hold).unwrap();
    let held_at = std::time::Instant::now();
    // This test's runtime has one thread: the ticks only come if nothing blocks it.
    let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let ticker = {
        let ticks = ticks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    go.notify_one();
    let acked_at = loop {
        let (text, at) = tokio::time::timeout(Duration::from_secs(20), seen.recv()).await.unwrap().unwrap();
        if text.contains("\"ack\"") {
            break at;
        }
    };
    let ticked = ticks.load(std::sync::atomic::Ordering::SeqCst);
    ticker.abort();
    assert!(acked_at - held_at >= hold - Duration::from_millis(50), "acked before the commit returned");
    assert!(ticked >= 10, "the async thread was blocked: {ticked} ticks in {:?}", acked_at - held_at);
    assert_eq!(texts(&h), ["on a slow disk"]);
    session.shutdown().await;
}

// The session's task runs on this (current-thread) runtime, so the thread's subscriber
// sees its events.
#[tokio::test]
async fn an_unusable_field_is_logged_escaped_and_its_talk_kept() {
    let (captured, _guard) = Captured::start();
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir);
    // A seq that would retitle a terminal (OSC) and ring its bell, if written raw.
    let (server, _seen) = server(vec![vec![talk_with("kept", r#""seq": "\u001b]0;owned\u0007", "ts": 1e30"#)]]).await;
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), h.clone());
    let mut events = session.subscribe();
    talks_told(&mut events, 1).await;
    session.shutdown().await;
    let log = captured.text();
    let flaws: Vec<&str> = log.lines().filter(|l| l.contains("WARN") && l.contains("unusable")).collect();
    assert_eq!(flaws.len(), 2, "{log}");
    assert!(flaws.iter().any(|l| l.contains(r#"field="seq" value="\"\\u001b]0;owned\\u0007\"""#)), "{log}");
    assert!(flaws.iter().any(|l| l.contains(r#"field="ts" value="1e+30""#)), "{log}");
    assert!(!log.contains('\u{1b}') && !log.contains('\u{7}'), "a control character reached the log: {log:?}");
    assert_eq!(texts(&h), ["kept"]);
}

/// Records the popups it is asked to show.
#[derive(Default)]
struct Popups(std::sync::Mutex<Vec<talkbell_core::notify::Notification>>);

impl talkbell_core::notify::Notifier for Popups {
    fn show(&self, n: &talkbell_core::notify::Notification) -> Result<(), talkbell_core::notify::NotifyError> {
        self.0.lock().unwrap().push(n.clone());
        Ok(())
    }
}

#[tokio::test]
async fn three_talks_at_once_from_an_original_server_are_three_popups_not_a_summary() {
    use talkbell_core::notify::{NotificationKind, NotifyGate, NotifySettings};
    let dir = tempfile::tempdir().unwrap();
    let h = history(&dir);
    let talk = |text: &str| format!(r#"{{"form": {{"id": 2, "name": "wang2", "talk": "{text}"}}, "to": {{"id": 1}}}}"#);
    // No welcome, no seq: the talks come in the first moments of the link.
    let (server, _seen) = server(vec![vec![talk("one"), talk("two"), talk("three")]]).await;
    let popups = Arc::new(Popups::default());
    let gate = NotifyGate::spawn(popups.clone(), NotifySettings::default());
    let session = Session::spawn(config(fast_timing()), Some(creds(&server.url(), Some(1))), h.clone());
    let mut events = session.subscribe();
    // What the engine's bridge does: every event to the gate.
    for _ in 0..3 {
        let e = wait_event(&mut events, |e| {
            if let SessionEvent::State(_) = e {
                gate.session_event(e);
            }
            matches!(e, SessionEvent::Talk { .. }).then(|| e.clone())
        })
        .await;
        gate.session_event(&e);
    }
    // The third waits for the burst to end (2 s), then shows as itself.
    Poll::up_to(Duration::from_secs(10))
        .every(Duration::from_millis(50))
        .until_async("the third popup", || (popups.0.lock().unwrap().len() >= 3).then_some(()))
        .await;
    let shown = popups.0.lock().unwrap().clone();
    assert_eq!(shown.iter().map(|n| n.body.as_str()).collect::<Vec<_>>(), ["one", "two", "three"]);
    assert!(shown.iter().all(|n| matches!(n.kind, NotificationKind::Talk { .. })), "{shown:?}");
    session.shutdown().await;
}
