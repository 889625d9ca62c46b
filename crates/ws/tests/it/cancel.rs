//! Cancel safety: `recv` cancelled over and over by a ticker in `select!`
//! while large messages trickle in must still deliver every byte.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use wshub_ws::proto::{Connection, Role};
use wshub_ws::{accept, Message, ServerOptions};

use crate::util::{listener, no_pong, payload, text, within, Raw};

fn messages() -> Vec<Message> {
    vec![
        Message::Binary(payload(40_000, 1).into()),
        Message::Text(text(30_000).into()),
        Message::Binary(payload(3, 2).into()),
        Message::Text("🦀🦀🦀".into()),
        Message::Binary(payload(70_000, 3).into()),
    ]
}

#[tokio::test]
async fn recv_in_select_with_ticker_loses_nothing() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp, &ServerOptions::default()).await.unwrap();
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        let mut ticks = 0u32;
        let mut got = Vec::new();
        loop {
            tokio::select! {
                r = ws.recv() => match r {
                    Some(m) => got.push(m.unwrap()),
                    None => break,
                },
                _ = ticker.tick() => ticks += 1,
            }
        }
        (got, ticks)
    });

    // The peer: encode the messages (one fragmented into several frames),
    // then write the bytes in odd-sized pieces with pauses, so frame
    // headers, masks and UTF-8 sequences are split across reads.
    let mut raw = within(Raw::client(addr, no_pong())).await;
    let mut enc = Connection::new(
        Role::Client,
        wshub_ws::Config::default().fragment_size(Some(9_000)),
        None,
    );
    for m in messages() {
        enc.send(m).unwrap();
    }
    enc.ping(b"interleaved").unwrap();
    enc.close(wshub_ws::CloseCode::NORMAL, "done").unwrap();
    let mut wire = Vec::new();
    enc.drain_transmit(&mut wire);
    let writer = async {
        for chunk in wire.chunks(997) {
            raw.tcp.write_all(chunk).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        raw.events_until_eof().await;
        // Close our side after the server's FIN, ending its lingering close.
        drop(raw);
    };
    within(writer).await;

    let (got, ticks) = within(server).await.unwrap();
    assert_eq!(got, messages());
    // recv was cancelled many times while frames were partly received.
    assert!(ticks > 50, "only {ticks} ticks");
}
