//! The demo chat in Debian's headless Chromium, driven by `playwright-core`
//! (`tests/interop/browser/chat.mjs`) against `wshub serve` with its
//! development defaults: two pages exchange messages and see each other in
//! the presence list; one page loses its connection and recovers, in order
//! and once, the messages published meanwhile; one reloads and gets the
//! room's history back. The screenshots land in the test's output folder.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{interop_dir, run_client_ok, wshub_serve_dev};

pub const CHROMIUM: &str = "/usr/bin/chromium";

pub fn browser_dir() -> PathBuf {
    interop_dir().join("browser")
}

pub fn require_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`; .ci/run does)"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in {}",
        browser_dir().display()
    );
}

#[test]
fn demo_chat_in_chromium_exchanges_recovers_and_reloads() {
    require_browser();
    let (server, base) = wshub_serve_dev();
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let mut node = Command::new("node");
    node.current_dir(browser_dir())
        .arg("chat.mjs")
        .arg(&base)
        .arg(&out_dir)
        .env("CHROMIUM", CHROMIUM);
    run_client_ok("chromium chat", node, Duration::from_secs(120), &server);
    for shot in [
        "chat-alice.png",
        "chat-bob-recovered.png",
        "chat-bob-reloaded.png",
    ] {
        let p = out_dir.join(shot);
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {} missing or empty", p.display());
    }
    eprintln!("screenshots in {}", out_dir.display());
}

/// The official `centrifuge` npm SDK's browser bundles (JSON, and protobuf
/// when the package ships it) injected into a page served by `wshub serve`
/// (`tests/interop/browser/sdk.mjs`): two anonymous clients exchange
/// publications on `chat:sdk`, see each other in presence and history, then
/// one is forced to reconnect (disconnect()/connect(), and a dropped
/// WebSocket) while `/api/publish` is called; its resubscribe recovers exactly
/// those publications, in order.
#[test]
fn centrifuge_sdk_bundles_in_chromium_exchange_and_recover() {
    sdk_in_chromium("websocket");
}

/// The same with WebSocket blocked in the page (constructing one throws,
/// `ws://` requests are aborted) and the SDK on its `http_stream`
/// transport (both bundles: JSON lines and length-prefixed protobuf); the
/// server's emulation counter shows the commands came that way.
#[test]
fn centrifuge_sdk_in_chromium_over_http_stream_with_websocket_blocked() {
    sdk_in_chromium("http_stream");
}

/// The same over SSE (JSON bundle), WebSocket blocked.
#[test]
fn centrifuge_sdk_in_chromium_over_sse_with_websocket_blocked() {
    sdk_in_chromium("sse");
}

fn sdk_in_chromium(transport: &str) {
    require_browser();
    let bundle = interop_dir().join("sdk/node_modules/centrifuge/dist/centrifuge.js");
    assert!(
        bundle.exists(),
        "{} is missing: run `npm ci` in {}",
        bundle.display(),
        interop_dir().join("sdk").display()
    );
    let (server, base) = wshub_serve_dev();
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("browser-sdk-{transport}"));
    let mut node = Command::new("node");
    node.current_dir(browser_dir())
        .arg("sdk.mjs")
        .arg(&base)
        .arg(&out_dir)
        .arg(transport)
        .env("CHROMIUM", CHROMIUM);
    let out = run_client_ok(
        &format!("chromium centrifuge SDK over {transport}"),
        node,
        Duration::from_secs(120),
        &server,
    );
    // Every bundle really ran its scenario to the end.
    let stdout = out.stdout_str();
    let mut codecs = vec!["json"];
    if bundle.with_file_name("centrifuge.protobuf.js").exists() && transport != "sse" {
        codecs.push("protobuf");
    }
    for codec in codecs {
        let needle = format!("{codec}: ok no duplicates");
        assert!(stdout.contains(&needle), "{needle:?} not in:\n{stdout}");
    }
    if transport != "websocket" {
        let addr = base.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let delivered: u64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("wshub_emulation_requests_total{outcome=\"delivered\"} ")?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        assert!(delivered > 0, "no emulation request was delivered");
    }
}
