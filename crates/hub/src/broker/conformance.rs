//! The behaviour every [`Broker`] must have, as a reusable test suite.
//!
//! A broker crate implements [`Harness`] (how to get a started node on the
//! backend under test and how to let time pass) and generates one test per
//! case with [`broker_conformance_tests!`](crate::broker_conformance_tests):
//!
//! ```ignore
//! wshub_hub::broker_conformance_tests!(
//!     attr = tokio::test(start_paused = true),
//!     harness = MemoryHarness,
//! );
//! ```
//!
//! Available with the `conformance` feature of `wshub-hub` (and in its own
//! tests). Cases panic on failure. TTLs are whole seconds so that backends
//! with second precision pass; with real time (Redis, NATS) the suite takes
//! some seconds. Channel names are unique per call, so cases may share a
//! backend. Negative checks ("nothing was delivered") publish a marker on a
//! subscribed channel and wait for it, which assumes that a backend delivers
//! one node's messages to another node in the order they were sent (true of
//! Redis PUB/SUB and NATS core on one connection).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::memory::new_epoch;
use super::{
    recover, Broker, BrokerError, BrokerEventHandler, ClientInfo, HistoryFilter, HistoryOptions,
    NodeInfo, Publication, PublishOptions, RecoverOptions, Recovery, StreamPosition,
};

/// How the suite reaches the backend under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A started node on the backend, pushing its events into `handler`.
    async fn node(&self, handler: Arc<dyn BrokerEventHandler>) -> Arc<dyn Broker>;
    /// Lets `d` pass for the backend's clocks (`tokio::time::advance` under
    /// paused time, a real sleep for an external backend).
    async fn advance(&self, d: Duration);
    /// Whether every [`Harness::node`] is a node of one shared backend (Redis,
    /// NATS). `false` for the memory broker: each node is its own backend.
    fn shared_backend(&self) -> bool;
    /// Makes a shared backend lose all its data, as a restart without
    /// persistence would. Returns `false` if the harness cannot.
    async fn lose_data(&self) -> bool {
        false
    }
}

/// One event pushed into a [`Recorder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// [`BrokerEventHandler::on_publication`].
    Publication {
        /// The channel.
        channel: String,
        /// The publication.
        publication: Arc<Publication>,
        /// The position given with it.
        position: StreamPosition,
    },
    /// [`BrokerEventHandler::on_join`].
    Join {
        /// The channel.
        channel: String,
        /// Who joined.
        info: ClientInfo,
    },
    /// [`BrokerEventHandler::on_leave`].
    Leave {
        /// The channel.
        channel: String,
        /// Who left.
        info: ClientInfo,
    },
    /// [`BrokerEventHandler::on_control`].
    Control(Bytes),
}

/// A [`BrokerEventHandler`] that records every event.
#[derive(Debug, Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
    changed: Notify,
}

/// How long the suite waits for an event that should come.
const WAIT: Duration = Duration::from_secs(10);

impl Recorder {
    /// A new, empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder::default())
    }

    fn push(&self, e: Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(e);
        self.changed.notify_waiters();
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The publications received in `channel`, in arrival order.
    pub fn publications(&self, channel: &str) -> Vec<(Arc<Publication>, StreamPosition)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Publication {
                    channel: c,
                    publication,
                    position,
                } if c == channel => Some((publication, position)),
                _ => None,
            })
            .collect()
    }

    /// The control messages received, in arrival order.
    pub fn controls(&self) -> Vec<Bytes> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Control(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    /// Waits until `done` holds for the events (panics after 10 s).
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[Event]) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(&self.events()) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("timed out waiting for {what}; events: {:?}", self.events());
            }
        }
    }

    /// Waits until `n` publications arrived in `channel`.
    pub async fn wait_publications(&self, channel: &str, n: usize) {
        self.wait_until(&format!("{n} publications in {channel}"), |events| {
            events
                .iter()
                .filter(|e| matches!(e, Event::Publication { channel: c, .. } if c == channel))
                .count()
                >= n
        })
        .await;
    }
}

impl BrokerEventHandler for Recorder {
    fn on_publication(
        &self,
        channel: &str,
        publication: Arc<Publication>,
        position: &StreamPosition,
    ) {
        self.push(Event::Publication {
            channel: channel.to_owned(),
            publication,
            position: position.clone(),
        });
    }
    fn on_join(&self, channel: &str, info: &ClientInfo) {
        self.push(Event::Join {
            channel: channel.to_owned(),
            info: info.clone(),
        });
    }
    fn on_leave(&self, channel: &str, info: &ClientInfo) {
        self.push(Event::Leave {
            channel: channel.to_owned(),
            info: info.clone(),
        });
    }
    fn on_control(&self, data: Bytes) {
        self.push(Event::Control(data));
    }
}

