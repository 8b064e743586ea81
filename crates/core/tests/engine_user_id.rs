//! The user id a person gives for a server that does not say who they are: the engine
//! keeps it in the config, and the session knows it at once and after a restart.

use talkbell_core::config::{Config, Paths};
use talkbell_core::engine::Engine;
use talkbell_core::protocol::UserId;

#[tokio::test]
async fn a_user_id_given_is_saved_and_the_sessions_at_once_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::in_dir(dir.path());
    let engine = Engine::start(paths.clone(), None).unwrap();
    assert_eq!(engine.session().user_id(), None);
    engine.set_user_id(UserId::from(7)).unwrap();
    assert_eq!(Config::load_or_create(&paths.config_file).unwrap().user_id, Some(UserId::from(7)));
    let mut now = engine.session().watch();
    let known = tokio::time::timeout(std::time::Duration::from_secs(20), now.wait_for(|n| n.user.is_some()))
        .await
        .expect("the session to take the id")
        .unwrap()
        .user
        .clone();
    assert_eq!(known, Some(UserId::from(7)));
    engine.shutdown().await;

    let engine = Engine::start(paths, None).unwrap();
    assert_eq!(engine.session().user_id(), Some(UserId::from(7)));
    engine.shutdown().await;
}
