//! # wshub-hub: the gateway core
//!
//! Transport-agnostic: channels, sessions, auth, limits, history and
//! presence through the [`broker::Broker`] trait. It knows nothing of
//! sockets or HTTP (that is `crates/server`), nor of the wire encoding
//! beyond the protocol types of `wshub-protocol`.
//!
//! - [`node::Node`]: one gateway process — config, broker, token verifiers,
//!   metrics — and the fan-out of broker events (each publication encoded
//!   once per encoding, the bytes shared by every local subscriber).
//! - [`hub::Hub`]: channel → local subscribers in 64 shards (no global
//!   lock on the publish path) and [`hub::ClientHandle`], a connection's
//!   outbound queue with byte accounting (over `client.queue_max_size` →
//!   disconnect 3008 slow).
//! - [`session::Session`]: the per-connection state machine of the
//!   Centrifugo client protocol (connect, subscribe with recovery, publish,
//!   presence, history, refresh, ...).
//! - [`api`]: the Centrifugo server HTTP API methods, as JSON in/out.
//! - [`limits`]: token buckets and the per-IP connection table.
//! - [`metrics`]: the node's metrics on `prometheus-client` — one registry
//!   per node, typed label sets, handles resolved at start so that recording
//!   is an atomic add (no lock, no lookup, no allocation), lock-free
//!   histograms — and the broker wrapper that counts failed broker calls.
//! - [`auth`], [`config`], [`broker`]: tokens, configuration, brokers.
// No panic reachable from input: the release profile aborts on panic. Each
// remaining exception is a tiny `#[allow]` with a comment proving it cannot fire.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod api;
pub mod auth;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod session;
