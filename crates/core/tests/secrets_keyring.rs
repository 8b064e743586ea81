//! `secrets` against a real Secret Service: gnome-keyring in the private session of
//! scripts/desktop-session.sh. Run with
//!
//! ```text
//! scripts/desktop-session.sh cargo test -p talkbell-core --test secrets_keyring -- --include-ignored
//! ```
//!
//! Outside that session these tests fail on purpose (they are ignored by default).

use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;

mod support_bus;
use std::time::Duration;
use support_bus::{run_bounded, BareBus};

use talkbell_core::protocol::Token;
use talkbell_core::secrets::{SecretStore, SecretsError, SERVICE};
use talkbell_testkit::desktop::require_session;
use tokio::sync::RwLock;

/// Tests share one keyring; the one that locks it takes this for writing.
static KEYRING: RwLock<()> = RwLock::const_new(());

const LOGIN: &str = "/org/freedesktop/secrets/collection/login";

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

fn dbus_send(args: &[&str]) -> String {
    let out = Command::new("dbus-send")
        .args(["--session", "--print-reply", "--dest=org.freedesktop.secrets"])
        .args(args)
        .output()
        .expect("dbus-send runs");
    assert!(out.status.success(), "dbus-send {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn login_is_locked() -> bool {
    dbus_send(&[
        LOGIN,
        "org.freedesktop.DBus.Properties.Get",
        "string:org.freedesktop.Secret.Collection",
        "string:Locked",
    ])
    .contains("boolean true")
}

fn lock_login() {
    dbus_send(&["/org/freedesktop/secrets", "org.freedesktop.Secret.Service.Lock", &format!("array:objpath:{LOGIN}")]);
}

/// Unlocks the login keyring the way pam_gnome_keyring does: the password over the
/// daemon's control socket (GKD_CONTROL_OP_UNLOCK). `gnome-keyring-daemon --unlock` would
/// start a second daemon instead. Returns the daemon's result code (0 = unlocked).
fn unlock_login(password: &str) -> std::io::Result<u32> {
    use std::io::{Read, Write};
    let dir = std::env::var("GNOME_KEYRING_CONTROL")
        .unwrap_or_else(|_| format!("{}/keyring", std::env::var("XDG_RUNTIME_DIR").unwrap_or_default()));
    let mut sock = UnixStream::connect(format!("{dir}/control"))?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    // One credentials byte (the daemon checks the peer's uid), then big-endian
    // [packet length][op = 1, unlock][password length][password].
    let pw = password.as_bytes();
    let mut msg = vec![0u8];
    msg.extend_from_slice(&(12 + pw.len() as u32).to_be_bytes());
    msg.extend_from_slice(&1u32.to_be_bytes());
    msg.extend_from_slice(&(pw.len() as u32).to_be_bytes());
    msg.extend_from_slice(pw);
    sock.write_all(&msg)?;
    let mut reply = [0u8; 8];
    sock.read_exact(&mut reply)?;
    Ok(u32::from_be_bytes([reply[4], reply[5], reply[6], reply[7]]))
}

/// Unlocks the keyring again even if the test fails half-way, so the others can run.
struct UnlockOnDrop;
impl Drop for UnlockOnDrop {
    fn drop(&mut self) {
        let pw = std::env::var("TALKBELL_KEYRING_PASSWORD").unwrap_or_default();
        let _ = unlock_login(&pw);
    }
}

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
