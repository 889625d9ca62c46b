//! WebSockets over HTTP/3 (RFC 9220): our server and our client over QUIC
//! on 127.0.0.1, with a self-signed certificate made by rcgen; raw QUIC
//! streams for what our client will not send; a hand-made QUIC Initial for
//! the handshake timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use wshub_ws::{
    bind_http3, http3_tls_config_from_pem, reject, serve_http3_with, ClientOptions, CloseCode,
    Config, DeflateConfig, Http3Client, Http3Connection, Http3Options, Http3Request,
    Http3WebSocket, Message, Options, RequestHead, ServerOptions, TlsOptions, WsError,
};

use crate::util::{payload, text, within};

type Closes = mpsc::UnboundedReceiver<Option<(Option<CloseCode>, String)>>;

struct Server {
    addr: SocketAddr,
    cert: String,
    /// What each server-side WebSocket saw in its peer's close frame.
    closes: Closes,
}

impl Server {
    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// A client trusting the server's certificate, offering `echo` and
    /// permessage-deflate.
    fn client_opts(&self) -> ClientOptions {
        ClientOptions::default()
            .subprotocols(["echo"])
            .deflate(Some(DeflateConfig::default()))
            .tls(
                TlsOptions::default()
                    .use_native_roots(false)
                    .extra_ca_pem(self.cert.clone().into_bytes()),
            )
    }

    fn plain_opts(&self) -> ClientOptions {
        ClientOptions::default().tls(
            TlsOptions::default()
                .use_native_roots(false)
                .extra_ca_pem(self.cert.clone().into_bytes()),
        )
    }

    async fn client(&self) -> Http3Client {
        within(Http3Client::connect(
            &self.url(),
            &self.client_opts(),
            &Http3Options::default(),
        ))
        .await
        .unwrap()
    }
}

/// A certificate for `localhost` and 127.0.0.1, and its key.
fn cert() -> (String, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    (ck.cert.pem(), ck.key_pair.serialize_pem())
}

fn server_opts() -> ServerOptions {
    ServerOptions::default()
        .subprotocols(["echo"])
        .deflate(Some(DeflateConfig::default()))
}

/// Echoes (queueing what one wakeup brought, then one flush, so valid
/// messages before a protocol error still go out before the close), or
/// closes with the code and reason of a text `close <code> <reason>`.
/// Reports the peer's close frame at the end.
async fn echo(
    mut ws: Http3WebSocket,
    seen: mpsc::UnboundedSender<Option<(Option<CloseCode>, String)>>,
) {
    while let Some(msg) = ws.recv().await {
        let mut next = Some(msg);
        while let Some(msg) = next {
            match msg {
                Ok(Message::Text(t)) if t.starts_with("close ") => {
                    let rest = t.trim_start_matches("close ");
                    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                    let code = CloseCode::from(code.parse::<u16>().unwrap());
                    let _ = ws.close(code, reason).await;
                    break;
                }
                Ok(m) => {
                    if ws.feed(m).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
            next = ws.try_recv();
        }
        let _ = ws.flush().await;
    }
    let _ = seen.send(ws.close_info());
}

/// An HTTP/3 server on 127.0.0.1 with `serve_http3_with`: paths under
/// `/echo` echo, others are refused with 404.
async fn h3_server(h3: Http3Options) -> Server {
    let (cert, key) = cert();
    let tls = http3_tls_config_from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let endpoint = bind_http3("127.0.0.1:0".parse().unwrap(), tls, &h3).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (tx, closes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let check = |head: &RequestHead<'_>| {
            if head.path().starts_with("/echo") {
                Ok(())
            } else {
                Err(reject(404, "no such path"))
            }
        };
        let on = move |ws, _req| echo(ws, tx.clone());
        let _ = serve_http3_with(endpoint, &server_opts(), &h3, check, on).await;
    });
    Server { addr, cert, closes }
}

// ----- raw HTTP/3 on quinn streams ----------------------------------------

