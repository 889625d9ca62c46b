//! The server HTTP API: keys, method shapes, batch, and actions on
//! connected clients.

use crate::support::{dev_config, start, Client};

#[tokio::test]
async fn api_key_is_required_unless_insecure() {
    let mut cfg = dev_config();
    cfg.http_api.insecure = false;
    cfg.http_api.key = "k3y".into();
    let srv = start(cfg).await;
    let body = r#"{"channel":"a","data":{}}"#;
    let (status, _) = srv.post("/api/publish", body, &[]).await;
    assert_eq!(status, 401);
    let (status, _) = srv
        .post("/api/publish", body, &[("X-API-Key", "wrong")])
        .await;
    assert_eq!(status, 401);
    let (status, b) = srv
        .post("/api/publish", body, &[("X-API-Key", "k3y")])
        .await;
    assert_eq!(status, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["result"]["offset"], 1);
    let (status, _) = srv
        .post("/api/publish", body, &[("Authorization", "apikey k3y")])
        .await;
    assert_eq!(status, 200);
    srv.shutdown().await;
}

#[tokio::test]
async fn api_errors_and_unknown_methods() {
    let srv = start(dev_config()).await;
    let v = srv.api("publish", r#"{"channel":"ns:x","data":{}}"#).await;
    assert_eq!(v["error"]["code"], 102);
    let v = srv.api("publish", r#"{"channel":"x"}"#).await;
    assert_eq!(v["error"]["code"], 107);
    let (status, _) = srv.post("/api/nope", "{}", &[]).await;
    assert_eq!(status, 404);
    let (status, _) = srv.post("/api/publish", "{bad", &[]).await;
    assert_eq!(status, 400);
    srv.shutdown().await;
}

#[tokio::test]
async fn batch_broadcast_channels_info_and_history_remove() {
    let srv = start(dev_config()).await;
    let (mut a, _) = Client::connected(&srv.ws_url()).await;
    a.call(r#""subscribe":{"channel":"b1"}"#).await;
    let v = srv
        .api("broadcast", r#"{"channels":["b1","b2"],"data":{"x":1}}"#)
        .await;
    let resp = v["result"]["responses"].as_array().unwrap();
    assert_eq!(resp.len(), 2);
    assert_eq!(resp[0]["result"]["offset"], 1);
    assert_eq!(a.data_push().await.channel, "b1");
    let (status, body) = srv
        .post(
            "/api/batch",
            r#"{"commands":[{"publish":{"channel":"b1","data":2}},{"history":{"channel":"b1","limit":10}},{"nope":{}}]}"#,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["replies"][0]["publish"]["offset"], 2);
    assert_eq!(
        v["replies"][1]["history"]["publications"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(v["replies"][2]["error"]["code"], 104);
    let v = srv.api("channels", r#"{"pattern":"b*"}"#).await;
    assert_eq!(v["result"]["channels"]["b1"]["num_clients"], 1);
    let v = srv.api("info", "{}").await;
    assert_eq!(v["result"]["nodes"][0]["num_clients"], 1);
    srv.api("history_remove", r#"{"channel":"b1"}"#).await;
    let v = srv.api("history", r#"{"channel":"b1","limit":10}"#).await;
    assert_eq!(v["result"]["publications"].as_array().unwrap().len(), 0);
    assert_eq!(v["result"]["offset"], 2, "position survives history_remove");
    srv.shutdown().await;
}

#[tokio::test]
async fn api_disconnect_unsubscribe_and_subscribe_reach_the_client() {
    let mut cfg = dev_config();
    cfg.client.token.hmac_secret_key = "s".into();
    let srv = start(cfg).await;
    let token = wshub_hub::auth::generate_connection_token("s", "u1", None, None, &[]).unwrap();
    let mut a = Client::open(&srv.ws_url()).await;
    a.call(&format!(r#""connect":{{"token":"{token}"}}"#)).await;
    a.call(r#""subscribe":{"channel":"c"}"#).await;
    srv.api("unsubscribe", r#"{"user":"u1","channel":"c"}"#)
        .await;
    let p = a.data_push().await;
    assert_eq!(p.channel, "c");
    assert_eq!(p.unsubscribe.unwrap().code, 2000);
    srv.api("subscribe", r#"{"user":"u1","channel":"d"}"#).await;
    let p = a.data_push().await;
    assert_eq!(p.channel, "d");
    assert!(p.subscribe.is_some());
    srv.api("publish", r#"{"channel":"d","data":"x"}"#).await;
    assert_eq!(a.data_push().await.publication.unwrap().offset, 1);
    srv.api(
        "disconnect",
        r#"{"user":"u1","disconnect":{"code":4000,"reason":"bye"}}"#,
    )
    .await;
    assert_eq!(a.closed().await, (4000, "bye".to_owned()));
    srv.shutdown().await;
}

#[tokio::test]
async fn health_ready_metrics_and_demo() {
    let srv = start(dev_config()).await;
    let (mut a, _) = Client::connected(&srv.ws_url()).await;
    a.call(r#""subscribe":{"channel":"m"}"#).await;
    srv.api("publish", r#"{"channel":"m","data":1}"#).await;
    a.data_push().await;
    let get = |path: &'static str| {
        let addr = srv.addr;
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    let t = crate::support::T;
    assert!(tokio::time::timeout(t, get("/health"))
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    assert!(tokio::time::timeout(t, get("/ready"))
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    let m = tokio::time::timeout(t, get("/metrics")).await.unwrap();
    assert!(m.contains("wshub_node_num_clients 1"), "{m}");
    assert!(
        m.contains("wshub_node_messages_sent_total{type=\"publication\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("wshub_client_commands_total{method=\"connect\"} 1"),
        "{m}"
    );
    let index = tokio::time::timeout(t, get("/")).await.unwrap();
    assert!(index.starts_with("HTTP/1.1 200") && index.contains("text/html"));
    srv.shutdown().await;
}

#[tokio::test]
async fn api_refresh_moves_expiry_and_expired_disconnects() {
    let mut cfg = dev_config();
    cfg.client.allow_anonymous_connect_without_token = false;
    cfg.client.token.hmac_secret_key = "test-secret".into();
    cfg.client.expired_close_delay = std::time::Duration::ZERO.into();
    let srv = start(cfg).await;
    let token = |user: &str| {
        wshub_hub::auth::generate_connection_token("test-secret", user, None, None, &[]).unwrap()
    };
    // Tokens without exp: the connections never expire on their own.
    let mut soon = Client::open(&srv.ws_url()).await;
    soon.call(&format!(r#""connect":{{"token":"{}"}}"#, token("soon")))
        .await
        .connect
        .expect("connect");
    let mut later = Client::open(&srv.ws_url()).await;
    later
        .call(&format!(r#""connect":{{"token":"{}"}}"#, token("later")))
        .await
        .connect
        .expect("connect");
    let mut gone = Client::open(&srv.ws_url()).await;
    gone.call(&format!(r#""connect":{{"token":"{}"}}"#, token("gone")))
        .await
        .connect
        .expect("connect");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let r = srv
        .api(
            "refresh",
            &format!(r#"{{"user":"soon","expire_at":{}}}"#, now + 1),
        )
        .await;
    assert!(r.get("error").is_none(), "{r}");
    srv.api(
        "refresh",
        &format!(
            r#"{{"user":"later","expire_at":{},"info":{{"role":"x"}}}}"#,
            now + 600
        ),
    )
    .await;
    srv.api("refresh", r#"{"user":"gone","expired":true}"#)
        .await;
    assert_eq!(
        gone.closed().await.0,
        3005,
        "expired: true disconnects at once"
    );
    let t0 = std::time::Instant::now();
    assert_eq!(soon.closed().await.0, 3005, "expire_at reached");
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    // The one moved far ahead is still served.
    let r = later.call(r#""subscribe":{"channel":"x"}"#).await;
    assert!(r.error.is_none(), "{r:?}");
    srv.shutdown().await;
}

#[tokio::test]
async fn api_subscribe_with_data_info_and_recovery() {
    let mut cfg = dev_config();
    cfg.client.allow_anonymous_connect_without_token = false;
    cfg.client.token.hmac_secret_key = "test-secret".into();
    let srv = start(cfg).await;
    let token =
        wshub_hub::auth::generate_connection_token("test-secret", "u1", None, None, &[]).unwrap();
    let mut c = Client::open(&srv.ws_url()).await;
    c.call(&format!(r#""connect":{{"token":"{token}"}}"#))
        .await
        .connect
        .expect("connect");
    let mut epoch = String::new();
    for i in 1..=3 {
        let r = srv
            .api(
                "publish",
                &format!(r#"{{"channel":"news","data":{{"n":{i}}}}}"#),
            )
            .await;
        epoch = r["result"]["epoch"].as_str().unwrap().to_owned();
    }
    let r = srv
        .api(
            "subscribe",
            &format!(
                r#"{{"user":"u1","channel":"news","info":{{"role":"reader"}},"data":{{"hello":1}},
                    "recover_since":{{"offset":1,"epoch":"{epoch}"}}}}"#
            ),
        )
        .await;
    assert!(r.get("error").is_none(), "{r}");
    let p = c.push().await;
    let sub = p.subscribe.expect("subscribe push first");
    assert_eq!(p.channel, "news");
    assert_eq!(&sub.data[..], br#"{"hello":1}"#);
    assert_eq!((sub.offset, sub.epoch.as_str()), (3, epoch.as_str()));
    // Publications 2 and 3 follow, in order, then live ones.
    for want in [2, 3] {
        let p = c.data_push().await;
        let publication = p.publication.expect("publication");
        assert_eq!(publication.offset, want);
        assert_eq!(
            &publication.data[..],
            format!(r#"{{"n":{want}}}"#).as_bytes()
        );
    }
    srv.api("publish", r#"{"channel":"news","data":{"n":4}}"#)
        .await;
    assert_eq!(c.data_push().await.publication.unwrap().offset, 4);
    // The channel info shows in presence.
    let r = srv.api("presence", r#"{"channel":"news"}"#).await;
    let presence = r["result"]["presence"].as_object().expect("presence");
    let entry = presence.values().next().expect("one client");
    assert_eq!(entry["user"], "u1");
    assert_eq!(entry["chan_info"], serde_json::json!({"role": "reader"}));
    srv.shutdown().await;
}

/// The `/metrics` text of `srv`.
async fn metrics(srv: &crate::support::TestServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(crate::support::T, async {
        let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    })
    .await
    .expect("metrics in time")
}

fn publishes(n: usize, channel: &str) -> String {
    let cmds: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"publish":{{"channel":"{channel}","data":{{"i":{i}}}}}}}"#))
        .collect();
    format!(r#"{{"commands":[{}]}}"#, cmds.join(","))
}

#[tokio::test]
async fn batch_past_max_batch_commands_is_refused_with_400_naming_the_limit() {
    let mut cfg = dev_config();
    cfg.http_api.max_batch_commands = 5;
    let srv = start(cfg).await;
    let (status, body) = srv.post("/api/batch", &publishes(6, "lim"), &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("http_api.max_batch_commands") && body.contains("more than 5"),
        "{body}"
    );
    // Nothing of the refused batch ran.
    let v = srv.api("history", r#"{"channel":"lim","limit":-1}"#).await;
    assert_eq!(v["result"]["offset"], 0, "{v}");
    let (status, body) = srv.post("/api", &publishes(5, "lim"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["replies"][4]["publish"]["offset"], 5, "{v}");
    let m = metrics(&srv).await;
    assert!(
        m.contains("wshub_api_limit_exceeded_total{limit=\"max_batch_commands\"} 1"),
        "{m}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn big_batch_is_streamed_in_order_with_per_command_errors() {
    let srv = start(dev_config()).await;
    let n = 6000;
    let mut cmds: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"publish":{{"channel":"big","data":{{"i":{i}}}}}}}"#))
        .collect();
    cmds[10] = r#"{"nope":{}}"#.into();
    cmds[11] = r#"{}"#.into();
    cmds[12] = r#"{"publish":{"channel":"big","data":1},"info":{}}"#.into();
    cmds[13] = r#"{"publish":{"channel":"big"}}"#.into();
    cmds[14] = r#"{"batch":{"commands":[]}}"#.into();
    let body = format!(r#"{{"commands":[{}],"parallel":true}}"#, cmds.join(","));
    let raw = tokio::time::timeout(crate::support::T, async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        let req = format!(
            "POST /api/batch HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    })
    .await
    .expect("answer in time");
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "the answer is streamed: {head}"
    );
    let v: serde_json::Value = serde_json::from_str(&crate::support::dechunk(rest)).unwrap();
    let replies = v["replies"].as_array().unwrap();
    assert_eq!(replies.len(), n);
    assert_eq!(replies[10]["error"]["code"], 104, "unknown method");
    assert_eq!(replies[11]["error"]["code"], 107, "empty command");
    assert_eq!(replies[12]["error"]["code"], 107, "two methods");
    assert_eq!(replies[13]["error"]["code"], 107, "data required");
    assert_eq!(replies[14]["error"]["code"], 104, "no batch in a batch");
    // The publishes ran in order: offsets count up over the good ones.
    let offsets: Vec<u64> = replies
        .iter()
        .filter_map(|r| r["publish"]["offset"].as_u64())
        .collect();
    assert_eq!(offsets.len(), n - 5);
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1));
    srv.shutdown().await;
}

#[tokio::test]
async fn broadcast_past_max_broadcast_channels_is_refused() {
    let mut cfg = dev_config();
    cfg.http_api.max_broadcast_channels = 3;
    let srv = start(cfg).await;
    let four = r#"{"channels":["a","b","c","d"],"data":1}"#;
    let (status, body) = srv.post("/api/broadcast", four, &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("http_api.max_broadcast_channels"), "{body}");
    let v = srv
        .api("broadcast", r#"{"channels":["a","b","c"],"data":1}"#)
        .await;
    assert_eq!(v["result"]["responses"].as_array().unwrap().len(), 3);
    // Inside a batch the refusal is that command's reply.
    let batch = format!(
        r#"{{"commands":[{{"broadcast":{four}}},{{"publish":{{"channel":"a","data":2}}}}]}}"#
    );
    let (status, body) = srv.post("/api/batch", &batch, &[]).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["replies"][0]["error"]["code"], 107, "{v}");
    let msg = v["replies"][0]["error"]["message"].as_str().unwrap();
    assert!(msg.contains("http_api.max_broadcast_channels"), "{msg}");
    assert_eq!(v["replies"][1]["publish"]["offset"], 2, "{v}");
    srv.shutdown().await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_clear_errors() {
    let srv = start(dev_config()).await;
    let (status, body) = srv.post("/api/publish", r#"{"channel":1}"#, &[]).await;
    assert_eq!(status, 400);
    assert!(body.starts_with("bad request: invalid type"), "{body}");
    let (status, body) = srv.post("/api/batch", r#"{"commands":{}}"#, &[]).await;
    assert_eq!(status, 400);
    assert!(body.starts_with("bad request"), "{body}");
    // A declared length past 16 MiB is refused before any byte is read.
    let raw = tokio::time::timeout(crate::support::T, async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .expect("answer in time");
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    srv.shutdown().await;
}

#[tokio::test]
async fn in_flight_bodies_are_bounded_node_wide() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = dev_config();
    cfg.http_api.max_in_flight_body_size = 1000;
    let srv = start(cfg).await;
    // A caller that declared 800 bytes and sent half of them holds 800.
    let body = format!(r#"{{"channel":"f","data":"{}"}}"#, "x".repeat(775));
    assert_eq!(body.len(), 800);
    let mut slow = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\nConnection: close\r\n\r\n{}",
            &body[..400]
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let small = format!(r#"{{"channel":"f","data":"{}"}}"#, "y".repeat(275));
    let (status, text) = srv.post("/api/publish", &small, &[]).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("http_api.max_in_flight_body_size"), "{text}");
    // The slow one completes; its bytes are given back.
    slow.write_all(&body.as_bytes()[400..]).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(crate::support::T, slow.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let (status, text) = srv.post("/api/publish", &small, &[]).await;
    assert_eq!(status, 200, "{text}");
    let m = metrics(&srv).await;
    assert!(
        m.contains("wshub_api_limit_exceeded_total{limit=\"max_in_flight_body_size\"} 1"),
        "{m}"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn batch_stops_when_the_caller_does_not_read() {
    use tokio::io::AsyncWriteExt;
    let mut cfg = dev_config();
    cfg.http_api.response_write_timeout = std::time::Duration::from_secs(1).into();
    let srv = start(cfg).await;
    // One 60 KB publication; each history command answers it again.
    let big = format!(r#"{{"channel":"h","data":"{}"}}"#, "z".repeat(60_000));
    srv.api("publish", &big).await;
    let n = 3000; // ~180 MB of answer: far more than socket buffers.
    let cmds: Vec<&str> = (0..n)
        .map(|_| r#"{"history":{"channel":"h","limit":1}}"#)
        .collect();
    let body = format!(r#"{{"commands":[{}]}}"#, cmds.join(","));
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api/batch HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Never read. Within the timeout and a margin the batch gives up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let m = metrics(&srv).await;
        if m.contains("wshub_api_limit_exceeded_total{limit=\"response_write_timeout\"} 1") {
            let ran: u64 = m
                .lines()
                .find_map(|l| l.strip_prefix("wshub_api_calls_total{method=\"history\"} "))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            assert!(ran < n as u64, "stopped early: {ran} of {n} ran");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "batch never stopped: {m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    drop(s);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_times_out_and_frees_its_budget() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut cfg = dev_config();
    cfg.http_api.request_body_timeout = std::time::Duration::from_secs(1).into();
    cfg.http_api.max_in_flight_body_size = 1000;
    let srv = start(cfg).await;
    let mut slow = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    slow.write_all(
        b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\n\r\n{\"channel\"",
    )
    .await
    .unwrap();
    let t = std::time::Instant::now();
    let mut out = String::new();
    tokio::time::timeout(crate::support::T, slow.read_to_string(&mut out))
        .await
        .expect("answered and closed in time")
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains("http_api.request_body_timeout"), "{out}");
    assert!(t.elapsed() >= std::time::Duration::from_millis(900));
    // Its 900 bytes are free again.
    let body = format!(r#"{{"channel":"t","data":"{}"}}"#, "x".repeat(800));
    let (status, text) = srv.post("/api/publish", &body, &[]).await;
    assert_eq!(status, 200, "{text}");
    srv.shutdown().await;
}
