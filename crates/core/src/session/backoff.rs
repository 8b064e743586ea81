//! How long to wait before the next connection attempt (PROTOCOL.md §4).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Exponential backoff with full jitter above a floor: attempt `n` waits a random time
/// between `min` and `min · 2^(n-1)` (capped at `max`). The floor is kept because a
/// server that is down must never see attempts closer together than `min`, whatever
/// the dice say; the first attempt after a drop waits exactly `min`.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    rng: StdRng,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Backoff { min, max: max.max(min), rng }
    }

    /// The largest delay attempt `attempt` (from 1) may wait.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        self.min.saturating_mul(1u32 << doublings.min(31)).min(self.max)
    }

    /// The delay before attempt `attempt` (from 1).
    pub fn delay(&mut self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        if ceiling <= self.min {
            return self.min;
        }
        // At most `max - min`; a spread beyond u64 milliseconds (585 million years) is that.
        let spread = u64::try_from((ceiling - self.min).as_millis()).unwrap_or(u64::MAX);
        self.min + Duration::from_millis(self.rng.random_range(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_between_floor_and_ceiling_and_the_ceiling_doubles_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), None);
        let ceilings: Vec<u64> = (1..=9).map(|a| b.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        for attempt in 1..200 {
            let d = b.delay(attempt);
            assert!(d >= Duration::from_secs(1), "attempt {attempt}: {d:?}");
            assert!(d <= b.ceiling(attempt), "attempt {attempt}: {d:?}");
        }
        assert_eq!(b.delay(1), Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_clients_apart() {
        let mut a = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), Some(1));
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60), Some(2));
        let da: Vec<_> = (1..10).map(|n| a.delay(n)).collect();
        let db: Vec<_> = (1..10).map(|n| b.delay(n)).collect();
        assert_ne!(da, db);
    }
}
