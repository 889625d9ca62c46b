//! Resubscribe with recovery after reconnects; unrecovered gaps are told.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::UnboundedReceiver;
use wshub_client::{
    codes, Client, ClientEvent, Encoding, Subscription, SubscriptionConfig, SubscriptionEvent,
    SubscriptionState, UnsubscribeCode,
};
use wshub_protocol::{Publication, Push, Reply, SubscribeResult, Unsubscribe};

use crate::fake::{
    config, connect_result, next, publication_offset, until, wait_connected, Conn, FakeServer,
};

fn publication(offset: u64) -> Publication {
    Publication {
        data: Bytes::from(format!("{offset}")),
        offset,
        ..Publication::default()
    }
}

fn subscribed(id: u32, result: SubscribeResult) -> Reply {
    Reply {
        id,
        subscribe: Some(result),
        ..Reply::default()
    }
}

struct Setup {
    server: FakeServer,
    client: Client,
    events: UnboundedReceiver<ClientEvent>,
    sub: Subscription,
    sub_events: UnboundedReceiver<SubscriptionEvent>,
    conn: Conn,
}

/// Connected, subscribed to recoverable `news` at (10, "ep"), then
/// publications 11 and 12 delivered.
async fn setup() -> Setup {
    setup_with(Encoding::Json).await
}

async fn setup_with(encoding: Encoding) -> Setup {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config().encoding(encoding));
    let (sub, mut sub_events) = client
        .new_subscription("news", SubscriptionConfig::default().recoverable(true))
        .unwrap();
    sub.subscribe().unwrap();
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;
    let cmd = conn.command().await;
    let req = cmd.subscribe.unwrap();
    assert!(!req.recover && req.recoverable);
    let result = SubscribeResult {
        recoverable: true,
        epoch: "ep".into(),
        offset: 10,
        ..SubscribeResult::default()
    };
    conn.reply(subscribed(cmd.id, result)).await;
    conn.push(Push::publication("news", publication(11))).await;
    conn.push(Push::publication("news", publication(12))).await;
    let got: Vec<u64> = [
        until(&mut sub_events, publication_offset).await,
        until(&mut sub_events, publication_offset).await,
    ]
    .into();
    assert_eq!(got, [11, 12]);
    Setup {
        server,
        client,
        events,
        sub,
        sub_events,
        conn,
    }
}

#[tokio::test]
async fn resubscribes_with_recover_offset_epoch_and_delivers_once_in_order_json() {
    recovery_flow(Encoding::Json).await;
}

#[tokio::test]
async fn resubscribes_with_recover_offset_epoch_and_delivers_once_in_order_protobuf() {
    recovery_flow(Encoding::Protobuf).await;
}

async fn recovery_flow(encoding: Encoding) {
    let Setup {
        mut server,
        client: _client,
        mut events,
        sub,
        mut sub_events,
        conn,
    } = setup_with(encoding).await;
    assert_eq!(conn.encoding, encoding);
    drop(conn);
    match until(&mut sub_events, |e| match e {
        SubscriptionEvent::Subscribing { code, .. } => Some(*code),
        _ => None,
    })
    .await
    {
        codes::TRANSPORT_CLOSED => {}
        c => panic!("subscribing with code {c}"),
    }
    let (mut conn, _) = server.connected(connect_result("c2")).await;
    wait_connected(&mut events).await;
    let cmd = conn.command().await;
    let req = cmd.subscribe.clone().unwrap();
    assert_eq!(
        (
            req.channel.as_str(),
            req.recover,
            req.offset,
            req.epoch.as_str()
        ),
        ("news", true, 12, "ep")
    );
    assert!(req.recoverable);
    // The server returns an overlap (11, 12) on purpose, then live 14 again and 15.
    let result = SubscribeResult {
        recoverable: true,
        recovered: true,
        was_recovering: true,
        epoch: "ep".into(),
        offset: 14,
        publications: (11..=14).map(publication).collect(),
        ..SubscribeResult::default()
    };
    conn.reply(subscribed(cmd.id, result)).await;
    conn.push(Push::publication("news", publication(14))).await;
    conn.push(Push::publication("news", publication(15))).await;

    match next(&mut sub_events).await {
        SubscriptionEvent::Subscribed {
            recovered: true,
            was_recovering: true,
            ..
        } => {}
        e => panic!("{e:?}"),
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(publication_offset(&next(&mut sub_events).await).expect("a publication"));
    }
    assert_eq!(got, [13, 14, 15]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sub_events.try_recv().is_err(), "nothing delivered twice");
    assert_eq!(sub.state(), SubscriptionState::Subscribed);

    // And the next reconnect recovers from 15.
    conn.close(3001, "shutdown").await;
    let (mut conn, _) = server.connected(connect_result("c3")).await;
    let req = conn.command().await.subscribe.unwrap();
    assert_eq!(
        (req.recover, req.offset, req.epoch.as_str()),
        (true, 15, "ep")
    );
}

