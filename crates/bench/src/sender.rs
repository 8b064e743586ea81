//! Senders of talks over `POST /v1/talk` (talkbell-testkit's keep-alive client): paced (a
//! tokio interval hands talks to a pool of connections) or as fast as the relay takes them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use talkbell_testkit::http::Poster;
use tokio::sync::{mpsc, Mutex};
use tokio::time::MissedTickBehavior;

use crate::stats::now_us;

/// What a sender did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Sent {
    /// Talks the relay answered with a seq.
    pub accepted: u64,
    /// Talks it refused or that failed (with the first error).
    pub failed: u64,
    pub first_error: Option<String>,
    /// From the first request to the last answer.
    pub elapsed_s: f64,
    /// The largest lag of a send behind its schedule (paced sends only).
    pub max_lag_ms: f64,
    /// (recipient, seq, answered µs since the epoch) of each accepted talk.
    #[serde(skip)]
    pub seqs: Vec<(u64, u64, u64)>,
}

impl Sent {
    pub fn rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed_s.max(1e-9)
    }

    async fn post(&mut self, poster: &mut Poster, to: u64, text: &str) {
        match poster.post(to, text).await {
            Ok(seq) => {
                self.accepted += 1;
                self.seqs.push((to, seq, now_us()));
            }
            Err(e) => {
                self.failed += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }

    /// Adds `other`'s counts to these (the elapsed time is the longer one).
    pub fn absorb(&mut self, other: Sent) {
        (self.accepted, self.failed) = (self.accepted + other.accepted, self.failed + other.failed);
        (self.elapsed_s, self.max_lag_ms) =
            (self.elapsed_s.max(other.elapsed_s), self.max_lag_ms.max(other.max_lag_ms));
        self.first_error = self.first_error.take().or(other.first_error);
        self.seqs.extend(other.seqs);
    }

    /// The workers' counts together, over the time since `started`.
    async fn join(workers: Vec<tokio::task::JoinHandle<Sent>>, started: Instant) -> Result<Sent> {
        let mut total = Sent::default();
        for w in workers {
            total.absorb(w.await?);
        }
        total.elapsed_s = started.elapsed().as_secs_f64();
        Ok(total)
    }
}

/// The text of a latency talk: `bench <label> <n> <sent µs>`.
pub fn stamped_text(label: &str, n: u64) -> String {
    format!("bench {label} {n} {}", now_us())
}

/// The send time stamped into a talk's text, if it is one of `label`'s.
pub fn parse_stamp(label: &str, text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix("bench ")?.strip_prefix(label)?.strip_prefix(' ')?;
    let (n, us) = rest.split_once(' ')?;
    Some((n.parse().ok()?, us.parse().ok()?))
}

/// Sends `count` talks at `rate` per second, each stamped with its send time (µs) just
/// before its request is written, over `conns` keep-alive connections; `to(n)` picks the
/// recipient of talk n.
pub async fn paced(
    addr: SocketAddr,
    token: &str,
    to: impl Fn(u64) -> u64 + Send + Sync + 'static,
    label: &str,
    count: u64,
    rate: f64,
    conns: usize,
) -> Result<Sent> {
    let (tx, rx) = mpsc::channel::<(u64, Instant)>(conns * 4);
    let (rx, to) = (Arc::new(Mutex::new(rx)), Arc::new(to));
    let workers = (0..conns)
        .map(|_| {
            let (rx, to, mut poster, label) = (rx.clone(), to.clone(), Poster::new(addr, token), label.to_owned());
            tokio::spawn(async move {
                let mut sent = Sent::default();
                while let Some((n, due)) = rx.lock().await.recv().await {
                    sent.max_lag_ms = sent.max_lag_ms.max(due.elapsed().as_secs_f64() * 1e3);
                    sent.post(&mut poster, to(n), &stamped_text(&label, n)).await;
                }
                sent
            })
        })
        .collect();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    for n in 1..=count {
        let due = tick.tick().await;
        if tx.send((n, due.into_std())).await.is_err() {
            break;
        }
    }
    drop(tx);
    Sent::join(workers, started).await
}

/// Sends `count` talks as fast as the relay takes them over `conns` keep-alive
/// connections; `to(n)` picks the recipient of talk n.
pub async fn flood(
    addr: SocketAddr,
    token: &str,
    count: u64,
    conns: usize,
    to: impl Fn(u64) -> u64 + Send + Sync + 'static,
    label: &str,
) -> Result<Sent> {
    let (next, to) = (Arc::new(AtomicU64::new(1)), Arc::new(to));
    let started = Instant::now();
    let workers = (0..conns)
        .map(|_| {
            let (next, to, mut poster, label) = (next.clone(), to.clone(), Poster::new(addr, token), label.to_owned());
            tokio::spawn(async move {
                let mut sent = Sent::default();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n > count {
                        break sent;
                    }
                    sent.post(&mut poster, to(n), &format!("burst {label} {n}")).await;
                }
            })
        })
        .collect();
    Sent::join(workers, started).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        let t = stamped_text("app", 42);
        let (n, us) = parse_stamp("app", &t).unwrap();
        assert_eq!(n, 42);
        assert!(us > 1_600_000_000_000_000);
        assert_eq!(parse_stamp("baseline", &t), None);
    }
}
