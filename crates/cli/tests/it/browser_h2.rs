//! The demo chat in Debian's headless Chromium over HTTPS with its
//! WebSocket on HTTP/2 (RFC 8441 extended CONNECT), driven by
//! `playwright-core` (`tests/interop/browser/h2.mjs`) against `wshub serve
//! --tls-cert --tls-key` with its development defaults and a certificate
//! from `wshub gen-cert`, trusted in Chromium by its SPKI hash
//! (`--ignore-certificate-errors-spki-list`).
//!
//! Chromium puts a WebSocket on HTTP/2 only when it already has an h2
//! connection to the origin that advertised SETTINGS_ENABLE_CONNECT_PROTOCOL,
//! so nothing is assumed: the DevTools protocol says the page came over
//! `h2` and each WebSocket handshake answered 200 (101 would be an HTTP/1.1
//! upgrade), and the server's `/metrics` count the WebSockets as opened over
//! HTTP/2 and none over HTTP/1.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::browser::{browser_dir, require_browser, CHROMIUM};
use crate::support::{http_response, run_client_ok, wshub, Proc, STARTUP};

/// `wshub gen-cert --dir DIR`: the SPKI hash it prints for Chromium.
pub fn gen_cert(dir: &Path) -> String {
    gen_cert_hashes(dir).1
}

/// `wshub gen-cert --dir DIR`: the certificate's SHA-256 (hex, for
/// WebTransport's `serverCertificateHashes`) and the SPKI hash (base64, for
/// `--ignore-certificate-errors-spki-list`) it prints.
pub fn gen_cert_hashes(dir: &Path) -> (String, String) {
    let mut cmd = wshub();
    cmd.args(["gen-cert", "--force", "--dir"]).arg(dir);
    let mut p = Proc::spawn("wshub gen-cert", cmd);
    p.close_stdin();
    let out = p.wait(Duration::from_secs(30));
    let stdout = out.stdout_str();
    assert!(
        out.status.success(),
        "wshub gen-cert failed ({}):\n{stdout}\n{}",
        out.status,
        out.stderr
    );
    let find = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in the output of wshub gen-cert:\n{stdout}"))
            .trim()
            .to_owned()
    };
    (
        find("certificate SHA-256 (hex, WebTransport serverCertificateHashes): "),
        find("SPKI SHA-256 (base64, chromium --ignore-certificate-errors-spki-list): "),
    )
}

/// `wshub serve` over TLS with the development defaults and `extra` flags:
/// the guard and its `https://127.0.0.1:PORT` base URL.
pub fn serve_tls(cert: &Path, key: &Path, extra: &[&str]) -> (Proc, String) {
    let mut cmd = wshub();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .args(extra)
        .env_remove("RUST_LOG");
    let mut server = Proc::spawn("wshub serve (tls)", cmd);
    let line = server.next_line(STARTUP);
    match line.strip_prefix("listening on ") {
        Some(url) if url.starts_with("https://127.0.0.1:") => {
            let url = url.trim_end_matches('/').to_owned();
            (server, url)
        }
        _ => panic!(
            "expected `listening on https://127.0.0.1:PORT` as the first line, got {line:?}\n{}",
            server.diagnostics()
        ),
    }
}

/// `GET /metrics` over TLS (trusting only `cert`) and HTTP/1.1 (the only
/// protocol offered by ALPN), `Connection: close`.
pub fn metrics(addr: &str, cert: &Path) -> String {
    let ca = CertificateDer::from_pem_file(cert).expect("read cert.pem");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("trust cert.pem");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
    let tcp = TcpStream::connect(addr).expect("connect for /metrics");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send GET /metrics");
    let mut raw = Vec::new();
    // A peer that closes without close_notify ends the read with an error
    // after the whole answer: what was read is kept.
    let _ = tls.read_to_end(&mut raw);
    assert_eq!(
        tls.conn.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "ALPN for /metrics"
    );
    let (status, body) = http_response(&raw);
    assert_eq!(status, 200, "/metrics over TLS:\n{body}");
    body
}