// ---------------------------------------------------------------- helpers

fn unique(name: &str) -> String {
    format!("conformance:{name}:{}", new_epoch())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// History of `size` kept `ttl_secs` after the last publish.
fn with_history(size: usize, ttl_secs: u64) -> PublishOptions {
    PublishOptions::default().history(size, secs(ttl_secs))
}

async fn setup(h: &dyn Harness) -> (Arc<dyn Broker>, Arc<Recorder>) {
    let rec = Recorder::new();
    let node = h.node(rec.clone()).await;
    (node, rec)
}

async fn publish(b: &dyn Broker, ch: &str, data: &str, opts: &PublishOptions) -> StreamPosition {
    b.publish(
        ch,
        Publication::new(Bytes::copy_from_slice(data.as_bytes())),
        opts.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("publish into {ch}: {e}"))
}

async fn history(b: &dyn Broker, ch: &str, filter: HistoryFilter) -> (Vec<u64>, StreamPosition) {
    let r = b
        .history(ch, filter, HistoryOptions::default())
        .await
        .unwrap_or_else(|e| panic!("history of {ch}: {e}"));
    (
        r.publications.iter().map(|p| p.offset).collect(),
        r.position,
    )
}

async fn recover_from(b: &dyn Broker, ch: &str, since: StreamPosition, max: usize) -> Recovery {
    recover(
        b,
        ch,
        &since,
        &RecoverOptions::default().max_publications(max),
    )
    .await
    .unwrap_or_else(|e| panic!("recover {ch}: {e}"))
}

fn offsets(r: &Recovery) -> Vec<u64> {
    r.publications.iter().map(|p| p.offset).collect()
}

/// Publishes a marker on a fresh subscribed channel and waits for it, so
/// that anything sent before it has arrived.
async fn barrier(b: &dyn Broker, rec: &Recorder) {
    let ch = unique("barrier");
    b.subscribe(&ch).await.expect("subscribe barrier");
    publish(b, &ch, "barrier", &PublishOptions::default()).await;
    rec.wait_publications(&ch, 1).await;
    b.unsubscribe(&ch).await.expect("unsubscribe barrier");
}

// ------------------------------------------------------------------ cases

/// Without history a publish is delivered with the zero position; a history
/// call on such a channel still names a stream (offset 0, some epoch).
pub async fn publish_without_history_has_zero_position(h: &dyn Harness) {
    let (b, rec) = setup(h).await;
    let ch = unique("no-history");
    b.subscribe(&ch).await.unwrap();
    let pos = publish(&*b, &ch, "a", &PublishOptions::default()).await;
    assert_eq!(pos, StreamPosition::default());
    rec.wait_publications(&ch, 1).await;
    let got = rec.publications(&ch);
    assert_eq!(got[0].0.offset, 0);
    assert_eq!(got[0].0.data, Bytes::from_static(b"a"));
    assert!(got[0].0.time > 0, "the broker stamps the publish time");
    assert_eq!(got[0].1, StreamPosition::default());
    let (pubs, position) = history(&*b, &ch, HistoryFilter::all()).await;
    assert!(pubs.is_empty());
    assert_eq!(position.offset, 0);
    assert!(!position.epoch.is_empty());
}

/// Offsets start at 1 and grow by one per channel, independently per
/// channel; the node receives each channel's publications in offset order
/// with the position the publisher got, and the content unchanged.
pub async fn offsets_are_gapless_and_ordered_per_channel(h: &dyn Harness) {
    let (b, rec) = setup(h).await;
    let a = unique("order-a");
    let c = unique("order-c");
    b.subscribe(&a).await.unwrap();
    b.subscribe(&c).await.unwrap();
    let opts = with_history(100, 60);
    let mut returned_a = Vec::new();
    let mut returned_c = Vec::new();
    for i in 0..5 {
        returned_a.push(publish(&*b, &a, &format!("a{i}"), &opts).await);
        returned_c.push(publish(&*b, &c, &format!("c{i}"), &opts).await);
    }
    // Content round-trips: tags, client info, raw bytes.
    let mut tags = BTreeMap::new();
    tags.insert("k".to_owned(), "v".to_owned());
    let mut info = ClientInfo::new("user-1", "client-1");
    info.conn_info = Some(Bytes::from_static(b"{\"name\":\"x\"}"));
    info.chan_info = Some(Bytes::from_static(b"\x00\xff"));
    let rich = Publication {
        offset: 777, // ignored: the broker assigns offsets
        data: Bytes::from_static(b"\x00binary\xff"),
        info: Some(info.clone()),
        tags: tags.clone(),
        time: 1_700_000_000_000,
    };
    returned_a.push(b.publish(&a, rich, opts.clone()).await.unwrap());

    for (returned, n) in [(&returned_a, 6u64), (&returned_c, 5)] {
        let got: Vec<u64> = returned.iter().map(|p| p.offset).collect();
        assert_eq!(got, (1..=n).collect::<Vec<_>>());
        assert!(returned
            .iter()
            .all(|p| p.epoch == returned[0].epoch && !p.epoch.is_empty()));
    }
    rec.wait_publications(&a, 6).await;
    rec.wait_publications(&c, 5).await;
    for (ch, returned, prefix) in [(&a, &returned_a, "a"), (&c, &returned_c, "c")] {
        let got = rec.publications(ch);
        for (i, (p, pos)) in got.iter().enumerate().take(5) {
            assert_eq!(p.offset, i as u64 + 1);
            assert_eq!(pos, &returned[i]);
            assert_eq!(p.data, Bytes::from(format!("{prefix}{i}")));
        }
    }
    let delivered = &rec.publications(&a)[5].0;
    let kept = b
        .history(&a, HistoryFilter::all(), HistoryOptions::default())
        .await
        .unwrap()
        .publications[5]
        .clone();
    for p in [delivered, &kept] {
        assert_eq!(p.offset, 6);
        assert_eq!(p.data, Bytes::from_static(b"\x00binary\xff"));
        assert_eq!(p.info.as_ref(), Some(&info));
        assert_eq!(p.tags, tags);
        assert_eq!(p.time, 1_700_000_000_000);
    }
}

/// History keeps the newest `history_size` publications; the position is
/// the top offset.
pub async fn history_keeps_the_last_history_size(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("size");
    let opts = with_history(3, 60);
    for i in 0..5 {
        publish(&*b, &ch, &i.to_string(), &opts).await;
    }
    let (pubs, pos) = history(&*b, &ch, HistoryFilter::all()).await;
    assert_eq!(pubs, vec![3, 4, 5]);
    assert_eq!(pos.offset, 5);
}

/// `since`, `limit` and `reverse` select as in Centrifugo's history API.
pub async fn history_filter_since_limit_reverse(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("filter");
    let opts = with_history(10, 60);
    let mut top = StreamPosition::default();
    for i in 0..5 {
        top = publish(&*b, &ch, &i.to_string(), &opts).await;
    }
    let at = |offset: u64| Some(StreamPosition::new(offset, top.epoch.clone()));
    let f = |since: Option<StreamPosition>, limit: Option<usize>, reverse: bool| HistoryFilter {
        since,
        limit,
        reverse,
    };
    let cases: Vec<(HistoryFilter, Vec<u64>)> = vec![
        (HistoryFilter::position_only(), vec![]),
        (f(None, None, false), vec![1, 2, 3, 4, 5]),
        (f(None, Some(2), false), vec![1, 2]),
        (f(None, None, true), vec![5, 4, 3, 2, 1]),
        (f(None, Some(2), true), vec![5, 4]),
        (f(at(0), None, false), vec![1, 2, 3, 4, 5]),
        (f(at(2), None, false), vec![3, 4, 5]),
        (f(at(2), Some(1), false), vec![3]),
        (f(at(2), Some(0), false), vec![]),
        (f(at(5), None, false), vec![]),
        (f(at(4), None, true), vec![3, 2, 1]),
        (f(at(4), Some(2), true), vec![3, 2]),
        (f(at(1), None, true), vec![]),
        (f(at(6), None, true), vec![5, 4, 3, 2, 1]),
    ];
    for (filter, want) in cases {
        let (pubs, pos) = history(&*b, &ch, filter.clone()).await;
        assert_eq!(pubs, want, "filter {filter:?}");
        assert_eq!(pos, top, "filter {filter:?}");
    }
}

/// `history_ttl` counts from the last publish and drops the whole window at
/// once; the position survives (offsets continue, same epoch), so a client
/// at the top still recovers and one behind is told it cannot.
pub async fn history_ttl_drops_the_window_after_the_last_publish(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("ttl");
    let opts = with_history(10, 2);
    let first = publish(&*b, &ch, "1", &opts).await;
    h.advance(millis(1500)).await;
    let second = publish(&*b, &ch, "2", &opts).await;
    h.advance(millis(1000)).await;
    // The first publication is 2.5 s old, but the stream was used 1 s ago.
    assert_eq!(history(&*b, &ch, HistoryFilter::all()).await.0, vec![1, 2]);
    h.advance(millis(1500)).await;
    let (pubs, pos) = history(&*b, &ch, HistoryFilter::all()).await;
    assert!(
        pubs.is_empty(),
        "expired 2.5 s after the last publish: {pubs:?}"
    );
    assert_eq!(pos, second);

    let r = recover_from(&*b, &ch, second.clone(), 300).await;
    assert!(r.recovered, "nothing was missed");
    assert!(r.publications.is_empty());
    let r = recover_from(&*b, &ch, first.clone(), 300).await;
    assert!(!r.recovered, "publication 2 expired");
    assert!(r.publications.is_empty());

    let third = publish(&*b, &ch, "3", &opts).await;
    assert_eq!(third, StreamPosition::new(3, first.epoch.clone()));
}

/// When the stream's position itself is lost (meta TTL) the stream starts
/// again at offset 1 with a new epoch, and recovery from the old stream
/// fails.
pub async fn lost_stream_gets_a_new_epoch(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("meta-ttl");
    let opts = with_history(10, 2).history_meta_ttl(secs(5));
    publish(&*b, &ch, "1", &opts).await;
    let old = publish(&*b, &ch, "2", &opts).await;
    h.advance(secs(6)).await;
    let meta = HistoryOptions::default().meta_ttl(secs(5));
    let r = b
        .history(&ch, HistoryFilter::all(), meta.clone())
        .await
        .unwrap();
    assert_eq!(r.position.offset, 0);
    assert_ne!(r.position.epoch, old.epoch);
    let fresh = publish(&*b, &ch, "again", &opts).await;
    assert_eq!(fresh, StreamPosition::new(1, r.position.epoch.clone()));
    let r = recover(&*b, &ch, &old, &RecoverOptions::default().history(meta))
        .await
        .unwrap();
    assert!(!r.recovered);
    assert!(r.publications.is_empty());
    assert_eq!(r.position, fresh);
}

/// A history call before the first publish fixes the stream's epoch: the
/// first publications continue it, and a client that subscribed at offset
/// 0 recovers them all.
pub async fn history_before_first_publish_fixes_the_epoch(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("empty-first");
    let (_, start) = history(&*b, &ch, HistoryFilter::position_only()).await;
    assert_eq!(start.offset, 0);
    assert!(!start.epoch.is_empty());
    let opts = with_history(10, 60);
    for i in 1..=3 {
        let p = publish(&*b, &ch, &i.to_string(), &opts).await;
        assert_eq!(p, StreamPosition::new(i, start.epoch.clone()));
    }
    let r = recover_from(&*b, &ch, start, 300).await;
    assert!(r.recovered);
    assert_eq!(offsets(&r), vec![1, 2, 3]);
}

/// `remove_history` drops the publications and keeps the position
/// (Centrifugo's `history_remove`): offsets continue in the same epoch, a
/// client at the top recovers, one behind does not.
pub async fn remove_history_keeps_the_position(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("remove");
    let opts = with_history(10, 60);
    let first = publish(&*b, &ch, "1", &opts).await;
    publish(&*b, &ch, "2", &opts).await;
    let top = publish(&*b, &ch, "3", &opts).await;
    b.remove_history(&ch).await.unwrap();
    let (pubs, pos) = history(&*b, &ch, HistoryFilter::all()).await;
    assert!(pubs.is_empty());
    assert_eq!(pos, top);
    let r = recover_from(&*b, &ch, top.clone(), 300).await;
    assert!(r.recovered && r.publications.is_empty());
    let r = recover_from(&*b, &ch, first, 300).await;
    assert!(!r.recovered && r.publications.is_empty());
    let next = publish(&*b, &ch, "4", &opts).await;
    assert_eq!(next, StreamPosition::new(4, top.epoch.clone()));
    b.remove_history(&unique("never-used")).await.unwrap();
}

/// A backend that lost its data (a fresh memory broker, a flushed Redis)
/// serves the channel under a new epoch: no recovery across it.
pub async fn new_backend_means_a_new_epoch(h: &dyn Harness) {
    let (a, _rec) = setup(h).await;
    let ch = unique("restart");
    let opts = with_history(10, 60);
    publish(&*a, &ch, "1", &opts).await;
    let old = publish(&*a, &ch, "2", &opts).await;
    let after: Arc<dyn Broker> = if !h.shared_backend() {
        setup(h).await.0
    } else if h.lose_data().await {
        a
    } else {
        eprintln!("new_backend_means_a_new_epoch: harness cannot lose data; skipped");
        return;
    };
    let (pubs, pos) = history(&*after, &ch, HistoryFilter::all()).await;
    assert!(pubs.is_empty());
    assert_eq!(pos.offset, 0);
    assert_ne!(pos.epoch, old.epoch);
    let r = recover_from(&*after, &ch, old, 300).await;
    assert!(!r.recovered && r.publications.is_empty());
}

/// Recovery from a position in the stream returns exactly the publications
/// after it, in order; from the top it returns nothing, recovered.
pub async fn recover_returns_exactly_the_missed(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("recover");
    let opts = with_history(10, 60);
    let mut positions = Vec::new();
    for i in 1..=4 {
        positions.push(publish(&*b, &ch, &i.to_string(), &opts).await);
    }
    let r = recover_from(&*b, &ch, positions[1].clone(), 300).await;
    assert!(r.recovered);
    assert_eq!(offsets(&r), vec![3, 4]);
    assert_eq!(r.publications[0].data, Bytes::from_static(b"3"));
    assert_eq!(r.position, positions[3]);
    let r = recover_from(&*b, &ch, positions[3].clone(), 300).await;
    assert!(r.recovered);
    assert!(r.publications.is_empty());
}

/// Recovery from offset 0 of the current epoch returns everything.
pub async fn recover_from_zero_returns_everything(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("recover-zero");
    let opts = with_history(10, 60);
    let mut top = StreamPosition::default();
    for i in 1..=4 {
        top = publish(&*b, &ch, &i.to_string(), &opts).await;
    }
    let r = recover_from(&*b, &ch, StreamPosition::new(0, top.epoch.clone()), 300).await;
    assert!(r.recovered);
    assert_eq!(offsets(&r), vec![1, 2, 3, 4]);
}

/// Publications trimmed by size cannot be recovered: not recovered, nothing
/// returned; from the oldest kept position it works.
pub async fn recover_after_trimming_is_not_recovered(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("recover-trim");
    let opts = with_history(3, 60);
    let mut positions = Vec::new();
    for i in 1..=6 {
        positions.push(publish(&*b, &ch, &i.to_string(), &opts).await);
    }
    let r = recover_from(&*b, &ch, positions[1].clone(), 300).await;
    assert!(!r.recovered, "publication 3 was trimmed");
    assert!(r.publications.is_empty());
    assert_eq!(r.position, positions[5]);
    let r = recover_from(&*b, &ch, positions[2].clone(), 300).await;
    assert!(r.recovered);
    assert_eq!(offsets(&r), vec![4, 5, 6]);
}

/// A position from another epoch is never recovered, even if its offset
/// exists in the current stream.
pub async fn recover_with_another_epoch_is_not_recovered(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("recover-epoch");
    let opts = with_history(10, 60);
    let mut top = StreamPosition::default();
    for i in 1..=3 {
        top = publish(&*b, &ch, &i.to_string(), &opts).await;
    }
    let r = recover_from(&*b, &ch, StreamPosition::new(1, "not-this-stream"), 300).await;
    assert!(!r.recovered);
    assert!(r.publications.is_empty());
    assert_eq!(r.position, top);
}

/// More missed publications than `max_publications`: not recovered (no
/// partial list); exactly `max_publications` or fewer: recovered.
pub async fn recover_respects_max_publications(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("recover-limit");
    let opts = with_history(20, 60);
    let mut top = StreamPosition::default();
    for i in 1..=10 {
        top = publish(&*b, &ch, &i.to_string(), &opts).await;
    }
    let at = |o: u64| StreamPosition::new(o, top.epoch.clone());
    let r = recover_from(&*b, &ch, at(4), 5).await;
    assert!(!r.recovered, "6 missed, 5 allowed");
    assert!(r.publications.is_empty());
    let r = recover_from(&*b, &ch, at(5), 5).await;
    assert!(r.recovered);
    assert_eq!(offsets(&r), vec![6, 7, 8, 9, 10]);
    let r = recover_from(&*b, &ch, at(7), 5).await;
    assert!(r.recovered);
    assert_eq!(offsets(&r), vec![8, 9, 10]);
    let r = recover_from(&*b, &ch, at(10), 0).await;
    assert!(r.recovered, "nothing missed, nothing needed");
    let r = recover_from(&*b, &ch, at(9), 0).await;
    assert!(!r.recovered);
}

/// A position ahead of the stream is not recovered.
pub async fn recover_from_the_future_is_not_recovered(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("recover-future");
    let top = publish(&*b, &ch, "1", &with_history(10, 60)).await;
    let r = recover_from(&*b, &ch, StreamPosition::new(9, top.epoch.clone()), 300).await;
    assert!(!r.recovered);
    assert_eq!(r.position, top);
}

/// Presence: add, update, remove, and counts of clients and distinct users.
pub async fn presence_add_update_remove_and_stats(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("presence");
    let ttl = secs(60);
    let c1 = ClientInfo::new("u1", "c1");
    let c2 = ClientInfo::new("u1", "c2");
    let mut c3 = ClientInfo::new("u2", "c3");
    for c in [&c1, &c2, &c3] {
        b.add_presence(&ch, &c.client, c.clone(), ttl)
            .await
            .unwrap();
    }
    let stats = b.presence_stats(&ch).await.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (3, 2));
    c3.chan_info = Some(Bytes::from_static(b"{\"role\":\"admin\"}"));
    b.add_presence(&ch, "c3", c3.clone(), ttl).await.unwrap();
    let p = b.presence(&ch).await.unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(p["c1"], c1);
    assert_eq!(p["c2"], c2);
    assert_eq!(p["c3"], c3, "the update replaced the info");
    b.remove_presence(&ch, "c2").await.unwrap();
    b.remove_presence(&ch, "nobody").await.unwrap();
    let stats = b.presence_stats(&ch).await.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (2, 2));
    b.remove_presence(&ch, "c1").await.unwrap();
    let stats = b.presence_stats(&ch).await.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (1, 1));
    let other = unique("presence-empty");
    assert!(b.presence(&other).await.unwrap().is_empty());
    assert_eq!(b.presence_stats(&other).await.unwrap().num_clients, 0);
}

