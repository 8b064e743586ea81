//! `secrets` against a real Secret Service: gnome-keyring in the private session of
//! scripts/desktop-session.sh. Run with
//!
//! ```text
//! scripts/desktop-session.sh cargo test -p talkbell-core --test secrets_keyring -- --include-ignored
//! ```
//!
//! Outside that session these tests fail on purpose (they are ignored by default).

use std::os::unix::net::UnixListener;
use std::process::Command;

mod support;
mod support_bus;
mod support_keyring;
use std::time::Duration;
use support::{config, echo_heartbeats, history, next_text, send_text, Captured, Scripted};
use support_bus::{run_bounded, BareBus};
use support_keyring::{keyring_password, lock_login, login_is_locked, unlock_login, UnlockOnDrop, LOGIN};

use talkbell_core::config::{ConfigStore, Paths};
use talkbell_core::engine::Engine;
use talkbell_core::instance::{Holder, ProcessKind};
use talkbell_core::keyring_wait::{self, Retry};
use talkbell_core::protocol::{Token, UserId};
use talkbell_core::secrets::{SecretStore, SecretsError, SERVICE};
use talkbell_core::session::{Session, SessionConfig, SessionHandle, SessionState, SignedOutReason, Start, Timing};
use talkbell_core::status::{Published, ReasonKind, StateKind};
use talkbell_testkit::desktop::require_session;
use tokio::sync::{mpsc, RwLock};

/// Tests share one keyring; the one that locks it takes this for writing.
static KEYRING: RwLock<()> = RwLock::const_new(());

fn server(name: &str) -> String {
    format!("wss://talk.test/{name}/{}", std::process::id())
}

fn token(s: &str) -> Token {
    Token::new(s).expect("non-empty token")
}

fn store() -> SecretStore {
    // Generous: a prompt is never expected here, but a slow CI machine is.
    SecretStore::new().with_timeout(Duration::from_secs(60))
}

