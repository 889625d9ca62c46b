//! Framing: several messages in one WebSocket message, in either encoding.
//!
//! - **JSON** (WebSocket text frames): messages separated by `\n`. Empty and
//!   whitespace-only lines are skipped when decoding; encoding joins with a
//!   single `\n` and writes no trailing newline.
//! - **Protobuf** (WebSocket binary frames): each message prefixed with its
//!   length as an unsigned varint, back to back. A zero length is a valid,
//!   empty message (the client's pong, the server's ping).

use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codes::DisconnectCode;
use crate::messages::{Command, Push, Reply};

/// The encoding of a connection, fixed at the WebSocket upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// JSON, in WebSocket text frames (the default).
    Json,
    /// Protobuf, in WebSocket binary frames.
    Protobuf,
}

impl Encoding {
    /// WebSocket subprotocol that selects JSON.
    pub const JSON_SUBPROTOCOL: &'static str = "centrifuge-json";
    /// WebSocket subprotocol that selects protobuf.
    pub const PROTOBUF_SUBPROTOCOL: &'static str = "centrifuge-protobuf";

    /// The encoding a WebSocket subprotocol names, if it is one of ours.
    pub fn from_subprotocol(subprotocol: &str) -> Option<Self> {
        match subprotocol {
            Self::JSON_SUBPROTOCOL => Some(Self::Json),
            Self::PROTOBUF_SUBPROTOCOL => Some(Self::Protobuf),
            _ => None,
        }
    }

    /// The encoding asked for by the value of the `format` (or `cf_protocol`)
    /// URL query parameter: `protobuf` selects protobuf, anything else JSON.
    pub fn from_query_value(value: &str) -> Self {
        if value == "protobuf" {
            Self::Protobuf
        } else {
            Self::Json
        }
    }

    /// Whether frames of this encoding go in WebSocket binary (not text) messages.
    pub fn is_binary(self) -> bool {
        self == Self::Protobuf
    }
}

/// Limits on what one incoming frame may hold. The transport's message size
/// limit bounds the frame itself; these bound what is built from it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeLimits {
    /// Most messages in one frame (default 4096; SDKs batch, e.g. one
    /// subscribe per channel when resubscribing after a reconnect).
    pub max_messages_per_frame: usize,
    /// Largest single message in bytes (JSON line or protobuf length;
    /// default 1 MiB).
    pub max_message_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_messages_per_frame: 4096,
            max_message_bytes: 1 << 20,
        }
    }
}

impl DecodeLimits {
    /// Sets [`DecodeLimits::max_messages_per_frame`].
    pub fn max_messages_per_frame(mut self, max: usize) -> Self {
        self.max_messages_per_frame = max;
        self
    }

    /// Sets [`DecodeLimits::max_message_bytes`].
    pub fn max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }
}

/// Why a frame could not be decoded. `index` counts the messages of the
/// frame from 0; the messages before `index` decoded fine.
///
/// The server's answer to any of these is
/// [`DisconnectCode::BAD_REQUEST`] (see [`DecodeError::disconnect_code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A JSON line is not a valid message.
    #[error("message {index}: invalid JSON: {source}")]
    Json {
        /// Position of the message in the frame.
        index: usize,
        /// What serde_json found.
        source: serde_json::Error,
    },
    /// A protobuf message is malformed.
    #[error("message {index}: invalid protobuf: {source}")]
    Protobuf {
        /// Position of the message in the frame.
        index: usize,
        /// What prost found.
        source: prost::DecodeError,
    },
    /// The frame ends inside a varint length prefix.
    #[error("message {index}: length prefix is cut off by the end of the frame")]
    TruncatedLength {
        /// Position of the message in the frame.
        index: usize,
    },
    /// A varint length prefix is longer than 10 bytes or overflows 64 bits.
    #[error("message {index}: length prefix is not a valid varint")]
    InvalidLength {
        /// Position of the message in the frame.
        index: usize,
    },
    /// A length prefix promises more bytes than the frame holds.
    #[error("message {index}: length prefix says {declared} bytes, the frame holds {available}")]
    Truncated {
        /// Position of the message in the frame.
        index: usize,
        /// The length the prefix declares.
        declared: u64,
        /// The bytes left in the frame after the prefix.
        available: usize,
    },
    /// A message is over [`DecodeLimits::max_message_bytes`].
    #[error("message {index}: {size} bytes, over the limit of {limit}")]
    MessageTooLarge {
        /// Position of the message in the frame.
        index: usize,
        /// The message's size (declared, for protobuf).
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// The frame holds more than [`DecodeLimits::max_messages_per_frame`] messages.
    #[error("frame holds more than {limit} messages")]
    TooManyMessages {
        /// The limit.
        limit: usize,
    },
}

