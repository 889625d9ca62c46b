//! The protocol messages of `client.proto`, usable with both encodings.
//!
//! Every type derives [`prost::Message`] with the proto field numbers, so
//! [`prost::Message::encode`] and [`prost::Message::decode`] speak the
//! protobuf encoding, and derives serde with the JSON shape that Centrifugo
//! uses:
//!
//! - field names are the proto names (`presence_stats`, `join_leave`,
//!   `was_recovering`, `pub`);
//! - fields at their default value (zero, `false`, empty string, empty list
//!   or map, absent message) are left out, except `ClientInfo.user`,
//!   `ClientInfo.client`, `PresenceResult.presence`,
//!   `PresenceStatsResult.num_clients`/`num_users` and all three fields of
//!   `HistoryResult`, which are always written;
//! - `bytes` fields are raw JSON (see [`crate::raw_json`]), 64-bit integers
//!   are JSON numbers;
//! - on reading, unknown fields are ignored and `null` counts as absent
//!   (except in `bytes` fields, where `null` is a payload like any other).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};

use crate::raw_json;

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An error in a [`Reply`] to a command. See [`ErrorCode`](crate::ErrorCode) for the built-in codes.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Error {
    /// Error code: 100..=1999 are protocol errors, see [`ErrorCode`](crate::ErrorCode).
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub code: u32,
    /// Short human-readable description.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub message: String,
    /// The client may retry the command (SDKs retry temporary errors and code 109).
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub temporary: bool,
}

/// Body of a request to the bidirectional emulation endpoint (HTTP-streaming/SSE transports): commands for an existing session on `node`.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct EmulationRequest {
    /// Node that holds the session.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub node: String,
    /// Session id from [`Connect::session`] / [`ConnectResult::session`].
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub session: String,
    /// Encoded commands for the session.
    #[prost(bytes = "bytes", tag = "3")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
}

/// A command from a client to the server.
///
/// At most one request field is set; a server takes the first set field in field
/// order (see [`Command::request`]). A command with `id == 0` and no `send` is the
/// client's pong to a server ping (see [`Command::is_pong`]).
///
/// Reserved proto field numbers: 2, 3 (protocol v1 `method` and `params`).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Command {
    /// Id the server echoes in the [`Reply`], so the client can match them. Zero only for `send` and pongs.
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub id: u32,
    /// Authenticate the connection; must be the first command.
    #[prost(message, optional, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub connect: Option<ConnectRequest>,
    /// Subscribe to a channel.
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub subscribe: Option<SubscribeRequest>,
    /// Unsubscribe from a channel.
    #[prost(message, optional, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub unsubscribe: Option<UnsubscribeRequest>,
    /// Publish into a channel.
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub publish: Option<PublishRequest>,
    /// Ask who is in a channel.
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub presence: Option<PresenceRequest>,
    /// Ask how many clients and users are in a channel.
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub presence_stats: Option<PresenceStatsRequest>,
    /// Read a channel's history stream.
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub history: Option<HistoryRequest>,
    /// Client-initiated ping (protocol v1 style; v2 clients answer server pings instead).
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ping: Option<PingRequest>,
    /// Asynchronous message to the server; no reply is sent.
    #[prost(message, optional, tag = "12")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub send: Option<SendRequest>,
    /// Remote procedure call.
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub rpc: Option<RpcRequest>,
    /// Refresh the connection token.
    #[prost(message, optional, tag = "14")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub refresh: Option<RefreshRequest>,
    /// Refresh a subscription token.
    #[prost(message, optional, tag = "15")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub sub_refresh: Option<SubRefreshRequest>,
}

