//! # wshub-backoff: exponential backoff with full jitter
//!
//! One retry schedule for the whole workspace (the client's reconnects, the
//! Redis and NATS brokers' reconnects and retries): attempt `n` (0 for the
//! first) waits a uniformly random delay in `[0, min(cap, base · 2^n)]`, the
//! "full jitter" of the AWS Architecture Blog's *Exponential Backoff and
//! Jitter*. The ceiling doubles per attempt up to `cap`; the randomness
//! spreads the retries of many peers that lost one server at the same time,
//! so they do not come back in lockstep.
//!
//! ```
//! use std::time::Duration;
//! use wshub_backoff::Backoff;
//!
//! let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
//! let first = b.next_delay(); // in [0, 50 ms]
//! let second = b.next_delay(); // in [0, 100 ms]
//! assert!(first <= Duration::from_millis(50) && second <= Duration::from_millis(100));
//! b.reset(); // after a success
//! ```
//!
//! The jitter needs no cryptographic quality: it comes from `fastrand`'s
//! thread-local generator (seeded from the OS).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::time::Duration;

/// The ceiling of attempt `attempt`: `min(cap, base · 2^attempt)`, without
/// overflow for any `attempt`.
pub fn ceiling(attempt: u32, base: Duration, cap: Duration) -> Duration {
    base.checked_mul(1u32 << attempt.min(31))
        .map_or(cap, |d| d.min(cap))
}

/// A full-jitter delay for attempt `attempt` (0 for the first): uniformly
/// random in `[0, min(cap, base · 2^attempt)]`.
pub fn full_jitter(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let top = ceiling(attempt, base, cap);
    let nanos = u64::try_from(top.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// A retry schedule: [`full_jitter`] delays with a counter of failed
/// attempts, [`reset`](Backoff::reset) after a success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A schedule whose first delay is at most `base`, doubling per attempt
    /// up to `cap` (a `cap` below `base` is raised to `base`).
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The delay before the next attempt; counts the attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = full_jitter(self.attempt, self.base, self.cap);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Delays counted so far since the last [`reset`](Backoff::reset).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over from `base` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_are_full_jitter_under_a_doubling_ceiling() {
        let (base, cap) = (10 * MS, 1000 * MS);
        for attempt in 0..40 {
            let top = (base * 2u32.pow(attempt.min(20))).min(cap);
            assert_eq!(ceiling(attempt, base, cap), top);
            let draws: Vec<Duration> = (0..400).map(|_| full_jitter(attempt, base, cap)).collect();
            assert!(draws.iter().all(|d| *d <= top), "attempt {attempt}");
            // Full jitter: the whole range is used, short waits included.
            assert!(draws.iter().any(|d| *d < top / 4), "attempt {attempt}");
            assert!(draws.iter().any(|d| *d > top * 3 / 4), "attempt {attempt}");
        }
    }

    #[test]
    fn huge_attempts_and_bounds_do_not_overflow() {
        assert_eq!(
            ceiling(u32::MAX, Duration::MAX, Duration::MAX),
            Duration::MAX
        );
        assert!(full_jitter(u32::MAX, Duration::MAX, Duration::MAX) <= Duration::MAX);
        assert_eq!(
            full_jitter(5, Duration::ZERO, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn backoff_counts_attempts_and_resets() {
        let mut b = Backoff::new(50 * MS, 2000 * MS);
        for n in 0..12u32 {
            assert_eq!(b.attempts(), n);
            let top = (50 * MS * 2u32.pow(n)).min(2000 * MS);
            assert!(b.next_delay() <= top);
        }
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= 50 * MS);
        // A cap below the base is raised to it.
        let mut low = Backoff::new(50 * MS, MS);
        assert!((0..100).all(|_| low.next_delay() <= 50 * MS));
    }
}
