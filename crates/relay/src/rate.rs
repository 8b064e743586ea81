//! Token buckets for the rate limits: per connection, per token, and per peer address.
//!
//! Time is tokio's clock ([`tokio::time::Instant`]), so that tests can run on a paused
//! clock instead of sleeping.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use tokio::time::Instant;

/// A rate limit: `per_second` on average, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    pub const fn new(per_second: f64, burst: u32) -> Self {
        RateLimit { per_second, burst }
    }

    /// No limit at all (benchmarks).
    pub const fn unlimited() -> Self {
        RateLimit { per_second: f64::INFINITY, burst: u32::MAX }
    }
}

#[derive(Clone, Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(limit: RateLimit) -> Self {
        Self::new_at(limit, Instant::now())
    }

    pub fn new_at(limit: RateLimit, now: Instant) -> Self {
        TokenBucket { limit, tokens: f64::from(limit.burst), last: now }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    pub fn try_take_at(&mut self, now: Instant) -> bool {
        if self.limit.per_second.is_infinite() {
            return true;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a token could be taken now, without taking it.
    pub fn has_token_at(&mut self, now: Instant) -> bool {
        if self.limit.per_second.is_infinite() {
            return true;
        }
        self.refill(now);
        self.tokens >= 1.0
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
    }

    /// Whether the bucket is full again (so an idle entry can be forgotten).
    pub fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.limit.per_second >= f64::from(self.limit.burst)
    }
}

/// Past this many entries, the full (idle) buckets of a [`Buckets`] are forgotten.
const MAX_IDLE_ENTRIES: usize = 10_000;

/// One bucket per key (a user, a peer address), made full on first use and forgotten
/// once full again when the map grows large.
pub struct Buckets<K> {
    limit: RateLimit,
    map: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    pub fn new(limit: RateLimit) -> Self {
        Buckets { limit, map: Mutex::new(HashMap::new()) }
    }

    fn with<R>(&self, key: &K, f: impl FnOnce(&mut TokenBucket, Instant) -> R) -> R {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_IDLE_ENTRIES {
            map.retain(|_, b| !b.is_full_at(now));
        }
        let bucket = map.entry(key.clone()).or_insert_with(|| TokenBucket::new_at(self.limit, now));
        f(bucket, now)
    }

    /// Takes a token from `key`'s bucket if it has one.
    pub fn try_take(&self, key: &K) -> bool {
        self.with(key, |b, now| b.try_take_at(now))
    }

    /// Whether `key`'s bucket has a token, without taking it.
    pub fn has_token(&self, key: &K) -> bool {
        self.with(key, |b, now| b.has_token_at(now))
    }
}

/// Events that were not logged one by one: how many, and the peer of the last one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppressed {
    pub count: u64,
    pub last: String,
}

/// Holds a kind of log line (a failed login, a refused connection) to a few a second:
/// the first `per_second` of each second are logged, the rest counted, and the count
/// comes back as one summary once that second is over.
pub struct LogThrottle {
    per_second: u32,
    state: Mutex<ThrottleState>,
}

struct ThrottleState {
    window: Option<Instant>,
    logged: u32,
    suppressed: Option<Suppressed>,
}

impl LogThrottle {
    pub fn new(per_second: u32) -> Self {
        LogThrottle { per_second, state: Mutex::new(ThrottleState { window: None, logged: 0, suppressed: None }) }
    }

    /// One event from `who`: whether to log it now, and the summary of the last second's
    /// unlogged ones if that second is over.
    pub fn event(&self, who: &str) -> (bool, Option<Suppressed>) {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let summary = Self::roll(&mut st, now);
        if st.logged < self.per_second {
            st.logged += 1;
            return (true, summary);
        }
        let s = st.suppressed.get_or_insert_with(|| Suppressed { count: 0, last: String::new() });
        s.count += 1;
        s.last = who.to_owned();
        (false, summary)
    }

    /// The summary of unlogged events, once their second is over (a timer calls this).
    pub fn flush(&self) -> Option<Suppressed> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Self::roll(&mut st, Instant::now())
    }

    fn roll(st: &mut ThrottleState, now: Instant) -> Option<Suppressed> {
        let over = st.window.is_none_or(|w| now.saturating_duration_since(w) >= std::time::Duration::from_secs(1));
        if !over {
            return None;
        }
        st.window = Some(now);
        st.logged = 0;
        st.suppressed.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new_at(RateLimit::new(10.0, 5), t0);
        for _ in 0..5 {
            assert!(b.try_take_at(t0));
        }
        assert!(!b.try_take_at(t0));
        // 100 ms at 10/s is one more token.
        assert!(b.try_take_at(t0 + Duration::from_millis(100)));
        assert!(!b.try_take_at(t0 + Duration::from_millis(100)));
        // Refill stops at the burst.
        let later = t0 + Duration::from_secs(60);
        assert!(b.is_full_at(later));
        for _ in 0..5 {
            assert!(b.try_take_at(later));
        }
        assert!(!b.try_take_at(later));
    }

    /// On tokio's paused clock: the bucket refills only as the clock advances.
    #[tokio::test(start_paused = true)]
    async fn keyed_buckets_follow_tokios_clock() {
        let buckets = Buckets::new(RateLimit::new(2.0, 3));
        let (a, b) = ("10.0.0.1", "10.0.0.2");
        for _ in 0..3 {
            assert!(buckets.try_take(&a));
        }
        assert!(!buckets.try_take(&a));
        assert!(!buckets.has_token(&a));
        // Another key has its own bucket.
        assert!(buckets.try_take(&b));
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(!buckets.has_token(&a));
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(buckets.has_token(&a), "half a second at 2/s is a token");
        assert!(buckets.try_take(&a));
        assert!(!buckets.try_take(&a));
        tokio::time::advance(Duration::from_secs(3600)).await;
        for _ in 0..3 {
            assert!(buckets.try_take(&a));
        }
        assert!(!buckets.try_take(&a), "refill stops at the burst");
    }

    #[tokio::test(start_paused = true)]
    async fn log_lines_are_held_to_a_few_a_second_and_summed_up() {
        let t = LogThrottle::new(3);
        let logged = (0..10).filter(|i| t.event(&format!("10.0.0.{i}")).0).count();
        assert_eq!(logged, 3);
        assert_eq!(t.flush(), None, "the second is not over");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(t.flush(), Some(Suppressed { count: 7, last: "10.0.0.9".into() }));
        assert_eq!(t.flush(), None);
        // A new second logs again; its first event carries nothing left over.
        assert_eq!(t.event("x"), (true, None));
    }

    #[test]
    fn unlimited_never_refuses() {
        let mut b = TokenBucket::new(RateLimit::unlimited());
        for _ in 0..10_000 {
            assert!(b.try_take());
        }
    }
}
