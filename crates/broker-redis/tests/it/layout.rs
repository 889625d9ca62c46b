//! What an operator finds in Redis, and content that stresses the encoding
//! done inside the publish script (long payloads, large offsets, odd
//! channel names).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wshub_broker_redis::{RedisBroker, RedisBrokerConfig};
use wshub_hub::broker::conformance::Recorder;
use wshub_hub::broker::{
    Broker, ClientInfo, HistoryFilter, HistoryOptions, NodeInfo, Publication, PublishOptions,
};

use crate::support::{delete_prefix, unique_prefix, SYSTEM_REDIS};

struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete_prefix(SYSTEM_REDIS, &self.0);
    }
}

async fn node(prefix: &str) -> (RedisBroker, Arc<Recorder>) {
    let cfg = RedisBrokerConfig::default()
        .address(SYSTEM_REDIS)
        .prefix(prefix);
    let broker = RedisBroker::new(cfg).unwrap();
    let rec = Recorder::new();
    broker.start(rec.clone()).await.unwrap();
    (broker, rec)
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(SYSTEM_REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

/// The keys of the crate docs exist under the prefix, hash-tagged by
/// channel, with the documented expiries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_the_documented_layout() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let (b, _rec) = node(&prefix).await;
    let ch = "chat:1";
    let opts = PublishOptions::default()
        .history(10, Duration::from_secs(60))
        .history_meta_ttl(Duration::from_secs(3600))
        .idempotency_key("k1")
        .idempotency_ttl(Duration::from_secs(30));
    b.publish(ch, Publication::new("x"), opts).await.unwrap();
    b.add_presence(
        ch,
        "c1",
        ClientInfo::new("u1", "c1"),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    b.register_node(NodeInfo::new("n1", "one"), Duration::from_secs(15))
        .await
        .unwrap();

    let mut conn = raw().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}.*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    let p = &prefix;
    let mut want = vec![
        format!("{p}.history.{{chat:1}}"),
        format!("{p}.history.meta.{{chat:1}}"),
        format!("{p}.idempotency.{{chat:1}}.k1"),
        format!("{p}.presence.data.{{chat:1}}"),
        format!("{p}.presence.expire.{{chat:1}}"),
        format!("{p}.presence.user.{{chat:1}}"),
        format!("{p}.nodes.data.{{nodes}}"),
        format!("{p}.nodes.expire.{{nodes}}"),
    ];
    want.sort();
    assert_eq!(keys, want);

    let kind: String = redis::cmd("TYPE")
        .arg(format!("{p}.history.{{chat:1}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "stream");
    let expiries = [
        (format!("{p}.history.{{chat:1}}"), 60_000),
        (format!("{p}.history.meta.{{chat:1}}"), 3_600_000),
        (format!("{p}.idempotency.{{chat:1}}.k1"), 30_000),
        (format!("{p}.presence.data.{{chat:1}}"), 20_000),
        (format!("{p}.nodes.data.{{nodes}}"), 15_000),
    ];
    for (key, ms) in expiries {
        let left = pttl(&mut conn, &key).await;
        assert!(
            left > ms - 5_000 && left <= ms,
            "{key}: {left} ms left, want ~{ms}"
        );
    }
    // The position, as the meta hash holds it.
    let meta: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{p}.history.meta.{{chat:1}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(meta.get("o").map(String::as_str), Some("1"));
    assert_eq!(meta.get("e").map(String::len), Some(16));
}

/// Payloads longer than 127 bytes and offsets above 127 need multi-byte
/// varints in the script's encoding; channel names with braces, spaces and
/// non-ASCII characters work as keys and PUB/SUB channels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_payloads_large_offsets_and_odd_channel_names_round_trip() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let (b, rec) = node(&prefix).await;
    let ch = "odd {name} with spaces: ü ✓";
    b.subscribe(ch).await.unwrap();
    let opts = PublishOptions::default().history(5, Duration::from_secs(60));
    for _ in 0..200 {
        b.publish(ch, Publication::new("small"), opts.clone())
            .await
            .unwrap();
    }
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut tags = BTreeMap::new();
    tags.insert("k".to_owned(), "v".repeat(300));
    let mut info = ClientInfo::new("user", "client");
    info.conn_info = Some(Bytes::from(vec![7u8; 1000]));
    let p = Publication {
        data: Bytes::from(big.clone()),
        tags: tags.clone(),
        info: Some(info.clone()),
        ..Publication::default()
    };
    let pos = b.publish(ch, p, opts).await.unwrap();
    assert_eq!(pos.offset, 201);
    rec.wait_publications(ch, 201).await;
    let (got, got_pos) = rec.publications(ch).pop().unwrap();
    assert_eq!(got_pos, pos);
    let h = b
        .history(ch, HistoryFilter::all(), HistoryOptions::default())
        .await
        .unwrap();
    assert_eq!(
        h.publications.iter().map(|p| p.offset).collect::<Vec<_>>(),
        vec![197, 198, 199, 200, 201]
    );
    for p in [&got, h.publications.last().unwrap()] {
        assert_eq!(p.offset, 201);
        assert_eq!(p.data, Bytes::from(big.clone()));
        assert_eq!(p.tags, tags);
        assert_eq!(p.info.as_ref(), Some(&info));
    }
    assert_eq!(h.position, pos);
}

/// After `close` nothing is delivered and calls are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_stops_delivery() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let (a, rec_a) = node(&prefix).await;
    let (b, _rec_b) = node(&prefix).await;
    a.subscribe("ch").await.unwrap();
    b.publish("ch", Publication::new("1"), PublishOptions::default())
        .await
        .unwrap();
    rec_a.wait_publications("ch", 1).await;
    a.close().await.unwrap();
    assert!(a.subscribe("ch").await.is_err());
    b.publish("ch", Publication::new("2"), PublishOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rec_a.publications("ch").len(), 1);
}
