//! Node's built-in `http2` client → `wshub echo` and `wshub serve`:
//! WebSockets over HTTP/2 (RFC 8441), ten at once on one session,
//! cleartext (prior knowledge) and TLS (ALPN `h2`); against the gateway
//! they chat with the Centrifugo JSON protocol. The WebSocket framing is the script's own
//! (`tests/interop/node/h2_ws.js`), so nothing of ours is on the client
//! side.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::support::{node_script, run_client_ok, wshub, Proc, STARTUP};

const CLIENT_LIMIT: Duration = Duration::from_secs(90);
const STREAMS: u64 = 10;

/// Starts `wshub echo --listen 127.0.0.1:0 EXTRA...` and returns the guard
/// and its `HOST:PORT` (from `listening on ws://…` or `wss://…`).
fn echo_server(extra: &[&str], scheme: &str) -> (Proc, String) {
    let mut cmd = wshub();
    cmd.args(["echo", "--listen", "127.0.0.1:0"]).args(extra);
    let mut p = Proc::spawn("wshub echo", cmd);
    let line = p.next_line(STARTUP);
    let prefix = format!("listening on {scheme}://");
    match line.strip_prefix(&prefix) {
        Some(addr) => {
            let addr = addr.trim_end_matches('/').to_owned();
            (p, addr)
        }
        None => panic!(
            "expected `{prefix}ADDR` as the first line, got {line:?}\n{}",
            p.diagnostics()
        ),
    }
}

/// A self-signed certificate for 127.0.0.1 in a fresh directory; returns
/// the directory and the certificate and key paths.
fn test_certificate() -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("wshub-h2-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (dir, cert, key)
}

/// Runs `h2_ws.js URL EXTRA...` against `server`, returns its JSON summary
/// after checking what every run must show: one session, ten streams open
/// at once, every echo byte for byte, every close code echoed.
fn run_h2_ws(server: &Proc, url: &str, extra: &[&str], want_alpn: &str) -> Value {
    let mut cmd = node_script("h2_ws.js");
    cmd.arg(url).args(extra);
    let out = run_client_ok("node h2_ws.js", cmd, CLIENT_LIMIT, server);
    let stdout = out.stdout_str();
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON summary in h2_ws.js output:\n{stdout}"));
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["alpn"], want_alpn, "negotiated protocol: {v}");
    assert_eq!(v["enable_connect_protocol"], true, "{v}");
    assert_eq!(v["max_concurrent_streams"], 128, "{v}");
    assert_eq!(v["streams"], STREAMS, "{v}");
    assert_eq!(
        v["open_at_once"], STREAMS,
        "all streams open before any message: {v}"
    );
    assert_eq!(v["sessions"], 1, "every stream on the one session: {v}");
    // Five messages and a ping per stream: text, UTF-8 text, empty text,
    // 100 000 bytes of binary, empty binary.
    assert_eq!(v["messages"], 5 * STREAMS, "{v}");
    assert_eq!(v["pongs"], STREAMS, "{v}");
    let per_stream_text: u64 = (0..STREAMS)
        .map(|i| format!("hello from stream {i}").len() as u64 + 4000 + i)
        .sum();
    assert_eq!(
        v["bytes"].as_u64(),
        Some(per_stream_text + STREAMS * 100_000),
        "{v}"
    );
    let codes: Vec<u64> = v["close_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no close_codes: {v}"))
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let want: Vec<u64> = (0..STREAMS)
        .map(|i| if i == 0 { 1000 } else { 4000 + i })
        .collect();
    assert_eq!(codes, want, "close codes echoed per stream: {v}");
    v
}

#[test]
fn node_http2_ten_websockets_on_one_cleartext_session() {
    let (server, addr) = echo_server(&[], "ws");
    let v = run_h2_ws(&server, &format!("http://{addr}"), &[], "h2c");
    assert!(v["certificate_verified"].is_null(), "{v}");
}

#[test]
fn node_http2_ten_websockets_on_one_tls_session() {
    let (dir, cert, key) = test_certificate();
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let (server, addr) = echo_server(&["--tls-cert", cert_s, "--tls-key", key_s], "wss");
    let url = format!("https://{addr}");
    // Verified against the test certificate, then once more without
    // verification (how a client with no CA at hand would connect).
    let v = run_h2_ws(&server, &url, &["--ca", cert_s], "h2");
    assert_eq!(v["certificate_verified"], true, "{v}");
    let v = run_h2_ws(&server, &url, &[], "h2");
    assert_eq!(v["certificate_verified"], false, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same client against the gateway (`wshub serve`, cleartext HTTP/2):
/// ten streams of one session connect and subscribe with the Centrifugo
/// JSON protocol, one publishes, all ten receive it, each closes with 1000.
#[test]
fn node_http2_ten_gateway_clients_on_one_session_chat() {
    let config = serde_json::json!({
        "client": {
            "allow_anonymous_connect_without_token": true,
            // The script sends the Origin of the server's own URL.
            "allowed_origins": ["http://127.0.0.1:*"]
        },
        "channel": { "without_namespace": {
            "allow_subscribe_for_client": true,
            "allow_subscribe_for_anonymous": true,
            "allow_publish_for_client": true,
            "allow_publish_for_anonymous": true
        } }
    });
    let (server, url) = crate::sdk_interop::wshub_serve(&config.to_string());
    let mut cmd = node_script("h2_ws.js");
    cmd.arg(&url).args(["--gateway", "--streams", "10"]);
    let out = run_client_ok("node h2_ws.js --gateway", cmd, CLIENT_LIMIT, &server);
    let stdout = out.stdout_str();
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON summary:\n{stdout}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["alpn"], "h2c", "{v}");
    assert_eq!(v["sessions"], 1, "{v}");
    assert_eq!(v["streams"], 10, "{v}");
    assert_eq!(v["received"], 10, "{v}");
    assert_eq!(v["close_codes"], serde_json::json!(vec![1000; 10]), "{v}");
}
