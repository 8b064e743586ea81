//! The history against a real SQLite file.

use std::sync::Arc;
use std::time::Duration;

use talkbell_core::history::{History, HistoryError, HistoryQuery};
use talkbell_core::protocol::{Person, Seq, TalkMessage, UserId};
use talkbell_core::session::outbox::{Outgoing, Reply, SendFailure};
use talkbell_core::session::{Cursor, Inbound, Stored, TalkStore};

const SERVER: &str = "ws://127.0.0.1:9/";

fn talk(seq: Option<u64>, from: &str, to: u64, text: &str) -> TalkMessage {
    TalkMessage {
        from: Person { id: "2".into(), name: from.into() },
        to: Person { id: to.into(), name: format!("wang{to}") },
        talk: text.into(),
        seq: seq.map(Seq),
        ts: Some(1_763_900_000_000),
    }
}

/// The signed-in user of these tests (the talks are to user 1 unless said otherwise).
fn me() -> UserId {
    UserId::from(1)
}

fn all(h: &History) -> Vec<String> {
    h.list(&HistoryQuery { limit: 1000, ..Default::default() }).unwrap().into_iter().map(|e| e.talk).collect()
}

fn search(h: &History, q: &str) -> Vec<String> {
    h.list(&HistoryQuery { search: Some(q.into()), limit: 100, ..Default::default() })
        .unwrap()
        .into_iter()
        .map(|e| e.talk)
        .collect()
}

#[test]
fn stores_lists_newest_first_and_drops_a_repeated_seq() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("data/history.sqlite3")).unwrap();
    assert!(matches!(h.insert(SERVER, &talk(Some(1), "wang2", 1, "one")).unwrap(), Stored::New(_)));
    assert!(matches!(h.insert(SERVER, &talk(Some(2), "wang2", 1, "two")).unwrap(), Stored::New(_)));
    assert_eq!(h.insert(SERVER, &talk(Some(1), "wang2", 1, "one")).unwrap(), Stored::Duplicate);
    // The same seq from another server is another talk; no seq is always new.
    assert!(matches!(h.insert("ws://other/", &talk(Some(1), "x", 1, "elsewhere")).unwrap(), Stored::New(_)));
    assert!(matches!(h.insert(SERVER, &talk(None, "wang2", 1, "no seq")).unwrap(), Stored::New(_)));
    assert!(matches!(h.insert(SERVER, &talk(None, "wang2", 1, "no seq")).unwrap(), Stored::New(_)));
    assert_eq!(all(&h), ["no seq", "no seq", "elsewhere", "two", "one"]);
    let e = &h.list(&HistoryQuery { limit: 1, before: Some(4), ..Default::default() }).unwrap()[0];
    assert_eq!((e.talk.as_str(), e.from.name.as_str(), e.to.id.as_str(), e.seq), ("elsewhere", "x", "1", Some(1)));
    assert_eq!(e.server_ts, Some(1_763_900_000_000));
    assert!(!e.read);
}

#[test]
fn the_last_seq_survives_a_restart_and_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    {
        let h = History::open(&path).unwrap();
        assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), None);
        for seq in [3, 7, 5] {
            h.insert(SERVER, &talk(Some(seq), "wang2", 1, "t")).unwrap();
        }
    }
    let h = History::open(&path).unwrap();
    assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), Some(Seq(7)));
    assert_eq!(h.last_stored_seq("ws://other/", &me()).unwrap(), None);
    assert_eq!(h.prune(0, Duration::from_secs(3600)).unwrap(), 3);
    assert_eq!(h.count().unwrap(), 0);
    assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), Some(Seq(7)), "pruning must not cause a replay");
}

#[test]
fn a_link_that_stored_nothing_still_resumes_from_zero_and_never_lowers_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    {
        let h = History::open(&path).unwrap();
        assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), None, "a first connection has no resume");
        h.mark_linked(SERVER, &me()).unwrap();
    }
    // After a link that brought nothing (e.g. `talkbell login`), the next hello asks for
    // everything the server queued since: resume 0, not no resume.
    let h = History::open(&path).unwrap();
    assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), Some(Seq(0)));
    assert_eq!(h.last_stored_seq("ws://other/", &me()).unwrap(), None);
    h.insert(SERVER, &talk(Some(4), "wang2", 1, "t")).unwrap();
    h.mark_linked(SERVER, &me()).unwrap();
    assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), Some(Seq(4)));
    assert_eq!(h.count().unwrap(), 1);
}