fn put_varint(out: &mut BytesMut, v: u64) {
    if v < 1 << 6 {
        out.put_u8(v as u8);
    } else if v < 1 << 14 {
        out.put_u16(0x4000 | v as u16);
    } else if v < 1 << 30 {
        out.put_u32(0x8000_0000 | v as u32);
    } else {
        out.put_u64(0xc000_0000_0000_0000 | v);
    }
}

fn frame(ty: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_varint(&mut out, ty);
    put_varint(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out.to_vec()
}

fn headers(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = BytesMut::new();
    qpack::encode_stateless(
        &mut block,
        fields.iter().map(|(n, v)| qpack::HeaderField::new(*n, *v)),
    )
    .unwrap();
    frame(0x01, &block)
}

async fn read_varint(recv: &mut quinn::RecvStream) -> Option<u64> {
    let mut first = [0u8; 1];
    recv.read_exact(&mut first).await.ok()?;
    let len = 1usize << (first[0] >> 6);
    let mut rest = vec![0u8; len - 1];
    recv.read_exact(&mut rest).await.ok()?;
    Some(
        rest.iter()
            .fold(u64::from(first[0] & 0x3f), |v, b| (v << 8) | u64::from(*b)),
    )
}

/// The next frame on a raw stream; `None` at its end (or a reset).
async fn read_frame(recv: &mut quinn::RecvStream) -> Option<(u64, Vec<u8>)> {
    let ty = read_varint(recv).await?;
    let len = read_varint(recv).await?;
    let mut payload = vec![0u8; len as usize];
    recv.read_exact(&mut payload).await.ok()?;
    Some((ty, payload))
}

fn status_of(block: &[u8]) -> u16 {
    let fields = qpack::decode_stateless(&mut &block[..], 1 << 20)
        .unwrap()
        .fields;
    let status = fields
        .iter()
        .find(|f| f.name.as_ref() == b":status")
        .unwrap();
    std::str::from_utf8(&status.value).unwrap().parse().unwrap()
}

/// Sends one request on a new raw stream (then FIN) and reads the
/// response: the status and the DATA payload.
async fn raw_request(quic: &quinn::Connection, fields: &[(&str, &str)]) -> (u16, String) {
    let (mut send, mut recv) = quic.open_bi().await.unwrap();
    send.write_all(&headers(fields)).await.unwrap();
    send.finish().unwrap();
    let (ty, block) = read_frame(&mut recv).await.expect("a response");
    assert_eq!(ty, 0x01, "the response starts with HEADERS");
    let mut body = Vec::new();
    while let Some((ty, payload)) = read_frame(&mut recv).await {
        if ty == 0x00 {
            body.extend(payload);
        }
    }
    (
        status_of(&block),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn websocket_connect(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "CONNECT".into()),
        (":protocol", "websocket".into()),
        (":scheme", "https".into()),
        (":authority", "127.0.0.1".into()),
        (":path", path.into()),
        ("sec-websocket-version", "13".into()),
    ]
}

fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

// ----- frames, close codes, many streams ----------------------------------

#[tokio::test]
async fn ten_websockets_on_one_connection_round_trip_frames_and_close_codes() {
    let mut srv = h3_server(Http3Options::default()).await;
    let client = srv.client().await;
    assert!(client.supports_websockets());
    let opts = srv.client_opts();
    let mut sockets = Vec::new();
    for i in 0..10 {
        let ws = within(client.websocket(&format!("/echo/{i}"), &opts))
            .await
            .unwrap();
        assert_eq!(ws.protocol(), Some("echo"));
        assert!(ws.deflate().is_some());
        assert!(ws.get_ref().is_client());
        sockets.push(ws);
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        for m in [
            Message::Text(format!("hello {i}").into()),
            Message::Binary(payload((1 << 20) + i, i as u64).into()),
            Message::Binary(Vec::new().into()),
        ] {
            within(ws.send(m.clone())).await.unwrap();
            assert_eq!(within(ws.recv()).await.unwrap().unwrap(), m);
        }
    }
    // A fragmented message: this client sends frames of at most 1000
    // bytes, the server reassembles and echoes it.
    let frag = opts
        .clone()
        .ws(Options::default().config(Config::default().fragment_size(Some(1000))));
    let mut f = within(client.websocket("/echo/fragmented", &frag))
        .await
        .unwrap();
    let long = Message::Text(text(50_000).into());
    within(f.send(long.clone())).await.unwrap();
    assert_eq!(within(f.recv()).await.unwrap().unwrap(), long);
    sockets.push(f);

    // The server closes one with 4001; we close the others with 1000.
    let mut first = sockets.remove(0);
    within(first.send_text("close 4001 server says bye"))
        .await
        .unwrap();
    assert!(within(first.recv()).await.is_none());
    let (code, reason) = first.close_info().unwrap();
    assert_eq!(code, Some(CloseCode::from(4001)));
    assert_eq!(reason, "server says bye");
    let _ = within(srv.closes.recv()).await.unwrap();
    for mut ws in sockets {
        within(ws.close(CloseCode::NORMAL, "client bye"))
            .await
            .unwrap();
        assert!(within(ws.recv()).await.is_none());
    }
    for _ in 0..10 {
        let seen = within(srv.closes.recv()).await.unwrap();
        assert_eq!(
            seen,
            Some((Some(CloseCode::NORMAL), "client bye".to_owned()))
        );
    }
    // The connection still opens streams after those ended.
    let mut again = within(client.websocket("/echo/again", &opts))
        .await
        .unwrap();
    within(again.send_text("still here")).await.unwrap();
    assert_eq!(
        within(again.recv()).await.unwrap().unwrap(),
        Message::Text("still here".into())
    );
}

#[tokio::test]
async fn permessage_deflate_is_negotiated_and_compresses_over_h3() {
    let srv = h3_server(Http3Options::default()).await;
    let client = srv.client().await;
    let big = Message::Text("wshub over HTTP/3 ".repeat(60_000).into());

    let mut ws = within(client.websocket("/echo/deflate", &srv.client_opts()))
        .await
        .unwrap();
    let params = ws.deflate().expect("permessage-deflate negotiated");
    let _ = params;
    let before = client.quic().stats().udp_tx.bytes;
    within(ws.send(big.clone())).await.unwrap();
    assert_eq!(within(ws.recv()).await.unwrap().unwrap(), big);
    let compressed = client.quic().stats().udp_tx.bytes - before;
    assert!(
        compressed < 100_000,
        "a 1 MB repetitive message took {compressed} bytes on the wire"
    );

    // The same message without the extension: all of it goes out.
    let mut plain = within(client.websocket("/echo/plain", &srv.plain_opts()))
        .await
        .unwrap();
    assert!(plain.deflate().is_none());
    let before = client.quic().stats().udp_tx.bytes;
    within(plain.send(big.clone())).await.unwrap();
    assert_eq!(within(plain.recv()).await.unwrap().unwrap(), big);
    let uncompressed = client.quic().stats().udp_tx.bytes - before;
    assert!(uncompressed > 1_000_000, "{uncompressed}");
}

#[tokio::test]
async fn two_hundred_websockets_multiplexed_on_one_connection() {
    let srv = h3_server(Http3Options::default().max_concurrent_streams(256)).await;
    let client = srv.client().await;
    let opts = srv.plain_opts();
    let mut sockets = Vec::new();
    for i in 0..200 {
        sockets.push(
            within(client.websocket(&format!("/echo/{i}"), &opts))
                .await
                .unwrap(),
        );
    }
    // All open at once; each round-trips its own messages concurrently.
    let gate = Arc::new(Semaphore::new(0));
    let mut tasks = Vec::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _go = gate.acquire().await.unwrap();
            for m in [
                Message::Text(format!("stream {i}").into()),
                Message::Binary(payload(10_000, i as u64).into()),
            ] {
                ws.send(m.clone()).await.unwrap();
                assert_eq!(ws.recv().await.unwrap().unwrap(), m);
            }
            ws.close(CloseCode::NORMAL, "").await.unwrap();
            assert!(ws.recv().await.is_none());
        }));
    }
    gate.add_permits(200);
    for t in tasks {
        within(t).await.unwrap();
    }
}