impl DecodeError {
    /// The disconnect a server sends for this error: always
    /// [`DisconnectCode::BAD_REQUEST`], as Centrifuge does for any frame it
    /// cannot read.
    pub fn disconnect_code(&self) -> DisconnectCode {
        DisconnectCode::BAD_REQUEST
    }
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A payload (`bytes` field) is not a JSON value, so a JSON connection
    /// cannot carry it (binary data published by a protobuf client, for
    /// example). The server's answer is
    /// [`DisconnectCode::INAPPROPRIATE_PROTOCOL`].
    #[error("a payload is not valid JSON, a JSON connection cannot carry it: {0}")]
    NotJson(#[source] serde_json::Error),
}

impl EncodeError {
    /// The disconnect a server sends when a message for the client cannot be
    /// encoded.
    pub fn disconnect_code(&self) -> DisconnectCode {
        match self {
            Self::NotJson(_) => DisconnectCode::INAPPROPRIATE_PROTOCOL,
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Command {}
    impl Sealed for crate::Reply {}
}

/// A top-level message that travels in frames: [`Command`] (client to
/// server) or [`Reply`] (server to client).
pub trait FrameMessage:
    sealed::Sealed + prost::Message + Default + Serialize + DeserializeOwned
{
}
impl FrameMessage for Command {}
impl FrameMessage for Reply {}

/// Decodes the messages of one frame one at a time, so a large batch is not
/// collected into a `Vec` first and the messages before a bad one can still
/// be handled (as Centrifuge does).
///
/// Yields `Ok` for each message, then stops; after the first `Err` it
/// yields nothing more.
///
/// ```
/// use wshub_protocol::{CommandDecoder, DecodeLimits, Encoding};
///
/// let frame = b"{\"id\":1,\"connect\":{}}\n{}";
/// let mut commands = CommandDecoder::new(Encoding::Json, frame, DecodeLimits::default());
/// assert_eq!(commands.next().unwrap().unwrap().id, 1);
/// assert!(commands.next().unwrap().unwrap().is_pong());
/// assert!(commands.next().is_none());
/// ```
#[derive(Debug)]
pub struct FrameDecoder<'a, T> {
    encoding: Encoding,
    rest: &'a [u8],
    index: usize,
    limits: DecodeLimits,
    done: bool,
    message: PhantomData<fn() -> T>,
}

/// [`FrameDecoder`] for the commands a server reads.
pub type CommandDecoder<'a> = FrameDecoder<'a, Command>;
/// [`FrameDecoder`] for the replies a client reads.
pub type ReplyDecoder<'a> = FrameDecoder<'a, Reply>;

impl<'a, T: FrameMessage> FrameDecoder<'a, T> {
    /// A decoder over the messages of `frame`.
    pub fn new(encoding: Encoding, frame: &'a [u8], limits: DecodeLimits) -> Self {
        Self {
            encoding,
            rest: frame,
            index: 0,
            limits,
            done: false,
            message: PhantomData,
        }
    }

    /// How many messages were decoded so far.
    pub fn decoded(&self) -> usize {
        self.index
    }

