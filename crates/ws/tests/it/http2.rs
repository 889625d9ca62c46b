//! WebSockets over HTTP/2 (RFC 8441): our server and our client, cleartext
//! with prior knowledge and TLS with ALPN.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;
use wshub_ws::{
    connect_prefer_http2, serve_http2_with, sniff_http2, tls_acceptor_from_pem,
    tls_acceptor_from_pem_h2, ClientOptions, CloseCode, DeflateConfig, Http2Connection,
    Http2Options, Message, ServerOptions, TlsOptions, WsError,
};

use crate::util::{listener, payload, within};

fn server_opts() -> ServerOptions {
    ServerOptions::default()
        .subprotocols(["echo"])
        .deflate(Some(DeflateConfig::default()))
}

/// Echo, or close with the code and reason of a text `close <code>
/// <reason>`.
async fn echo(mut ws: wshub_ws::UpgradedWebSocket) {
    while let Some(Ok(m)) = ws.recv().await {
        if let Message::Text(t) = &m {
            if let Some(rest) = t.strip_prefix("close ") {
                let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                let code = CloseCode::from(code.parse::<u16>().unwrap());
                let _ = ws.close(code, reason).await;
                continue;
            }
        }
        if ws.send(m).await.is_err() {
            break;
        }
    }
}

/// One port: HTTP/2 with prior knowledge or, with `tls`, by ALPN; the
/// paths under `/echo` echo, others are refused with 404.
async fn h2_server(h2: Http2Options, tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (h2, tls) = (h2.clone(), tls.clone());
            tokio::spawn(async move {
                let opts = server_opts();
                let check = |head: &wshub_ws::RequestHead<'_>| {
                    if head.path().starts_with("/echo") {
                        Ok(())
                    } else {
                        Err(wshub_ws::reject(404, "no such path"))
                    }
                };
                let on = |ws, _req| echo(ws);
                let _ = match tls {
                    None => {
                        let deadline = tokio::time::Instant::now() + T2;
                        assert!(sniff_http2(&tcp, deadline).await.unwrap());
                        serve_http2_with(tcp, &opts, &h2, check, on).await
                    }
                    Some(a) => {
                        let tls = a.accept(tcp).await.unwrap();
                        serve_http2_with(tls, &opts, &h2, check, on).await
                    }
                };
            });
        }
    });
    addr
}

const T2: std::time::Duration = std::time::Duration::from_secs(5);

fn client_opts() -> ClientOptions {
    ClientOptions::default()
        .subprotocols(["echo"])
        .deflate(Some(DeflateConfig::default()))
}

#[tokio::test]
async fn ten_streams_on_one_connection_round_trip_frames_and_close_codes() {
    let addr = h2_server(Http2Options::default(), None).await;
    let conn = within(Http2Connection::connect(
        &format!("ws://{addr}"),
        &client_opts(),
    ))
    .await
    .unwrap();
    assert!(conn.supports_websockets());
    let mut sockets = Vec::new();
    for i in 0..10 {
        let ws = within(conn.websocket(&format!("/echo/{i}"), &client_opts()))
            .await
            .unwrap();
        assert_eq!(ws.protocol(), Some("echo"));
        assert!(ws.deflate().is_some());
        sockets.push(ws);
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        for m in [
            Message::Text(format!("hello {i}").into()),
            Message::Binary(payload(200_000 + i, i as u64).into()),
            Message::Binary(Vec::new().into()),
        ] {
            within(ws.send(m.clone())).await.unwrap();
            assert_eq!(within(ws.recv()).await.unwrap().unwrap(), m);
        }
    }
    // Close codes both ways: the server closes one with 4001, we close
    // the others with 1000.
    let mut first = sockets.remove(0);
    within(first.send_text("close 4001 server says bye"))
        .await
        .unwrap();
    assert!(within(first.recv()).await.is_none());
    let (code, reason) = first.close_info().unwrap();
    assert_eq!(code, Some(CloseCode::from(4001)));
    assert_eq!(reason, "server says bye");
    for mut ws in sockets {
        within(ws.close(CloseCode::NORMAL, "client bye"))
            .await
            .unwrap();
        assert!(within(ws.recv()).await.is_none());
    }
    // The connection still opens streams after those ended.
    let mut again = within(conn.websocket("/echo/again", &client_opts()))
        .await
        .unwrap();
    within(again.send_text("still here")).await.unwrap();
    assert_eq!(
        within(again.recv()).await.unwrap().unwrap(),
        Message::Text("still here".into())
    );
}

#[tokio::test]
async fn refused_paths_and_handshakes_answer_with_their_status() {
    let addr = h2_server(Http2Options::default(), None).await;
    let conn = within(Http2Connection::connect(
        &format!("ws://{addr}"),
        &ClientOptions::default(),
    ))
    .await
    .unwrap();
    match within(conn.websocket("/elsewhere", &ClientOptions::default())).await {
        Err(WsError::Handshake(e)) => assert!(e.to_string().contains("404"), "{e}"),
        other => panic!("expected a 404, got {other:?}"),
    }
    // The connection survives a refused stream.
    let mut ws = within(conn.websocket("/echo", &ClientOptions::default()))
        .await
        .unwrap();
    within(ws.send_text("ok")).await.unwrap();
    assert!(within(ws.recv()).await.unwrap().is_ok());
}