// ----- refusals -----------------------------------------------------------

#[tokio::test]
async fn refused_requests_answer_with_their_status() {
    let srv = h3_server(Http3Options::default()).await;
    let client = srv.client().await;
    let quic = client.quic().clone();

    // An extended CONNECT for another protocol is not a WebSocket: 400.
    let mut wrong = websocket_connect("/echo");
    wrong[1].1 = "not-websocket".into();
    let (status, body) = within(raw_request(&quic, &as_refs(&wrong))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(":protocol"), "{body}");

    // No Sec-WebSocket-Version: 426.
    let mut unversioned = websocket_connect("/echo");
    unversioned.pop();
    let (status, _) = within(raw_request(&quic, &as_refs(&unversioned))).await;
    assert_eq!(status, 426);

    // Not a CONNECT: an ordinary request, answered 404 by serve_http3.
    let get = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "127.0.0.1"),
        (":path", "/"),
    ];
    let (status, body) = within(raw_request(&quic, &get)).await;
    assert_eq!(status, 404);
    assert!(body.contains("WebSockets over HTTP/3"), "{body}");

    // A WebTransport CONNECT is h3's and ordinary too: 501 here.
    let mut wt = websocket_connect("/wt");
    wt[1].1 = "webtransport".into();
    let (status, body) = within(raw_request(&quic, &as_refs(&wt))).await;
    assert_eq!(status, 501, "{body}");

    // A path the server's check refuses: our client sees the 404.
    match within(client.websocket("/elsewhere", &srv.plain_opts())).await {
        Err(WsError::Handshake(e)) => assert!(e.to_string().contains("404"), "{e}"),
        other => panic!("expected a 404, got {other:?}"),
    }

    // A cleartext URL is refused before anything is sent.
    match Http3Client::connect(
        &format!("ws://127.0.0.1:{}", srv.addr.port()),
        &srv.plain_opts(),
        &Http3Options::default(),
    )
    .await
    {
        Err(WsError::InvalidUrl(why)) => assert!(why.contains("https://"), "{why}"),
        other => panic!("{other:?}"),
    }

    // The connection survives all of that.
    let mut ws = within(client.websocket("/echo", &srv.plain_opts()))
        .await
        .unwrap();
    within(ws.send_text("ok")).await.unwrap();
    assert!(within(ws.recv()).await.unwrap().is_ok());
}

