//! The notification policy, as a task on tokio time.
//!
//! Fed each new stored talk (with whether it is for the signed-in user), the gate decides
//! what reaches the screen:
//! - only talks `for_me` notify (PROTOCOL.md §2.1); title = the sender's name, body = the
//!   text cut to 300 characters with `…` ([`notification_text`], §5);
//! - nothing while paused ([`NotifyHandle::pause`], until [`NotifyHandle::resume`] or the
//!   end of the pause);
//! - bursts: a burst is talks that come less than `burst_window` (2 s) apart; it ends
//!   when that long passes with no talk. It raises at most `burst_count` (3) popups: its
//!   first `burst_count - 1` talks one by one, and everything after them as one popup
//!   when the burst ends ("498 new messages from wang2 and 2 others", or the talk itself
//!   when it is only one). A stream that never pauses shows its summary at the latest
//!   `summary_max_wait` (30 s) after the first talk it collected, then collects again.
//!   So 500 talks at once, or 100,000 over ten seconds, give 2 popups and 1 summary.
//! - catch-up: a talk the server replayed ([`NotifyHandle::replayed`], a
//!   [`SessionEvent::Talk`] with `replay`: its seq is at most the welcome's `last_seq`)
//!   raises no single popup: the replay after a gap, however long it takes, is one popup
//!   once the talks pause (the talk itself when it is only one). A replay of 500 talks is
//!   one summary. The first live talk after it ends the catch-up at once (its summary
//!   first), and follows the burst rule like any live talk. A server that never replays
//!   (no `last_seq`) has no catch-up: every talk is live, from the first second of a link.
//!
//! - quiet hours and mutes ([`Hush`], `quiet.rs`, set with [`NotifyHandle::set_hush`]): a
//!   muted sender's talks never pop up, not even in a summary; talks in quiet hours are
//!   held, and shown as one popup when the quiet hours end (the talk itself when it is
//!   only one; senders muted by then left out). The end is on the wall clock, looked at
//!   at least once a minute, so a suspend over the end delays that popup by a minute at
//!   most. A pause wins over both: what comes while paused is never shown later, and a
//!   quiet-hours popup due during a pause is dropped.
//!
//! What it decided for each talk — a popup, held for a summary, paused, not for the user
//! — is published as a [`Decision`] on a broadcast channel ([`NotifyHandle::decisions`]),
//! the moment it decides (before the popup reaches the screen), for a shell to follow
//! instead of reading the history again.
//!
//! Time is tokio's, so the whole policy runs on the paused clock in tests. A pause also
//! ends when the wall clock passes its end, so one that spans a suspend is not stretched.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use super::quiet::Hush;
#[cfg(test)]
use super::text::TITLE_CHARS;
use super::text::{popup_body, summary, talk_title};
use super::{Notification, NotificationKind, Notifier};
use crate::protocol::{TalkMessage, UserId};
use crate::session::SessionEvent;

/// The gate's settings (config: notification settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifySettings {
    /// The most popups one burst raises (at least 1): the first `burst_count - 1` talks
    /// one by one, then one for the rest.
    pub burst_count: usize,
    /// Talks less than this apart are one burst.
    pub burst_window: Duration,
    /// The longest a summary waits while talks keep coming.
    pub summary_max_wait: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            burst_count: 3,
            burst_window: Duration::from_secs(2),
            summary_max_wait: Duration::from_secs(30),
        }
    }
}

/// What the gate did, for a status line and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyStats {
    /// Popups the notifier accepted (single talks and summaries).
    pub shown: u64,
    /// Of those, summaries.
    pub summaries: u64,
    /// Talks not shown on their own because a summary stood for them.
    pub summarised: u64,
    /// Talks not for the signed-in user (never shown).
    pub not_for_me: u64,
    /// Talks not shown because notifications were paused.
    pub paused: u64,
    /// Talks not shown because their sender is muted.
    pub muted: u64,
    /// Talks held in quiet hours (for the popup when they end).
    pub quiet: u64,
    /// Popups the notifier failed to show.
    pub failed: u64,
    /// The last failure, to show in the status.
    pub last_error: Option<String>,
    /// Whether notifications are paused right now.
    pub is_paused: bool,
}

/// How many decisions wait for a slow subscriber before it lags (and misses the oldest).
pub const DECISIONS_KEPT: usize = 4096;

/// What the gate decided for one talk (see [`Outcome`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The talk's row in the history.
    pub row: i64,
    pub talk: TalkMessage,
    /// Addressed to the signed-in user (so it counts as unread until read).
    pub for_me: bool,
    pub outcome: Outcome,
    /// When the gate decided (the wall clock): what the benchmarks' delivery trace writes.
    pub at: SystemTime,
}

/// What became of a talk's popup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// A popup of its own, handed to the notifier (which may still fail: [`NotifyStats`]).
    Popup,
    /// Folded into the popup that ends its burst or catch-up: a summary, or the talk
    /// itself when it is the only one held. A pause that begins before then drops it.
    Summary,
    /// Not shown: notifications are paused.
    Paused,
    /// Not shown: its sender is muted.
    Muted,
    /// Held for the popup that ends the quiet hours. A pause at that moment drops it.
    Quiet,
    /// Not for the signed-in user: never shown.
    NotForMe,
    /// Not shown: notifications are off, so no gate runs (the engine says so for it).
    Off,
}

enum Command {
    Talk { talk: TalkMessage, row: i64, for_me: bool, replay: bool },
    Pause(Option<Duration>),
    Resume,
    Hush(Box<Hush>),
    Sync(oneshot::Sender<()>),
}

/// Starts the gate.
pub struct NotifyGate;