#[tokio::test]
async fn a_thousand_streams_multiplexed_on_one_connection() {
    let addr = h2_server(Http2Options::default().max_concurrent_streams(1000), None).await;
    let conn = within(Http2Connection::connect(
        &format!("ws://{addr}"),
        &ClientOptions::default(),
    ))
    .await
    .unwrap();
    let mut sockets = Vec::new();
    for i in 0..1000 {
        sockets.push(
            within(conn.websocket(&format!("/echo/{i}"), &ClientOptions::default()))
                .await
                .unwrap(),
        );
    }
    // All open at once; each round-trips its own message.
    let gate = Arc::new(Semaphore::new(0));
    let mut tasks = Vec::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _go = gate.acquire().await.unwrap();
            let m = Message::Text(format!("stream {i}").into());
            ws.send(m.clone()).await.unwrap();
            assert_eq!(ws.recv().await.unwrap().unwrap(), m);
            ws.close(CloseCode::NORMAL, "").await.unwrap();
            assert!(ws.recv().await.is_none());
        }));
    }
    gate.add_permits(1000);
    for t in tasks {
        within(t).await.unwrap();
    }
}

#[tokio::test]
async fn past_the_stream_limit_streams_wait_for_room() {
    let addr = h2_server(Http2Options::default().max_concurrent_streams(2), None).await;
    let conn = within(Http2Connection::connect(
        &format!("ws://{addr}"),
        &ClientOptions::default(),
    ))
    .await
    .unwrap();
    let a = within(conn.websocket("/echo/a", &ClientOptions::default()))
        .await
        .unwrap();
    let _b = within(conn.websocket("/echo/b", &ClientOptions::default()))
        .await
        .unwrap();
    let c = tokio::spawn({
        let conn = conn.clone();
        async move { conn.websocket("/echo/c", &ClientOptions::default()).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!c.is_finished(), "a third stream opened past a limit of 2");
    let mut a = a;
    within(a.close(CloseCode::NORMAL, "")).await.unwrap();
    assert!(within(a.recv()).await.is_none());
    let mut c = within(c).await.unwrap().unwrap();
    within(c.send_text("room")).await.unwrap();
    assert!(within(c.recv()).await.unwrap().is_ok());
}

#[tokio::test]
async fn wss_prefers_http2_and_falls_back_to_http1() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (ck.cert.pem(), ck.key_pair.serialize_pem());
    let tls_opts = TlsOptions::default().extra_ca_pem(cert.clone().into_bytes());

    // A server offering h2: the WebSocket is an HTTP/2 stream.
    let acceptor = tls_acceptor_from_pem_h2(cert.as_bytes(), key.as_bytes()).unwrap();
    let addr = h2_server(Http2Options::default(), Some(acceptor)).await;
    let url = format!("wss://localhost:{}/echo", addr.port());
    let mut ws = within(connect_prefer_http2(
        &url,
        &client_opts().tls(tls_opts.clone()),
    ))
    .await
    .unwrap();
    assert!(ws.get_ref().is_http2() && ws.get_ref().is_tls());
    within(ws.send_text("over h2")).await.unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap().unwrap(),
        Message::Text("over h2".into())
    );
    within(ws.close(CloseCode::NORMAL, "")).await.unwrap();

    // A server offering only http/1.1: the same call upgrades over it.
    let acceptor = tls_acceptor_from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let tls = acceptor.accept(tcp).await.unwrap();
                let mut ws = wshub_ws::accept(tls, &server_opts()).await.unwrap();
                while let Some(Ok(m)) = ws.recv().await {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let url = format!("wss://localhost:{}/echo", addr.port());
    let mut ws = within(connect_prefer_http2(&url, &client_opts().tls(tls_opts)))
        .await
        .unwrap();
    assert!(!ws.get_ref().is_http2() && ws.get_ref().is_tls());
    within(ws.send_text("over h1")).await.unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap().unwrap(),
        Message::Text("over h1".into())
    );
}

#[tokio::test]
async fn a_server_without_the_setting_is_refused_clearly() {
    // A plain hyper HTTP/2 server that does not enable extended CONNECT.
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                        bytes::Bytes,
                    >::new(
                    )))
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
            });
        }
    });
    match within(Http2Connection::connect(
        &format!("ws://{addr}"),
        &ClientOptions::default(),
    ))
    .await
    {
        Err(WsError::Http2(why)) => assert!(why.contains("SETTINGS_ENABLE_CONNECT_PROTOCOL")),
        other => panic!("expected a clear refusal, got {other:?}"),
    }
}