#[tokio::test]
async fn ordinary_requests_come_out_of_next_for_the_caller() {
    let (cert, key) = cert();
    let tls = http3_tls_config_from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let h3 = Http3Options::default().webtransport(true);
    let endpoint = bind_http3("127.0.0.1:0".parse().unwrap(), tls, &h3).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (tx, mut seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let incoming = endpoint.accept().await.unwrap();
        let mut conn = Http3Connection::accept(incoming, &h3).await.unwrap();
        while let Ok(Some(next)) = conn.next().await {
            match next {
                Http3Request::WebSocket(req) => {
                    assert_eq!(req.protocol(), "websocket");
                    assert_eq!(req.request().uri().path(), "/ws");
                    let ws = req.accept(&ServerOptions::default()).await.unwrap();
                    let (etx, _erx) = mpsc::unbounded_channel();
                    tokio::spawn(echo(ws, etx));
                }
                Http3Request::Request(req, mut stream) => {
                    let wt = req.extensions().get::<h3::ext::Protocol>()
                        == Some(&h3::ext::Protocol::WEB_TRANSPORT);
                    tx.send((req.method().clone(), req.uri().path().to_owned(), wt))
                        .unwrap();
                    let status = if wt { 501 } else { 200 };
                    let resp = http::Response::builder().status(status).body(()).unwrap();
                    stream.send_response(resp).await.unwrap();
                    stream
                        .send_data(Bytes::from_static(b"answered by the caller"))
                        .await
                        .unwrap();
                    stream.finish().await.unwrap();
                }
            }
        }
        // What the gateway hands to WebTransportSession::accept.
        let _h3: wshub_ws::H3Connection = conn.into_inner();
    });
    let opts = ClientOptions::default().tls(
        TlsOptions::default()
            .use_native_roots(false)
            .extra_ca_pem(cert.into_bytes()),
    );
    let client = within(Http3Client::connect(
        &format!("wss://localhost:{}/ignored", addr.port()),
        &opts,
        &Http3Options::default(),
    ))
    .await
    .unwrap();
    let get = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/status"),
    ];
    let (status, body) = within(raw_request(client.quic(), &get)).await;
    assert_eq!((status, body.as_str()), (200, "answered by the caller"));
    assert_eq!(
        within(seen.recv()).await.unwrap(),
        (http::Method::GET, "/status".to_owned(), false)
    );
    let mut wt = websocket_connect("/session");
    wt[1].1 = "webtransport".into();
    let (status, _) = within(raw_request(client.quic(), &as_refs(&wt))).await;
    assert_eq!(status, 501);
    assert_eq!(
        within(seen.recv()).await.unwrap(),
        (http::Method::CONNECT, "/session".to_owned(), true)
    );
    // A WebSocket on the same connection, by full URL.
    let url = format!("wss://localhost:{}/ws", addr.port());
    let mut ws = within(client.websocket(&url, &opts)).await.unwrap();
    within(ws.send_text("mixed")).await.unwrap();
    assert_eq!(
        within(ws.recv()).await.unwrap().unwrap(),
        Message::Text("mixed".into())
    );
}