/// Presence entries are leases: they expire `ttl` after the last add unless
/// refreshed.
pub async fn presence_expires_unless_refreshed(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("presence-ttl");
    let ttl = secs(2);
    b.add_presence(&ch, "c1", ClientInfo::new("u1", "c1"), ttl)
        .await
        .unwrap();
    b.add_presence(&ch, "c2", ClientInfo::new("u2", "c2"), ttl)
        .await
        .unwrap();
    h.advance(millis(1000)).await;
    b.add_presence(&ch, "c1", ClientInfo::new("u1", "c1"), ttl)
        .await
        .unwrap();
    h.advance(millis(1500)).await;
    let p = b.presence(&ch).await.unwrap();
    assert_eq!(
        p.keys().collect::<Vec<_>>(),
        vec!["c1"],
        "c2 expired, c1 was refreshed"
    );
    let stats = b.presence_stats(&ch).await.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (1, 1));
    h.advance(millis(2500)).await;
    assert!(b.presence(&ch).await.unwrap().is_empty());
    assert_eq!(b.presence_stats(&ch).await.unwrap().num_clients, 0);
}

/// Publishing twice with one idempotency key returns the first result and
/// neither stores nor delivers the second; keys are per channel.
pub async fn idempotent_publish_returns_the_first_result(h: &dyn Harness) {
    let (b, rec) = setup(h).await;
    let ch = unique("idem");
    let other = unique("idem-other");
    let plain = unique("idem-plain");
    for c in [&ch, &other, &plain] {
        b.subscribe(c).await.unwrap();
    }
    let opts = with_history(10, 60).idempotency_key("k1");
    let first = publish(&*b, &ch, "first", &opts).await;
    let again = publish(&*b, &ch, "second", &opts).await;
    assert_eq!(again, first);
    let elsewhere = publish(&*b, &other, "first", &opts).await;
    assert_eq!(elsewhere.offset, 1, "the key is per channel");
    let no_history = PublishOptions::default().idempotency_key("k1");
    assert_eq!(
        publish(&*b, &plain, "x", &no_history).await,
        StreamPosition::default()
    );
    assert_eq!(
        publish(&*b, &plain, "y", &no_history).await,
        StreamPosition::default()
    );
    barrier(&*b, &rec).await;
    let got = rec.publications(&ch);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.data, Bytes::from_static(b"first"));
    assert_eq!(rec.publications(&plain).len(), 1);
    assert_eq!(rec.publications(&other).len(), 1);
    let (pubs, pos) = history(&*b, &ch, HistoryFilter::all()).await;
    assert_eq!(pubs, vec![1]);
    assert_eq!(pos, first);
}