#[test]
fn search_finds_words_and_never_fails_on_odd_input() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h.sqlite3")).unwrap();
    h.insert(SERVER, &talk(Some(1), "wang2", 1, "lunch at noon?")).unwrap();
    h.insert(SERVER, &talk(Some(2), "li3", 1, "the build is green")).unwrap();
    h.insert(SERVER, &talk(Some(3), "wang2", 1, "你好 世界")).unwrap();
    assert_eq!(search(&h, "lunch"), ["lunch at noon?"]);
    assert_eq!(search(&h, "LUN"), ["lunch at noon?"], "prefix, any case");
    assert_eq!(search(&h, "build green"), ["the build is green"]);
    assert_eq!(search(&h, "li3"), ["the build is green"], "the sender's name");
    assert_eq!(search(&h, "你好"), ["你好 世界"]);
    assert!(search(&h, "nothing").is_empty());
    for odd in ["\"unbalanced", "a AND", "*", "NEAR(", "-x", "(", "\"\"", "talk:", "OR OR"] {
        let _ = search(&h, odd); // must not be an error
    }
    assert_eq!(search(&h, "   ").len(), 3, "blank search is no filter");
}

#[test]
fn paging_with_before() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h.sqlite3")).unwrap();
    for i in 1..=25 {
        h.insert(SERVER, &talk(Some(i), "wang2", 1, &format!("t{i}"))).unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = h.list(&HistoryQuery { limit: 10, before, ..Default::default() }).unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id);
        seen.extend(page.into_iter().map(|e| e.talk));
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen.first().map(String::as_str), Some("t25"));
    assert_eq!(seen.last().map(String::as_str), Some("t1"));
}

#[test]
fn unread_marks() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h.sqlite3")).unwrap();
    let me = UserId::from(1);
    let rows: Vec<i64> = (1..=4)
        .map(|i| match h.insert(SERVER, &talk(Some(i), "wang2", if i == 4 { 3 } else { 1 }, "x")).unwrap() {
            Stored::New(row) => row,
            Stored::Duplicate => unreachable!(),
        })
        .collect();
    assert_eq!(h.unread_count(Some(&me)).unwrap(), 3);
    assert_eq!(h.unread_count(None).unwrap(), 4);
    assert_eq!(h.mark_read(&rows[..2]).unwrap(), 2);
    assert_eq!(h.mark_read(&rows[..2]).unwrap(), 0);
    assert_eq!(h.unread_count(Some(&me)).unwrap(), 1);
    let unread = h.list(&HistoryQuery { limit: 10, only_unread: true, ..Default::default() }).unwrap();
    assert_eq!(unread.len(), 2);
    assert!(h.get(rows[0]).unwrap().unwrap().read);
    h.mark_all_read().unwrap();
    assert_eq!(h.unread_count(None).unwrap(), 0);
}

#[test]
fn a_reader_sees_what_a_writer_commits_while_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let writer = Arc::new(History::open(&path).unwrap());
    let reader = History::open(&path).unwrap();
    let w = writer.clone();
    let handle = std::thread::spawn(move || {
        for i in 1..=300 {
            w.insert(SERVER, &talk(Some(i), "wang2", 1, "x")).unwrap();
        }
    });
    let mut last = 0;
    while !handle.is_finished() {
        let n = reader.count().unwrap();
        assert!(n >= last, "counts only grow");
        last = n;
    }
    handle.join().unwrap();
    assert_eq!(reader.count().unwrap(), 300);
}

#[test]
fn a_full_disk_is_a_clear_error_and_loses_nothing_already_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let h = History::open(&path).unwrap();
    h.insert(SERVER, &talk(Some(1), "wang2", 1, "kept")).unwrap();
    h.set_max_pages_for_test(64);
    let big = "z".repeat(100_000);
    let err = (2..100)
        .find_map(|i| h.insert(SERVER, &talk(Some(i), "wang2", 1, &big)).err())
        .expect("the capped file must fill up");
    assert!(matches!(err, HistoryError::DiskFull), "{err:?}");
    assert!(err.to_string().contains("disk is full"));
    // Through the session's interface it is a StoreError (not acked, replayed later).
    assert!(h.insert(SERVER, &talk(Some(500), "wang2", 1, &big)).is_err());
    assert!(h.last_stored_seq(SERVER, &me()).unwrap() < Some(Seq(500)));
    drop(h);
    let reopened = History::open(&path).unwrap();
    assert!(all(&reopened).contains(&"kept".to_owned()));
}