pub fn sample(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in /metrics:\n{body}"))
}

const WS_H2: &str = "wshub_websockets_opened_total{http_version=\"2\"}";
const WS_H1: &str = "wshub_websockets_opened_total{http_version=\"1.1\"}";
const CONN_H2: &str = "wshub_http_connections_total{version=\"2\"}";
const CONN_H1: &str = "wshub_http_connections_total{version=\"1.1\"}";

/// Two Chromium pages load `chat.html` over `https://` (h2 by ALPN) and
/// chat both ways on WebSockets that Chromium opened by extended CONNECT on
/// the page's HTTP/2 connection: the DevTools protocol shows the document
/// over `h2` and handshake status 200 for each WebSocket, and the server
/// counts exactly those two WebSockets as HTTP/2 ones and none as HTTP/1.1.
#[test]
fn demo_chat_in_chromium_runs_its_websocket_over_http2() {
    require_browser();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir: PathBuf = tmp.join(format!("browser-h2-cert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    let spki = gen_cert(&dir);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (server, base) = serve_tls(&cert, &key, &[]);
    let addr = base.trim_start_matches("https://").to_owned();

    let before = metrics(&addr, &cert);
    assert_eq!(sample(&before, WS_H2), 0, "{before}");
    assert_eq!(sample(&before, WS_H1), 0, "{before}");

    let out_dir = tmp.join("browser-h2");
    let mut node = Command::new("node");
    node.current_dir(browser_dir())
        .arg("h2.mjs")
        .arg(&base)
        .arg(&spki)
        .arg(&out_dir)
        .env("CHROMIUM", CHROMIUM);
    let out = run_client_ok("chromium h2 chat", node, Duration::from_secs(60), &server);
    let stdout = out.stdout_str();
    eprintln!("h2.mjs:\n{stdout}");

    // What Chromium reported over CDP (h2.mjs checks it too; this keeps
    // the claim visible here).
    assert!(
        stdout.lines().any(|l| l.starts_with("ok chat over h2:")),
        "the chat did not finish:\n{stdout}"
    );
    for who in ["alice", "bob"] {
        let doc = format!("cdp {who} document: protocol=h2 status=200 ");
        assert!(
            stdout.lines().any(|l| l.starts_with(&doc)),
            "{who}'s page did not come over h2:\n{stdout}"
        );
        let ws = format!("cdp {who} websocket: status=200 ");
        let sockets: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("cdp {who} websocket: ")))
            .collect();
        assert!(
            sockets.len() == 1 && sockets[0].starts_with(&ws),
            "{who}: expected one WebSocket with handshake status 200 (HTTP/2), got {sockets:?}"
        );
    }

    // The server's side: both WebSockets by extended CONNECT, none by an
    // HTTP/1.1 upgrade, on HTTP/2 connections.
    let after = metrics(&addr, &cert);
    let counts: Vec<String> = [WS_H2, WS_H1, CONN_H2, CONN_H1]
        .iter()
        .map(|n| format!("{n} {}", sample(&after, n)))
        .collect();
    eprintln!("metrics after the chat:\n{}", counts.join("\n"));
    assert_eq!(sample(&after, WS_H2), 2, "{}", counts.join("\n"));
    assert_eq!(sample(&after, WS_H1), 0, "{}", counts.join("\n"));
    assert!(sample(&after, CONN_H2) >= 1, "{}", counts.join("\n"));
    // The only HTTP/1.1 connections are this test's two `/metrics` fetches:
    // Chromium made none.
    assert_eq!(
        sample(&after, CONN_H1),
        sample(&before, CONN_H1) + 1,
        "{}",
        counts.join("\n")
    );

    let shot = out_dir.join("h2-chat-alice.png");
    let len = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(len > 1000, "screenshot {} missing or empty", shot.display());
    eprintln!("screenshot: {}", shot.display());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
