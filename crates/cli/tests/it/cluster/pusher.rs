//! The Pusher front in a cluster: two `wshub serve` nodes on one broker
//! (a private Redis or NATS), each on its own port with the same `pusher`
//! app, against peers we did not write: `pusher-js` (the official client,
//! Node build) and the official `pusher` server SDK, in
//! `tests/interop/sdk/pusher_cluster.js`. Clients connect to node 1 or
//! node 2 and API requests go to either: events triggered on one node
//! reach the other's clients (with `socket_id` exclusion across nodes),
//! client events cross nodes without an echo, presence members and their
//! events are cluster-wide, a cache channel's last event is replayed on
//! the other node, and `GET /channels...` counts subscribers and users on
//! both nodes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{http, Backend, Cluster};
use crate::sdk_interop::node_sdk_script;
use crate::support::Proc;

const APP_ID: &str = "app-1";
const KEY: &str = "key-1";
const SECRET: &str = "secret-1";

/// The script bounds each of its waits (5 s); this bounds the whole run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(45);
/// How long the nodes may take to see each other in the registry.
const REGISTRY_WAIT: Duration = Duration::from_secs(10);

/// What the script must report (line prefixes), in its order.
const CHECKS: &[&str] = &[
    "ok an event triggered through node 2 reaches a pusher-js client on node 1, data intact",
    "ok trigger through node 2 with socket_id reaches the client on node 2 and the other client on node 1",
    "ok and the excluded client on node 1 gets nothing (0 events",
    "ok trigger through node 1 excluding a socket on node 2: it gets nothing (0)",
    "ok A's client event reaches B on node 2, data intact",
    "ok and is not echoed to A (0 in",
    "ok B's client event reaches A on node 1",
    "ok and is not echoed to B",
    "ok a client event on private-App.Models.User.1 crosses nodes 1 -> 2",
    "ok alice (node 1) is alone at first",
    "ok bob (node 2) sees both members with alice's user_info (alice,bob)",
    "ok member_added crosses nodes 2 -> 1 with user_info",
    "ok alice (node 1) now sees both members (alice,bob)",
    "ok GET /channels/presence-room/users on node 1 lists both",
    "ok GET /channels/presence-room/users on node 2 lists both",
    "ok GET /channels?filter_by_prefix=presence-&info=user_count on node 1 gives 2",
    "ok GET /channels?filter_by_prefix=presence-&info=user_count on node 2 gives 2",
    "ok client event on presence from node 1 reaches node 2 with user_id",
    "ok carol (node 1) sees three members",
    "ok member_added crosses nodes 1 -> 2 with user_info",
    "ok member_removed crosses nodes 1 -> 2",
    "ok member_removed crosses nodes 2 -> 1 when bob's connection closes",
    "ok after bob left, GET /channels/presence-room/users on node 1 lists alice only",
    "ok after bob left, GET /channels/presence-room/users on node 2 lists alice only",
    "ok a new client on node 1 subscribing to cache-x gets the last event triggered through node 2",
    "ok a cache channel never triggered on either node gives pusher:cache_miss on node 1",
    "ok GET /channels/counted?info=subscription_count on node 1 sums both nodes: 2 + 3 = 5",
    "ok GET /channels/counted?info=subscription_count on node 2 sums both nodes: 2 + 3 = 5",
    "ok trigger with info=subscription_count through node 1 gives 5",
    "ok GET /channels?filter_by_prefix=count&info=subscription_count on node 2 gives 5",
    "done",
];

/// The nodes `/api/info` on `addr` lists (0 while it cannot answer).
fn nodes_listed(addr: std::net::SocketAddr) -> usize {
    http(addr, "POST", "/api/info", "{}")
        .ok()
        .filter(|(status, _)| *status == 200)
        .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
        .and_then(|v| v["result"]["nodes"].as_array().map(Vec::len))
        .unwrap_or(0)
}

fn pusher_sdks_across_two_nodes(backend: Backend) {
    let started = Instant::now();
    let broker = backend.name();
    let c = Cluster::start_with(
        backend,
        2,
        json!({
            "pusher": {
                "enabled": true,
                "apps": [{
                    "app_id": APP_ID,
                    "key": KEY,
                    "secret": SECRET,
                    "enable_client_messages": true
                }]
            }
        }),
    );
    // The channel counts come from a survey of the nodes the registry
    // lists: wait until each node knows the other.
    let deadline = Instant::now() + REGISTRY_WAIT;
    while !c.nodes.iter().all(|n| nodes_listed(n.addr) == 2) {
        assert!(
            Instant::now() < deadline,
            "{broker}: the nodes do not list each other within {REGISTRY_WAIT:?}\n{}",
            c.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cluster_up = started.elapsed();

    let url1 = format!("http://{}", c.nodes[0].addr);
    let url2 = format!("http://{}", c.nodes[1].addr);
    let mut cmd = node_sdk_script("pusher_cluster.js");
    cmd.args([
        "--url1", &url1, "--url2", &url2, "--app-id", APP_ID, "--key", KEY, "--secret", SECRET,
    ])
    .env_remove("HTTP_PROXY")
    .env_remove("http_proxy")
    .env_remove("ALL_PROXY")
    .env_remove("all_proxy");
    let script_started = Instant::now();
    let mut p = Proc::spawn(&format!("pusher_cluster.js ({broker})"), cmd);
    p.close_stdin();
    let out = p.wait(SCRIPT_LIMIT);
    let script_took = script_started.elapsed();
    let stdout = out.stdout_str();
    assert!(
        out.status.success(),
        "pusher_cluster.js on {broker} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{}\n{}",
        out.status,
        out.stderr,
        c.diagnostics()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    for want in CHECKS {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "pusher_cluster.js on {broker} did not report {want:?}; its output:\n{stdout}\n{}",
            c.diagnostics()
        );
    }
    for l in &lines {
        eprintln!("{broker}: {l}");
    }
    eprintln!(
        "{broker}: {} checks passed; cluster up in {cluster_up:?}, script {script_took:?}, \
         test {:?}",
        lines.iter().filter(|l| l.starts_with("ok ")).count(),
        started.elapsed()
    );
}

#[test]
fn pusher_sdks_across_two_nodes_on_redis() {
    pusher_sdks_across_two_nodes(Backend::redis());
}

#[test]
fn pusher_sdks_across_two_nodes_on_nats() {
    pusher_sdks_across_two_nodes(Backend::nats());
}
