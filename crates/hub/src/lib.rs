//! # wshub-hub: the gateway core
//!
//! Transport-agnostic: channels, sessions, auth, limits, history and
//! presence through the [`broker::Broker`] trait. It knows nothing of
//! sockets, HTTP or WebSocket framing (that is `crates/server`), nor of the
//! wire encoding beyond the protocol codec of `wshub-protocol`. See
//! ARCHITECTURE.md at the repository root for the paths of a command and a
//! publication and the invariants.
//!
//! - [`node::Node`]: one gateway process — config, broker, token verifiers,
//!   metrics — and the fan-out of broker events (each publication encoded
//!   once per encoding, the bytes shared by every local subscriber).
//! - [`fanout`]: the delivery workers (one thread per core) that queue a
//!   broker event's encoded bytes to the subscribers, one chunk of a
//!   channel's subscriber snapshot per job, off the broker's delivery task.
//! - [`hub::Hub`]: channel → local subscribers in 64 shards (no global
//!   lock on the publish path; copy-on-write chunked subscriber sets).
//! - [`outbound::ClientHandle`]: a session's outbound queue of encoded
//!   protocol messages with byte accounting (over `client.queue_max_size`
//!   → disconnect 3008 slow), and [`outbound::Control`], the actions the
//!   node asks a session to take.
//! - [`session::Session`]: the per-connection state machine of the
//!   Centrifugo client protocol (connect, subscribe with recovery, publish,
//!   presence, history, refresh, ...), sans-I/O: the bytes of a transport
//!   message in, encoded protocol messages out, time passed in; it owns
//!   heartbeats, expiry, limits and the slow-consumer policy, so a
//!   transport adapter ([`session::TransportInfo`]) only moves bytes.
//! - [`emulation`]: the client-to-server half of the one-way transports
//!   (HTTP-streaming, SSE): session ids, the per-session command queues,
//!   and forwarding to the node that holds a session through the broker.
//! - [`api`]: the Centrifugo server API methods, as JSON in/out.
//! - [`limits`]: token buckets and the per-IP connection table.
//! - [`metrics`]: the node's metrics on `prometheus-client` — one registry
//!   per node, typed label sets, handles resolved at start so that recording
//!   is an atomic add (no lock, no lookup, no allocation), lock-free
//!   histograms — and the broker wrapper that counts failed broker calls.
//! - [`auth`], [`broker`]: tokens and brokers.
//!
//! The configuration is typed options from `wshub-config` ([`wshub_config::Config`]);
//! the hub reads no configuration file format.
// No panic reachable from input: the release profile aborts on panic. Each
// remaining exception is a tiny `#[allow]` with a comment proving it cannot fire.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
// No std lock is held across an await (fan-out, hub shards, handles and
// metrics all use short std locks); `sub_lock` is a tokio mutex on purpose.
#![deny(clippy::await_holding_lock, clippy::await_holding_refcell_ref)]

pub mod api;
pub mod auth;
pub mod broker;
pub mod cluster;
pub mod emulation;
pub mod fanout;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod outbound;
pub mod session;