/// A message from the server to a client: the answer to a [`Command`] (same
/// `id`, an `error` or one result field) or an asynchronous [`Push`] (`id == 0`).
///
/// An entirely empty reply is the server's ping (see [`crate::ping_frame`]).
///
/// Reserved proto field numbers: 3 (protocol v1 `result`).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Reply {
    /// Id of the command this answers; zero for pushes.
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub id: u32,
    /// Set when the command failed; no result field is set then.
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub error: Option<Error>,
    /// Asynchronous push (publication, join, leave, disconnect, ...).
    #[prost(message, optional, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub push: Option<Push>,
    /// Result of [`Command::connect`].
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub connect: Option<ConnectResult>,
    /// Result of [`Command::subscribe`].
    #[prost(message, optional, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub subscribe: Option<SubscribeResult>,
    /// Result of [`Command::unsubscribe`].
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub unsubscribe: Option<UnsubscribeResult>,
    /// Result of [`Command::publish`].
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub publish: Option<PublishResult>,
    /// Result of [`Command::presence`].
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub presence: Option<PresenceResult>,
    /// Result of [`Command::presence_stats`].
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub presence_stats: Option<PresenceStatsResult>,
    /// Result of [`Command::history`].
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub history: Option<HistoryResult>,
    /// Result of [`Command::ping`].
    #[prost(message, optional, tag = "12")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ping: Option<PingResult>,
    /// Result of [`Command::rpc`].
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub rpc: Option<RpcResult>,
    /// Result of [`Command::refresh`].
    #[prost(message, optional, tag = "14")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub refresh: Option<RefreshResult>,
    /// Result of [`Command::sub_refresh`].
    #[prost(message, optional, tag = "15")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub sub_refresh: Option<SubRefreshResult>,
}

/// An asynchronous server-to-client message, carried in [`Reply::push`].
/// Exactly one payload field is set.
///
/// Reserved proto field numbers: 3 (protocol v1 `data`).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Push {
    /// Numeric channel id standing in for `channel` (bandwidth optimisation; see [`SubscribeResult::id`]).
    #[prost(int64, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub id: i64,
    /// Channel the push belongs to (empty for connection-level pushes).
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
    /// A publication in the channel. The JSON and proto name is `pub`.
    #[prost(message, optional, tag = "4")]
    #[serde(
        rename = "pub",
        skip_serializing_if = "is_default",
        deserialize_with = "nullable"
    )]
    pub publication: Option<Publication>,
    /// A client joined the channel.
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub join: Option<Join>,
    /// A client left the channel.
    #[prost(message, optional, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub leave: Option<Leave>,
    /// The server unsubscribed the client from the channel.
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub unsubscribe: Option<Unsubscribe>,
    /// An asynchronous message to this connection.
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub message: Option<Message>,
    /// The server subscribed the client to the channel (server-side subscription).
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub subscribe: Option<Subscribe>,
    /// Connection established (unidirectional transports).
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub connect: Option<Connect>,
    /// The server disconnects the client (unidirectional transports; WebSocket uses the close frame).
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub disconnect: Option<Disconnect>,
    /// Connection expiry changed (unidirectional transports).
    #[prost(message, optional, tag = "12")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub refresh: Option<Refresh>,
}

/// A shared compression dictionary for a connection (connection-level
/// dictionary compression, negotiated through [`ConnectRequest::flag`]).
///
/// This crate carries the message but does not implement that framing (a
/// one-byte codec marker in front of every frame after the connect reply), so a
/// server using this crate must not enable the feature.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Dictionary {
    /// Identifier of the dictionary content (first 12 bytes of its SHA-256, base64url without padding).
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub id: String,
    /// DEFLATE-compressed dictionary content, set on protobuf connections.
    #[prost(bytes = "bytes", tag = "2")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
    /// The same content in base64, set on JSON connections.
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub data_b64: String,
}

/// Information about a client connection, in presence, join/leave and publications.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientInfo {
    /// User id (empty for anonymous). Always written in JSON.
    #[prost(string, tag = "1")]
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    /// Client (connection) id. Always written in JSON.
    #[prost(string, tag = "2")]
    #[serde(deserialize_with = "nullable")]
    pub client: String,
    /// Connection info attached at connect (raw JSON on JSON connections).
    #[prost(bytes = "bytes", tag = "3")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub conn_info: Bytes,
    /// Channel info attached at subscribe (raw JSON on JSON connections).
    #[prost(bytes = "bytes", tag = "4")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub chan_info: Bytes,
}

