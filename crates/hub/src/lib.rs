//! # wshub-hub: the gateway core
//!
//! Transport-agnostic: channels, sessions, auth, limits, history and
//! presence through the [`broker::Broker`] trait. It knows nothing of
//! sockets or HTTP (that is `crates/server`), nor of the wire encoding
//! beyond the protocol types of `wshub-protocol`.

pub mod auth;
pub mod broker;
pub mod config;
