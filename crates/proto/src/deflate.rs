//! permessage-deflate (RFC 7692): configuration, negotiated parameters and
//! the per-connection compressor/decompressor.
//!
//! Negotiation (parsing and answering `Sec-WebSocket-Extensions`) lives in
//! [`crate::extension`]; this module holds what both sides agree on and the
//! codec that applies it to messages.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Our side's permessage-deflate policy.
///
/// As a server it says which offers we accept and how we adjust them; as a
/// client it is the offer we send.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Server: always answer with `server_no_context_takeover` (the server
    /// resets its compressor after each message, saving memory between
    /// messages). Client: ask the server for it.
    pub server_no_context_takeover: bool,
    /// Server: always answer with `client_no_context_takeover`. Client:
    /// offer it (we reset our compressor after each message).
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window (8–15) the server compresses with. Server: we
    /// answer with at most this. Client: we ask for it (15 means "don't ask").
    pub server_max_window_bits: u8,
    /// Largest LZ77 window (8–15) the client compresses with. Server: if the
    /// client offered `client_max_window_bits` we answer with at most this.
    /// Client: we offer it (15 sends the bare `client_max_window_bits`).
    pub client_max_window_bits: u8,
    /// zlib compression level, 0–9 (default 1: fastest).
    pub level: u32,
    /// Messages shorter than this many bytes are sent uncompressed
    /// (default 64); compressing tiny payloads costs CPU and gains nothing.
    pub min_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 1,
            min_size: 64,
        }
    }
}

impl DeflateConfig {
    /// Sets [`DeflateConfig::server_no_context_takeover`].
    pub fn server_no_context_takeover(mut self, v: bool) -> Self {
        self.server_no_context_takeover = v;
        self
    }
    /// Sets [`DeflateConfig::client_no_context_takeover`].
    pub fn client_no_context_takeover(mut self, v: bool) -> Self {
        self.client_no_context_takeover = v;
        self
    }
    /// Sets [`DeflateConfig::server_max_window_bits`] (clamped to 8–15).
    pub fn server_max_window_bits(mut self, v: u8) -> Self {
        self.server_max_window_bits = v.clamp(8, 15);
        self
    }
    /// Sets [`DeflateConfig::client_max_window_bits`] (clamped to 8–15).
    pub fn client_max_window_bits(mut self, v: u8) -> Self {
        self.client_max_window_bits = v.clamp(8, 15);
        self
    }
    /// Sets [`DeflateConfig::level`] (clamped to 0–9).
    pub fn level(mut self, v: u32) -> Self {
        self.level = v.min(9);
        self
    }
    /// Sets [`DeflateConfig::min_size`].
    pub fn min_size(mut self, v: usize) -> Self {
        self.min_size = v;
        self
    }
}

/// The permessage-deflate parameters both sides agreed on in the opening
/// handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after every message.
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window (8–15).
    pub server_max_window_bits: u8,
    /// The client compresses with at most this window (8–15).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// The four bytes a sync flush ends with; stripped on send, appended before
/// inflating the last frame of a message (RFC 7692 §7.2.1, §7.2.2).
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// zlib cannot deflate with a 256-byte window; a 512-byte one is safe
/// because zlib never emits a match distance above `window - 262` (250),
/// which an 8-bit inflater accepts.
fn zlib_bits(bits: u8) -> u8 {
    bits.clamp(9, 15)
}

/// Error from the decompressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The message inflates past the size limit.
    TooBig,
    /// The payload is not a valid deflate stream.
    Corrupt,
}

/// Compresses outgoing messages, one context per connection.
pub(crate) struct Deflater {
    z: Compress,
    no_context_takeover: bool,
}

impl Deflater {
    pub(crate) fn new(level: u32, window_bits: u8, no_context_takeover: bool) -> Self {
        Deflater {
            z: Compress::new_with_window_bits(
                Compression::new(level),
                false,
                zlib_bits(window_bits),
            ),
            no_context_takeover,
        }
    }

    /// Compresses one whole message and appends it to `out`, without the
    /// trailing `00 00 ff ff`. Fails only if zlib reports a broken stream
    /// state (it does not for a stream we drive this way).
    pub(crate) fn compress(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), flate2::CompressError> {
        let start = out.len();
        out.reserve(input.len() / 2 + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before_in = self.z.total_in();
            let status = self.z.compress_vec(input, out, FlushCompress::Sync)?;
            let used = (self.z.total_in() - before_in) as usize;
            input = input.get(used..).unwrap_or_default();
            debug_assert!(matches!(status, Status::Ok | Status::BufError));
            // Done once all input is in and the flush left spare room.
            if input.is_empty() && out.len() < out.capacity() && out.ends_with(&TAIL) {
                break;
            }
        }
        debug_assert!(out.len() - start >= 4);
        // The loop ends only once `out` ends with TAIL, so 4 bytes are there.
        out.truncate(out.len().saturating_sub(4));
        if self.no_context_takeover {
            self.z.reset();
        }
        Ok(())
    }
}

