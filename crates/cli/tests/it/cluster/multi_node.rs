//! Three nodes on one broker behave as one gateway: a client on node A
//! gets what is published through a client on node B and through the API
//! of node C; presence and history are cluster-wide; disconnecting a user
//! through any node's API disconnects it everywhere; `/api/info` lists
//! every node. Behind nginx (round-robin, no sticky sessions) a client
//! whose node is killed reconnects to another node and recovers.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

fn node_count(addr: std::net::SocketAddr) -> usize {
    api(addr, "info", json!({}))["result"]["nodes"]
        .as_array()
        .map_or(0, Vec::len)
}

async fn three_nodes_act_as_one(backend: Backend) {
    let c = Cluster::start(backend, 3);
    let (a, b, cn) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let ch = format!("{NS}:lobby");

    eventually("/api/info on every node lists 3 nodes", WAIT, || {
        c.nodes.iter().all(|n| node_count(n.addr) == 3)
    })
    .await;

    let alice = Recorder::start(&a.ws_url(), "alice", &ch).await;
    let bob = Recorder::start(&b.ws_url(), "bob", &ch).await;

    // Through a client on node B, then through the API of node C.
    bob.client
        .publish(ch.clone(), &br#"{"seq":1}"#[..])
        .await
        .expect("client publish on node B");
    api(
        cn.addr,
        "publish",
        json!({ "channel": ch, "data": { "seq": 2 } }),
    );
    eventually("alice (node A) and bob (node B) get both", WAIT, || {
        alice.seqs() == [1, 2] && bob.seqs() == [1, 2]
    })
    .await;

    // Presence and history through a node neither client is on.
    let p = api(cn.addr, "presence", json!({ "channel": ch }));
    let users: BTreeSet<String> = p["result"]["presence"]
        .as_object()
        .expect("presence map")
        .values()
        .map(|v| v["user"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(users, BTreeSet::from(["alice".into(), "bob".into()]), "{p}");
    let s = api(cn.addr, "presence_stats", json!({ "channel": ch }));
    assert_eq!(s["result"]["num_clients"], 2, "{s}");
    assert_eq!(s["result"]["num_users"], 2, "{s}");
    let h = api(a.addr, "history", json!({ "channel": ch, "limit": -1 }));
    let pubs = h["result"]["publications"]
        .as_array()
        .expect("publications");
    assert_eq!(pubs.len(), 2, "{h}");
    assert_eq!(pubs[1]["data"]["seq"], 2);
    assert_eq!(pubs[1]["offset"], 2);

    // A second connection of alice, on node B; disconnect alice through C.
    let alice2 = Recorder::start(&b.ws_url(), "alice", &ch).await;
    api(cn.addr, "disconnect", json!({ "user": "alice" }));
    eventually("both of alice's connections are disconnected", WAIT, || {
        !alice.seen.lock().unwrap().disconnected.is_empty()
            && !alice2.seen.lock().unwrap().disconnected.is_empty()
    })
    .await;
    assert!(bob.seen.lock().unwrap().disconnected.is_empty());
    assert_eq!(alice.seen.lock().unwrap().disconnected, [3503]);

    // Server-side unsubscribe of bob (node B) through node A.
    api(
        a.addr,
        "unsubscribe",
        json!({ "user": "bob", "channel": ch }),
    );
    api(
        cn.addr,
        "publish",
        json!({ "channel": ch, "data": { "seq": 3 } }),
    );
    let bob2 = Recorder::start(&cn.ws_url(), "bob", &ch).await;
    api(
        a.addr,
        "publish",
        json!({ "channel": ch, "data": { "seq": 4 } }),
    );
    eventually(
        "a new subscriber on C gets the next publication",
        WAIT,
        || bob2.seqs() == [4],
    )
    .await;
    assert_eq!(bob.seqs(), [1, 2], "bob was unsubscribed before 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_redis_act_as_one() {
    three_nodes_act_as_one(Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_nats_act_as_one() {
    three_nodes_act_as_one(Backend::nats()).await;
}

/// Publishes `seq` = 1, 2, ... through `addr` every `every` until `stop`;
/// records what was acknowledged and when.
pub fn publisher(
    addrs: Vec<std::net::SocketAddr>,
    channel: String,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Acked>>, std::thread::JoinHandle<u64>) {
    let acked = Arc::new(Mutex::new(Acked::new()));
    let a = acked.clone();
    let t = std::thread::spawn(move || {
        let mut seq = 0;
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            let addr = addrs[seq as usize % addrs.len()];
            if try_publish(addr, &channel, seq).is_some() {
                a.lock().unwrap().insert(seq, Instant::now());
            }
            std::thread::sleep(every);
        }
        seq
    });
    (acked, t)
}

/// The node that holds `n` clients, from each node's own metrics.
fn node_with_clients(c: &Cluster, n: usize) -> Option<usize> {
    c.nodes.iter().position(|node| {
        http(node.addr, "GET", "/metrics", "")
            .map(|(_, m)| m.contains(&format!("\nwshub_node_num_clients {n}\n")))
            .unwrap_or(false)
    })
}

async fn killed_node_behind_nginx(backend: Backend) {
    let mut c = Cluster::start(backend, 3);
    let nginx = Nginx::start(&c.nodes);
    let ch = format!("{NS}:ticker");
    let sub = Recorder::start(&nginx.ws_url(), "carol", &ch).await;
    let victim = node_with_clients(&c, 1).expect("the subscriber's node");

    let stop = Arc::new(AtomicBool::new(false));
    let (acked, publishing) = publisher(
        vec![nginx.addr],
        ch.clone(),
        Duration::from_millis(10),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.nodes[victim].kill();
    let killed_at = Instant::now();
    eventually("the subscriber reconnects to another node", WAIT, || {
        sub.seen.lock().unwrap().connects >= 2
    })
    .await;
    let reconnect_took = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = publishing.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() as u64 >= sent / 2,
        "few publications acknowledged: {}/{sent}",
        acked.len()
    );
    let want: Vec<u64> = acked.keys().copied().collect();
    eventually("every acknowledged publication arrives", WAIT, || {
        let got: BTreeSet<u64> = sub.seqs().into_iter().collect();
        want.iter().all(|s| got.contains(s))
    })
    .await;
    let seen = sub.seen.lock().unwrap();
    assert!(
        seen.seqs.windows(2).all(|w| w[0] < w[1]),
        "in order, never twice: {:?}",
        seen.seqs
    );
    assert!(seen.unrecovered.is_empty(), "{seen:?}");
    assert!(
        seen.subscribed.contains(&(true, true)),
        "resubscribed with recovery: {seen:?}"
    );
    eprintln!(
        "{}: node {victim} killed; reconnected through nginx in {reconnect_took:?}; \
         {} publications acknowledged, all received once, in order",
        c.backend.name(),
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_behind_nginx_survives_a_killed_node() {
    killed_node_behind_nginx(Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_behind_nginx_survives_a_killed_node() {
    killed_node_behind_nginx(Backend::nats()).await;
}

/// `wshub bench fanout` with subscribers on two nodes and the publisher on
/// a third: every publication reaches every subscriber across nodes.
#[test]
fn fanout_bench_spreads_subscribers_over_the_nodes() {
    let c = Cluster::start(Backend::redis(), 3);
    let urls: Vec<String> = c.nodes.iter().map(Node::ws_url).collect();
    let mut bench = crate::support::wshub();
    bench.args([
        "bench",
        "fanout",
        "--url",
        &format!("{},{}", urls[0], urls[1]),
        "--publish-url",
        &urls[2],
        "--channel",
        &format!("{NS}:fanout"),
        "--subscribers",
        "20",
        "--rate",
        "50",
        "--duration",
        "1",
    ]);
    let out = crate::support::run_client_ok(
        "wshub bench fanout",
        bench,
        Duration::from_secs(60),
        c.nodes[2].proc.as_ref().unwrap(),
    );
    let stdout = out.stdout_str();
    let s: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("no JSON summary ({e}): {stdout}"));
    assert!(s["acknowledged"].as_u64().unwrap_or(0) >= 40, "{s}");
    assert_eq!(s["deliveries"], s["expected_deliveries"], "{s}");
    assert_eq!(s["errors"], 0, "{s}");
    // The two subscriber nodes delivered, the publisher's node did not.
    let delivered: Vec<u64> = c
        .nodes
        .iter()
        .map(|n| metric(n.addr, "wshub_node_deliveries_total"))
        .collect();
    assert!(delivered[0] > 0 && delivered[1] > 0, "{delivered:?}");
    assert_eq!(delivered[2], 0, "{delivered:?}");
}