/// An idempotency key is forgotten after its TTL.
pub async fn idempotency_key_is_forgotten_after_its_ttl(h: &dyn Harness) {
    let (b, rec) = setup(h).await;
    let ch = unique("idem-ttl");
    b.subscribe(&ch).await.unwrap();
    let opts = with_history(10, 60)
        .idempotency_key("k")
        .idempotency_ttl(secs(2));
    let first = publish(&*b, &ch, "1", &opts).await;
    h.advance(millis(1000)).await;
    assert_eq!(publish(&*b, &ch, "dup", &opts).await, first);
    h.advance(millis(2000)).await;
    let second = publish(&*b, &ch, "2", &opts).await;
    assert_eq!(second.offset, 2);
    rec.wait_publications(&ch, 2).await;
    let data: Vec<Bytes> = rec
        .publications(&ch)
        .into_iter()
        .map(|(p, _)| p.data.clone())
        .collect();
    assert_eq!(
        data,
        vec![Bytes::from_static(b"1"), Bytes::from_static(b"2")]
    );
}

/// Control messages reach every node, the sender included.
pub async fn control_reaches_every_node(h: &dyn Harness) {
    let (a, rec_a) = setup(h).await;
    let msg = Bytes::from(unique("control"));
    a.publish_control(msg.clone()).await.unwrap();
    rec_a
        .wait_until("control on the sender", |e| {
            e.contains(&Event::Control(msg.clone()))
        })
        .await;
    if h.shared_backend() {
        let (b, rec_b) = setup(h).await;
        let msg2 = Bytes::from(unique("control"));
        b.publish_control(msg2.clone()).await.unwrap();
        for rec in [&rec_a, &rec_b] {
            rec.wait_until("control on every node", |e| {
                e.contains(&Event::Control(msg2.clone()))
            })
            .await;
        }
    }
}

