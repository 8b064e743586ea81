//! Delivery under faults (issue 4), with the real relay binary and the real `talkbell
//! daemon`: a soak with the relay SIGKILLed and the daemon restarted over and over, a
//! relay frozen with SIGSTOP, and a replay of 500 talks after a gap on a real notification
//! daemon (dunst). Run inside scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst):
//!
//!   bash scripts/desktop-session.sh cargo test --test delivery_faults -- --include-ignored --nocapture
//!
//! The tests run one at a time (they share dunst, and the soak loads the machine).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use talkbell_testkit::logtime::line_time;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Unlimited enough: the soak and the replay post far faster than the default 20/s.
const NO_HTTP_LIMIT: &[&str] = &["--http-rate", "1000000", "--http-burst", "1000000"];

fn login(app: &App, relay: &Relay) {
    let out = app.login(&relay.url(), relay.token(1), &[]);
    assert!(out.status.success(), "login failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A marker unique to this run, so that texts never match another test's.
fn marker() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}-{nanos:x}", std::process::id())
}

/// The daemon's session state lines: (time, connected?).
fn state_changes(log: &Log) -> Vec<(SystemTime, bool)> {
    log.lines()
        .iter()
        .filter(|l| l.contains(" session state="))
        .filter_map(|l| Some((line_time(l)?, l.contains("state=\"connected\""))))
        .collect()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------
// 1. Soak
// ---------------------------------------------------------------------------------------

const SOAK_RELAY_RESTARTS: usize = 24;
/// Cycles (1-based) after which the daemon is restarted, and how.
const SOAK_DAEMON_RESTARTS: &[(usize, DaemonRestart)] = &[
    (5, DaemonRestart::KillWhileRelayUp),
    (10, DaemonRestart::TermAcrossRelayRestart),
    (15, DaemonRestart::TermWhileRelayUp),
    (20, DaemonRestart::KillAcrossRelayRestart),
];
// What issue 4 asks for, at least.
const _: () = assert!(SOAK_RELAY_RESTARTS >= 20 && SOAK_DAEMON_RESTARTS.len() >= 3);
const SOAK_SENDERS: [u64; 2] = [2, 3];
/// Each sender keeps going until the faults are over and it has this many accepted.
const SOAK_MIN_ACCEPTED_PER_SENDER: usize = 1_000;
/// One POST per this long per sender, so that the talks spread over all the faults.
const SOAK_PACE: Duration = Duration::from_millis(25);

#[derive(Clone, Copy, Debug, PartialEq)]
enum DaemonRestart {
    /// SIGKILL mid-traffic; the relay queues meanwhile and replays on resume.
    KillWhileRelayUp,
    /// SIGTERM mid-traffic; the relay queues meanwhile and replays on resume.
    TermWhileRelayUp,
    /// SIGTERM, then the relay dies too; the daemon comes back first, to a dead relay.
    TermAcrossRelayRestart,
    /// SIGKILL, then the relay dies too; the daemon comes back first, to a dead relay.
    KillAcrossRelayRestart,
}

/// What one sender did.
#[derive(Default)]
struct Sent {
    sender: u64,
    /// How many POSTs it made (talks 1..=sent).
    sent: usize,
    /// Talk number → the seq of its 2xx answer.
    accepted: BTreeMap<usize, u64>,
    /// No connection: the relay was down.
    refused: usize,
    /// Connected but no complete answer: the relay died meanwhile.
    cut_off: Vec<usize>,
    /// Complete non-2xx answers (none expected).
    other: Vec<(usize, String)>,
}

fn soak_text(marker: &str, sender: u64, n: usize) -> String {
    format!("soak {marker} from {sender} #{n:05}")
}

/// (sender, number) of a soak text of this run.
fn parse_soak_text(marker: &str, text: &str) -> Option<(u64, usize)> {
    let rest = text.strip_prefix(&format!("soak {marker} from "))?;
    let (sender, n) = rest.split_once(" #")?;
    Some((sender.parse().ok()?, n.parse().ok()?))
}

fn spawn_sender(
    port: u16,
    token: String,
    sender: u64,
    marker: String,
    done: Arc<AtomicBool>,
) -> thread::JoinHandle<Sent> {
    thread::spawn(move || {
        let mut s = Sent { sender, ..Sent::default() };
        let started = Instant::now();
        while !(done.load(Ordering::SeqCst) && s.accepted.len() >= SOAK_MIN_ACCEPTED_PER_SENDER) {
            s.sent += 1;
            let n = s.sent;
            match post_talk(port, &token, 1, &soak_text(&marker, sender, n)) {
                Ok(seq) => {
                    s.accepted.insert(n, seq);
                }
                Err(PostError::Connect(_)) => s.refused += 1,
                Err(PostError::CutOff(_)) => s.cut_off.push(n),
                Err(PostError::Status(code, body)) => s.other.push((n, format!("{code} {body}"))),
            }
            let next = started + SOAK_PACE * n as u32;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        s
    })
}

/// A small deterministic generator for the fault schedule (same schedule every run).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn soak_every_accepted_talk_is_stored_exactly_once_in_order_across_relay_kills_and_daemon_restarts() {
    require_desktop_session();
    let _serial = serial();
    let began = Instant::now();
    let mut relay = Relay::start_with(NO_HTTP_LIMIT);
    let app = App::new();
    login(&app, &relay);
    // Quick heartbeats and reconnects, so that the faults come and go fast.
    app.edit_config(|c| {
        c.heartbeat.interval_ms = 1_000;
        c.heartbeat.timeout_ms = 2_000;
        c.connection.connect_timeout_ms = 3_000;
        c.connection.backoff_min_ms = 100;
        c.connection.backoff_max_ms = 1_000;
        c.connection.healthy_after_ms = 2_000;
    });
    let mut daemon = app.daemon();
    daemon.wait_connected(1);
    let mut daemon_logs = vec![daemon.log.clone()];
    // (when, what the test did to the daemon): a stopped daemon is disconnected.
    let mut daemon_downs: Vec<SystemTime> = Vec::new();

    let marker = marker();
    let done = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = SOAK_SENDERS
        .iter()
        .map(|&id| spawn_sender(relay.port, relay.token(id).to_owned(), id, marker.clone(), done.clone()))
        .collect();

    let chaos_began = SystemTime::now();
    let mut dice = Dice(0x07a1_be11);
    let (mut relay_restarts, mut daemon_restarts) = (0, Vec::new());
    for cycle in 1..=SOAK_RELAY_RESTARTS {
        let up = Duration::from_millis(800 + dice.below(1_700));
        let down = Duration::from_millis(dice.below(700));
        let plan = SOAK_DAEMON_RESTARTS.iter().find(|(c, _)| *c == cycle).map(|(_, p)| *p);
        let mut stop_daemon = |daemon: &mut Daemon, how: DaemonRestart| {
            daemon_downs.push(SystemTime::now());
            match how {
                DaemonRestart::KillWhileRelayUp | DaemonRestart::KillAcrossRelayRestart => daemon.kill(),
                DaemonRestart::TermWhileRelayUp | DaemonRestart::TermAcrossRelayRestart => daemon.stop(),
            }
            daemon_restarts.push(how);
        };
        match plan {
            Some(how @ (DaemonRestart::KillWhileRelayUp | DaemonRestart::TermWhileRelayUp)) => {
                thread::sleep(up / 2);
                stop_daemon(&mut daemon, how);
                thread::sleep(up / 2);
                daemon = app.daemon();
                daemon_logs.push(daemon.log.clone());
                thread::sleep(up / 2);
                relay.kill();
                thread::sleep(down);
                relay.spawn();
            }
            Some(how) => {
                thread::sleep(up);
                stop_daemon(&mut daemon, how);
                relay.kill();
                thread::sleep(down / 2);
                daemon = app.daemon();
                daemon_logs.push(daemon.log.clone());
                thread::sleep(down / 2 + Duration::from_millis(300));
                relay.spawn();
            }
            None => {
                thread::sleep(up);
                relay.kill();
                thread::sleep(down);
                relay.spawn();
            }
        }
        relay_restarts += 1;
    }
    let chaos_took = chaos_began.elapsed().unwrap_or_default();
    done.store(true, Ordering::SeqCst);
    let sent: Vec<Sent> = senders.into_iter().map(|h| h.join().expect("a sender panicked")).collect();

    // Every accepted talk reaches the history.
    let accepted_total: usize = sent.iter().map(|s| s.accepted.len()).sum();
    let missing = || -> (Vec<serde_json::Value>, Vec<(u64, usize)>) {
        let entries = app.history_json(&["--limit", "1000000"]);
        let have: HashSet<(u64, usize)> =
            entries.iter().filter_map(|e| parse_soak_text(&marker, e["talk"].as_str()?)).collect();
        let missing = sent
            .iter()
            .flat_map(|s| s.accepted.keys().map(move |n| (s.sender, *n)))
            .filter(|k| !have.contains(k))
            .collect();
        (entries, missing)
    };
    let Some(all_in) = Poll::up_to(Duration::from_secs(90)).check(|| {
        let (entries, missing) = missing();
        missing.is_empty().then_some(entries)
    }) else {
        let (entries, missing) = missing();
        panic!(
            "accepted talks never reached the history: {} of {accepted_total} missing (history has {}); \
             first missing (sender, number): {:?}",
            missing.len(),
            entries.len(),
            &missing[..missing.len().min(20)]
        );
    };
    let settled = daemon.log.clone();
    Poll::up_to(Duration::from_secs(30)).until("the daemon connected at the end", || {
        state_changes(&settled).last().is_some_and(|(_, up)| *up).then_some(())
    });
    daemon.stop();

    // Exactly once, in order.
    // History is newest first; its ids are the order in which the daemon stored talks.
    let mut rows: Vec<(i64, u64, u64, usize, String)> = Vec::new(); // (id, seq, from, n, text)
    for e in &all_in {
        let text = e["talk"].as_str().unwrap_or_default();
        let (from, n) =
            parse_soak_text(&marker, text).unwrap_or_else(|| panic!("a talk nobody sent in the history: {e}"));
        // A user id is a number or a string on the wire; either way it names the sender.
        let from_id = &e["from"]["id"];
        assert_eq!(from_id.as_str().map_or_else(|| from_id.to_string(), str::to_owned), from.to_string(), "{e}");
        let id = e["id"].as_i64().expect("an id");
        let seq = e["seq"].as_u64().unwrap_or_else(|| panic!("a talk without a seq: {e}"));
        rows.push((id, seq, from, n, text.to_owned()));
    }
    rows.sort_by_key(|r| r.0);
    let mut seen: HashMap<(u64, usize), usize> = HashMap::new();
    for r in &rows {
        *seen.entry((r.2, r.3)).or_default() += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).map(|(k, c)| (*k, *c)).collect();
    assert!(doubled.is_empty(), "talks stored more than once (sender, number) → times: {doubled:?}");
    let mut seqs: Vec<u64> = rows.iter().map(|r| r.1).collect();
    for w in rows.windows(2) {
        assert!(w[0].1 < w[1].1, "stored out of seq order: {:?} then {:?}", w[0], w[1]);
    }
    seqs.dedup();
    assert_eq!(seqs.len(), rows.len(), "a seq stored twice");
    let mut not_accepted_but_stored = 0;
    for s in &sent {
        let mine: Vec<&(i64, u64, u64, usize, String)> = rows.iter().filter(|r| r.2 == s.sender).collect();
        for w in mine.windows(2) {
            assert!(w[0].3 < w[1].3, "sender {} out of order: {:?} then {:?}", s.sender, w[0], w[1]);
        }
        for r in &mine {
            assert!(r.3 >= 1 && r.3 <= s.sent, "sender {} never sent #{}", s.sender, r.3);
            match s.accepted.get(&r.3) {
                Some(seq) => assert_eq!(*seq, r.1, "the history's seq of {} is not the relay's answer", r.4),
                None => {
                    assert!(s.cut_off.contains(&r.3), "{} was refused, yet it is stored", r.4);
                    not_accepted_but_stored += 1;
                }
            }
        }
        assert!(
            s.other.is_empty(),
            "sender {}: answers that are neither 2xx nor a dead relay: {:?}",
            s.sender,
            s.other
        );
    }
    let sent_total: usize = sent.iter().map(|s| s.sent).sum();
    assert!(sent_total >= 2_000 && accepted_total >= 2_000, "sent {sent_total}, accepted {accepted_total}");

    // Figures.
    let mut changes: Vec<(SystemTime, bool)> = daemon_logs.iter().flat_map(state_changes).collect();
    changes.extend(daemon_downs.iter().map(|t| (*t, false)));
    changes.sort_by_key(|c| c.0);
    let (mut down_since, mut longest, mut outages) = (None::<SystemTime>, Duration::ZERO, 0);
    for (t, up) in changes.into_iter().filter(|(t, _)| *t >= chaos_began) {
        match (up, down_since) {
            (false, None) => down_since = Some(t),
            (true, Some(since)) => {
                longest = longest.max(t.duration_since(since).unwrap_or_default());
                outages += 1;
                down_since = None;
            }
            _ => {}
        }
    }
    let connects: usize = daemon_logs.iter().map(|l| l.count("state=\"connected\"")).sum();
    let relay_lines = relay.log.lines();
    let replays: Vec<u64> = relay_lines
        .iter()
        .filter(|l| l.contains(" replayed"))
        .filter_map(|l| l.split("talks=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    let cut_off_total: usize = sent.iter().map(|s| s.cut_off.len()).sum();
    let refused_total: usize = sent.iter().map(|s| s.refused).sum();
    eprintln!("soak figures:");
    for s in &sent {
        eprintln!(
            "  sender {}: sent {}, accepted {}, refused (relay down) {}, cut off (relay died mid-request) {}",
            s.sender,
            s.sent,
            s.accepted.len(),
            s.refused,
            s.cut_off.len()
        );
    }
    eprintln!("  talks sent: {sent_total}; accepted (2xx): {accepted_total}; refused: {refused_total}; cut off: {cut_off_total}");
    eprintln!(
        "  stored in the history: {} (every accepted one exactly once; {not_accepted_but_stored} more were cut off after the relay had committed them)",
        rows.len()
    );
    let dropped: u64 = daemon_logs
        .iter()
        .flat_map(|l| l.lines())
        .filter(|l| l.contains("talks already stored, dropped"))
        .filter_map(|l| l.split("dropped=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    eprintln!("  duplicates in the history: 0; duplicates the daemon received and dropped: {dropped}");
    eprintln!(
        "  relay replays on resume: {} ({} talks); daemon connects: {connects}",
        replays.len(),
        replays.iter().sum::<u64>()
    );
    eprintln!(
        "  relay restarts (SIGKILL): {relay_restarts}; daemon restarts: {} {daemon_restarts:?}",
        daemon_restarts.len()
    );
    eprintln!("  outages: {outages}; longest time disconnected: {}", secs(longest));
    eprintln!("  faults took {}; the whole test {}", secs(chaos_took), secs(began.elapsed()));
    // Talks accepted while the daemon was down can only have come by a replay: so the
    // exactly-once above held through the replay path, not around it.
    assert!(replays.iter().sum::<u64>() > 0, "no talk was replayed on resume: the faults missed the replay path");
}

// ---------------------------------------------------------------------------------------
// 2. SIGSTOP
// ---------------------------------------------------------------------------------------

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn a_frozen_relay_is_declared_dead_within_interval_plus_timeout_and_the_link_comes_back_after_sigcont() {
    require_desktop_session();
    let _serial = serial();
    let began = Instant::now();
    let relay = Relay::start();
    let app = App::new();
    login(&app, &relay);
    // The slack is for a loaded machine's scheduling only; the benchmark (docs/
    // BENCHMARKS.md, 4) measures the detection time itself.
    let (interval, timeout) = (Duration::from_secs(2), Duration::from_secs(2));
    let slack = Duration::from_secs(2);
    app.edit_config(|c| {
        c.heartbeat.interval_ms = interval.as_millis() as u64;
        c.heartbeat.timeout_ms = timeout.as_millis() as u64;
        c.connection.connect_timeout_ms = 2_000;
        c.connection.backoff_min_ms = 200;
        c.connection.backoff_max_ms = 1_000;
    });
    let mut daemon = app.daemon();
    daemon.wait_connected(1);
    let marker = marker();
    let before = format!("before the freeze {marker}");
    relay.send(2, 1, &before);
    Poll::up_to(PATIENCE).until("the talk before the freeze", || app.history_texts().contains(&before).then_some(()));
    // A live relay answers every heartbeat: several intervals pass and the link stays up,
    // so what follows is the freeze's doing, not the heartbeat's.
    thread::sleep(2 * (interval + timeout));
    assert_eq!(daemon.log.count("link dead"), 0, "a live link was declared dead:\n{}", daemon.log.text());
    assert_eq!(daemon.log.count("state=\"connected\""), 1, "{}", daemon.log.text());
    let offline_before = daemon.log.count("state=\"offline\"");

    let frozen_at = SystemTime::now();
    relay.freeze();
    let bound = interval + timeout + slack;
    let dead_line = Poll::up_to(bound)
        .until("the frozen link declared dead", || daemon.log.lines().into_iter().find(|l| l.contains("link dead")));
    let dead_at = line_time(&dead_line).unwrap_or_else(|| panic!("no time stamp on {dead_line:?}"));
    let detected_in =
        dead_at.duration_since(frozen_at).unwrap_or_else(|_| panic!("declared dead before the freeze: {dead_line}"));
    assert!(detected_in <= bound, "declared dead {detected_in:?} after the freeze, bound {bound:?}");
    // While frozen, the kernel still completes TCP handshakes on the relay's port, but no
    // WebSocket handshake is answered: attempts fail, and nothing is called connected.
    Poll::up_to(PATIENCE).until("a failed reconnect attempt to the frozen relay", || {
        (daemon.log.count("state=\"offline\"") >= offline_before + 2).then_some(())
    });
    assert_eq!(daemon.log.count("state=\"connected\""), 1, "connected to a frozen relay:\n{}", daemon.log.text());

    let thawed_at = SystemTime::now();
    relay.thaw();
    daemon.wait_connected(2);
    let back_at = state_changes(&daemon.log)
        .into_iter()
        .filter(|(_, up)| *up)
        .nth(1)
        .map(|(t, _)| t)
        .expect("a second connected line");
    let after = format!("after the thaw {marker}");
    relay.send(2, 1, &after);
    Poll::up_to(PATIENCE).until("the talk after the thaw", || app.history_texts().contains(&after).then_some(()));
    assert_eq!(app.history_texts(), [after.clone(), before.clone()]);
    daemon.stop();
    eprintln!(
        "sigstop: heartbeat {interval:?} + {timeout:?}; declared dead {} after SIGSTOP (bound {}); connected again {} after SIGCONT; test took {}",
        secs(detected_in),
        secs(bound),
        secs(back_at.duration_since(thawed_at).unwrap_or_default()),
        secs(began.elapsed())
    );
}

// ---------------------------------------------------------------------------------------
// 3. Replay after a gap
// ---------------------------------------------------------------------------------------

#[test]
#[ignore = "needs scripts/desktop-session.sh (D-Bus, gnome-keyring, dunst)"]
fn a_replay_of_500_talks_after_a_gap_is_one_summary_popup_not_500() {
    require_desktop_session();
    let _serial = serial();
    let began = Instant::now();
    let relay = Relay::start_with(NO_HTTP_LIMIT);
    let app = App::new();
    login(&app, &relay);
    // The daemon has run once (the relay knows the device), then is stopped.
    let mut daemon = app.daemon();
    daemon.wait_connected(1);
    daemon.stop();
    assert!(app.history_texts().is_empty());

    let marker = marker();
    let texts: Vec<String> = (1..=500).map(|i| format!("missed {i:03} {marker}")).collect();
    let mut seqs = Vec::new();
    for t in &texts {
        seqs.push(relay.post(2, 1, t).unwrap_or_else(|e| panic!("POST {t:?}: {e:?}")));
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "seqs not consecutive: {seqs:?}");

    // Whatever is still on screen goes to dunst's history; every later popup has a
    // larger id.
    dunst_close_all();
    let baseline = dunst_popups().last().map_or(0, |p| p.id);
    let new_popups = || -> Vec<Popup> {
        dunst_close_all();
        dunst_popups().into_iter().filter(|p| p.id > baseline).collect()
    };

    let started = Instant::now();
    let mut daemon = app.daemon();
    daemon.wait_connected(1);
    let Some(entries) = Poll::up_to(Duration::from_secs(60)).check(|| {
        let entries = app.history_json(&["--limit", "100000"]);
        (entries.len() >= 500).then_some(entries)
    }) else {
        panic!(
            "the replay never completed: {} of 500 talks in the history\n{}",
            app.history_texts().len(),
            daemon.log.text()
        );
    };
    let stored_in = started.elapsed();
    // Exactly once, in order (the history is newest first).
    let stored: Vec<(String, u64)> = entries
        .iter()
        .rev()
        .map(|e| (e["talk"].as_str().unwrap_or_default().to_owned(), e["seq"].as_u64().unwrap_or_default()))
        .collect();
    let expected: Vec<(String, u64)> = texts.iter().cloned().zip(seqs.iter().copied()).collect();
    assert_eq!(stored, expected);

    let summary = "500 new messages from wang2";
    Poll::up_to(PATIENCE).until("the summary popup", || new_popups().iter().any(|p| p.body == summary).then_some(()));
    let summary_in = started.elapsed();
    // A live talk after the catch-up: the notifier handles talks in order, so once its
    // popup is there, every popup the replay could have raised is there too.
    let after = format!("after the catch-up {marker}");
    relay.post(2, 1, &after).unwrap_or_else(|e| panic!("POST: {e:?}"));
    Poll::up_to(PATIENCE).until("the popup of the talk after the catch-up", || {
        new_popups().iter().any(|p| p.body == after).then_some(())
    });
    let shown: Vec<(String, String)> = new_popups().into_iter().map(|p| (p.summary, p.body)).collect();
    assert_eq!(
        shown,
        [("New messages".to_owned(), summary.to_owned()), ("wang2".to_owned(), after.clone())],
        "one summary for the replay, then the live talk"
    );
    assert_eq!(app.history_texts().len(), 501);
    daemon.stop();
    eprintln!(
        "replay: 500 talks stored {} after the daemon started; summary popup by {}; popups for the replay: 1; test took {}",
        secs(stored_in),
        secs(summary_in),
        secs(began.elapsed())
    );
}
