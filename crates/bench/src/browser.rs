//! The baseline: the original browser client (`bench/baseline.html`) in headless Chromium.
//!
//! The page is what users had before Talkbell: a WebSocket with a hello, `online` after 5 s
//! of silence, a close when that goes unanswered for 5 s, a reconnect 5 s later, and an
//! `alert` for a talk to the user. Here the alert is replaced by a record — the time the
//! handler ran (µs since the Unix epoch, from `performance.timeOrigin + performance.now()`)
//! and the talk — which the page POSTs in batches to a small HTTP collector (axum) this
//! module runs on 127.0.0.1 (an ephemeral port). The page also reports each time its socket opens, and
//! the first frame the server sends on it, so [`Baseline::start`] returns once it is
//! connected — and, with a server that answers the hello (the relay's welcome), once the
//! server has taken it, so that talks posted right after start reach the page.
//!
//! Chromium is Debian's `chromium` (`/usr/bin/chromium`, or `$TALKBELL_CHROMIUM`), started
//! in its own process group with a fresh profile; [`Baseline::stop`] and `Drop` kill the
//! whole group.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderName, Method, StatusCode};
use talkbell_testkit::child::{Log, Spawned};
use talkbell_testkit::procfs::{self, family, group_members};
use talkbell_testkit::wait::Poll;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The Chromium flags, besides `--user-data-dir=<fresh temp dir>` and the page's URL: the
/// page's timers at full speed (a background page nobody looks at), and never the desktop
/// session's keyring.
pub const CHROMIUM_FLAGS: &str = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --no-default-browser-check --disable-background-networking --disable-component-update --disable-sync \
    --disable-extensions --disable-background-timer-throttling --disable-renderer-backgrounding \
    --disable-backgrounding-occluded-windows --password-store=basic --mute-audio";

/// How long Chromium gets to start and open the page's WebSocket.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// After the socket opens, how long start waits for the server's first frame (a welcome).
/// A server that sends nothing until a talk costs start this much.
const FIRST_FRAME_WAIT: Duration = Duration::from_secs(2);

/// The largest request the collector takes (a batch of records).
const MAX_BODY: usize = 256 << 20;

/// A running headless Chromium on `bench/baseline.html`, and the collector of its records.
pub struct Baseline {
    /// The browser process; it leads the process group of every Chromium process.
    child: Option<Spawned>,
    pid: u32,
    collector: Arc<Collector>,
    server: JoinHandle<()>,
    /// The fresh `--user-data-dir`, removed once Chromium is gone.
    profile: Option<tempfile::TempDir>,
}

struct Collector {
    records: Mutex<Vec<(u64, String)>>,
    /// How many times the page's WebSocket has opened.
    opens: watch::Sender<u64>,
    /// How many connections have had a first frame from the server.
    frames: watch::Sender<u64>,
    /// How many times it has closed (each is followed by a reconnect 5 s later).
    closes: AtomicU64,
}

impl Collector {
    fn new() -> (Arc<Collector>, watch::Receiver<u64>, watch::Receiver<u64>) {
        let ((opens, opened), (frames, heard)) = (watch::channel(0), watch::channel(0));
        (Arc::new(Collector { records: Mutex::default(), opens, frames, closes: AtomicU64::new(0) }), opened, heard)
    }
}

impl Baseline {
    /// Starts headless Chromium (its own fresh --user-data-dir) on bench/baseline.html against
    /// `ws_url`, signed in as `user_id` with `token`; returns once the page's WebSocket is open.
    pub async fn start(ws_url: &str, token: &str, user_id: u64) -> anyhow::Result<Baseline> {
        let began = Instant::now();
        let page = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../bench/baseline.html")
            .canonicalize()
            .context("finding bench/baseline.html")?;
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the baseline's collector")?;
        let port = listener.local_addr()?.port();
        let (collector, opened, mut heard) = Collector::new();
        let server = tokio::spawn(serve(listener, collector.clone()));
        let profile = tempfile::Builder::new().prefix("talkbell-baseline-").tempdir().context("Chromium's profile")?;
        let (user, collector_url) = (user_id.to_string(), format!("http://127.0.0.1:{port}/"));
        let url = page_url(&page, &[("ws", ws_url), ("token", token), ("user", &user), ("collector", &collector_url)])?;
        let child = spawn_chromium(url.as_str(), profile.path())?;
        let pid = child.pid;
        let mut baseline = Baseline { child: Some(child), pid, collector, server, profile: Some(profile) };
        baseline.wait_open(opened, ws_url).await?;
        let opened_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        if tokio::time::timeout(FIRST_FRAME_WAIT, heard.wait_for(|n| *n > 0)).await.is_err() {
            let secs = FIRST_FRAME_WAIT.as_secs();
            tracing::warn!("the baseline page heard nothing from {ws_url} within {secs}s of connecting");
        }
        let elapsed_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(pid, collector_port = port, opened_ms, elapsed_ms, "baseline page connected");
        Ok(baseline)
    }

