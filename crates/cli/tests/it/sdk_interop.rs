//! The official Centrifugo SDKs against `wshub serve`: peers that we did not
//! write, speaking the Centrifugo client protocol v2 (`centrifuge` npm SDK
//! with `ws`, `centrifuge-python`) and the server HTTP API (`cent`).
//!
//! The scenarios are scripts in `tests/interop/sdk/` that print `ok ...` per
//! check and exit non-zero with `FAIL: ...` on a mismatch; each test starts a
//! fresh server (the scripts expect new channels: offsets start at 1) and
//! passes it the URL, API key and HMAC secret.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::{interop_dir, python, python_script, run_client_ok, wshub, Proc, STARTUP};

/// Longest run of one scenario script (they bound each of their own waits).
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

const HMAC_SECRET: &str = "interop-hmac-secret";
const API_KEY: &str = "interop-api-key";

/// A `chat` namespace with everything the scenarios use (Centrifugo v6
/// configuration format).
fn config_json() -> String {
    serde_json::json!({
        "client": {
            "token": { "hmac_secret_key": HMAC_SECRET },
            "allowed_origins": ["*"]
        },
        "http_api": { "key": API_KEY },
        "http_stream": { "enabled": true },
        "sse": { "enabled": true },
        "channel": {
            "namespaces": [{
                "name": "chat",
                "presence": true,
                "join_leave": true,
                "history_size": 100,
                "history_ttl": "300s",
                "force_recovery": true,
                "allow_subscribe_for_client": true,
                "allow_publish_for_subscriber": true,
                "allow_presence_for_subscriber": true,
                "allow_history_for_subscriber": true
            }]
        }
    })
    .to_string()
}

/// `tests/interop/sdk`, where the SDK scripts and the Node packages live.
fn sdk_dir() -> PathBuf {
    interop_dir().join("sdk")
}

/// Starts `wshub serve --listen 127.0.0.1:0 --config FILE` with
/// `config_json` written to a temporary file; returns the guard and the
/// `http://ADDR` base URL.
pub fn wshub_serve(config_json: &str) -> (Proc, String) {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "wshub-sdk-interop-{}-{}.json",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, config_json)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    let mut cmd = wshub();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG");
    let mut server = Proc::spawn("wshub serve", cmd);
    let line = server.next_line(STARTUP);
    // The configuration has been read once the server listens.
    let _ = std::fs::remove_file(&path);
    match line.strip_prefix("listening on ") {
        Some(url) if url.starts_with("http://") => {
            let url = url.to_owned();
            (server, url)
        }
        _ => panic!(
            "wshub serve: expected `listening on http://ADDR` as the first line, got {line:?}\n{}",
            server.diagnostics()
        ),
    }
}

/// `--url URL --api-key KEY --secret S`, as every scenario script takes.
fn script_args(cmd: &mut Command, url: &str) {
    cmd.args(["--url", url, "--api-key", API_KEY, "--secret", HMAC_SECRET]);
}

/// Runs `check` once (a short bounded process) and panics with `help` if it
/// fails: a missing SDK fails the test, never skips it.
fn require(
    what: &str,
    cell: &'static OnceLock<Result<(), String>>,
    check: impl FnOnce() -> Command,
    help: &str,
) {
    let checked = cell.get_or_init(|| {
        let mut p = Proc::spawn(what, check());
        p.close_stdin();
        let out = p.wait(Duration::from_secs(60));
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{} ({}): {}", what, out.status, out.stderr.trim()))
        }
    });
    if let Err(e) = checked {
        panic!("SDK interop peer missing: {e}\n{help}");
    }
}

/// Fails unless `centrifuge` and `ws` resolve from `tests/interop/sdk`.
fn require_node_sdk() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    require(
        "node -e require('centrifuge')",
        &CHECK,
        || {
            let mut cmd = Command::new("node");
            cmd.current_dir(sdk_dir()).args([
                "-e",
                "require('ws'); const {Centrifuge} = require('centrifuge'); \
                 if (typeof Centrifuge !== 'function') process.exit(1)",
            ]);
            cmd
        },
        "Install the Node SDK peers with:\n    cd tests/interop/sdk && npm ci\n\
         (Node.js >= 18 and npm must be on PATH).",
    );
}

