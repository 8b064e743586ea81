//! Senders of talks over `POST /v1/talk`: paced (a tokio interval hands talks to a pool of
//! keep-alive connections) or as fast as the relay takes them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::{mpsc, Mutex};
use tokio::time::MissedTickBehavior;

use crate::http::Poster;
use crate::stats::now_us;

/// What a sender did.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    /// Talks the relay answered with a seq.
    pub accepted: u64,
    /// Talks it refused or that failed (with the first error).
    pub failed: u64,
    pub first_error: Option<String>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// The largest lag of a send behind its schedule (paced sends only).
    pub max_lag: Duration,
}

impl Sent {
    pub fn rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64().max(1e-9)
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

/// Sends `count` talks to `to` at `rate` per second, each stamped with its send time (µs)
/// just before its request is written, over `conns` keep-alive connections.
pub async fn paced(
    addr: SocketAddr,
    token: &str,
    to: u64,
    label: &str,
    count: u64,
    rate: f64,
    conns: usize,
) -> Result<Sent> {
    let (tx, rx) = mpsc::channel::<(u64, Instant)>(conns * 4);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    for _ in 0..conns {
        let rx = rx.clone();
        let mut poster = Poster::new(addr, token);
        let label = label.to_owned();
        workers.push(tokio::spawn(async move {
            let mut sent = Sent::default();
            loop {
                let job = rx.lock().await.recv().await;
                let Some((n, due)) = job else { break };
                sent.max_lag = sent.max_lag.max(due.elapsed());
                match poster.post(to, &stamped_text(&label, n)).await {
                    Ok(_) => sent.accepted += 1,
                    Err(e) => {
                        sent.failed += 1;
                        sent.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            sent
        }));
    }
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
    let mut total = Sent::default();
    for w in workers {
        let s = w.await?;
        total.accepted += s.accepted;
        total.failed += s.failed;
        total.max_lag = total.max_lag.max(s.max_lag);
        if total.first_error.is_none() {
            total.first_error = s.first_error;
        }
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Sends `count` talks as fast as the relay takes them over `conns` keep-alive
/// connections; `to(n)` picks the recipient of talk n. `progress` counts accepted talks.
pub async fn flood(
    addr: SocketAddr,
    token: &str,
    count: u64,
    conns: usize,
    to: impl Fn(u64) -> u64 + Send + Sync + 'static,
    label: &str,
    progress: Arc<AtomicU64>,
) -> Result<Sent> {
    let next = Arc::new(AtomicU64::new(1));
    let to = Arc::new(to);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..conns {
        let next = next.clone();
        let to = to.clone();
        let progress = progress.clone();
        let mut poster = Poster::new(addr, token);
        let label = label.to_owned();
        workers.push(tokio::spawn(async move {
            let mut sent = Sent::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n > count {
                    break;
                }
                match poster.post(to(n), &format!("burst {label} {n}")).await {
                    Ok(_) => {
                        sent.accepted += 1;
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        sent.failed += 1;
                        sent.first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            sent
        }));
    }
    let mut total = Sent::default();
    for w in workers {
        let s = w.await?;
        total.accepted += s.accepted;
        total.failed += s.failed;
        if total.first_error.is_none() {
            total.first_error = s.first_error;
        }
    }
    total.elapsed = started.elapsed();
    Ok(total)
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
