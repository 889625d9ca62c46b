//! Server pings: pongs, and reconnecting when pings stop.

use std::time::Duration;

use wshub_client::{codes, ClientEvent};
use wshub_protocol::ConnectResult;

use crate::fake::{config, connect_result, until, wait_connected, FakeServer};

#[tokio::test]
async fn pings_are_answered_and_missing_pings_reconnect() {
    let mut server = FakeServer::start().await;
    let (_client, mut events) =
        server.client(config().max_server_ping_delay(Duration::from_millis(300)));
    _client.connect().unwrap();
    let (mut conn, _) = server
        .connected(ConnectResult {
            ping: 1,
            pong: true,
            ..connect_result("c1")
        })
        .await;
    wait_connected(&mut events).await;

    // Ping every 100 ms for 1.8 s: longer than ping + max delay (1.3 s),
    // so the client stays only because the pings arrive.
    for _ in 0..18 {
        conn.ping().await;
        assert!(conn.read_for(Duration::from_millis(100)).await);
    }
    assert!(conn.pongs >= 15, "pongs: {}", conn.pongs);
    assert!(events.try_recv().is_err(), "no event while pings arrive");

    // Stop pinging (the connection stays open): the client gives up on it.
    let started = std::time::Instant::now();
    let code = until(&mut events, |e| match e {
        ClientEvent::Connecting { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, codes::NO_PING);
    assert!(
        started.elapsed() >= Duration::from_millis(1100),
        "{:?}",
        started.elapsed()
    );
    server.connected(connect_result("c2")).await;
    assert_eq!(wait_connected(&mut events).await, "c2");
    drop(conn);
}

#[tokio::test]
async fn no_pong_unless_asked() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    client.connect().unwrap();
    let (mut conn, _) = server
        .connected(ConnectResult {
            ping: 25,
            pong: false,
            ..connect_result("c1")
        })
        .await;
    wait_connected(&mut events).await;
    for _ in 0..3 {
        conn.ping().await;
    }
    assert!(conn.read_for(Duration::from_millis(300)).await);
    assert_eq!(conn.pongs, 0);
}
