//! Our client against our server: messages of every size, with and without
//! permessage-deflate, and subprotocol negotiation.

use wshub_ws::{connect, ClientOptions, CloseCode, DeflateConfig, Message, ServerOptions};

use crate::util::{echo_server, payload, text, within};

fn messages() -> Vec<Message> {
    vec![
        Message::Text("hello".into()),
        Message::Text(String::new().into()),
        Message::Binary(Vec::new().into()),
        Message::Binary(payload(300, 1).into()),
        Message::Text(text(70_000).into()),
        Message::Binary(payload(1 << 20, 2).into()),
        Message::Text(text(1 << 20).into()),
        Message::Binary(vec![b'a'; 1 << 20].into()),
    ]
}

async fn round_trip(server: ServerOptions, client: ClientOptions, deflate: bool) {
    let addr = echo_server(server).await;
    let mut ws = within(connect(&format!("ws://{addr}/echo?x=1"), &client))
        .await
        .unwrap();
    assert_eq!(ws.deflate().is_some(), deflate);
    for m in messages() {
        within(ws.send(m.clone())).await.unwrap();
        let got = within(ws.recv()).await.unwrap().unwrap();
        assert_eq!(got, m, "message of {} bytes", m.len());
    }
    // Pipelined: feed many, flush once, then read them all back.
    for i in 0..100u32 {
        ws.feed(Message::Binary(payload(i as usize * 10, i.into()).into()))
            .unwrap();
    }
    within(ws.flush()).await.unwrap();
    for i in 0..100u32 {
        let got = within(ws.recv()).await.unwrap().unwrap();
        assert_eq!(got.as_bytes(), &payload(i as usize * 10, i.into())[..]);
    }
    within(ws.send_text("text")).await.unwrap();
    within(ws.send_binary(b"bin")).await.unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap().unwrap(),
        Message::Text("text".into())
    );
    assert_eq!(
        within(ws.recv()).await.unwrap().unwrap(),
        Message::Binary(b"bin"[..].into())
    );
    within(ws.close(CloseCode::NORMAL, "done")).await.unwrap();
    assert!(within(ws.recv()).await.is_none());
}

#[tokio::test]
async fn echo_plain() {
    round_trip(ServerOptions::default(), ClientOptions::default(), false).await;
}

#[tokio::test]
async fn echo_deflate() {
    round_trip(
        ServerOptions::default().deflate(Some(DeflateConfig::default())),
        ClientOptions::default().deflate(Some(DeflateConfig::default())),
        true,
    )
    .await;
}

#[tokio::test]
async fn echo_deflate_no_context_takeover() {
    let cfg = DeflateConfig::default()
        .client_no_context_takeover(true)
        .server_no_context_takeover(true)
        .client_max_window_bits(10);
    round_trip(
        ServerOptions::default().deflate(Some(DeflateConfig::default())),
        ClientOptions::default().deflate(Some(cfg)),
        true,
    )
    .await;
}

#[tokio::test]
async fn deflate_declined_by_server() {
    round_trip(
        ServerOptions::default(),
        ClientOptions::default().deflate(Some(DeflateConfig::default())),
        false,
    )
    .await;
}

#[tokio::test]
async fn subprotocol_negotiation() {
    let addr = echo_server(ServerOptions::default().subprotocols(["v2.wshub", "v1.wshub"])).await;
    let url = format!("ws://{addr}/");

    // The server's preference wins among the client's offers.
    let opts = ClientOptions::default().subprotocols(["v1.wshub", "v2.wshub"]);
    let ws = within(connect(&url, &opts)).await.unwrap();
    assert_eq!(ws.protocol(), Some("v2.wshub"));

    let opts = ClientOptions::default().subprotocols(["v1.wshub"]);
    let ws = within(connect(&url, &opts)).await.unwrap();
    assert_eq!(ws.protocol(), Some("v1.wshub"));

    // No overlap: no subprotocol, the connection still works.
    let opts = ClientOptions::default().subprotocols(["mqtt"]);
    let mut ws = within(connect(&url, &opts)).await.unwrap();
    assert_eq!(ws.protocol(), None);
    within(ws.send_text("still works")).await.unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap().unwrap(),
        Message::Text("still works".into())
    );
}

#[tokio::test]
async fn server_sees_subprotocol_and_path() {
    let (l, addr) = crate::util::listener().await;
    let server = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        let opts = ServerOptions::default().subprotocols(["chat"]);
        let mut path = String::new();
        let ws = wshub_ws::accept_with(tcp, &opts, |head| {
            path = head.path().to_owned();
            Ok(())
        })
        .await
        .unwrap();
        (ws.protocol().map(str::to_owned), path)
    });
    let opts = ClientOptions::default().subprotocols(["chat"]);
    let ws = within(connect(
        &format!("ws://{addr}/room/1?token=abc#frag"),
        &opts,
    ))
    .await
    .unwrap();
    assert_eq!(ws.protocol(), Some("chat"));
    let (proto, path) = within(server).await.unwrap();
    assert_eq!(proto.as_deref(), Some("chat"));
    assert_eq!(path, "/room/1?token=abc");
}

#[tokio::test]
async fn from_connection_over_a_pipe_with_try_recv_and_shared_frames() {
    use wshub_ws::proto::{encode_frame, Connection, OpCode, Role};
    use wshub_ws::{Config, WebSocket};

    let (a, b) = tokio::io::duplex(64 * 1024);
    let mut server = WebSocket::from_connection(
        a,
        Connection::new(Role::Server, Config::default(), None),
        &[],
    );
    // Bytes read past the handshake belong to the connection: an
    // (unmasked) server frame "hi" handed over as leftover.
    let mut client = WebSocket::from_connection(
        b,
        Connection::new(Role::Client, Config::default(), None),
        b"\x81\x02hi",
    );
    assert_eq!(
        within(client.recv()).await.unwrap().unwrap(),
        Message::Text("hi".into())
    );

    // A burst fed and flushed at once: one recv, then the rest without I/O.
    for i in 0..10 {
        client.feed(Message::Text(format!("m{i}").into())).unwrap();
    }
    within(client.flush()).await.unwrap();
    let mut got = vec![within(server.recv()).await.unwrap().unwrap()];
    while let Some(m) = server.try_recv() {
        got.push(m.unwrap());
    }
    let want: Vec<Message> = (0..10)
        .map(|i| Message::Text(format!("m{i}").into()))
        .collect();
    assert_eq!(got, want);
    assert!(server.try_recv().is_none());

    // One encoded frame, shared by reference.
    let frame = encode_frame(OpCode::Binary, &payload(5000, 4));
    within(server.send_encoded(frame.clone())).await.unwrap();
    server.feed_encoded(frame).unwrap();
    within(server.flush()).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            within(client.recv()).await.unwrap().unwrap(),
            Message::Binary(payload(5000, 4).into())
        );
    }
}
