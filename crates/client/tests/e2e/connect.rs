//! Connecting: anonymous, with a JWT, with a bad token, and over protobuf.

use std::time::Duration;

use wshub_client::{
    ClientEvent, Encoding, State, SubscriptionConfig, SubscriptionEvent, SubscriptionState,
};

use crate::support::{
    assert_quiet, client_config, config, connected, publication, start, subscribed, token,
    wait_for, T,
};

#[tokio::test]
async fn connects_anonymously() {
    let srv = start(config()).await;
    let (client, mut events, id) = connected(&srv.ws_url(), client_config()).await;
    assert!(!id.is_empty());
    assert_eq!(client.state(), State::Connected);
    // Anonymous: present in a channel with an empty user.
    let (sub, mut sub_events) = client
        .new_subscription("anon", SubscriptionConfig::default())
        .unwrap();
    sub.subscribe().unwrap();
    subscribed(&mut sub_events).await;
    let presence = tokio::time::timeout(T, sub.presence())
        .await
        .unwrap()
        .unwrap();
    let info = presence.get(&id).expect("own client present");
    assert_eq!(info.user, "");
    client.disconnect().unwrap();
    let code = wait_for(&mut events, |e| match e {
        ClientEvent::Disconnected { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, wshub_client::codes::DISCONNECT_CALLED);
    srv.shutdown().await;
}

#[tokio::test]
async fn connects_with_a_jwt_as_its_user() {
    let mut cfg = config();
    cfg.client.allow_anonymous_connect_without_token = false;
    let srv = start(cfg).await;
    let (client, _events, id) =
        connected(&srv.ws_url(), client_config().token(token("alice"))).await;
    let (sub, mut sub_events) = client
        .new_subscription("jwt", SubscriptionConfig::default())
        .unwrap();
    sub.subscribe().unwrap();
    subscribed(&mut sub_events).await;
    let presence = tokio::time::timeout(T, sub.presence())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(presence.get(&id).expect("own client present").user, "alice");
    srv.shutdown().await;
}

#[tokio::test]
async fn bad_token_disconnects_with_3500_and_no_reconnect() {
    let srv = start(config()).await;
    let (client, mut events) =
        wshub_client::Client::new(srv.ws_url(), client_config().token("not.a.jwt"));
    client.connect().unwrap();
    let (code, reason) = wait_for(&mut events, |e| match e {
        ClientEvent::Disconnected { code, reason } => Some((*code, reason.clone())),
        ClientEvent::Connected { .. } => panic!("connected with a bad token"),
        _ => None,
    })
    .await;
    assert_eq!(code, 3500, "{reason}");
    assert_eq!(client.state(), State::Disconnected);
    // Reconnect delays are 50-300 ms: a reconnect would show by now.
    assert_quiet(&mut events, Duration::from_millis(800)).await;
    assert_eq!(client.state(), State::Disconnected);
    // A token signed with another key is just as invalid.
    let forged = wshub_hub::auth::generate_connection_token("other", "u", None, None, &[]).unwrap();
    let (client2, mut events2) =
        wshub_client::Client::new(srv.ws_url(), client_config().token(forged));
    client2.connect().unwrap();
    let code = wait_for(&mut events2, |e| match e {
        ClientEvent::Disconnected { code, .. } => Some(*code),
        ClientEvent::Connected { .. } => panic!("connected with a forged token"),
        _ => None,
    })
    .await;
    assert_eq!(code, 3500);
    srv.shutdown().await;
}

#[tokio::test]
async fn protobuf_connect_subscribe_publish() {
    let srv = start(config()).await;
    let pb = || client_config().encoding(Encoding::Protobuf);
    let (a, _ae, a_id) = connected(&srv.ws_url(), pb().token(token("pa"))).await;
    let (b, _be, _) = connected(&srv.ws_url(), pb().token(token("pb"))).await;
    let (sa, mut sa_events) = a
        .new_subscription("bin", SubscriptionConfig::default().join_leave(true))
        .unwrap();
    sa.subscribe().unwrap();
    let (recoverable, _, _, epoch, offset) = subscribed(&mut sa_events).await;
    assert!(recoverable, "forced recovery");
    assert!(!epoch.is_empty());
    assert_eq!(offset, 0);
    let (sb, mut sb_events) = b
        .new_subscription("bin", SubscriptionConfig::default())
        .unwrap();
    sb.subscribe().unwrap();
    subscribed(&mut sb_events).await;
    let join = wait_for(&mut sa_events, |e| match e {
        SubscriptionEvent::Join(info) if info.user == "pb" => Some(info.clone()),
        _ => None,
    })
    .await;
    assert!(!join.client.is_empty());
    // Protobuf carries any bytes, not only JSON.
    let payload: &[u8] = b"\x00\x01\xffnot json";
    tokio::time::timeout(T, sb.publish(payload.to_vec()))
        .await
        .unwrap()
        .unwrap();
    let p = wait_for(&mut sa_events, |e| match e {
        SubscriptionEvent::Publication(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(&p.data[..], payload);
    assert_eq!(p.offset, 1);
    let (offset, _) = publication(&mut sb_events).await;
    assert_eq!(offset, 1);
    let presence = tokio::time::timeout(T, sa.presence())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(presence.len(), 2);
    assert_eq!(presence[&a_id].user, "pa");
    let h = tokio::time::timeout(
        T,
        sb.history(wshub_client::HistoryOptions::default().limit(-1)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(h.publications.len(), 1);
    assert_eq!(&h.publications[0].data[..], payload);
    assert_eq!(h.epoch, epoch);
    assert_eq!(sa.state(), SubscriptionState::Subscribed);
    srv.shutdown().await;
}

#[tokio::test]
async fn expiring_token_is_refreshed_on_the_same_connection() {
    let srv = start(config()).await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let get_token = {
        let calls = calls.clone();
        move || {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(wshub_hub::auth::generate_connection_token(
                    crate::support::SECRET,
                    "fresh",
                    Some(Duration::from_secs(3600)),
                    None,
                    &[],
                )
                .expect("token"))
            }
        }
    };
    // Expires in 2 s: the connect result says so, and the client refreshes.
    let short = wshub_hub::auth::generate_connection_token(
        crate::support::SECRET,
        "fresh",
        Some(Duration::from_secs(2)),
        None,
        &[],
    )
    .unwrap();
    let (client, mut events, _) = connected(
        &srv.ws_url(),
        client_config().token(short).get_token(get_token),
    )
    .await;
    let deadline = tokio::time::Instant::now() + T;
    while calls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "token never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give the refresh command its reply: no error, no reconnect.
    assert_quiet(&mut events, Duration::from_millis(1500)).await;
    assert_eq!(client.state(), State::Connected);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    tokio::time::timeout(T, client.publish("after-refresh", "{}"))
        .await
        .unwrap()
        .unwrap();
    srv.shutdown().await;
}
