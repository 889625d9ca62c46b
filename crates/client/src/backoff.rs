//! Reconnect delays: exponential backoff with full jitter.

use std::time::Duration;

/// The delay before reconnect attempt `attempt` (0 for the first), as the
/// Centrifugo SDKs compute it: `min` plus a full-jitter share
/// ([`wshub_backoff::full_jitter`], uniformly random in
/// `[0, min(max, min * 2^attempt)]`), capped at `max`. So the delay always
/// lies in `[min, max]` ([`ClientConfig::min_reconnect_delay`] and
/// [`ClientConfig::max_reconnect_delay`]) and its ceiling doubles per
/// attempt.
///
/// [`ClientConfig::min_reconnect_delay`]: crate::ClientConfig::min_reconnect_delay
/// [`ClientConfig::max_reconnect_delay`]: crate::ClientConfig::max_reconnect_delay
pub fn reconnect_delay(attempt: u32, min: Duration, max: Duration) -> Duration {
    let max = max.max(min);
    min.saturating_add(wshub_backoff::full_jitter(attempt, min, max))
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_between_min_and_max() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(20));
        for attempt in 0..100 {
            for _ in 0..50 {
                let d = reconnect_delay(attempt, min, max);
                assert!(d >= min && d <= max, "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn ceiling_doubles_per_attempt() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(60));
        for _ in 0..200 {
            assert!(reconnect_delay(0, min, max) <= Duration::from_millis(200));
            assert!(reconnect_delay(2, min, max) <= Duration::from_millis(500));
        }
        // With enough draws, later attempts do wait longer than early ones can.
        let late = (0..200)
            .map(|_| reconnect_delay(8, min, max))
            .max()
            .unwrap();
        assert!(late > Duration::from_millis(500), "{late:?}");
    }

    #[test]
    fn min_above_max_is_clamped() {
        let d = reconnect_delay(3, Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(d, Duration::from_secs(5));
    }
}
