//! `wshub bench fanout` against `wshub serve`: a short run must deliver every
//! publication to every subscriber and print its JSON summary.

use std::time::Duration;

use crate::support::{run_client_ok, wshub, wshub_serve_dev};

#[test]
fn fanout_bench_delivers_every_publication_to_every_subscriber() {
    let (server, base) = wshub_serve_dev();
    let base = base.trim_start_matches("http://").to_owned();
    let mut bench = wshub();
    bench.args([
        "bench",
        "fanout",
        "--url",
        &format!("ws://{base}/connection/websocket"),
        "--subscribers",
        "20",
        "--rate",
        "50",
        "--duration",
        "1",
    ]);
    let out = run_client_ok(
        "wshub bench fanout",
        bench,
        Duration::from_secs(60),
        &server,
    );
    let stdout = out.stdout_str();
    let summary: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
            .unwrap_or_else(|e| panic!("no JSON summary ({e}): {stdout}"));
    let published = summary["published"].as_u64().unwrap();
    assert!(published >= 40, "{summary}");
    assert_eq!(
        summary["deliveries"], summary["expected_deliveries"],
        "{summary}"
    );
    assert_eq!(summary["errors"], 0, "{summary}");
    assert!(
        summary["latency_us"]["p50"].as_u64().unwrap() > 0,
        "{summary}"
    );
}