#[tokio::test]
async fn a_server_without_extended_connect_is_refused_clearly() {
    let srv = h3_server(Http3Options::default().extended_connect(false)).await;
    match within(Http3Client::connect(
        &srv.url(),
        &srv.plain_opts(),
        &Http3Options::default(),
    ))
    .await
    {
        Err(WsError::Http3(why)) => {
            assert!(why.contains("SETTINGS_ENABLE_CONNECT_PROTOCOL"), "{why}")
        }
        other => panic!("expected a clear refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_connection() {
    let srv = h3_server(Http3Options::default()).await;
    let opts = ClientOptions::default().tls(TlsOptions::default().use_native_roots(false));
    match within(Http3Client::connect(
        &srv.url(),
        &opts,
        &Http3Options::default(),
    ))
    .await
    {
        Err(WsError::Http3(why)) => assert!(why.to_lowercase().contains("certificate"), "{why}"),
        other => panic!("{other:?}"),
    }
}

// ----- the stream's framing -----------------------------------------------

/// A masked client frame (payload under 126 bytes).
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    const KEY: [u8; 4] = [1, 2, 3, 4];
    assert!(payload.len() < 126);
    let mut f = vec![first, 0x80 | payload.len() as u8];
    f.extend_from_slice(&KEY);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    f
}

#[tokio::test]
async fn unknown_frames_are_skipped_and_forbidden_ones_reset_the_stream() {
    let srv = h3_server(Http3Options::default()).await;
    let client = srv.client().await;
    let quic = client.quic();

    // A WebSocket on a raw stream: reserved (grease) and unknown frames
    // around the DATA, a text frame split over two DATA frames.
    let (mut send, mut recv) = quic.open_bi().await.unwrap();
    send.write_all(&headers(&as_refs(&websocket_connect("/echo/raw"))))
        .await
        .unwrap();
    let (ty, block) = within(read_frame(&mut recv)).await.unwrap();
    assert_eq!((ty, status_of(&block)), (0x01, 200));
    let ws_frame = masked(0x81, b"through the grease");
    let (a, b) = ws_frame.split_at(5);
    let mut wire = frame(0x21 + 0x1f * 7, b"grease");
    wire.extend(frame(0x00, a));
    wire.extend(frame(0x2f, &[0u8; 300]));
    wire.extend(frame(0x00, b));
    send.write_all(&wire).await.unwrap();
    let (ty, echoed) = within(read_frame(&mut recv)).await.unwrap();
    assert_eq!(ty, 0x00);
    assert_eq!(&echoed[..], b"\x81\x12through the grease");

    // SETTINGS on a request stream: the server resets it.
    send.write_all(&frame(0x04, &[])).await.unwrap();
    match within(recv.read_to_end(1 << 20)).await {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
            assert_eq!(code.into_inner(), 0x105, "H3_FRAME_UNEXPECTED")
        }
        other => panic!("expected a reset, got {other:?}"),
    }

    // Trailers end the read side: the echo still comes back, then the
    // server ends the stream (the WebSocket ended without a close frame).
    let (mut send, mut recv) = quic.open_bi().await.unwrap();
    send.write_all(&headers(&as_refs(&websocket_connect("/echo/trailers"))))
        .await
        .unwrap();
    let (ty, block) = within(read_frame(&mut recv)).await.unwrap();
    assert_eq!((ty, status_of(&block)), (0x01, 200));
    let mut wire = frame(0x00, &masked(0x81, b"last words"));
    wire.extend(headers(&[("x-trailer", "1")]));
    send.write_all(&wire).await.unwrap();
    let (ty, echoed) = within(read_frame(&mut recv)).await.unwrap();
    assert_eq!((ty, &echoed[..]), (0x00, &b"\x81\x0alast words"[..]));
    let mut rest = Vec::new();
    while let Some((_, payload)) = within(read_frame(&mut recv)).await {
        rest.extend(payload);
    }
    assert!(
        rest.is_empty() || rest[0] == 0x88,
        "at most a close frame: {rest:02x?}"
    );

    // A stream that ends inside a DATA frame: reset with H3_FRAME_ERROR.
    let (mut send, mut recv) = quic.open_bi().await.unwrap();
    send.write_all(&headers(&as_refs(&websocket_connect("/echo/cut"))))
        .await
        .unwrap();
    let (ty, block) = within(read_frame(&mut recv)).await.unwrap();
    assert_eq!((ty, status_of(&block)), (0x01, 200));
    let mut cut = BytesMut::new();
    put_varint(&mut cut, 0x00);
    put_varint(&mut cut, 100);
    cut.extend_from_slice(&[0u8; 10]);
    send.write_all(&cut).await.unwrap();
    send.finish().unwrap();
    match within(recv.read_to_end(1 << 20)).await {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
            assert_eq!(code.into_inner(), 0x106, "H3_FRAME_ERROR")
        }
        other => panic!("expected a reset, got {other:?}"),
    }

    // The connection goes on.
    let mut ws = within(client.websocket("/echo", &srv.plain_opts()))
        .await
        .unwrap();
    within(ws.send_text("after")).await.unwrap();
    assert!(within(ws.recv()).await.unwrap().is_ok());
}

