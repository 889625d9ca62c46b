//! Reconnect delays: exponential backoff with full jitter.

use std::time::Duration;

/// The delay before reconnect attempt `attempt` (0 for the first), as the
/// Centrifugo SDKs compute it: a uniformly random share of
/// `min(max, min * 2^attempt)` added to `min`, capped at `max`. So the
/// delay always lies in `[min, max]` and its ceiling doubles per attempt.
pub fn reconnect_delay(attempt: u32, min: Duration, max: Duration) -> Duration {
    let max = max.max(min);
    let ceiling = min
        .checked_mul(1u32 << attempt.min(31))
        .unwrap_or(max)
        .min(max);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    let jitter = if nanos == 0 {
        0
    } else {
        random_u64() % (nanos + 1)
    };
    (min + Duration::from_nanos(jitter)).min(max)
}

fn random_u64() -> u64 {
    // Jitter needs no cryptographic quality, but the OS source is at hand
    // and cheap at reconnect rates; fall back to the clock if it fails.
    getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0)
    })
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
