//! Codec for the Centrifugo client protocol v2, so that the existing
//! Centrifugo SDKs (`centrifuge` for JS, `centrifuge-python`, ...) talk to
//! the wshub gateway unchanged.
//!
//! **Owns:** the protocol messages of `client.proto` (public repository
//! `centrifugal/protocol`) as Rust types that serve both encodings — protobuf
//! through `prost` with the proto field numbers, JSON through serde with
//! Centrifugo's JSON shape — the framing of several messages in one
//! WebSocket message, the server ping and the client pong, and the error,
//! disconnect and unsubscribe codes.
//!
//! **Must not know:** sockets, WebSocket framing (the `wshub-proto` and
//! `wshub-ws` crates), sessions, channels, auth or brokers (`wshub-hub`).
//! It is pure functions over bytes.
//!
//! # Encodings
//!
//! | | JSON | protobuf |
//! |---|---|---|
//! | WebSocket message | text | binary |
//! | batching | messages joined by `\n` | each message prefixed by its varint length |
//! | `bytes` fields (`data`, `conn_info`, ...) | the payload embedded as raw JSON, see [`raw_json`] | `bytes` |
//! | defaults | left out | left out (proto3) |
//! | ping / pong | `{}` / `{}` | `0x00` / `0x00` (empty message) |
//!
//! The encoding is chosen at the upgrade: subprotocol `centrifuge-protobuf`
//! or the query `?format=protobuf` select protobuf ([`Encoding`]).
//!
//! # Example
//!
//! A server reads a frame of commands and answers them in one frame:
//!
//! ```
//! use wshub_protocol::{
//!     decode_commands, encode_replies, ConnectResult, Encoding, ErrorCode, Reply, Request,
//! };
//!
//! let frame = br#"{"id":1,"connect":{"token":"x","name":"js"}}
//! {"id":2,"subscribe":{"channel":"news","recover":true,"offset":5,"epoch":"abc"}}"#;
//! let mut replies = Vec::new();
//! for command in decode_commands(Encoding::Json, frame).unwrap() {
//!     match command.request() {
//!         Some(Request::Connect(connect)) => {
//!             assert_eq!(connect.token, "x");
//!             let result = ConnectResult { client: "c1".into(), ping: 25, pong: true, ..Default::default() };
//!             replies.push(Reply { id: command.id, connect: Some(result), ..Default::default() });
//!         }
//!         _ => replies.push(Reply::error(command.id, ErrorCode::PERMISSION_DENIED)),
//!     }
//! }
//! let mut out = Vec::new();
//! encode_replies(Encoding::Json, &replies, &mut out).unwrap();
//! assert_eq!(
//!     String::from_utf8(out).unwrap(),
//!     r#"{"id":1,"connect":{"client":"c1","ping":25,"pong":true}}
//! {"id":2,"error":{"code":103,"message":"permission denied"}}"#
//! );
//! ```
//!
//! A publication is encoded once per encoding and the bytes shared by all
//! subscribers with [`encode_push_reply`]. A disconnect goes into the
//! WebSocket close frame with [`Disconnect::close_frame`].
//!
//! # Compatibility notes
//!
//! - Decoding is lenient where Centrifugo is: unknown fields are ignored,
//!   `null` counts as absent, blank JSON lines are skipped. Unlike
//!   Centrifugo, a payload of `null` is kept as the bytes `null`. A JSON
//!   line must be an object; nested messages also accept serde's positional
//!   array form, which Centrifugo does not (harmless: fields stay typed).
//! - Connection-level dictionary compression (`ConnectRequest.flag`,
//!   [`Dictionary`]) is carried as messages only; its per-frame codec marker
//!   is not implemented, so a server must not enable it.
// No panic reachable from input: the release profile aborts on panic. Each
// remaining exception is a tiny `#[allow]` with a comment proving it cannot fire.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod codec;
pub mod codes;
pub mod messages;
pub mod raw_json;
pub mod unidirectional;

pub use codec::{
    decode_commands, decode_commands_with, decode_replies, encode_push_reply, encode_replies,
    encode_reply, ping_frame, pong_frame, CommandDecoder, CommandEncoder, DecodeError,
    DecodeLimits, EncodeError, Encoding, FrameDecoder, FrameEncoder, FrameMessage, ReplyDecoder,
    ReplyEncoder,
};
pub use codes::{DisconnectCode, ErrorCode, UnsubscribeCode, MAX_CLOSE_REASON_BYTES};
pub use messages::*;
