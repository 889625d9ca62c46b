//! Broker failures while subscribers receive and publishers publish. The
//! nodes notice (`/ready` fails, metrics count it, logs say so), reconnect,
//! resubscribe, and every subscriber ends up with every acknowledged
//! publication, or with the explicit "unrecovered" signal after the ones
//! it lost. Never a silent gap.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::multi_node::publisher;
use super::*;

const WAIT: Duration = Duration::from_secs(15);

fn ready(addr: std::net::SocketAddr) -> u16 {
    http(addr, "GET", "/ready", "").map_or(0, |(s, _)| s)
}

/// Two recording subscribers per node, a publisher round-robin over the
/// nodes' APIs; `outage` breaks the backend and repairs it. Returns the
/// recorders and what was acknowledged.
async fn under_load(
    c: &mut Cluster,
    channel: &str,
    outage: impl FnOnce(&mut Cluster),
) -> (Vec<Recorder>, Acked) {
    let mut subs = Vec::new();
    for (i, n) in c.nodes.iter().enumerate() {
        for j in 0..2 {
            subs.push(Recorder::start(&n.ws_url(), &format!("u{i}{j}"), channel).await);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let addrs = c.nodes.iter().map(|n| n.addr).collect();
    let (acked, publishing) = publisher(
        addrs,
        channel.to_owned(),
        Duration::from_millis(5),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    outage(c);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    publishing.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    (subs, acked)
}

/// Waits until no subscriber has a silent gap (or fails with the first).
async fn settle(subs: &[Recorder], acked: &Acked, c: &Cluster) {
    let deadline = Instant::now() + WAIT;
    loop {
        let first_bad = subs.iter().enumerate().find_map(|(i, r)| {
            check_no_silent_loss(&r.seen.lock().unwrap(), acked)
                .err()
                .map(|e| format!("subscriber {i}: {e}"))
        });
        match first_bad {
            None => return,
            Some(e) if Instant::now() >= deadline => panic!("{e}\n{}", c.diagnostics()),
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn summary(what: &str, subs: &[Recorder], acked: &Acked) -> (usize, usize) {
    let told = subs
        .iter()
        .filter(|r| !r.seen.lock().unwrap().unrecovered.is_empty())
        .count();
    let complete = subs
        .iter()
        .filter(|r| {
            let got: BTreeSet<u64> = r.seqs().into_iter().collect();
            acked.keys().all(|s| got.contains(s))
        })
        .count();
    let recovered = subs
        .iter()
        .filter(|r| r.seen.lock().unwrap().subscribed.contains(&(true, true)))
        .count();
    eprintln!(
        "{what}: {} acknowledged; {complete}/{} subscribers received all of them \
         ({recovered} after a resubscribe that recovered), {told} were told they lost some",
        acked.len(),
        subs.len()
    );
    (complete, told)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_empty_loses_nothing_silently() {
    let mut c = Cluster::start(Backend::redis(), 3);
    let ch = format!("{NS}:crash");
    let n0 = c.nodes[0].addr;
    let (subs, acked) = under_load(&mut c, &ch, |c| {
        c.backend.kill();
        // The nodes notice: /ready fails on each.
        let deadline = Instant::now() + Duration::from_secs(6);
        while c.nodes.iter().any(|n| ready(n.addr) != 503) {
            assert!(Instant::now() < deadline, "/ready still OK with Redis dead");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(metric(n0, "wshub_broker_up"), 0);
        std::thread::sleep(Duration::from_millis(500));
        c.backend.start();
    })
    .await;
    let deadline = Instant::now() + WAIT;
    while c.nodes.iter().any(|n| ready(n.addr) != 200) {
        assert!(
            Instant::now() < deadline,
            "/ready not back after Redis restarted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle(&subs, &acked, &c).await;
    let (_, told) = summary("redis restarted empty", &subs, &acked);
    // Redis came back empty: the streams were lost with their epoch, so
    // whoever missed publications was told.
    for n in &c.nodes {
        assert!(metric(n.addr, "wshub_broker_interruptions_total") >= 1);
        assert!(metric(n.addr, "wshub_broker_resumptions_total") >= 1);
        assert_eq!(metric(n.addr, "wshub_broker_up"), 1);
    }
    let logs = c.nodes[0].proc.as_ref().unwrap().stderr_so_far();
    assert!(logs.contains("broker delivery interrupted"), "{logs}");
    assert!(logs.contains("broker delivery resumed"), "{logs}");
    let _ = told;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pubsub_connections_killed_every_publication_is_recovered() {
    let mut c = Cluster::start(Backend::redis(), 3);
    let ch = format!("{NS}:cut");
    let port = c.backend.port();
    let (subs, acked) = under_load(&mut c, &ch, |_| {
        // Delivery breaks, history stays: CLIENT KILL TYPE pubsub.
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["client", "kill", "type", "pubsub"])
            .output()
            .expect("redis-cli");
        assert!(out.status.success(), "{out:?}");
    })
    .await;
    settle(&subs, &acked, &c).await;
    let (complete, told) = summary("redis pubsub connections killed", &subs, &acked);
    assert_eq!(
        (complete, told),
        (subs.len(), 0),
        "history kept: all recovered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_every_publication_is_recovered() {
    let mut c = Cluster::start(Backend::nats(), 3);
    let ch = format!("{NS}:crash");
    let (subs, acked) = under_load(&mut c, &ch, |c| {
        c.backend.kill();
        let deadline = Instant::now() + Duration::from_secs(6);
        while c.nodes.iter().any(|n| ready(n.addr) != 503) {
            assert!(Instant::now() < deadline, "/ready still OK with NATS dead");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        // Same store: JetStream keeps history and epochs.
        c.backend.start();
    })
    .await;
    let deadline = Instant::now() + WAIT;
    while c.nodes.iter().any(|n| ready(n.addr) != 200) {
        assert!(
            Instant::now() < deadline,
            "/ready not back after NATS restarted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle(&subs, &acked, &c).await;
    let (complete, told) = summary("nats restarted with its store", &subs, &acked);
    assert_eq!(
        (complete, told),
        (subs.len(), 0),
        "history kept: all recovered"
    );
}

async fn paused_backend_is_detected(backend: Backend) {
    let c = Cluster::start(backend, 2);
    for n in &c.nodes {
        assert_eq!(ready(n.addr), 200);
    }
    c.backend.pause();
    let paused = Instant::now();
    let deadline = paused + Duration::from_secs(8);
    while c.nodes.iter().any(|n| ready(n.addr) != 503) {
        if Instant::now() >= deadline {
            c.backend.resume();
            panic!(
                "a paused {} went unnoticed\n{}",
                c.backend.name(),
                c.diagnostics()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let noticed = paused.elapsed();
    let interrupted = metric(c.nodes[0].addr, "wshub_broker_interruptions_total");
    c.backend.resume();
    let deadline = Instant::now() + WAIT;
    while c.nodes.iter().any(|n| ready(n.addr) != 200) {
        assert!(Instant::now() < deadline, "/ready not back after resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(interrupted >= 1);
    eprintln!(
        "{}: pause noticed by every node within {noticed:?}",
        c.backend.name()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_redis_is_detected_by_the_probe() {
    paused_backend_is_detected(Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_nats_is_detected_by_the_probe() {
    paused_backend_is_detected(Backend::nats()).await;
}
