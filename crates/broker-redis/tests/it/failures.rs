//! Failures of the Redis server, on private `redis-server` processes: a
//! killed server and a stopped one. Delivery interruptions are reported
//! once, health fails meanwhile, commands fail in bounded time, and
//! delivery comes back on the old subscriptions.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{timeout, Instant};
use wshub_broker_redis::{RedisBroker, RedisBrokerConfig};
use wshub_hub::broker::{
    Broker, BrokerError, HistoryFilter, HistoryOptions, Publication, PublishOptions,
};

use crate::support::{unique_prefix, RedisServer, Watcher};

const IO_TIMEOUT: Duration = Duration::from_millis(1000);
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// Slack for scheduling on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(1000);

async fn started(server: &RedisServer) -> (RedisBroker, Arc<Watcher>) {
    let cfg = RedisBrokerConfig::default()
        .address(server.url())
        .prefix(unique_prefix())
        .connect_timeout(Duration::from_millis(300))
        .io_timeout(IO_TIMEOUT)
        .probe_interval(PROBE_INTERVAL);
    let broker = RedisBroker::new(cfg).unwrap();
    let watcher = Watcher::new();
    broker.start(watcher.clone()).await.unwrap();
    (broker, watcher)
}

fn history() -> PublishOptions {
    PublishOptions::default().history(100, Duration::from_secs(60))
}

async fn publish(
    b: &RedisBroker,
    ch: &str,
    data: &'static str,
) -> wshub_hub::broker::StreamPosition {
    timeout(
        IO_TIMEOUT + MARGIN,
        b.publish(ch, Publication::new(data), history()),
    )
    .await
    .expect("publish is bounded")
    .unwrap_or_else(|e| panic!("publish {data}: {e}"))
}

/// kill -9 while subscribed: interruption reported once and health fails;
/// after a restart on the same port delivery resumes on the old
/// subscription, and the stream, lost with the server, has a new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_interrupts_then_resumes_delivery() {
    let mut server = RedisServer::start();
    let (broker, watcher) = started(&server).await;
    broker.subscribe("news").await.unwrap();
    let before = publish(&broker, "news", "before").await;
    assert_eq!(before.offset, 1);
    watcher
        .wait("the first publication", Duration::from_secs(5), |w| {
            w.data("news").len() == 1
        })
        .await;
    broker.health().await.expect("healthy before the kill");

    server.kill();
    let took = watcher
        .wait("delivery interrupted", Duration::from_secs(5), |w| {
            w.interruptions() == 1
        })
        .await;
    eprintln!("kill -9 detected after {took:?}");
    assert!(took < IO_TIMEOUT + MARGIN, "detected after {took:?}");
    let health = timeout(IO_TIMEOUT + MARGIN, broker.health())
        .await
        .expect("health is bounded");
    assert!(health.is_err(), "health while redis is down: {health:?}");
    let r = timeout(
        IO_TIMEOUT + MARGIN,
        broker.publish("news", Publication::new("lost"), history()),
    )
    .await
    .expect("a publish while redis is down fails in bounded time");
    assert!(r.is_err(), "{r:?}");
    let r = timeout(IO_TIMEOUT + MARGIN, broker.subscribe("other"))
        .await
        .expect("subscribe is bounded");
    assert!(r.is_err(), "no subscription without delivery: {r:?}");
    // Let a few reconnect attempts fail.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(watcher.interruptions(), 1, "reported once");
    assert_eq!(watcher.resumptions(), 0);

    server.restart();
    let took = watcher
        .wait("delivery resumed", Duration::from_secs(5), |w| {
            w.resumptions() == 1
        })
        .await;
    eprintln!("resumed {took:?} after the restart");
    broker.health().await.expect("healthy after the restart");
    let after = publish(&broker, "news", "after").await;
    assert_eq!(after.offset, 1, "the stream was lost with the server");
    assert_ne!(after.epoch, before.epoch, "so it has a new epoch");
    watcher
        .wait(
            "a publication on the old subscription",
            Duration::from_secs(5),
            |w| w.data("news").len() == 2,
        )
        .await;
    assert_eq!(
        watcher.data("news"),
        vec![Bytes::from_static(b"before"), Bytes::from_static(b"after")]
    );
    assert_eq!(watcher.interruptions(), 1);
    assert_eq!(watcher.resumptions(), 1);
    broker.close().await.unwrap();
}

