//! The server ending things: a server-side unsubscribe, and a graceful
//! shutdown.

use std::time::Duration;

use wshub_client::{
    ClientEvent, Error, State, SubscriptionConfig, SubscriptionEvent, SubscriptionState,
};

use crate::support::{
    assert_no_publications, assert_quiet, client_config, config, connected, publication, start,
    start_at, subscribed, token, wait_for, T,
};

#[tokio::test]
async fn server_side_unsubscribe_ends_the_subscription() {
    let srv = start(config()).await;
    let (client, mut events, _) =
        connected(&srv.ws_url(), client_config().token(token("kicked"))).await;
    let (sub, mut sub_events) = client
        .new_subscription("kick", SubscriptionConfig::default())
        .unwrap();
    sub.subscribe().unwrap();
    subscribed(&mut sub_events).await;
    srv.publish("kick", "1").await;
    assert_eq!(publication(&mut sub_events).await.0, 1);

    srv.api("unsubscribe", r#"{"user":"kicked","channel":"kick"}"#)
        .await;
    let code = wait_for(&mut sub_events, |e| match e {
        SubscriptionEvent::Unsubscribed { code, .. } => Some(*code),
        SubscriptionEvent::Publication(p) => panic!("unexpected {p:?}"),
        _ => None,
    })
    .await;
    assert_eq!(code, 2000, "server unsubscribe");
    assert_eq!(sub.state(), SubscriptionState::Unsubscribed);
    // No more publications, and the connection stays up.
    srv.publish("kick", "2").await;
    assert_no_publications(&mut sub_events, Duration::from_millis(300)).await;
    assert_eq!(client.state(), State::Connected);
    assert_quiet(&mut events, Duration::from_millis(10)).await;
    // The user may subscribe again.
    sub.subscribe().unwrap();
    let (_, _, _, _, offset) = subscribed(&mut sub_events).await;
    assert_eq!(offset, 2);
    srv.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_sends_3001_and_the_client_keeps_reconnecting() {
    let srv = start(config()).await;
    let (client, mut events, _) = connected(&srv.ws_url(), client_config()).await;
    let (sub, mut sub_events) = client
        .new_subscription("bye", SubscriptionConfig::default())
        .unwrap();
    sub.subscribe().unwrap();
    let (_, _, _, epoch, _) = subscribed(&mut sub_events).await;
    let addr = srv.addr;

    srv.shutdown().await;
    let (code, reason) = wait_for(&mut events, |e| match e {
        ClientEvent::Connecting { code, reason } => Some((*code, reason.clone())),
        ClientEvent::Disconnected { code, reason } => panic!("gave up: {code} {reason}"),
        _ => None,
    })
    .await;
    assert_eq!(code, 3001, "{reason}");
    let code = wait_for(&mut sub_events, |e| match e {
        SubscriptionEvent::Subscribing { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, 3001);
    assert_eq!(sub.state(), SubscriptionState::Subscribing);

    // Nothing listens any more: attempts fail and are retried (50-300 ms
    // apart), without giving up.
    for _ in 0..3 {
        wait_for(&mut events, |e| match e {
            ClientEvent::Error(Error::Transport(_)) => Some(()),
            ClientEvent::Disconnected { code, reason } => panic!("gave up: {code} {reason}"),
            ClientEvent::Connected { .. } => panic!("connected to a stopped server"),
            _ => None,
        })
        .await;
    }
    assert_eq!(client.state(), State::Connecting);

    // A new server on the same address: the client gets back in and
    // resubscribes; the new node's stream has another epoch, so the gap
    // is reported, not hidden.
    let srv2 = start_at(config(), &addr.to_string()).await;
    wait_for(&mut events, |e| match e {
        ClientEvent::Connected { .. } => Some(()),
        ClientEvent::Disconnected { code, reason } => panic!("gave up: {code} {reason}"),
        _ => None,
    })
    .await;
    let (_, was_recovering, recovered, new_epoch, _) = subscribed(&mut sub_events).await;
    assert!(was_recovering);
    assert!(!recovered, "epoch {epoch} became {new_epoch}");
    assert_ne!(new_epoch, epoch);
    wait_for(&mut sub_events, |e| match e {
        SubscriptionEvent::Unrecovered { .. } => Some(()),
        _ => None,
    })
    .await;
    srv2.publish("bye", "1").await;
    assert_eq!(publication(&mut sub_events).await, (1, "1".to_owned()));

    client.disconnect().unwrap();
    let code = wait_for(&mut events, |e| match e {
        ClientEvent::Disconnected { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, wshub_client::codes::DISCONNECT_CALLED);
    client
        .wait_state(State::Disconnected, T)
        .await
        .expect("disconnected");
    assert_quiet(&mut events, Duration::from_millis(600)).await;
    srv2.shutdown().await;
}

#[tokio::test]
async fn server_side_subscription_publications_reach_the_client() {
    let srv = start(config()).await;
    let (_client, mut events, _) =
        connected(&srv.ws_url(), client_config().token(token("ss"))).await;
    srv.api("subscribe", r#"{"user":"ss","channel":"pushed"}"#)
        .await;
    // Publish once the server has subscribed the connection.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let v = srv.api("presence", r#"{"channel":"pushed"}"#).await;
        if v["result"]["presence"]
            .as_object()
            .is_some_and(|p| !p.is_empty())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not subscribed: {v}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    srv.publish("pushed", r#"{"x":1}"#).await;
    let (channel, offset, data) = wait_for(&mut events, |e| match e {
        ClientEvent::ServerPublication {
            channel,
            publication,
        } => Some((
            channel.clone(),
            publication.offset,
            publication.data.clone(),
        )),
        _ => None,
    })
    .await;
    assert_eq!((channel.as_str(), offset), ("pushed", 1));
    assert_eq!(&data[..], br#"{"x":1}"#);
    srv.shutdown().await;
}

#[tokio::test]
async fn api_disconnect_without_reconnect_leaves_the_client_disconnected() {
    let srv = start(config()).await;
    let (client, mut events, _) =
        connected(&srv.ws_url(), client_config().token(token("gone"))).await;
    let (sub, mut sub_events) = client
        .new_subscription("g", SubscriptionConfig::default())
        .unwrap();
    sub.subscribe().unwrap();
    subscribed(&mut sub_events).await;
    // No code given: the server uses 3503 (force disconnect, no reconnect).
    srv.api("disconnect", r#"{"user":"gone"}"#).await;
    let code = wait_for(&mut events, |e| match e {
        ClientEvent::Disconnected { code, .. } => Some(*code),
        ClientEvent::Connecting { code, reason } => panic!("reconnecting after {code} {reason}"),
        _ => None,
    })
    .await;
    assert_eq!(code, 3503);
    assert_quiet(&mut events, Duration::from_millis(600)).await;
    assert_eq!(client.state(), State::Disconnected);
    // Commands fail at once; the subscription waits for a new connect.
    let r = tokio::time::timeout(T, client.publish("g", "{}"))
        .await
        .unwrap();
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert_eq!(sub.state(), SubscriptionState::Subscribing);
    client.connect().unwrap();
    subscribed(&mut sub_events).await;
    srv.shutdown().await;
}
