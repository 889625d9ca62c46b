//! Limits on untrusted clients over real sockets: command rate (111, then
//! 3013), connections and connect rate per IP (HTTP 429, counted in
//! /metrics), message size (1009), subscription token expiry (2501) and
//! slow consumers, each without hurting the other clients of the node.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wshub_config::Config;
use wshub_hub::auth::{generate_connection_token, generate_subscription_token};
use wshub_protocol::{decode_replies, Encoding};

use crate::support::{dev_config, start, Client, TestServer, T};

/// A raw HTTP/1.1 GET (optionally a WebSocket upgrade); returns the status
/// and the head and body as text.
async fn get(srv: &TestServer, path: &str, upgrade: bool) -> (u16, String) {
    tokio::time::timeout(T, async {
        let mut s = TcpStream::connect(srv.addr).await.expect("connect");
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", srv.addr);
        if upgrade {
            req.push_str(
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            );
        } else {
            req.push_str("Connection: close\r\n\r\n");
        }
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        if upgrade {
            // Enough to see the status; a 101 keeps the socket open.
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.expect("read");
            out.extend_from_slice(&buf[..n]);
        } else {
            s.read_to_end(&mut out).await.expect("read");
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status line");
        (status, text)
    })
    .await
    .expect("HTTP request timed out")
}

/// The value of `name{label}` in /metrics (0 when absent).
async fn metric(srv: &TestServer, series: &str) -> u64 {
    let (status, text) = get(srv, "/metrics", false).await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

fn ws_path(srv: &TestServer) -> String {
    let url = srv.ws_url();
    url[url.find("/connection").unwrap()..].to_owned()
}

/// Publishes `data` to `channel` through the API and returns how long the
/// subscriber `c` took to get it.
async fn delivery_latency(srv: &TestServer, c: &mut Client, channel: &str, tag: u32) -> Duration {
    let t0 = Instant::now();
    srv.api(
        "publish",
        &format!(r#"{{"channel":"{channel}","data":{{"n":{tag}}}}}"#),
    )
    .await;
    loop {
        let p = c.data_push().await;
        let data = p.publication.expect("a publication").data;
        if data.as_ref() == format!(r#"{{"n":{tag}}}"#).as_bytes() {
            return t0.elapsed();
        }
    }
}

#[tokio::test]
async fn command_flood_gets_111_then_3013_while_others_keep_their_latency() {
    let mut cfg = dev_config();
    cfg.limits.commands_per_second = 20;
    cfg.limits.commands_burst = 20;
    cfg.limits.command_flood_disconnect = 30;
    let srv = start(cfg).await;
    let (mut quiet, _) = Client::connected(&srv.ws_url()).await;
    quiet.call(r#""subscribe":{"channel":"news"}"#).await;
    let baseline = delivery_latency(&srv, &mut quiet, "news", 0).await;

    let (mut flood, _) = Client::connected(&srv.ws_url()).await;
    // 200 pings in frames of 10, without waiting for replies.
    let mut id = 100;
    for _ in 0..20 {
        let frame: Vec<String> = (0..10)
            .map(|_| {
                id += 1;
                format!(r#"{{"id":{id},"ping":{{}}}}"#)
            })
            .collect();
        if tokio::time::timeout(T, flood.ws.send_text(&frame.join("\n")))
            .await
            .expect("send timed out")
            .is_err()
        {
            break; // already disconnected
        }
    }
    // The quiet client is served as before during the flood.
    for tag in 1..=3 {
        let l = delivery_latency(&srv, &mut quiet, "news", tag).await;
        assert!(
            l < Duration::from_millis(500).max(baseline * 20),
            "latency {l:?} (baseline {baseline:?})"
        );
    }
    let (mut ok, mut limited) = (0, 0);
    while let Some(Ok(m)) = tokio::time::timeout(T, flood.ws.recv())
        .await
        .expect("no close within the timeout")
    {
        for r in decode_replies(Encoding::Json, m.as_bytes()).unwrap() {
            match &r.error {
                Some(e) => {
                    assert_eq!(e.code, 111, "{r:?}");
                    limited += 1;
                }
                None if r.ping.is_some() => ok += 1,
                None => {}
            }
        }
    }
    let (code, reason) = flood.ws.close_info().expect("close frame");
    assert_eq!(code.unwrap().0, 3013, "{reason}");
    // The burst (less the connect) passed, then 29 refusals and the 30th
    // disconnects (a few more pass if the bucket refilled meanwhile).
    assert!((19..40).contains(&ok), "{ok} ok");
    assert_eq!(limited, 29);
    assert!(
        metric(
            &srv,
            r#"wshub_client_limit_exceeded_total{limit="commands_per_second"}"#
        )
        .await
            >= 30
    );
    assert_eq!(
        metric(
            &srv,
            r#"wshub_client_limit_exceeded_total{limit="command_flood"}"#
        )
        .await,
        1
    );
    assert_eq!(
        metric(&srv, r#"wshub_client_disconnects_total{code="3013"}"#).await,
        1
    );
    // Still served afterwards.
    delivery_latency(&srv, &mut quiet, "news", 4).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn connections_per_ip_over_the_limit_get_429_and_are_counted() {
    let mut cfg = dev_config();
    cfg.limits.connections_per_ip = 3;
    let srv = start(cfg).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Client::connected(&srv.ws_url()).await.0);
    }
    let (status, head) = get(&srv, &ws_path(&srv), true).await;
    assert_eq!(status, 429, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert!(wshub_ws::connect(&srv.ws_url(), &Default::default())
        .await
        .is_err());
    assert_eq!(
        metric(
            &srv,
            r#"wshub_client_limit_exceeded_total{limit="connections_per_ip"}"#
        )
        .await,
        2
    );
    // Other endpoints are not limited, and a closed connection frees its slot.
    assert_eq!(get(&srv, "/health", false).await.0, 200);
    let mut c = open.pop().unwrap();
    c.ws.close(wshub_ws::CloseCode(1000), "").await.unwrap();
    drop(c);
    let deadline = Instant::now() + T;
    loop {
        if let Ok(ws) = wshub_ws::connect(&srv.ws_url(), &Default::default()).await {
            drop(ws);
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn connect_rate_per_ip_refuses_bursts_with_429() {
    let mut cfg = dev_config();
    cfg.limits.connect_rate_per_ip = 2;
    cfg.limits.connect_burst_per_ip = 3;
    let srv = start(cfg).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Client::connected(&srv.ws_url()).await.0);
    }
    assert_eq!(get(&srv, &ws_path(&srv), true).await.0, 429);
    assert_eq!(
        metric(
            &srv,
            r#"wshub_client_limit_exceeded_total{limit="connect_rate_per_ip"}"#
        )
        .await,
        1
    );
    // The bucket refills at 2/s: one more is admitted after 600 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    open.push(Client::connected(&srv.ws_url()).await.0);
    srv.shutdown().await;
}

#[tokio::test]
async fn node_connection_rate_limit_refuses_with_429() {
    let mut cfg = dev_config();
    cfg.client.connection_rate_limit = 2;
    let srv = start(cfg).await;
    let _a = Client::connected(&srv.ws_url()).await;
    let _b = Client::connected(&srv.ws_url()).await;
    assert_eq!(get(&srv, &ws_path(&srv), true).await.0, 429);
    assert_eq!(
        metric(
            &srv,
            r#"wshub_client_limit_exceeded_total{limit="connection_rate"}"#
        )
        .await,
        1
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn oversized_command_closes_with_1009_and_is_counted() {
    let mut cfg = dev_config();
    cfg.websocket.message_size_limit = 1024;
    let srv = start(cfg).await;
    let (mut other, _) = Client::connected(&srv.ws_url()).await;
    other.call(r#""subscribe":{"channel":"c"}"#).await;
    let (mut c, _) = Client::connected(&srv.ws_url()).await;
    // Just under the limit passes.
    let fits = format!(
        r#""publish":{{"channel":"c","data":"{}"}}"#,
        "a".repeat(900)
    );
    assert!(c.call(&fits).await.error.is_none());
    let big = format!(
        r#"{{"id":9,"publish":{{"channel":"c","data":"{}"}}}}"#,
        "b".repeat(4096)
    );
    c.send_text(&big).await;
    assert_eq!(c.closed().await.0, 1009);
    assert_eq!(
        metric(
            &srv,
            r#"wshub_client_limit_exceeded_total{limit="message_size"}"#
        )
        .await,
        1
    );
    // The other client got the small publication only, and is still served.
    let p = other.data_push().await.publication.unwrap();
    assert_eq!(p.data.len(), 902);
    delivery_latency(&srv, &mut other, "c", 1).await;
    srv.shutdown().await;
}

fn jwt_config() -> Config {
    let mut c = dev_config();
    c.client.allow_anonymous_connect_without_token = false;
    c.client.token.hmac_secret_key = "test-secret".into();
    c.client.expired_sub_close_delay = Duration::ZERO.into();
    c
}

async fn jwt_client(srv: &TestServer, user: &str) -> Client {
    let token = generate_connection_token("test-secret", user, None, None, &[]).unwrap();
    let mut c = Client::open(&srv.ws_url()).await;
    let r = c.call(&format!(r#""connect":{{"token":"{token}"}}"#)).await;
    assert!(r.connect.is_some(), "{r:?}");
    c
}

fn sub_token(user: &str, channel: &str, secs: u64) -> String {
    generate_subscription_token(
        "test-secret",
        user,
        channel,
        Some(Duration::from_secs(secs)),
        None,
    )
    .unwrap()
}

#[tokio::test]
async fn subscription_token_expiry_unsubscribes_2501_unless_refreshed() {
    let srv = start(jwt_config()).await;
    let mut c = jwt_client(&srv, "7").await;
    let mut d = jwt_client(&srv, "8").await;
    for (cl, user) in [(&mut c, "7"), (&mut d, "8")] {
        let token = sub_token(user, "$vip", 2);
        let r = cl
            .call(&format!(
                r#""subscribe":{{"channel":"$vip","token":"{token}"}}"#
            ))
            .await;
        let res = r.subscribe.expect("subscribed");
        assert!(res.expires && res.ttl <= 2, "{res:?}");
    }
    // d refreshes with a longer token; c does not.
    let fresh = sub_token("8", "$vip", 60);
    let r = d
        .call(&format!(
            r#""sub_refresh":{{"channel":"$vip","token":"{fresh}"}}"#
        ))
        .await;
    let refreshed = r.sub_refresh.expect("sub_refresh result");
    assert!(refreshed.expires && refreshed.ttl > 50);

    let t0 = Instant::now();
    let push = loop {
        let p = c.push().await;
        if p.unsubscribe.is_some() {
            break p;
        }
    };
    let u = push.unsubscribe.unwrap();
    assert_eq!((push.channel.as_str(), u.code), ("$vip", 2501), "{u:?}");
    assert!(t0.elapsed() < Duration::from_secs(4));
    // c stays connected (it resubscribes with a new token) and is no
    // longer a subscriber; d, refreshed, still gets publications.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    srv.api("publish", r#"{"channel":"$vip","data":{"n":1}}"#)
        .await;
    let p = d.data_push().await;
    assert!(
        p.publication.is_some(),
        "refreshed subscription kept: {p:?}"
    );
    let token = sub_token("7", "$vip", 60);
    let r = c
        .call(&format!(
            r#""subscribe":{{"channel":"$vip","token":"{token}"}}"#
        ))
        .await;
    assert!(r.subscribe.is_some(), "resubscribed: {r:?}");
    assert_eq!(
        metric(
            &srv,
            r#"wshub_client_subscriptions_expired_total{code="2501"}"#
        )
        .await,
        1
    );
    srv.shutdown().await;
}

// Several threads, as in `wshub serve`: the fan-out workers wake the
// client writers from their own threads, and a single-threaded runtime
// would run those wakeups behind the publishing loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_cut_while_a_reading_client_keeps_up() {
    let mut cfg = dev_config();
    cfg.client.queue_max_size = 256 * 1024;
    let srv = start(cfg).await;
    let (mut slow, _) = Client::connected(&srv.ws_url()).await;
    slow.call(r#""subscribe":{"channel":"firehose"}"#).await;
    let (mut fast, _) = Client::connected(&srv.ws_url()).await;
    fast.call(r#""subscribe":{"channel":"firehose"}"#).await;
    // The fast client reads everything until the marker.
    let reader = tokio::spawn(async move {
        let mut n = 0u32;
        loop {
            let p = fast.data_push().await.publication.unwrap();
            if p.data.as_ref() == b"\"marker\"" {
                return n;
            }
            n += 1;
        }
    });
    let big = format!(
        r#"{{"channel":"firehose","data":"{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let mut sent = 0;
    let slow_before = srv.node.metrics().slow_disconnects();
    while srv.node.metrics().slow_disconnects() == slow_before {
        assert!(sent < 2000, "never cut off");
        srv.api("publish", &big).await;
        sent += 1;
    }
    srv.api("publish", r#"{"channel":"firehose","data":"marker"}"#)
        .await;
    let got = tokio::time::timeout(T, reader)
        .await
        .expect("the reading client fell behind")
        .unwrap();
    assert_eq!(got, sent, "the reading client got every publication");
    assert_eq!(slow.closed().await.0, 3008);
    srv.shutdown().await;
}
