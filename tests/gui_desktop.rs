//! The tray app on a real desktop, driven as a user drives it: Xvfb with a window manager
//! (openbox) and a plain XEmbed tray (trayer), a private D-Bus session with gnome-keyring
//! and dunst (scripts/desktop-session.sh), the real relay, and the real `talkbell` window
//! driven over WebDriver (tauri-driver → WebKitWebDriver). Screenshots of the window, the
//! tray and a popup go to docs/screenshots/ (the README shows them).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};

// ---- the desktop around the app ------------------------------------------------------

/// A helper process that is ended with the test.
struct Helper(Child);

impl Helper {
    fn start(cmd: &mut Command) -> Helper {
        let program = format!("{:?}", cmd.get_program());
        Helper(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| panic!("{program}: {e}")))
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn window_manager_and_tray() -> (Helper, Helper) {
    let wm = Helper::start(&mut Command::new("openbox"));
    eventually("openbox to manage the screen", || run_ok("wmctrl", &["-m"]).then_some(()));
    let tray = Helper::start(Command::new("trayer").args([
        "--edge", "bottom", "--align", "right", "--widthtype", "pixel", "--width", "120", "--heighttype",
        "pixel", "--height", "32", "--SetDockType", "true", "--tint", "0x303030", "--transparent", "true",
        "--alpha", "0",
    ]));
    eventually("trayer's panel", || x_window(r#"("panel" "trayer")"#));
    (wm, tray)
}

fn run_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// `xwininfo -root -tree`, one line a window, indented by depth.
fn x_tree() -> Vec<String> {
    let out = Command::new("xwininfo").args(["-root", "-tree"]).output().expect("xwininfo");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// The absolute geometry (w, h, x, y) of the first window whose line contains `needle`.
fn x_window(needle: &str) -> Option<(u32, u32, i32, i32)> {
    let line = x_tree().into_iter().find(|l| l.contains(needle))?;
    // "...  32x30+0+0  +1246+769"
    let mut fields = line.split_whitespace().rev();
    let abs = fields.next()?;
    let rel = fields.next()?;
    let (w, h) = rel.split_once('+')?.0.split_once('x')?;
    let abs = abs.strip_prefix('+').unwrap_or(abs);
    let (x, y) = abs.split_once('+').or_else(|| abs.split_once('-'))?;
    Some((w.parse().ok()?, h.parse().ok()?, x.parse().ok()?, y.parse().ok()?))
}

/// The app's tray icon, embedded in trayer's panel (a child window of it, not a window of
/// its own on the screen).
fn tray_icon() -> Option<(u32, u32, i32, i32)> {
    let tree = x_tree();
    let depth = |l: &str| l.len() - l.trim_start().len();
    let panel = tree.iter().position(|l| l.contains(r#"("panel" "trayer")"#))?;
    let panel_depth = depth(&tree[panel]);
    let icon = tree[panel + 1..]
        .iter()
        .take_while(|l| depth(l) > panel_depth)
        .find(|l| l.contains("tray-icon tray app"))?;
    x_window(icon.trim())
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A part of the screen (all of it without `area`), as a PNG, through ImageMagick's `import`.
fn screen_shot(name: &str, area: Option<(u32, u32, i32, i32)>, scale: Option<u32>) -> PathBuf {
    let path = screenshots_dir().join(name);
    let mut cmd = Command::new("import");
    cmd.args(["-window", "root"]);
    if let Some((w, h, x, y)) = area {
        cmd.args(["-crop", &format!("{w}x{h}+{x}+{y}"), "+repage"]);
    }
    if let Some(percent) = scale {
        cmd.args(["-filter", "point", "-resize", &format!("{percent}%")]);
    }
    let status = cmd.arg(&path).status().expect("import");
    assert!(status.success(), "import {name}");
    assert!(std::fs::metadata(&path).unwrap().len() > 0);
    path
}

/// The talks the window shows, top first, as a screen reader reads them (AT-SPI); None
/// while the app has no window.
fn screen_reader_history(pid: u32) -> Option<Vec<String>> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/common/atspi_texts.py");
    // Debian's python3, which has the AT-SPI bindings (python3-gi).
    let out = Command::new("/usr/bin/python3").arg(script).arg(pid.to_string()).output().expect("python3");
    assert!(out.status.success(), "atspi_texts.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON from atspi_texts.py")
}

fn dunst_displayed() -> u64 {
    let out = Command::new("dunstctl").args(["count", "displayed"]).output().expect("dunstctl");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

fn popups_with(body: &str) -> usize {
    dunst_history().iter().filter(|(_, b)| b.contains(body)).count()
}

// ---- the app and its driver ----------------------------------------------------------

fn tauri_driver_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("tauri-driver")).find(|p| p.exists()));
    on_path.flatten().unwrap_or_else(|| {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
        let bin = cargo_home.join("bin/tauri-driver");
        assert!(bin.exists(), "tauri-driver is not installed: scripts/test.sh installs it");
        bin
    })
}

/// tauri-driver on a port of its own; the app it starts inherits this environment, so it
/// gets the test's config and data dirs.
fn start_driver(app: &App) -> (Helper, u16) {
    let port = free_port();
    let native = free_port();
    let cmd = app.command();
    let mut driver = Command::new(tauri_driver_bin());
    driver.args(["--port", &port.to_string(), "--native-port", &native.to_string()]);
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            driver.env(k, v);
        }
    }
    let helper = Helper::start(&mut driver);
    eventually("tauri-driver to listen", || std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()));
    (helper, port)
}

async fn connect(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), "wry".into());
    caps.insert(
        "tauri:options".into(),
        serde_json::json!({ "application": talkbell_bin(), "args": [] }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with the app")
}

/// The running `talkbell` processes of this test (found by their data dir).
fn app_pids(app: &App) -> Vec<u32> {
    let marker = format!("TALKBELL_DATA_DIR={}", app.data_home().join("talkbell").display());
    let bin = talkbell_bin().canonicalize().unwrap();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let exe = std::fs::read_link(entry.path().join("exe")).ok();
        if exe.as_deref() != Some(bin.as_path()) {
            continue;
        }
        let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// The WebKit processes (web content, network) whose parent is `pid`.
fn webkit_children(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let comm = head.split_once(" (").map_or("", |(_, c)| c);
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) && comm.starts_with("WebKit") {
            found.push(format!("{} {comm}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

/// Polls an async check with the same patience as [`eventually`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(t) = check().await {
            return t;
        }
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

async fn status_text(client: &Client) -> String {
    match client.find(Locator::Id("status-text")).await {
        Ok(el) => el.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn wait_status(client: &Client, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    let started = Instant::now();
    loop {
        let text = status_text(client).await;
        if pred(&text) {
            return text;
        }
        if text != last {
            last = text;
        }
        assert!(started.elapsed() < PATIENCE, "status line never showed {what}; last: {last:?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The history as the window shows it, top first: (sender, text).
async fn shown_history(client: &Client) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for li in client.find_all(Locator::Css("#history li.talk")).await.unwrap_or_default() {
        let from = match li.find(Locator::Css(".from")).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let text = match li.find(Locator::Css(".text")).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        rows.push((from, text));
    }
    rows
}

async fn wait_top_talk(client: &Client, text: &str) {
    until(&format!("{text:?} at the top of the history"), || async {
        let rows = shown_history(client).await;
        (rows.first().map(|(_, t)| t.as_str()) == Some(text)).then_some(())
    })
    .await;
}

// ---- the test ------------------------------------------------------------------------

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst, Xvfb)"]
fn a_user_signs_in_gets_talks_rides_out_an_outage_and_closes_the_window_to_the_tray() {
    require_desktop_session();
    let _desktop = window_manager_and_tray();
    let mut relay = Relay::start();
    let app = App::new();
    let token = relay.token(1).to_owned();
    let (_driver, port) = start_driver(&app);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = connect(port).await;

        // First start: signed out, so the window opens at the sign-in form.
        wait_status(&client, "signed out", |t| t.starts_with("Signed out")).await;
        let server = client.find(Locator::Id("server")).await.unwrap();
        server.clear().await.unwrap();
        server.send_keys(&relay.url()).await.unwrap();
        client.find(Locator::Id("token")).await.unwrap().send_keys(&token).await.unwrap();
        client.find(Locator::Id("sign-in-button")).await.unwrap().click().await.unwrap();
        wait_status(&client, "connected", |t| t.starts_with("Connected as wang1")).await;
        until("the form to say so", || async {
            let el = client.find(Locator::Id("sign-in-result")).await.ok()?;
            (el.text().await.ok()? == "Signed in as user 1.").then_some(())
        })
        .await;
        // The form forgets the token; the keyring has it, no file does.
        let field = client.find(Locator::Id("token")).await.unwrap().prop("value").await.unwrap();
        assert_eq!(field.as_deref(), Some(""));
        assert_eq!(secret_tool_lookup(&relay.url()).as_deref(), Some(token.as_str()));
        assert_eq!(app.files_containing(&token), Vec::<PathBuf>::new(), "the token is in a file");

        // A talk arrives: at the top of the history, and as a popup.
        client.find(Locator::Id("tab-history")).await.unwrap().click().await.unwrap();
        let first = format!("lunch at noon? {}", std::process::id());
        relay.send(2, 1, &first);
        wait_top_talk(&client, &first).await;
        let rows = shown_history(&client).await;
        assert_eq!(rows, [("wang2".to_owned(), first.clone())]);
        // While it is on screen: the whole desktop, the popup, the tray.
        let popup = until("dunst to show the popup", || async {
            (dunst_displayed() > 0).then(|| x_window(r#"("Dunst" "Dunst")"#)).flatten()
        })
        .await;
        screen_shot("desktop.png", None, None);
        screen_shot("popup.png", Some(popup), None);
        let icon = tray_icon().expect("the tray icon in trayer's panel");
        screen_shot("tray.png", Some((icon.0 + 16, icon.1 + 8, icon.2 - 8, icon.3 - 4)), Some(300));

        // A talk for someone else never pops up here; one for us after it does.
        let other = format!("for wang3 only {}", std::process::id());
        relay.send(2, 3, &other);
        let xss = "<img src=x onerror=alert(1)>";
        relay.send(2, 1, xss);
        wait_top_talk(&client, xss).await;
        // Shown as those characters: no element made of it, no alert raised.
        assert!(client.find_all(Locator::Css("#history img")).await.unwrap().is_empty(), "the text became HTML");
        assert!(client.get_alert_text().await.is_err(), "an alert is open");
        let popup_text = &first;
        eventually("the first popup in dunst's history", || (popups_with(popup_text) == 1).then_some(()));
        eventually("the markup talk's popup", || (popups_with("onerror=alert(1)") == 1).then_some(()));
        assert_eq!(popups_with(&other), 0, "a talk for wang3 popped up");
        let window_png = client.screenshot().await.unwrap();
        std::fs::write(screenshots_dir().join("window.png"), &window_png).unwrap();

        // The relay dies: the status line counts down to the next attempt.
        relay.kill();
        let offline = wait_status(&client, "a countdown", |t| t.starts_with("Offline") && t.contains("retrying in")).await;
        let secs: String = offline.rsplit("retrying in ").next().unwrap().chars().take_while(char::is_ascii_digit).collect();
        assert!(!secs.is_empty(), "no number in {offline:?}");
        screen_shot("offline.png", None, None);
        // Back: connected again with nothing done by the user, and talks flow.
        relay.spawn();
        wait_status(&client, "connected again", |t| t.starts_with("Connected as wang1")).await;
        let after = format!("back again {}", std::process::id());
        relay.send(2, 1, &after);
        wait_top_talk(&client, &after).await;
        let before_close = shown_history(&client).await;
        assert_eq!(before_close.len(), 3, "{before_close:?}");

        // Closing the window leaves the app in the tray, with no WebKit process alive.
        // (This also ends the WebDriver session: WebKit counts its network process going
        // as a crash. From here the window is read as a screen reader reads it.)
        let pids = app_pids(&app);
        assert_eq!(pids.len(), 1, "one talkbell process: {pids:?}");
        let pid = pids[0];
        let shown_before = before_close.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>();
        assert_eq!(screen_reader_history(pid), Some(shown_before.clone()), "AT-SPI reads what WebDriver sees");
        assert!(!webkit_children(pid).is_empty(), "the open window has WebKit processes");
        assert!(run_ok("wmctrl", &["-c", "Talkbell"]), "wmctrl could not close the window");
        eventually("no WebKit process once the window is closed", || webkit_children(pid).is_empty().then_some(()));
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "closing the window quit the app");
        assert!(tray_icon().is_some(), "the tray icon went with the window");
        assert_eq!(screen_reader_history(pid), None, "a window is still there");

        // A talk while closed still lands in the history.
        let while_closed = format!("while you were away {}", std::process::id());
        relay.send(2, 1, &while_closed);
        eventually("the talk in the history", || {
            app.history_texts().first().is_some_and(|t| *t == while_closed).then_some(())
        });

        // Opening it again (a second `talkbell` asks the running one): the same history,
        // with the new talk on top.
        let second = app.command().stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        assert!(second.success(), "the second instance failed");
        assert_eq!(app_pids(&app), [pid], "a second instance kept running");
        let mut expected = vec![while_closed.clone()];
        expected.extend(shown_before);
        eventually("the reopened window to show the history", || {
            (screen_reader_history(pid).as_ref() == Some(&expected)).then_some(())
        });
        assert!(!webkit_children(pid).is_empty());
        let _ = client.close().await;
    });
    for pid in app_pids(&app) {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
}