/// The strict cases of `wshub echo` (crates/cli/tests/it/echo_strict.rs),
/// each on a stream of one HTTP/3 connection: the valid message first is
/// echoed, then the close frame with the right code, then the stream ends.
#[tokio::test]
async fn valid_message_is_echoed_before_the_protocol_error_closes_over_h3() {
    let srv = h3_server(Http3Options::default()).await;
    let client = srv.client().await;
    let mut unmasked = vec![0x81, 0x02];
    unmasked.extend_from_slice(b"hi");
    let cases = vec![
        (masked(0xa1, b"Hello"), 1002),
        (masked(0x85, b""), 1002),
        (masked(0x8d, b""), 1002),
        (masked(0x00, b"x"), 1002),
        (masked(0x81, b"\xce\xba\xed\xa0\x80"), 1007),
        (masked(0x09, b"x"), 1002),
        (unmasked, 1002),
        (masked(0x88, &[0x03, 0xed]), 1002),
    ];
    for (violation, code) in cases {
        let mut s = within(client.raw_stream("/echo/strict", &srv.plain_opts()))
            .await
            .unwrap();
        let mut batch = masked(0x81, b"Hello");
        batch.extend(violation);
        batch.extend(masked(0x89, b""));
        s.write_all(&batch).await.unwrap();
        let mut wire = Vec::new();
        within(s.read_to_end(&mut wire)).await.unwrap();
        assert!(wire.len() >= 11, "got {wire:02x?}");
        assert_eq!(&wire[..7], b"\x81\x05Hello", "echoed first: {wire:02x?}");
        assert_eq!(wire[7], 0x88, "then a close frame: {wire:02x?}");
        assert_eq!(u16::from_be_bytes([wire[9], wire[10]]), code, "{wire:02x?}");
        assert_eq!(wire.len(), 9 + wire[8] as usize, "nothing after the close");
    }
}

