//! Waiting for a condition with a deadline: the condition is checked every `every` until
//! it holds or `bound` has passed. Bounds are generous (a slow, shared machine passes);
//! they are not timing claims.

use std::time::Duration;

/// How long to wait, and how often to look.
#[derive(Clone, Copy, Debug)]
pub struct Poll {
    pub bound: Duration,
    pub every: Duration,
}

impl Poll {
    /// Up to `bound`, looking every 100 ms.
    pub const fn up_to(bound: Duration) -> Poll {
        Poll { bound, every: Duration::from_millis(100) }
    }

    pub const fn every(self, every: Duration) -> Poll {
        Poll { bound: self.bound, every }
    }

    /// Calls `check` until it gives Some; None once `bound` has passed (blocking).
    pub fn check<T>(&self, mut check: impl FnMut() -> Option<T>) -> Option<T> {
        let started = std::time::Instant::now();
        loop {
            if let Some(t) = check() {
                return Some(t);
            }
            if started.elapsed() > self.bound {
                return None;
            }
            std::thread::sleep(self.every);
        }
    }

    /// [`Poll::check`], or a panic naming `what` did not happen.
    pub fn until<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> T {
        self.check(check).unwrap_or_else(|| panic!("timed out after {:?} waiting for {what}", self.bound))
    }

    /// [`Poll::check`] in async code (tokio's clock: a paused one advances).
    pub async fn check_async<T>(&self, mut check: impl FnMut() -> Option<T>) -> Option<T> {
        self.check_with(|| std::future::ready(check())).await
    }

    /// [`Poll::check_async`] with a check that is async itself.
    pub async fn check_with<T>(&self, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
        let started = tokio::time::Instant::now();
        loop {
            if let Some(t) = check().await {
                return Some(t);
            }
            if started.elapsed() > self.bound {
                return None;
            }
            tokio::time::sleep(self.every).await;
        }
    }

    /// [`Poll::check_async`], or a panic naming `what` did not happen.
    pub async fn until_async<T>(&self, what: &str, check: impl FnMut() -> Option<T>) -> T {
        match self.check_async(check).await {
            Some(t) => t,
            None => panic!("timed out after {:?} waiting for {what}", self.bound),
        }
    }

    /// [`Poll::check_with`], or a panic naming `what` did not happen.
    pub async fn until_with<T>(&self, what: &str, check: impl AsyncFnMut() -> Option<T>) -> T {
        match self.check_with(check).await {
            Some(t) => t,
            None => panic!("timed out after {:?} waiting for {what}", self.bound),
        }
    }

    /// Watches a count grow: returns it once it reaches `want`, once it has not changed for
    /// `quiet`, or when `bound` has passed, whichever comes first.
    pub async fn settle(&self, want: u64, quiet: Duration, mut count: impl FnMut() -> u64) -> u64 {
        let mut last = (count(), tokio::time::Instant::now());
        let started = last.1;
        loop {
            if last.0 >= want || last.1.elapsed() >= quiet || started.elapsed() > self.bound {
                return last.0;
            }
            tokio::time::sleep(self.every).await;
            let n = count();
            if n != last.0 {
                last = (n, tokio::time::Instant::now());
            }
        }
    }
}

/// The first message on `rx` that `pick` takes, within `bound` (tokio's clock); what a
/// lagging receiver lost is skipped. Panics naming `what` when none comes in time or the
/// channel closes.
pub async fn next_picked<E: Clone, T>(
    rx: &mut tokio::sync::broadcast::Receiver<E>,
    bound: Duration,
    what: &str,
    mut pick: impl FnMut(&E) -> Option<T>,
) -> T {
    use tokio::sync::broadcast::error::RecvError;
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(message) => {
                    if let Some(t) = pick(&message) {
                        return t;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(e) => panic!("waiting for {what}: {e}"),
            }
        }
    };
    tokio::time::timeout(bound, wait).await.unwrap_or_else(|_| panic!("timed out after {bound:?} waiting for {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_until_it_holds_or_the_bound() {
        let mut n = 0;
        let p = Poll::up_to(Duration::from_secs(5)).every(Duration::from_millis(1));
        assert_eq!(
            p.check(|| {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        assert_eq!(Poll::up_to(Duration::from_millis(5)).every(Duration::from_millis(1)).check(|| None::<()>), None);
    }

    #[tokio::test]
    async fn settles_on_want_or_quiet() {
        let p = Poll::up_to(Duration::from_secs(5)).every(Duration::from_millis(1));
        let mut n = 0;
        let count = || {
            n += 1;
            n
        };
        assert_eq!(p.settle(10, Duration::from_secs(5), count).await, 10);
        assert_eq!(p.settle(10, Duration::from_millis(20), || 4).await, 4);
    }
}
