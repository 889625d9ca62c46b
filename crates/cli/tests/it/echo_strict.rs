//! `wshub echo` under the strict reading of RFC 6455 that Autobahn's
//! sections 3, 4 and 5 check: when a batch holds valid messages followed by
//! a protocol violation, the valid ones are echoed first, then the close
//! frame with the right code, then the server closes TCP (over HTTP/1.1)
//! or ends the stream (over HTTP/2, RFC 8441: the same cases run on a
//! stream of one connection).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::wshub_echo;

const KEY: [u8; 4] = [1, 2, 3, 4];

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![first, 0x80 | payload.len() as u8];
    f.extend_from_slice(&KEY);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    f
}

fn open(url: &str) -> TcpStream {
    let addr = url.trim_start_matches("ws://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Everything the server sends until it closes TCP.
fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("server closes within 5 s");
    all
}

fn check(url: &str, violation: Vec<u8>, code: u16) {
    let mut s = open(url);
    s.write_all(&batch(violation)).unwrap();
    let wire = read_to_eof(&mut s);
    check_wire(&wire, code);
}

/// A valid message, the violation, then a ping that must not be answered.
fn batch(violation: Vec<u8>) -> Vec<u8> {
    let mut batch = masked(0x81, b"Hello");
    batch.extend(violation);
    batch.extend(masked(0x89, b""));
    batch
}

fn check_wire(wire: &[u8], code: u16) {
    assert!(wire.len() >= 11, "got {wire:02x?}");
    assert_eq!(
        &wire[..7],
        b"\x81\x05Hello",
        "the valid message is echoed first: {wire:02x?}"
    );
    assert_eq!(wire[7], 0x88, "then a close frame: {wire:02x?}");
    assert_eq!(u16::from_be_bytes([wire[9], wire[10]]), code, "{wire:02x?}");
    assert_eq!(
        wire.len(),
        9 + wire[8] as usize,
        "nothing after the close frame"
    );
}

/// The violations and the close code each must get.
fn cases() -> Vec<(Vec<u8>, u16)> {
    let mut unmasked = vec![0x81, 0x02];
    unmasked.extend_from_slice(b"hi");
    vec![
        // RSV2 set (Autobahn 3.2), reserved opcodes (4.1.3, 4.2.3), a
        // continuation with nothing to continue (5.15's tail).
        (masked(0xa1, b"Hello"), 1002),
        (masked(0x85, b""), 1002),
        (masked(0x8d, b""), 1002),
        (masked(0x00, b"x"), 1002),
        // Invalid UTF-8 in the second message: 1007 after the first echo.
        (masked(0x81, b"\xce\xba\xed\xa0\x80"), 1007),
        // A fragmented ping (5.1), an unmasked client frame, a close with
        // a reserved code (7.9.x).
        (masked(0x09, b"x"), 1002),
        (unmasked, 1002),
        (masked(0x88, &[0x03, 0xed]), 1002),
    ]
}

#[test]
fn valid_message_is_echoed_before_the_protocol_error_closes() {
    let (_server, url) = wshub_echo(&[]);
    for (violation, code) in cases() {
        check(&url, violation, code);
    }
}

#[test]
fn the_same_cases_over_streams_of_one_http2_connection() {
    let (_server, url) = wshub_echo(&[]);
    crate::rust_client::runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let opts = wshub_ws::ClientOptions::default();
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            wshub_ws::Http2Connection::connect(&url, &opts),
        )
        .await
        .unwrap()
        .unwrap();
        for (violation, code) in cases() {
            let mut s = conn.raw_stream("/", &opts).await.unwrap();
            s.write_all(&batch(violation)).await.unwrap();
            let mut wire = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut wire))
                .await
                .expect("the server ends the stream within 5 s")
                .unwrap();
            check_wire(&wire, code);
        }
    });
}