impl NotifyGate {
    /// Spawns the gate's task on the current tokio runtime. It runs until every handle is
    /// dropped or [`NotifyHandle::shutdown`] is called. For tests (the `test-hooks`
    /// feature); the engine runs the task of [`start`](Self::start) in its own tasks.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn spawn(notifier: Arc<dyn Notifier>, settings: NotifySettings) -> NotifyHandle {
        let (decisions, _) = broadcast::channel(DECISIONS_KEPT);
        let (handle, task) = NotifyGate::start(notifier, settings, decisions);
        tokio::spawn(task);
        handle
    }

    /// The gate's handle and its task, publishing on `decisions`, for a caller that runs
    /// (and owns) the task itself, as the engine does in its `JoinSet`.
    pub fn start(
        notifier: Arc<dyn Notifier>,
        settings: NotifySettings,
        decisions: broadcast::Sender<Decision>,
    ) -> (NotifyHandle, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Mutex::new(NotifyStats::default()));
        let task =
            Task { rx, notifier, policy: Policy::new(settings), stats: stats.clone(), decisions: decisions.clone() };
        (NotifyHandle { tx, stats, decisions }, task.run())
    }
}

/// The way to feed and steer the gate. Cheap to clone; calls never block.
#[derive(Clone)]
pub struct NotifyHandle {
    tx: mpsc::UnboundedSender<Option<Command>>,
    stats: Arc<Mutex<NotifyStats>>,
    decisions: broadcast::Sender<Decision>,
}

impl NotifyHandle {
    /// A new stored live talk. `row` is its row in the history (what a click opens);
    /// `for_me` whether it is addressed to the signed-in user.
    pub fn talk(&self, talk: TalkMessage, row: i64, for_me: bool) {
        self.send(Command::Talk { talk, row, for_me, replay: false });
    }

    /// A new stored talk that the server replayed: part of a catch-up, summarised.
    pub fn replayed(&self, talk: TalkMessage, row: i64, for_me: bool) {
        self.send(Command::Talk { talk, row, for_me, replay: true });
    }

    /// Feeds a session event: a [`SessionEvent::Talk`] goes to [`talk`](Self::talk) or,
    /// replayed, to [`replayed`](Self::replayed); anything else is ignored.
    pub fn session_event(&self, event: &SessionEvent) {
        if let SessionEvent::Talk { talk, row, for_me, replay } = event {
            self.send(Command::Talk { talk: talk.clone(), row: *row, for_me: *for_me, replay: *replay });
        }
    }

    /// Pauses notifications for `duration`, or until [`resume`](Self::resume) when `None`.
    /// Talks during a pause are not shown later (they are in the history, unread).
    pub fn pause(&self, duration: Option<Duration>) {
        self.send(Command::Pause(duration));
    }

    /// Ends a pause.
    pub fn resume(&self) {
        self.send(Command::Resume);
    }

    /// Quiet hours, mutes and sound from now on. Talks already held for the end of quiet
    /// hours stay held (a sender muted since is left out of their popup).
    pub fn set_hush(&self, hush: Hush) {
        self.send(Command::Hush(Box::new(hush)));
    }

    /// The gate's decisions from now on, one per talk, in the order the talks came.
    pub fn decisions(&self) -> broadcast::Receiver<Decision> {
        self.decisions.subscribe()
    }

    /// The counters after everything sent before this call has been handled.
    pub async fn stats(&self) -> NotifyStats {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Sync(tx));
        let _ = rx.await;
        self.stats_now()
    }

    /// The counters as they are now (talks still queued are not counted yet).
    pub fn stats_now(&self) -> NotifyStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the gate. A summary still being collected is dropped.
    pub fn shutdown(&self) {
        let _ = self.tx.send(None);
    }

    fn send(&self, cmd: Command) {
        // The task is gone only after shutdown: then there is nothing left to notify.
        let _ = self.tx.send(Some(cmd));
    }
}

struct Task {
    rx: mpsc::UnboundedReceiver<Option<Command>>,
    notifier: Arc<dyn Notifier>,
    policy: Policy,
    stats: Arc<Mutex<NotifyStats>>,
    decisions: broadcast::Sender<Decision>,
}

impl Task {
    async fn run(mut self) {
        loop {
            let deadline = self.policy.next_deadline();
            // The far-off fallback is never polled (the branch is disabled without one).
            let sleep_to = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            let cmd = tokio::select! {
                biased;
                _ = tokio::time::sleep_until(sleep_to), if deadline.is_some() => {
                    let out = self.policy.on_deadline(Instant::now(), SystemTime::now());
                    self.show_all(out).await;
                    self.publish();
                    continue;
                }
                cmd = self.rx.recv() => cmd,
            };
            match cmd {
                None | Some(None) => break,
                Some(Some(Command::Talk { talk, row, for_me, replay })) => {
                    let heard = Heard { talk: &talk, row, for_me, replay };
                    let at = SystemTime::now();
                    let (outcome, out) = self.policy.on_talk(Instant::now(), at, heard);
                    // Nobody listening (the daemon) is no error.
                    let _ = self.decisions.send(Decision { row, talk, for_me, outcome, at });
                    self.show_all(out).await;
                }
                Some(Some(Command::Pause(duration))) => self.policy.pause(Instant::now(), SystemTime::now(), duration),
                Some(Some(Command::Resume)) => self.policy.resume(),
                Some(Some(Command::Hush(hush))) => self.policy.hush = *hush,
                Some(Some(Command::Sync(done))) => {
                    self.publish();
                    let _ = done.send(());
                }
            }
            self.publish();
        }
    }