#[test]
fn talks_read_in_one_go_are_stored_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let h = History::open(&path).unwrap();
    h.insert(SERVER, &talk(Some(1), "wang2", 1, "before")).unwrap();
    // A run with a seq already stored in it: that one is dropped, the rest kept in order.
    let run = [talk(Some(1), "wang2", 1, "before"), talk(Some(2), "wang2", 1, "two"), talk(None, "li3", 1, "no seq")];
    let stored = h.insert_all(SERVER, &run).unwrap();
    assert!(matches!(stored[..], [Stored::Duplicate, Stored::New(_), Stored::New(_)]), "{stored:?}");
    assert_eq!(all(&h), ["no seq", "two", "before"]);
    assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), Some(Seq(2)));

    // A run that does not fit: none of it is stored, and the cursor stays where it was, so
    // the server (not acked) sends the whole run again.
    h.set_max_pages_for_test(64);
    let big = "z".repeat(100_000);
    let run: Vec<_> = (3..40).map(|i| talk(Some(i), "wang2", 1, &big)).collect();
    assert!(h.insert_all(SERVER, &run).is_err());
    assert_eq!(all(&h), ["no seq", "two", "before"]);
    assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), Some(Seq(2)));
}

#[test]
fn two_accounts_on_one_server_each_have_their_own_seqs_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h.sqlite3")).unwrap();
    // wang1 signed in first, then wang3 on the same server: each is numbered from 1.
    for seq in 1..=5 {
        h.insert(SERVER, &talk(Some(seq), "wang2", 1, &format!("to one {seq}"))).unwrap();
    }
    let wang3 = UserId::from(3);
    assert_eq!(h.last_stored_seq(SERVER, &wang3).unwrap(), None, "a first sign-in as wang3 has no resume");
    let stored = h
        .insert_all(SERVER, &[talk(Some(1), "wang2", 3, "to three 1"), talk(Some(2), "wang2", 3, "to three 2")])
        .unwrap();
    assert!(
        matches!(stored[..], [Stored::New(_), Stored::New(_)]),
        "wang3's talks are not wang1's repeats: {stored:?}"
    );
    assert_eq!(h.last_stored_seq(SERVER, &wang3).unwrap(), Some(Seq(2)));
    assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), Some(Seq(5)));
    // A repeat is still a repeat within one account.
    assert_eq!(h.insert(SERVER, &talk(Some(2), "wang2", 3, "to three 2")).unwrap(), Stored::Duplicate);
    assert_eq!(h.count().unwrap(), 7);
}

/// A history file made by `statements` (a fixture: what an older Talkbell wrote), in a
/// folder of its own.
fn old_history(statements: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    rusqlite::Connection::open(&path).unwrap().execute_batch(statements).unwrap();
    (dir, path)
}

#[test]
fn a_schema_1_history_is_migrated_with_its_talks_and_cursor() {
    let (_dir, path) = old_history(include_str!("fixtures/history-schema-1.sql"));
    let h = History::open(&path).unwrap();
    assert_eq!(all(&h), ["kept from before"]);
    assert_eq!(search(&h, "kept"), ["kept from before"]);
    assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), Some(Seq(12)));
    assert_eq!(h.insert(SERVER, &talk(Some(8), "wang2", 1, "kept from before")).unwrap(), Stored::Duplicate);
    assert!(matches!(h.insert(SERVER, &talk(Some(13), "wang2", 1, "new")).unwrap(), Stored::New(_)));
    drop(h);
    // Opened again: already at the new schema, nothing migrated twice.
    let h = History::open(&path).unwrap();
    assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), Some(Seq(13)));
}

fn inbound(seq: Option<u64>, from: &str, to: u64, text: &str) -> Inbound {
    Inbound::new(TalkMessage { from: Person { id: from.into(), name: from.into() }, ..talk(seq, from, to, text) })
}

fn unusable(from: &str, to: u64, text: &str) -> Inbound {
    Inbound { unusable_seq: true, ..inbound(None, from, to, text) }
}