// ----- hostile clients ----------------------------------------------------

#[tokio::test]
async fn streams_that_never_send_headers_are_reset_after_the_header_timeout() {
    let srv =
        h3_server(Http3Options::default().request_header_timeout(Duration::from_secs(1))).await;
    let idle = srv.client().await;
    let start = Instant::now();
    let mut silent = Vec::new();
    for i in 0..5u8 {
        let (mut send, recv) = idle.quic().open_bi().await.unwrap();
        // Something, so the stream exists, but never a complete HEADERS:
        // a grease frame, or half a frame header.
        if i % 2 == 0 {
            send.write_all(&frame(0x21, b"x")).await.unwrap();
        } else {
            send.write_all(&[0x01]).await.unwrap();
        }
        silent.push((send, recv));
    }
    // Meanwhile WebSockets work, on that connection and another one.
    let other = srv.client().await;
    for c in [&idle, &other] {
        let mut ws = within(c.websocket("/echo", &srv.plain_opts()))
            .await
            .unwrap();
        within(ws.send_text("busy")).await.unwrap();
        assert!(within(ws.recv()).await.unwrap().is_ok());
    }
    for (_send, mut recv) in silent {
        match within(recv.read_to_end(1024)).await {
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
                assert_eq!(code.into_inner(), 0x10b, "H3_REQUEST_REJECTED")
            }
            other => panic!("expected a reset, got {other:?}"),
        }
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn oversized_header_sections_are_refused_with_431() {
    let srv = h3_server(Http3Options::default()).await;
    let client = srv.client().await;
    // A real header section over 16 KiB.
    let big = "x".repeat(20 << 10);
    let mut fields = websocket_connect("/echo");
    fields.push(("x-big", big));
    let (status, _) = within(raw_request(client.quic(), &as_refs(&fields))).await;
    assert_eq!(status, 431);

    // A HEADERS frame declaring 1 GiB: refused on its length, without
    // waiting for (or buffering) the rest.
    let (mut send, mut recv) = client.quic().open_bi().await.unwrap();
    let mut head = BytesMut::new();
    put_varint(&mut head, 0x01);
    put_varint(&mut head, 1 << 30);
    send.write_all(&head).await.unwrap();
    send.write_all(&[0u8; 4000]).await.unwrap();
    let (ty, block) = within(read_frame(&mut recv)).await.unwrap();
    assert_eq!((ty, status_of(&block)), (0x01, 431));

    // Many static-table references that decode past the limit.
    let mut block = BytesMut::new();
    block.put_u8(0);
    block.put_u8(0);
    for _ in 0..2000 {
        // Indexed static field 31 (`accept-encoding: gzip, deflate, br`).
        block.put_u8(0xc0 | 31);
    }
    let (mut send, mut recv) = client.quic().open_bi().await.unwrap();
    send.write_all(&frame(0x01, &block)).await.unwrap();
    send.finish().unwrap();
    let (ty, block) = within(read_frame(&mut recv)).await.unwrap();
    assert_eq!((ty, status_of(&block)), (0x01, 431));

    // The connection still serves WebSockets.
    let mut ws = within(client.websocket("/echo", &srv.plain_opts()))
        .await
        .unwrap();
    within(ws.send_text("fine")).await.unwrap();
    assert!(within(ws.recv()).await.unwrap().is_ok());
}

#[tokio::test]
async fn past_the_stream_limit_streams_wait_for_quic_credit() {
    let srv = h3_server(Http3Options::default().max_concurrent_streams(4)).await;
    let client = srv.client().await;
    let opts = srv.plain_opts();
    let mut open = Vec::new();
    for i in 0..4 {
        open.push(
            within(client.websocket(&format!("/echo/{i}"), &opts))
                .await
                .unwrap(),
        );
    }
    let fifth = tokio::spawn({
        let (client, opts) = (client.clone(), opts.clone());
        async move { client.websocket("/echo/5", &opts).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !fifth.is_finished(),
        "a fifth stream opened past a limit of 4"
    );
    // Other clients are served meanwhile, and the open ones still echo.
    let other = srv.client().await;
    let mut ws = within(other.websocket("/echo/other", &opts)).await.unwrap();
    within(ws.send_text("other")).await.unwrap();
    assert!(within(ws.recv()).await.unwrap().is_ok());
    within(open[1].send_text("open")).await.unwrap();
    assert!(within(open[1].recv()).await.unwrap().is_ok());
    // Once one ends, the waiting one opens.
    let mut first = open.remove(0);
    within(first.close(CloseCode::NORMAL, "")).await.unwrap();
    assert!(within(first.recv()).await.is_none());
    drop(first);
    let mut fifth = within(fifth).await.unwrap().unwrap();
    within(fifth.send_text("room")).await.unwrap();
    assert!(within(fifth.recv()).await.unwrap().is_ok());
}

/// A real client Initial for `server`, from quinn-proto driven by hand.
fn client_initial(server: SocketAddr) -> Vec<u8> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let mut tls = tls;
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let now = std::time::Instant::now();
    let (_, mut conn) = endpoint
        .connect(
            now,
            quinn_proto::ClientConfig::new(Arc::new(crypto)),
            server,
            "localhost",
        )
        .unwrap();
    let mut initial = Vec::new();
    let t = conn.poll_transmit(now, 1, &mut initial).unwrap();
    initial.truncate(t.size);
    assert!(initial.len() >= 1200, "a client Initial is padded");
    initial
}

/// Sends `initial` from a fresh UDP socket and never answers: the bytes
/// the server sent back, and when its last datagram came.
async fn send_and_listen(
    server: SocketAddr,
    initial: &[u8],
    listen: Duration,
) -> (usize, Duration) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let start = Instant::now();
    sock.send_to(initial, server).await.unwrap();
    let (mut received, mut last) = (0usize, Duration::ZERO);
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok((n, _))) =
        tokio::time::timeout_at(start + listen, sock.recv_from(&mut buf)).await
    {
        received += n;
        last = start.elapsed();
    }
    (received, last)
}