#[tokio::test]
async fn unrecovered_gap_is_reported() {
    let Setup {
        mut server,
        client: _client,
        mut events,
        mut sub_events,
        conn,
        ..
    } = setup().await;
    drop(conn);
    let (mut conn, _) = server.connected(connect_result("c2")).await;
    wait_connected(&mut events).await;
    let cmd = conn.command().await;
    assert!(cmd.subscribe.as_ref().unwrap().recover);
    let result = SubscribeResult {
        recoverable: true,
        recovered: false,
        was_recovering: true,
        epoch: "new".into(),
        offset: 3,
        ..SubscribeResult::default()
    };
    conn.reply(subscribed(cmd.id, result)).await;
    conn.push(Push::publication("news", publication(4))).await;
    until(&mut sub_events, |e| match e {
        SubscriptionEvent::Subscribed {
            recovered: false,
            was_recovering: true,
            epoch,
            ..
        } => {
            assert_eq!(epoch, "new");
            Some(())
        }
        SubscriptionEvent::Subscribed { .. } => panic!("{e:?}"),
        _ => None,
    })
    .await;
    match next(&mut sub_events).await {
        SubscriptionEvent::Unrecovered { offset: 12, epoch } => assert_eq!(epoch, "ep"),
        e => panic!("{e:?}"),
    }
    // Publications of the new epoch flow (offset 4 is not a "duplicate" of 12).
    assert_eq!(publication_offset(&next(&mut sub_events).await), Some(4));
}

#[tokio::test]
async fn disconnect_then_connect_resubscribes_with_recovery() {
    let Setup {
        mut server,
        client,
        mut events,
        mut sub_events,
        conn,
        ..
    } = setup().await;
    client.disconnect().unwrap();
    drop(conn);
    until(&mut events, |e| {
        matches!(e, ClientEvent::Disconnected { .. }).then_some(())
    })
    .await;
    until(&mut sub_events, |e| {
        matches!(e, SubscriptionEvent::Subscribing { .. }).then_some(())
    })
    .await;
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c2")).await;
    let req = conn.command().await.subscribe.unwrap();
    assert_eq!(
        (req.recover, req.offset, req.epoch.as_str()),
        (true, 12, "ep")
    );
}