/// A publication in a channel.
///
/// Reserved proto field numbers: 1, 2, 3 (protocol v1 `seq`, `gen`, `uid`).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Publication {
    /// The payload (raw JSON on JSON connections).
    #[prost(bytes = "bytes", tag = "4")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
    /// The publisher, usually set only for publications made by clients.
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub info: Option<ClientInfo>,
    /// Position in the channel's history stream; the epoch is in [`SubscribeResult::epoch`].
    #[prost(uint64, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub offset: u64,
    /// Tags attached to the publication.
    #[prost(btree_map = "string, string", tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub tags: BTreeMap<String, String>,
    /// `data` is a delta against the previous publication's data.
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub delta: bool,
    /// Publication time as Unix milliseconds (optional).
    #[prost(int64, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub time: i64,
    /// Channel the publication came from, for wildcard subscriptions.
    #[prost(string, tag = "10")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
    /// Key of the item (keyed/map channels).
    #[prost(string, tag = "11")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub key: String,
    /// The publication removes the item under `key`.
    #[prost(bool, tag = "12")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub removed: bool,
    /// Score used to order items.
    #[prost(sint64, tag = "13")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub score: i64,
    /// Epoch of the stream (optional).
    #[prost(string, tag = "14")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub epoch: String,
    /// Previous data, used to compute deltas during broker fan-out.
    #[prost(bytes = "bytes", tag = "15")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub prev_data: Bytes,
    /// Version of the item.
    #[prost(uint64, tag = "16")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub version: u64,
}

/// A client joined a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Join {
    /// The client that joined.
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub info: Option<ClientInfo>,
}

/// A client left a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Leave {
    /// The client that left.
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub info: Option<ClientInfo>,
}

/// The server unsubscribed the client from a channel. See [`UnsubscribeCode`](crate::UnsubscribeCode).
///
/// Reserved proto field numbers: 1 (protocol v1 `resubscribe`).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Unsubscribe {
    /// Unsubscribe code; codes >= 2500 make the client resubscribe.
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub code: u32,
    /// Short human-readable reason.
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub reason: String,
}

/// The server subscribed the client to a channel (server-side subscription).
///
/// Reserved proto field numbers: 2, 3 (protocol v1 `seq`, `gen`).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Subscribe {
    /// The channel keeps a history stream the client can recover from.
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub recoverable: bool,
    /// Epoch of the stream.
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub epoch: String,
    /// Current offset of the stream.
    #[prost(uint64, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub offset: u64,
    /// The server tracks the client's stream position.
    #[prost(bool, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub positioned: bool,
    /// Custom data for the client.
    #[prost(bytes = "bytes", tag = "7")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
}

/// An asynchronous message from the server to this connection.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Message {
    /// The payload.
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
}

/// Connection established: the push form of [`ConnectResult`], for unidirectional transports.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Connect {
    /// Client (connection) id assigned by the server.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub client: String,
    /// Server version.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub version: String,
    /// Custom data for the client.
    #[prost(bytes = "bytes", tag = "3")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
    /// Server-side subscriptions, by channel.
    #[prost(btree_map = "string, message", tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub subs: BTreeMap<String, SubscribeResult>,
    /// The connection expires and must be refreshed.
    #[prost(bool, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub expires: bool,
    /// Seconds until the connection expires.
    #[prost(uint32, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ttl: u32,
    /// Server ping interval in seconds.
    #[prost(uint32, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ping: u32,
    /// The client must answer pings with pongs.
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub pong: bool,
    /// Session id (for the emulation endpoint).
    #[prost(string, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub session: String,
    /// Node the client is connected to.
    #[prost(string, tag = "10")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub node: String,
    /// Server time as Unix milliseconds (not sent by default).
    #[prost(int64, tag = "11")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub time: i64,
}

