//! Frame headers (RFC 6455 §5.2): parsing, validation-free decoding and
//! encoding, plus [`encode_frame`] for frames encoded once and shared.

use bytes::{BufMut, Bytes, BytesMut};

use crate::mask::apply_mask;

/// A frame opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: continuation of a fragmented message.
    Continuation = 0x0,
    /// 0x1: text (UTF-8) message.
    Text = 0x1,
    /// 0x2: binary message.
    Binary = 0x2,
    /// 0x8: close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// Decodes an opcode nibble; reserved opcodes (3–7, B–F) give `None`.
    pub const fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Control frames: close, ping, pong.
    pub const fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A decoded frame header, before any protocol validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN bit: last frame of a message.
    pub fin: bool,
    /// RSV1 (per-message compressed, with permessage-deflate).
    pub rsv1: bool,
    /// RSV2.
    pub rsv2: bool,
    /// RSV3.
    pub rsv3: bool,
    /// Raw opcode nibble (may be reserved).
    pub opcode: u8,
    /// Masking key if the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length as sent (the MSB of a 64-bit length may be set).
    pub len: u64,
    /// Bytes the header took on the wire (2–14).
    pub header_len: usize,
}

impl FrameHeader {
    /// Decodes a header from the start of `buf`; `None` if `buf` holds
    /// fewer bytes than the header needs.
    #[inline]
    pub fn parse(buf: &[u8]) -> Option<FrameHeader> {
        let (&[b0, b1], rest) = buf.split_first_chunk::<2>()?;
        let masked = b1 & 0x80 != 0;
        let (len, ext, rest) = match b1 & 0x7f {
            126 => {
                let (len, rest) = rest.split_first_chunk::<2>()?;
                (u64::from(u16::from_be_bytes(*len)), 2, rest)
            }
            127 => {
                let (len, rest) = rest.split_first_chunk::<8>()?;
                (u64::from_be_bytes(*len), 8, rest)
            }
            n => (u64::from(n), 0, rest),
        };
        let mask = if masked {
            Some(*rest.first_chunk::<4>()?)
        } else {
            None
        };
        let header_len = 2 + ext + if masked { 4 } else { 0 };
        Some(FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode: b0 & 0x0f,
            mask,
            len,
            header_len,
        })
    }

    /// Whether the length used a non-minimal encoding. RFC 6455 says the
    /// minimal number of bytes MUST be used, but common peers ignore it; we
    /// accept such frames (robustness) and expose this for strict callers.
    pub fn non_minimal_length(buf: &[u8]) -> bool {
        match (FrameHeader::parse(buf), buf.get(1)) {
            (Some(h), Some(b1)) => match b1 & 0x7f {
                126 => h.len < 126,
                127 => h.len <= 0xffff,
                _ => false,
            },
            _ => false,
        }
    }
}

/// Writes a frame header to `out`. Returns nothing; the header is 2–14
/// bytes.
#[inline]
pub fn write_header(
    out: &mut BytesMut,
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    len: usize,
) {
    let b0 = (fin as u8) << 7 | (rsv1 as u8) << 6 | opcode as u8;
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    out.reserve(14);
    out.put_u8(b0);
    if len < 126 {
        out.put_u8(mbit | len as u8);
    } else if len <= 0xffff {
        out.put_u8(mbit | 126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(mbit | 127);
        out.put_u64(len as u64);
    }
    if let Some(m) = mask {
        out.put_slice(&m);
    }
}

/// Writes a whole frame (header and payload, masked with `mask` if given)
/// to `out`.
#[inline]
pub fn write_frame(
    out: &mut BytesMut,
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    // One reservation for the whole frame (the header's is then a no-op).
    out.reserve(14 + payload.len());
    write_header(out, fin, rsv1, opcode, mask, payload.len());
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(m) = mask {
        if let Some(written) = out.get_mut(start..) {
            apply_mask(written, m, 0);
        }
    }
}

/// Encodes one unmasked, final, uncompressed frame, as a server sends it.
///
/// Encode a broadcast once and hand the same [`Bytes`] to every server
/// connection with [`crate::Connection::send_encoded`]: the payload is
/// neither copied nor re-framed per subscriber.
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    write_frame(&mut out, true, false, opcode, None, payload);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_small_and_extended_lengths() {
        let h = FrameHeader::parse(b"\x81\x05Hello").unwrap();
        assert!(h.fin && h.opcode == 1 && h.len == 5 && h.header_len == 2 && h.mask.is_none());
        let h = FrameHeader::parse(b"\x82\x7e\x01\x00").unwrap();
        assert_eq!((h.len, h.header_len), (256, 4));
        let h = FrameHeader::parse(b"\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00\x01\x02\x03\x04")
            .unwrap();
        assert_eq!(
            (h.len, h.header_len, h.mask),
            (65536, 14, Some([1, 2, 3, 4]))
        );
        assert!(FrameHeader::parse(b"\x82\x7e\x01").is_none());
        assert!(FrameHeader::parse(b"\x82\x85\x01\x02\x03").is_none());
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 §5.7: unmasked "Hello", masked "Hello".
        assert_eq!(
            &encode_frame(OpCode::Text, b"Hello")[..],
            b"\x81\x05\x48\x65\x6c\x6c\x6f"
        );
        let mut out = BytesMut::new();
        write_frame(
            &mut out,
            true,
            false,
            OpCode::Text,
            Some([0x37, 0xfa, 0x21, 0x3d]),
            b"Hello",
        );
        assert_eq!(&out[..], b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
    }

    proptest! {
        #[test]
        fn encode_parse_roundtrip(
            fin in any::<bool>(), rsv1 in any::<bool>(),
            op in prop::sample::select(vec![OpCode::Continuation, OpCode::Text, OpCode::Binary, OpCode::Close, OpCode::Ping, OpCode::Pong]),
            mask in proptest::option::of(any::<[u8; 4]>()),
            len in prop::sample::select(vec![0usize, 1, 125, 126, 127, 200, 65_535, 65_536, 70_000]),
            seed in any::<u8>(),
        ) {
            let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            let mut out = BytesMut::new();
            write_frame(&mut out, fin, rsv1, op, mask, &payload);
            let h = FrameHeader::parse(&out).unwrap();
            prop_assert_eq!(h.fin, fin);
            prop_assert_eq!(h.rsv1, rsv1);
            prop_assert_eq!(h.opcode, op as u8);
            prop_assert_eq!(h.mask, mask);
            prop_assert_eq!(h.len as usize, payload.len());
            prop_assert!(!FrameHeader::non_minimal_length(&out));
            let mut body = out[h.header_len..].to_vec();
            if let Some(m) = mask { apply_mask(&mut body, m, 0); }
            prop_assert_eq!(body, payload);
        }
    }
}