/// Join and leave events reach the nodes subscribed to the channel.
pub async fn join_and_leave_reach_subscribed_nodes(h: &dyn Harness) {
    let (b, rec) = setup(h).await;
    let ch = unique("join");
    let quiet = unique("join-unsubscribed");
    b.subscribe(&ch).await.unwrap();
    let mut info = ClientInfo::new("u1", "c1");
    info.conn_info = Some(Bytes::from_static(b"{}"));
    b.publish_join(&quiet, info.clone()).await.unwrap();
    b.publish_join(&ch, info.clone()).await.unwrap();
    b.publish_leave(&ch, info.clone()).await.unwrap();
    let want = vec![
        Event::Join {
            channel: ch.clone(),
            info: info.clone(),
        },
        Event::Leave {
            channel: ch.clone(),
            info: info.clone(),
        },
    ];
    rec.wait_until("join and leave", |e| {
        e.iter()
            .filter(|e| matches!(e, Event::Join { .. } | Event::Leave { .. }))
            .count()
            >= 2
    })
    .await;
    barrier(&*b, &rec).await;
    let got: Vec<Event> = rec
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Join { .. } | Event::Leave { .. }))
        .collect();
    assert_eq!(got, want);
}

/// A node gets only the channels it is subscribed to; history is kept
/// whether or not anyone listens.
pub async fn unsubscribed_node_gets_nothing(h: &dyn Harness) {
    let (b, rec) = setup(h).await;
    let ch = unique("interest");
    let opts = with_history(10, 60);
    publish(&*b, &ch, "before", &opts).await;
    b.subscribe(&ch).await.unwrap();
    b.subscribe(&ch).await.unwrap(); // idempotent
    publish(&*b, &ch, "during", &opts).await;
    rec.wait_publications(&ch, 1).await;
    b.unsubscribe(&ch).await.unwrap();
    publish(&*b, &ch, "after", &opts).await;
    barrier(&*b, &rec).await;
    let got = rec.publications(&ch);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0.offset, 2);
    assert_eq!(got[0].0.data, Bytes::from_static(b"during"));
    assert_eq!(
        history(&*b, &ch, HistoryFilter::all()).await.0,
        vec![1, 2, 3]
    );
}