    fn next_json(&mut self) -> Option<Result<T, DecodeError>> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let mut lines = self.rest.splitn(2, |&b| b == b'\n');
            let line = lines.next().unwrap_or_default();
            self.rest = lines.next().unwrap_or_default();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Err(e) = self.admit(line.len() as u64) {
                return Some(Err(e));
            }
            let index = self.index;
            self.index += 1;
            // serde also reads structs from arrays (fields by position); a
            // message line must be an object.
            if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                let source = serde::de::Error::custom("a message must be a JSON object");
                return Some(Err(DecodeError::Json { index, source }));
            }
            return Some(
                serde_json::from_slice(line).map_err(|source| DecodeError::Json { index, source }),
            );
        }
    }

    fn next_protobuf(&mut self) -> Option<Result<T, DecodeError>> {
        if self.rest.is_empty() {
            return None;
        }
        let index = self.index;
        let (declared, prefix) = match read_varint(self.rest) {
            Ok(v) => v,
            Err(Varint::Truncated) => return Some(Err(DecodeError::TruncatedLength { index })),
            Err(Varint::Invalid) => return Some(Err(DecodeError::InvalidLength { index })),
        };
        if let Err(e) = self.admit(declared) {
            return Some(Err(e));
        }
        let body = self.rest.get(prefix..).unwrap_or_default();
        let Some((message, rest)) = usize::try_from(declared)
            .ok()
            .and_then(|len| body.split_at_checked(len))
        else {
            return Some(Err(DecodeError::Truncated {
                index,
                declared,
                available: body.len(),
            }));
        };
        self.rest = rest;
        self.index += 1;
        Some(T::decode(message).map_err(|source| DecodeError::Protobuf { index, source }))
    }

    /// Checks the limits before message `self.index` of `size` bytes is decoded.
    fn admit(&self, size: u64) -> Result<(), DecodeError> {
        if self.index >= self.limits.max_messages_per_frame {
            return Err(DecodeError::TooManyMessages {
                limit: self.limits.max_messages_per_frame,
            });
        }
        if size > self.limits.max_message_bytes as u64 {
            return Err(DecodeError::MessageTooLarge {
                index: self.index,
                size,
                limit: self.limits.max_message_bytes,
            });
        }
        Ok(())
    }
}

impl<T: FrameMessage> Iterator for FrameDecoder<'_, T> {
    type Item = Result<T, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.encoding {
            Encoding::Json => self.next_json(),
            Encoding::Protobuf => self.next_protobuf(),
        };
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

impl<T: FrameMessage> std::iter::FusedIterator for FrameDecoder<'_, T> {}

enum Varint {
    Truncated,
    Invalid,
}

/// Reads an unsigned LEB128 varint: (value, bytes used).
fn read_varint(buf: &[u8]) -> Result<(u64, usize), Varint> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(Varint::Invalid);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if buf.len() < 10 {
        Err(Varint::Truncated)
    } else {
        Err(Varint::Invalid)
    }
}

/// Decodes all commands of a frame with the default [`DecodeLimits`].
///
/// An empty frame (or JSON with only blank lines) gives an empty `Vec`;
/// Centrifuge disconnects such a client with
/// [`DisconnectCode::BAD_REQUEST`].
pub fn decode_commands(encoding: Encoding, frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    decode_commands_with(encoding, frame, &DecodeLimits::default())
}

/// [`decode_commands`] with explicit limits.
pub fn decode_commands_with(
    encoding: Encoding,
    frame: &[u8],
    limits: &DecodeLimits,
) -> Result<Vec<Command>, DecodeError> {
    CommandDecoder::new(encoding, frame, limits.clone()).collect()
}

/// Decodes all replies of a frame (the client side) with the default limits.
pub fn decode_replies(encoding: Encoding, frame: &[u8]) -> Result<Vec<Reply>, DecodeError> {
    ReplyDecoder::new(encoding, frame, DecodeLimits::default()).collect()
}

