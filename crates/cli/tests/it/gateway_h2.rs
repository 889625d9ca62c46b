//! The gateway over HTTP/2: `/connection/websocket` by extended CONNECT
//! (RFC 8441) on the same port as HTTP/1.1, cleartext with prior knowledge
//! and TLS with ALPN `h2`, with the client protocol working on every
//! stream; the metrics count connections and WebSockets by HTTP version.

use std::io::{Read, Write};
use std::time::Duration;

use wshub_proto::Message;
use wshub_ws::{
    connect_prefer_http2, ClientOptions, Http2Connection, Http2WebSocket, TlsOptions, WebSocket,
};

use crate::rust_client::runtime;
use crate::sdk_interop::wshub_serve;
use crate::support::{http_response, Proc};

fn config() -> serde_json::Value {
    serde_json::json!({
        "client": { "allow_anonymous_connect_without_token": true },
        "prometheus": { "enabled": true },
        "http_api": { "insecure": true },
        "sse": { "enabled": true },
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_client": true,
                "allow_subscribe_for_anonymous": true,
                "allow_publish_for_client": true,
                "allow_publish_for_anonymous": true
            }
        }
    })
}

fn host(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_owned()
}

/// A `GET` over plain HTTP/1.1: status and body.
pub fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    http_response(&raw)
}

fn metric(addr: &str, sample: &str) -> u64 {
    let (_, text) = get(addr, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in /metrics"))
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out")
}

async fn text<S>(ws: &mut WebSocket<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match within(ws.recv()).await {
            Some(Ok(Message::Text(t))) if &*t == "{}" => ws.send_text("{}").await.unwrap(),
            Some(Ok(Message::Text(t))) => return t.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Connects and subscribes on one stream: the connect reply names the
/// client.
async fn join<S>(ws: &mut WebSocket<S>, channel: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send_text(&format!(
        "{}\n{}",
        serde_json::json!({"id": 1, "connect": {"name": "h2-test"}}),
        serde_json::json!({"id": 2, "subscribe": {"channel": channel}})
    ))
    .await
    .unwrap();
    let mut got = String::new();
    while !(got.contains("\"id\":1") && got.contains("\"id\":2")) {
        got.push_str(&text(ws).await);
        got.push('\n');
    }
    assert!(got.contains("\"client\""), "{got}");
    assert!(!got.contains("\"error\""), "{got}");
}

#[test]
fn websockets_over_one_cleartext_http2_connection_chat() {
    let (_server, url) = wshub_serve(&config().to_string());
    let addr = host(&url);
    runtime().block_on(async {
        let conn = within(Http2Connection::connect(
            &format!("ws://{addr}"),
            &ClientOptions::default(),
        ))
        .await
        .unwrap();
        let mut sockets: Vec<Http2WebSocket> = Vec::new();
        for _ in 0..10 {
            let mut ws = within(conn.websocket("/connection/websocket", &ClientOptions::default()))
                .await
                .unwrap();
            join(&mut ws, "room").await;
            sockets.push(ws);
        }
        // One stream publishes; every stream (itself included) receives it.
        let publication = serde_json::json!({"id": 3, "publish": {"channel": "room", "data": {"text": "hi over h2"}}});
        sockets[0]
            .send_text(&publication.to_string())
            .await
            .unwrap();
        for (i, ws) in sockets.iter_mut().enumerate() {
            let mut seen = String::new();
            while !seen.contains("hi over h2") {
                seen = text(ws).await;
            }
            assert!(seen.contains("\"room\"") || seen.contains("push"), "stream {i}: {seen}");
        }
    });
    assert_eq!(
        metric(&addr, "wshub_websockets_opened_total{http_version=\"2\"}"),
        10
    );
    assert_eq!(
        metric(&addr, "wshub_http_connections_total{version=\"2\"}"),
        1
    );
    // HTTP/1.1 on the same port still works and is counted apart.
    assert!(metric(&addr, "wshub_http_connections_total{version=\"1.1\"}") >= 1);
}

#[test]
fn wss_picks_http2_by_alpn_on_the_same_port() {
    let dir = std::env::temp_dir().join(format!("wshub-h2-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let cfg = dir.join("config.json");
    std::fs::write(&cfg, config().to_string()).unwrap();
    let mut cmd = crate::support::wshub();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env_remove("RUST_LOG");
    let mut server = Proc::spawn("wshub serve (tls)", cmd);
    let line = server.next_line(Duration::from_secs(30));
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}\n{}", server.diagnostics()))
        .to_owned();
    assert!(url.starts_with("https://"), "{url}");
    let port = url.rsplit(':').next().unwrap().trim_end_matches('/');
    let tls = TlsOptions::default().extra_ca_pem(ck.cert.pem().into_bytes());
    runtime().block_on(async {
        let opts = ClientOptions::default().tls(tls);
        let mut ws = within(connect_prefer_http2(
            &format!("wss://localhost:{port}/connection/websocket"),
            &opts,
        ))
        .await
        .unwrap();
        assert!(ws.get_ref().is_http2());
        join(&mut ws, "room").await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// `idle_timeout` over HTTP/2: a connection whose only stream is an open
/// WebSocket is not idle (it outlives the timeout and keeps working); once
/// the WebSocket is gone, the connection is closed after the timeout.
#[test]
fn an_http2_connection_is_idle_only_without_open_websockets() {
    let mut cfg = config();
    cfg["http_server"] = serde_json::json!({ "idle_timeout": "1s" });
    let (_server, url) = wshub_serve(&cfg.to_string());
    let addr = host(&url);
    runtime().block_on(async {
        let conn = within(Http2Connection::connect(
            &format!("ws://{addr}"),
            &ClientOptions::default(),
        ))
        .await
        .unwrap();
        let mut ws = within(conn.websocket("/connection/websocket", &ClientOptions::default()))
            .await
            .unwrap();
        join(&mut ws, "room").await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        // Still open, still answering.
        ws.send_text(
            &serde_json::json!({"id": 5, "presence_stats": {"channel": "room"}}).to_string(),
        )
        .await
        .unwrap();
        let reply = text(&mut ws).await;
        assert!(reply.contains("\"id\":5"), "{reply}");
        within(ws.close(wshub_proto::CloseCode::NORMAL, ""))
            .await
            .unwrap();
        assert!(within(ws.recv()).await.is_none());
        drop(ws);
        // With idle_timeout 1 s the close was seen to come later than
        // 2.5 s after the WebSocket ended (1 run in 4 here, and once in a
        // CI run): wait 4 s.
        tokio::time::sleep(Duration::from_millis(4000)).await;
        // Idle for longer than the timeout: the server closed it.
        let after = conn
            .websocket("/connection/websocket", &ClientOptions::default())
            .await;
        assert!(after.is_err(), "the idle HTTP/2 connection was not closed");
    });
    assert!(metric(&addr, "wshub_http_timeouts_total{phase=\"idle\"}") >= 1);
}