/// Many tasks publishing into one channel get offsets 1..=N without gaps or
/// duplicates, each task's publishes in its own order, and the node sees
/// all of them in offset order.
pub async fn concurrent_publishers_get_gapless_offsets(h: &dyn Harness) {
    const TASKS: usize = 8;
    const EACH: usize = 50;
    let (b, rec) = setup(h).await;
    let ch = unique("concurrent");
    b.subscribe(&ch).await.unwrap();
    let opts = with_history(TASKS * EACH, 60);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (b, ch, opts) = (b.clone(), ch.clone(), opts.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..EACH {
                let data = format!("{t}-{i}");
                let pos = publish(&*b, &ch, &data, &opts).await;
                mine.push((pos.offset, data));
            }
            mine
        }));
    }
    let mut by_offset = BTreeMap::new();
    for task in tasks {
        let mine = task.await.expect("publisher task");
        assert!(
            mine.windows(2).all(|w| w[0].0 < w[1].0),
            "a task's publishes keep its order"
        );
        for (offset, data) in mine {
            assert!(
                by_offset.insert(offset, data).is_none(),
                "duplicate offset {offset}"
            );
        }
    }
    let n = (TASKS * EACH) as u64;
    assert_eq!(
        by_offset.keys().copied().collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    rec.wait_publications(&ch, TASKS * EACH).await;
    let seen = rec.publications(&ch);
    assert_eq!(
        seen.iter().map(|(p, _)| p.offset).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>(),
        "the node sees offset order"
    );
    for (p, pos) in &seen {
        assert_eq!(pos.offset, p.offset);
        assert_eq!(p.data, Bytes::from(by_offset[&p.offset].clone()));
    }
    let (pubs, pos) = history(&*b, &ch, HistoryFilter::all()).await;
    assert_eq!(pubs, (1..=n).collect::<Vec<_>>());
    assert_eq!(pos.offset, n);
}