#[tokio::test]
async fn server_unsubscribe_codes() {
    let Setup {
        client: _client,
        sub,
        mut sub_events,
        mut conn,
        ..
    } = setup().await;
    // 2500 and up: subscribe again (with recovery).
    conn.push(Push::unsubscribe(
        "news",
        UnsubscribeCode::INSUFFICIENT_STATE.to_unsubscribe(),
    ))
    .await;
    let cmd = conn.command().await;
    let req = cmd.subscribe.clone().unwrap();
    assert_eq!((req.recover, req.offset), (true, 12));
    let result = SubscribeResult {
        recoverable: true,
        recovered: true,
        epoch: "ep".into(),
        offset: 12,
        ..SubscribeResult::default()
    };
    conn.reply(subscribed(cmd.id, result)).await;
    until(&mut sub_events, |e| {
        matches!(e, SubscriptionEvent::Subscribed { .. }).then_some(())
    })
    .await;

    // Below 2500: unsubscribed for good.
    conn.push(Push::unsubscribe(
        "news",
        Unsubscribe {
            code: 2100,
            reason: "kicked".into(),
        },
    ))
    .await;
    match until(&mut sub_events, |e| match e {
        SubscriptionEvent::Unsubscribed { code, .. } => Some(*code),
        _ => None,
    })
    .await
    {
        2100 => {}
        c => panic!("{c}"),
    }
    assert_eq!(sub.state(), SubscriptionState::Unsubscribed);
    assert!(conn.read_for(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn unsubscribe_sends_the_command_and_forgets_the_position() {
    let Setup {
        sub,
        mut sub_events,
        mut conn,
        ..
    } = setup().await;
    sub.unsubscribe().unwrap();
    let cmd = conn.command().await;
    assert_eq!(cmd.unsubscribe.unwrap().channel, "news");
    conn.reply(Reply {
        id: cmd.id,
        ..Reply::default()
    })
    .await;
    until(&mut sub_events, |e| {
        matches!(e, SubscriptionEvent::Unsubscribed { code: 0, .. }).then_some(())
    })
    .await;
    sub.subscribe().unwrap();
    let req = conn.command().await.subscribe.unwrap();
    assert!(!req.recover, "a new subscribe starts fresh");
}

#[tokio::test]
async fn subscribe_errors_retry_when_temporary_else_unsubscribe() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    let (sub, mut sub_events) = client
        .new_subscription("news", SubscriptionConfig::default())
        .unwrap();
    sub.subscribe().unwrap();
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;

    // Temporary: retried after a backoff delay on the same connection.
    let cmd = conn.command().await;
    conn.reply(Reply::error(
        cmd.id,
        wshub_client::ErrorCode::TOO_MANY_REQUESTS,
    ))
    .await;
    let again = conn.command().await;
    assert_eq!(again.subscribe.as_ref().unwrap().channel, "news");
    assert_ne!(again.id, cmd.id);
    // Final: unsubscribed with the error code, no retry.
    conn.reply(Reply::error(
        again.id,
        wshub_client::ErrorCode::PERMISSION_DENIED,
    ))
    .await;
    let code = until(&mut sub_events, |e| match e {
        SubscriptionEvent::Unsubscribed { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, 103);
    assert!(conn.read_for(Duration::from_millis(300)).await);
    assert_eq!(sub.state(), SubscriptionState::Unsubscribed);
}

#[tokio::test]
async fn subscribe_timeout_reconnects() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config().timeout(Duration::from_millis(300)));
    let (sub, _sub_events) = client
        .new_subscription("news", SubscriptionConfig::default())
        .unwrap();
    sub.subscribe().unwrap();
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;
    let _ignored = conn.command().await;
    let code = until(&mut events, |e| match e {
        ClientEvent::Connecting { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, codes::SUBSCRIBE_TIMEOUT);
    let (mut conn, _) = server.connected(connect_result("c2")).await;
    assert_eq!(conn.command().await.subscribe.unwrap().channel, "news");
}

#[tokio::test]
async fn channel_token_is_fetched_and_renewed_on_109() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    let fetched = Arc::new(AtomicUsize::new(0));
    let counter = fetched.clone();
    let cfg = SubscriptionConfig::default().get_token(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok(format!("ch{n}")) }
    });
    let (sub, mut sub_events) = client.new_subscription("news", cfg).unwrap();
    sub.subscribe().unwrap();
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;

    let cmd = conn.command().await;
    assert_eq!(cmd.subscribe.as_ref().unwrap().token, "ch0");
    conn.reply(Reply::error(cmd.id, wshub_client::ErrorCode::TOKEN_EXPIRED))
        .await;
    let cmd = conn.command().await;
    assert_eq!(cmd.subscribe.as_ref().unwrap().token, "ch1");
    conn.reply(subscribed(cmd.id, SubscribeResult::default()))
        .await;
    until(&mut sub_events, |e| {
        matches!(e, SubscriptionEvent::Subscribed { .. }).then_some(())
    })
    .await;
    assert_eq!(fetched.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn publications_pushed_before_the_subscribe_reply_are_not_lost() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    let (sub, mut sub_events) = client
        .new_subscription("news", SubscriptionConfig::default().recoverable(true))
        .unwrap();
    sub.subscribe().unwrap();
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;
    let cmd = conn.command().await;
    // A sloppy server: live publications (one of them also in the reply)
    // before the subscribe reply.
    conn.push(Push::publication("news", publication(2))).await;
    conn.push(Push::publication("news", publication(3))).await;
    let result = SubscribeResult {
        recoverable: true,
        epoch: "ep".into(),
        offset: 2,
        publications: vec![publication(2)],
        ..SubscribeResult::default()
    };
    conn.reply(subscribed(cmd.id, result)).await;
    conn.push(Push::publication("news", publication(4))).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(until(&mut sub_events, publication_offset).await);
    }
    assert_eq!(got, [2, 3, 4]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sub_events.try_recv().is_err(), "nothing delivered twice");
}

#[tokio::test]
async fn channel_token_is_refreshed_before_it_expires() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    let fetched = Arc::new(AtomicUsize::new(0));
    let counter = fetched.clone();
    let cfg = SubscriptionConfig::default()
        .token("ch-initial")
        .get_token(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok(format!("ch{n}")) }
        });
    let (sub, mut sub_events) = client.new_subscription("news", cfg).unwrap();
    sub.subscribe().unwrap();
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;

    let cmd = conn.command().await;
    assert_eq!(cmd.subscribe.as_ref().unwrap().token, "ch-initial");
    let result = SubscribeResult {
        expires: true,
        ttl: 1,
        ..SubscribeResult::default()
    };
    conn.reply(subscribed(cmd.id, result)).await;
    until(&mut sub_events, |e| {
        matches!(e, SubscriptionEvent::Subscribed { .. }).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    let cmd = conn.command().await;
    let refresh = cmd.sub_refresh.clone().expect("a sub_refresh command");
    assert_eq!(
        (refresh.channel.as_str(), refresh.token.as_str()),
        ("news", "ch0")
    );
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    conn.reply(Reply {
        id: cmd.id,
        sub_refresh: Some(wshub_protocol::SubRefreshResult {
            expires: false,
            ..Default::default()
        }),
        ..Reply::default()
    })
    .await;
    assert!(
        conn.read_for(Duration::from_millis(1300)).await,
        "no more refreshes"
    );
    assert_eq!(fetched.load(Ordering::SeqCst), 1);
    assert_eq!(sub.state(), SubscriptionState::Subscribed);
}
