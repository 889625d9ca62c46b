//! Commands: replies matched by id, errors, timeouts, queuing.

use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use wshub_client::{ClientEvent, Encoding, Error, ErrorCode, HistoryOptions};
use wshub_protocol::{HistoryResult, PresenceStatsResult, Publication, Push, Reply, RpcResult};

use crate::fake::{config, connect_result, until, wait_connected, FakeServer};

async fn concurrent(encoding: Encoding) {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config().encoding(encoding));
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;

    let mut calls = JoinSet::new();
    for i in 0..20 {
        let client = client.clone();
        calls.spawn(async move {
            let data = client
                .rpc(format!("m{i}"), Bytes::from(format!("{i}")))
                .await
                .unwrap();
            (i, data)
        });
    }
    let mut cmds = Vec::new();
    for _ in 0..20 {
        cmds.push(conn.command().await);
    }
    let mut ids: Vec<u32> = cmds.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20, "every command has its own id");
    assert!(!ids.contains(&0));
    // Answer in reverse order, several per frame.
    let replies: Vec<Reply> = cmds
        .iter()
        .rev()
        .map(|c| {
            let rpc = c.rpc.as_ref().unwrap();
            Reply {
                id: c.id,
                rpc: Some(RpcResult {
                    data: Bytes::from(format!(
                        "\"{}:{}\"",
                        rpc.method,
                        String::from_utf8_lossy(&rpc.data)
                    )),
                }),
                ..Reply::default()
            }
        })
        .collect();
    conn.replies(&replies[..7]).await;
    conn.replies(&replies[7..]).await;
    while let Some(r) = calls.join_next().await {
        let (i, data) = r.unwrap();
        assert_eq!(&data[..], format!("\"m{i}:{i}\"").as_bytes());
    }
}

#[tokio::test]
async fn concurrent_commands_are_matched_by_id_json() {
    concurrent(Encoding::Json).await;
}

#[tokio::test]
async fn concurrent_commands_are_matched_by_id_protobuf() {
    concurrent(Encoding::Protobuf).await;
}

#[tokio::test]
async fn server_errors_timeouts_and_reads() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config().timeout(Duration::from_millis(300)));
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;

    // An error reply.
    let c = client.clone();
    let call = tokio::spawn(async move { c.publish("news", Bytes::from_static(b"1")).await });
    let cmd = conn.command().await;
    assert_eq!(cmd.publish.as_ref().unwrap().channel, "news");
    conn.reply(Reply::error(cmd.id, ErrorCode::PERMISSION_DENIED))
        .await;
    match call.await.unwrap() {
        Err(Error::Server { code: 103, .. }) => {}
        r => panic!("{r:?}"),
    }

    // No reply: a timeout; a late reply is ignored.
    let r = client.presence_stats("news").await;
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    let late = conn.command().await;
    conn.reply(Reply {
        id: late.id,
        presence_stats: Some(PresenceStatsResult::default()),
        ..Reply::default()
    })
    .await;

    // History with options.
    let c = client.clone();
    let call = tokio::spawn(async move {
        c.history(
            "news",
            HistoryOptions::default()
                .limit(10)
                .since(3, "ep")
                .reverse(true),
        )
        .await
    });
    let cmd = conn.command().await;
    let h = cmd.history.clone().unwrap();
    assert_eq!((h.limit, h.reverse), (10, true));
    let since = h.since.unwrap();
    assert_eq!((since.offset, since.epoch.as_str()), (3, "ep"));
    conn.reply(Reply {
        id: cmd.id,
        history: Some(HistoryResult {
            publications: vec![Publication {
                offset: 4,
                data: Bytes::from_static(b"4"),
                ..Publication::default()
            }],
            epoch: "ep".into(),
            offset: 4,
        }),
        ..Reply::default()
    })
    .await;
    let h = call.await.unwrap().unwrap();
    assert_eq!((h.offset, h.publications.len()), (4, 1));
}

#[tokio::test]
async fn calls_fail_when_disconnected_and_wait_while_connecting() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    assert!(matches!(
        client.rpc("m", Bytes::new()).await,
        Err(Error::Disconnected)
    ));

    client.connect().unwrap();
    let c = client.clone();
    let call = tokio::spawn(async move { c.rpc("m", Bytes::new()).await });
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    let cmd = conn.command().await;
    assert_eq!(cmd.rpc.as_ref().unwrap().method, "m");
    conn.reply(Reply {
        id: cmd.id,
        rpc: Some(RpcResult {
            data: Bytes::from_static(b"true"),
        }),
        ..Reply::default()
    })
    .await;
    assert_eq!(&call.await.unwrap().unwrap()[..], b"true");
    wait_connected(&mut events).await;
}

#[tokio::test]
async fn send_and_server_messages() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    client
        .send(Bytes::from_static(br#"{"hi":1}"#))
        .await
        .unwrap();
    let cmd = conn.command().await;
    assert_eq!(cmd.id, 0, "send has no id");
    assert_eq!(&cmd.send.unwrap().data[..], br#"{"hi":1}"#);

    conn.push(Push::message(Bytes::from_static(b"\"yo\"")))
        .await;
    let m = until(&mut events, |e| match e {
        ClientEvent::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(&m[..], b"\"yo\"");

    // A payload that is not JSON cannot go on a JSON connection.
    let r = client.rpc("m", Bytes::from_static(b"\xff")).await;
    assert!(matches!(r, Err(Error::Encode(_))), "{r:?}");
    // The connection is still fine.
    client.send(Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(&conn.command().await.send.unwrap().data[..], b"1");
}

#[tokio::test]
async fn a_cancelled_call_does_not_confuse_later_replies() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config());
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;

    // The caller gives up (a slow server), the reply comes later.
    let gave_up =
        tokio::time::timeout(Duration::from_millis(50), client.rpc("slow", Bytes::new())).await;
    assert!(gave_up.is_err());
    let slow = conn.command().await;
    let c = client.clone();
    let next_call = tokio::spawn(async move { c.rpc("fast", Bytes::new()).await });
    let fast = conn.command().await;
    let reply = |id, data: &'static [u8]| Reply {
        id,
        rpc: Some(RpcResult {
            data: Bytes::from_static(data),
        }),
        ..Reply::default()
    };
    conn.replies(&[reply(slow.id, b"\"slow\""), reply(fast.id, b"\"fast\"")])
        .await;
    assert_eq!(&next_call.await.unwrap().unwrap()[..], b"\"fast\"");
}

#[tokio::test]
async fn a_slow_reading_server_gets_every_command_in_order() {
    let mut server = FakeServer::start().await;
    let (client, mut events) = server.client(config().timeout(Duration::from_secs(10)));
    client.connect().unwrap();
    let (mut conn, _) = server.connected(connect_result("c1")).await;
    wait_connected(&mut events).await;

    let payload = "x".repeat(4000);
    let sender = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..1000 {
                let data = format!("[{i},\"{payload}\"]");
                client.send(Bytes::from(data)).await.unwrap();
            }
        })
    };
    // The server does not read for a while: 4 MB pile up in buffers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..1000 {
        let cmd = conn.command().await;
        let data = cmd.send.expect("a send command").data;
        assert!(
            data.starts_with(format!("[{i},").as_bytes()),
            "command {i} out of order"
        );
    }
    sender.await.unwrap();
}