/// Node infos are leases: registered, refreshed (updated), expired,
/// unregistered.
pub async fn nodes_register_refresh_and_expire(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let id1 = unique("node");
    let id2 = unique("node");
    let ours = |list: Vec<NodeInfo>| -> Vec<NodeInfo> {
        list.into_iter()
            .filter(|n| n.id == id1 || n.id == id2)
            .collect()
    };
    let n1 = NodeInfo::new(&id1, "one");
    let n2 = NodeInfo::new(&id2, "two");
    b.register_node(n1.clone(), secs(2)).await.unwrap();
    b.register_node(n2.clone(), secs(10)).await.unwrap();
    assert_eq!(ours(b.nodes().await.unwrap()).len(), 2);
    let mut n1b = n1.clone();
    n1b.num_clients = 5;
    b.register_node(n1b.clone(), secs(2)).await.unwrap();
    let list = ours(b.nodes().await.unwrap());
    assert!(list.contains(&n1b) && list.contains(&n2) && list.len() == 2);
    h.advance(secs(3)).await;
    assert_eq!(ours(b.nodes().await.unwrap()), vec![n2.clone()]);
    b.unregister_node(&id2).await.unwrap();
    assert!(ours(b.nodes().await.unwrap()).is_empty());
}

/// A started broker is healthy and has a name.
pub async fn health_and_name(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    b.health().await.expect("a started broker is healthy");
    assert!(!b.name().is_empty());
}

