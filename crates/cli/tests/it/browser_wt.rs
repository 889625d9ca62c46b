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
