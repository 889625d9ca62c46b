//! Lock-free metric primitives for the hot paths: fixed-bucket latency
//! [`Histogram`]s of `AtomicU64`, per-kind counter arrays, and
//! [`MeteredBroker`], a [`Broker`] layer ([`BrokerLayer`]) that counts failed calls by
//! operation. Nothing here locks or allocates when a value is recorded;
//! rendering (on a `/metrics` scrape) does.
//!
//! ```
//! use std::time::Duration;
//! use wshub_hub::metrics::Histogram;
//!
//! let h = Histogram::default();
//! h.observe(Duration::from_micros(300));
//! let mut text = String::new();
//! h.render(&mut text, "demo_seconds", "");
//! assert!(text.contains("demo_seconds_bucket{le=\"0.0005\"} 1"));
//! assert!(text.contains("demo_seconds_count 1"));
//! ```

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wshub_protocol::Method;

use crate::broker::{Broker, BrokerError, BrokerLayer, BrokerOp, Layered};

/// Upper bounds (seconds) of the latency buckets: 50 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// A latency histogram with the fixed [`LATENCY_BUCKETS`] (+Inf last);
/// `observe` is two relaxed atomic adds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        // `buckets` has one more slot than `LATENCY_BUCKETS` (+Inf).
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines of `name` with the
    /// extra `labels` (`k="v",...` or empty); no HELP/TYPE lines.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |v| v.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// Every client protocol method, in the order of [`method_index`].
pub const METHODS: [Method; 12] = [
    Method::Connect,
    Method::Subscribe,
    Method::Unsubscribe,
    Method::Publish,
    Method::Presence,
    Method::PresenceStats,
    Method::History,
    Method::Ping,
    Method::Send,
    Method::Rpc,
    Method::Refresh,
    Method::SubRefresh,
];

/// The slot of `m` in per-method arrays (`METHODS.len()` for a method added
/// later and not listed yet).
pub fn method_index(m: Method) -> usize {
    METHODS
        .iter()
        .position(|x| *x == m)
        .unwrap_or(METHODS.len())
}

/// Kinds of pushes fanned out to subscribers, the `type` label.
pub const PUSH_KINDS: [&str; 4] = ["publication", "join", "leave", "other"];

/// Message encodings on the wire, the `encoding` label (index:
/// `Encoding::is_binary() as usize`).
pub const ENCODINGS: [&str; 2] = ["json", "protobuf"];

/// Broker operations, the `op` label of broker errors.
pub const BROKER_OPS: [&str; 18] = [
    "start",
    "close",
    "health",
    "publish",
    "publish_join",
    "publish_leave",
    "publish_control",
    "subscribe",
    "unsubscribe",
    "history",
    "remove_history",
    "add_presence",
    "remove_presence",
    "presence",
    "presence_stats",
    "register_node",
    "unregister_node",
    "nodes",
];

/// Failed broker calls by operation (index into [`BROKER_OPS`]).
#[derive(Debug, Default)]
pub struct BrokerErrors(pub [AtomicU64; BROKER_OPS.len()]);

impl BrokerErrors {
    /// Failed calls of `op` so far (0 for an unknown op).
    pub fn get(&self, op: &str) -> u64 {
        BROKER_OPS
            .iter()
            .position(|o| *o == op)
            .and_then(|i| self.0.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// The [`BrokerLayer`] that counts the broker calls that fail, by
/// operation, and forwards every call unchanged.
pub struct BrokerErrorCounter {
    errors: Arc<BrokerErrors>,
}

/// A [`Broker`] that forwards every call and counts the ones that fail.
pub type MeteredBroker = Layered<BrokerErrorCounter>;

impl MeteredBroker {
    /// Wraps `inner`, counting into `errors`.
    pub fn new(inner: Arc<dyn Broker>, errors: Arc<BrokerErrors>) -> Self {
        BrokerErrorCounter { errors }.over(inner)
    }
}

impl BrokerLayer for BrokerErrorCounter {
    fn observe(&self, op: BrokerOp, result: Result<(), &BrokerError>) {
        if let Err(e) = result {
            if let Some(c) = self.errors.0.get(op.index()) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(op = op.name(), error = %e, "broker call failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{
        BrokerEventHandler, ClientInfo, MemoryBroker, MemoryBrokerConfig, Publication,
        PublishOptions, StreamPosition,
    };
    use bytes::Bytes;

    #[test]
    fn broker_error_slots_follow_the_broker_ops() {
        assert_eq!(BROKER_OPS.len(), BrokerOp::ALL.len());
        for op in BrokerOp::ALL {
            assert_eq!(BROKER_OPS[op.index()], op.name());
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut s = String::new();
        h.render(&mut s, "x_seconds", "method=\"publish\"");
        assert!(s.contains("x_seconds_bucket{method=\"publish\",le=\"0.00005\"} 1"));
        assert!(s.contains("x_seconds_bucket{method=\"publish\",le=\"0.0025\"} 1"));
        assert!(s.contains("x_seconds_bucket{method=\"publish\",le=\"0.005\"} 2"));
        assert!(s.contains("x_seconds_bucket{method=\"publish\",le=\"10\"} 2"));
        assert!(s.contains("x_seconds_bucket{method=\"publish\",le=\"+Inf\"} 3"));
        assert!(s.contains("x_seconds_count{method=\"publish\"} 3"));
        assert!(
            s.contains("x_seconds_sum{method=\"publish\"} 60.00301"),
            "{s}"
        );
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn every_method_has_its_own_slot() {
        for (i, m) in METHODS.iter().enumerate() {
            assert_eq!(method_index(*m), i);
        }
    }

    #[tokio::test]
    async fn metered_broker_counts_failed_calls_by_operation() {
        let errors = Arc::new(BrokerErrors::default());
        let inner: Arc<dyn Broker> = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
        let b = MeteredBroker::new(inner, errors.clone());
        assert_eq!(b.name(), "memory");
        // Used before start: every call fails with NotStarted (or succeeds
        // for the memory broker's local ones); close makes the rest fail.
        struct Nop;
        impl BrokerEventHandler for Nop {
            fn on_publication(&self, _: &str, _: Arc<Publication>, _: &StreamPosition) {}
            fn on_join(&self, _: &str, _: &ClientInfo) {}
            fn on_leave(&self, _: &str, _: &ClientInfo) {}
            fn on_control(&self, _: Bytes) {}
        }
        b.start(Arc::new(Nop)).await.unwrap();
        b.publish("ch", Publication::new("1"), PublishOptions::default())
            .await
            .unwrap();
        assert_eq!(errors.get("publish"), 0);
        assert!(b.start(Arc::new(Nop)).await.is_err());
        assert_eq!(errors.get("start"), 1);
        b.close().await.unwrap();
        assert!(b
            .publish("ch", Publication::new("2"), PublishOptions::default())
            .await
            .is_err());
        assert_eq!(errors.get("publish"), 1);
    }
}
