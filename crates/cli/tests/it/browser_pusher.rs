//! The Pusher front in Debian's headless Chromium
//! (`tests/interop/browser/pusher.mjs`): pusher-js's browser bundle, then
//! Laravel Echo's IIFE build with pusher-js as its client, injected into
//! pages of `wshub serve` with the Pusher front enabled. Events come from
//! the official `pusher` server SDK on the Node side; the pages' channel
//! authorization is pusher-js's `channelAuthorization.customHandler`
//! calling back into Node, where that SDK signs, so no Laravel backend is
//! involved (nothing may reach Echo's `/broadcasting/auth`). Public,
//! private and presence channels, client events (Echo's whisper) between
//! two pages, members joining and leaving (Echo's here/joining/leaving,
//! including a page that closes), pusher-js's ping answered.

use std::process::Command;
use std::time::Duration;

use crate::browser::{browser_dir, require_browser, CHROMIUM};
use crate::sdk_interop::wshub_serve;
use crate::support::{interop_dir, run_client_ok};

const APP_ID: &str = "app-1";
const KEY: &str = "key-1";
const SECRET: &str = "secret-1";

#[test]
fn pusher_js_and_laravel_echo_in_chromium() {
    require_browser();
    let sdk = interop_dir().join("sdk/node_modules");
    for f in [
        "pusher-js/dist/web/pusher.js",
        "laravel-echo/dist/echo.iife.js",
        "pusher/package.json",
    ] {
        assert!(
            sdk.join(f).exists(),
            "{} is missing: run `npm ci` in tests/interop/sdk",
            sdk.join(f).display()
        );
    }
    let config = serde_json::json!({
        "client": { "allowed_origins": ["*"] },
        "pusher": {
            "enabled": true,
            "apps": [
                { "app_id": APP_ID, "key": KEY, "secret": SECRET, "enable_client_messages": true }
            ]
        }
    });
    let (server, base) = wshub_serve(&config.to_string());
    let mut node = Command::new("node");
    node.current_dir(browser_dir())
        .args(["pusher.mjs", &base, APP_ID, KEY, SECRET])
        .env("CHROMIUM", CHROMIUM);
    let out = run_client_ok(
        "chromium pusher-js and laravel-echo",
        node,
        Duration::from_secs(60),
        &server,
    );
    let stdout = out.stdout_str();
    eprintln!("pusher.mjs:\n{stdout}");
    for want in [
        "ok pusher-js: both pages connected over ws",
        "ok pusher-js: public channel event triggered by the server SDK reaches both pages",
        "ok pusher-js: a trigger with a page's socket_id skips that page only",
        "ok pusher-js: private channel subscribed on both pages",
        "ok pusher-js: client events between the two pages on the private channel, not echoed",
        "ok pusher-js: presence subscription_succeeded lists both members",
        "ok pusher-js: member_added for the second page",
        "ok pusher-js: client event on the presence channel carries user_id",
        "ok pusher-js: member_removed when the other page closes",
        "ok pusher-js: idle with activityTimeout 1 s",
        "ok pusher-js: done",
        "ok echo: laravel-echo 2.",
        "ok echo: Echo.channel('orders').listen('.OrderShipped') receives",
        "ok echo: listen('OrderPaid') receives App\\Events\\OrderPaid",
        "ok echo: Echo.private('orders.1') authorized by the custom handler",
        "ok echo: whisper/listenForWhisper between the two pages on the private channel",
        "ok echo: Echo.join('chat').here() lists the members",
        "ok echo: joining() at the first page",
        "ok echo: whisper on the presence channel reaches the other page, with user_id",
        "ok echo: leaving() when the other page calls Echo.leave('chat')",
        "ok echo: leaving() when the other page closes",
        "ok echo: no request to /broadcasting/auth",
        "ok echo: done",
        "ok all checks passed",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(want)),
            "pusher.mjs did not report {want:?}; its output:\n{stdout}\n{}",
            server.diagnostics()
        );
    }
}