    /// Waits for the page's first "open", watching that Chromium is still there.
    async fn wait_open(&mut self, mut opened: watch::Receiver<u64>, ws_url: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let log = self.child.as_ref().map(|c| c.log.clone()).unwrap_or_default();
        while *opened.borrow_and_update() == 0 {
            if let Some(status) = self.child.as_mut().and_then(Spawned::exited) {
                end(self.child.take(), self.pid);
                bail!("chromium exited ({status}) before the page connected; its log ends:\n{}", log_tail(&log));
            }
            if tokio::time::Instant::now() >= deadline {
                let tail = log_tail(&log);
                let loaded = match self.collector.closes.load(Ordering::Relaxed) {
                    0 => "the page never reported".to_owned(),
                    closes => format!("the page ran and saw its socket fail {closes} times"),
                };
                let secs = START_TIMEOUT.as_secs();
                bail!("the baseline page did not connect to {ws_url} within {secs}s ({loaded}); chromium's log ends:\n{tail}");
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), opened.changed()).await;
        }
        Ok(())
    }

    /// Every process of this Chromium instance (for PSS / CPU / wake-ups): the browser
    /// process and all its descendants.
    pub fn pids(&self) -> Vec<u32> {
        if self.child.is_none() {
            return Vec::new();
        }
        family(self.pid, true)
    }

    /// (unix_time_us when the page's talk handler ran, talk text) for each talk for its user so far.
    pub fn records(&self) -> Vec<(u64, String)> {
        self.collector.records.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub async fn stop(mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        let pid = self.pid;
        // Kill, reap the browser process, then wait until no process of the group is left
        // before the profile directory goes.
        let _ = tokio::task::spawn_blocking(move || end(Some(child), pid)).await;
        let gone = || group_members(pid).is_empty().then_some(());
        Poll::up_to(Duration::from_secs(5)).every(Duration::from_millis(20)).check_async(gone).await;
        self.server.abort();
        if let Some(profile) = self.profile.take() {
            let _ = tokio::task::spawn_blocking(move || drop(profile)).await;
        }
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            end(Some(child), self.pid);
            // Give the rest of the group a moment to go before the profile is removed.
            let gone = || group_members(self.pid).is_empty().then_some(());
            Poll::up_to(Duration::from_secs(2)).every(Duration::from_millis(10)).check(gone);
        }
        self.server.abort();
    }
}

/// SIGKILL to the browser process and its descendants (reaped), then to what is left of
/// its process group.
fn end(child: Option<Spawned>, pgid: u32) {
    drop(child);
    let _ = procfs::signal_group(pgid, libc::SIGKILL);
}

/// Chromium on `url` in a process group of its own, its profile, cache and log in `dir`.
fn spawn_chromium(url: &str, dir: &Path) -> anyhow::Result<Spawned> {
    let chromium =
        std::env::var_os("TALKBELL_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.exists() {
        bail!("{} not found: install Debian's chromium (scripts/install-deps.sh bench)", chromium.display());
    }
    let mut cmd = Command::new(&chromium);
    cmd.args(CHROMIUM_FLAGS.split_whitespace())
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--disk-cache-dir={}", dir.join("cache").display()))
        .arg(url)
        .process_group(0);
    Ok(Spawned::spawn(&mut cmd, "chromium", Some(&dir.join("chromium.log")))?)
}

