//! `wshub echo` under the strict reading of RFC 6455 that Autobahn's
//! sections 3, 4 and 5 check: when a batch holds valid messages followed by
//! a protocol violation, the valid ones are echoed first, then the close
//! frame with the right code, then the server closes TCP.

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
    let mut batch = masked(0x81, b"Hello");
    batch.extend(violation);
    batch.extend(masked(0x89, b""));
    s.write_all(&batch).unwrap();
    let wire = read_to_eof(&mut s);
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

#[test]
fn valid_message_is_echoed_before_the_protocol_error_closes() {
    let (_server, url) = wshub_echo(&[]);
    // RSV2 set (Autobahn 3.2), reserved opcodes (4.1.3, 4.2.3), a
    // continuation with nothing to continue (5.15's tail).
    check(&url, masked(0xa1, b"Hello"), 1002);
    check(&url, masked(0x85, b""), 1002);
    check(&url, masked(0x8d, b""), 1002);
    check(&url, masked(0x00, b"x"), 1002);
    // Invalid UTF-8 in the second message: 1007 after the first echo.
    check(&url, masked(0x81, b"\xce\xba\xed\xa0\x80"), 1007);
}
