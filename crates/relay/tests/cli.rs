//! The binary: add-user, send, and serve end to end (with SIGTERM).

mod support;

use std::process::Stdio;

use support::*;
use talkbell_relay::Users;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_talkbell-relay");

async fn add_user(users: &std::path::Path, id: &str, name: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["add-user", "--users"])
        .arg(users)
        .args(["--id", id, "--name", name])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

fn token_of(out: &std::process::Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stdout: {stdout:?}");
    let token = lines[0];
    assert_eq!(token.len(), 43, "32 bytes as URL-safe base64: {token}");
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    token.to_owned()
}

#[tokio::test]
async fn add_user_prints_one_token_and_stores_only_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("conf").join("users.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();

    let t1 = token_of(&add_user(&file, "1", "wang1").await);
    let t2 = token_of(&add_user(&file, "u-2", "wang two").await);
    assert_ne!(t1, t2);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&t1) && !text.contains(&t2), "a token is in the file:\n{text}");

    let users = Users::load(&file).unwrap();
    assert_eq!(users.authenticate(&t1).unwrap().name, "wang1");
    assert_eq!(users.authenticate(&t2).unwrap().id.as_str(), "u-2");

    // A duplicate id is refused, clearly, and the file is left alone.
    let out = add_user(&file, "1", "again").await;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no token for a refused user");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);

    // An empty name is refused too.
    let out = add_user(&file, "3", " ").await;
    assert!(!out.status.success());
}

async fn send(
    server: &str,
    to: &str,
    text: &[&str],
    env_token: Option<&str>,
    stdin_token: Option<&str>,
) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["send", "--server", server, "--to", to]).args(text).env_remove("TALKBELL_TOKEN");
    if let Some(t) = env_token {
        cmd.env("TALKBELL_TOKEN", t);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(t) = stdin_token {
        stdin.write_all(format!("{t}\n").as_bytes()).await.unwrap();
    }
    drop(stdin);
    tokio::time::timeout(WAIT, child.wait_with_output()).await.unwrap().unwrap()
}

#[tokio::test]
async fn send_posts_and_prints_the_seq() {
    let env = start().await;
    let mut one = signed_in(&env.ws_url(), env.token(1), "dev", None).await;

    let out = send(&env.http_url(), "1", &["hello", "world"], Some(env.token(2)), None).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    let talk = next_talk(&mut one).await;
    assert_eq!(talk["form"]["talk"], "hello world");
    assert_eq!(talk["form"]["id"], 2);

    // The token from stdin, the server as a ws:// URL.
    let out = send(&env.ws_url(), "1", &["from stdin"], None, Some(env.token(3))).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2\n");
    assert_eq!(next_talk(&mut one).await["form"]["name"], "wang3");

    // Errors: non-zero, a clear message, nothing on stdout.
    for (to, token, want) in [("1", "bad-token", "401"), ("77", env.token(2), "no user with id 77")] {
        let out = send(&env.http_url(), to, &["x"], Some(token), None).await;
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
        assert!(!err.contains(env.token(2)), "the token is never printed");
    }
    let out = send(&env.http_url(), "1", &["x"], None, None).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TALKBELL_TOKEN"));
    // None of those was stored or delivered: the next talk is seq 3.
    let out = send(&env.http_url(), "1", &["third"], Some(env.token(2)), None).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n");
    assert_eq!(next_talk(&mut one).await["form"]["talk"], "third");
}

#[cfg(unix)]
#[tokio::test]
async fn serve_runs_until_sigterm_and_closes_with_1001() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    let t1 = token_of(&add_user(&users, "1", "wang1").await);
    let t2 = token_of(&add_user(&users, "2", "wang2").await);

    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--users"])
        .arg(&users)
        .args(["--heartbeat-interval-ms", "25000"])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let url = tokio::time::timeout(WAIT, async {
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).await.unwrap() == 0 {
                panic!("serve exited early:\n{log}");
            }
            log.push_str(&line);
            if let Some(rest) = line.split("listening on ").nth(1) {
                if rest.starts_with("ws://") {
                    return rest.trim().to_owned();
                }
            }
        }
    })
    .await
    .expect("serve says where it listens");
    let reader = tokio::spawn(async move {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest).await;
        rest
    });

    let mut ws = connect(&url).await;
    send_text(&mut ws, hello_text(&t1, "dev", None)).await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["user"]["name"], "wang1");
    assert_eq!(welcome["heartbeat"]["interval_ms"], 25000);
    let out = send(&url, "1", &["via the binary"], Some(&t2), None).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(next_talk(&mut ws).await["form"]["talk"], "via the binary");

    let pid = child.id().unwrap();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    assert_eq!(close_code(&mut ws).await, Some(1001));
    let status = tokio::time::timeout(WAIT, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "exit status {status}");
    log.push_str(&reader.await.unwrap());

    assert!(dir.path().join("talkbell-relay.db").exists(), "the db defaults to beside the users file");
    assert!(!log.contains(&t1) && !log.contains(&t2), "a token is in the log:\n{log}");
    assert!(log.contains("signed in"), "{log}");
}

async fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = Command::new(BIN).args(args).stdin(Stdio::null()).output();
    tokio::time::timeout(WAIT, out).await.unwrap().unwrap()
}

#[cfg(unix)]
#[tokio::test]
async fn add_user_creates_0640_and_keeps_the_mode_and_owner_of_an_existing_file() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    token_of(&add_user(&file, "1", "wang1").await);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640, "a new users file is 0640");

    // As root, the file is given to another owner and group first (as the package's
    // root:talkbell-relay); otherwise it keeps ours.
    let me = meta.uid();
    let (uid, gid) = if me == 0 { (4242, 4343) } else { (meta.uid(), meta.gid()) };
    if me == 0 {
        std::os::unix::fs::chown(&file, Some(uid), Some(gid)).unwrap();
    }
    for mode in [0o600, 0o640] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let id = format!("{mode:o}");
        token_of(&add_user(&file, &id, "someone").await);
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "the mode is kept");
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "the owner and group are kept");
    }
    assert_eq!(Users::load(&file).unwrap().len(), 3);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
}

#[tokio::test]
async fn remove_user_and_rotate_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    let t1 = token_of(&add_user(&file, "1", "wang1").await);
    let t2 = token_of(&add_user(&file, "2", "wang2").await);
    let f = file.as_os_str();

    let out = run(&["rotate-token".as_ref(), "--users".as_ref(), f, "--id".as_ref(), "2".as_ref()]).await;
    let t2_new = token_of(&out);
    assert_ne!(t2, t2_new);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&t2_new), "only the hash is kept");
    let users = Users::load(&file).unwrap();
    assert!(users.authenticate(&t2).is_none(), "the old token is refused");
    assert_eq!(users.authenticate(&t2_new).unwrap().name, "wang2");

    let out = run(&["remove-user".as_ref(), "--users".as_ref(), f, "--id".as_ref(), "1".as_ref()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let users = Users::load(&file).unwrap();
    assert!(users.authenticate(&t1).is_none());
    assert_eq!(users.len(), 1);

    for cmd in ["remove-user", "rotate-token"] {
        let before = std::fs::read_to_string(&file).unwrap();
        let out = run(&[cmd.as_ref(), "--users".as_ref(), f, "--id".as_ref(), "9".as_ref()]).await;
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "no token for an unknown id");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("there is no user with id 9"), "{cmd}: {err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), before, "the file is left alone");
    }
    let missing = dir.path().join("missing.toml");
    let out =
        run(&["remove-user".as_ref(), "--users".as_ref(), missing.as_os_str(), "--id".as_ref(), "1".as_ref()]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"), "{out:?}");
}

#[tokio::test]
async fn serve_reads_a_config_file_and_a_flag_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    let token = token_of(&add_user(&users, "1", "wang1").await);
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        "# relative paths are the config file's\nlisten = \"127.0.0.1:0\"\nusers = \"users.toml\"\ndb = \"queue.db\"\n\
         heartbeat_interval_ms = 1000\nheartbeat_timeout_ms = 7000\n",
    )
    .unwrap();
    let served = support::child::Served::start([
        "--config".as_ref(),
        config.as_os_str(),
        "--heartbeat-interval-ms".as_ref(),
        "25000".as_ref(),
    ])
    .await;
    let mut ws = connect(&served.url).await;
    send_text(&mut ws, hello_text(&token, "dev", None)).await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["heartbeat"]["interval_ms"], 25000, "the flag wins: {welcome}");
    assert_eq!(welcome["heartbeat"]["timeout_ms"], 7000, "the file fills in: {welcome}");
    assert!(dir.path().join("queue.db").exists(), "db is taken from the config file's directory");
    served.stop().await;
}

#[tokio::test]
async fn serve_refuses_a_config_with_an_unknown_key_or_no_users() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "users = \"users.toml\"\n\nlisten_address = \"127.0.0.1:0\"\n").unwrap();
    let out = run(&["serve".as_ref(), "--config".as_ref(), config.as_os_str()]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [config.display().to_string().as_str(), "line 3", "unknown field", "listen_address"] {
        assert!(err.contains(want), "{want:?} missing in: {err}");
    }

    let out = run(&["serve".as_ref(), "--listen".as_ref(), "127.0.0.1:0".as_ref()]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--users"), "{err}");
}