/// The server disconnects the client. On WebSocket the same code and reason go
/// in the close frame instead (see [`Disconnect::close_frame`]); the push is for
/// unidirectional transports. See [`DisconnectCode`](crate::DisconnectCode).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Disconnect {
    /// Disconnect code.
    #[prost(uint32, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub code: u32,
    /// Short human-readable reason.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub reason: String,
    /// The client should reconnect (SDKs derive this from the code).
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub reconnect: bool,
}

/// The connection's expiry changed (push form of [`RefreshResult`]).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct Refresh {
    /// The connection expires.
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub expires: bool,
    /// Seconds until the connection expires.
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ttl: u32,
}

/// Authenticates the connection: the first command of every connection.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectRequest {
    /// Connection token (JWT in Centrifugo).
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub token: String,
    /// Custom data for the server (passed to a connect proxy).
    #[prost(bytes = "bytes", tag = "2")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
    /// Subscriptions to make during connect (recovery of server-side subscriptions), by channel.
    #[prost(btree_map = "string, message", tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub subs: BTreeMap<String, SubscribeRequest>,
    /// Client SDK name, e.g. `js`.
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub name: String,
    /// Client SDK version.
    #[prost(string, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub version: String,
    /// Headers for the emulated HTTP request (headers emulation).
    #[prost(btree_map = "string, string", tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub headers: BTreeMap<String, String>,
    /// Bitmask of connection-level features the client supports.
    #[prost(int64, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub flag: i64,
    /// Application context the connection belongs to (a hint, untrusted).
    #[prost(string, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub profile: String,
    /// Id of the compression dictionary the client already holds.
    #[prost(string, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub dict: String,
}

/// Result of a connect command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectResult {
    /// Client (connection) id assigned by the server.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub client: String,
    /// Server version.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub version: String,
    /// The connection expires and must be refreshed.
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub expires: bool,
    /// Seconds until the connection expires.
    #[prost(uint32, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ttl: u32,
    /// Custom data for the client.
    #[prost(bytes = "bytes", tag = "5")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
    /// Server-side subscriptions, by channel.
    #[prost(btree_map = "string, message", tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub subs: BTreeMap<String, SubscribeResult>,
    /// Server ping interval in seconds; the client treats a longer silence as a dead connection.
    #[prost(uint32, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ping: u32,
    /// The client must answer each ping with an empty command.
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub pong: bool,
    /// Session id (for the emulation endpoint).
    #[prost(string, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub session: String,
    /// Node the client is connected to.
    #[prost(string, tag = "10")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub node: String,
    /// Server time as Unix milliseconds (not sent by default).
    #[prost(int64, tag = "11")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub time: i64,
    /// Connection-level features the server enabled (subset of [`ConnectRequest::flag`]).
    #[prost(int64, tag = "12")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub flag: i64,
    /// Compression dictionary, when dictionary compression is enabled.
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub dict: Option<Dictionary>,
}

/// Refreshes the connection token.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    /// New connection token.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub token: String,
}

/// Result of a refresh command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshResult {
    /// Client id.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub client: String,
    /// Server version.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub version: String,
    /// The connection expires.
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub expires: bool,
    /// Seconds until the connection expires.
    #[prost(uint32, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ttl: u32,
}

