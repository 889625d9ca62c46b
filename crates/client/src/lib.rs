//! A Rust client for the Centrifugo client protocol v2, the protocol that
//! the wshub gateway (and Centrifugo) speak: connect with a token,
//! subscribe to channels, receive publications, join/leave and server
//! messages, call RPC, publish, presence and history — and stay connected:
//! reconnect with backoff, answer the server's pings, refresh the token
//! before it expires, and recover the publications missed while offline.
//!
//! **Owns:** the client-side session: one background task per [`Client`]
//! that owns the WebSocket and multiplexes commands (matched to replies by
//! id), the connection and subscription state machines, the reconnect
//! rules and the recovery positions.
//!
//! **Must not know:** WebSocket framing (`wshub-ws`), the wire codec
//! (`wshub-protocol`), or anything of the server side.
//!
//! # Behaviour (as the official Centrifugo SDKs)
//!
//! - **Reconnect** after transport errors, missing server pings, and
//!   disconnect codes whose [`DisconnectCode::reconnect`] is true (3000–3499,
//!   4000–4499, 5000+, WebSocket codes below 3000 except 1009). Other codes
//!   leave the client [`State::Disconnected`] with a
//!   [`ClientEvent::Disconnected`]. Delays use exponential backoff with full
//!   jitter between [`ClientConfig::min_reconnect_delay`] and
//!   [`ClientConfig::max_reconnect_delay`] (500 ms and 20 s by default).
//! - **Heartbeat:** the server pings every `ping` seconds (connect result);
//!   the client answers with a pong when the result says `pong: true`, and
//!   reconnects when nothing arrives within `ping +`
//!   [`ClientConfig::max_server_ping_delay`].
//! - **Recovery:** each subscription remembers the epoch and the offset of
//!   the last publication it delivered. After a reconnect every subscription
//!   that wanted to be subscribed is subscribed again, recoverable ones with
//!   `recover: true, offset, epoch`; recovered publications are delivered in
//!   order and never twice. If the server cannot recover, the subscription
//!   emits [`SubscriptionEvent::Unrecovered`]: a gap is never silent.
//! - **Tokens:** [`ClientConfig::get_token`] is called when there is no
//!   token, when connect fails with error 109 (token expired), and before the
//!   token expires (the `refresh` command); [`SubscriptionConfig::get_token`]
//!   does the same for channel tokens (`sub_refresh`).
//! - **Commands** ([`Client::rpc`], [`Client::publish`], ...) are matched to
//!   their replies by id and fail with [`Error::Timeout`] after
//!   [`ClientConfig::timeout`]. Made while connecting, they wait for the
//!   connection; made while disconnected, they fail at once.
//!
//! # Example
//!
//! ```no_run
//! use wshub_client::{Client, ClientConfig, ClientEvent, SubscriptionConfig, SubscriptionEvent};
//!
//! # async fn run() -> Result<(), wshub_client::Error> {
//! let (client, mut events) = Client::new("ws://127.0.0.1:8000/connection/websocket",
//!     ClientConfig::default().token("<jwt>"));
//! let (sub, mut sub_events) =
//!     client.new_subscription("news", SubscriptionConfig::default().recoverable(true))?;
//! sub.subscribe()?;
//! client.connect()?;
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         if let ClientEvent::Connected { client_id, .. } = event {
//!             println!("connected as {client_id}");
//!         }
//!     }
//! });
//! while let Some(event) = sub_events.recv().await {
//!     match event {
//!         SubscriptionEvent::Publication(p) => println!("{}: {:?}", p.offset, p.data),
//!         SubscriptionEvent::Unrecovered { .. } => println!("missed messages: reload state"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Event receivers are unbounded: read them, or drop them to discard events.
// No panic reachable from input: the release profile aborts on panic. Each
// remaining exception is a tiny `#[allow]` with a comment proving it cannot fire.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod backoff;
mod client;
mod config;
mod error;
mod task;

use std::collections::BTreeMap;

use bytes::Bytes;

pub use backoff::reconnect_delay;
pub use client::{Client, Subscription};
pub use config::{BoxFuture, ClientConfig, GetToken, HistoryOptions, SubscriptionConfig};
pub use error::{Error, TokenError};
pub use wshub_protocol::{ClientInfo, DisconnectCode, Encoding, ErrorCode, UnsubscribeCode};

/// The state of a [`Client`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not connected and not trying to (initial, after
    /// [`Client::disconnect`], or after a disconnect without reconnect).
    Disconnected,
    /// Connecting or waiting to reconnect.
    Connecting,
    /// Connected: commands flow.
    Connected,
}

/// The state of a [`Subscription`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionState {
    /// Not subscribed and not trying to.
    Unsubscribed,
    /// Waiting for the client to connect or for the subscribe reply.
    Subscribing,
    /// Subscribed: publications arrive.
    Subscribed,
}