    async fn show_all(&mut self, out: Vec<Notification>) {
        for mut n in out {
            n.sound = self.policy.hush.sound();
            let summary = matches!(n.kind, NotificationKind::Summary { .. });
            let notifier = self.notifier.clone();
            // Off the async threads: a D-Bus call blocks. DesktopNotifier bounds how long.
            let result = tokio::task::spawn_blocking(move || notifier.show(&n)).await;
            let stats = &mut self.policy.stats;
            match result {
                Ok(Ok(())) => {
                    stats.shown += 1;
                    stats.summaries += u64::from(summary);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "notification not shown");
                    stats.failed += 1;
                    stats.last_error = Some(e.to_string());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "notifier failed");
                    stats.failed += 1;
                    stats.last_error = Some(format!("the notifier failed: {e}"));
                }
            }
        }
    }

    fn publish(&mut self) {
        self.policy.stats.is_paused = self.policy.is_paused(Instant::now(), SystemTime::now());
        if let Ok(mut shared) = self.stats.lock() {
            *shared = self.policy.stats.clone();
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Pause {
    Indefinite,
    /// Ends when either clock passes its end.
    Until {
        at: Instant,
        wall: SystemTime,
    },
}

/// A burst: talks for the user that come less than `burst_window` apart. See the module doc.
#[derive(Debug)]
struct Burst {
    /// It ends here unless another talk comes first: `burst_window` after its latest talk.
    quiet_at: Instant,
    /// Single popups it may still raise.
    singles_left: usize,
    /// What it collected for its summary.
    pending: Pending,
    /// When that summary is shown even though talks keep coming (`summary_max_wait`
    /// after the first talk collected for it).
    flush_at: Option<Instant>,
    /// A replay's burst: it raises no single popups, and ends at the first live talk.
    catch_up: bool,
}

/// A talk handed to the policy.
struct Heard<'a> {
    talk: &'a TalkMessage,
    row: i64,
    for_me: bool,
    replay: bool,
}

/// Talks collected for a summary.
#[derive(Debug, Default)]
struct Pending {
    rows: Vec<i64>,
    /// Senders by first appearance, with how many talks each.
    senders: Vec<(String, u64)>,
    /// The latest, shown on its own when it is the only one.
    last: Option<Notification>,
}

impl Pending {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn add(&mut self, talk: &TalkMessage, row: i64) {
        self.count(row, sender_name(talk));
        self.last = Some(single(talk, row));
    }

    fn count(&mut self, row: i64, name: String) {
        self.rows.push(row);
        match self.senders.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => self.senders.push((name, 1)),
        }
    }

    /// One popup for everything collected: the talk itself when there is only one.
    fn into_notification(self) -> Option<Notification> {
        match self.rows.len() {
            0 => None,
            1 => self.last,
            n => {
                // The sender with the most talks first (the first seen on a tie).
                let mut top = &self.senders[0];
                for s in &self.senders[1..] {
                    if s.1 > top.1 {
                        top = s;
                    }
                }
                let (title, body) = summary(n, &top.0, self.senders.len());
                Some(Notification {
                    title,
                    body,
                    kind: NotificationKind::Summary { rows: self.rows },
                    sound: true,
                    sender: None,
                })
            }
        }
    }
}

/// Talks held in quiet hours, for the one popup when they end.
#[derive(Debug)]
struct QuietHold {
    /// When the quiet hours end, on the wall clock.
    ends: Timestamp,
    /// When the task next looks at the wall clock (see [`QuietHold::check_at`]).
    check_at: Instant,
    /// Each held talk: its row, sender and sender's name, in the order they came.
    held: Vec<(i64, UserId, String)>,
    /// Each sender's latest talk, the popup when it is the only one left.
    latest: Vec<(UserId, Notification)>,
}

/// The longest the task goes without looking at the wall clock while talks are held
/// for the end of quiet hours (the monotonic clock stops in a suspend).
const QUIET_CHECK: Duration = Duration::from_secs(60);

impl QuietHold {
    fn new(ends: Timestamp, now: Instant, wall: Timestamp) -> Self {
        QuietHold { ends, check_at: Self::check_at(ends, now, wall), held: Vec::new(), latest: Vec::new() }
    }

    /// The end as the monotonic clock sees it from `now`, at most [`QUIET_CHECK`] ahead.
    fn check_at(ends: Timestamp, now: Instant, wall: Timestamp) -> Instant {
        let left = Duration::try_from(ends.duration_since(wall)).unwrap_or(Duration::ZERO);
        now + left.min(QUIET_CHECK)
    }

    fn hold(&mut self, talk: &TalkMessage, row: i64) {
        let id = talk.from.id.clone();
        self.held.push((row, id.clone(), sender_name(talk)));
        let popup = single(talk, row);
        match self.latest.iter_mut().find(|(who, _)| *who == id) {
            Some((_, last)) => *last = popup,
            None => self.latest.push((id, popup)),
        }
    }

    /// What is left to show at `at`: the held talks of senders not muted by then.
    fn into_pending(self, hush: &Hush, at: Timestamp) -> Pending {
        let mut pending = Pending::default();
        let mut last_sender = None;
        for (row, id, name) in self.held.into_iter().filter(|(_, id, _)| !hush.muted(id, at)) {
            pending.count(row, name);
            last_sender = Some(id);
        }
        pending.last = last_sender.and_then(|id| self.latest.into_iter().find(|(who, _)| *who == id)).map(|(_, n)| n);
        pending
    }
}