/// Subscribes to a channel.
///
/// Reserved proto field numbers: 4, 5 (protocol v1 `seq`, `gen`).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
    /// Subscription token, for channels that need one.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub token: String,
    /// Recover missed publications since `epoch`/`offset`.
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub recover: bool,
    /// Epoch of the last known stream position.
    #[prost(string, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub epoch: String,
    /// Offset of the last received publication.
    #[prost(uint64, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub offset: u64,
    /// Custom data for the server (passed to a subscribe proxy).
    #[prost(bytes = "bytes", tag = "8")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
    /// Ask for a positioned subscription.
    #[prost(bool, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub positioned: bool,
    /// Ask for a recoverable subscription.
    #[prost(bool, tag = "10")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub recoverable: bool,
    /// Ask for join/leave pushes.
    #[prost(bool, tag = "11")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub join_leave: bool,
    /// Delta compression format the client wants (`fossil`).
    #[prost(string, tag = "12")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub delta: String,
    /// Server-side filter on publication tags.
    #[prost(message, optional, tag = "13")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub tf: Option<FilterNode>,
    /// Subscription-level feature flags.
    #[prost(int64, tag = "14")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub flag: i64,
    /// Subscription type (0 = stream).
    #[prost(int32, tag = "15")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub r#type: i32,
    /// Requested phase (LIVE = 0, STREAM = 1, STATE = 2).
    #[prost(int32, tag = "16")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub phase: i32,
    /// Page cursor for state pagination.
    #[prost(string, tag = "17")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub cursor: String,
    /// Page size for state pagination.
    #[prost(int32, tag = "18")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub limit: i32,
    /// Ascending order for state pagination.
    #[prost(bool, tag = "19")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub asc: bool,
}

/// Result of a subscribe command.
///
/// Reserved proto field numbers: 4, 5 (protocol v1 `seq`, `gen`).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeResult {
    /// The subscription expires and must be refreshed.
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub expires: bool,
    /// Seconds until the subscription expires.
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ttl: u32,
    /// The channel keeps a history stream the client can recover from.
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub recoverable: bool,
    /// Epoch of the stream.
    #[prost(string, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub epoch: String,
    /// Publications recovered since the requested position.
    #[prost(message, repeated, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub publications: Vec<Publication>,
    /// All missed publications were recovered.
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub recovered: bool,
    /// Current offset of the stream.
    #[prost(uint64, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub offset: u64,
    /// The server tracks the client's stream position.
    #[prost(bool, tag = "10")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub positioned: bool,
    /// Custom data for the client.
    #[prost(bytes = "bytes", tag = "11")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
    /// The client asked for recovery.
    #[prost(bool, tag = "12")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub was_recovering: bool,
    /// Delta compression is on for this subscription.
    #[prost(bool, tag = "13")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub delta: bool,
    /// Numeric channel id the server uses in later pushes instead of the name.
    #[prost(int64, tag = "14")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub id: i64,
    /// Subscription type, echoed back.
    #[prost(int32, tag = "15")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub r#type: i32,
    /// Phase of the result (LIVE = 0, STREAM = 1, STATE = 2).
    #[prost(int32, tag = "16")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub phase: i32,
    /// Next page cursor (empty on the last page).
    #[prost(string, tag = "17")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub cursor: String,
    /// Channel state entries.
    #[prost(message, repeated, tag = "18")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub state: Vec<Publication>,
    /// If non-zero, the SDK debounces publications to this channel by this many milliseconds.
    #[prost(uint32, tag = "19")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub publish_debounce: u32,
}

/// A key and its version, in a [`TrackBatch`].
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyedItem {
    /// Item key.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub key: String,
    /// Current version of the item for this connection.
    #[prost(uint64, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub version: u64,
}

/// A signed set of keys to track, in a [`SubRefreshRequest`].
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct TrackBatch {
    /// HMAC over issue time, expiry, user, channel and keys.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub signature: String,
    /// The full key set the signature covers.
    #[prost(message, repeated, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub items: Vec<KeyedItem>,
}

/// Refreshes a subscription token (type 0) or tracks/untracks keys (types 1 and 2).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SubRefreshRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
    /// New subscription token.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub token: String,
    /// 0 = refresh, 1 = track, 2 = untrack.
    #[prost(int32, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub r#type: i32,
    /// Batches to track (type 1).
    #[prost(message, repeated, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub track: Vec<TrackBatch>,
    /// Keys to untrack (type 2).
    #[prost(string, repeated, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub untrack: Vec<String>,
}

