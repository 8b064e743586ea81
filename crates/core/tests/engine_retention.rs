//! The engine applies the history's retention limits from the config when it starts.

use std::time::Duration;

use talkbell_core::config::{ConfigStore, Paths};
use talkbell_core::engine::Engine;
use talkbell_core::history::History;
use talkbell_core::protocol::{Person, Seq, TalkMessage};
use talkbell_core::session::SessionState;
use talkbell_testkit::wait::Poll;

#[tokio::test]
async fn history_beyond_max_rows_is_pruned_at_start_and_the_newest_stay() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::in_dir(dir.path());
    ConfigStore::load_or_create(&paths.config_file).unwrap().update(|c| c.history.max_rows = 2).unwrap();
    {
        let history = History::open(&paths.history_db).unwrap();
        for i in 1..=5u64 {
            let talk = TalkMessage {
                from: Person { id: 2.into(), name: "wang2".into() },
                to: Person { id: 1.into(), name: "wang1".into() },
                talk: format!("t{i}"),
                seq: Some(Seq(i)),
                ts: None,
            };
            history.insert("ws://127.0.0.1:9/", &talk).unwrap();
        }
    }
    // No server configured: the engine starts signed out and never asks the keyring.
    let engine = Engine::start(paths.clone(), None).unwrap();
    assert_eq!(engine.session().state(), SessionState::SignedOut { reason: None });
    let pruned = || (engine.history().count().unwrap() == 2).then_some(());
    Poll::up_to(Duration::from_secs(20)).every(Duration::from_millis(50)).until_async("pruned", pruned).await;
    let q = talkbell_core::history::HistoryQuery { limit: 10, ..Default::default() };
    let left: Vec<String> = engine.history().list(&q).unwrap().into_iter().map(|e| e.talk).collect();
    assert_eq!(left, ["t5", "t4"]);
    engine.shutdown().await;
}
