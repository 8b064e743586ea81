//! The engine owns the tasks it starts: its shutdown stops them all, the notification
//! gate included, and the config has one owner.

use std::sync::Arc;

use talkbell_core::config::{Config, Paths};
use talkbell_core::engine::Engine;
use talkbell_core::notify::{Notification, Notifier, NotifyError};

struct Silent;

impl Notifier for Silent {
    fn show(&self, _n: &Notification) -> Result<(), NotifyError> {
        Ok(())
    }
}

#[tokio::test]
async fn shutdown_stops_every_task_of_the_engine_the_notification_gate_included() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::in_dir(dir.path());
    // No server configured: no keyring is asked.
    let notifier = Arc::new(Silent);
    let engine = Engine::start(paths, Some(notifier.clone())).unwrap();
    assert!(engine.notifications().is_some());
    // Held here, by the engine (which says why a reply written in a popup was not sent)
    // and by the gate's task.
    assert!(Arc::strong_count(&notifier) > 2, "the gate holds the notifier");
    engine.shutdown().await;
    assert_eq!(Arc::strong_count(&notifier), 2, "the gate's task has ended and dropped it");
    drop(engine);
    assert_eq!(Arc::strong_count(&notifier), 1, "nothing else holds it");
}

#[tokio::test]
async fn config_changes_go_through_its_one_owner() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::in_dir(dir.path());
    let engine = Engine::start(paths.clone(), None).unwrap();
    engine.save_settings(7_000, 3_000, None).unwrap();
    engine.config_store().update(|c| c.notifications.burst_count = 5).unwrap();
    let saved = Config::load_or_create(&paths.config_file).unwrap();
    assert_eq!((saved.heartbeat.interval_ms, saved.heartbeat.timeout_ms), (7_000, 3_000), "not overwritten");
    assert_eq!(saved.notifications.burst_count, 5);
    assert_eq!(saved, engine.config());
    engine.shutdown().await;
}
