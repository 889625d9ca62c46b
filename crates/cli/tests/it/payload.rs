//! Deterministic test payloads, and an echo check over our Rust client.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;
use wshub_proto::{Message, Utf8Bytes};
use wshub_ws::WebSocket;

/// Frame-length boundaries of RFC 6455 §5.2 plus large messages.
pub const SIZES: [usize; 8] = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];

/// Longest wait for one echo (16 MiB through a debug build and a Python
/// peer with compression stays far below this).
pub const ECHO_TIMEOUT: Duration = Duration::from_secs(60);

const ALPHABET: [&str; 26] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", " ", "k", "l", "m", "n", "o", "p", " ", "é",
    "ß", "ж", "€", "✓", "漢", "𝄞", "😀",
];

struct XorShift(u32);

impl XorShift {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
}

fn text_block() -> &'static str {
    static BLOCK: OnceLock<String> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut rng = XorShift(6455);
        let mut s = String::with_capacity((1 << 20) + 4);
        while s.len() < 1 << 20 {
            s.push_str(ALPHABET[rng.next() as usize % ALPHABET.len()]);
        }
        s
    })
}

/// A string of exactly `n` UTF-8 bytes, with 2-, 3- and 4-byte sequences.
pub fn text(n: usize) -> String {
    let block = text_block();
    let mut s = String::with_capacity(n);
    while n - s.len() >= block.len() {
        s.push_str(block);
    }
    let mut k = n - s.len();
    while !block.is_char_boundary(k) {
        k -= 1;
    }
    s.push_str(&block[..k]);
    while s.len() < n {
        s.push('x');
    }
    assert_eq!(s.len(), n);
    s
}

/// `n` bytes, half pseudo-random (incompressible), half patterned.
pub fn binary(n: usize) -> Vec<u8> {
    let mut rng = XorShift(7692);
    let mut block = vec![0u8; 64 << 10];
    for (i, b) in block.iter_mut().enumerate() {
        *b = if i < 32 << 10 {
            rng.next() as u8
        } else {
            i as u8
        };
    }
    block.iter().copied().cycle().take(n).collect()
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// Receives the next message, failing on error, end of stream or timeout.
pub async fn recv<S>(ws: &mut WebSocket<S>, what: &str) -> Message
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match timeout(ECHO_TIMEOUT, ws.recv()).await {
        Ok(Some(Ok(m))) => m,
        Ok(Some(Err(e))) => panic!("{what}: receive failed: {e}"),
        Ok(None) => panic!(
            "{what}: connection closed instead of a message ({:?})",
            ws.close_info()
        ),
        Err(_) => panic!("{what}: no message within {ECHO_TIMEOUT:?}"),
    }
}

/// Sends `msg` and checks that the echo has the same type and bytes.
pub async fn echo_one<S>(ws: &mut WebSocket<S>, msg: Message, what: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sent_text, sent): (bool, Vec<u8>) = match &msg {
        Message::Text(t) => (true, t.as_bytes().to_vec()),
        Message::Binary(b) => (false, b.to_vec()),
    };
    timeout(ECHO_TIMEOUT, ws.send(msg))
        .await
        .unwrap_or_else(|_| panic!("{what}: send did not finish within {ECHO_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{what}: send failed: {e}"));
    let got = recv(ws, what).await;
    let (got_text, got): (bool, &[u8]) = match &got {
        Message::Text(t) => (true, t.as_bytes()),
        Message::Binary(b) => (false, b),
    };
    assert_eq!(
        got_text,
        sent_text,
        "{what}: sent a {} message, the echo is {}",
        if sent_text { "text" } else { "binary" },
        if got_text { "text" } else { "binary" }
    );
    if got != sent.as_slice() {
        panic!(
            "{what}: echo differs: sent {} bytes, got {} bytes, first difference at byte {}",
            sent.len(),
            got.len(),
            first_difference(&sent, got)
        );
    }
}

/// Text and binary echoes of every size in [`SIZES`].
pub async fn echo_matrix<S>(ws: &mut WebSocket<S>, label: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for &n in &SIZES {
        let t = Message::Text(Utf8Bytes::from(text(n)));
        echo_one(ws, t, &format!("{label}: text {n}")).await;
        let b = Message::Binary(binary(n).into());
        echo_one(ws, b, &format!("{label}: binary {n}")).await;
    }
}
