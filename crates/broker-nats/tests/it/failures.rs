//! What a node sees when the NATS server dies, comes back with an empty
//! store, or freezes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use wshub_broker_nats::{NatsBroker, NatsBrokerConfig};
use wshub_hub::broker::{
    Broker, BrokerError, HistoryFilter, HistoryOptions, Publication, PublishOptions,
};

use crate::common::{Server, Watcher};

const PROBE: Duration = Duration::from_millis(500);
const OP_TIMEOUT: Duration = Duration::from_secs(1);

fn config(server: &Server) -> NatsBrokerConfig {
    NatsBrokerConfig::default()
        .url(server.url())
        .prefix("failtest")
        .probe_interval(PROBE)
        .op_timeout(OP_TIMEOUT)
        .reconnect_max_delay(Duration::from_millis(200))
}

fn history() -> PublishOptions {
    PublishOptions::default().history(10, Duration::from_secs(60))
}

/// kill -9 while subscribed: interrupted once, unhealthy; the server comes
/// back with an empty store: resumed once, the old subscription delivers
/// again, and the stream has a new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_and_restarted_empty() {
    let mut server = Server::start().await;
    let w = Watcher::new();
    let broker = NatsBroker::new(config(&server));
    broker.start(w.clone()).await.unwrap();
    broker.subscribe("room.*").await.unwrap();
    let before = broker
        .publish("room.*", Publication::new("1"), history())
        .await
        .unwrap();
    assert_eq!(before.offset, 1);
    w.rec.wait_publications("room.*", 1).await;
    broker.health().await.unwrap();

    server.kill();
    let took = w
        .wait("interruption", Duration::from_secs(5), |w| {
            w.interrupted.load(Ordering::SeqCst) >= 1
        })
        .await;
    println!("interrupted {took:?} after kill -9");
    assert!(broker.health().await.is_err());
    let r = broker
        .publish("room.*", Publication::new("lost"), history())
        .await;
    assert!(r.is_err(), "no JetStream, no publish: {r:?}");

    server.restart_empty().await;
    let took = w
        .wait("resume", Duration::from_secs(10), |w| {
            w.resumed.load(Ordering::SeqCst) >= 1
        })
        .await;
    println!("resumed {took:?} after the restart");
    broker.health().await.unwrap();
    assert_eq!(w.interrupted.load(Ordering::SeqCst), 1, "reported once");
    assert_eq!(w.resumed.load(Ordering::SeqCst), 1, "reported once");

    let after = broker
        .publish("room.*", Publication::new("2"), history())
        .await
        .unwrap();
    assert_eq!(after.offset, 1, "a new stream");
    assert_ne!(after.epoch, before.epoch, "the lost stream has a new epoch");
    w.rec.wait_publications("room.*", 2).await;
    let got = w.rec.publications("room.*");
    assert_eq!(got[1].1, after, "delivered on the old subscription");
    broker.close().await.unwrap();
}

/// SIGSTOP: the connection stays open but nothing comes back; the probe
/// reports it, calls time out instead of hanging; SIGCONT: resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_is_detected_by_the_probe() {
    let server = Server::start().await;
    let w = Watcher::new();
    let broker = NatsBroker::new(config(&server));
    broker.start(w.clone()).await.unwrap();
    broker.subscribe("ch").await.unwrap();
    broker
        .publish("ch", Publication::new("1"), history())
        .await
        .unwrap();
    w.rec.wait_publications("ch", 1).await;

    server.stop();
    let limit = PROBE + OP_TIMEOUT + Duration::from_secs(2);
    let took = w
        .wait("interruption by the probe", limit, |w| {
            w.interrupted.load(Ordering::SeqCst) >= 1
        })
        .await;
    println!("frozen server detected after {took:?}");
    assert!(broker.health().await.is_err());
    for _ in 0..2 {
        let start = tokio::time::Instant::now();
        let r = tokio::time::timeout(
            OP_TIMEOUT * 3,
            broker.history("ch", HistoryFilter::all(), HistoryOptions::default()),
        )
        .await
        .expect("a call returns instead of hanging");
        assert!(matches!(r, Err(BrokerError::Timeout)), "{r:?}");
        assert!(start.elapsed() < OP_TIMEOUT + Duration::from_millis(500));
    }
    let r = tokio::time::timeout(
        OP_TIMEOUT * 3,
        broker.publish("ch", Publication::new("frozen"), history()),
    )
    .await
    .expect("publish returns instead of hanging");
    assert!(r.is_err(), "{r:?}");

    server.cont();
    let took = w
        .wait("resume", Duration::from_secs(10), |w| {
            w.resumed.load(Ordering::SeqCst) >= 1
        })
        .await;
    println!("resumed {took:?} after SIGCONT");
    broker.health().await.unwrap();
    assert_eq!(w.interrupted.load(Ordering::SeqCst), 1);
    let n = w.rec.publications("ch").len();
    broker
        .publish("ch", Publication::new("back"), history())
        .await
        .unwrap();
    w.rec.wait_publications("ch", n + 1).await;
    broker.close().await.unwrap();
}

/// A server that is not there: start fails within the dial timeout.
#[tokio::test]
async fn start_without_a_server_fails_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = NatsBroker::new(
        NatsBrokerConfig::default()
            .url(format!("nats://127.0.0.1:{port}"))
            .dial_timeout(Duration::from_millis(500)),
    );
    let start = tokio::time::Instant::now();
    let r = broker.start(Watcher::new()).await;
    assert!(r.is_err());
    assert!(start.elapsed() < Duration::from_secs(3));
    assert!(matches!(
        broker.health().await,
        Err(BrokerError::NotStarted)
    ));
}