/// Codes of the events this client makes up itself (not sent by a server),
/// the same numbers as the Centrifugo SDKs use.
pub mod codes {
    /// Connecting: [`Client::connect`](crate::Client::connect) was called.
    pub const CONNECT_CALLED: u32 = 0;
    /// Connecting: the transport closed or failed.
    pub const TRANSPORT_CLOSED: u32 = 1;
    /// Connecting: no ping from the server in time.
    pub const NO_PING: u32 = 2;
    /// Connecting: a subscribe command got no reply in time.
    pub const SUBSCRIBE_TIMEOUT: u32 = 3;
    /// Disconnected: [`Client::disconnect`](crate::Client::disconnect) was called.
    pub const DISCONNECT_CALLED: u32 = 0;
    /// Disconnected: the token callback said unauthorized.
    pub const UNAUTHORIZED: u32 = 1;
    /// Disconnected: the server sent something unreadable.
    pub const BAD_PROTOCOL: u32 = 2;
    /// Subscribing: [`Subscription::subscribe`](crate::Subscription::subscribe) was called.
    pub const SUBSCRIBE_CALLED: u32 = 0;
    /// Unsubscribed: [`Subscription::unsubscribe`](crate::Subscription::unsubscribe) was called.
    pub const UNSUBSCRIBE_CALLED: u32 = 0;
}

/// A publication delivered to a subscription.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Publication {
    /// The payload (a JSON value on JSON connections).
    pub data: Bytes,
    /// Position in the channel stream (0 if the channel has none).
    pub offset: u64,
    /// The publisher, when the server tells.
    pub info: Option<ClientInfo>,
    /// Tags attached by the publisher.
    pub tags: BTreeMap<String, String>,
}

impl From<wshub_protocol::Publication> for Publication {
    fn from(p: wshub_protocol::Publication) -> Self {
        Publication {
            data: p.data,
            offset: p.offset,
            info: p.info,
            tags: p.tags,
        }
    }
}

/// What happens to a [`Client`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// Connecting (first attempt or reconnecting after the given reason).
    Connecting {
        /// A client code ([`codes`]) or the server's disconnect code.
        code: u32,
        /// Why.
        reason: String,
    },
    /// Connected.
    Connected {
        /// The id the server gave this connection.
        client_id: String,
        /// The server's version.
        version: String,
        /// Data the server attached to the connect result.
        data: Bytes,
        /// The server's ping interval in seconds (0: no pings).
        ping: u32,
    },
    /// Disconnected for good (no reconnect until [`Client::connect`]).
    Disconnected {
        /// A client code ([`codes`]) or the server's disconnect code.
        code: u32,
        /// Why.
        reason: String,
    },
    /// Something failed that the client handles itself (a connect attempt,
    /// a token refresh); informational.
    Error(Error),
    /// An asynchronous message from the server (`send` server API).
    Message(Bytes),
    /// A publication in a channel this client did not subscribe to itself
    /// (a server-side subscription).
    ServerPublication {
        /// The channel.
        channel: String,
        /// The publication.
        publication: Publication,
    },
}

/// What happens to a [`Subscription`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SubscriptionEvent {
    /// Subscribing (first time or again after a reconnect).
    Subscribing {
        /// A client code ([`codes`]), the server's disconnect code or
        /// unsubscribe code.
        code: u32,
        /// Why.
        reason: String,
    },
    /// Subscribed.
    Subscribed {
        /// The server keeps a recoverable stream for this subscription.
        recoverable: bool,
        /// The server checks the stream position.
        positioned: bool,
        /// This subscribe asked to recover.
        was_recovering: bool,
        /// Every missed publication was recovered (they follow as
        /// [`SubscriptionEvent::Publication`]).
        recovered: bool,
        /// The stream's epoch.
        epoch: String,
        /// The stream's top offset.
        offset: u64,
        /// Data the server attached to the subscribe result.
        data: Bytes,
    },
    /// A publication, in stream order, never twice.
    Publication(Publication),
    /// A client joined the channel.
    Join(ClientInfo),
    /// A client left the channel.
    Leave(ClientInfo),
    /// Unsubscribed (by the user, the server, or a final subscribe error).
    Unsubscribed {
        /// A client code ([`codes`]), the server's unsubscribe code or error code.
        code: u32,
        /// Why.
        reason: String,
    },
    /// The server could not recover the publications missed since
    /// (`offset`, `epoch`): some were lost. Reload the state from the
    /// application's source of truth. Follows the `Subscribed` event.
    Unrecovered {
        /// The last position this subscription had delivered.
        offset: u64,
        /// Its epoch.
        epoch: String,
    },
    /// Something failed that the subscription handles itself (a subscribe
    /// error that is retried).
    Error(Error),
}