/// The wall clock as a [`Timestamp`] (a time outside its range is the Unix epoch: no
/// quiet hours or mutes are that old).
fn stamp(wall: SystemTime) -> Timestamp {
    Timestamp::try_from(wall).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The decisions, without the task: pure, driven by the times it is given.
struct Policy {
    settings: NotifySettings,
    hush: Hush,
    burst: Option<Burst>,
    quiet: Option<QuietHold>,
    pause: Option<Pause>,
    stats: NotifyStats,
}

impl Policy {
    fn new(settings: NotifySettings) -> Self {
        Policy { settings, hush: Hush::default(), burst: None, quiet: None, pause: None, stats: NotifyStats::default() }
    }

    fn is_paused(&mut self, now: Instant, wall: SystemTime) -> bool {
        match self.pause {
            None => false,
            Some(Pause::Indefinite) => true,
            Some(Pause::Until { at, wall: end }) => {
                let paused = now < at && wall < end;
                if !paused {
                    self.pause = None;
                }
                paused
            }
        }
    }

    /// A pause whose end neither clock can hold (`Duration::MAX`, or anything past the
    /// year 292 billion) is indefinite: `Instant + Duration` would panic.
    fn pause(&mut self, now: Instant, wall: SystemTime, duration: Option<Duration>) {
        let until = duration.and_then(|d| Some(Pause::Until { at: now.checked_add(d)?, wall: wall.checked_add(d)? }));
        self.pause = Some(until.unwrap_or(Pause::Indefinite));
    }

    fn resume(&mut self) {
        self.pause = None;
    }

    /// The burst going on at `now` (a new one if none is), kept going for another window.
    fn burst_at(&mut self, now: Instant) -> &mut Burst {
        let quiet_at = now + self.settings.burst_window;
        let singles = self.settings.burst_count.saturating_sub(1);
        let burst = self.burst.get_or_insert_with(|| Burst {
            quiet_at,
            singles_left: singles,
            pending: Pending::default(),
            flush_at: None,
            catch_up: false,
        });
        burst.quiet_at = quiet_at;
        burst
    }

    /// A live talk came: a catch-up going on is over (the server replays before it
    /// sends anything new), and its summary is due now.
    fn end_catch_up(&mut self, now: Instant, wall: SystemTime) -> Vec<Notification> {
        match &mut self.burst {
            Some(burst) if burst.catch_up => {
                burst.quiet_at = now;
                self.roll(now, wall)
            }
            _ => Vec::new(),
        }
    }

    /// When the task must wake up: when a burst with talks to summarise ends, or when
    /// its summary may wait no longer.
    /// And when talks are held for the end of quiet hours, when to look at the wall clock.
    fn next_deadline(&self) -> Option<Instant> {
        let burst = self.burst.as_ref().filter(|b| b.pending.len() > 0);
        let burst = burst.map(|b| b.flush_at.map_or(b.quiet_at, |at| at.min(b.quiet_at)));
        let quiet = self.quiet.as_ref().map(|q| q.check_at);
        [burst, quiet].into_iter().flatten().min()
    }

    /// What becomes of `heard`, and the popups due now.
    fn on_talk(&mut self, now: Instant, wall: SystemTime, heard: Heard<'_>) -> (Outcome, Vec<Notification>) {
        let Heard { talk, row, for_me, replay } = heard;
        if !for_me {
            self.stats.not_for_me += 1;
            return (Outcome::NotForMe, Vec::new());
        }
        let at = stamp(wall);
        if self.hush.muted(&talk.from.id, at) {
            self.stats.muted += 1;
            return (Outcome::Muted, Vec::new());
        }
        if self.is_paused(now, wall) {
            self.stats.paused += 1;
            return (Outcome::Paused, Vec::new());
        }
        let mut out = self.end_quiet(now, wall);
        if let Some(ends) = self.hush.quiet_ends(at) {
            self.stats.quiet += 1;
            self.quiet.get_or_insert_with(|| QuietHold::new(ends, now, at)).hold(talk, row);
            return (Outcome::Quiet, out);
        }
        out.extend(self.roll(now, wall));
        if !replay {
            out.extend(self.end_catch_up(now, wall));
        }
        let max_wait = self.settings.summary_max_wait;
        let burst = self.burst_at(now);
        if replay {
            burst.catch_up = true;
            burst.singles_left = 0;
        }
        if burst.singles_left > 0 {
            burst.singles_left -= 1;
            out.push(single(talk, row));
            (Outcome::Popup, out)
        } else {
            burst.pending.add(talk, row);
            burst.flush_at.get_or_insert(now + max_wait);
            (Outcome::Summary, out)
        }
    }

    fn on_deadline(&mut self, now: Instant, wall: SystemTime) -> Vec<Notification> {
        let mut out = self.end_quiet(now, wall);
        out.extend(self.roll(now, wall));
        out
    }

    /// Once the wall clock has passed the end of quiet hours: the one popup for what was
    /// held (none while paused). Before then, when to look again.
    fn end_quiet(&mut self, now: Instant, wall: SystemTime) -> Vec<Notification> {
        let at = stamp(wall);
        let Some(hold) = self.quiet.take_if(|hold| hold.ends <= at) else {
            if let Some(hold) = self.quiet.as_mut().filter(|hold| hold.check_at <= now) {
                hold.check_at = QuietHold::check_at(hold.ends, now, at);
            }
            return Vec::new();
        };
        let pending = hold.into_pending(&self.hush, at);
        let collected = pending.len() as u64;
        if collected > 0 && self.is_paused(now, wall) {
            self.stats.paused += collected;
            return Vec::new();
        }
        if collected > 1 {
            self.stats.summarised += collected;
        }
        pending.into_notification().into_iter().collect()
    }

    /// Shows what the burst collected once it has ended or its summary is due, and
    /// forgets a burst that has ended.
    fn roll(&mut self, now: Instant, wall: SystemTime) -> Vec<Notification> {
        let Some(mut burst) = self.burst.take() else { return Vec::new() };
        let ended = burst.quiet_at <= now;
        let mut out = Vec::new();
        if ended || burst.flush_at.is_some_and(|at| at <= now) {
            let pending = std::mem::take(&mut burst.pending);
            burst.flush_at = None;
            let collected = pending.len() as u64;
            if collected > 0 && self.is_paused(now, wall) {
                self.stats.paused += collected;
            } else if let Some(n) = pending.into_notification() {
                if collected > 1 {
                    self.stats.summarised += collected;
                }
                out.push(n);
            }
        }
        if !ended {
            self.burst = Some(burst);
        }
        out
    }
}

fn sender_name(talk: &TalkMessage) -> String {
    let name = talk.from.name.trim();
    if name.is_empty() {
        talk.from.id.to_string()
    } else {
        name.to_owned()
    }
}

/// The popup of one talk: the sender's name and the text, held to §5's limits.
fn single(talk: &TalkMessage, row: i64) -> Notification {
    Notification {
        title: talk_title(&sender_name(talk)),
        body: popup_body(&talk.talk),
        kind: NotificationKind::Talk { row },
        sound: true,
        sender: Some(talk.from.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::NotifyError;
    use crate::protocol::{Person, ServerFrame, UserId};
    use crate::session::SessionState;

    /// Records what it is asked to show.
    #[derive(Default)]
    struct Recorder {
        shown: Mutex<Vec<Notification>>,
        fail: bool,
    }

    impl Notifier for Recorder {
        fn show(&self, n: &Notification) -> Result<(), NotifyError> {
            if self.fail {
                return Err(NotifyError::NoService { detail: "test".into() });
            }
            self.shown.lock().unwrap().push(n.clone());
            Ok(())
        }
    }

    impl Recorder {
        fn popups(&self) -> Vec<Notification> {
            self.shown.lock().unwrap().clone()
        }
    }

    fn gate() -> (Arc<Recorder>, NotifyHandle) {
        let rec = Arc::new(Recorder::default());
        let handle = NotifyGate::spawn(rec.clone(), NotifySettings::default());
        (rec, handle)
    }

    #[tokio::test(start_paused = true)]
    async fn one_talk_for_me_is_one_popup_with_sender_and_text() {
        let (rec, gate) = gate();
        let frame =
            ServerFrame::parse(r#"{"form":{"id":2,"name":"wang2","talk":"hello"},"to":{"id":1,"name":"wang1"}}"#)
                .unwrap();
        let ServerFrame::Talk(t) = frame else { panic!("a talk") };
        let for_me = t.is_for(&UserId::from(1));
        gate.talk(t, 7, for_me);
        let stats = gate.stats().await;
        assert_eq!(
            rec.popups(),
            vec![Notification {
                title: "wang2".into(),
                body: "hello".into(),
                kind: NotificationKind::Talk { row: 7 },
                sound: true,
                sender: Some(Person { id: 2.into(), name: "wang2".into() }),
            }]
        );
        assert_eq!((stats.shown, stats.summaries, stats.failed), (1, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_talk_not_for_me_shows_nothing() {
        let (rec, gate) = gate();
        gate.talk(TalkMessage::for_test("wang2", "to someone else"), 1, false);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let stats = gate.stats().await;
        assert!(rec.popups().is_empty());
        assert_eq!((stats.shown, stats.not_for_me), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn five_hundred_talks_at_once_are_two_popups_and_one_summary() {
        let (rec, gate) = gate();
        let senders = ["wang2", "li3", "zhao4"];
        for i in 0..500 {
            // wang2 sends most of them.
            let from = if i % 5 == 0 { senders[1 + (i / 5) % 2] } else { senders[0] };
            gate.talk(TalkMessage::for_test(from, &format!("message {i}")), i as i64, true);
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        let popups = rec.popups();
        assert_eq!(popups.len(), 3, "{popups:?}");
        assert_eq!(popups[0].body, "message 0");
        assert_eq!(popups[1].body, "message 1");
        let last = popups.last().unwrap();
        assert_eq!(last.body, "498 new messages from wang2 and 2 others");
        assert_eq!(last.kind, NotificationKind::Summary { rows: (2..500).collect() });
        let stats = gate.stats().await;
        assert_eq!((stats.shown, stats.summaries, stats.summarised), (3, 1, 498));
    }

    #[tokio::test(start_paused = true)]
    async fn the_summary_comes_when_the_talks_pause_not_before() {
        let (rec, gate) = gate();
        for i in 0..10 {
            gate.talk(TalkMessage::for_test("wang2", "x"), i, true);
        }
        tokio::time::sleep(Duration::from_millis(1900)).await;
        assert_eq!(rec.popups().len(), 2, "only the first two while the burst lasts");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let popups = rec.popups();
        assert_eq!(popups.len(), 3);
        assert_eq!(popups[2].body, "8 new messages from wang2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ten_second_burst_is_three_popups_in_all() {
        let (rec, gate) = gate();
        // 500 talks over 10 s, one every 20 ms.
        for i in 0..500 {
            gate.talk(TalkMessage::for_test("wang2", "x"), i, true);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(1900)).await;
        assert_eq!(rec.popups().len(), 2, "no summary while the talks keep coming");
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (singles, summaries) = split(&rec.popups());
        assert_eq!((singles, summaries.len()), (2, 1));
        assert_eq!(singles + summaries[0], 500, "every talk is in a popup or the summary");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_never_pauses_shows_a_summary_every_30_seconds() {
        let (rec, gate) = gate();
        // Two talks a second for 70 s: never 2 s apart, so one burst all along.
        for i in 0..140 {
            gate.talk(TalkMessage::for_test("wang2", "x"), i, true);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (singles, summaries) = split(&rec.popups());
        // Collected from 1 s on: summaries at 31 s and 61 s, and one when the talks stop.
        assert_eq!((singles, summaries.len()), (2, 3), "{summaries:?}");
        assert_eq!(singles + summaries.iter().sum::<usize>(), 140);
    }

    /// How many single popups, and how many talks each summary stands for.
    fn split(popups: &[Notification]) -> (usize, Vec<usize>) {
        let singles = popups.iter().filter(|n| matches!(n.kind, NotificationKind::Talk { .. })).count();
        let summaries = popups
            .iter()
            .filter_map(|n| match &n.kind {
                NotificationKind::Summary { rows } => Some(rows.len()),
                NotificationKind::Talk { .. } => None,
            })
            .collect();
        (singles, summaries)
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_quiet_window_talks_show_one_by_one_again() {
        let (rec, gate) = gate();
        for i in 0..5 {
            gate.talk(TalkMessage::for_test("wang2", &format!("a{i}")), i, true);
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(rec.popups().len(), 3);
        gate.talk(TalkMessage::for_test("li3", "later"), 9, true);
        gate.stats().await;
        let popups = rec.popups();
        assert_eq!(popups.len(), 4);
        assert_eq!((popups[3].title.as_str(), popups[3].body.as_str()), ("li3", "later"));
        assert_eq!(popups[3].kind, NotificationKind::Talk { row: 9 });
    }

    #[tokio::test(start_paused = true)]
    async fn one_talk_over_the_limit_is_shown_as_itself_when_the_burst_ends() {
        let (rec, gate) = gate();
        for i in 0..3 {
            gate.talk(TalkMessage::for_test("wang2", &format!("t{i}")), i, true);
        }
        gate.stats().await;
        assert_eq!(rec.popups().len(), 2);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let popups = rec.popups();
        assert_eq!(popups.len(), 3);
        assert_eq!(
            popups[2],
            Notification {
                title: "wang2".into(),
                body: "t2".into(),
                kind: NotificationKind::Talk { row: 2 },
                sound: true,
                sender: Some(Person { id: UserId::new("id-wang2"), name: "wang2".into() }),
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn paused_shows_nothing_and_resume_shows_again() {
        let (rec, gate) = gate();
        gate.pause(None);
        gate.talk(TalkMessage::for_test("wang2", "while paused"), 1, true);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let stats = gate.stats().await;
        assert!(rec.popups().is_empty());
        assert_eq!(stats.paused, 1);
        assert!(stats.is_paused);

        gate.resume();
        gate.talk(TalkMessage::for_test("wang2", "after resume"), 2, true);
        let stats = gate.stats().await;
        assert_eq!(rec.popups().iter().map(|n| n.body.as_str()).collect::<Vec<_>>(), ["after resume"]);
        assert!(!stats.is_paused);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timed_pause_ends_by_itself() {
        let (rec, gate) = gate();
        gate.pause(Some(Duration::from_secs(60)));
        gate.talk(TalkMessage::for_test("wang2", "muted"), 1, true);
        tokio::time::sleep(Duration::from_secs(59)).await;
        gate.talk(TalkMessage::for_test("wang2", "still muted"), 2, true);
        gate.stats().await;
        assert!(rec.popups().is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        gate.talk(TalkMessage::for_test("wang2", "heard"), 3, true);
        let stats = gate.stats().await;
        assert_eq!(rec.popups().iter().map(|n| n.body.as_str()).collect::<Vec<_>>(), ["heard"]);
        assert_eq!((stats.paused, stats.is_paused), (2, false));
    }

    #[test]
    fn a_pause_too_long_for_the_clocks_is_indefinite() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut policy = Policy::new(NotifySettings::default());
        // Instant + Duration::MAX panicked here.
        policy.pause(now, wall, Some(Duration::MAX));
        assert!(matches!(policy.pause, Some(Pause::Indefinite)), "{:?}", policy.pause);
        assert!(policy.is_paused(now + Duration::from_secs(86_400 * 365_000), wall));
        // The longest pause the shell allows (a week) still ends.
        policy.pause(now, wall, Some(Duration::from_secs(7 * 86_400)));
        assert!(matches!(policy.pause, Some(Pause::Until { .. })), "{:?}", policy.pause);
        assert!(policy.is_paused(now, wall));
        assert!(!policy.is_paused(now + Duration::from_secs(7 * 86_400), wall));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_of_duration_max_through_the_handle_mutes_until_resumed() {
        let (rec, gate) = gate();
        gate.pause(Some(Duration::MAX));
        gate.talk(TalkMessage::for_test("wang2", "muted"), 1, true);
        let stats = gate.stats().await;
        assert!(rec.popups().is_empty());
        assert_eq!((stats.paused, stats.is_paused), (1, true));
        gate.resume();
        gate.talk(TalkMessage::for_test("wang2", "heard"), 2, true);
        gate.stats().await;
        assert_eq!(rec.popups().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn pausing_during_a_burst_drops_its_summary() {
        let (rec, gate) = gate();
        for i in 0..10 {
            gate.talk(TalkMessage::for_test("wang2", "x"), i, true);
        }
        gate.pause(None);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let stats = gate.stats().await;
        assert_eq!(rec.popups().len(), 2);
        assert_eq!(stats.paused, 8);
    }

    #[tokio::test(start_paused = true)]
    async fn long_text_is_cut_at_300_chars_with_an_ellipsis() {
        let (rec, gate) = gate();
        let long = "字".repeat(1000);
        gate.talk(TalkMessage::for_test("wang2", &long), 1, true);
        gate.talk(TalkMessage::for_test(&"n".repeat(500), "short"), 2, true);
        gate.stats().await;
        let popups = rec.popups();
        assert_eq!(popups[0].body.chars().count(), 300);
        assert!(popups[0].body.ends_with('…'));
        assert!(popups[0].body.starts_with("字字字"));
        assert_eq!(popups[1].title.chars().count(), TITLE_CHARS);
        assert!(popups[1].title.ends_with('…'));
    }

    #[tokio::test(start_paused = true)]
    async fn a_summary_of_long_names_is_held_to_300_characters() {
        let (rec, gate) = gate();
        for i in 0..20 {
            gate.talk(TalkMessage::for_test(&format!("{i}{}", "long name ".repeat(100)), "x"), i, true);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let popups = rec.popups();
        let summary = popups.iter().find(|n| matches!(n.kind, NotificationKind::Summary { .. })).expect("a summary");
        assert!(summary.body.starts_with("18 new messages from 2long name"), "{summary:?}");
        assert_eq!(summary.body.chars().count(), 300, "{summary:?}");
        assert!(popups.iter().all(|n| n.title.chars().count() <= 100 && n.body.chars().count() <= 300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_notifier_is_counted_and_the_gate_goes_on() {
        let rec = Arc::new(Recorder { fail: true, ..Recorder::default() });
        let gate = NotifyGate::spawn(rec.clone(), NotifySettings::default());
        gate.talk(TalkMessage::for_test("wang2", "a"), 1, true);
        gate.talk(TalkMessage::for_test("wang2", "b"), 2, true);
        let stats = gate.stats().await;
        assert_eq!((stats.shown, stats.failed), (0, 2));
        assert!(stats.last_error.unwrap().contains("no notification service"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_replay_after_reconnecting_is_one_summary() {
        let (rec, gate) = gate();
        gate.session_event(&SessionEvent::State(SessionState::Connected { user: crate::session::Identity::Unknown }));
        for i in 0..500 {
            let sender = ["wang2", "li3", "zhao4"][i % 3];
            let talk = TalkMessage::for_test(sender, &format!("missed {i}"));
            gate.session_event(&SessionEvent::Talk { talk, row: i as i64, for_me: true, replay: true });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(rec.popups().is_empty(), "nothing before the window ends");
        tokio::time::sleep(Duration::from_secs(10)).await;
        let popups = rec.popups();
        assert_eq!(popups.len(), 1, "{popups:?}");
        assert_eq!(popups[0].body, "500 new messages from wang2 and 2 others");
        assert!(matches!(&popups[0].kind, NotificationKind::Summary { rows } if rows.len() == 500));
        // Live talks afterwards show one by one again.
        gate.talk(TalkMessage::for_test("wang2", "live"), 900, true);
        gate.stats().await;
        assert_eq!(rec.popups().last().map(|n| n.body.as_str()), Some("live"));
    }

    #[tokio::test(start_paused = true)]
    async fn on_a_server_that_never_replays_the_first_talks_of_a_link_are_live() {
        let (rec, gate) = gate();
        gate.session_event(&SessionEvent::State(SessionState::Connected { user: crate::session::Identity::Unknown }));
        // Three live talks in the first second after connecting (no welcome, no seq).
        for (i, text) in ["one", "two", "three"].into_iter().enumerate() {
            let talk = TalkMessage::for_test("wang2", text);
            gate.session_event(&SessionEvent::Talk { talk, row: i as i64, for_me: true, replay: false });
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        gate.stats().await;
        let shown: Vec<String> = rec.popups().iter().map(|n| n.body.clone()).collect();
        assert_eq!(shown, ["one", "two"], "the live burst rule: the first two at once");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let popups = rec.popups();
        assert_eq!(popups.iter().map(|n| n.body.as_str()).collect::<Vec<_>>(), ["one", "two", "three"]);
        assert!(popups.iter().all(|n| matches!(n.kind, NotificationKind::Talk { .. })), "no summary: {popups:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_live_talk_after_a_replay_ends_the_catch_up() {
        let (rec, gate) = gate();
        for i in 0..5 {
            gate.replayed(TalkMessage::for_test("wang2", &format!("missed {i}")), i, true);
        }
        gate.talk(TalkMessage::for_test("li3", "live now"), 10, true);
        gate.stats().await;
        let popups = rec.popups();
        assert_eq!(popups.len(), 2, "{popups:?}");
        assert_eq!(popups[0].body, "5 new messages from wang2");
        assert_eq!((popups[1].title.as_str(), popups[1].body.as_str()), ("li3", "live now"));
        assert_eq!(popups[1].kind, NotificationKind::Talk { row: 10 });
    }

    #[tokio::test(start_paused = true)]
    async fn a_replay_slower_than_the_window_is_still_one_summary() {
        let (rec, gate) = gate();
        // 500 talks over 25 s (a big backlog on a slow disk).
        for i in 0..500 {
            gate.replayed(TalkMessage::for_test("wang2", "missed"), i, true);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let popups = rec.popups();
        assert_eq!(popups.len(), 1, "{popups:?}");
        assert_eq!(popups[0].body, "500 new messages from wang2");
    }

    #[tokio::test(start_paused = true)]
    async fn one_missed_talk_after_reconnecting_is_shown_as_itself() {
        let (rec, gate) = gate();
        gate.replayed(TalkMessage::for_test("wang2", "just one"), 1, true);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let popups = rec.popups();
        assert_eq!(popups.len(), 1);
        assert_eq!((popups[0].title.as_str(), popups[0].body.as_str()), ("wang2", "just one"));
    }

    #[tokio::test(start_paused = true)]
    async fn session_events_feed_the_gate() {
        let (rec, gate) = gate();
        gate.session_event(&SessionEvent::Talk {
            talk: TalkMessage::for_test("wang2", "via event"),
            row: 5,
            for_me: true,
            replay: false,
        });
        gate.session_event(&SessionEvent::Talk {
            talk: TalkMessage::for_test("wang2", "not mine"),
            row: 6,
            for_me: false,
            replay: false,
        });
        let stats = gate.stats().await;
        assert_eq!(rec.popups().len(), 1);
        assert_eq!(stats.not_for_me, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn each_talk_is_published_with_what_the_gate_decided() {
        let (_rec, gate) = gate();
        let mut decisions = gate.decisions();
        gate.talk(TalkMessage::for_test("wang2", "elsewhere"), 1, false);
        for row in 2..5 {
            gate.talk(TalkMessage::for_test("wang2", "x"), row, true);
        }
        gate.pause(None);
        gate.talk(TalkMessage::for_test("wang2", "muted"), 5, true);
        gate.stats().await;
        let mut seen = Vec::new();
        while let Ok(d) = decisions.try_recv() {
            seen.push((d.row, d.for_me, d.outcome));
        }
        assert_eq!(
            seen,
            [
                (1, false, Outcome::NotForMe),
                (2, true, Outcome::Popup),
                (3, true, Outcome::Popup),
                (4, true, Outcome::Summary),
                (5, true, Outcome::Paused)
            ]
        );
        assert_eq!(serde_json::to_value(Outcome::NotForMe).unwrap(), "not-for-me");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_gate() {
        let (rec, gate) = gate();
        gate.shutdown();
        gate.talk(TalkMessage::for_test("wang2", "too late"), 1, true);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(rec.popups().is_empty());
        // stats() still returns (the last published counters).
        assert_eq!(gate.stats().await.shown, 0);
    }

    mod hush {
        use super::*;
        use crate::notify::quiet::{Mute, QuietHours};
        use jiff::tz::TimeZone;

        fn berlin() -> TimeZone {
            TimeZone::get("Europe/Berlin").unwrap()
        }

        /// `local` in Berlin, on the wall clock.
        fn wall(local: &str) -> SystemTime {
            let dt: jiff::civil::DateTime = local.parse().unwrap();
            berlin().to_ambiguous_timestamp(dt).compatible().unwrap().try_into().unwrap()
        }

        fn mute(from: &str) -> Mute {
            Mute { sender: UserId::new(format!("id-{from}")), name: from.into(), until: None }
        }

        /// A policy with quiet hours 22:00–08:00 in Berlin and these mutes.
        fn night_policy(mutes: Vec<Mute>) -> Policy {
            let night = QuietHours { from: "22:00".parse().unwrap(), to: "08:00".parse().unwrap() };
            let mut policy = Policy::new(NotifySettings::default());
            policy.hush = Hush::new(Some(night), berlin(), mutes, true);
            policy
        }

        fn hear(policy: &mut Policy, now: Instant, wall: SystemTime, from: &str, row: i64) -> Outcome {
            let t = TalkMessage::for_test(from, &format!("talk {row}"));
            let (outcome, out) = policy.on_talk(now, wall, Heard { talk: &t, row, for_me: true, replay: false });
            assert!(out.is_empty(), "no popup as it comes: {out:?}");
            outcome
        }

        #[tokio::test(start_paused = true)]
        async fn talks_in_quiet_hours_are_one_popup_when_they_end() {
            let mut policy = night_policy(Vec::new());
            let now = Instant::now();
            for (row, from) in [(1, "wang2"), (2, "li3"), (3, "wang2")] {
                assert_eq!(hear(&mut policy, now, wall("2026-06-10T23:00"), from, row), Outcome::Quiet);
            }
            // The task looks at the wall clock every minute, and nothing is due at 23:01.
            assert_eq!(policy.next_deadline(), Some(now + QUIET_CHECK));
            assert!(policy.on_deadline(now + QUIET_CHECK, wall("2026-06-10T23:01")).is_empty());
            assert_eq!(policy.next_deadline(), Some(now + QUIET_CHECK * 2));
            let out = policy.on_deadline(now + QUIET_CHECK * 2, wall("2026-06-11T08:00"));
            assert_eq!(out.len(), 1, "{out:?}");
            assert_eq!(out[0].body, "3 new messages from wang2 and 1 other");
            assert_eq!(out[0].kind, NotificationKind::Summary { rows: vec![1, 2, 3] });
            assert_eq!(policy.next_deadline(), None);
            assert_eq!((policy.stats.quiet, policy.stats.summarised), (3, 3));
        }

        #[tokio::test(start_paused = true)]
        async fn the_first_talk_after_quiet_hours_brings_their_popup_first() {
            let mut policy = night_policy(Vec::new());
            let now = Instant::now();
            assert_eq!(hear(&mut policy, now, wall("2026-06-11T07:59"), "wang2", 1), Outcome::Quiet);
            // The machine slept over 08:00: the monotonic clock says a second went by.
            let later = now + Duration::from_secs(1);
            let t = TalkMessage::for_test("li3", "good morning");
            let heard = Heard { talk: &t, row: 2, for_me: true, replay: false };
            let (outcome, out) = policy.on_talk(later, wall("2026-06-11T08:30"), heard);
            assert_eq!(outcome, Outcome::Popup);
            let bodies: Vec<&str> = out.iter().map(|n| n.body.as_str()).collect();
            assert_eq!(bodies, ["talk 1", "good morning"], "the held talk is itself, then the new one");
        }

        #[tokio::test(start_paused = true)]
        async fn quiet_hours_across_the_spring_forward_end_at_8_local() {
            let mut policy = night_policy(Vec::new());
            let now = Instant::now();
            assert_eq!(hear(&mut policy, now, wall("2026-03-29T01:30"), "wang2", 1), Outcome::Quiet);
            assert!(policy.on_deadline(now + QUIET_CHECK, wall("2026-03-29T07:59")).is_empty());
            let out = policy.on_deadline(now + QUIET_CHECK * 2, wall("2026-03-29T08:00"));
            assert_eq!(out.len(), 1);
        }

        #[tokio::test(start_paused = true)]
        async fn a_sender_muted_during_the_night_is_left_out_of_its_popup() {
            let mut policy = night_policy(Vec::new());
            let now = Instant::now();
            for (row, from) in [(1, "wang2"), (2, "li3"), (3, "wang2")] {
                hear(&mut policy, now, wall("2026-06-10T23:00"), from, row);
            }
            policy.hush = Hush::new(None, berlin(), vec![mute("wang2")], true);
            let out = policy.on_deadline(now + QUIET_CHECK, wall("2026-06-11T08:00"));
            assert_eq!(out.len(), 1);
            assert_eq!((out[0].title.as_str(), out[0].body.as_str()), ("li3", "talk 2"), "li3's talk, as itself");
        }

        #[tokio::test(start_paused = true)]
        async fn a_pause_at_the_end_of_quiet_hours_drops_their_popup() {
            let mut policy = night_policy(Vec::new());
            let now = Instant::now();
            hear(&mut policy, now, wall("2026-06-10T23:00"), "wang2", 1);
            policy.pause(now, wall("2026-06-11T07:00"), None);
            assert!(policy.on_deadline(now + QUIET_CHECK, wall("2026-06-11T08:00")).is_empty());
            assert_eq!(policy.stats.paused, 1);
            assert_eq!(policy.next_deadline(), None, "nothing is shown later");
        }

        #[tokio::test(start_paused = true)]
        async fn muted_talks_are_counted_never_shown_and_sound_follows_the_settings() {
            let (rec, gate) = gate();
            let mut decisions = gate.decisions();
            gate.set_hush(Hush::new(None, berlin(), vec![mute("wang2")], false));
            gate.talk(TalkMessage::for_test("wang2", "noisy"), 1, true);
            gate.talk(TalkMessage::for_test("li3", "hello"), 2, true);
            tokio::time::sleep(Duration::from_secs(30)).await;
            let stats = gate.stats().await;
            let popups = rec.popups();
            assert_eq!(popups.len(), 1, "{popups:?}");
            assert_eq!((popups[0].title.as_str(), popups[0].sound), ("li3", false));
            assert_eq!((stats.muted, stats.shown), (1, 1));
            assert_eq!(decisions.try_recv().unwrap().outcome, Outcome::Muted);
            assert_eq!(decisions.try_recv().unwrap().outcome, Outcome::Popup);
        }

        #[tokio::test(start_paused = true)]
        async fn a_mute_that_ended_lets_the_sender_through() {
            let (rec, gate) = gate();
            let ended = Mute { until: Some(Timestamp::now() - jiff::SignedDuration::from_secs(1)), ..mute("wang2") };
            gate.set_hush(Hush::new(None, berlin(), vec![ended], true));
            gate.talk(TalkMessage::for_test("wang2", "back"), 1, true);
            gate.stats().await;
            assert_eq!(rec.popups().len(), 1);
            assert!(rec.popups()[0].sound);
        }
    }
}
