//! The client protocol over WebSocket: connect, subscribe, publish,
//! recovery, history, presence, errors and disconnects.

use std::time::Duration;

use bytes::Bytes;
use wshub_config::{ChannelNamespace, ChannelOptions, Config};
use wshub_hub::auth::generate_connection_token;
use wshub_protocol::{Command, ConnectRequest, Encoding, PublishRequest, SubscribeRequest};
use wshub_ws::ClientOptions;

use crate::support::{dev_config, start, Client};

fn jwt_config() -> Config {
    let mut c = dev_config();
    c.client.allow_anonymous_connect_without_token = false;
    c.client.token.hmac_secret_key = "test-secret".into();
    c
}

#[tokio::test]
async fn anonymous_connect_returns_client_id_and_ping_settings() {
    let srv = start(dev_config()).await;
    let mut c = Client::open(&srv.ws_url()).await;
    let r = c.call(r#""connect":{"name":"test"}"#).await;
    assert!(r.error.is_none(), "{r:?}");
    let res = r.connect.unwrap();
    assert_eq!(res.client.len(), 36);
    assert_eq!(res.ping, 25);
    assert!(res.pong);
    assert!(!res.version.is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn jwt_connect_sets_user_and_bad_or_missing_tokens_disconnect() {
    let srv = start(jwt_config()).await;
    let token = generate_connection_token(
        "test-secret",
        "42",
        Some(Duration::from_secs(3600)),
        None,
        &["news".to_owned()],
    )
    .unwrap();
    let mut c = Client::open(&srv.ws_url()).await;
    let r = c.call(&format!(r#""connect":{{"token":"{token}"}}"#)).await;
    let res = r.connect.expect("connect ok");
    assert!(res.expires);
    assert!(res.ttl > 3500 && res.ttl <= 3600, "{}", res.ttl);
    assert!(res.subs.contains_key("news"), "server-side subscription");
    // The server-side subscription delivers publications.
    srv.api("publish", r#"{"channel":"news","data":{"n":1}}"#)
        .await;
    let p = c.data_push().await;
    assert_eq!(p.channel, "news");
    assert_eq!(&p.publication.unwrap().data[..], br#"{"n":1}"#);
    let info = srv.api("presence", r#"{"channel":"news"}"#).await;
    let entry = info["result"]["presence"][&res.client].clone();
    assert_eq!(entry["user"], "42");

    let bad = generate_connection_token("other-secret", "42", None, None, &[]).unwrap();
    let mut c = Client::open(&srv.ws_url()).await;
    c.send_text(&format!(r#"{{"id":1,"connect":{{"token":"{bad}"}}}}"#))
        .await;
    assert_eq!(c.closed().await.0, 3500);

    let mut c = Client::open(&srv.ws_url()).await;
    c.send_text(r#"{"id":1,"connect":{}}"#).await;
    assert_eq!(c.closed().await.0, 3501, "no token, anonymous not allowed");
    srv.shutdown().await;
}

#[tokio::test]
async fn publication_from_one_client_reaches_another_with_offset() {
    let srv = start(dev_config()).await;
    let (mut a, _) = Client::connected(&srv.ws_url()).await;
    let (mut b, b_id) = Client::connected(&srv.ws_url()).await;
    let r = a.call(r#""subscribe":{"channel":"news"}"#).await;
    let sub = r.subscribe.expect("subscribed");
    assert!(sub.recoverable, "dev defaults force recovery");
    assert_eq!(sub.offset, 0);
    assert!(!sub.epoch.is_empty());
    let r = b
        .call(r#""publish":{"channel":"news","data":{"text":"hi"}}"#)
        .await;
    assert!(r.publish.is_some(), "{r:?}");
    let p = a.data_push().await;
    assert_eq!(p.channel, "news");
    let publication = p.publication.unwrap();
    assert_eq!(&publication.data[..], br#"{"text":"hi"}"#);
    assert_eq!(publication.offset, 1);
    assert_eq!(publication.info.unwrap().client, b_id);
    srv.shutdown().await;
}

#[tokio::test]
async fn reconnect_with_recover_gets_missed_publications_in_order() {
    let srv = start(dev_config()).await;
    let (mut a, _) = Client::connected(&srv.ws_url()).await;
    srv.api("publish", r#"{"channel":"feed","data":0}"#).await;
    let sub = a
        .call(r#""subscribe":{"channel":"feed","recoverable":true}"#)
        .await
        .subscribe
        .unwrap();
    assert_eq!(sub.offset, 1);
    let epoch = sub.epoch.clone();
    drop(a);
    for i in 1..=3 {
        let r = srv
            .api(
                "publish",
                &format!(r#"{{"channel":"feed","data":{{"i":{i}}}}}"#),
            )
            .await;
        assert_eq!(r["result"]["offset"], 1 + i);
        assert_eq!(r["result"]["epoch"], epoch.as_str());
    }
    let (mut a, _) = Client::connected(&srv.ws_url()).await;
    let sub = a
        .call(&format!(
            r#""subscribe":{{"channel":"feed","recover":true,"offset":1,"epoch":"{epoch}"}}"#
        ))
        .await
        .subscribe
        .unwrap();
    assert!(sub.recovered);
    assert!(sub.was_recovering);
    assert_eq!(sub.offset, 4);
    let got: Vec<(u64, String)> = sub
        .publications
        .iter()
        .map(|p| (p.offset, String::from_utf8_lossy(&p.data).into_owned()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, r#"{"i":1}"#.to_owned()),
            (3, r#"{"i":2}"#.to_owned()),
            (4, r#"{"i":3}"#.to_owned())
        ]
    );
    // A wrong epoch cannot be recovered: nothing, and recovered=false.
    let (mut b, _) = Client::connected(&srv.ws_url()).await;
    let sub = b
        .call(r#""subscribe":{"channel":"feed","recover":true,"offset":1,"epoch":"nope"}"#)
        .await
        .subscribe
        .unwrap();
    assert!(!sub.recovered);
    assert!(sub.publications.is_empty());
    srv.shutdown().await;
}

#[tokio::test]
async fn history_with_limit_and_reverse() {
    let srv = start(dev_config()).await;
    for i in 1..=5 {
        srv.api("publish", &format!(r#"{{"channel":"h","data":{i}}}"#))
            .await;
    }
    let (mut a, _) = Client::connected(&srv.ws_url()).await;
    a.call(r#""subscribe":{"channel":"h"}"#).await;
    let h = a
        .call(r#""history":{"channel":"h","limit":2}"#)
        .await
        .history
        .expect("history");
    assert_eq!(h.offset, 5);
    let offs: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offs, vec![1, 2]);
    let h = a
        .call(r#""history":{"channel":"h","limit":2,"reverse":true}"#)
        .await
        .history
        .unwrap();
    let offs: Vec<u64> = h.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offs, vec![5, 4]);
    let api = srv.api("history", r#"{"channel":"h","limit":-1}"#).await;
    assert_eq!(api["result"]["publications"].as_array().unwrap().len(), 5);
    assert_eq!(api["result"]["publications"][0]["data"], 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn presence_and_join_leave() {
    let srv = start(dev_config()).await;
    let (mut a, a_id) = Client::connected(&srv.ws_url()).await;
    let (mut b, b_id) = Client::connected(&srv.ws_url()).await;
    a.call(r#""subscribe":{"channel":"room","join_leave":true}"#)
        .await;
    b.call(r#""subscribe":{"channel":"room"}"#).await;
    let mut join = a.push().await;
    // a may see its own join first.
    if join.join.as_ref().unwrap().info.as_ref().unwrap().client == a_id {
        join = a.push().await;
    }
    assert_eq!(join.join.unwrap().info.unwrap().client, b_id);
    let p = a
        .call(r#""presence":{"channel":"room"}"#)
        .await
        .presence
        .unwrap();
    let mut ids: Vec<&String> = p.presence.keys().collect();
    ids.sort();
    let mut want = vec![&a_id, &b_id];
    want.sort();
    assert_eq!(ids, want);
    let s = a
        .call(r#""presence_stats":{"channel":"room"}"#)
        .await
        .presence_stats
        .unwrap();
    assert_eq!((s.num_clients, s.num_users), (2, 1));
    b.call(r#""unsubscribe":{"channel":"room"}"#).await;
    let leave = a.push().await;
    assert_eq!(leave.leave.unwrap().info.unwrap().client, b_id);
    srv.shutdown().await;
}

fn restricted_config() -> Config {
    let mut c = dev_config();
    let mut secret = ChannelOptions::default();
    secret.allow_subscribe_for_client = false;
    let mut open = ChannelOptions::default();
    open.allow_subscribe_for_client = true;
    open.allow_subscribe_for_anonymous = true;
    c.channel.namespaces = vec![
        ChannelNamespace::new("secret").with_options(secret),
        ChannelNamespace::new("open").with_options(open),
    ];
    c
}

#[tokio::test]
async fn channel_errors_unknown_denied_already_subscribed_limit() {
    let mut cfg = restricted_config();
    cfg.client.channel_limit = 2;
    let srv = start(cfg).await;
    let (mut a, _) = Client::connected(&srv.ws_url()).await;
    let e = a
        .call(r#""subscribe":{"channel":"nope:x"}"#)
        .await
        .error
        .unwrap();
    assert_eq!(e.code, 102);
    let e = a
        .call(r#""subscribe":{"channel":"secret:x"}"#)
        .await
        .error
        .unwrap();
    assert_eq!(e.code, 103);
    let e = a
        .call(r#""subscribe":{"channel":"$private"}"#)
        .await
        .error
        .unwrap();
    assert_eq!(e.code, 103, "private channel without a token");
    assert!(a
        .call(r#""subscribe":{"channel":"open:1"}"#)
        .await
        .error
        .is_none());
    let e = a
        .call(r#""subscribe":{"channel":"open:1"}"#)
        .await
        .error
        .unwrap();
    assert_eq!(e.code, 105);
    assert!(a
        .call(r#""subscribe":{"channel":"open:2"}"#)
        .await
        .error
        .is_none());
    let e = a
        .call(r#""subscribe":{"channel":"open:3"}"#)
        .await
        .error
        .unwrap();
    assert_eq!(e.code, 106);
    let e = a
        .call(r#""publish":{"channel":"open:1","data":{}}"#)
        .await
        .error
        .unwrap();
    assert_eq!(e.code, 103, "publish not allowed in the namespace");
    let e = a
        .call(r#""history":{"channel":"open:1"}"#)
        .await
        .error
        .unwrap();
    assert_eq!(e.code, 108, "no history in the namespace");
    let e = a
        .call(r#""rpc":{"method":"x","data":{}}"#)
        .await
        .error
        .unwrap();
    assert_eq!(e.code, 108);
    srv.shutdown().await;
}

#[tokio::test]
async fn user_limited_channel_admits_only_listed_users() {
    let srv = start(jwt_config()).await;
    let token = generate_connection_token("test-secret", "7", None, None, &[]).unwrap();
    let mut c = Client::open(&srv.ws_url()).await;
    c.call(&format!(r#""connect":{{"token":"{token}"}}"#)).await;
    assert!(c
        .call(r#""subscribe":{"channel":"dm#7,8"}"#)
        .await
        .error
        .is_none());
    let e = c
        .call(r#""subscribe":{"channel":"dm#8,9"}"#)
        .await
        .error
        .unwrap();
    assert_eq!(e.code, 103);
    srv.shutdown().await;
}

#[tokio::test]
async fn malformed_json_and_commands_before_connect_disconnect_3501() {
    let srv = start(dev_config()).await;
    let mut c = Client::open(&srv.ws_url()).await;
    c.send_text("{not json").await;
    assert_eq!(c.closed().await.0, 3501);
    let mut c = Client::open(&srv.ws_url()).await;
    c.send_text(r#"{"id":1,"subscribe":{"channel":"x"}}"#).await;
    assert_eq!(c.closed().await.0, 3501);
    // Protobuf: a length prefix longer than the frame, then a body that is
    // not a Command.
    let opts = ClientOptions::default().subprotocols(["centrifuge-protobuf"]);
    for bad in [&b"\x0a\x08\x01"[..], b"\x03\xff\xff\xff"] {
        let mut c = Client::open_with(&srv.ws_url(), opts.clone(), Encoding::Protobuf).await;
        c.ws.send_binary(bad).await.unwrap();
        assert_eq!(c.closed().await.0, 3501, "{bad:02x?}");
    }
    // Another client on the node is unaffected.
    let (mut ok, _) = Client::connected(&srv.ws_url()).await;
    assert!(ok
        .call(r#""subscribe":{"channel":"x"}"#)
        .await
        .error
        .is_none());
    srv.shutdown().await;
}

#[tokio::test]
async fn missing_pong_disconnects_3012() {
    let mut cfg = dev_config();
    cfg.client.ping_interval = Duration::from_millis(200).into();
    cfg.client.pong_timeout = Duration::from_millis(200).into();
    let srv = start(cfg).await;
    let mut c = Client::open(&srv.ws_url()).await;
    let r = c.call(r#""connect":{}"#).await;
    assert_eq!(
        r.connect.unwrap().ping,
        0,
        "sub-second interval rounds down"
    );
    // Answering pings keeps the connection: answer two, then stop.
    for _ in 0..2 {
        let msg = tokio::time::timeout(crate::support::T, c.ws.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(msg.as_bytes(), b"{}");
        c.send_text("{}").await;
    }
    assert_eq!(c.closed().await.0, 3012);
    srv.shutdown().await;
}

#[tokio::test]
async fn protobuf_connect_subscribe_publish_round_trip() {
    let srv = start(dev_config()).await;
    let opts = ClientOptions::default().subprotocols(["centrifuge-protobuf"]);
    let mut c = Client::open_with(&srv.ws_url(), opts, Encoding::Protobuf).await;
    let url = format!("{}?format=protobuf", srv.ws_url());
    let mut d = Client::open_with(&url, ClientOptions::default(), Encoding::Protobuf).await;
    for cl in [&mut c, &mut d] {
        let id = cl.next_id();
        cl.send_commands(&[Command {
            id,
            connect: Some(ConnectRequest::default()),
            ..Default::default()
        }])
        .await;
        assert!(cl.reply(id).await.connect.is_some());
    }
    let id = c.next_id();
    c.send_commands(&[Command {
        id,
        subscribe: Some(SubscribeRequest {
            channel: "bin".into(),
            ..Default::default()
        }),
        ..Default::default()
    }])
    .await;
    assert!(c.reply(id).await.subscribe.is_some());
    let id = d.next_id();
    d.send_commands(&[Command {
        id,
        publish: Some(PublishRequest {
            channel: "bin".into(),
            data: Bytes::from_static(b"\x00\x01binary"),
            ..Default::default()
        }),
        ..Default::default()
    }])
    .await;
    assert!(d.reply(id).await.publish.is_some());
    let p = c.data_push().await.publication.unwrap();
    assert_eq!(&p.data[..], b"\x00\x01binary");
    assert_eq!(p.offset, 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn origin_is_checked_against_allowed_origins() {
    let mut cfg = dev_config();
    cfg.client.allowed_origins = vec!["https://ok.example".into()];
    let srv = start(cfg).await;
    let with_origin = |o: &str| {
        ClientOptions::default()
            .handshake(wshub_ws::proto::handshake::ClientOptions::default().origin(o.to_owned()))
    };
    let url = srv.ws_url();
    let evil = with_origin("https://evil.example");
    let bad = wshub_ws::connect(&url, &evil);
    let bad = tokio::time::timeout(crate::support::T, bad).await.unwrap();
    let Err(err) = bad else {
        panic!("origin should be refused")
    };
    assert!(err.to_string().contains("403"), "{err}");
    let good = with_origin("https://ok.example");
    let ok = wshub_ws::connect(&url, &good);
    assert!(tokio::time::timeout(crate::support::T, ok)
        .await
        .unwrap()
        .is_ok());
    srv.shutdown().await;
}

#[tokio::test]
async fn shutdown_disconnects_clients_with_3001() {
    let srv = start(dev_config()).await;
    let (mut a, _) = Client::connected(&srv.ws_url()).await;
    let url = srv.ws_url();
    let stop = tokio::spawn(srv.shutdown());
    assert_eq!(a.closed().await.0, 3001);
    stop.await.unwrap();
    // Nothing listens any more.
    let r = tokio::time::timeout(
        crate::support::T,
        wshub_ws::connect(&url, &ClientOptions::default()),
    )
    .await
    .unwrap();
    assert!(r.is_err());
}

#[tokio::test]
async fn slow_consumer_is_disconnected_3008_and_counted() {
    let mut cfg = dev_config();
    cfg.client.queue_max_size = 256 * 1024;
    let srv = start(cfg).await;
    let (mut slow, _) = Client::connected(&srv.ws_url()).await;
    slow.call(r#""subscribe":{"channel":"firehose"}"#).await;
    // The client stops reading; the server keeps publishing until the
    // socket buffers and the session queue are full.
    let big = format!(
        r#"{{"channel":"firehose","data":"{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let mut cut = false;
    for _ in 0..2000 {
        srv.api("publish", &big).await;
        if srv.node.metrics().slow_disconnects() > 0 {
            cut = true;
            break;
        }
    }
    assert!(cut, "never cut off");
    // Reading now drains what was written before the cut, then the close.
    let mut code = 0;
    loop {
        match tokio::time::timeout(crate::support::T, slow.ws.recv()).await {
            Ok(Some(Ok(_))) => continue,
            _ => {
                if let Some((Some(c), _)) = slow.ws.close_info() {
                    code = c.0;
                }
                break;
            }
        }
    }
    assert_eq!(code, 3008);
    srv.shutdown().await;
}

#[tokio::test]
async fn expired_credentials_disconnect_3005_unless_refreshed() {
    let mut cfg = jwt_config();
    cfg.client.expired_close_delay = Duration::ZERO.into();
    let srv = start(cfg).await;
    let short =
        generate_connection_token("test-secret", "9", Some(Duration::from_secs(1)), None, &[])
            .unwrap();
    let mut c = Client::open(&srv.ws_url()).await;
    let res = c
        .call(&format!(r#""connect":{{"token":"{short}"}}"#))
        .await
        .connect
        .unwrap();
    assert!(res.expires && res.ttl <= 1);
    // A second client refreshes in time and stays.
    let mut d = Client::open(&srv.ws_url()).await;
    d.call(&format!(r#""connect":{{"token":"{short}"}}"#)).await;
    let long =
        generate_connection_token("test-secret", "9", Some(Duration::from_secs(60)), None, &[])
            .unwrap();
    let r = d.call(&format!(r#""refresh":{{"token":"{long}"}}"#)).await;
    let refreshed = r.refresh.expect("refresh result");
    assert!(refreshed.expires && refreshed.ttl > 50);
    assert_eq!(c.closed().await.0, 3005);
    // d is still served.
    assert!(d
        .call(r#""subscribe":{"channel":"x"}"#)
        .await
        .error
        .is_none());
    srv.shutdown().await;
}

#[tokio::test]
async fn connection_limit_per_user_disconnects_3504() {
    let mut cfg = jwt_config();
    cfg.client.user_connection_limit = 1;
    let srv = start(cfg).await;
    let token = generate_connection_token("test-secret", "u", None, None, &[]).unwrap();
    let mut a = Client::open(&srv.ws_url()).await;
    assert!(a
        .call(&format!(r#""connect":{{"token":"{token}"}}"#))
        .await
        .connect
        .is_some());
    let mut b = Client::open(&srv.ws_url()).await;
    b.send_text(&format!(r#"{{"id":1,"connect":{{"token":"{token}"}}}}"#))
        .await;
    assert_eq!(b.closed().await.0, 3504);
    srv.shutdown().await;
}

#[tokio::test]
async fn permessage_deflate_with_shared_uncompressed_broadcast_frames() {
    let mut cfg = dev_config();
    cfg.websocket.compression = true;
    let srv = start(cfg).await;
    let opts = ClientOptions::default().deflate(Some(wshub_ws::DeflateConfig::default()));
    let mut a = Client::open_with(&srv.ws_url(), opts, Encoding::Json).await;
    assert!(a.ws.deflate().is_some(), "deflate negotiated");
    a.call(r#""connect":{}"#).await;
    a.call(r#""subscribe":{"channel":"z"}"#).await;
    let big = format!(r#"{{"channel":"z","data":"{}"}}"#, "y".repeat(10_000));
    srv.api("publish", &big).await;
    let p = a.data_push().await.publication.unwrap();
    assert_eq!(p.data.len(), 10_002);
    let h = a
        .call(r#""history":{"channel":"z","limit":1}"#)
        .await
        .history
        .unwrap();
    assert_eq!(h.publications.len(), 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn private_channel_with_subscription_token() {
    let srv = start(jwt_config()).await;
    let token = generate_connection_token("test-secret", "5", None, None, &[]).unwrap();
    let mut c = Client::open(&srv.ws_url()).await;
    c.call(&format!(r#""connect":{{"token":"{token}"}}"#)).await;
    let sub = wshub_hub::auth::generate_subscription_token(
        "test-secret",
        "5",
        "$vip",
        Some(Duration::from_secs(600)),
        None,
    )
    .unwrap();
    let r = c
        .call(&format!(
            r#""subscribe":{{"channel":"$vip","token":"{sub}"}}"#
        ))
        .await;
    let res = r.subscribe.expect("subscribed with a token");
    assert!(res.expires && res.ttl > 500);
    // A token for another channel is a forged attempt: disconnect 3500.
    c.send_text(&format!(
        r#"{{"id":99,"subscribe":{{"channel":"$other","token":"{sub}"}}}}"#
    ))
    .await;
    assert_eq!(c.closed().await.0, 3500);
    srv.shutdown().await;
}

#[tokio::test]
async fn unknown_method_gets_error_104_and_the_connection_stays() {
    let srv = start(dev_config()).await;
    let (mut c, _) = Client::connected(&srv.ws_url()).await;
    let r = c.call(r#""frobnicate":{"x":1}"#).await;
    assert_eq!(r.error.expect("an error").code, 104, "method not found");
    assert!(c
        .call(r#""subscribe":{"channel":"x"}"#)
        .await
        .error
        .is_none());
    srv.shutdown().await;
}
