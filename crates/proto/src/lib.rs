//! # wshub-proto: a sans-I/O WebSocket engine
//!
//! RFC 6455 (WebSocket) and RFC 7692 (permessage-deflate) as a pure state
//! machine: bytes in, events out, bytes out. No sockets, no async runtime,
//! no clock: the caller passes time in. The tokio transport (`wshub-ws`),
//! tests, fuzz targets and benchmarks all drive this one core.
//!
//! This crate owns the opening handshake ([`handshake`]), framing, masking,
//! UTF-8 validation, fragmentation, the closing handshake, ping/pong,
//! keepalive timing, permessage-deflate and the limits on untrusted input.
//! It must not know about sockets, TLS, tasks or HTTP servers.
//!
//! ```
//! use wshub_proto::{Connection, Config, Role, Event, Message};
//!
//! let mut server = Connection::new(Role::Server, Config::default(), None);
//! // A masked client text frame "Hi" (mask key 00 00 00 00 for brevity).
//! server.receive_data(b"\x81\x82\x00\x00\x00\x00Hi");
//! match server.poll_event().unwrap() {
//!     Some(Event::Message(Message::Text(t))) => assert_eq!(&*t, "Hi"),
//!     other => panic!("{other:?}"),
//! }
//! server.send_text("Hello").unwrap();
//! let mut wire = Vec::new();
//! server.drain_transmit(&mut wire);
//! assert_eq!(wire, b"\x81\x05Hello");
//! ```
// No panic reachable from input: the release profile aborts on panic. Each
// remaining exception is a tiny `#[allow]` with a comment proving it cannot fire.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod close;
mod conn;
pub mod deflate;
mod error;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod limits;
pub mod mask;
mod out;
pub mod utf8;

pub use close::CloseCode;
pub use conn::{Config, Connection, Event, KeepAlive, Message, Role, State, Utf8Bytes};
pub use deflate::{DeflateConfig, DeflateParams};
pub use error::{Error, SendError};
pub use frame::{encode_frame, OpCode};
pub use limits::Limits;
