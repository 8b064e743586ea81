//! The delivery trace, for benchmarks only (the `delivery-trace` feature; production
//! builds have none of it): a record of when the notification gate decided each talk for
//! the user.
//!
//! talkbell-bench measures delivery latency with it. When
//! [`DELIVERY_TRACE_ENV`](super::DELIVERY_TRACE_ENV)`=<file>` is set at
//! `Engine::start`, the engine runs [`DeliveryTrace::follow`] on the gate's decisions
//! ([`Decision`]): every talk for the user, whatever its popup (one of its own, folded into
//! a summary, paused, muted, notifications off), gets one line, `<unix time in µs of the
//! decision>\t<talk text>`, with `\`, tab, CR and LF in the text written as `\\`, `\t`,
//! `\r` and `\n`. The writer is buffered and flushed at least every 100 ms while lines
//! wait, and when the trace is dropped (at the engine's shutdown). A file that cannot be
//! opened or written is logged and the trace ends; it never stops the engine.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use super::Decision;
use super::DELIVERY_TRACE_ENV;

/// How long a traced line may wait in the buffer.
pub const TRACE_FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The trace file, open for appending (see the module doc).
pub struct DeliveryTrace {
    file: Arc<File>,
    /// The lines not written yet.
    out: Vec<u8>,
    /// Since when written lines wait unflushed.
    dirty_since: Option<Instant>,
}

impl DeliveryTrace {
    /// A trace to the file `TALKBELL_DELIVERY_TRACE` names; `None` when it is unset or
    /// empty, or the file cannot be opened (logged).
    pub fn from_env() -> Option<DeliveryTrace> {
        let path = std::env::var_os(DELIVERY_TRACE_ENV).filter(|p| !p.is_empty())?;
        let shown = std::path::Path::new(&path).display().to_string();
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(file) => {
                tracing::info!(path = %shown, "delivery trace on (benchmarks)");
                Some(DeliveryTrace::new(file))
            }
            Err(e) => {
                tracing::warn!(path = %shown, error = %e, "delivery trace: cannot open; no trace");
                None
            }
        }
    }

    fn new(file: File) -> DeliveryTrace {
        DeliveryTrace { file: Arc::new(file), out: Vec::with_capacity(64 * 1024), dirty_since: None }
    }

    /// Records each decided talk for the user, flushing what waited
    /// [`TRACE_FLUSH_EVERY`], until the decisions end or writing fails. The engine runs it
    /// as one of its tasks.
    pub async fn follow(mut self, mut decisions: broadcast::Receiver<Decision>) {
        loop {
            let due = self.flush_due();
            // The far-off fallback is never polled (the branch is disabled without one).
            let sleep_to = due.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            let written = tokio::select! {
                _ = tokio::time::sleep_until(sleep_to), if due.is_some() => self.flush().await,
                decision = decisions.recv() => match decision {
                    Ok(d) if d.for_me => self.record(d.at, &d.talk.talk),
                    Ok(_) => Ok(()),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "delivery trace: fell behind the decisions; lines missing");
                        Ok(())
                    }
                    Err(RecvError::Closed) => return,
                },
            };
            if let Err(e) = written {
                tracing::warn!(error = %e, "delivery trace: cannot write; tracing stops");
                return;
            }
        }
    }

    /// When the lines waiting must be written.
    fn flush_due(&self) -> Option<Instant> {
        self.dirty_since.map(|since| since + TRACE_FLUSH_EVERY)
    }

    /// Writes what waits, off the async threads: the file may wait for a disk the history
    /// keeps syncing, and the gate's next decision must not wait on this thread behind it.
    async fn flush(&mut self) -> std::io::Result<()> {
        self.dirty_since = None;
        let (lines, file) = (std::mem::take(&mut self.out), self.file.clone());
        match tokio::task::spawn_blocking(move || (&*file).write_all(&lines)).await {
            Ok(written) => written,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// One line, stamped with the time the gate decided (`at`): a write that waits for the
    /// disk delays the line, never its time.
    fn record(&mut self, at: SystemTime, text: &str) -> std::io::Result<()> {
        let at_us = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        write!(self.out, "{at_us}\t")?;
        let mut rest = text;
        while let Some(i) = rest.find(['\\', '\t', '\r', '\n']) {
            self.out.write_all(&rest.as_bytes()[..i])?;
            let escaped: &[u8] = match rest.as_bytes()[i] {
                b'\\' => b"\\\\",
                b'\t' => b"\\t",
                b'\r' => b"\\r",
                _ => b"\\n",
            };
            self.out.write_all(escaped)?;
            rest = &rest[i + 1..];
        }
        self.out.write_all(rest.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.dirty_since.get_or_insert_with(Instant::now);
        Ok(())
    }
}

impl Drop for DeliveryTrace {
    /// The lines still waiting, written when the trace ends (the engine's shutdown).
    fn drop(&mut self) {
        if !self.out.is_empty() {
            let _ = (&*self.file).write_all(&self.out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Outcome;
    use crate::protocol::{Person, TalkMessage, UserId};

    fn decided(text: &str, for_me: bool, outcome: Outcome) -> Decision {
        let person = |id: u64| Person { id: UserId::from(id), name: format!("wang{id}") };
        let to = if for_me { person(1) } else { person(3) };
        let talk = TalkMessage { from: person(2), to, talk: text.into(), seq: None, ts: None };
        Decision { row: 1, talk, for_me, outcome, at: SystemTime::now() }
    }

    fn lines(path: &std::path::Path) -> Vec<(u128, String)> {
        let text = std::fs::read_to_string(path).unwrap();
        let line = |l: &str| {
            let (us, talk) = l.split_once('\t').unwrap();
            (us.parse().unwrap(), talk.to_owned())
        };
        text.lines().map(line).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn each_talk_for_the_user_is_one_escaped_line_written_within_100_ms_whatever_its_popup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.tsv");
        let file = OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let (decisions, rx) = broadcast::channel(16);
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros();
        let follower = tokio::spawn(DeliveryTrace::new(file).follow(rx));
        decisions.send(decided("bench 1 1763900000123456", true, Outcome::Popup)).unwrap();
        decisions.send(decided("between others", false, Outcome::NotForMe)).unwrap();
        decisions.send(decided("two\tlines\nand a \\ and \r", true, Outcome::Summary)).unwrap();
        decisions.send(decided("while paused", true, Outcome::Paused)).unwrap();
        tokio::time::sleep(TRACE_FLUSH_EVERY / 2).await;
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "buffered until the flush");
        tokio::time::sleep(TRACE_FLUSH_EVERY / 2 + Duration::from_millis(1)).await;
        let written = lines(&path);
        let texts: Vec<&str> = written.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(texts, ["bench 1 1763900000123456", "two\\tlines\\nand a \\\\ and \\r", "while paused"]);
        assert!(written.iter().all(|(us, _)| *us >= before));
        // A line's time is the gate's decision's, however late the line is written.
        let at = UNIX_EPOCH + Duration::from_micros(1_763_900_000_654_321);
        decisions.send(Decision { at, ..decided("the last", true, Outcome::Off) }).unwrap();
        drop(decisions);
        follower.await.unwrap();
        let last = lines(&path).last().cloned().unwrap();
        assert_eq!(last, (1_763_900_000_654_321, "the last".to_owned()), "written when the trace ends");
    }

    #[test]
    fn without_the_variable_there_is_no_trace() {
        // The variable is not set in the test environment (and is never set by tests).
        if std::env::var_os(DELIVERY_TRACE_ENV).is_none() {
            assert!(DeliveryTrace::from_env().is_none());
        }
    }
}
