//! Our Rust client (the `wshub-ws` library) → Python `websockets` echo
//! server (`tests/interop/py_echo_server.py`).

use std::time::Duration;

use wshub_proto::{CloseCode, DeflateConfig};
use wshub_ws::{connect, ClientOptions, MaybeTlsStream, WebSocket};

use crate::payload::{echo_matrix, echo_one, recv, text};
use crate::support::{python_echo_server, Proc};
use wshub_proto::{Message, Utf8Bytes};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn client_options(deflate: bool) -> ClientOptions {
    ClientOptions::default()
        .deflate(deflate.then(DeflateConfig::default))
        .subprotocols(["x.unknown", "chat.v1"])
}

async fn connect_ok(url: &str, opts: &ClientOptions) -> WebSocket<MaybeTlsStream> {
    tokio::time::timeout(Duration::from_secs(10), connect(url, opts))
        .await
        .unwrap_or_else(|_| panic!("connect to {url} timed out"))
        .unwrap_or_else(|e| panic!("connect to {url} failed: {e}"))
}

/// What the Python server says it negotiated (its `/info` message).
struct ServerView {
    subprotocol: Option<String>,
    extensions: Option<String>,
}

async fn server_view(ws: &mut WebSocket<MaybeTlsStream>) -> ServerView {
    let info = match recv(ws, "/info message").await {
        Message::Text(t) => t,
        other => panic!("/info: expected a text message, got {other:?}"),
    };
    let v: serde_json::Value =
        serde_json::from_str(&info).unwrap_or_else(|e| panic!("/info {info:?}: {e}"));
    ServerView {
        subprotocol: v["subprotocol"].as_str().map(str::to_owned),
        extensions: v["extensions"].as_str().map(str::to_owned),
    }
}

/// Closes with 1000, checks the closing handshake from both ends.
async fn close_cleanly(ws: &mut WebSocket<MaybeTlsStream>) {
    tokio::time::timeout(Duration::from_secs(10), ws.close(CloseCode::NORMAL, "bye"))
        .await
        .expect("close handshake timed out")
        .unwrap_or_else(|e| panic!("close failed: {e}"));
    let (code, _reason) = ws.close_info().expect("the server sent no close frame");
    assert_eq!(
        code,
        Some(CloseCode::NORMAL),
        "the server answered our close 1000 with {code:?}"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), ws.recv())
        .await
        .expect("recv after the close handshake hung");
    assert!(
        end.is_none(),
        "expected the end after the close handshake, got {end:?}"
    );
}

fn expect_server_closed_1000(server: &mut Proc) {
    server.wait_for_line(
        "`closed code=1000 reason=bye`",
        Duration::from_secs(10),
        |l| l.starts_with("closed "),
    );
    let out = server.stdout_so_far();
    let last = out
        .lines()
        .rev()
        .find(|l| l.starts_with("closed "))
        .unwrap_or_default();
    assert_eq!(last, "closed code=1000 reason=bye", "server saw:\n{out}");
}

/// Full size matrix, text and binary, with the subprotocol and (if
/// `deflate`) permessage-deflate agreed by both ends.
fn rust_client_against_python_server(deflate: bool) {
    let flag = if deflate { "--deflate" } else { "--no-deflate" };
    let (mut server, url) = python_echo_server(&[flag]);
    runtime().block_on(async {
        let mut ws = connect_ok(&format!("{url}/info"), &client_options(deflate)).await;
        let view = server_view(&mut ws).await;
        assert_eq!(ws.protocol(), Some("chat.v1"), "client side subprotocol");
        assert_eq!(
            view.subprotocol.as_deref(),
            Some("chat.v1"),
            "server side subprotocol"
        );
        if deflate {
            assert!(
                ws.deflate().is_some(),
                "client: permessage-deflate not negotiated"
            );
            let ext = view.extensions.unwrap_or_default();
            assert!(
                ext.starts_with("permessage-deflate"),
                "server: permessage-deflate not negotiated ({ext:?})"
            );
        } else {
            assert_eq!(ws.deflate(), None);
            assert_eq!(view.extensions, None);
        }
        echo_matrix(&mut ws, &format!("python server {flag}")).await;
        close_cleanly(&mut ws).await;
    });
    expect_server_closed_1000(&mut server);
}

#[test]
fn rust_client_python_server_plain() {
    rust_client_against_python_server(false);
}

#[test]
fn rust_client_python_server_deflate() {
    rust_client_against_python_server(true);
}

/// Compression is on only when both ends want it; either way messages
/// round-trip.
#[test]
fn rust_client_python_server_deflate_negotiation() {
    for server_deflate in [false, true] {
        let flag = if server_deflate {
            "--deflate"
        } else {
            "--no-deflate"
        };
        let (mut server, url) = python_echo_server(&[flag]);
        for client_deflate in [false, true] {
            let case = format!("server {flag}, client deflate {client_deflate}");
            runtime().block_on(async {
                let mut ws =
                    connect_ok(&format!("{url}/info"), &client_options(client_deflate)).await;
                let view = server_view(&mut ws).await;
                let expect = server_deflate && client_deflate;
                assert_eq!(ws.deflate().is_some(), expect, "{case}: client side");
                assert_eq!(
                    view.extensions
                        .as_deref()
                        .is_some_and(|e| e.starts_with("permessage-deflate")),
                    expect,
                    "{case}: server side ({:?})",
                    view.extensions
                );
                echo_one(&mut ws, Message::Text(Utf8Bytes::from(text(70_000))), &case).await;
                close_cleanly(&mut ws).await;
            });
            expect_server_closed_1000(&mut server);
        }
    }
}