/// Appends one message to `out` in its frame form: JSON as is, protobuf
/// with its varint length prefix. `out` is unchanged on error.
pub(crate) fn append<T: Serialize + prost::Message>(
    encoding: Encoding,
    message: &T,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    match encoding {
        Encoding::Json => {
            let start = out.len();
            serde_json::to_writer(&mut *out, message).map_err(|e| {
                out.truncate(start);
                EncodeError::NotJson(e)
            })
        }
        Encoding::Protobuf => {
            // prost fails only when the buffer has no room, and a Vec grows.
            let _ = message.encode_length_delimited(out);
            Ok(())
        }
    }
}

/// Builds one outgoing frame from several messages.
///
/// Messages are added encoded ([`FrameEncoder::push`]) or as bytes already
/// encoded for the same connection encoding ([`FrameEncoder::push_encoded`]),
/// such as a publication encoded once with [`encode_push_reply`] for all
/// subscribers.
///
/// ```
/// use wshub_protocol::{encode_push_reply, Encoding, Push, Publication, Reply, ReplyEncoder};
///
/// let publication = Publication { data: r#"{"text":"hi"}"#.into(), offset: 6, ..Default::default() };
/// let shared = encode_push_reply(Encoding::Json, &Push::publication("news", publication)).unwrap();
///
/// let mut frame = ReplyEncoder::new(Encoding::Json);
/// frame.push(&Reply { id: 3, publish: Some(Default::default()), ..Default::default() }).unwrap();
/// frame.push_encoded(&shared);
/// assert_eq!(
///     frame.finish(),
///     br#"{"id":3,"publish":{}}
/// {"push":{"channel":"news","pub":{"data":{"text":"hi"},"offset":6}}}"#
/// );
/// ```
#[derive(Debug, Clone)]
pub struct FrameEncoder<T> {
    encoding: Encoding,
    buf: Vec<u8>,
    count: usize,
    message: PhantomData<fn(&T)>,
}

/// [`FrameEncoder`] for the replies a server writes.
pub type ReplyEncoder = FrameEncoder<Reply>;
/// [`FrameEncoder`] for the commands a client writes.
pub type CommandEncoder = FrameEncoder<Command>;

impl<T: FrameMessage> FrameEncoder<T> {
    /// An empty frame.
    pub fn new(encoding: Encoding) -> Self {
        Self::with_capacity(encoding, 0)
    }

    /// An empty frame with room for `bytes` bytes.
    pub fn with_capacity(encoding: Encoding, bytes: usize) -> Self {
        Self {
            encoding,
            buf: Vec::with_capacity(bytes),
            count: 0,
            message: PhantomData,
        }
    }

    /// The encoding of this frame.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    fn separate(&mut self) {
        if self.encoding == Encoding::Json && self.count > 0 {
            self.buf.push(b'\n');
        }
    }

    /// Encodes `message` into the frame. On error the frame is unchanged.
    pub fn push(&mut self, message: &T) -> Result<(), EncodeError> {
        let start = self.buf.len();
        self.separate();
        if let Err(e) = append(self.encoding, message, &mut self.buf) {
            self.buf.truncate(start);
            return Err(e);
        }
        self.count += 1;
        Ok(())
    }

    /// Adds one message already encoded in its frame form for this encoding,
    /// as [`encode_push_reply`] and [`encode_reply`] return it (protobuf:
    /// with its length prefix). The bytes are not checked.
    pub fn push_encoded(&mut self, encoded: &[u8]) {
        self.separate();
        self.buf.extend_from_slice(encoded);
        self.count += 1;
    }

    /// Number of messages in the frame.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the frame has no message yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the frame in bytes.
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// The frame so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the frame out, leaving the encoder empty (its buffer's capacity
    /// goes with the frame).
    pub fn take(&mut self) -> Vec<u8> {
        self.count = 0;
        std::mem::take(&mut self.buf)
    }

    /// Empties the encoder, keeping its buffer for the next frame.
    pub fn clear(&mut self) {
        self.count = 0;
        self.buf.clear();
    }

    /// The frame.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Encodes `replies` as one frame, appended to `out`. On error `out` is