#[tokio::test]
async fn a_schema_2_history_is_migrated_and_a_new_epoch_numbers_afresh() {
    let (_dir, path) = old_history(include_str!("fixtures/history-schema-2.sql"));
    let h = History::open(&path).unwrap();
    assert_eq!(all(&h), ["kept from before"]);
    assert_eq!(search(&h, "kept"), ["kept from before"]);
    assert_eq!(h.cursor(SERVER, &me()).unwrap(), Some(Cursor { seq: Seq(12), epoch: None }));
    // Before any epoch, a repeat is still a repeat.
    assert_eq!(h.insert(SERVER, &talk(Some(8), "wang2", 1, "kept from before")).unwrap(), Stored::Duplicate);
    // The server lost its queue: its seqs start again in epoch E2.
    h.set_epoch(SERVER, &me(), Some("E2"), true).unwrap();
    assert_eq!(h.cursor(SERVER, &me()).unwrap(), Some(Cursor { seq: Seq(0), epoch: Some("E2".into()) }));
    let stored = h.insert_batch(SERVER, Some("E2"), &[inbound(Some(8), "2", 1, "new in E2")]).await.unwrap();
    assert!(matches!(stored[..], [Stored::New(_)]), "seq 8 of E2 is not seq 8 of before: {stored:?}");
    let again = h.insert_batch(SERVER, Some("E2"), &[inbound(Some(8), "2", 1, "new in E2")]).await.unwrap();
    assert_eq!(again, [Stored::Duplicate]);
    assert_eq!(h.cursor(SERVER, &me()).unwrap(), Some(Cursor { seq: Seq(8), epoch: Some("E2".into()) }));
    drop(h);
    let c = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 4);
    drop(c);
    // Opened again: nothing migrated twice.
    let h = History::open(&path).unwrap();
    assert_eq!(all(&h), ["new in E2", "kept from before"]);
}

#[tokio::test]
async fn an_epoch_named_later_is_adopted_without_lowering_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h.sqlite3")).unwrap();
    h.insert_batch(SERVER, None, &[inbound(Some(5), "2", 1, "five")]).await.unwrap();
    h.set_epoch(SERVER, &me(), Some("E1"), false).unwrap();
    assert_eq!(h.cursor(SERVER, &me()).unwrap(), Some(Cursor { seq: Seq(5), epoch: Some("E1".into()) }));
    // A batch without an epoch (a server that stopped naming one) keeps the cursor's.
    h.insert_batch(SERVER, None, &[inbound(Some(6), "2", 1, "six")]).await.unwrap();
    assert_eq!(h.cursor(SERVER, &me()).unwrap(), Some(Cursor { seq: Seq(6), epoch: Some("E1".into()) }));
    h.insert_batch(SERVER, Some("E1"), &[inbound(Some(4), "2", 1, "four, late")]).await.unwrap();
    assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), Some(Seq(6)), "never lowered within an epoch");
}

#[tokio::test]
async fn a_talk_with_an_unusable_seq_is_stored_once_by_sender_recipient_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h.sqlite3")).unwrap();
    let batch = [
        unusable("2", 1, "odd"),
        unusable("2", 1, "odd"),
        unusable("2", 1, "other text"),
        unusable("3", 1, "odd"),
        unusable("2", 4, "odd"),
    ];
    let stored = h.insert_batch(SERVER, None, &batch).await.unwrap();
    assert!(
        matches!(stored[..], [Stored::New(_), Stored::Duplicate, Stored::New(_), Stored::New(_), Stored::New(_)]),
        "{stored:?}"
    );
    // Replayed on the next link (never acked): all repeats.
    let again = h.insert_batch(SERVER, None, &batch[..1]).await.unwrap();
    assert_eq!(again, [Stored::Duplicate]);
    // Talks without any seq (the original servers) are never repeats of each other.
    let plain = h.insert_batch(SERVER, None, &[inbound(None, "2", 1, "odd"), inbound(None, "2", 1, "odd")]).await;
    assert!(matches!(plain.unwrap()[..], [Stored::New(_), Stored::New(_)]));
    assert_eq!(h.count().unwrap(), 6);
    assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), None, "an unusable seq moves no cursor");
    assert!(h.list(&HistoryQuery { limit: 10, ..Default::default() }).unwrap().iter().all(|e| e.seq.is_none()));
}

#[test]
fn a_seq_past_what_sqlite_holds_is_not_cut_into_another_seq() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h.sqlite3")).unwrap();
    h.insert(SERVER, &talk(Some(3), "wang2", 1, "three")).unwrap();
    let huge = talk(Some(u64::MAX), "wang2", 1, "huge");
    assert!(matches!(h.insert(SERVER, &huge).unwrap(), Stored::New(_)));
    assert_eq!(h.insert(SERVER, &huge).unwrap(), Stored::Duplicate, "stored once, by its text");
    assert_eq!(h.last_stored_seq(SERVER, &me()).unwrap(), Some(Seq(3)));
    let entries = h.list(&HistoryQuery { limit: 10, ..Default::default() }).unwrap();
    assert_eq!((entries[0].talk.as_str(), entries[0].seq), ("huge", None));
}

