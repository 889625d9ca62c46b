//! Order and isolation across nodes on the system server.

use std::sync::Arc;
use std::time::Duration;

use wshub_broker_nats::{NatsBroker, NatsBrokerConfig};
use wshub_hub::broker::conformance::Recorder;
use wshub_hub::broker::{
    Broker, BrokerError, HistoryFilter, HistoryOptions, Publication, PublishOptions,
};

use crate::common::{delete_buckets, unique_prefix, SYSTEM_URL};

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete_buckets(SYSTEM_URL, &self.0, false);
    }
}

async fn node(prefix: &str, rec: Arc<Recorder>) -> NatsBroker {
    let b = NatsBroker::new(NatsBrokerConfig::default().url(SYSTEM_URL).prefix(prefix));
    b.start(rec).await.expect("start");
    b
}

/// Two nodes publish concurrently into one channel (several tasks each); a
/// third node receives offsets 1..N exactly, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_two_nodes_are_seen_in_order() {
    const TASKS: usize = 4;
    const EACH: usize = 40;
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let a = node(&prefix, Recorder::new()).await;
    let b = node(&prefix, Recorder::new()).await;
    let rec = Recorder::new();
    let c = node(&prefix, rec.clone()).await;
    let ch = "race.room";
    c.subscribe(ch).await.unwrap();
    let opts = PublishOptions::default().history(1000, Duration::from_secs(60));
    let mut tasks = Vec::new();
    for publisher in [a.clone(), b.clone()] {
        for t in 0..TASKS {
            let (p, opts) = (publisher.clone(), opts.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    p.publish(ch, Publication::new(format!("{t}-{i}")), opts.clone())
                        .await
                        .expect("publish");
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = 2 * TASKS * EACH;
    rec.wait_publications(ch, n).await;
    let got: Vec<u64> = rec.publications(ch).iter().map(|(p, _)| p.offset).collect();
    assert_eq!(got, (1..=n as u64).collect::<Vec<_>>());
}

/// Channel names with subject wildcards and separators are literal: a
/// subscription to `a.*` or `>` receives only its own channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_channel_names_are_literal() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let rec = Recorder::new();
    let b = node(&prefix, rec.clone()).await;
    for ch in ["a.*", ">", "a b"] {
        b.subscribe(ch).await.unwrap();
    }
    for ch in ["a.b", "a.*.c", "x", "a b", ">", "a.*"] {
        b.publish(
            ch,
            Publication::new(ch.to_owned()),
            PublishOptions::default(),
        )
        .await
        .unwrap();
    }
    for ch in ["a.*", ">", "a b"] {
        rec.wait_publications(ch, 1).await;
    }
    // Everything before this marker has arrived.
    b.subscribe("marker").await.unwrap();
    b.publish("marker", Publication::new("m"), PublishOptions::default())
        .await
        .unwrap();
    rec.wait_publications("marker", 1).await;
    for ch in ["a.*", ">", "a b"] {
        let got = rec.publications(ch);
        assert_eq!(got.len(), 1, "{ch}: {got:?}");
        assert_eq!(got[0].0.data, bytes::Bytes::from(ch.to_owned()));
    }
    assert!(rec.publications("a.b").is_empty());
    assert!(rec.publications("x").is_empty());
}

/// Two nodes publish with one idempotency key at the same time: one
/// publication, both get its position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_idempotent_publishes_publish_once() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let a = node(&prefix, Recorder::new()).await;
    let b = node(&prefix, Recorder::new()).await;
    for round in 0..5 {
        let ch = format!("idem-race-{round}");
        let opts = PublishOptions::default()
            .history(10, Duration::from_secs(60))
            .idempotency_key("same");
        let (ra, rb) = tokio::join!(
            a.publish(&ch, Publication::new("a"), opts.clone()),
            b.publish(&ch, Publication::new("b"), opts.clone()),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra, rb);
        assert_eq!(ra.offset, 1);
        let h = a
            .history(&ch, HistoryFilter::all(), HistoryOptions::default())
            .await
            .unwrap();
        assert_eq!(h.publications.len(), 1);
    }
}

