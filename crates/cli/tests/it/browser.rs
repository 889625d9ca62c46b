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

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    interop_dir().join("browser")
}

fn require_browser() {
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
