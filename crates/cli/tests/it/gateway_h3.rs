//! The gateway over HTTP/3: `wshub serve --tls-cert --tls-key --http3`
//! listens on UDP at its TLS port number, and our Rust client opens
//! WebSockets at `/connection/websocket` by extended CONNECT (RFC 9220),
//! many on one QUIC connection, with the client protocol working on each;
//! the metrics count the QUIC connection and the WebSockets as HTTP/3.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// `wshub serve --http3` with a fresh self-signed certificate for
/// `localhost` and `extra` arguments: the guard, its port, the certificate
/// (PEM) and its directory.
fn serve_h3(tag: &str, extra: &[&str]) -> (Proc, String, String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("wshub-h3-{tag}-{}", std::process::id()));
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
        .args(extra)
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
    (server, port, ck.cert.pem(), dir)
}

#[test]
fn websockets_over_one_http3_connection_chat() {
    let (server, port, pem, dir) = serve_h3("chat", &[]);
    let cert = dir.join("cert.pem");
    let addr = format!("127.0.0.1:{port}");
    let tls = TlsOptions::default().extra_ca_pem(pem.into_bytes());
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

/// A real client Initial for `server`, from quinn-proto driven by hand.
fn client_initial(server: SocketAddr) -> Vec<u8> {
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let now = Instant::now();
    let (_, mut conn) = endpoint
        .connect(
            now,
            quinn_proto::ClientConfig::new(Arc::new(crypto)),
            server,
            "localhost",
        )
        .unwrap();
    let mut initial = Vec::new();
    let t = conn.poll_transmit(now, 1, &mut initial).unwrap();
    initial.truncate(t.size);
    initial
}

/// 50 QUIC handshakes that are never answered (a real client Initial each,
/// from its own socket, then silence), against `wshub serve --http3` with
/// `tls_handshake_timeout` 2 s, while a real client connects and chats:
/// the server sends each at most three times what it received plus one
/// datagram (RFC 9000 §8.1; quinn rounds the last datagram up), stops
/// within the timeout plus a margin, counts all 50 in
/// `wshub_quic_handshake_failures_total`, and the real client is served
/// throughout.
#[test]
fn unanswered_quic_handshakes_are_bounded_and_dropped() {
    let cfg = std::env::temp_dir().join(format!("wshub-h3-flood-{}.json", std::process::id()));
    std::fs::write(
        &cfg,
        serde_json::json!({
            "http_server": {"tls_handshake_timeout": "2s"},
            "client": {"allow_anonymous_connect_without_token": true},
            "prometheus": {"enabled": true}
        })
        .to_string(),
    )
    .unwrap();
    let (server, port, pem, dir) = serve_h3("flood", &["--config", cfg.to_str().unwrap()]);
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    const N: usize = 50;
    let opts = ClientOptions::default().tls(TlsOptions::default().extra_ca_pem(pem.into_bytes()));
    let runs = runtime().block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..N {
            let initial = client_initial(target);
            tasks.push(tokio::spawn(async move {
                let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let start = tokio::time::Instant::now();
                sock.send_to(&initial, target).await.unwrap();
                let (mut got, mut last) = (0usize, Duration::ZERO);
                let mut buf = vec![0u8; 65536];
                while let Ok(Ok((n, _))) = tokio::time::timeout_at(
                    start + Duration::from_secs(6),
                    sock.recv_from(&mut buf),
                )
                .await
                {
                    got += n;
                    last = start.elapsed();
                }
                (initial.len(), got, last)
            }));
        }
        // A real client meanwhile.
        let client = within(Http3Client::connect(
            &format!("https://localhost:{port}"),
            &opts,
            &Http3Options::default(),
        ))
        .await
        .unwrap();
        let mut ws = within(client.websocket("/connection/websocket", &opts))
            .await
            .unwrap();
        ws.send_text(r#"{"id":1,"connect":{}}"#).await.unwrap();
        assert!(text(&mut ws).await.contains("\"client\""));
        let mut runs = Vec::new();
        for t in tasks {
            runs.push(t.await.unwrap());
        }
        // Still served after the flood.
        ws.send_text(r#"{"id":2,"presence_stats":{"channel":"x"}}"#)
            .await
            .unwrap();
        assert!(text(&mut ws).await.contains("\"id\":2"));
        runs
    });
    let (sent, got): (usize, usize) = runs.iter().fold((0, 0), |a, r| (a.0 + r.0, a.1 + r.1));
    let latest = runs.iter().map(|r| r.2).max().unwrap();
    eprintln!(
        "{N} unanswered Initials: {sent} bytes sent, {got} bytes answered ({:.2}x), last datagram after {latest:?}",
        got as f64 / sent as f64
    );
    for (i, (s, g, last)) in runs.iter().enumerate() {
        assert!(*g > 0, "handshake {i}: no answer");
        assert!(
            *g <= 3 * s + 1500,
            "handshake {i}: {g} bytes sent for {s} received"
        );
        assert!(
            *last < Duration::from_secs(4),
            "handshake {i}: still sending after {last:?}"
        );
    }
    let m = metrics(&format!("127.0.0.1:{port}"), &dir.join("cert.pem"));
    assert_eq!(
        sample(&m, "wshub_quic_handshake_failures_total"),
        N as u64,
        "{m}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&cfg);
}
