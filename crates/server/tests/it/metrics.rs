//! `/metrics` after real traffic: a client connects, subscribes, publishes
//! and receives; an API publish is delivered; the client never answers the
//! server's pings and is disconnected (3012). Every series the issue asks
//! for is then exposed, with non-zero values where traffic happened:
//! messages and bytes in/out, pushes and push bytes by type, command
//! latency by method, publish-to-deliver latency, disconnects by code,
//! heartbeat failures, and broker errors (present, zero here).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{dev_config, start, Client, TestServer, T};

async fn scrape(srv: &TestServer) -> String {
    tokio::time::timeout(T, async {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        let req = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            srv.addr
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        text
    })
    .await
    .expect("GET /metrics timed out")
}

/// The value of the series `name{labels}` exactly (panics when absent).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == series).then(|| v.parse::<f64>().ok())?
        })
        .unwrap_or_else(|| panic!("{series} not exposed:\n{text}"))
}

#[tokio::test]
async fn metrics_expose_traffic_latency_and_failures() {
    let mut cfg = dev_config();
    cfg.client.ping_interval = Duration::from_millis(1500).into();
    cfg.client.pong_timeout = Duration::from_millis(1500).into();
    let srv = start(cfg).await;

    let (mut c, _) = Client::connected(&srv.ws_url()).await;
    let r = c.call(r#""subscribe":{"channel":"chat:m"}"#).await;
    assert!(r.error.is_none(), "{r:?}");
    let r = c
        .call(r#""publish":{"channel":"chat:m","data":{"text":"from the client"}}"#)
        .await;
    assert!(r.error.is_none(), "{r:?}");
    let p = c.data_push().await;
    assert!(p.publication.is_some(), "{p:?}");
    srv.api(
        "publish",
        r#"{"channel":"chat:m","data":{"text":"from the API"}}"#,
    )
    .await;
    let p = c.data_push().await;
    assert!(p.publication.is_some(), "{p:?}");

    let m = scrape(&srv).await;
    // The Prometheus text format, which every Prometheus version scrapes;
    // the HTTP front's families come from the same registry, in one text.
    let head = m
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(
        m.contains("\n# TYPE wshub_http_connections_open gauge\n"),
        "{m}"
    );
    assert!(
        m.contains("\n# TYPE wshub_http_timeouts_total counter\n"),
        "{m}"
    );
    assert!(value(&m, "wshub_http_connections_open") >= 1.0);
    assert!(!m.contains("# EOF"), "not OpenMetrics:\n{m}");
    for series in [
        "wshub_node_num_clients",
        "wshub_node_num_channels",
        "wshub_node_num_subscriptions",
        "wshub_client_connections_accepted_total",
        "wshub_transport_messages_received_total{encoding=\"json\"}",
        "wshub_transport_bytes_received_total{encoding=\"json\"}",
        "wshub_transport_messages_sent_total{encoding=\"json\"}",
        "wshub_transport_bytes_sent_total{encoding=\"json\"}",
        "wshub_node_messages_sent_total{type=\"publication\"}",
        "wshub_node_push_bytes_sent_total{type=\"publication\"}",
        "wshub_client_command_duration_seconds_count{method=\"connect\"}",
        "wshub_client_command_duration_seconds_count{method=\"subscribe\"}",
        "wshub_client_command_duration_seconds_count{method=\"publish\"}",
        "wshub_client_command_duration_seconds_bucket{method=\"publish\",le=\"+Inf\"}",
        "wshub_node_publication_delivery_latency_seconds_count",
        "wshub_node_publication_delivery_latency_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(value(&m, series) > 0.0, "{series} is 0:\n{m}");
    }
    assert_eq!(
        value(&m, "wshub_node_messages_sent_total{type=\"publication\"}"),
        2.0
    );
    // Bytes and messages agree: the two publication frames are not empty.
    assert!(value(&m, "wshub_node_push_bytes_sent_total{type=\"publication\"}") > 40.0);
    assert!(
        value(&m, "wshub_transport_bytes_sent_total{encoding=\"json\"}")
            >= value(&m, "wshub_node_push_bytes_sent_total{type=\"publication\"}")
    );
    // Latencies are small on loopback: the local publish was queued within 1 s.
    assert!(
        value(
            &m,
            "wshub_node_publication_delivery_latency_seconds_bucket{le=\"1\"}"
        ) >= 2.0,
        "{m}"
    );
    assert!(m.contains("# TYPE wshub_client_command_duration_seconds histogram"));
    assert_eq!(value(&m, "wshub_broker_errors_total{op=\"publish\"}"), 0.0);
    assert_eq!(value(&m, "wshub_client_heartbeat_failures_total"), 0.0);

    // The client reads but never answers pings: 3012 after the pong timeout.
    let (code, _) = c.closed().await;
    assert_eq!(code, 3012);
    let mut m = scrape(&srv).await;
    for _ in 0..50 {
        if value(&m, "wshub_client_heartbeat_failures_total") > 0.0
            && m.contains("wshub_client_disconnects_total{code=\"3012\"} 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = scrape(&srv).await;
    }
    assert_eq!(
        value(&m, "wshub_client_heartbeat_failures_total"),
        1.0,
        "{m}"
    );
    assert_eq!(
        value(&m, "wshub_client_disconnects_total{code=\"3012\"}"),
        1.0
    );
    srv.shutdown().await;
}