/// What `secret-tool lookup service talkbell username <server>` prints, if it finds one.
fn secret_tool_lookup(server: &str) -> Option<String> {
    let out = Command::new("secret-tool")
        .args(["lookup", "service", SERVICE, "username", server])
        .output()
        .expect("secret-tool runs");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `secret-tool search --all` for this server: the attributes of every matching item.
fn secret_tool_search(server: &str) -> String {
    let out = Command::new("secret-tool")
        .args(["search", "--all", "service", SERVICE, "username", server])
        .output()
        .expect("secret-tool runs");
    // secret-tool prints the attributes on stderr and the secret on stdout.
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn set_get_delete_round_trip() {
    require_session();
    let _shared = KEYRING.read().await;
    let store = store();
    let server = server("round-trip");

    assert_eq!(store.get(&server).await, Err(SecretsError::NotFound { server: server.clone() }));

    store.set(&server, &token("s3cret-round-trip")).await.expect("set");
    assert_eq!(store.get(&server).await.expect("get").expose(), "s3cret-round-trip");
    // What another program sees in the Secret Service, by the documented attributes.
    assert_eq!(secret_tool_lookup(&server).as_deref(), Some("s3cret-round-trip"));
    let search = secret_tool_search(&server);
    for line in [
        "attribute.service = talkbell".to_owned(),
        format!("attribute.username = {server}"),
        "attribute.target = default".to_owned(),
    ] {
        assert!(search.contains(&line), "{line:?} missing from:\n{search}");
    }

    store.delete(&server).await.expect("delete");
    assert_eq!(store.get(&server).await, Err(SecretsError::NotFound { server: server.clone() }));
    assert_eq!(secret_tool_lookup(&server), None, "the item is gone from the keyring");
    // Signing out twice is fine.
    store.delete(&server).await.expect("delete of nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/desktop-session.sh"]
async fn set_replaces_and_servers_are_separate() {
    require_session();
    let _shared = KEYRING.read().await;
    let store = store();
    let (a, b) = (server("replace-a"), server("replace-b"));

    store.set(&a, &token("first")).await.expect("set a");
    store.set(&a, &token("second")).await.expect("set a again");
    store.set(&b, &token("other")).await.expect("set b");

    assert_eq!(store.get(&a).await.expect("get a").expose(), "second");
    assert_eq!(store.get(&b).await.expect("get b").expose(), "other");
    let items = secret_tool_search(&a).matches("attribute.username = ").count();
    assert_eq!(items, 1, "setting twice keeps one item:\n{}", secret_tool_search(&a));

    store.delete(&a).await.expect("delete a");
    assert_eq!(store.get(&b).await.expect("b survives a's delete").expose(), "other");
    store.delete(&b).await.expect("delete b");
}

#[test]
#[ignore = "needs scripts/desktop-session.sh"]
fn blocking_calls_work_outside_a_runtime() {
    require_session();
    let _shared = KEYRING.blocking_read();
    let store = store();
    let server = server("blocking");
    store.set_blocking(&server, &token("blocking-token")).expect("set");
    assert_eq!(store.get_blocking(&server).expect("get").expose(), "blocking-token");
    store.delete_blocking(&server).expect("delete");
    assert!(matches!(store.get_blocking(&server), Err(SecretsError::NotFound { .. })));
}

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn a_token_read_from_the_keyring_is_not_printed() {
    require_session();
    let _shared = KEYRING.read().await;
    let store = store();
    let server = server("redacted");
    store.set(&server, &token("hunter2-redacted")).await.expect("set");
    let got = store.get(&server).await;
    assert!(!format!("{got:?}").contains("hunter2"), "{got:?}");
    store.delete(&server).await.expect("delete");
}

// ---- a locked keyring -----------------------------------------------------------------

#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn a_locked_keyring_gives_locked_and_works_again_once_unlocked() {
    require_session();
    let password = std::env::var("TALKBELL_KEYRING_PASSWORD").expect("TALKBELL_KEYRING_PASSWORD is set by the session");
    let _exclusive = KEYRING.write().await;
    let store = store();
    let (stored, fresh) = (server("locked-stored"), server("locked-fresh"));
    store.set(&stored, &token("before-the-lock")).await.expect("set while unlocked");

    let _unlock = UnlockOnDrop;
    lock_login();
    assert!(login_is_locked(), "the login collection should be locked now");

    // The session's prompter cannot open a window, so every unlock prompt is dismissed.
    let got = store.get(&stored).await;
    assert_eq!(got, Err(SecretsError::Locked), "get of a stored token");
    let got = store.set(&fresh, &token("while-locked")).await;
    assert_eq!(got, Err(SecretsError::Locked), "set of a new token");
    assert!(SecretsError::Locked.to_string().contains("Unlock it"), "the user is told what to do");
    assert!(login_is_locked(), "nothing unlocked it behind our back");

    assert_eq!(unlock_login("not-the-password").expect("control socket"), 1, "a wrong password is denied");
    assert_eq!(unlock_login(&password).expect("control socket"), 0, "the right one unlocks");
    assert!(!login_is_locked());
    assert_eq!(store.get(&stored).await.expect("get after unlock").expose(), "before-the-lock");
    assert_eq!(
        store.get(&fresh).await,
        Err(SecretsError::NotFound { server: fresh.clone() }),
        "nothing was stored while locked"
    );
    store.delete(&stored).await.expect("delete");
}

// ---- no session bus at all ------------------------------------------------------------

/// The parent: runs `child_without_a_bus` in a child process with a broken
/// DBUS_SESSION_BUS_ADDRESS (changing the environment of this process would race with the
/// other tests), once per way a bus can be missing.
#[test]
#[ignore = "needs scripts/desktop-session.sh"]
fn without_a_session_bus_it_is_no_keyring() {
    require_session();
    let tmp = tempfile::tempdir().expect("tempdir");
    // A socket file nobody listens on: connect() is refused.
    let dead = tmp.path().join("dead-bus");
    drop(UnixListener::bind(&dead).expect("bind"));
    let empty_runtime = tmp.path().join("runtime");
    std::fs::create_dir(&empty_runtime).expect("mkdir");

    // A live bus on which nothing provides (or can be started to provide) the Secret
    // Service: a desktop without a keyring.
    let bare = BareBus::start(tmp.path(), true);
    // A bus that accepts the connection but never lets a reply through: the call must end
    // with NoAnswer after the store's timeout, and the process must still exit.
    let mute = BareBus::start(tmp.path(), false);

    let cases: [(&str, Option<String>); 5] = [
        ("refused", Some(format!("unix:path={}", dead.display()))),
        ("missing", Some(format!("unix:path={}", tmp.path().join("no-such-socket").display()))),
        ("unset", None),
        ("no-secret-service", Some(bare.address.clone())),
        ("mute", Some(mute.address.clone())),
    ];
    for (case, address) in cases {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.args(["--exact", "child_without_a_bus", "--include-ignored", "--nocapture", "--test-threads=1"])
            .env("TALKBELL_SECRETS_CHILD", case)
            .env("XDG_RUNTIME_DIR", &empty_runtime);
        match &address {
            Some(a) => cmd.env("DBUS_SESSION_BUS_ADDRESS", a),
            None => cmd.env_remove("DBUS_SESSION_BUS_ADDRESS"),
        };
        let (status, stdout, stderr) = run_bounded(cmd, Duration::from_secs(120));
        assert!(
            status == Some(true) && stdout.contains(&format!("CHILD OK {case}")),
            "case {case}: child failed ({}):\n{stdout}\n{stderr}",
            if status.is_none() { "did not exit in time" } else { "exit" }
        );
    }
}

/// Only does something as the child of `without_a_session_bus_it_is_no_keyring`.
#[tokio::test]
#[ignore = "a helper of without_a_session_bus_it_is_no_keyring"]
async fn child_without_a_bus() {
    let Ok(case) = std::env::var("TALKBELL_SECRETS_CHILD") else {
        return;
    };
    let mute = case == "mute";
    let store = if mute { SecretStore::new().with_timeout(Duration::from_secs(2)) } else { store() };
    let server = server("no-bus");
    let results = [
        ("get", store.get(&server).await.map(|_| ())),
        ("set", store.set(&server, &token("nowhere")).await),
        ("delete", store.delete(&server).await),
    ];
    for (op, got) in results {
        match got {
            Err(SecretsError::NoKeyring { detail }) if !mute => println!("{case}/{op}: NoKeyring ({detail})"),
            Err(SecretsError::NoAnswer { after }) if mute => {
                assert_eq!(after, Duration::from_secs(2));
                println!("{case}/{op}: NoAnswer");
            }
            other => panic!("{case}/{op}: got {other:?}"),
        }
    }
    let message = SecretsError::NoKeyring { detail: String::new() }.to_string();
    assert!(message.contains("keyring"), "{message}");
    println!("CHILD OK {case}");
}

// ---- a locked keyring at start --------------------------------------------------------

/// Generous: none of these is a timing claim, only "it happens by itself".
const DEADLINE: Duration = Duration::from_secs(90);

/// A talk server that takes any hello, forwards it to the test, welcomes user 1 and
/// answers heartbeats.
async fn welcoming_server() -> (Scripted, mpsc::UnboundedReceiver<String>) {
    let (hellos, heard) = mpsc::unbounded_channel();
    let server = Scripted::start(move |_, mut ws| {
        let hellos = hellos.clone();
        async move {
            if let Some(hello) = next_text(&mut ws).await {
                let _ = hellos.send(hello);
            }
            send_text(&mut ws, r#"{"type": "welcome", "user": {"id": 1, "name": "wang1"}}"#).await;
            echo_heartbeats(ws, mpsc::unbounded_channel().0).await;
        }
    })
    .await;
    (server, heard)
}

async fn wait_state(session: &SessionHandle, what: &str, pred: impl Fn(&SessionState) -> bool) -> SessionState {
    let state = tokio::time::timeout(DEADLINE, session.wait_for(pred))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}; the state is {:?}", session.state()));
    assert_ne!(state, SessionState::Stopped, "stopped while waiting for {what}");
    state
}

fn is_locked(state: &SessionState) -> bool {
    *state == SessionState::SignedOut { reason: Some(SignedOutReason::KeyringLocked) }
}

/// The token the hello carried.
fn hello_token(hello: &str) -> String {
    let hello: serde_json::Value = serde_json::from_str(hello).expect("the hello is JSON");
    hello["token"].as_str().expect("the hello has a token").to_owned()
}

/// Issue 10, point 11: the engine starts at once with the keyring locked, signed out with
/// the reason (as `talkbell status` publishes it), and connects by itself with the stored
/// token once the keyring is unlocked, here through the control socket as PAM does it
/// (no D-Bus signal: the retry finds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/desktop-session.sh"]
async fn a_locked_keyring_at_start_signs_the_engine_out_and_it_connects_by_itself_once_unlocked() {
    require_session();
    let _exclusive = KEYRING.write().await;
    let (server, mut hellos) = welcoming_server().await;
    store().set(&server.url(), &token("stored-before-the-lock")).await.expect("set while unlocked");
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = Paths::in_dir(dir.path());
    let settings = ConfigStore::load_or_create(&paths.config_file).expect("config");
    settings
        .update(|c| {
            c.server = Some(server.url());
            c.user_id = Some(UserId::from(1));
        })
        .expect("config");

    let _unlock = UnlockOnDrop;
    lock_login();
    assert!(login_is_locked());
    let engine = Engine::start(paths, None).expect("the engine starts with the keyring locked");
    assert!(engine.session().state().waiting_for_keyring(), "{:?}", engine.session().state());
    let state = wait_state(engine.session(), "signed out, locked", is_locked).await;
    let published = Published::of(&state, Holder { kind: ProcessKind::Daemon, pid: 1 });
    assert_eq!(published.state, StateKind::SignedOut);
    assert_eq!(published.reason.as_deref(), Some("the keyring is locked: unlock it to connect"));
    assert_eq!(published.reason_kind, Some(ReasonKind::KeyringLocked));
    assert_eq!(server.accepted(), 0, "no attempt without the token");

    assert_eq!(unlock_login(&keyring_password()).expect("control socket"), 0);
    wait_state(engine.session(), "connected", |s| matches!(s, SessionState::Connected { .. })).await;
    let hello = hellos.recv().await.expect("a hello");
    assert_eq!(hello_token(&hello), "stored-before-the-lock");
    engine.shutdown().await;
    store().delete(&server.url()).await.expect("delete");
}

/// Unlocks the login keyring through the Secret Service, as Seahorse or an answered
/// unlock prompt do: gnome-keyring's own interface for it, the password in a plain
/// session. Unlike the control socket, this makes the Secret Service signal the change.
async fn unlock_login_over_dbus(password: &str) -> zbus::Result<()> {
    const SECRETS: &str = "org.freedesktop.secrets";
    let bus = zbus::Connection::session().await?;
    let open = bus
        .call_method(
            Some(SECRETS),
            "/org/freedesktop/secrets",
            Some("org.freedesktop.Secret.Service"),
            "OpenSession",
            &("plain", zbus::Variant::from("")),
        )
        .await?;
    let (_, session): (zbus::OwnedVariant, zbus::OwnedObjectPath) = open.body().deserialize()?;
    let master = (session, Vec::<u8>::new(), password.as_bytes().to_vec(), "text/plain");
    let login = zbus::ObjectPath::try_from(LOGIN)?;
    bus.call_method(
        Some(SECRETS),
        "/org/freedesktop/secrets",
        Some("org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface"),
        "UnlockWithMasterPassword",
        &(login, master),
    )
    .await?;
    Ok(())
}

/// What the reader logs after each read that did not give the token.
const NEXT_READ: &str = "next read of the keyring";
/// What it logs before each read of the keyring (which may prompt).
const READING: &str = "asking the keyring for the token";

/// A session signed out while the keyring is read, and the reader with `retry`; the
/// session's history is in `dir`.
fn session_and_reader(
    dir: &tempfile::TempDir,
    server: &Scripted,
    retry: Retry,
) -> (SessionHandle, tokio::task::JoinHandle<()>) {
    let start = Start::SignedOut(Some(SignedOutReason::ReadingKeyring));
    let config = SessionConfig { user_id: Some(UserId::from(1)), ..config(Timing::default()) };
    let session = Session::spawn_with(config, start, history(dir));
    let reader = keyring_wait::spawn(session.clone(), store(), server.url(), retry);
    (session, reader)
}

/// The reader hears the Secret Service: with retries an hour apart, only the unlock
/// signal can make it read the token again within the deadline.
#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn an_unlock_through_the_secret_service_is_heard_at_once() {
    require_session();
    let _exclusive = KEYRING.write().await;
    let (log, _capture) = Captured::start();
    let (server, mut hellos) = welcoming_server().await;
    store().set(&server.url(), &token("heard-on-unlock")).await.expect("set while unlocked");
    let _unlock = UnlockOnDrop;
    lock_login();
    let hour = Duration::from_secs(3600);
    let dir = tempfile::tempdir().unwrap();
    let (session, reader) = session_and_reader(&dir, &server, Retry { first: hour, max: hour });
    wait_state(&session, "signed out, locked", is_locked).await;
    // The first read (its unlock prompt dismissed) is over: an unlock from now on cannot
    // complete it, only make the reader read again.
    log.wait_for(1, NEXT_READ).await;
    assert!(login_is_locked(), "nothing unlocked it but us");

    unlock_login_over_dbus(&keyring_password()).await.expect("unlock over D-Bus");
    assert!(!login_is_locked());
    wait_state(&session, "connected", |s| matches!(s, SessionState::Connected { .. })).await;
    assert_eq!(hello_token(&hellos.recv().await.expect("a hello")), "heard-on-unlock");
    assert_eq!(log.lines_with(READING), 2, "one read at start, one on the signal");
    tokio::time::timeout(DEADLINE, reader).await.expect("the reader ends once it has handed over").expect("no panic");
    session.shutdown().await;
    store().delete(&server.url()).await.expect("delete");
}

/// Only the first read may prompt: the retries find the item locked (a search that never
/// prompts) and do not read, the reason is told and logged once, and the retry after an
/// unlock (through the control socket: no signal) connects.
#[tokio::test]
#[ignore = "needs scripts/desktop-session.sh"]
async fn retries_while_locked_do_not_prompt_again_and_the_reason_is_told_once() {
    require_session();
    let _exclusive = KEYRING.write().await;
    let (log, _capture) = Captured::start();
    let (server, mut hellos) = welcoming_server().await;
    store().set(&server.url(), &token("read-on-retry")).await.expect("set while unlocked");
    let _unlock = UnlockOnDrop;
    lock_login();
    let often = Retry { first: Duration::from_millis(100), max: Duration::from_millis(200) };
    let dir = tempfile::tempdir().unwrap();
    let (session, reader) = session_and_reader(&dir, &server, often);
    let mut states = session.subscribe();
    log.wait_for(4, NEXT_READ).await;
    assert!(is_locked(&session.state()), "{:?}", session.state());
    assert_eq!(log.lines_with(READING), 1, "a retry read the locked keyring (and prompted):\n{}", log.text());
    assert_eq!(log.lines_with("still locked: not read"), 3);
    assert_eq!(log.warnings_with("the keyring is locked: unlock it to connect"), 1, "the reason is logged once");

    assert_eq!(unlock_login(&keyring_password()).expect("control socket"), 0);
    wait_state(&session, "connected", |s| matches!(s, SessionState::Connected { .. })).await;
    assert_eq!(hello_token(&hellos.recv().await.expect("a hello")), "read-on-retry");
    let mut locked_states = 0;
    while let Ok(event) = states.try_recv() {
        locked_states += matches!(event, talkbell_core::session::SessionEvent::State(s) if is_locked(&s)) as usize;
    }
    assert_eq!(locked_states, 1, "the same reason at each retry is one state");
    tokio::time::timeout(DEADLINE, reader).await.expect("the reader ends once it has handed over").expect("no panic");
    session.shutdown().await;
    store().delete(&server.url()).await.expect("delete");
}
