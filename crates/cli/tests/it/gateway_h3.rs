//! The gateway over HTTP/3: `wshub serve --tls-cert --tls-key --http3`
//! listens on UDP at its TLS port number, and our Rust client opens
//! WebSockets at `/connection/websocket` by extended CONNECT (RFC 9220),
//! many on one QUIC connection, with the client protocol working on each;
//! the metrics count the QUIC connection and the WebSockets as HTTP/3.

use std::time::Duration;

use wshub_proto::Message;
use wshub_ws::{ClientOptions, Http3Client, Http3Options, Http3WebSocket, TlsOptions};

use crate::browser_h2::{metrics, sample};
use crate::rust_client::runtime;
use crate::support::Proc;

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out")
}

/// The next text message that is not a server ping (answered).
async fn text(ws: &mut Http3WebSocket) -> String {
    loop {
        match within(ws.recv()).await {
            Some(Ok(Message::Text(t))) if &*t == "{}" => ws.send_text("{}").await.unwrap(),
            Some(Ok(Message::Text(t))) => return t.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

#[test]
fn websockets_over_one_http3_connection_chat() {
    let dir = std::env::temp_dir().join(format!("wshub-h3-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let mut cmd = crate::support::wshub();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--http3", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env_remove("RUST_LOG");
    let mut server = Proc::spawn("wshub serve (http3)", cmd);
    let line = server.next_line(Duration::from_secs(30));
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}\n{}", server.diagnostics()))
        .to_owned();
    let udp = server.next_line(Duration::from_secs(10));
    let port = url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    assert_eq!(
        udp,
        format!("listening on udp/127.0.0.1:{port} (HTTP/3)"),
        "HTTP/3 on the TLS port number"
    );
    let addr = format!("127.0.0.1:{port}");
    let tls = TlsOptions::default().extra_ca_pem(ck.cert.pem().into_bytes());
    let opts = ClientOptions::default().tls(tls);
    runtime().block_on(async {
        let client = within(Http3Client::connect(
            &format!("https://localhost:{port}"),
            &opts,
            &Http3Options::default(),
        ))
        .await
        .unwrap();
        assert!(client.supports_websockets());
        let mut sockets: Vec<Http3WebSocket> = Vec::new();
        for i in 0..10 {
            let mut ws = within(client.websocket("/connection/websocket", &opts))
                .await
                .unwrap();
            ws.send_text(&format!(
                "{}\n{}",
                serde_json::json!({"id": 1, "connect": {"name": format!("h3-{i}")}}),
                serde_json::json!({"id": 2, "subscribe": {"channel": "room"}})
            ))
            .await
            .unwrap();
            let mut got = String::new();
            while !(got.contains("\"id\":1") && got.contains("\"id\":2")) {
                got.push_str(&text(&mut ws).await);
                got.push('\n');
            }
            assert!(got.contains("\"client\"") && !got.contains("\"error\""), "{got}");
            sockets.push(ws);
        }
        let publication = serde_json::json!({"id": 3, "publish": {"channel": "room", "data": {"text": "hi over h3"}}});
        sockets[0].send_text(&publication.to_string()).await.unwrap();
        for (i, ws) in sockets.iter_mut().enumerate() {
            let mut seen = String::new();
            while !seen.contains("hi over h3") {
                seen = text(ws).await;
            }
            assert!(seen.contains("room") || seen.contains("push"), "stream {i}: {seen}");
        }
        // Not the WebSocket endpoint: refused, the connection lives on.
        assert!(within(client.websocket("/elsewhere", &opts)).await.is_err());
        let mut ws = within(client.websocket("/connection/websocket", &opts))
            .await
            .unwrap();
        ws.send_text(r#"{"id":1,"connect":{}}"#).await.unwrap();
        assert!(text(&mut ws).await.contains("\"client\""));
        for mut ws in sockets {
            let _ = within(ws.close(wshub_ws::CloseCode(1000), "bye")).await;
        }
    });
    let m = metrics(&addr, &cert);
    let show = |n: &str| format!("{n} {}", sample(&m, n));
    let ws3 = "wshub_websockets_opened_total{http_version=\"3\"}";
    let conn3 = "wshub_http_connections_total{version=\"3\"}";
    eprintln!("{}\n{}", show(ws3), show(conn3));
    assert_eq!(sample(&m, ws3), 11, "{m}");
    assert_eq!(sample(&m, conn3), 1, "{m}");
    assert_eq!(
        sample(&m, "wshub_websockets_opened_total{http_version=\"1.1\"}"),
        0
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
