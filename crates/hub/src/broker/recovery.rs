//! Recovery of missed publications after a reconnect: every publication or a
//! clear "could not".

use std::sync::Arc;

use super::StreamPosition;
use super::{Broker, BrokerError, HistoryFilter, HistoryOptions, HistoryResult, Publication};

/// The outcome of a recovery attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Every publication after the client's position, oldest first, when
    /// `recovered`; always empty otherwise (never a partial list).
    pub publications: Vec<Arc<Publication>>,
    /// Whether the client's state is complete after applying
    /// `publications`. When false the client must reload its state from the
    /// application (and continue from `position`).
    pub recovered: bool,
    /// The stream's current top position, to hand to the client.
    pub position: StreamPosition,
}

/// How [`recover`] asks the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoverOptions {
    /// Most publications one recovery may return (Centrifugo's
    /// `client_recovery_max_publication_limit`, default 300). If more were
    /// missed, the recovery fails rather than returning part of them.
    pub max_publications: usize,
    /// The channel's history settings.
    pub history: HistoryOptions,
}

impl Default for RecoverOptions {
    fn default() -> Self {
        RecoverOptions {
            max_publications: 300,
            history: HistoryOptions::default(),
        }
    }
}

impl RecoverOptions {
    /// Sets [`RecoverOptions::max_publications`].
    pub fn max_publications(mut self, v: usize) -> Self {
        self.max_publications = v;
        self
    }
    /// Sets [`RecoverOptions::history`].
    pub fn history(mut self, v: HistoryOptions) -> Self {
        self.history = v;
        self
    }
}

/// Recovers what a client missed in `channel` since `since` (the last
/// position it saw).
///
/// Recovered means: same epoch, and every publication from `since.offset + 1`
/// up to the stream's top is still in history and fits in
/// `max_publications`; the publications are then returned in offset order.
/// Otherwise (epoch changed because the stream was lost, publications
/// trimmed by size or TTL, too many missed, or a position from the future)
/// nothing is returned and `recovered` is false. There is never a silent gap.
///
/// Cancel safety: safe; it only reads.
pub async fn recover(
    broker: &dyn Broker,
    channel: &str,
    since: &StreamPosition,
    options: &RecoverOptions,
) -> Result<Recovery, BrokerError> {
    let filter = HistoryFilter::since(since.clone(), Some(options.max_publications));
    let result = broker
        .history(channel, filter, options.history.clone())
        .await?;
    Ok(evaluate_recovery(since, result))
}

/// Decides a recovery from the answer of a forward history call made with
/// `since` (the rule of [`recover`], usable with a history result obtained
/// otherwise).
pub fn evaluate_recovery(since: &StreamPosition, result: HistoryResult) -> Recovery {
    let HistoryResult {
        publications,
        position,
    } = result;
    let recovered = since.epoch == position.epoch
        && since.offset <= position.offset
        && is_exact_continuation(since.offset, &publications, position.offset);
    Recovery {
        publications: if recovered { publications } else { Vec::new() },
        recovered,
        position,
    }
}

/// Whether `pubs` are exactly offsets `after + 1 ..= top`, in order.
fn is_exact_continuation(after: u64, pubs: &[Arc<Publication>], top: u64) -> bool {
    let mut expected = after;
    for p in pubs {
        expected += 1;
        if p.offset != expected {
            return false;
        }
    }
    expected == top
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pubs(offsets: impl IntoIterator<Item = u64>) -> Vec<Arc<Publication>> {
        offsets
            .into_iter()
            .map(|offset| {
                Arc::new(Publication {
                    offset,
                    ..Publication::default()
                })
            })
            .collect()
    }

    fn result(offsets: impl IntoIterator<Item = u64>, top: u64, epoch: &str) -> HistoryResult {
        HistoryResult {
            publications: pubs(offsets),
            position: StreamPosition::new(top, epoch),
        }
    }

    #[test]
    fn contiguous_tail_is_recovered() {
        let r = evaluate_recovery(&StreamPosition::new(2, "e"), result(3..=5, 5, "e"));
        assert!(r.recovered);
        let got: Vec<u64> = r.publications.iter().map(|p| p.offset).collect();
        assert_eq!(got, vec![3, 4, 5]);
        assert_eq!(r.position, StreamPosition::new(5, "e"));
    }

    #[test]
    fn at_top_with_nothing_missed_is_recovered() {
        let r = evaluate_recovery(&StreamPosition::new(5, "e"), result([], 5, "e"));
        assert!(r.recovered);
        assert!(r.publications.is_empty());
    }

    #[test]
    fn other_epoch_is_not_recovered_and_returns_nothing() {
        let r = evaluate_recovery(&StreamPosition::new(2, "old"), result(3..=5, 5, "new"));
        assert!(!r.recovered);
        assert!(r.publications.is_empty());
        assert_eq!(r.position, StreamPosition::new(5, "new"));
    }

    #[test]
    fn trimmed_front_is_not_recovered() {
        let r = evaluate_recovery(&StreamPosition::new(1, "e"), result(3..=5, 5, "e"));
        assert!(!r.recovered);
        assert!(r.publications.is_empty());
    }

    #[test]
    fn gap_inside_or_short_tail_is_not_recovered() {
        let r = evaluate_recovery(&StreamPosition::new(1, "e"), result([2, 3, 5], 5, "e"));
        assert!(!r.recovered, "hole at 4");
        let r = evaluate_recovery(&StreamPosition::new(1, "e"), result([2, 3], 5, "e"));
        assert!(!r.recovered, "limit cut the tail");
        let r = evaluate_recovery(&StreamPosition::new(1, "e"), result([], 5, "e"));
        assert!(!r.recovered, "all expired");
    }

    #[test]
    fn position_from_the_future_is_not_recovered() {
        let r = evaluate_recovery(&StreamPosition::new(9, "e"), result([], 5, "e"));
        assert!(!r.recovered);
    }
}
