//! The official `centrifuge` npm SDK's browser bundles (JSON and protobuf)
//! in Debian's headless Chromium on their `webtransport` transport, against
//! `wshub serve --tls-cert --tls-key --webtransport` (HTTP/3 over QUIC on
//! the TLS port number) with a short-lived ECDSA P-256 certificate from
//! `wshub gen-cert`. The page pins it by its SHA-256 in WebTransport's
//! `serverCertificateHashes` (the SDK constructs `globalThis.WebTransport`;
//! the page swaps in a subclass that adds the option), and WebSocket is
//! blocked in the page, so nothing else can carry the session: the same
//! scenario as over WebSocket (`tests/interop/browser/sdk.mjs`) — connect,
//! subscribe, publish both ways, presence, history, and recovery after a
//! disconnect()/connect() and after the transport closed under the SDK.
//! The server's `/metrics` confirm it: WebTransport sessions over HTTP/3
//! connections, and no WebSocket at all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::browser::{browser_dir, require_browser, CHROMIUM};
use crate::browser_h2::{gen_cert_hashes, metrics, sample, serve_tls};
use crate::support::{interop_dir, run_client_ok};

const WT_SESSIONS: &str = "wshub_webtransport_sessions_total";
const CONN_H3: &str = "wshub_http_connections_total{version=\"3\"}";
const WS: [&str; 3] = [
    "wshub_websockets_opened_total{http_version=\"1.1\"}",
    "wshub_websockets_opened_total{http_version=\"2\"}",
    "wshub_websockets_opened_total{http_version=\"3\"}",
];

#[test]
fn centrifuge_sdk_in_chromium_over_webtransport_with_pinned_certificate() {
    require_browser();
    let bundle = interop_dir().join("sdk/node_modules/centrifuge/dist/centrifuge.js");
    assert!(
        bundle.exists(),
        "{} is missing: run `npm ci` in tests/interop/sdk",
        bundle.display()
    );
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir: PathBuf = tmp.join(format!("browser-wt-cert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let (cert_hash, spki) = gen_cert_hashes(&dir);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (server, base) = serve_tls(&cert, &key, &["--webtransport"]);
    let addr = base.trim_start_matches("https://").to_owned();
    let before = metrics(&addr, &cert);
    assert_eq!(sample(&before, WT_SESSIONS), 0, "{before}");

    let out_dir = tmp.join("browser-sdk-webtransport");
    let mut node = Command::new("node");
    node.current_dir(browser_dir())
        .arg("sdk.mjs")
        .arg(&base)
        .arg(&out_dir)
        .arg("webtransport")
        .arg(&cert_hash)
        .arg(&spki)
        .env("CHROMIUM", CHROMIUM);
    let out = run_client_ok(
        "chromium centrifuge SDK over webtransport",
        node,
        Duration::from_secs(120),
        &server,
    );
    let stdout = out.stdout_str();
    eprintln!("sdk.mjs:\n{stdout}");
    let mut codecs = vec!["json"];
    if bundle.with_file_name("centrifuge.protobuf.js").exists() {
        codecs.push("protobuf");
    }
    for codec in &codecs {
        for needle in [
            format!("{codec}: ok connected anonymously over webtransport"),
            format!("{codec}: ok transport closed"),
            format!("{codec}: ok no duplicates"),
        ] {
            assert!(stdout.contains(&needle), "{needle:?} not in:\n{stdout}");
        }
    }

    let after = metrics(&addr, &cert);
    let mut counts = vec![
        format!("{WT_SESSIONS} {}", sample(&after, WT_SESSIONS)),
        format!("{CONN_H3} {}", sample(&after, CONN_H3)),
    ];
    counts.extend(WS.iter().map(|n| format!("{n} {}", sample(&after, n))));
    let counts = counts.join("\n");
    eprintln!("metrics after the scenario:\n{counts}");
    // Each bundle: two clients, one reconnect by connect(), one after the
    // transport closed: at least three sessions each, on HTTP/3.
    let sessions = sample(&after, WT_SESSIONS);
    assert!(sessions >= 3 * codecs.len() as u64, "{counts}");
    assert!(sample(&after, CONN_H3) >= sessions, "{counts}");
    for n in WS {
        assert_eq!(sample(&after, n), 0, "a WebSocket was opened:\n{counts}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The case line `case NAME: {...}` that `wt_hostile.mjs` printed.
fn case(stdout: &str, name: &str) -> serde_json::Value {
    let prefix = format!("case {name}: ");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Hostile WebTransport sessions from Chromium (`wt_hostile.mjs`), each
/// beside a well-behaved one that keeps working: 200 KiB without a line end
/// (over `webtransport.message_size_limit`, 64 KiB) and a line that is not
/// a command both get the disconnect push 3501 as the stream's last message
/// and lose the session (counted as `message_size` in
/// `wshub_client_limit_exceeded_total` for the first); a second
/// bidirectional stream is refused while the first one keeps answering; a
/// session that never opens its stream is closed after 10 s.
#[test]
fn hostile_webtransport_sessions_are_refused_and_others_keep_working() {
    require_browser();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir: PathBuf = tmp.join(format!("browser-wt-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let (cert_hash, spki) = gen_cert_hashes(&dir);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (server, base) = serve_tls(&cert, &key, &["--webtransport"]);
    let addr = base.trim_start_matches("https://").to_owned();

    let mut node = Command::new("node");
    node.current_dir(browser_dir())
        .arg("wt_hostile.mjs")
        .arg(&base)
        .arg(&cert_hash)
        .arg(&spki)
        .env("CHROMIUM", CHROMIUM);
    let out = run_client_ok(
        "chromium hostile webtransport",
        node,
        Duration::from_secs(90),
        &server,
    );
    let stdout = out.stdout_str();
    eprintln!("wt_hostile.mjs:\n{stdout}");
    let disconnect = r#"{"push":{"disconnect":{"code":3501,"reason":"bad request"}}}"#;
    for name in ["oversized", "garbage"] {
        let v = case(&stdout, name);
        let text = v["read"]["text"].as_str().unwrap_or_default();
        assert_eq!(
            text.lines().last(),
            Some(disconnect),
            "{name}: the stream did not end with the disconnect push: {v}"
        );
        assert_eq!(v["read"]["end"], "done", "{name}: {v}");
        let after = v["closed_after_ms"].as_u64();
        assert!(
            after.is_some_and(|ms| ms < 5000),
            "{name}: session not closed: {v}"
        );
    }
    let v = case(&stdout, "second_stream");
    assert_eq!(v["connected"], true, "{v}");
    assert_eq!(
        v["second"]["text"], "",
        "the second stream was answered: {v}"
    );
    assert_eq!(v["first_after"]["id"], 2, "the first stream stopped: {v}");
    let v = case(&stdout, "no_stream");
    let ms = v["closed_after_ms"].as_u64().unwrap_or(0);
    assert!((9000..15000).contains(&ms), "a session with no stream: {v}");
    let v = case(&stdout, "good");
    assert_eq!(v["connected"], true, "{v}");
    assert_eq!(v["after"]["id"], 2, "the good session stopped: {v}");

    let m = metrics(&addr, &cert);
    let over = sample(
        &m,
        "wshub_client_limit_exceeded_total{limit=\"message_size\"}",
    );
    assert_eq!(over, 1, "message_size limit count:\n{m}");
    assert!(sample(&m, WT_SESSIONS) >= 5, "{m}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
