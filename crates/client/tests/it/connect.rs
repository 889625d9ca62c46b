//! Connect, subscribe and publications in both encodings; disconnect.

use std::time::Duration;

use bytes::Bytes;
use wshub_client::{
    ClientEvent, Encoding, State, SubscriptionConfig, SubscriptionEvent, SubscriptionState,
};
use wshub_protocol::{ClientInfo, Publication, Push, Reply, SubscribeResult};

use crate::fake::{config, connect_result, next, wait_connected, FakeServer};

async fn flow(encoding: Encoding) {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config().encoding(encoding).token("tok").name("it"));
    let (sub, mut sub_events) = client
        .new_subscription(
            "news",
            SubscriptionConfig::default()
                .recoverable(true)
                .join_leave(true),
        )
        .unwrap();
    sub.subscribe().unwrap();
    assert_eq!(client.state(), State::Disconnected);
    client.connect().unwrap();

    let (mut conn, req) = server.connected(connect_result("c1")).await;
    assert_eq!(conn.encoding, encoding, "the client asked for its encoding");
    assert_eq!((req.token.as_str(), req.name.as_str()), ("tok", "it"));
    match next(&mut events).await {
        ClientEvent::Connecting { code: 0, .. } => {}
        e => panic!("{e:?}"),
    }
    assert_eq!(wait_connected(&mut events).await, "c1");
    assert_eq!(client.state(), State::Connected);

    let cmd = conn.command().await;
    let s = cmd.subscribe.clone().expect("subscribe command");
    assert_eq!(s.channel, "news");
    assert!(s.recoverable && s.join_leave && !s.recover);
    conn.reply(Reply {
        id: cmd.id,
        subscribe: Some(SubscribeResult {
            recoverable: true,
            epoch: "e1".into(),
            offset: 5,
            ..SubscribeResult::default()
        }),
        ..Reply::default()
    })
    .await;
    let publication = |offset: u64| Publication {
        data: Bytes::from(format!("{{\"n\":{offset}}}")),
        offset,
        ..Publication::default()
    };
    conn.push(Push::publication("news", publication(6))).await;
    conn.push(Push::join(
        "news",
        ClientInfo {
            user: "u2".into(),
            client: "c2".into(),
            ..ClientInfo::default()
        },
    ))
    .await;
    conn.push(Push::publication("news", publication(7))).await;

    assert!(matches!(
        next(&mut sub_events).await,
        SubscriptionEvent::Subscribing { code: 0, .. }
    ));
    match next(&mut sub_events).await {
        SubscriptionEvent::Subscribed {
            epoch,
            offset,
            recovered,
            was_recovering,
            recoverable,
            ..
        } => {
            assert_eq!((epoch.as_str(), offset), ("e1", 5));
            assert!(recoverable && !recovered && !was_recovering);
        }
        e => panic!("{e:?}"),
    }
    match next(&mut sub_events).await {
        SubscriptionEvent::Publication(p) => {
            assert_eq!(p.offset, 6);
            assert_eq!(&p.data[..], br#"{"n":6}"#);
        }
        e => panic!("{e:?}"),
    }
    match next(&mut sub_events).await {
        SubscriptionEvent::Join(info) => assert_eq!(info.user, "u2"),
        e => panic!("{e:?}"),
    }
    match next(&mut sub_events).await {
        SubscriptionEvent::Publication(p) => assert_eq!(p.offset, 7),
        e => panic!("{e:?}"),
    }
    assert_eq!(sub.state(), SubscriptionState::Subscribed);
}

#[tokio::test]
async fn connect_subscribe_publications_json() {
    flow(Encoding::Json).await;
}

#[tokio::test]
async fn connect_subscribe_publications_protobuf() {
    flow(Encoding::Protobuf).await;
}

#[tokio::test]
async fn disconnect_closes_and_stays_disconnected() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;

    client.disconnect().unwrap();
    assert!(
        !conn.read_for(Duration::from_secs(2)).await,
        "the client closed"
    );
    match next(&mut events).await {
        ClientEvent::Disconnected { code: 0, .. } => {}
        e => panic!("{e:?}"),
    }
    assert_eq!(client.state(), State::Disconnected);
    server.no_conn_within(Duration::from_millis(400)).await;

    // connect() works again.
    client.connect().unwrap();
    server.connected(connect_result("c2")).await;
    assert_eq!(wait_connected(&mut events).await, "c2");
}

#[tokio::test]
async fn duplicate_subscription_is_refused() {
    let server = FakeServer::start().await;
    let (client, _events) = server.client(config());
    let (sub, _e) = client
        .new_subscription("a", SubscriptionConfig::default())
        .unwrap();
    assert!(matches!(
        client.new_subscription("a", SubscriptionConfig::default()),
        Err(wshub_client::Error::DuplicateSubscription(_))
    ));
    client.remove_subscription(sub).unwrap();
    client
        .new_subscription("a", SubscriptionConfig::default())
        .unwrap();
}