/// Calls before start, double start, calls after close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_errors() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let b = NatsBroker::new(NatsBrokerConfig::default().url(SYSTEM_URL).prefix(&prefix));
    let r = b
        .publish("ch", Publication::new("x"), PublishOptions::default())
        .await;
    assert!(matches!(r, Err(BrokerError::NotStarted)), "{r:?}");
    b.start(Recorder::new()).await.unwrap();
    assert!(matches!(
        b.start(Recorder::new()).await,
        Err(BrokerError::AlreadyStarted)
    ));
    b.health().await.unwrap();
    b.close().await.unwrap();
    assert!(matches!(b.health().await, Err(BrokerError::Closed)));
    let r = b.subscribe("ch").await;
    assert!(matches!(r, Err(BrokerError::Closed)), "{r:?}");
    let bad = NatsBroker::new(NatsBrokerConfig::default().url(SYSTEM_URL).prefix("a.*"));
    let r = bad.start(Recorder::new()).await;
    assert!(matches!(r, Err(BrokerError::InvalidOptions(_))), "{r:?}");
}

/// The reader puts a channel's publications back in offset order: 3 before
/// 2 is delivered as 2, 3; a gap that is never filled (4 missing) is given
/// up after the reorder window and 5 is delivered after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_publications_wait_for_the_missing_ones() {
    use base64::Engine as _;
    use wshub_hub::broker::wire::{encode_event, ChannelEvent};
    use wshub_hub::broker::StreamPosition;

    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let rec = Recorder::new();
    let window = Duration::from_millis(300);
    let b = NatsBroker::new(
        NatsBrokerConfig::default()
            .url(SYSTEM_URL)
            .prefix(&prefix)
            .reorder_window(window),
    );
    b.start(rec.clone()).await.unwrap();
    let ch = "reorder";
    b.subscribe(ch).await.unwrap();
    // Another "node" sends raw events, as a publisher racing another would.
    let raw = async_nats::connect(SYSTEM_URL).await.unwrap();
    let subject = format!(
        "{prefix}.ch.c{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ch)
    );
    let send = |offset: u64| {
        let mut p = Publication::new(format!("{offset}"));
        p.offset = offset;
        let e = encode_event(&ChannelEvent::Publication(
            p,
            StreamPosition::new(offset, "epoch"),
        ));
        let (raw, subject) = (raw.clone(), subject.clone());
        async move { raw.publish(subject, e.into()).await.unwrap() }
    };
    // The first publication seen fixes the expected offset.
    send(1).await;
    rec.wait_publications(ch, 1).await;
    send(3).await;
    send(2).await;
    rec.wait_publications(ch, 3).await;
    send(5).await;
    raw.flush().await.unwrap();
    let start = tokio::time::Instant::now();
    rec.wait_publications(ch, 4).await;
    let waited = start.elapsed();
    assert!(waited >= window / 2, "5 was held for 4: {waited:?}");
    let got: Vec<u64> = rec.publications(ch).iter().map(|(p, _)| p.offset).collect();
    assert_eq!(got, vec![1, 2, 3, 5]);
}

/// A history window that would no longer fit in one JetStream message
/// (the server's max_payload) loses its oldest publications instead; a
/// publication that cannot fit at all is an error, at once, and the
/// connection stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_history_is_trimmed_or_refused() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let b = node(&prefix, Recorder::new()).await;
    let opts = PublishOptions::default().history(10, Duration::from_secs(60));
    let big = bytes::Bytes::from(vec![b'x'; 600 * 1024]);
    for _ in 0..2 {
        b.publish("big", Publication::new(big.clone()), opts.clone())
            .await
            .unwrap();
    }
    let h = b
        .history("big", HistoryFilter::all(), HistoryOptions::default())
        .await
        .unwrap();
    let kept: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
    assert_eq!(kept, vec![2], "the first one made room");
    let huge = bytes::Bytes::from(vec![b'x'; 2 * 1024 * 1024]);
    let start = tokio::time::Instant::now();
    let r = b.publish("big", Publication::new(huge), opts.clone()).await;
    assert!(matches!(r, Err(BrokerError::Backend(_))), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
    let h = b
        .history(
            "big",
            HistoryFilter::position_only(),
            HistoryOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(h.position.offset, 2);
    b.health().await.unwrap();
}
