//! The load generators, briefly: `wshub bench fanout` against `wshub serve`
//! must deliver every publication to every subscriber; `bench echo`,
//! `bench latency` and `bench idle` against `wshub echo` must run clean and
//! print a JSON summary with sane numbers.

use std::time::Duration;

use crate::support::{run_client_ok, wshub, wshub_echo, wshub_serve_dev, Proc};

/// Runs `wshub bench ARGS...` against `server` and returns its JSON summary
/// (the last stdout line).
fn bench_summary(server: &Proc, args: &[&str]) -> serde_json::Value {
    let mut bench = wshub();
    bench.arg("bench").args(args);
    let name = format!("wshub bench {}", args[0]);
    let out = run_client_ok(&name, bench, Duration::from_secs(60), server);
    let stdout = out.stdout_str();
    serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("no JSON summary ({e}): {stdout}"))
}

#[test]
fn echo_bench_counts_echoes_and_cpu() {
    let (server, url) = wshub_echo(&["--threads", "1"]);
    let pid = server.pid().to_string();
    let s = bench_summary(
        &server,
        &[
            "echo",
            "--url",
            &url,
            "--connections",
            "4",
            "--size",
            "20",
            "--pipeline",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(s["errors"], 0, "{s}");
    assert!(s["messages"].as_u64().unwrap() > 100, "{s}");
    assert!(s["messages_per_s"].as_f64().unwrap() > 100.0, "{s}");
    assert_eq!(s["frame_bytes"], 26, "{s}");
    let gen = s["generator_cpu_pct"].as_f64().unwrap();
    assert!((0.0..=200.0).contains(&gen), "{s}");
    assert!(s["server_cpu_s"].as_f64().unwrap() >= 0.0, "{s}");
}

#[test]
fn echo_bench_binary_large_messages_and_deflate() {
    let (server, url) = wshub_echo(&["--threads", "1", "--deflate"]);
    let s = bench_summary(
        &server,
        &[
            "echo",
            "--url",
            &url,
            "--connections",
            "2",
            "--size",
            "70000",
            "--binary",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
        ],
    );
    assert_eq!(s["errors"], 0, "{s}");
    assert!(s["messages"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["deflate"], false, "{s}");
    let s = bench_summary(
        &server,
        &[
            "echo",
            "--url",
            &url,
            "--connections",
            "2",
            "--size",
            "1024",
            "--deflate",
            "--duration",
            "0.5",
            "--warmup",
            "0.2",
        ],
    );
    assert_eq!(s["errors"], 0, "{s}");
    assert_eq!(s["deflate"], true, "{s}");
    assert!(s["messages"].as_u64().unwrap() > 0, "{s}");
    // The text-like payload compresses.
    assert!(s["frame_bytes"].as_u64().unwrap() < 1024, "{s}");
}

#[test]
fn latency_bench_receives_every_scheduled_message() {
    let (server, url) = wshub_echo(&["--threads", "1"]);
    let s = bench_summary(
        &server,
        &[
            "latency",
            "--url",
            &url,
            "--connections",
            "4",
            "--rate",
            "2000",
            "--size",
            "20",
            "--duration",
            "1",
            "--warmup",
            "0.2",
        ],
    );
    assert_eq!(s["errors"], 0, "{s}");
    assert_eq!(s["lost"], 0, "{s}");
    let sent = s["sent"].as_u64().unwrap();
    assert!((1900..=2100).contains(&sent), "{s}");
    assert_eq!(s["received"], sent, "{s}");
    let l = &s["latency_us"];
    let (p50, p99, max) = (
        l["p50"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
        l["max"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{s}");
}

#[test]
fn idle_bench_holds_connections_from_several_sources() {
    let (server, url) = wshub_echo(&["--threads", "1"]);
    let s = bench_summary(
        &server,
        &[
            "idle",
            "--url",
            &url,
            "--connections",
            "200",
            "--source-ips",
            "127.0.0.2-127.0.0.5",
            "--hold",
            "0.5",
        ],
    );
    assert_eq!(s["opened"], 200, "{s}");
    assert_eq!(s["still_open"], 200, "{s}");
    assert_eq!(s["errors"], 0, "{s}");
    assert_eq!(s["source_ips"], 4, "{s}");
}

#[test]
fn idle_bench_gateway_mode_connects_and_subscribes_every_connection() {
    let (server, base) = wshub_serve_dev();
    let addr = base.trim_start_matches("http://").to_owned();
    let mut bench = wshub();
    bench.args([
        "bench",
        "idle",
        "--url",
        &format!("ws://{addr}/connection/websocket"),
        "--connections",
        "30",
        "--subscribe",
        "idle",
        "--hold",
        "3",
    ]);
    let mut p = Proc::spawn("wshub bench idle --subscribe", bench);
    // While held, the gateway counts 30 clients with one subscription each.
    let sock: std::net::SocketAddr = addr.parse().expect("address");
    let metrics = |sock| {
        crate::cluster::http(sock, "GET", "/metrics", "")
            .expect("metrics")
            .1
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        last = metrics(sock);
        if last.contains("\nwshub_node_num_clients 30\n")
            && last.contains("\nwshub_node_num_subscriptions 30\n")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        last.contains("\nwshub_node_num_subscriptions 30\n"),
        "{last}\n{}",
        server.diagnostics()
    );
    p.close_stdin();
    let out = p.wait(Duration::from_secs(30));
    let s: serde_json::Value = serde_json::from_str(out.stdout_str().trim())
        .unwrap_or_else(|e| panic!("no JSON summary ({e}): {out:?}"));
    assert_eq!(s["opened"], 30, "{s}");
    assert_eq!(s["errors"], 0, "{s}");
}

#[test]
fn fanout_bench_delivers_every_publication_to_every_subscriber() {
    fanout_bench_delivers_everything("centrifugo");
}

/// The same through the Pusher front (the development defaults' demo app,
/// triggers signed through `/apps/1/events`).
#[test]
fn fanout_bench_over_the_pusher_front_delivers_everything() {
    fanout_bench_delivers_everything("pusher");
}

fn fanout_bench_delivers_everything(protocol: &str) {
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
        "--protocol",
        protocol,
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

#[test]
fn api_batch_bench_runs_100k_commands_and_a_100k_channel_broadcast_in_bounded_memory() {
    let dir = std::env::temp_dir().join(format!("wshub-api-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        r#"{"http_api": {"insecure": true, "max_batch_commands": 100000,
            "max_broadcast_channels": 100000}}"#,
    )
    .unwrap();
    let mut cmd = wshub();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG");
    let mut server = Proc::spawn("wshub serve", cmd);
    let line = server.next_line(crate::support::STARTUP);
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_owned();
    let pid = server.pid().to_string();
    let s = bench_summary(
        &server,
        &[
            "api-batch",
            "--url",
            &url,
            "--commands",
            "100000",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(s["errors"], 0, "{s}");
    assert_eq!(s["replies"], 100_000, "{s}");
    let growth = s["peak_growth_mib"].as_f64().unwrap();
    // The body is 5.5 MiB; before the batch was streamed it was ~190 MiB.
    assert!(growth < 32.0, "peak RSS growth {growth} MiB: {s}");
    assert!(s["hwm_after_kib"].as_u64().unwrap() >= s["rss_before_kib"].as_u64().unwrap());
    // One broadcast to 100,000 channels (a JSON map per channel's answer
    // cost ~140 MiB).
    let s = bench_summary(
        &server,
        &[
            "api-batch",
            "--url",
            &url,
            "--broadcast-channels",
            "100000",
            "--server-pid",
            &pid,
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        (s["errors"].as_u64(), s["replies"].as_u64()),
        (Some(0), Some(100_000)),
        "{s}"
    );
    let growth = s["peak_growth_mib"].as_f64().unwrap();
    assert!(growth < 32.0, "broadcast peak RSS growth {growth} MiB: {s}");
}

/// `wshub bench ARGS...` against the development gateway `server` at
/// `base` (its http:// URL), with `--url` pointing at its client endpoint.
fn gateway_summary(server: &Proc, base: &str, args: &[&str]) -> serde_json::Value {
    let ws = format!(
        "ws://{}/connection/websocket",
        base.trim_start_matches("http://")
    );
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--url", &ws]);
    bench_summary(server, &all)
}

#[test]
fn isolation_bench_measures_the_small_channel_beside_the_big_one() {
    let (server, base) = wshub_serve_dev();
    let s = gateway_summary(
        &server,
        &base,
        &[
            "isolation",
            "--subscribers",
            "20",
            "--rate",
            "50",
            "--small-rate",
            "20",
            "--duration",
            "1",
            "--channel",
            "big",
            "--small-channel",
            "small",
        ],
    );
    assert_eq!(s["opened"], 20, "{s}");
    let small = &s["small"];
    assert!(small["published"].as_u64().unwrap() >= 15, "{s}");
    assert_eq!(small["deliveries"], small["acknowledged"], "{s}");
    assert!(small["latency_us"]["p50"].as_u64().unwrap() > 0, "{s}");
    let big = &s["big"];
    assert!(big["published"].as_u64().unwrap() >= 40, "{s}");
    assert_eq!(big["deliveries"], big["expected_deliveries"], "{s}");
    assert_eq!(big["delivered_ratio"], 1.0, "{s}");
    assert_eq!(big["errors"], 0, "{s}");
}

#[test]
fn fanout_sweep_reports_every_step_and_the_best_rate_that_kept_up() {
    let (server, base) = wshub_serve_dev();
    let s = gateway_summary(
        &server,
        &base,
        &[
            "fanout",
            "--subscribers",
            "10",
            "--sweep",
            "20,40",
            "--duration",
            "1",
        ],
    );
    assert_eq!(s["bench"], "fanout-sweep", "{s}");
    let steps = s["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{s}");
    for step in steps {
        assert_eq!(step["pass"], true, "{s}");
        assert_eq!(step["deliveries"], step["expected_deliveries"], "{s}");
    }
    assert_eq!(s["best_rate"], 40, "{s}");
}

#[test]
fn commands_bench_times_publish_and_presence_beside_a_metrics_scraper() {
    let (server, base) = wshub_serve_dev();
    let metrics = format!("{base}/metrics");
    let s = gateway_summary(
        &server,
        &base,
        &[
            "commands",
            "--channel",
            "rtt",
            "--rate",
            "20",
            "--duration",
            "1",
            "--scrape",
            &metrics,
        ],
    );
    assert_eq!(s["errors"], 0, "{s}");
    assert!(s["round_trips"].as_u64().unwrap() >= 15, "{s}");
    assert!(s["publish_us"]["p50"].as_u64().unwrap() > 0, "{s}");
    assert!(s["presence_us"]["p50"].as_u64().unwrap() > 0, "{s}");
    assert!(s["scrape"]["scrapes"].as_u64().unwrap() >= 5, "{s}");
    assert_eq!(s["scrape"]["failed"], 0, "{s}");
}