/// Result of a sub_refresh command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SubRefreshResult {
    /// The subscription expires.
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub expires: bool,
    /// Seconds until expiry (type 1: the minimum over all batches).
    #[prost(uint32, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub ttl: u32,
    /// Current items for tracked keys.
    #[prost(message, repeated, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub items: Vec<Publication>,
}

/// Unsubscribes from a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsubscribeRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
}

/// Result of an unsubscribe command (empty).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsubscribeResult {}

/// Publishes into a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
    /// The payload.
    #[prost(bytes = "bytes", tag = "2")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
    /// 0 = regular publication, 1 = map publication.
    #[prost(int32, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub r#type: i32,
    /// Map publication: key to publish or remove.
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub key: String,
    /// Map publication: remove the key.
    #[prost(bool, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub removed: bool,
}

/// Result of a publish command (empty).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishResult {}

/// Asks who is in a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
}

/// Result of a presence command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceResult {
    /// Clients in the channel, by client id. Always written in JSON.
    #[prost(btree_map = "string, message", tag = "1")]
    #[serde(deserialize_with = "nullable")]
    pub presence: BTreeMap<String, ClientInfo>,
}

/// Asks how many clients and users are in a channel.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceStatsRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
}

/// Result of a presence_stats command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceStatsResult {
    /// Number of connections. Always written in JSON.
    #[prost(uint32, tag = "1")]
    #[serde(deserialize_with = "nullable")]
    pub num_clients: u32,
    /// Number of distinct users. Always written in JSON.
    #[prost(uint32, tag = "2")]
    #[serde(deserialize_with = "nullable")]
    pub num_users: u32,
}

/// A position in a channel's history stream.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamPosition {
    /// Offset of a publication.
    #[prost(uint64, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub offset: u64,
    /// Epoch of the stream; a different epoch means the stream was reset.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub epoch: String,
}

/// Reads a channel's history stream.
///
/// Reserved proto field numbers: 2..=6 (protocol v1 fields).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryRequest {
    /// Channel name.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub channel: String,
    /// Maximum number of publications; 0 returns only the stream top, -1 means no limit.
    #[prost(int32, tag = "7")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub limit: i32,
    /// Return publications after this position.
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub since: Option<StreamPosition>,
    /// Iterate from newest to oldest.
    #[prost(bool, tag = "9")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub reverse: bool,
}

/// Result of a history command.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryResult {
    /// The publications. Always written in JSON.
    #[prost(message, repeated, tag = "1")]
    #[serde(deserialize_with = "nullable")]
    pub publications: Vec<Publication>,
    /// Epoch of the stream. Always written in JSON.
    #[prost(string, tag = "2")]
    #[serde(deserialize_with = "nullable")]
    pub epoch: String,
    /// Current top offset of the stream. Always written in JSON.
    #[prost(uint64, tag = "3")]
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
}

/// Client-initiated ping (empty).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PingRequest {}

/// Result of a ping command (empty).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct PingResult {}

/// A remote procedure call. The proto name is `RPCRequest`.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcRequest {
    /// Call payload.
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
    /// Method name (optional).
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub method: String,
}

/// Result of an rpc command. The proto name is `RPCResult`.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcResult {
    /// Result payload.
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
}

/// An asynchronous message to the server (no reply).
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct SendRequest {
    /// The payload.
    #[prost(bytes = "bytes", tag = "1")]
    #[serde(skip_serializing_if = "Bytes::is_empty", with = "raw_json")]
    pub data: Bytes,
}