#[tokio::test]
async fn an_unanswered_quic_handshake_is_dropped_within_the_handshake_timeout() {
    let timeout = Duration::from_secs(2);
    let srv = h3_server(Http3Options::default().handshake_timeout(timeout)).await;
    let initial = client_initial(srv.addr);
    let (received, last) =
        send_and_listen(srv.addr, &initial, timeout + Duration::from_secs(3)).await;
    assert!(received > 0, "the server answered the Initial");
    // RFC 9000 §8: three times what the client sent, which quinn rounds up
    // to a whole datagram once any budget is left (quinn issue #1082):
    // 1200 + 138 + 1200 + 1200 bytes for a 1200-byte Initial.
    assert!(
        received < 3 * initial.len() + 1200,
        "anti-amplification: {received} bytes sent for {} received",
        initial.len()
    );
    assert!(
        last <= timeout + Duration::from_millis(500),
        "the server still sent at {last:?}"
    );

    // The server is fine.
    let client = srv.client().await;
    let mut ws = within(client.websocket("/echo", &srv.plain_opts()))
        .await
        .unwrap();
    within(ws.send_text("after")).await.unwrap();
    assert!(within(ws.recv()).await.unwrap().is_ok());
}

#[tokio::test]
async fn with_retry_an_unvalidated_initial_gets_only_a_retry() {
    let srv = h3_server(
        Http3Options::default()
            .retry(true)
            .handshake_timeout(Duration::from_secs(2)),
    )
    .await;
    let initial = client_initial(srv.addr);
    let (received, _) = send_and_listen(srv.addr, &initial, Duration::from_secs(2)).await;
    assert!(
        received > 0 && received <= 3 * initial.len(),
        "a Retry: {received} bytes for {}",
        initial.len()
    );
    assert!(received < 300, "only a Retry packet: {received} bytes");
    // Our client follows the Retry.
    let client = srv.client().await;
    let mut ws = within(client.websocket("/echo", &srv.plain_opts()))
        .await
        .unwrap();
    within(ws.send_text("retried")).await.unwrap();
    assert!(within(ws.recv()).await.unwrap().is_ok());
}