/// Decompresses incoming messages, one context per connection.
pub(crate) struct Inflater {
    z: Decompress,
    window_bits: u8,
    no_context_takeover: bool,
}

impl Inflater {
    pub(crate) fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        let window_bits = zlib_bits(window_bits);
        Inflater {
            z: Decompress::new_with_window_bits(false, window_bits),
            window_bits,
            no_context_takeover,
        }
    }

    /// Inflates `input` (one frame's payload, or [`TAIL`] at the end of a
    /// message) and appends to `out`, failing before `out` grows past
    /// `limit` bytes.
    pub(crate) fn decompress(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        loop {
            let room = out.capacity() - out.len();
            if room == 0 {
                if out.len() > limit {
                    return Err(InflateError::TooBig);
                }
                // Grow geometrically, never past limit + 1 (one byte over is
                // how we learn the limit was crossed).
                let want = (out.len().max(input.len() * 2).max(1024)).min(limit + 1 - out.len());
                out.reserve_exact(want);
            }
            let before_in = self.z.total_in();
            let status = self
                .z
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            let used = (self.z.total_in() - before_in) as usize;
            input = input.get(used..).unwrap_or_default();
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            match status {
                Status::StreamEnd => {
                    // BFINAL set: the stream is over; a later message starts a
                    // new one (RFC 7692 §7.2.3.5 allows it).
                    self.z.reset(false);
                    if !input.is_empty() && input != TAIL {
                        return Err(InflateError::Corrupt);
                    }
                    return Ok(());
                }
                Status::Ok | Status::BufError => {
                    if input.is_empty() && out.len() < out.capacity() {
                        return Ok(());
                    }
                    if used == 0 && status == Status::BufError && out.len() < out.capacity() {
                        return Err(InflateError::Corrupt);
                    }
                }
            }
        }
    }

    /// Called after the last frame of a message was inflated.
    pub(crate) fn end_message(&mut self) {
        if self.no_context_takeover {
            self.z = Decompress::new_with_window_bits(false, self.window_bits);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(level: u32, bits: u8, nct: bool, msgs: &[Vec<u8>]) {
        let mut d = Deflater::new(level, bits, nct);
        let mut i = Inflater::new(bits, nct);
        for m in msgs {
            let mut c = Vec::new();
            d.compress(m, &mut c).unwrap();
            let mut out = Vec::new();
            i.decompress(&c, &mut out, usize::MAX / 2).unwrap();
            i.decompress(&TAIL, &mut out, usize::MAX / 2).unwrap();
            i.end_message();
            assert_eq!(&out, m);
        }
    }

    #[test]
    fn roundtrip_all_windows_and_takeover() {
        let msgs: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                let mut v = Vec::new();
                for j in 0..(i * 97) {
                    v.push(((j * 31 + i) % 251) as u8);
                    if j % 7 == 0 {
                        v.extend_from_slice(b"hello websocket ");
                    }
                }
                v
            })
            .collect();
        for bits in 8..=15 {
            for nct in [false, true] {
                for level in [0, 1, 6, 9] {
                    roundtrip(level, bits, nct, &msgs);
                }
            }
        }
    }

    #[test]
    fn empty_message_is_one_zero_byte() {
        let mut d = Deflater::new(6, 15, false);
        let mut c = Vec::new();
        d.compress(b"", &mut c).unwrap();
        assert_eq!(c, [0x00]);
    }

    #[test]
    fn rfc7692_hello_example() {
        // RFC 7692 §7.2.3.1: "Hello" compressed without context takeover.
        let mut i = Inflater::new(15, true);
        let mut out = Vec::new();
        i.decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        i.decompress(&TAIL, &mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.3: the same with a BFINAL block.
        let mut i = Inflater::new(15, false);
        let mut out = Vec::new();
        i.decompress(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn bomb_stops_at_limit() {
        let mut d = Deflater::new(9, 15, false);
        let zeros = vec![0u8; 8 << 20];
        let mut c = Vec::new();
        d.compress(&zeros, &mut c).unwrap();
        assert!(c.len() < 20_000, "compressed {} bytes", c.len());
        let mut i = Inflater::new(15, false);
        let mut out = Vec::new();
        let limit = 1 << 20;
        assert_eq!(i.decompress(&c, &mut out, limit), Err(InflateError::TooBig));
        assert!(out.capacity() <= limit + 1, "grew to {}", out.capacity());
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let mut i = Inflater::new(15, false);
        let mut out = Vec::new();
        // BTYPE=11 is reserved.
        assert_eq!(
            i.decompress(&[0xff, 0xff, 0xff], &mut out, 100),
            Err(InflateError::Corrupt)
        );
    }
}