/// A node of a server-side publication filter on tags ([`SubscribeRequest::tf`]).
///
/// `op` is empty for a comparison leaf, or `and`, `or`, `not` over `nodes`.
#[derive(Clone, PartialEq, ::prost::Message, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterNode {
    /// Empty for a leaf, else `and`, `or` or `not`.
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub op: String,
    /// Tag key compared by a leaf.
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub key: String,
    /// Leaf comparison: eq, neq, in, nin, ex, nex, sw, ew, ct, lt, lte, gt, gte.
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub cmp: String,
    /// Value for single-value comparisons.
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub val: String,
    /// Values for `in` and `nin`.
    #[prost(string, repeated, tag = "5")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub vals: Vec<String>,
    /// Child nodes of `and`, `or`, `not`.
    #[prost(message, repeated, tag = "6")]
    #[serde(skip_serializing_if = "is_default", deserialize_with = "nullable")]
    pub nodes: Vec<FilterNode>,
}

/// The request method of a [`Command`], in proto field order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Method {
    /// [`Command::connect`].
    Connect,
    /// [`Command::subscribe`].
    Subscribe,
    /// [`Command::unsubscribe`].
    Unsubscribe,
    /// [`Command::publish`].
    Publish,
    /// [`Command::presence`].
    Presence,
    /// [`Command::presence_stats`].
    PresenceStats,
    /// [`Command::history`].
    History,
    /// [`Command::ping`].
    Ping,
    /// [`Command::send`].
    Send,
    /// [`Command::rpc`].
    Rpc,
    /// [`Command::refresh`].
    Refresh,
    /// [`Command::sub_refresh`].
    SubRefresh,
}

impl Method {
    /// The proto/JSON field name, e.g. `presence_stats`; fit for a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Subscribe => "subscribe",
            Self::Unsubscribe => "unsubscribe",
            Self::Publish => "publish",
            Self::Presence => "presence",
            Self::PresenceStats => "presence_stats",
            Self::History => "history",
            Self::Ping => "ping",
            Self::Send => "send",
            Self::Rpc => "rpc",
            Self::Refresh => "refresh",
            Self::SubRefresh => "sub_refresh",
        }
    }
}

