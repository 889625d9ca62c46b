//! The official `pusher` server SDK from PyPI against the Pusher front,
//! with Python `websockets` as a raw protocol 7 client
//! (`tests/interop/sdk/pusher_py.py`).

use std::time::Duration;

use crate::sdk_interop::wshub_serve;
use crate::support::{python_script, run_client_ok, wshub_serve_dev, Proc};
use wshub_config::DEMO_PUSHER_APP;

#[test]
fn the_python_pusher_sdk_signs_triggers_and_queries() {
    let config = serde_json::json!({
        "pusher": {
            "enabled": true,
            "apps": [{ "app_id": "4242", "key": "py-key", "secret": "py-secret" }]
        }
    })
    .to_string();
    let (server, url) = wshub_serve(&config);
    run_python_sdk(&server, &url, ("4242", "py-key", "py-secret"));
}

/// `wshub serve` with no file has the demo app of `/pusher.html`, and
/// serves that page.
#[test]
fn the_development_defaults_serve_the_pusher_demo_app_and_page() {
    let (server, url) = wshub_serve_dev();
    let addr = url.trim_start_matches("http://");
    let (status, page) = crate::gateway_h2::get(addr, "/pusher.html");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("/app/wshub-demo?protocol=7"),
        "pusher.html: {page:.200}"
    );
    run_python_sdk(&server, &url, DEMO_PUSHER_APP);
}

fn run_python_sdk(server: &Proc, url: &str, (app_id, key, secret): (&str, &str, &str)) {
    let mut cmd = python_script("sdk/pusher_py.py");
    cmd.args([
        "--url", url, "--app-id", app_id, "--key", key, "--secret", secret,
    ]);
    let out = run_client_ok("pusher_py.py", cmd, Duration::from_secs(60), server);
    let stdout = out.stdout_str();
    for want in [
        "ok private channel authorized by the Python SDK",
        "ok presence channel authorized by the Python SDK",
        "ok trigger reaches the client, data intact",
        "ok trigger with socket_id skips that socket",
        "ok trigger_batch",
        "ok channels_info",
        "ok channel_info",
        "ok users_info",
        "ok a wrong secret is refused with 401",
        "done",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(want)),
            "pusher_py.py did not report {want:?}; its output:\n{stdout}\n{}",
            server.diagnostics()
        );
    }
}
