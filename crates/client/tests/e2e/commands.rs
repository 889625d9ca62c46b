//! Publications between clients, join/leave, presence, history, and the
//! errors the gateway answers commands with.

use wshub_client::{Error, HistoryOptions, SubscriptionConfig, SubscriptionEvent};

use crate::support::{
    client_config, config, connected, publication, start, subscribed, token, wait_for, T,
};

fn server_code(r: Result<impl std::fmt::Debug, Error>) -> u32 {
    match r {
        Err(Error::Server { code, .. }) => code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn publications_from_another_client_arrive_in_order_with_offsets() {
    let srv = start(config()).await;
    let (sub_client, _e1, _) = connected(&srv.ws_url(), client_config()).await;
    let (pub_client, _e2, _) = connected(&srv.ws_url(), client_config()).await;
    let (sub, mut events) = sub_client
        .new_subscription("news", SubscriptionConfig::default())
        .unwrap();
    sub.subscribe().unwrap();
    let (recoverable, was_recovering, _, epoch, offset) = subscribed(&mut events).await;
    assert!(recoverable, "the dev config forces recovery");
    assert!(!was_recovering);
    assert!(!epoch.is_empty());
    assert_eq!(offset, 0);
    for i in 1..=3 {
        tokio::time::timeout(T, pub_client.publish("news", format!(r#"{{"n":{i}}}"#)))
            .await
            .unwrap()
            .unwrap();
    }
    for i in 1..=3u64 {
        let (offset, data) = publication(&mut events).await;
        assert_eq!(offset, i);
        assert_eq!(data, format!(r#"{{"n":{i}}}"#));
    }
    // Publications through the server API continue the same stream.
    assert_eq!(srv.publish("news", r#""api""#).await, 4);
    assert_eq!(publication(&mut events).await, (4, r#""api""#.to_owned()));
    srv.shutdown().await;
}

#[tokio::test]
async fn join_and_leave_pushes() {
    let srv = start(config()).await;
    let (a, _ae, _) = connected(&srv.ws_url(), client_config().token(token("ann"))).await;
    let (b, _be, b_id) = connected(&srv.ws_url(), client_config().token(token("bob"))).await;
    let (sa, mut sa_events) = a
        .new_subscription("room", SubscriptionConfig::default().join_leave(true))
        .unwrap();
    sa.subscribe().unwrap();
    subscribed(&mut sa_events).await;
    let (sb, mut sb_events) = b
        .new_subscription("room", SubscriptionConfig::default())
        .unwrap();
    sb.subscribe().unwrap();
    subscribed(&mut sb_events).await;
    let join = wait_for(&mut sa_events, |e| match e {
        SubscriptionEvent::Join(info) if info.user == "bob" => Some(info.clone()),
        _ => None,
    })
    .await;
    assert_eq!(join.client, b_id);
    sb.unsubscribe().unwrap();
    let leave = wait_for(&mut sa_events, |e| match e {
        SubscriptionEvent::Leave(info) => Some(info.clone()),
        SubscriptionEvent::Publication(p) => panic!("unexpected publication {p:?}"),
        _ => None,
    })
    .await;
    assert_eq!(
        (leave.user.as_str(), leave.client.as_str()),
        ("bob", b_id.as_str())
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn presence_and_presence_stats() {
    let srv = start(config()).await;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    // Two connections of one user and one of another.
    for user in ["u1", "u1", "u2"] {
        let (c, e, id) = connected(&srv.ws_url(), client_config().token(token(user))).await;
        let (s, mut se) = c
            .new_subscription("here", SubscriptionConfig::default())
            .unwrap();
        s.subscribe().unwrap();
        subscribed(&mut se).await;
        ids.push((id, user));
        clients.push((c, e, s, se));
    }
    let sub = &clients[0].2;
    let presence = tokio::time::timeout(T, sub.presence())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(presence.len(), 3);
    for (id, user) in &ids {
        let info = presence.get(id).expect("client present");
        assert_eq!(info.user, *user);
        assert_eq!(&info.client, id);
    }
    let stats = tokio::time::timeout(T, sub.presence_stats())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (3, 2));
    // One leaves: presence follows.
    clients[2].2.unsubscribe().unwrap();
    let mut stats = Default::default();
    for _ in 0..50 {
        stats = tokio::time::timeout(T, sub.presence_stats())
            .await
            .unwrap()
            .unwrap();
        if stats.num_clients == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!((stats.num_clients, stats.num_users), (2, 1));
    srv.shutdown().await;
}

#[tokio::test]
async fn history_with_limit_since_and_reverse() {
    let srv = start(config()).await;
    let (client, _e, _) = connected(&srv.ws_url(), client_config()).await;
    let (sub, mut events) = client
        .new_subscription("hist", SubscriptionConfig::default())
        .unwrap();
    sub.subscribe().unwrap();
    subscribed(&mut events).await;
    for i in 1..=5 {
        assert_eq!(srv.publish("hist", &i.to_string()).await, i);
    }
    macro_rules! offsets {
        ($h:expr) => {
            $h.publications
                .iter()
                .map(|p| p.offset)
                .collect::<Vec<u64>>()
        };
    }
    let history = |opts: HistoryOptions| {
        let sub = sub.clone();
        async move {
            tokio::time::timeout(T, sub.history(opts))
                .await
                .expect("history timed out")
                .expect("history failed")
        }
    };
    let all = history(HistoryOptions::default().limit(-1)).await;
    assert_eq!(offsets!(all), [1, 2, 3, 4, 5]);
    assert_eq!(all.offset, 5);
    assert!(!all.epoch.is_empty());
    assert_eq!(&all.publications[2].data[..], b"3");
    // limit 0: only the stream position.
    let top = history(HistoryOptions::default()).await;
    assert!(top.publications.is_empty());
    assert_eq!((top.offset, top.epoch.as_str()), (5, all.epoch.as_str()));
    // Oldest first, limited.
    let first = history(HistoryOptions::default().limit(2)).await;
    assert_eq!(offsets!(first), [1, 2]);
    // Newest first, limited.
    let last = history(HistoryOptions::default().limit(2).reverse(true)).await;
    assert_eq!(offsets!(last), [5, 4]);
    // After a position.
    let since = history(
        HistoryOptions::default()
            .limit(-1)
            .since(2, all.epoch.clone()),
    )
    .await;
    assert_eq!(offsets!(since), [3, 4, 5]);
    let since = history(
        HistoryOptions::default()
            .limit(2)
            .since(2, all.epoch.clone()),
    )
    .await;
    assert_eq!(offsets!(since), [3, 4]);
    // Before a position, newest first.
    let before = history(
        HistoryOptions::default()
            .limit(-1)
            .since(4, all.epoch.clone())
            .reverse(true),
    )
    .await;
    assert_eq!(offsets!(before), [3, 2, 1]);
    // A stale epoch: the position cannot be trusted.
    let stale = tokio::time::timeout(
        T,
        sub.history(HistoryOptions::default().limit(-1).since(2, "stale")),
    )
    .await
    .unwrap();
    assert_eq!(server_code(stale), 112);
    srv.shutdown().await;
}

#[tokio::test]
async fn publish_errors_and_rpc_not_available() {
    let srv = start(config()).await;
    let (client, _e, _) = connected(&srv.ws_url(), client_config().token(token("p"))).await;
    // Namespace `ro` exists but nobody may publish there.
    let r = tokio::time::timeout(T, client.publish("ro:x", "{}"))
        .await
        .unwrap();
    assert_eq!(server_code(r), 103, "permission denied");
    // No such namespace.
    let r = tokio::time::timeout(T, client.publish("nope:x", "{}"))
        .await
        .unwrap();
    assert_eq!(server_code(r), 102, "unknown channel");
    let r = tokio::time::timeout(T, client.history("nope:x", HistoryOptions::default()))
        .await
        .unwrap();
    assert_eq!(server_code(r), 102);
    // No RPC handler configured.
    let r = tokio::time::timeout(T, client.rpc("sum", "[1,2]"))
        .await
        .unwrap();
    assert_eq!(server_code(r), 108, "not available");
    // The connection survives the errors.
    tokio::time::timeout(T, client.publish("fine", "{}"))
        .await
        .unwrap()
        .unwrap();
    srv.shutdown().await;
}
