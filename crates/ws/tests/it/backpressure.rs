//! The write queue's high-water mark: a peer that never reads cannot make
//! us buffer without bound.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use wshub_ws::proto::{Connection, Role};
use wshub_ws::{accept, Message, Options, ServerOptions, WsError};

use crate::util::{no_pong, small_buffer_connect, small_buffer_listener, within, Raw};

#[tokio::test]
async fn send_waits_when_peer_does_not_read() {
    let (l, addr) = small_buffer_listener();
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp, &ServerOptions::default()).await.unwrap();
        let msg = Message::Binary(vec![7u8; 64 * 1024].into());
        // The peer never reads: after the kernel buffers fill, a send must
        // stop completing.
        for i in 0..1000 {
            match tokio::time::timeout(Duration::from_millis(200), ws.send(msg.clone())).await {
                Ok(r) => r.unwrap(),
                Err(_) => return (i, ws.buffered_out()),
            }
        }
        panic!("send never waited");
    });
    let raw = within(Raw::client_on(small_buffer_connect(addr).await, no_pong())).await;
    let (sent, queued) = within(server).await.unwrap();
    assert!(sent < 200, "{sent} sends completed");
    assert!(queued > 0);
    drop(raw);
}

#[tokio::test]
async fn feed_fails_fast_over_the_mark() {
    let (l, addr) = small_buffer_listener();
    let hwm = 256 * 1024;
    let opts = ServerOptions::default().ws(Options::default()
        .high_water_mark(hwm)
        .fail_fast_when_full(true));
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp, &opts).await.unwrap();
        let msg = Message::Binary(vec![7u8; 16 * 1024].into());
        for _ in 0..10_000 {
            match ws.feed(msg.clone()) {
                Ok(()) => {
                    // Write what the socket takes, without waiting.
                    let _ = tokio::time::timeout(Duration::from_millis(1), ws.flush()).await;
                }
                Err(WsError::QueueFull) => {
                    let queued = ws.buffered_out();
                    // send fails fast too, and the connection stays usable.
                    let again = ws.send(msg.clone()).await;
                    return (
                        queued,
                        matches!(again, Err(WsError::QueueFull)),
                        ws.is_open(),
                    );
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("never full");
    });
    let raw = within(Raw::client_on(small_buffer_connect(addr).await, no_pong())).await;
    let (queued, send_full, open) = within(server).await.unwrap();
    assert!(queued <= hwm, "{queued}");
    assert!(queued > hwm - 16 * 1024, "{queued}");
    assert!(send_full);
    assert!(open);
    drop(raw);
}

#[tokio::test]
async fn ping_flood_from_non_reader_is_bounded() {
    let (l, addr) = small_buffer_listener();
    let hwm = 64 * 1024;
    let opts = ServerOptions::default().ws(Options::default().high_water_mark(hwm));
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp, &opts).await.unwrap();
        let mut max = 0;
        let mut ticker = tokio::time::interval(Duration::from_millis(5));
        let end = tokio::time::Instant::now() + Duration::from_millis(1200);
        loop {
            tokio::select! {
                r = ws.recv() => panic!("unexpected {r:?}"),
                _ = ticker.tick() => {
                    max = max.max(ws.buffered_out());
                    if tokio::time::Instant::now() > end {
                        return max;
                    }
                }
            }
        }
    });
    let raw = within(Raw::client_on(small_buffer_connect(addr).await, no_pong())).await;
    // Flood pings (125-byte payloads) as fast as the socket takes them,
    // never reading the pongs.
    let mut enc = Connection::new(Role::Client, Default::default(), None);
    let mut batch = Vec::new();
    for _ in 0..256 {
        enc.ping(&[b'p'; 125]).unwrap();
    }
    enc.drain_transmit(&mut batch);
    let mut tcp = raw.tcp;
    let flood = tokio::spawn(async move {
        let mut written = 0usize;
        loop {
            match tokio::time::timeout(Duration::from_millis(300), tcp.write_all(&batch)).await {
                Ok(Ok(())) => written += batch.len(),
                Ok(Err(_)) => return (written, false, tcp),
                // Blocked: the server stopped reading. Keep the socket open
                // (closing it with unread data would reset the server).
                Err(_) => return (written, true, tcp),
            }
        }
    });
    let max = within(server).await.unwrap();
    let (written, blocked, _tcp) = within(flood).await.unwrap();
    assert!(blocked, "the server kept reading ({written} bytes)");
    assert!(max > hwm, "the queue never reached the mark: {max}");
    assert!(max <= hwm + 16 * 1024, "queue grew past the mark: {max}");
}

#[tokio::test]
async fn send_resumes_when_peer_reads_again() {
    let (l, addr) = small_buffer_listener();
    let total = 4 << 20;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp, &ServerOptions::default()).await.unwrap();
        let msg = Message::Binary(vec![1u8; 256 * 1024].into());
        for _ in 0..total / (256 * 1024) {
            ws.send(msg.clone()).await.unwrap();
        }
        ws.close(wshub_ws::CloseCode::NORMAL, "").await
    });
    let mut raw = within(Raw::client_on(
        small_buffer_connect(addr).await,
        wshub_ws::Config::default(),
    ))
    .await;
    // Let the server block for a while, then read everything.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut got = 0;
    loop {
        match within(raw.next_event()).await {
            Some(Ok(wshub_ws::proto::Event::Message(m))) => got += m.len(),
            Some(Ok(wshub_ws::proto::Event::Close { .. })) => {
                raw.flush().await;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    raw.tcp.shutdown().await.unwrap();
    assert_eq!(got, total);
    within(server).await.unwrap().unwrap();
}
