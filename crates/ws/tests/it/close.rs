//! The closing handshake in both directions, the close timeout, EOF without
//! a close frame, and the lingering close.

use std::time::{Duration, Instant};

use wshub_ws::proto::{Event, Limits};
use wshub_ws::{
    accept, connect, ClientOptions, CloseCode, Message, Options, ServerOptions, WsError,
};

use crate::util::{listener, no_pong, within, Raw};

#[tokio::test]
async fn client_closes_server_sees_code_and_reason() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp, &ServerOptions::default()).await.unwrap();
        let first = ws.recv().await;
        let end = ws.recv().await;
        (first.map(|r| r.unwrap()), end.is_none(), ws.close_info())
    });
    let mut ws = within(connect(&format!("ws://{addr}/"), &ClientOptions::default()))
        .await
        .unwrap();
    within(ws.send_text("last words")).await.unwrap();
    within(ws.close(CloseCode(4001), "bye now")).await.unwrap();
    // The server's echo carries the code back.
    assert_eq!(
        ws.close_info(),
        Some((Some(CloseCode(4001)), String::new()))
    );
    assert!(within(ws.recv()).await.is_none());
    assert!(matches!(
        within(ws.send_text("late")).await,
        Err(WsError::Closed)
    ));
    // Closing again reports the same clean result.
    within(ws.close(CloseCode::NORMAL, "")).await.unwrap();

    let (first, ended_cleanly, info) = within(server).await.unwrap();
    assert_eq!(first, Some(Message::Text("last words".into())));
    assert!(ended_cleanly, "recv returns None after a clean close");
    assert_eq!(info, Some((Some(CloseCode(4001)), "bye now".to_owned())));
}

#[tokio::test]
async fn server_closes_client_sees_code_and_reason() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp, &ServerOptions::default()).await.unwrap();
        ws.send_text("before close").await.unwrap();
        let start = Instant::now();
        let r = ws.close(CloseCode::GOING_AWAY, "server restart").await;
        (r.is_ok(), start.elapsed(), ws.close_info())
    });
    let mut ws = within(connect(&format!("ws://{addr}/"), &ClientOptions::default()))
        .await
        .unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap().unwrap(),
        Message::Text("before close".into())
    );
    // The client echoes and waits for the server's EOF.
    assert!(within(ws.recv()).await.is_none());
    assert_eq!(
        ws.close_info(),
        Some((Some(CloseCode::GOING_AWAY), "server restart".to_owned()))
    );
    let (ok, took, info) = within(server).await.unwrap();
    assert!(ok);
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(info, Some((Some(CloseCode::GOING_AWAY), String::new())));
}

#[tokio::test]
async fn close_timeout_when_peer_never_answers() {
    let (l, addr) = listener().await;
    let opts = ServerOptions::default()
        .ws(Options::default().limits(Limits::default().close_timeout(Duration::from_millis(300))));
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp, &opts).await.unwrap();
        let start = Instant::now();
        let r = ws.close(CloseCode::NORMAL, "please answer").await;
        (r, start.elapsed())
    });
    // A raw client that reads but never answers the close frame (and
    // never closes TCP).
    let mut raw = within(Raw::client(addr, no_pong())).await;
    let (r, took) = within(server).await.unwrap();
    assert!(
        matches!(
            r,
            Err(WsError::Protocol(wshub_ws::proto::Error::CloseTimeout))
        ),
        "{r:?}"
    );
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    // The raw peer got the close frame, then the server's FIN.
    let evs = within(raw.events_until_eof()).await;
    assert!(
        evs.iter().any(|e| matches!(e, Event::Close { code: Some(CloseCode::NORMAL), reason } if reason == "please answer")),
        "{evs:?}"
    );
}

#[tokio::test]
async fn eof_without_close_frame_is_abnormal() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp, &ServerOptions::default()).await.unwrap();
        let first = ws.recv().await;
        let then = ws.recv().await;
        (first, then)
    });
    let raw = within(Raw::client(addr, no_pong())).await;
    drop(raw);
    let (first, then) = within(server).await.unwrap();
    assert!(
        matches!(
            first,
            Some(Err(WsError::Protocol(
                wshub_ws::proto::Error::AbnormalClosure
            )))
        ),
        "{first:?}"
    );
    assert!(then.is_none());
}

#[tokio::test]
async fn protocol_error_closes_with_1002_and_fin() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp, &ServerOptions::default()).await.unwrap();
        (ws.recv().await, ws.recv().await)
    });
    let mut raw = within(Raw::client(addr, no_pong())).await;
    // An unmasked client frame: a protocol error.
    tokio::io::AsyncWriteExt::write_all(&mut raw.tcp, b"\x81\x02hi")
        .await
        .unwrap();
    let evs = within(raw.events_until_eof()).await;
    assert!(
        evs.iter().any(|e| matches!(
            e,
            Event::Close {
                code: Some(CloseCode::PROTOCOL),
                ..
            }
        )),
        "{evs:?}"
    );
    // The client closes its side on the server's FIN; the server's
    // lingering close ends there.
    drop(raw);
    let (first, then) = within(server).await.unwrap();
    assert!(
        matches!(
            first,
            Some(Err(WsError::Protocol(wshub_ws::proto::Error::Protocol(_))))
        ),
        "{first:?}"
    );
    assert!(then.is_none());
}

#[tokio::test]
async fn messages_arriving_during_close_are_kept() {
    // A raw server that sends two messages and then answers our close.
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut raw = Raw::server(tcp, wshub_ws::Config::default()).await;
        // Wait for the client's close, then send data before echoing it.
        let mut got_close = false;
        while !got_close {
            match raw.next_event().await {
                Some(Ok(Event::Close { .. })) => got_close = true,
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        // The core already queued the echo; put messages in front of it by
        // writing them raw first.
        let mut out = Vec::new();
        out.extend_from_slice(b"\x81\x03one\x81\x03two");
        raw.conn.drain_transmit(&mut out);
        tokio::io::AsyncWriteExt::write_all(&mut raw.tcp, &out)
            .await
            .unwrap();
        // A server closes TCP first.
        tokio::io::AsyncWriteExt::shutdown(&mut raw.tcp)
            .await
            .unwrap();
        raw.events_until_eof().await;
    });
    let mut ws = within(connect(&format!("ws://{addr}/"), &ClientOptions::default()))
        .await
        .unwrap();
    within(ws.close(CloseCode::NORMAL, "")).await.unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap().unwrap(),
        Message::Text("one".into())
    );
    assert_eq!(
        within(ws.recv()).await.unwrap().unwrap(),
        Message::Text("two".into())
    );
    assert!(within(ws.recv()).await.is_none());
    within(server).await.unwrap();
}