/// SIGSTOP: the connections stay open but nothing comes back. The probe
/// reports the interruption within about `probe_interval + io_timeout`,
/// commands time out instead of hanging; after SIGCONT delivery resumes and
/// the data is still there (same epoch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_is_detected_by_the_probe() {
    let server = RedisServer::start();
    let (broker, watcher) = started(&server).await;
    broker.subscribe("news").await.unwrap();
    let before = publish(&broker, "news", "before").await;
    watcher
        .wait("the first publication", Duration::from_secs(5), |w| {
            w.data("news").len() == 1
        })
        .await;

    server.pause();
    let stopped_at = Instant::now();
    // Right away, before the probe noticed: health is bounded by io_timeout.
    let health = timeout(IO_TIMEOUT + MARGIN, broker.health())
        .await
        .expect("health does not hang");
    assert!(health.is_err(), "{health:?}");
    // A command times out rather than hangs.
    let t = Instant::now();
    let r = timeout(
        IO_TIMEOUT + MARGIN,
        broker.publish("news", Publication::new("maybe"), history()),
    )
    .await
    .expect("publish does not hang");
    assert!(matches!(r, Err(BrokerError::Timeout)), "{r:?}");
    assert!(t.elapsed() >= IO_TIMEOUT - Duration::from_millis(50));
    watcher
        .wait("delivery interrupted", Duration::from_secs(5), |w| {
            w.interruptions() == 1
        })
        .await;
    let took = watcher.interrupted_at().unwrap() - stopped_at;
    eprintln!("SIGSTOP detected by the probe after {took:?}");
    assert!(
        took < PROBE_INTERVAL + IO_TIMEOUT + MARGIN,
        "the probe noticed after {took:?}"
    );
    assert!(
        matches!(&watcher.seen()[..], [.., crate::support::Seen::Interrupted(reason)] if reason.contains("probe"))
    );
    assert!(broker.health().await.is_err());

    server.resume();
    let took = watcher
        .wait("delivery resumed", Duration::from_secs(6), |w| {
            w.resumptions() == 1
        })
        .await;
    eprintln!("resumed {took:?} after SIGCONT");
    broker.health().await.expect("healthy after SIGCONT");
    let after = publish(&broker, "news", "after").await;
    assert_eq!(after.epoch, before.epoch, "nothing was lost");
    // The timed-out publish may or may not have run once the server woke up.
    assert!(after.offset == 2 || after.offset == 3, "{after:?}");
    watcher
        .wait(
            "delivery on the old subscription",
            Duration::from_secs(5),
            |w| w.data("news").last() == Some(&Bytes::from_static(b"after")),
        )
        .await;
    let h = broker
        .history("news", HistoryFilter::all(), HistoryOptions::default())
        .await
        .unwrap();
    let offsets: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, (1..=after.offset).collect::<Vec<_>>(), "gapless");
    assert_eq!(watcher.interruptions(), 1);
    broker.close().await.unwrap();
    assert!(matches!(broker.health().await, Err(BrokerError::Closed)));
}

/// Redis drops only the PUB/SUB connection (`CLIENT KILL TYPE pubsub`, as
/// it does to a subscriber over its output buffer limit): the broker
/// reports it, reconnects at once and subscribes every channel again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_pubsub_connection_is_replaced_with_every_channel() {
    let server = RedisServer::start();
    let (broker, watcher) = started(&server).await;
    for ch in ["a", "b", "c"] {
        broker.subscribe(ch).await.unwrap();
    }
    broker.unsubscribe("c").await.unwrap();
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    watcher
        .wait(
            "delivery interrupted and resumed",
            Duration::from_secs(5),
            |w| w.resumptions() == 1,
        )
        .await;
    assert_eq!(watcher.interruptions(), 1);
    for ch in ["a", "b", "c"] {
        publish(&broker, ch, "after").await;
    }
    watcher
        .wait("publications in a and b", Duration::from_secs(5), |w| {
            w.data("a").len() == 1 && w.data("b").len() == 1
        })
        .await;
    // c was unsubscribed before the reconnect: not subscribed again.
    let barrier = publish(&broker, "a", "barrier").await;
    assert_eq!(barrier.offset, 2);
    watcher
        .wait("the barrier", Duration::from_secs(5), |w| {
            w.data("a").len() == 2
        })
        .await;
    assert!(watcher.data("c").is_empty());
    let subscribed = |pattern: &'static str| {
        let mut admin = admin.clone();
        async move {
            redis::cmd("PUBSUB")
                .arg("CHANNELS")
                .arg(pattern)
                .query_async::<Vec<String>>(&mut admin)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(subscribed("*.client.a").await, 1);
    assert_eq!(subscribed("*.client.b").await, 1);
    assert_eq!(subscribed("*.client.c").await, 0);
    broker.close().await.unwrap();
}

/// Without a reachable Redis, `start` fails in bounded time and can be
/// tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_without_redis_fails_in_bounded_time() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    let cfg = RedisBrokerConfig::default()
        .address(url)
        .prefix(unique_prefix())
        .connect_timeout(Duration::from_millis(300))
        .io_timeout(IO_TIMEOUT);
    let broker = RedisBroker::new(cfg).unwrap();
    let watcher = Watcher::new();
    let r = timeout(
        Duration::from_millis(300) + IO_TIMEOUT + MARGIN,
        broker.start(watcher.clone()),
    )
    .await
    .expect("start is bounded");
    assert!(r.is_err(), "{r:?}");
    assert!(matches!(
        broker.health().await,
        Err(BrokerError::NotStarted)
    ));
    server.restart();
    broker.start(watcher).await.expect("a second start works");
    broker.health().await.unwrap();
}
