//! Token buckets for the per-connection and per-token rate limits.

use std::time::Instant;

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
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again (so an idle entry can be forgotten).
    pub fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.limit.per_second >= f64::from(self.limit.burst)
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

    #[test]
    fn unlimited_never_refuses() {
        let mut b = TokenBucket::new(RateLimit::unlimited());
        for _ in 0..10_000 {
            assert!(b.try_take());
        }
    }
}
