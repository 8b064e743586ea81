//! SIGHUP on the real binary: the users file read again while connections stay open.

mod support;

use support::child::{users_cmd, Served};
use support::*;
use talkbell_relay::Users;

#[tokio::test]
async fn sighup_applies_a_new_users_file_and_a_broken_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    let mut users = Users::new();
    let t1 = users.add(1, "wang1");
    let t2 = users.add(2, "wang2");
    let t3 = users.add(3, "wang3");
    users.save(&file).unwrap();
    let relay =
        Served::start(["--listen".as_ref(), "127.0.0.1:0".as_ref(), "--users".as_ref(), file.as_os_str()]).await;
    let url = relay.url.clone();
    let mut one = signed_in(&url, &t1, "dev-1", None).await;
    let mut two = signed_in(&url, &t2, "dev-2", None).await;
    let mut three = signed_in(&url, &t3, "dev-3", None).await;

    // Through the CLI, as an operator would: 2 goes, 3 gets a new token, 4 arrives.
    assert_eq!(users_cmd(&["remove-user", "--id", "2"], &file).await, "");
    let t3_new = users_cmd(&["rotate-token", "--id", "3"], &file).await;
    let t4 = users_cmd(&["add-user", "--id", "4", "--name", "wang4"], &file).await;
    // Nothing changes before the signal.
    signed_in(&url, &t2, "dev-2b", None).await;
    refused(&url, &t4).await;

    relay.reload(1).await;
    assert!(relay.log().contains("reloaded the users file"), "{}", relay.log());
    // The removed user's and the rotated token's connections are closed as unauthorized.
    assert_eq!(close_code(&mut two).await, Some(4001));
    assert_eq!(close_code(&mut three).await, Some(4001));
    refused(&url, &t2).await;
    refused(&url, &t3).await;
    signed_in(&url, &t3_new, "dev-3", None).await;
    let mut four = signed_in(&url, &t4, "dev-4", None).await;
    assert_alive(&mut one).await;
    // POSTs follow the new table too.
    let e = talkbell_relay::post_talk(&url, &t2, 1, "x").await.unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
    let e = talkbell_relay::post_talk(&url, &t4, 2, "x").await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    talkbell_relay::post_talk(&url, &t1, 4, "welcome").await.unwrap();
    assert_eq!(next_talk(&mut four).await["form"]["talk"], "welcome");

    // A file that does not parse: the old table stays, and the log says why.
    std::fs::write(&file, "[[users]]\nid = 1\nname = \"broken\n").unwrap();
    relay.reload(2).await;
    let warning = relay.lines().into_iter().find(|l| l.contains("keeping the old one")).expect("a warning");
    assert!(warning.contains("WARN") && warning.contains("users.toml"), "{warning}");
    signed_in(&url, &t4, "dev-4b", None).await;
    refused(&url, &t2).await;
    assert_alive(&mut one).await;
    assert_alive(&mut four).await;

    let log = relay.stop().await;
    for t in [&t1, &t2, &t3, &t3_new, &t4] {
        assert!(!log.contains(t.as_str()), "a token is in the log:\n{log}");
    }
}
