//! Recovery after the server drops the connection: every missed
//! publication exactly once, or an explicit "unrecovered".

use std::time::Duration;

use wshub_client::{ClientEvent, SubscriptionConfig, SubscriptionEvent};

use crate::support::{
    assert_no_publications, client_config, config, connected, publication, start, subscribed,
    token, wait_for, TestServer,
};

/// Tells the server to drop `user`'s connections with 3011 (force
/// reconnect: a code the client reconnects after) and waits until the
/// client has noticed.
async fn force_reconnect(
    srv: &TestServer,
    user: &str,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<ClientEvent>,
) {
    srv.api(
        "disconnect",
        &format!(r#"{{"user":"{user}","disconnect":{{"code":3011,"reason":"force reconnect"}}}}"#),
    )
    .await;
    let code = wait_for(events, |e| match e {
        ClientEvent::Connecting { code, .. } => Some(*code),
        ClientEvent::Disconnected { code, reason } => {
            panic!("gave up after {code} {reason}")
        }
        _ => None,
    })
    .await;
    assert_eq!(code, 3011);
}

/// The client reconnects after exactly `delay`: long enough for the test
/// to publish while it is away.
fn slow_reconnect(user: &str, delay: Duration) -> wshub_client::ClientConfig {
    client_config()
        .token(token(user))
        .min_reconnect_delay(delay)
        .max_reconnect_delay(delay)
}

#[tokio::test]
async fn missed_publications_are_recovered_in_order_without_duplicates() {
    let srv = start(config()).await;
    let (client, mut events, first_id) =
        connected(&srv.ws_url(), slow_reconnect("rec", Duration::from_secs(1))).await;
    let (sub, mut sub_events) = client
        .new_subscription("feed", SubscriptionConfig::default().recoverable(true))
        .unwrap();
    sub.subscribe().unwrap();
    let (recoverable, was_recovering, _, epoch, _) = subscribed(&mut sub_events).await;
    assert!(recoverable && !was_recovering);
    for i in 1..=2u64 {
        assert_eq!(srv.publish("feed", &format!(r#"{{"n":{i}}}"#)).await, i);
        assert_eq!(
            publication(&mut sub_events).await,
            (i, format!(r#"{{"n":{i}}}"#))
        );
    }

    force_reconnect(&srv, "rec", &mut events).await;
    let code = wait_for(&mut sub_events, |e| match e {
        SubscriptionEvent::Subscribing { code, .. } => Some(*code),
        other => panic!("expected subscribing, got {other:?}"),
    })
    .await;
    assert_eq!(code, 3011);
    // Published while the client is away (it reconnects after 1 s).
    for i in 3..=5u64 {
        assert_eq!(srv.publish("feed", &format!(r#"{{"n":{i}}}"#)).await, i);
    }

    let second_id = wait_for(&mut events, |e| match e {
        ClientEvent::Connected { client_id, .. } => Some(client_id.clone()),
        _ => None,
    })
    .await;
    assert_ne!(first_id, second_id, "a new connection");
    let (recoverable, was_recovering, recovered, new_epoch, offset) =
        subscribed(&mut sub_events).await;
    assert!(recoverable);
    assert!(was_recovering, "the resubscribe asked to recover");
    assert!(recovered, "every missed publication is still in history");
    assert_eq!(new_epoch, epoch);
    assert_eq!(offset, 5);
    for i in 3..=5u64 {
        assert_eq!(
            publication(&mut sub_events).await,
            (i, format!(r#"{{"n":{i}}}"#))
        );
    }
    assert_no_publications(&mut sub_events, Duration::from_millis(300)).await;
    // Live publications continue the stream, once each.
    assert_eq!(srv.publish("feed", r#"{"n":6}"#).await, 6);
    assert_eq!(
        publication(&mut sub_events).await,
        (6, r#"{"n":6}"#.to_owned())
    );
    assert_no_publications(&mut sub_events, Duration::from_millis(200)).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn lost_history_is_reported_as_unrecovered() {
    let srv = start(config()).await;
    let (client, mut events, _) = connected(
        &srv.ws_url(),
        slow_reconnect("lost", Duration::from_secs(1)),
    )
    .await;
    // `short:` keeps only the 2 newest publications.
    let (sub, mut sub_events) = client
        .new_subscription(
            "short:feed",
            SubscriptionConfig::default().recoverable(true),
        )
        .unwrap();
    sub.subscribe().unwrap();
    let (recoverable, _, _, epoch, _) = subscribed(&mut sub_events).await;
    assert!(recoverable);
    assert_eq!(srv.publish("short:feed", "1").await, 1);
    assert_eq!(publication(&mut sub_events).await, (1, "1".to_owned()));

    force_reconnect(&srv, "lost", &mut events).await;
    // 5 publications while away: offsets 2..=6, history keeps 5 and 6.
    for i in 2..=6u64 {
        assert_eq!(srv.publish("short:feed", &i.to_string()).await, i);
    }

    let (_, was_recovering, recovered, new_epoch, offset) = subscribed(&mut sub_events).await;
    assert!(was_recovering);
    assert!(!recovered, "publications 2..=4 are gone");
    assert_eq!(new_epoch, epoch);
    assert_eq!(offset, 6);
    let (lost_offset, lost_epoch) = wait_for(&mut sub_events, |e| match e {
        SubscriptionEvent::Unrecovered { offset, epoch } => Some((*offset, epoch.clone())),
        SubscriptionEvent::Publication(p) => {
            panic!("publication {p:?} before the unrecovered event")
        }
        _ => None,
    })
    .await;
    assert_eq!((lost_offset, lost_epoch.as_str()), (1, epoch.as_str()));
    // Whatever the server still had may follow; then live publications,
    // in order and never twice.
    assert_eq!(srv.publish("short:feed", "7").await, 7);
    let mut seen = Vec::new();
    loop {
        let (offset, _) = publication(&mut sub_events).await;
        assert!(offset > 1, "publication {offset} was delivered before");
        assert!(
            seen.last().is_none_or(|&l| offset > l),
            "{seen:?} then {offset}"
        );
        seen.push(offset);
        if offset == 7 {
            break;
        }
    }
    assert_no_publications(&mut sub_events, Duration::from_millis(200)).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn recovery_under_a_steady_stream_has_no_gap_and_no_duplicate() {
    let srv = start(config()).await;
    let user = "steady";
    let cfg = client_config()
        .token(token(user))
        .min_reconnect_delay(Duration::from_millis(20))
        .max_reconnect_delay(Duration::from_millis(60));
    let (client, mut events, _) = connected(&srv.ws_url(), cfg).await;
    let (sub, mut sub_events) = client
        .new_subscription("stream", SubscriptionConfig::default().recoverable(true))
        .unwrap();
    sub.subscribe().unwrap();
    subscribed(&mut sub_events).await;

    // A publisher that keeps going while the connection is dropped twice:
    // some publications land while the client is away, some while it
    // resubscribes, some after.
    const N: u64 = 120;
    let srv = std::sync::Arc::new(srv);
    let publisher = {
        let srv = srv.clone();
        tokio::spawn(async move {
            for i in 1..=N {
                assert_eq!(srv.publish("stream", &i.to_string()).await, i);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let mut reconnects = 0;
    let mut delivered = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while delivered.last().copied() != Some(N) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck after {delivered:?}"
        );
        if reconnects < 2 && delivered.len() as u64 >= 30 * (reconnects + 1) {
            reconnects += 1;
            force_reconnect(&srv, user, &mut events).await;
        }
        match crate::support::next(&mut sub_events).await {
            SubscriptionEvent::Publication(p) => {
                assert_eq!(String::from_utf8_lossy(&p.data), p.offset.to_string());
                delivered.push(p.offset);
            }
            SubscriptionEvent::Subscribed {
                was_recovering,
                recovered,
                ..
            } => {
                assert!(was_recovering && recovered, "recovered: {recovered}");
            }
            SubscriptionEvent::Unrecovered { offset, .. } => {
                panic!("unrecovered at {offset}, history holds 100")
            }
            _ => {}
        }
    }
    assert_eq!(reconnects, 2);
    assert_eq!(
        delivered,
        (1..=N).collect::<Vec<_>>(),
        "in order, once each"
    );
    tokio::time::timeout(crate::support::T, publisher)
        .await
        .unwrap()
        .unwrap();
    assert_no_publications(&mut sub_events, Duration::from_millis(200)).await;
}
