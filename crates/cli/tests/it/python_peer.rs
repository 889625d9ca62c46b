//! Python `websockets` client → `wshub echo`.

use std::time::Duration;

use crate::support::{check_echo_client_output, python_script, run_client_ok, wshub_echo};

const CLIENT_LIMIT: Duration = Duration::from_secs(120);

fn python_client_against_wshub_echo(deflate: bool) {
    let flag = if deflate { "--deflate" } else { "--no-deflate" };
    let echo_args: &[&str] = if deflate { &["--deflate"] } else { &[] };
    let (server, url) = wshub_echo(echo_args);
    let mut cmd = python_script("py_echo_client.py");
    cmd.args([url.as_str(), flag]);
    let out = run_client_ok("py_echo_client.py", cmd, CLIENT_LIMIT, &server);
    check_echo_client_output(&out.stdout_str(), deflate);
}

#[test]
fn python_client_echo_plain() {
    python_client_against_wshub_echo(false);
}

#[test]
fn python_client_echo_deflate() {
    python_client_against_wshub_echo(true);
}

/// A text frame with invalid UTF-8 (`κόσμε` then an encoded surrogate,
/// U+D800) must fail the connection with close 1007, without an echo.
#[test]
fn python_raw_invalid_utf8_text_is_closed_with_1007() {
    let (server, url) = wshub_echo(&[]);
    let mut cmd = python_script("py_raw_invalid_utf8.py");
    cmd.arg(&url);
    let out = run_client_ok(
        "py_raw_invalid_utf8.py",
        cmd,
        Duration::from_secs(30),
        &server,
    );
    assert!(
        out.stdout_str().lines().any(|l| l == "close code 1007"),
        "{}",
        out.stdout_str()
    );
}
