//! Mutes, quiet hours and sound: the engine saves them in the config, the gate follows
//! them at once, and they survive a restart.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::Recorder;
use talkbell_core::config::{Config, ConfigError, Paths};
use talkbell_core::engine::{Engine, EngineError};
use talkbell_core::notify::quiet::QuietHours;
use talkbell_core::protocol::{Person, TalkMessage, UserId};

fn person(id: u64, name: &str) -> Person {
    Person { id: id.into(), name: name.into() }
}

fn talk_from(from: Person, text: &str) -> TalkMessage {
    TalkMessage { from, to: person(1, "wang1"), talk: text.into(), seq: None, ts: None }
}

#[tokio::test]
async fn a_mute_silences_the_sender_at_once_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::in_dir(dir.path());
    let recorder = Arc::new(Recorder::default());
    let engine = Engine::start(paths.clone(), Some(recorder.clone())).unwrap();
    engine.mute(person(2, "wang2"), Some(Duration::from_secs(3600))).unwrap();
    engine.set_sound(false).unwrap();

    let gate = engine.notifications().unwrap();
    gate.talk(talk_from(person(2, "wang2"), "noisy"), 1, true);
    gate.talk(talk_from(person(3, "li3"), "hello"), 2, true);
    let stats = gate.stats().await;
    assert_eq!((stats.muted, stats.shown), (1, 1));
    let shown = recorder.0.lock().unwrap().clone();
    assert_eq!(shown.len(), 1);
    assert_eq!((shown[0].title.as_str(), shown[0].sound), ("li3", false));
    engine.shutdown().await;

    let engine = Engine::start(paths.clone(), None).unwrap();
    let mutes = engine.mutes();
    assert_eq!(mutes.len(), 1);
    assert_eq!((mutes[0].sender.clone(), mutes[0].name.as_str()), (UserId::from(2), "wang2"));
    assert!(mutes[0].until.is_some(), "for an hour, not for ever");
    assert!(!engine.config().notifications.sound);
    engine.unmute(&UserId::from(2)).unwrap();
    assert!(engine.mutes().is_empty());
    assert!(Config::load_or_create(&paths.config_file).unwrap().notifications.mutes.is_empty());
    engine.shutdown().await;
}

#[tokio::test]
async fn quiet_hours_are_saved_and_nonsense_ones_are_refused_keeping_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::in_dir(dir.path());
    let engine = Engine::start(paths.clone(), None).unwrap();
    let night = QuietHours { from: "22:00".parse().unwrap(), to: "08:00".parse().unwrap() };
    engine.set_quiet_hours(Some(night)).unwrap();
    let none = QuietHours { from: "08:00".parse().unwrap(), to: "08:00".parse().unwrap() };
    let err = engine.set_quiet_hours(Some(none)).unwrap_err();
    assert!(matches!(err, EngineError::Config(ConfigError::Invalid { .. })), "{err:?}");
    assert!(err.to_string().contains("start and end at the same time"), "{err}");
    engine.shutdown().await;
    let saved = Config::load_or_create(&paths.config_file).unwrap();
    assert_eq!(saved.notifications.quiet_hours, Some(night));
}
