//! Keepalive: pings go out on schedule, a silent peer is failed with 1011.

use std::time::{Duration, Instant};

use wshub_ws::proto::{Error, Event};
use wshub_ws::{
    accept, connect, ClientOptions, CloseCode, KeepAlive, Options, ServerOptions, WsError,
};

use crate::util::{echo_server, listener, no_pong, within, Raw};

fn keepalive(interval_ms: u64, timeout_ms: u64) -> Options {
    Options::default().keepalive(Some(KeepAlive {
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
    }))
}

#[tokio::test]
async fn silent_peer_is_closed_with_1011() {
    let (l, addr) = listener().await;
    let opts = ServerOptions::default().ws(keepalive(100, 200));
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut ws = accept(tcp, &opts).await.unwrap();
        let start = Instant::now();
        let r = ws.recv().await;
        (r, start.elapsed())
    });
    // A raw peer that reads everything and never answers pings.
    let mut raw = within(Raw::client(addr, no_pong())).await;
    let start = Instant::now();
    let evs = within(raw.events_until_eof()).await;
    let took = start.elapsed();
    assert!(matches!(evs.first(), Some(Event::Ping(_))), "{evs:?}");
    assert!(
        matches!(
            evs.last(),
            Some(Event::Close {
                code: Some(CloseCode::INTERNAL),
                ..
            })
        ),
        "{evs:?}"
    );
    // interval + timeout = 300 ms, plus scheduling slack.
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    let (r, _) = within(server).await.unwrap();
    assert!(
        matches!(r, Some(Err(WsError::Protocol(Error::KeepaliveTimeout)))),
        "{r:?}"
    );
}

#[tokio::test]
async fn answering_peer_stays_connected() {
    // Our client answers the server's pings inside recv; over ~6 keepalive
    // intervals the connection must stay up.
    let addr = echo_server(ServerOptions::default().ws(keepalive(50, 100))).await;
    let mut ws = within(connect(&format!("ws://{addr}/"), &ClientOptions::default()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        tokio::select! {
            r = ws.recv() => panic!("unexpected {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    within(ws.send_text("alive")).await.unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap().unwrap(),
        wshub_ws::Message::Text("alive".into())
    );
}

#[tokio::test]
async fn client_keepalive_pings_server() {
    // Our client with keepalive against a raw server that counts pings and
    // answers them.
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let mut raw = Raw::server(tcp, wshub_ws::Config::default()).await;
        let mut pings = 0;
        while pings < 3 {
            match raw.next_event().await {
                Some(Ok(Event::Ping(_))) => {
                    pings += 1;
                    raw.flush().await; // the auto-pong
                }
                other => panic!("{other:?}"),
            }
        }
        pings
    });
    let opts = ClientOptions::default().ws(keepalive(50, 200));
    let mut ws = within(connect(&format!("ws://{addr}/"), &opts))
        .await
        .unwrap();
    let recv = tokio::spawn(async move { ws.recv().await.map(|r| r.map_err(|e| e.to_string())) });
    assert_eq!(within(server).await.unwrap(), 3);
    recv.abort();
}