/// Fails unless the Python interpreter has `centrifuge-python` and `cent`.
fn require_python_sdk() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    require(
        "python -c 'import centrifuge, cent'",
        &CHECK,
        || {
            let mut cmd = Command::new(python());
            cmd.args(["-c", "import centrifuge, cent, requests"]);
            cmd
        },
        "Install the Python SDK peers with:\n    \
         python3 -m venv .venv && .venv/bin/pip install -r tests/interop/requirements.txt\n\
         (from the repository root), or set WSHUB_PYTHON to an interpreter that has \
         the `centrifuge-python` and `cent` versions pinned there.",
    );
}

pub fn node_sdk_script(script: &str) -> Command {
    require_node_sdk();
    let mut cmd = Command::new("node");
    cmd.current_dir(sdk_dir()).arg(sdk_dir().join(script));
    cmd
}

fn python_sdk_script(script: &str) -> Command {
    require_python_sdk();
    python_script(&format!("sdk/{script}"))
}

/// Runs a scenario script against a fresh server and checks that it
/// reported every check in `needed` and its final line.
fn run_scenario(name: &str, mut cmd: Command, needed: &[&str], last: &str) {
    let (server, url) = wshub_serve(&config_json());
    script_args(&mut cmd, &url);
    cmd.env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy");
    let out = run_client_ok(name, cmd, SCRIPT_LIMIT, &server);
    let stdout = out.stdout_str();
    for want in needed.iter().chain([&last]) {
        assert!(
            stdout.lines().any(|l| l.starts_with(want)),
            "{name} did not report {want:?}; its output:\n{stdout}\n{}",
            server.diagnostics()
        );
    }
}

/// What the centrifuge-js scenario reports on every transport.
const JS_CHECKS: &[&str] = &[
    "ok connected with JWT",
    "ok bob -> alice publication with offset 1",
    "ok presence shows both clients",
    "ok history: position, limit, since, reverse",
    "ok recovery after /api/disconnect: exactly offsets 6,7,8 in order",
    "ok bad token -> disconnected code 3500",
];

/// The same scenario with the SDK's `http_stream` or `sse` transport and
/// no WebSocket at all (the script fails if a client connects over
/// anything else).
fn centrifuge_js_over(transport: &str) {
    let mut cmd = node_sdk_script("centrifuge_js.js");
    cmd.args(["--transport", transport]);
    run_scenario(
        &format!("centrifuge_js.js --transport {transport}"),
        cmd,
        JS_CHECKS,
        "ok all centrifuge-js checks passed",
    );
}

#[test]
fn centrifuge_js_sdk_over_http_stream_without_websocket() {
    centrifuge_js_over("http_stream");
}

#[test]
fn centrifuge_js_sdk_over_sse_without_websocket() {
    centrifuge_js_over("sse");
}

#[test]
fn centrifuge_js_sdk_pubsub_presence_history_recovery_and_bad_token() {
    run_scenario(
        "centrifuge_js.js",
        node_sdk_script("centrifuge_js.js"),
        &[
            "ok connected with JWT",
            "ok bob -> alice publication with offset 1",
            "ok presence shows both clients",
            "ok history: position, limit, since, reverse",
            "ok recovery after /api/disconnect: exactly offsets 6,7,8 in order",
            "ok bad token -> disconnected code 3500",
        ],
        "ok all centrifuge-js checks passed",
    );
}

#[test]
fn centrifuge_python_sdk_pubsub_presence_history_recovery_and_bad_token() {
    run_scenario(
        "centrifuge_py.py",
        python_sdk_script("centrifuge_py.py"),
        &[
            "ok connected with JWT",
            "ok bob -> alice publication with offset 1",
            "ok presence shows both clients",
            "ok history: position, limit, since, reverse",
            "ok recovery after /api/disconnect: exactly offsets 6,7,8 in order",
            "ok bad token -> disconnected code 3500",
        ],
        "ok all centrifuge-python checks passed",
    );
}

#[test]
fn cent_http_api_client_methods_and_wrong_key() {
    run_scenario(
        "cent_api.py",
        python_sdk_script("cent_api.py"),
        &[
            "ok publish -> offset 1",
            "ok broadcast to 2 channels",
            "ok presence -> carol",
            "ok history: limit, since, reverse",
            "ok history_remove -> empty history",
            "ok channels -> ",
            "ok info -> 1 node",
            "ok publish to an unknown namespace -> error 102",
            "ok wrong API key -> HTTP 401",
        ],
        "ok all cent checks passed",
    );
}
