//! Mounting in a hyper server with `upgrade`, reached by our client.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wshub_ws::{connect, upgrade, ClientOptions, CloseCode, DeflateConfig, Message, ServerOptions};

use crate::util::{listener, payload, within};

async fn handle(
    mut req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let opts = ServerOptions::default()
        .subprotocols(["echo"])
        .deflate(Some(DeflateConfig::default()));
    match upgrade(&mut req, &opts) {
        Ok((resp, fut)) => {
            tokio::spawn(async move {
                let mut ws = fut.await.unwrap();
                assert_eq!(ws.protocol(), Some("echo"));
                while let Some(Ok(m)) = ws.recv().await {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
            Ok(resp.map(|b| b.boxed()))
        }
        Err(resp) => Ok(resp.map(|b| b.boxed())),
    }
}

async fn hyper_server() -> std::net::SocketAddr {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service_fn(handle))
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn hyper_upgrade_echo() {
    let addr = hyper_server().await;
    let opts = ClientOptions::default()
        .subprotocols(["echo"])
        .deflate(Some(DeflateConfig::default()));
    let mut ws = within(connect(&format!("ws://{addr}/ws"), &opts))
        .await
        .unwrap();
    assert_eq!(ws.protocol(), Some("echo"));
    assert!(ws.deflate().is_some());
    for m in [
        Message::Text("through hyper".into()),
        Message::Binary(payload(200_000, 5).into()),
    ] {
        within(ws.send(m.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), m);
    }
    within(ws.close(CloseCode::NORMAL, "")).await.unwrap();
}

#[tokio::test]
async fn hyper_plain_get_is_refused() {
    let addr = hyper_server().await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    within(tcp.read_to_end(&mut resp)).await.unwrap();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 4"), "{resp}");
    assert!(!resp.starts_with("HTTP/1.1 101"), "{resp}");
}
