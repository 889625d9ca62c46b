//! The Pusher Channels protocol 7 front of wshub: `pusher-js`, Laravel Echo
//! and the Pusher server SDKs work against the same hub, brokers, limits
//! and metrics as the Centrifugo protocol.
//!
//! - [`wire`], [`names`], [`sign`]: the protocol itself (messages, channel
//!   names and kinds, signatures), pure functions.
//! - [`front`]: how an app's events travel through the node (the envelope
//!   in a publication, the fan-out's [`front::Codec`]).
//! - [`session`]: one connection, transport-agnostic like the Centrifugo
//!   session; the server's WebSocket adapter drives it.
//! - [`api`]: the HTTP API under `/apps/{app_id}/`.
//! - [`app`]: the configured apps.
//!
//! An app's channel `c` is the node's channel `$pusher/{app_id}/c`
//! ([`wshub_config::FRONT_CHANNEL_PREFIX`]), which the Centrifugo protocol
//! and server API refuse: apps are isolated from each other and from the
//! Centrifugo channels.

pub mod api;
pub mod app;
pub mod front;
pub mod names;
pub mod session;
pub mod sign;
pub mod wire;

use std::sync::Arc;

use wshub_hub::node::Node;

/// Gives the node's `$pusher/` channels to this front (call once, at
/// start-up, when the front is enabled).
pub fn register(node: &Node) {
    node.register_front(wshub_config::FRONT_CHANNEL_PREFIX, Arc::new(front::Codec));
}