/// unchanged.
///
/// `out` is meant to be empty; if it is not, its bytes are taken as earlier
/// messages of the same frame (a JSON separator is added before the first
/// reply).
pub fn encode_replies(
    encoding: Encoding,
    replies: &[Reply],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut frame = ReplyEncoder {
        encoding,
        count: usize::from(!out.is_empty()),
        buf: std::mem::take(out),
        message: PhantomData,
    };
    let start = frame.buf.len();
    for reply in replies {
        if let Err(e) = frame.push(reply) {
            frame.buf.truncate(start);
            *out = frame.buf;
            return Err(e);
        }
    }
    *out = frame.buf;
    Ok(())
}

/// Encodes a single reply as a complete frame.
pub fn encode_reply(encoding: Encoding, reply: &Reply) -> Result<Bytes, EncodeError> {
    let mut out = Vec::new();
    append(encoding, reply, &mut out)?;
    Ok(out.into())
}

/// Encodes `Reply { push }` as a complete frame, once, without cloning the
/// push: the bytes can be shared by every subscriber of the channel that
/// uses `encoding`, sent alone or batched with [`FrameEncoder::push_encoded`].
pub fn encode_push_reply(encoding: Encoding, push: &Push) -> Result<Bytes, EncodeError> {
    match encoding {
        Encoding::Json => {
            #[derive(Serialize)]
            struct PushReply<'a> {
                push: &'a Push,
            }
            serde_json::to_vec(&PushReply { push })
                .map(Bytes::from)
                .map_err(EncodeError::NotJson)
        }
        Encoding::Protobuf => {
            // `Reply` with only field 4 (push) set.
            const PUSH_FIELD: u32 = 4;
            let body = prost::encoding::message::encoded_len(PUSH_FIELD, push);
            let mut out =
                Vec::with_capacity(prost::encoding::encoded_len_varint(body as u64) + body);
            prost::encoding::encode_varint(body as u64, &mut out);
            prost::encoding::message::encode(PUSH_FIELD, push, &mut out);
            Ok(out.into())
        }
    }
}

/// The server's ping as a complete frame: an empty reply, `{}` in JSON and a
/// zero length prefix (`0x00`) in protobuf. The client answers with an empty
/// command (see [`Command::is_pong`]) when the connect result set `pong`.
pub fn ping_frame(encoding: Encoding) -> &'static [u8] {
    match encoding {
        Encoding::Json => b"{}",
        Encoding::Protobuf => b"\x00",
    }
}

/// The client's pong as a complete frame: an empty command.
pub fn pong_frame(encoding: Encoding) -> &'static [u8] {
    // Same bytes: an empty message either way.
    ping_frame(encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_edges() {
        assert_eq!(read_varint(&[0]).ok(), Some((0, 1)));
        assert_eq!(read_varint(&[0x96, 0x01]).ok(), Some((150, 2)));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read_varint(&max).ok(), Some((u64::MAX, 10)));
        assert!(matches!(read_varint(&[0x80, 0x80]), Err(Varint::Truncated)));
        assert!(matches!(read_varint(&[]), Err(Varint::Truncated)));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(matches!(read_varint(&over), Err(Varint::Invalid)));
        assert!(matches!(read_varint(&[0x80; 11]), Err(Varint::Invalid)));
    }

    #[test]
    fn ping_frames_decode_as_empty_messages() {
        for encoding in [Encoding::Json, Encoding::Protobuf] {
            let replies = decode_replies(encoding, ping_frame(encoding)).unwrap();
            assert_eq!(replies.len(), 1);
            assert!(replies[0].is_ping());
            assert_eq!(
                &encode_reply(encoding, &Reply::ping()).unwrap()[..],
                ping_frame(encoding)
            );
            let commands = decode_commands(encoding, pong_frame(encoding)).unwrap();
            assert_eq!(commands.len(), 1);
            assert!(commands[0].is_pong());
        }
    }

    #[test]
    fn encode_replies_appends_to_a_started_frame() {
        let mut out = b"{}".to_vec();
        encode_replies(Encoding::Json, &[Reply::ping()], &mut out).unwrap();
        assert_eq!(out, b"{}\n{}");
    }
}