/// The `file://` URL of `page` with the query `pairs`, as the page's URLSearchParams reads them.
fn page_url(page: &Path, pairs: &[(&str, &str)]) -> anyhow::Result<url::Url> {
    let mut url = url::Url::from_file_path(page).map_err(|()| anyhow!("{} is not absolute", page.display()))?;
    url.query_pairs_mut().extend_pairs(pairs);
    Ok(url)
}

/// The last lines of Chromium's log, less its D-Bus complaints (there is no system bus).
fn log_tail(log: &Log) -> String {
    let lines: Vec<String> = log.lines().into_iter().filter(|l| !l.contains(":ERROR:dbus/")).collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

// ---- the collector -----------------------------------------------------------------------

/// Serves the page's POSTs (and their CORS preflights) until aborted; every answer is 204.
async fn serve(listener: TcpListener, collector: Arc<Collector>) {
    let cors = [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS"),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, "*"),
        (HeaderName::from_static("access-control-allow-private-network"), "true"),
    ];
    let app = axum::Router::new()
        .fallback(move |State(c): State<Arc<Collector>>, method: Method, body: Bytes| async move {
            if method == Method::POST {
                c.take(&body);
            }
            (StatusCode::NO_CONTENT, cors)
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(collector);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("baseline collector: {e}");
    }
}

/// A POST from the page: a batch of records (µs, talk), or an event: `open`, `frame` (the
/// first from the server on this connection) or `close` (with its code).
#[derive(serde::Deserialize)]
struct Post {
    #[serde(default)]
    records: Vec<(f64, String)>,
    event: Option<String>,
    #[serde(default)]
    code: u64,
}

impl Collector {
    fn take(&self, body: &[u8]) {
        let post: Post = match serde_json::from_slice(body) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("baseline collector: a body that is neither records nor an event: {e}");
                return;
            }
        };
        let records = post.records.into_iter().filter_map(|(us, talk)| Some((crate::stats::to_u64(us)?, talk)));
        self.records.lock().unwrap_or_else(|e| e.into_inner()).extend(records);
        match post.event.as_deref() {
            Some("open") => {
                self.opens.send_modify(|n| *n += 1);
                tracing::debug!("baseline page: WebSocket open");
            }
            Some("frame") => self.frames.send_modify(|n| *n += 1),
            Some("close") => {
                self.closes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(code = post.code, "baseline page: WebSocket closed; it reconnects in 5 s");
            }
            Some(other) => tracing::debug!("baseline page: event {other}"),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_gets_its_parameters_back() {
        let pairs = [("ws", "ws://127.0.0.1:1/?x=1&y"), ("token", "a+b/c= d")];
        let url = page_url(Path::new("/a b/c.html"), &pairs).unwrap();
        assert!(url.as_str().starts_with("file:///a%20b/c.html?ws=ws%3A%2F%2F127.0.0.1"), "{url}");
        let back: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
        assert_eq!(back, pairs.map(|(k, v)| (k.to_owned(), v.to_owned())));
    }

    #[tokio::test]
    async fn collector_takes_batches_over_keep_alive() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (collector, mut opened, mut heard) = Collector::new();
        let server = tokio::spawn(serve(listener, collector.clone()));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let b1 = r#"{"event":"open"}"#;
        let b2 = r#"{"records":[[1700000000000123,"hi"],[1700000000000456,"你好\n"]]}"#;
        let b3 = r#"{"event":"frame"}"#;
        let req = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{b1}\
             POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{b2}\
             OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n\
             POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{b3}",
            b1.len(),
            b2.len(),
            b3.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        while got.windows(12).filter(|w| w == b"HTTP/1.1 204").count() < 4 {
            let mut c = [0u8; 1024];
            let n = s.read(&mut c).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&c[..n]);
        }
        heard.wait_for(|n| *n == 1).await.unwrap();
        let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
        assert!(head.contains("access-control-allow-origin: *"), "{head}");
        assert!(head.contains("access-control-allow-private-network: true"), "{head}");
        opened.changed().await.unwrap();
        assert_eq!(*opened.borrow(), 1);
        assert_eq!(
            collector.records.lock().unwrap().clone(),
            vec![(1700000000000123, "hi".to_string()), (1700000000000456, "你好\n".to_string())]
        );
        server.abort();
    }
}
