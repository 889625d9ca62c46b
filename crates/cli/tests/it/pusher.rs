//! The Pusher front against peers we did not write: `pusher-js` (the
//! official client, Node build) and the official `pusher` server SDK from
//! npm, in `tests/interop/sdk/pusher_js.js`; plus hostile input sent by
//! hand.

use std::time::Duration;

use crate::sdk_interop::{node_sdk_script, wshub_serve};
use crate::support::run_client_ok;

const APP_ID: &str = "app-1";
const KEY: &str = "key-1";
const SECRET: &str = "secret-1";
const KEY2: &str = "key-2";

fn config_json() -> String {
    serde_json::json!({
        "client": { "allowed_origins": ["*"] },
        "pusher": {
            "enabled": true,
            "apps": [
                { "app_id": APP_ID, "key": KEY, "secret": SECRET, "enable_client_messages": true },
                { "app_id": "app-2", "key": KEY2, "secret": "secret-2" }
            ]
        }
    })
    .to_string()
}

#[test]
fn pusher_js_and_the_pusher_server_sdk_work_unchanged() {
    let (server, url) = wshub_serve(&config_json());
    let mut cmd = node_sdk_script("pusher_js.js");
    cmd.args([
        "--url", &url, "--app-id", APP_ID, "--key", KEY, "--secret", SECRET, "--key2", KEY2,
    ]);
    let out = run_client_ok("pusher_js.js", cmd, Duration::from_secs(120), &server);
    let stdout = out.stdout_str();
    for want in [
        "ok unknown app key refused with 4001",
        "ok server SDK trigger reaches a public channel",
        "ok trigger with socket_id skips that connection",
        "ok private channel with a bad signature",
        "ok client event is not echoed to its sender",
        "ok client event on a public channel is not relayed",
        "ok member_added with user_info",
        "ok a user's second connection adds no member",
        "ok the last connection of a user leaving removes the member",
        "ok client event on presence carries user_id",
        "ok a replayed request an hour old gets 401",
        "ok event data over 10 KB gets 413",
        "ok a cache channel replays its last event on subscribe",
        "ok a cache channel without an event sends pusher:cache_miss",
        "ok another app's client never sees this app's events",
        "done",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(want)),
            "pusher_js.js did not report {want:?}; its output:\n{stdout}\n{}",
            server.diagnostics()
        );
    }
}
