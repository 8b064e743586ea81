//! The delivery trace, for benchmarks only: a [`Notifier`] that records each talk for the
//! user handed to it, then forwards everything to the real one.
//!
//! talkbell-bench measures delivery latency with it. When `TALKBELL_DELIVERY_TRACE=<file>`
//! is set at `Engine::start` (and there is a notifier), the engine installs a
//! [`TracingNotifier`] around the notifier; unset, nothing of this is on the path. The
//! gate hands it every talk for the user it is fed ([`Notifier::handed`]), popup or not,
//! and it appends one line per talk, `<unix time in µs>\t<talk text>`, with `\`, tab, CR
//! and LF in the text written as `\\`, `\t`, `\r` and `\n`. The writer is buffered and
//! flushed at least every 100 ms while lines wait ([`TracingNotifier::flush_every`]), and
//! when dropped. A file that cannot be opened or written is logged and the trace ends; it
//! never stops the engine.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::{Notification, Notifier, NotifyError};
use crate::protocol::TalkMessage;

/// The environment variable that turns the trace on: a file path.
pub const DELIVERY_TRACE_ENV: &str = "TALKBELL_DELIVERY_TRACE";

/// How long a traced line may wait in the buffer.
pub const TRACE_FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Records, then forwards to `inner` (see the module doc).
pub struct TracingNotifier {
    inner: Arc<dyn Notifier>,
    /// `None` once writing failed: the trace has ended.
    trace: Mutex<Option<Trace>>,
}

struct Trace {
    out: BufWriter<File>,
    /// Since when written lines wait unflushed.
    dirty_since: Option<Instant>,
}

impl TracingNotifier {
    /// `inner` wrapped in a trace to the file `TALKBELL_DELIVERY_TRACE` names; `None` when
    /// it is unset or empty, or the file cannot be opened (logged).
    pub fn from_env(inner: &Arc<dyn Notifier>) -> Option<Arc<TracingNotifier>> {
        let path = std::env::var_os(DELIVERY_TRACE_ENV).filter(|p| !p.is_empty())?;
        let shown = std::path::Path::new(&path).display().to_string();
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(file) => {
                tracing::info!(path = %shown, "delivery trace on (benchmarks)");
                Some(Arc::new(TracingNotifier::new(inner.clone(), BufWriter::with_capacity(64 * 1024, file))))
            }
            Err(e) => {
                tracing::warn!(path = %shown, error = %e, "delivery trace: cannot open; no trace");
                None
            }
        }
    }

    fn new(inner: Arc<dyn Notifier>, out: BufWriter<File>) -> TracingNotifier {
        TracingNotifier { inner, trace: Mutex::new(Some(Trace { out, dirty_since: None })) }
    }

    /// Flushes the lines that waited [`TRACE_FLUSH_EVERY`], until the trace ends; the
    /// engine runs it beside the gate.
    pub async fn flush_every(self: Arc<Self>) {
        loop {
            let due = match &*self.lock() {
                None => return,
                Some(t) => t.dirty_since.map(|since| since + TRACE_FLUSH_EVERY),
            };
            tokio::time::sleep_until(due.unwrap_or_else(|| Instant::now() + TRACE_FLUSH_EVERY)).await;
            self.flush();
        }
    }

    /// Writes what waits; on an error the trace ends.
    pub fn flush(&self) {
        let mut trace = self.lock();
        if let Some(t) = trace.as_mut() {
            t.dirty_since = None;
            if let Err(e) = t.out.flush() {
                tracing::warn!(error = %e, "delivery trace: cannot write; tracing stops");
                *trace = None;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Trace>> {
        self.trace.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn flush_due(&self) -> Option<Instant> {
        self.lock().as_ref().and_then(|t| t.dirty_since.map(|since| since + TRACE_FLUSH_EVERY))
    }
}

impl Trace {
    /// One line, stamped now.
    fn record(&mut self, text: &str) -> std::io::Result<()> {
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        write!(self.out, "{now_us}\t")?;
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

impl Notifier for TracingNotifier {
    fn show(&self, n: &Notification) -> Result<(), NotifyError> {
        self.inner.show(n)
    }

    fn handed(&self, talk: &TalkMessage) {
        {
            let mut trace = self.lock();
            if let Some(Err(e)) = trace.as_mut().map(|t| t.record(&talk.talk)) {
                tracing::warn!(error = %e, "delivery trace: cannot write; tracing stops");
                *trace = None;
            }
        }
        self.inner.handed(talk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Person, UserId};

    struct Shown(Mutex<Vec<Notification>>);

    impl Notifier for Shown {
        fn show(&self, n: &Notification) -> Result<(), NotifyError> {
            self.0.lock().unwrap().push(n.clone());
            Ok(())
        }
    }

    fn talk(text: &str) -> TalkMessage {
        let person = |id: u64| Person { id: UserId::from(id), name: format!("wang{id}") };
        TalkMessage { from: person(2), to: person(1), talk: text.into(), seq: None, ts: None }
    }

    #[tokio::test(start_paused = true)]
    async fn the_trace_writes_one_escaped_line_per_talk_handed_and_asks_for_a_flush_within_100_ms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trace.tsv");
        let file = OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let shown = Arc::new(Shown(Mutex::new(Vec::new())));
        let inner: Arc<dyn Notifier> = shown.clone();
        let trace = TracingNotifier::new(inner, BufWriter::new(file));
        assert_eq!(trace.flush_due(), None, "nothing waits: no timer");
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros();
        trace.handed(&talk("bench 1 1763900000123456"));
        trace.handed(&talk("two\tlines\nand a \\ and \r"));
        assert_eq!(trace.flush_due(), Some(Instant::now() + TRACE_FLUSH_EVERY));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "buffered until the flush");
        trace.flush();
        assert_eq!(trace.flush_due(), None);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<(u128, &str)> = text
            .lines()
            .map(|l| {
                let (us, talk) = l.split_once('\t').unwrap();
                (us.parse().unwrap(), talk)
            })
            .collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert!(lines.iter().all(|(us, _)| *us >= before));
        assert_eq!(lines[0].1, "bench 1 1763900000123456");
        assert_eq!(lines[1].1, "two\\tlines\\nand a \\\\ and \\r");
        let n = Notification {
            title: "t".into(),
            body: "b".into(),
            kind: super::super::NotificationKind::Talk { row: 1 },
            sound: true,
            sender: None,
        };
        trace.show(&n).unwrap();
        assert_eq!(*shown.0.lock().unwrap(), vec![n], "forwarded");
    }

    #[test]
    fn without_the_variable_there_is_no_trace() {
        // The variable is not set in the test environment (and is never set by tests).
        if std::env::var_os(DELIVERY_TRACE_ENV).is_none() {
            let inner: Arc<dyn Notifier> = Arc::new(Shown(Mutex::new(Vec::new())));
            assert!(TracingNotifier::from_env(&inner).is_none());
        }
    }
}