#[tokio::test]
async fn talks_stored_before_an_epoch_was_adopted_are_still_repeats_in_it_but_not_after_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h.sqlite3")).unwrap();
    // Stored from a server before it named epochs; the ack of seq 3 was lost.
    h.insert_batch(SERVER, None, &[inbound(Some(3), "2", 1, "three"), unusable("2", 1, "odd")]).await.unwrap();
    // The same queue, now with an epoch: adopted, and its replay is all repeats.
    h.set_epoch(SERVER, &me(), Some("E1"), false).unwrap();
    let replay = [inbound(Some(3), "2", 1, "three"), unusable("2", 1, "odd")];
    assert_eq!(h.insert_batch(SERVER, Some("E1"), &replay).await.unwrap(), [Stored::Duplicate, Stored::Duplicate]);
    // The queue is lost: seq 3 of E2 is another talk.
    h.set_epoch(SERVER, &me(), Some("E2"), true).unwrap();
    let stored = h.insert_batch(SERVER, Some("E2"), &[inbound(Some(3), "2", 1, "three again")]).await.unwrap();
    assert!(matches!(stored[..], [Stored::New(_)]), "{stored:?}");
    assert_eq!(all(&h), ["three again", "odd", "three"]);
}

fn reply(id: &str, to: u64, text: &str) -> Reply {
    Reply { id: id.into(), to: Person { id: to.into(), name: format!("wang{to}") }, talk: text.into() }
}

#[tokio::test]
async fn replies_wait_in_order_and_keep_where_they_stand_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite3");
    let h = History::open(&path).unwrap();
    let wang1 = Person { id: me(), name: "wang1".into() };
    let first = h.queue_reply(SERVER, &wang1, &reply("id-1", 2, "on my way")).await.unwrap();
    let second = h.queue_reply(SERVER, &wang1, &reply("id-2", 3, "later")).await.unwrap();
    h.queue_reply("ws://elsewhere/", &wang1, &reply("id-3", 2, "other server")).await.unwrap();
    let queued = h.outbox(SERVER, &me()).await.unwrap();
    assert_eq!(
        queued.iter().map(|q| (q.row, q.reply.id.as_str())).collect::<Vec<_>>(),
        [(first, "id-1"), (second, "id-2")]
    );
    assert!(h.outbox(SERVER, &UserId::from(9)).await.unwrap().is_empty(), "another account's outbox is its own");
    // Replies are the user's own words: never unread, never pruned while queued.
    assert_eq!(h.unread_count(None).unwrap(), 0);
    h.prune(0, Duration::from_secs(3600)).unwrap();
    assert_eq!(h.outbox(SERVER, &me()).await.unwrap().len(), 2);

    assert_eq!(h.reply_done("id-1", &Outgoing::Sent, Some(1_763_900_000_000)).await.unwrap(), Some(first));
    assert_eq!(h.reply_done("id-1", &Outgoing::Sent, None).await.unwrap(), None, "answered once");
    let refused = Outgoing::Failed { reason: SendFailure::UnknownRecipient, message: "no user 3".into() };
    assert_eq!(h.reply_done("id-2", &refused, None).await.unwrap(), Some(second));
    drop(h);
    let h = History::open(&path).unwrap();
    assert!(h.outbox(SERVER, &me()).await.unwrap().is_empty());
    let sent = h.get(first).unwrap().unwrap();
    assert_eq!((sent.outgoing, sent.server_ts, sent.from.id), (Some(Outgoing::Sent), Some(1_763_900_000_000), me()));
    assert_eq!(h.get(second).unwrap().unwrap().outgoing, Some(refused));
    let listed = h.list(&HistoryQuery { limit: 10, ..Default::default() }).unwrap();
    assert_eq!(listed.iter().filter(|e| e.outgoing.is_none()).count(), 0, "all three are replies");
    assert_eq!(serde_json::to_value(&listed[1].outgoing).unwrap()["state"], "failed");
}

#[test]
fn for_me_is_talks_to_or_from_me_and_leaves_out_talks_between_others() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h.sqlite3")).unwrap();
    h.insert(SERVER, &talk(None, "wang2", 1, "to me")).unwrap();
    h.insert(SERVER, &talk(None, "wang2", 3, "to wang3")).unwrap();
    let mut mine = talk(None, "wang1", 2, "from me");
    mine.from.id = me();
    h.insert(SERVER, &mine).unwrap();
    let q = HistoryQuery { limit: 10, involving: Some(me()), ..Default::default() };
    let texts: Vec<String> = h.list(&q).unwrap().into_iter().map(|e| e.talk).collect();
    assert_eq!(texts, ["from me", "to me"]);
    assert_eq!(all(&h).len(), 3, "everything has all three");
}
