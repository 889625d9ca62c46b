//! Node `ws` client → `wshub echo`, and Node `ws` server → our Rust client.

use std::time::Duration;

use wshub_proto::{CloseCode, DeflateConfig, Message, Utf8Bytes};
use wshub_ws::{connect, ClientOptions};

use crate::payload::{binary, echo_one, text};
use crate::support::{
    check_echo_client_output, node_echo_server, node_script, run_client_ok, wshub_echo,
};

const CLIENT_LIMIT: Duration = Duration::from_secs(120);

fn node_client_against_wshub_echo(deflate: bool, echo_args: &[&str]) {
    let flag = if deflate { "--deflate" } else { "--no-deflate" };
    let (server, url) = wshub_echo(echo_args);
    let mut cmd = node_script("echo_client.js");
    cmd.args([url.as_str(), flag]);
    let out = run_client_ok("node echo_client.js", cmd, CLIENT_LIMIT, &server);
    check_echo_client_output(&out.stdout_str(), deflate);
}

/// Also covers the single-threaded runtime that benchmarks use.
#[test]
fn node_client_echo_plain_single_thread() {
    node_client_against_wshub_echo(false, &["--threads", "1"]);
}

#[test]
fn node_client_echo_deflate() {
    node_client_against_wshub_echo(true, &["--deflate"]);
}

/// Our client with permessage-deflate against a Node `ws` echo server.
#[test]
fn rust_client_against_node_server_with_deflate() {
    let (mut server, url) = node_echo_server(&["--deflate"]);
    let rt = crate::rust_client::runtime();
    rt.block_on(async {
        let opts = ClientOptions::default().deflate(Some(DeflateConfig::default()));
        let mut ws = tokio::time::timeout(Duration::from_secs(10), connect(&url, &opts))
            .await
            .expect("connect timed out")
            .unwrap_or_else(|e| panic!("connect to {url} failed: {e}"));
        assert!(
            ws.deflate().is_some(),
            "permessage-deflate not negotiated with Node ws"
        );
        for (n, what) in [(100, "text 100"), (1 << 20, "text 1 MiB")] {
            echo_one(&mut ws, Message::Text(Utf8Bytes::from(text(n))), what).await;
        }
        echo_one(
            &mut ws,
            Message::Binary(binary(65536).into()),
            "binary 65536",
        )
        .await;
        ws.close(CloseCode::NORMAL, "bye").await.expect("close");
        let end = tokio::time::timeout(Duration::from_secs(10), ws.recv())
            .await
            .expect("no end of stream after the close handshake");
        assert!(end.is_none(), "expected the end after close, got {end:?}");
    });
    let open = server.wait_for_line("its open line", Duration::from_secs(10), |l| {
        l.starts_with("open ")
    });
    assert_eq!(open, "open extensions=permessage-deflate");
    server.wait_for_line("closed code=1000", Duration::from_secs(10), |l| {
        l.starts_with("closed code=1000")
    });
}

/// Echoes still in flight when we close are not lost: `close` keeps them
/// for `recv`, which hands them out in order before the end. (Node `ws`
/// sends an echo before it answers a close that arrived after the message;
/// Python `websockets` answers the close at once, which RFC 6455 allows, so
/// it cannot serve for this test.)
#[test]
fn rust_client_keeps_echoes_that_arrive_during_close() {
    let (mut server, url) = node_echo_server(&["--deflate"]);
    crate::rust_client::runtime().block_on(async {
        let opts = ClientOptions::default().deflate(Some(DeflateConfig::default()));
        let mut ws = tokio::time::timeout(Duration::from_secs(10), connect(&url, &opts))
            .await
            .expect("connect timed out")
            .unwrap_or_else(|e| panic!("connect to {url} failed: {e}"));
        let sent: Vec<String> = [5, 16 << 10, 1 << 20].iter().map(|&n| text(n)).collect();
        for s in &sent {
            ws.send_text(s).await.expect("send");
        }
        tokio::time::timeout(Duration::from_secs(10), ws.close(CloseCode::NORMAL, "bye"))
            .await
            .expect("close handshake timed out")
            .unwrap_or_else(|e| panic!("close failed: {e}"));
        for (i, s) in sent.iter().enumerate() {
            match tokio::time::timeout(Duration::from_secs(5), ws.recv()).await {
                Ok(Some(Ok(Message::Text(t)))) => assert!(
                    t.as_str() == s,
                    "echo {i} differs ({} bytes sent, {} received)",
                    s.len(),
                    t.len()
                ),
                other => panic!(
                    "echo {i} of {} ({} bytes) lost after close: got {:?}",
                    sent.len(),
                    s.len(),
                    other.map(|o| o.map(|r| r.map(|m| format!("{} byte message", m.len()))))
                ),
            }
        }
        let end = tokio::time::timeout(Duration::from_secs(5), ws.recv())
            .await
            .expect("recv after the close handshake hung");
        assert!(end.is_none(), "expected the end, got {end:?}");
    });
    server.wait_for_line("closed code=1000", Duration::from_secs(10), |l| {
        l.starts_with("closed code=1000")
    });
}