/// History needs both a size and a TTL; one without the other is an error,
/// not silently no history.
pub async fn history_options_must_agree(h: &dyn Harness) {
    let (b, _rec) = setup(h).await;
    let ch = unique("bad-options");
    for opts in [
        PublishOptions::default().history(10, Duration::ZERO),
        PublishOptions::default().history(0, secs(60)),
    ] {
        let r = b.publish(&ch, Publication::new("x"), opts).await;
        assert!(matches!(r, Err(BrokerError::InvalidOptions(_))), "{r:?}");
    }
    let r = b
        .add_presence(&ch, "c", ClientInfo::new("u", "c"), Duration::ZERO)
        .await;
    assert!(matches!(r, Err(BrokerError::InvalidOptions(_))), "{r:?}");
}

/// On a shared backend a publication reaches every subscribed node, and
/// only those.
pub async fn publications_reach_every_subscribed_node(h: &dyn Harness) {
    if !h.shared_backend() {
        return; // one node per backend: covered by the single-node cases
    }
    let (a, rec_a) = setup(h).await;
    let (b, rec_b) = setup(h).await;
    let (c, rec_c) = setup(h).await;
    let ch = unique("fanout");
    b.subscribe(&ch).await.unwrap();
    c.subscribe(&ch).await.unwrap();
    let opts = with_history(10, 60);
    let p1 = publish(&*a, &ch, "1", &opts).await;
    let p2 = publish(&*a, &ch, "2", &opts).await;
    for rec in [&rec_b, &rec_c] {
        rec.wait_publications(&ch, 2).await;
        let got = rec.publications(&ch);
        assert_eq!(got[0].1, p1);
        assert_eq!(got[1].1, p2);
    }
    barrier(&*a, &rec_a).await;
    assert!(rec_a.publications(&ch).is_empty());
}

/// Generates one test per conformance case for a [`Harness`]:
/// `attr` is the test attribute (`tokio::test(start_paused = true)` for a
/// broker on tokio time), `harness` an expression evaluated per test.
#[macro_export]
macro_rules! broker_conformance_tests {
    (attr = $attr:meta, harness = $harness:expr $(,)?) => {
        $crate::broker_conformance_tests!(@cases $attr, $harness;
            publish_without_history_has_zero_position,
            offsets_are_gapless_and_ordered_per_channel,
            history_keeps_the_last_history_size,
            history_filter_since_limit_reverse,
            history_ttl_drops_the_window_after_the_last_publish,
            lost_stream_gets_a_new_epoch,
            history_before_first_publish_fixes_the_epoch,
            remove_history_keeps_the_position,
            new_backend_means_a_new_epoch,
            recover_returns_exactly_the_missed,
            recover_from_zero_returns_everything,
            recover_after_trimming_is_not_recovered,
            recover_with_another_epoch_is_not_recovered,
            recover_respects_max_publications,
            recover_from_the_future_is_not_recovered,
            presence_add_update_remove_and_stats,
            presence_expires_unless_refreshed,
            idempotent_publish_returns_the_first_result,
            idempotency_key_is_forgotten_after_its_ttl,
            control_reaches_every_node,
            join_and_leave_reach_subscribed_nodes,
            unsubscribed_node_gets_nothing,
            concurrent_publishers_get_gapless_offsets,
            nodes_register_refresh_and_expire,
            health_and_name,
            history_options_must_agree,
            publications_reach_every_subscribed_node,
        );
    };
    (@cases $attr:meta, $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[$attr]
            async fn $case() {
                let harness = $harness;
                $crate::broker::conformance::$case(&harness).await;
            }
        )*
    };
}
