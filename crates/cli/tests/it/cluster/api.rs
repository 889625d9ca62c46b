//! The server API answers for the whole cluster: `/api/channels` on any
//! node lists the channels of every node with subscriber counts summed
//! (a survey over the broker's control channel), `/api/info` lists every
//! node with its counts, and a node that dies while still registered
//! delays `channels` by at most `http_api.cluster_request_timeout`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

const WAIT: Duration = Duration::from_secs(15);

/// `channel → num_clients` from `/api/channels` at `addr`, and how long the
/// call took.
fn channels(addr: std::net::SocketAddr, pattern: &str) -> (BTreeMap<String, u64>, Duration) {
    let t = Instant::now();
    let v = api(addr, "channels", json!({ "pattern": pattern }));
    let took = t.elapsed();
    let m = v["result"]["channels"]
        .as_object()
        .unwrap_or_else(|| panic!("channels map: {v}"))
        .iter()
        .map(|(k, v)| (k.clone(), v["num_clients"].as_u64().unwrap_or(0)))
        .collect();
    (m, took)
}

fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

fn info_nodes(addr: std::net::SocketAddr) -> Vec<Value> {
    api(addr, "info", json!({}))["result"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The labeled counter `name{label}` in the node's `/metrics` (0 if absent).
fn labeled_metric(addr: std::net::SocketAddr, name_and_label: &str) -> u64 {
    let (_, m) = http(addr, "GET", "/metrics", "").expect("metrics");
    m.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_label)?
                .strip_prefix(' ')?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

async fn api_answers_for_the_cluster(backend: Backend) {
    let mut c = Cluster::start_with(
        backend,
        2,
        json!({ "http_api": { "cluster_request_timeout": "1s" } }),
    );
    let (a, b) = (c.nodes[0].addr, c.nodes[1].addr);
    eventually("/api/info on both nodes lists 2 nodes", WAIT, || {
        info_nodes(a).len() == 2 && info_nodes(b).len() == 2
    })
    .await;

    let (ca, cs, cb) = (format!("{NS}:a"), format!("{NS}:shared"), format!("{NS}:b"));
    let _r = [
        Recorder::start(&c.nodes[0].ws_url(), "alice", &ca).await,
        Recorder::start(&c.nodes[0].ws_url(), "alice", &cs).await,
        Recorder::start(&c.nodes[1].ws_url(), "bob", &cs).await,
        Recorder::start(&c.nodes[1].ws_url(), "bob", &cb).await,
        Recorder::start(&c.nodes[1].ws_url(), "carol", &cb).await,
    ];
    let all = map(&[(&ca, 1), (&cs, 2), (&cb, 2)]);
    for addr in [a, b] {
        let (got, _) = channels(addr, "");
        assert_eq!(got, all, "channels on {addr}\n{}", c.diagnostics());
    }
    let (got, _) = channels(a, &format!("{NS}:s*"));
    assert_eq!(got, map(&[(&cs, 2)]), "pattern applied on every node");
    let (got, _) = channels(a, "nothing:*");
    assert!(got.is_empty(), "{got:?}");

    // Every node with Centrifugo's info fields and its own counts (the
    // registry is refreshed every 3 s).
    let counts = |n: &Value| {
        (
            n["num_clients"].as_u64().unwrap_or(0),
            n["num_users"].as_u64().unwrap_or(0),
            n["num_subs"].as_u64().unwrap_or(0),
            n["num_channels"].as_u64().unwrap_or(0),
        )
    };
    eventually("/api/info has both nodes' counts", WAIT, || {
        let nodes = info_nodes(b);
        let mut seen: Vec<_> = nodes.iter().map(counts).collect();
        seen.sort();
        seen == [(2, 1, 2, 2), (3, 2, 3, 2)]
    })
    .await;
    for n in info_nodes(a) {
        for field in ["uid", "name", "version"] {
            assert!(
                n[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field}: {n}"
            );
        }
        assert!(n["uptime"].as_u64().is_some(), "{n}");
    }

    // Node B dies and stays registered for a while: `channels` on A waits
    // for it at most the 1 s timeout and answers with A's channels.
    c.nodes[1].kill();
    let (got, took) = channels(a, "");
    eprintln!("channels on A right after B died: {took:?}");
    assert_eq!(got, map(&[(&ca, 1), (&cs, 1)]), "{}", c.diagnostics());
    assert!(
        took < Duration::from_secs(4),
        "a dead node must not hang the request: {took:?}"
    );
    if info_nodes(a).len() == 2 {
        assert!(took >= Duration::from_millis(900), "waited for B: {took:?}");
        assert!(
            labeled_metric(a, "wshub_api_survey_timeouts_total{op=\"channels\"}") >= 1,
            "the timeout is counted"
        );
    }
    eventually("B's registration expires", WAIT, || {
        info_nodes(a).len() == 1
    })
    .await;
    let (got, took) = channels(a, "");
    assert_eq!(got, map(&[(&ca, 1), (&cs, 1)]));
    assert!(
        took < Duration::from_secs(1),
        "nobody to wait for: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_and_info_answer_for_two_nodes_on_redis() {
    api_answers_for_the_cluster(Backend::redis()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_and_info_answer_for_two_nodes_on_nats() {
    api_answers_for_the_cluster(Backend::nats()).await;
}
