//! Reconnect rules by disconnect code, backoff, tokens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use wshub_client::{codes, ClientEvent, ErrorCode, State, TokenError};
use wshub_protocol::{ConnectResult, Disconnect, DisconnectCode, Push, RefreshResult, Reply};

use crate::fake::{config, connect_result, next, until, wait_connected, FakeServer};

async fn connecting_code(events: &mut tokio::sync::mpsc::UnboundedReceiver<ClientEvent>) -> u32 {
    until(events, |e| match e {
        ClientEvent::Connecting { code, .. } => Some(*code),
        ClientEvent::Disconnected { code, reason } => panic!("disconnected {code} {reason}"),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn reconnects_after_the_tcp_connection_drops() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    client.connect().unwrap();
    let (conn, _) = server.connected(connect_result("c1")).await;
    assert_eq!(wait_connected(&mut events).await, "c1");
    drop(conn);
    assert_eq!(connecting_code(&mut events).await, codes::TRANSPORT_CLOSED);
    assert_eq!(client.state(), State::Connecting);
    server.connected(connect_result("c2")).await;
    assert_eq!(wait_connected(&mut events).await, "c2");
}

#[tokio::test]
async fn reconnects_after_3001_shutdown() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    client.connect().unwrap();
    let (conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;
    conn.close(3001, "shutdown").await;
    assert_eq!(connecting_code(&mut events).await, 3001);
    server.connected(connect_result("c2")).await;
    assert_eq!(wait_connected(&mut events).await, "c2");
}

#[tokio::test]
async fn no_reconnect_after_3500_range_close() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    client.connect().unwrap();
    let (conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;
    conn.close(3500, "invalid token").await;
    match next(&mut events).await {
        ClientEvent::Disconnected { code: 3500, reason } => assert_eq!(reason, "invalid token"),
        e => panic!("{e:?}"),
    }
    assert_eq!(client.state(), State::Disconnected);
    server.no_conn_within(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn disconnect_push_follows_the_code_range() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;

    conn.push(Push::disconnect(Disconnect::new(
        DisconnectCode::FORCE_RECONNECT,
        "again",
    )))
    .await;
    assert_eq!(connecting_code(&mut events).await, 3011);
    let (mut conn, _) = server.connected(connect_result("c2")).await;
    wait_connected(&mut events).await;

    conn.push(Push::disconnect(Disconnect::new(
        DisconnectCode::FORCE_NO_RECONNECT,
        "bye",
    )))
    .await;
    match next(&mut events).await {
        ClientEvent::Disconnected { code: 3503, .. } => {}
        e => panic!("{e:?}"),
    }
    server.no_conn_within(Duration::from_millis(400)).await;
    assert_eq!(client.state(), State::Disconnected);
}

#[tokio::test]
async fn backoff_delays_stay_within_bounds() {
    let mut server = FakeServer::start().await;
    let min = Duration::from_millis(100);
    let max = Duration::from_millis(250);
    let (client, _events) =
        server.client(config().min_reconnect_delay(min).max_reconnect_delay(max));
    client.connect().unwrap();
    let mut last: Option<Instant> = None;
    let mut gaps = Vec::new();
    for _ in 0..6 {
        let mut conn = server.conn().await;
        let now = Instant::now();
        if let Some(last) = last {
            gaps.push(now - last);
        }
        // Refuse before the connect reply: the attempt counter keeps growing.
        let _ = conn.command().await;
        last = Some(Instant::now());
        conn.close(3001, "shutdown").await;
    }
    for gap in &gaps {
        assert!(*gap >= min, "reconnected too early: {gaps:?}");
        assert!(
            *gap <= max + Duration::from_millis(400),
            "waited too long: {gaps:?}"
        );
    }
    drop(client);
}

#[tokio::test]
async fn token_expired_at_connect_fetches_a_new_token() {
    let mut server = FakeServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let cfg = config().token("old").get_token(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok(format!("new{n}")) }
    });
    let (client, mut events) = server.client(cfg);
    client.connect().unwrap();

    let mut conn = server.conn().await;
    let cmd = conn.command().await;
    assert_eq!(cmd.connect.unwrap().token, "old");
    conn.reply(Reply::error(cmd.id, ErrorCode::TOKEN_EXPIRED))
        .await;

    let (_conn, req) = server.connected(connect_result("c1")).await;
    assert_eq!(req.token, "new0");
    wait_connected(&mut events).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn token_is_refreshed_before_it_expires() {
    let mut server = FakeServer::start().await;
    let cfg = config()
        .token("t0")
        .get_token(|| async { Ok("t1".to_owned()) });
    let (client, mut events) = server.client(cfg);
    client.connect().unwrap();
    let (mut conn, _) = server
        .connected(ConnectResult {
            expires: true,
            ttl: 1,
            ..connect_result("c1")
        })
        .await;
    wait_connected(&mut events).await;
    let started = Instant::now();
    let cmd = conn.command().await;
    let refresh = cmd.refresh.expect("a refresh command");
    assert_eq!(refresh.token, "t1");
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    conn.reply(Reply {
        id: cmd.id,
        refresh: Some(RefreshResult {
            expires: false,
            ..RefreshResult::default()
        }),
        ..Reply::default()
    })
    .await;
    // No more refreshes, still connected.
    assert!(conn.read_for(Duration::from_millis(1300)).await);
    assert_eq!(client.state(), State::Connected);
}

#[tokio::test]
async fn unauthorized_token_callback_stops() {
    let mut server = FakeServer::start().await;
    let cfg = config().get_token(|| async { Err(TokenError::Unauthorized) });
    let (client, mut events) = server.client(cfg);
    client.connect().unwrap();
    let code = until(&mut events, |e| match e {
        ClientEvent::Disconnected { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, codes::UNAUTHORIZED);
    server.no_conn_within(Duration::from_millis(300)).await;
    assert_eq!(client.state(), State::Disconnected);
}

/// Closes the connection with `code` and reports whether the client came back.
async fn reconnects_after_close(code: u16) -> bool {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    client.connect().unwrap();
    let (conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;
    conn.close(code, "").await;
    let came_back = tokio::time::timeout(Duration::from_millis(600), server.conn())
        .await
        .is_ok();
    let expected = if came_back {
        State::Connecting
    } else {
        State::Disconnected
    };
    // The state agrees (Connecting or already Connected again is fine).
    let state = client.state();
    assert!(
        state == expected || (came_back && state != State::Disconnected),
        "{code}: {state:?}"
    );
    came_back
}

#[tokio::test]
async fn reconnect_rules_by_close_code() {
    let mut checks = JoinSet::new();
    for (code, reconnect) in [
        (1000, true),
        (1011, true),
        (3000, true),
        (3499, true),
        (4000, true),
        (4499, true),
        (1009, false),
        (3501, false),
        (3999, false),
        (4500, false),
        (4999, false),
    ] {
        checks.spawn(async move { (code, reconnect, reconnects_after_close(code).await) });
    }
    while let Some(r) = checks.join_next().await {
        let (code, expected, got) = r.unwrap();
        assert_eq!(got, expected, "close code {code}");
    }
}
