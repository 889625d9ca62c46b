//! Puts one channel's publications back into offset order.
//!
//! Two publishers (on one node or several) take offsets 5 and 6 with
//! compare-and-set in JetStream and then publish on core NATS; the winner of
//! 6 may reach the server first. The reader keeps the next offset it
//! expects; a publication that comes early is held until the missing ones
//! arrive or `window` has passed (a publisher died between the
//! compare-and-set and its core publish), and then the held ones are
//! delivered anyway, in order: the gateway sees the gap in the offsets and
//! tells its clients. A publication behind the expected offset (it came
//! after its successors were given up on) is dropped: delivering it would
//! break the order, and the gateway already reported the gap.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use wshub_hub::broker::{Publication, StreamPosition};

/// Most publications held for one channel; beyond it the hold is given up.
const MAX_HELD: usize = 10_000;

pub(crate) type Item = (Publication, StreamPosition);

/// The reorder state of one subscribed channel.
#[derive(Debug)]
pub(crate) struct Reorder {
    window: Duration,
    epoch: String,
    /// The next offset to deliver; `None` until the first publication.
    next: Option<u64>,
    held: BTreeMap<u64, Item>,
    deadline: Option<Instant>,
}

impl Reorder {
    pub fn new(window: Duration) -> Self {
        Reorder {
            window,
            epoch: String::new(),
            next: None,
            held: BTreeMap::new(),
            deadline: None,
        }
    }

    /// When [`Reorder::expire`] must be called.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Forgets the expected offset (after an interruption of delivery, when
    /// publications were lost for sure), delivering what is held.
    pub fn reset(&mut self, out: &mut Vec<Item>) {
        self.flush(out);
        self.next = None;
    }

    /// A publication arrived; what can be delivered now goes to `out`.
    pub fn push(&mut self, p: Publication, pos: StreamPosition, now: Instant, out: &mut Vec<Item>) {
        if p.offset == 0 {
            out.push((p, pos));
            return;
        }
        if pos.epoch != self.epoch {
            // A new stream: whatever was expected of the old one is moot.
            self.flush(out);
            self.epoch = pos.epoch.clone();
            self.next = None;
        }
        let next = match self.next {
            None => p.offset,
            Some(n) => n,
        };
        if p.offset < next {
            tracing::debug!(
                offset = p.offset,
                next,
                "late publication dropped (gap already given up)"
            );
            return;
        }
        if p.offset > next {
            self.held.insert(p.offset, (p, pos));
            if self.held.len() > MAX_HELD {
                self.flush(out);
            } else if self.deadline.is_none() {
                self.deadline = Some(now + self.window);
            }
            return;
        }
        self.next = Some(p.offset + 1);
        out.push((p, pos));
        self.drain(out);
    }

    /// The hold window passed: delivers everything held, in order.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Item>) {
        if self.deadline.is_some_and(|d| d <= now) {
            if let Some(first) = self.held.keys().next() {
                tracing::debug!(
                    expected = ?self.next,
                    got = first,
                    "publications missing after the hold window; delivering with a gap"
                );
            }
            self.flush(out);
        }
    }

    fn drain(&mut self, out: &mut Vec<Item>) {
        while let Some(n) = self.next {
            match self.held.remove(&n) {
                Some(item) => {
                    out.push(item);
                    self.next = Some(n + 1);
                }
                None => break,
            }
        }
        if self.held.is_empty() {
            self.deadline = None;
        }
    }

    fn flush(&mut self, out: &mut Vec<Item>) {
        let held = std::mem::take(&mut self.held);
        for (offset, item) in held {
            self.next = Some(offset + 1);
            out.push(item);
        }
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(offset: u64, epoch: &str) -> (Publication, StreamPosition) {
        let mut p = Publication::new("x");
        p.offset = offset;
        (p, StreamPosition::new(offset, epoch))
    }

    fn offsets(out: &[Item]) -> Vec<u64> {
        out.iter().map(|(p, _)| p.offset).collect()
    }

    #[test]
    fn early_ones_wait_for_the_missing() {
        let now = Instant::now();
        let mut r = Reorder::new(Duration::from_secs(1));
        let mut out = Vec::new();
        for o in [1, 3, 4] {
            let (p, pos) = item(o, "e");
            r.push(p, pos, now, &mut out);
        }
        assert_eq!(offsets(&out), vec![1]);
        assert!(r.deadline().is_some());
        let (p, pos) = item(2, "e");
        r.push(p, pos, now, &mut out);
        assert_eq!(offsets(&out), vec![1, 2, 3, 4]);
        assert!(r.deadline().is_none());
    }

    #[test]
    fn a_gap_is_given_up_after_the_window() {
        let now = Instant::now();
        let mut r = Reorder::new(Duration::from_secs(1));
        let mut out = Vec::new();
        for o in [1, 3, 5, 4] {
            let (p, pos) = item(o, "e");
            r.push(p, pos, now, &mut out);
        }
        r.expire(now + Duration::from_millis(500), &mut out);
        assert_eq!(offsets(&out), vec![1]);
        r.expire(now + Duration::from_secs(1), &mut out);
        assert_eq!(offsets(&out), vec![1, 3, 4, 5]);
        let (p, pos) = item(2, "e");
        r.push(p, pos, now, &mut out);
        assert_eq!(offsets(&out), vec![1, 3, 4, 5], "late one dropped");
        let (p, pos) = item(6, "e");
        r.push(p, pos, now, &mut out);
        assert_eq!(offsets(&out), vec![1, 3, 4, 5, 6]);
    }

    #[test]
    fn no_history_and_new_epochs_pass_through() {
        let now = Instant::now();
        let mut r = Reorder::new(Duration::from_secs(1));
        let mut out = Vec::new();
        for (o, e) in [(5, "a"), (0, ""), (7, "a"), (1, "b")] {
            let (p, pos) = item(o, e);
            r.push(p, pos, now, &mut out);
        }
        assert_eq!(
            offsets(&out),
            vec![5, 0, 7, 1],
            "7 held, then flushed by the new epoch"
        );
        let mut out = Vec::new();
        r.reset(&mut out);
        let (p, pos) = item(9, "b");
        r.push(p, pos, now, &mut out);
        assert_eq!(offsets(&out), vec![9], "after a reset anything goes");
    }
}