/// The request a [`Command`] carries, borrowed from it (see [`Command::request`]).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Request<'a> {
    /// Connect.
    Connect(&'a ConnectRequest),
    /// Subscribe.
    Subscribe(&'a SubscribeRequest),
    /// Unsubscribe.
    Unsubscribe(&'a UnsubscribeRequest),
    /// Publish.
    Publish(&'a PublishRequest),
    /// Presence.
    Presence(&'a PresenceRequest),
    /// Presence stats.
    PresenceStats(&'a PresenceStatsRequest),
    /// History.
    History(&'a HistoryRequest),
    /// Client-initiated ping.
    Ping(&'a PingRequest),
    /// Asynchronous message.
    Send(&'a SendRequest),
    /// Remote procedure call.
    Rpc(&'a RpcRequest),
    /// Connection token refresh.
    Refresh(&'a RefreshRequest),
    /// Subscription token refresh.
    SubRefresh(&'a SubRefreshRequest),
}

impl Request<'_> {
    /// The method of this request.
    pub fn method(&self) -> Method {
        match self {
            Self::Connect(_) => Method::Connect,
            Self::Subscribe(_) => Method::Subscribe,
            Self::Unsubscribe(_) => Method::Unsubscribe,
            Self::Publish(_) => Method::Publish,
            Self::Presence(_) => Method::Presence,
            Self::PresenceStats(_) => Method::PresenceStats,
            Self::History(_) => Method::History,
            Self::Ping(_) => Method::Ping,
            Self::Send(_) => Method::Send,
            Self::Rpc(_) => Method::Rpc,
            Self::Refresh(_) => Method::Refresh,
            Self::SubRefresh(_) => Method::SubRefresh,
        }
    }
}

impl Command {
    /// The first request field that is set, in proto field order, or `None`
    /// for a command without a request (a pong when `id` is zero).
    pub fn request(&self) -> Option<Request<'_>> {
        self.requests().next()
    }

    /// The method of [`Command::request`].
    pub fn method(&self) -> Option<Method> {
        self.request().map(|r| r.method())
    }

    /// How many request fields are set. The protocol allows one; a server may
    /// answer a command with more with [`ErrorCode::BAD_REQUEST`](crate::ErrorCode::BAD_REQUEST).
    pub fn request_count(&self) -> usize {
        self.requests().count()
    }

    fn requests(&self) -> impl Iterator<Item = Request<'_>> {
        [
            self.connect.as_ref().map(Request::Connect),
            self.subscribe.as_ref().map(Request::Subscribe),
            self.unsubscribe.as_ref().map(Request::Unsubscribe),
            self.publish.as_ref().map(Request::Publish),
            self.presence.as_ref().map(Request::Presence),
            self.presence_stats.as_ref().map(Request::PresenceStats),
            self.history.as_ref().map(Request::History),
            self.ping.as_ref().map(Request::Ping),
            self.send.as_ref().map(Request::Send),
            self.rpc.as_ref().map(Request::Rpc),
            self.refresh.as_ref().map(Request::Refresh),
            self.sub_refresh.as_ref().map(Request::SubRefresh),
        ]
        .into_iter()
        .flatten()
    }

    /// Whether this is the client's pong to a server ping.
    ///
    /// The SDKs answer a ping with an empty command (`{}` in JSON, a
    /// zero-length message in protobuf). Like Centrifuge, any command with
    /// `id == 0` that is not a `send` counts as a pong; every other command
    /// needs a non-zero id.
    pub fn is_pong(&self) -> bool {
        self.id == 0 && self.send.is_none()
    }
}

impl Reply {
    /// The server's ping: an empty reply (`{}` in JSON). See also
    /// [`crate::ping_frame`], which has it ready-encoded.
    pub fn ping() -> Self {
        Self::default()
    }

    /// Whether this reply is a ping (entirely empty).
    pub fn is_ping(&self) -> bool {
        *self == Self::default()
    }

    /// An error reply to the command with `id`.
    pub fn error(id: u32, error: impl Into<Error>) -> Self {
        Self {
            id,
            error: Some(error.into()),
            ..Self::default()
        }
    }

    /// A reply carrying an asynchronous push.
    pub fn from_push(push: Push) -> Self {
        Self {
            push: Some(push),
            ..Self::default()
        }
    }
}

impl From<Push> for Reply {
    fn from(push: Push) -> Self {
        Self::from_push(push)
    }
}

impl Push {
    fn on(channel: impl Into<String>) -> Self {
        Self {
            channel: channel.into(),
            ..Self::default()
        }
    }

    /// A publication in `channel`.
    pub fn publication(channel: impl Into<String>, publication: Publication) -> Self {
        Self {
            publication: Some(publication),
            ..Self::on(channel)
        }
    }

    /// A join to `channel`.
    pub fn join(channel: impl Into<String>, info: ClientInfo) -> Self {
        Self {
            join: Some(Join { info: Some(info) }),
            ..Self::on(channel)
        }
    }

    /// A leave from `channel`.
    pub fn leave(channel: impl Into<String>, info: ClientInfo) -> Self {
        Self {
            leave: Some(Leave { info: Some(info) }),
            ..Self::on(channel)
        }
    }

    /// The server unsubscribed the client from `channel`.
    pub fn unsubscribe(channel: impl Into<String>, unsubscribe: Unsubscribe) -> Self {
        Self {
            unsubscribe: Some(unsubscribe),
            ..Self::on(channel)
        }
    }

    /// The server subscribed the client to `channel`.
    pub fn subscribe(channel: impl Into<String>, subscribe: Subscribe) -> Self {
        Self {
            subscribe: Some(subscribe),
            ..Self::on(channel)
        }
    }

    /// An asynchronous message to the connection.
    pub fn message(data: Bytes) -> Self {
        Self {
            message: Some(Message { data }),
            ..Self::default()
        }
    }

    /// The server disconnects the client.
    pub fn disconnect(disconnect: Disconnect) -> Self {
        Self {
            disconnect: Some(disconnect),
            ..Self::default()
        }
    }
}
