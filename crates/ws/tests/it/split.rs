//! Split halves used from two tasks.

use std::time::Duration;

use bytes::Bytes;
use wshub_ws::proto::Event;
use wshub_ws::{connect, ClientOptions, CloseCode, Message, ServerOptions};

use crate::util::{echo_server, listener, payload, within, Raw};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_and_writer_in_two_tasks() {
    let addr = echo_server(ServerOptions::default()).await;
    let ws = within(connect(&format!("ws://{addr}/"), &ClientOptions::default()))
        .await
        .unwrap();
    let (mut rx, mut tx) = ws.split();
    const N: usize = 500;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(m) = rx.recv().await {
            got.push(m.unwrap());
        }
        (got, rx)
    });
    let writer = tokio::spawn(async move {
        for i in 0..N {
            // Varying sizes, some large enough to need several writes.
            let len = if i % 50 == 0 { 300_000 } else { i * 7 };
            tx.send(Message::Binary(payload(len, i as u64).into()))
                .await
                .unwrap();
        }
        // Let the echoes come back, then close from the writer side while
        // the reader is blocked in recv.
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.close(CloseCode::NORMAL, "writer done").await.unwrap();
        tx
    });
    let tx = within(writer).await.unwrap();
    let (got, rx) = within(reader).await.unwrap();
    assert_eq!(got.len(), N);
    for (i, m) in got.iter().enumerate() {
        let len = if i % 50 == 0 { 300_000 } else { i * 7 };
        assert_eq!(m.as_bytes(), &payload(len, i as u64)[..], "message {i}");
    }
    assert_eq!(
        rx.close_info().map(|(c, _)| c),
        Some(Some(CloseCode::NORMAL))
    );
    let ws = rx.reunite(tx).unwrap();
    assert!(!ws.is_open());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_answered_while_writer_idle() {
    // A raw server pings our client; the client's reader is parked in recv
    // in its own task and the writer does nothing.
    let (l, addr) = listener().await;
    let url = format!("ws://{addr}/");
    let opts = ClientOptions::default();
    let ws = within(async {
        let (c, raw) = tokio::join!(connect(&url, &opts), async {
            Raw::server(l.accept().await.unwrap().0, wshub_ws::Config::default()).await
        });
        (c.unwrap(), raw)
    })
    .await;
    let (ws, mut raw) = ws;
    let (mut rx, tx) = ws.split();
    let reader = tokio::spawn(async move { rx.recv().await.map(|r| r.map_err(|e| e.to_string())) });
    // Give the reader time to park.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..3u8 {
        raw.conn.ping(&[b'x', i]).unwrap();
        raw.flush().await;
        match within(raw.next_event()).await {
            Some(Ok(Event::Pong(p))) => assert_eq!(p, Bytes::from(vec![b'x', i])),
            other => panic!("{other:?}"),
        }
    }
    // The peer's close is echoed by the reader too.
    raw.conn.close(CloseCode::GOING_AWAY, "bye").unwrap();
    raw.flush().await;
    tokio::io::AsyncWriteExt::shutdown(&mut raw.tcp)
        .await
        .unwrap();
    let evs = within(raw.events_until_eof()).await;
    assert!(
        matches!(
            evs.last(),
            Some(Event::Close {
                code: Some(CloseCode::GOING_AWAY),
                ..
            })
        ),
        "{evs:?}"
    );
    assert_eq!(within(reader).await.unwrap(), None);
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_close_without_reader() {
    // Nobody polls the reader: the writer's close must still complete, and
    // a message that arrives meanwhile waits for the reader.
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut raw = Raw::server(tcp, wshub_ws::Config::default()).await;
        loop {
            match raw.next_event().await {
                Some(Ok(Event::Close { .. })) => break,
                other => assert!(matches!(other, Some(Ok(_))), "{other:?}"),
            }
        }
        let mut out = b"\x81\x04late".to_vec();
        raw.conn.drain_transmit(&mut out);
        tokio::io::AsyncWriteExt::write_all(&mut raw.tcp, &out)
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::shutdown(&mut raw.tcp)
            .await
            .unwrap();
        raw.events_until_eof().await;
    });
    let ws = within(connect(&format!("ws://{addr}/"), &ClientOptions::default()))
        .await
        .unwrap();
    let (mut rx, mut tx) = ws.split();
    within(tx.close(CloseCode::NORMAL, "")).await.unwrap();
    assert_eq!(
        within(rx.recv()).await.unwrap().unwrap(),
        Message::Text("late".into())
    );
    assert!(within(rx.recv()).await.is_none());
    within(server).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_writes_from_another_thread_and_the_writer_flushes_the_rest() {
    let addr = echo_server(ServerOptions::default()).await;
    let ws = within(connect(&format!("ws://{addr}/"), &ClientOptions::default()))
        .await
        .unwrap();
    let (mut rx, mut tx) = ws.split();
    let sender = tx.sender();
    // From a plain thread, no runtime: small messages go out at once.
    let left = std::thread::spawn(move || {
        let mut left = Vec::new();
        for i in 0..100u64 {
            left.push(
                sender
                    .try_send(Message::Binary(payload(20, i).into()))
                    .unwrap(),
            );
        }
        // Nobody reads the echoes: the socket fills, and the rest stays
        // queued (1 MB messages, at most 64).
        for i in 0..64u64 {
            let l = sender
                .try_send(Message::Binary(payload(1_000_000, 100 + i).into()))
                .unwrap();
            left.push(l);
            if l > 0 {
                break;
            }
        }
        left
    })
    .join()
    .unwrap();
    assert!(left[..100].iter().all(|&l| l == 0), "{:?}", &left[..100]);
    assert!(*left.last().unwrap() > 0, "64 MB never filled the socket");
    // The writer's flush writes what the sender left (while we read).
    let big = left.len() - 100;
    let flush = tokio::spawn(async move {
        tx.flush().await.unwrap();
        tx
    });
    for i in 0..100u64 {
        let m = within(rx.recv()).await.unwrap().unwrap();
        assert_eq!(m.as_bytes(), &payload(20, i)[..], "message {i}");
    }
    for i in 0..big as u64 {
        let m = within(rx.recv()).await.unwrap().unwrap();
        assert_eq!(m.as_bytes(), &payload(1_000_000, 100 + i)[..]);
    }
    let tx = within(flush).await.unwrap();
    // A live sender keeps the halves apart.
    let sender = tx.sender();
    let (rx, tx) = rx.reunite(tx).unwrap_err();
    drop(sender);
    assert!(rx.reunite(tx).is_ok());
}

#[tokio::test]
async fn the_subprotocol_survives_split_and_reunite() {
    let addr = echo_server(ServerOptions::default().subprotocols(["v2.wshub"])).await;
    let opts = ClientOptions::default().subprotocols(["v2.wshub"]);
    let ws = within(connect(&format!("ws://{addr}/"), &opts))
        .await
        .unwrap();
    let (rx, tx) = ws.split();
    assert_eq!(rx.protocol(), Some("v2.wshub"));
    let ws = rx.reunite(tx).unwrap();
    assert_eq!(ws.protocol(), Some("v2.wshub"));
}
