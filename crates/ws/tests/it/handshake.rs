//! The opening handshake: rejections seen by raw clients, timeouts, checks.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wshub_ws::{
    accept, accept_with, connect, reject, ClientOptions, Options, ServerOptions, WsError,
};

use crate::util::{listener, within};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Sends `request` on a raw TCP connection and reads the whole answer.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut resp = Vec::new();
    within(tcp.read_to_end(&mut resp)).await.unwrap();
    String::from_utf8_lossy(&resp).into_owned()
}

#[tokio::test]
async fn wrong_version_gets_426() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        accept(tcp, &ServerOptions::default()).await
    });
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n"
    );
    let resp = raw_exchange(addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 426 "), "{resp}");
    assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"), "{resp}");
    match within(server).await.unwrap() {
        Err(WsError::Rejected { status: 426, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn garbage_gets_400_and_huge_head_431() {
    let (l, addr) = listener().await;
    let opts = ServerOptions::default()
        .ws(Options::default().limits(wshub_ws::Limits::default().max_handshake_bytes(4096)));
    let server = tokio::spawn(async move {
        let mut results = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = l.accept().await.unwrap();
            results.push(accept(tcp, &opts).await);
        }
        results
    });
    let resp = raw_exchange(addr, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    while big.len() < 10_000 {
        big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let resp = raw_exchange(addr, &big).await;
    assert!(resp.starts_with("HTTP/1.1 431 "), "{resp}");
    for r in within(server).await.unwrap() {
        assert!(matches!(r, Err(WsError::Handshake(_))), "{r:?}");
    }
}

#[tokio::test]
async fn handshake_timeout() {
    let (l, addr) = listener().await;
    let opts = ServerOptions::default()
        .ws(Options::default().handshake_timeout(Duration::from_millis(200)));
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let start = Instant::now();
        let r = accept(tcp, &opts).await;
        (r, start.elapsed())
    });
    // Connect, send half a request line, then nothing.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HT").await.unwrap();
    let (r, took) = within(server).await.unwrap();
    assert!(matches!(r, Err(WsError::Timeout)), "{r:?}");
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The server dropped the connection.
    let mut rest = Vec::new();
    within(tcp.read_to_end(&mut rest)).await.unwrap();
}

#[tokio::test]
async fn client_handshake_timeout() {
    // A server that accepts TCP and never answers.
    let (l, addr) = listener().await;
    let hold = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(tcp);
    });
    let opts = ClientOptions::default()
        .ws(Options::default().handshake_timeout(Duration::from_millis(200)));
    let r = within(connect(&format!("ws://{addr}/"), &opts)).await;
    assert!(matches!(r, Err(WsError::Timeout)), "{r:?}");
    hold.abort();
}

#[tokio::test]
async fn origin_check_rejects_with_403() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        accept_with(tcp, &ServerOptions::default(), |head| match head.origin() {
            Some(b"https://good.example") => Ok(()),
            _ => Err(reject(403, "origin not allowed")),
        })
        .await
    });
    let mut opts = ClientOptions::default();
    opts.handshake = opts.handshake.origin("https://evil.example");
    let r = within(connect(&format!("ws://{addr}/"), &opts)).await;
    match r {
        Err(WsError::Handshake(e)) => {
            assert_eq!(
                *e,
                wshub_ws::proto::handshake::HandshakeError::UnexpectedStatus(403)
            )
        }
        other => panic!("{other:?}"),
    }
    match within(server).await.unwrap() {
        Err(WsError::Rejected {
            status: 403,
            reason,
        }) => assert_eq!(reason, "origin not allowed"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn connect_errors() {
    let r = connect("http//nope", &ClientOptions::default()).await;
    assert!(matches!(r, Err(WsError::InvalidUrl(_))), "{r:?}");
    let r = connect("ftp://example.com/", &ClientOptions::default()).await;
    assert!(matches!(r, Err(WsError::InvalidUrl(_))), "{r:?}");
    // Nothing listens there.
    let (l, addr) = listener().await;
    drop(l);
    let r = within(connect(&format!("ws://{addr}/"), &ClientOptions::default())).await;
    assert!(matches!(r, Err(WsError::Io(_))), "{r:?}");
}

#[tokio::test]
async fn host_header_has_port_and_leftover_data_is_kept() {
    // A raw server that checks the request and sends a frame right behind
    // its 101 response (same write): the client must not lose it.
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (mut tcp, _) = l.accept().await.unwrap();
        let mut buf = bytes::BytesMut::new();
        loop {
            tcp.read_buf(&mut buf).await.unwrap();
            if let Some((head, _)) =
                wshub_ws::proto::handshake::parse_request(&buf, &Default::default()).unwrap()
            {
                let host = String::from_utf8(head.host().unwrap().to_vec()).unwrap();
                let acc = wshub_ws::proto::handshake::accept(&head, &Default::default()).unwrap();
                let mut out = acc.response.clone();
                out.extend_from_slice(b"\x81\x05early");
                tcp.write_all(&out).await.unwrap();
                return (host, tcp);
            }
        }
    });
    let mut ws = within(connect(
        &format!("ws://localhost:{}/", addr.port()),
        &ClientOptions::default(),
    ))
    .await
    .unwrap();
    let (host, _tcp) = within(server).await.unwrap();
    assert_eq!(host, format!("localhost:{}", addr.port()));
    let m = within(ws.recv()).await.unwrap().unwrap();
    assert_eq!(m, wshub_ws::Message::Text("early".into()));
}
