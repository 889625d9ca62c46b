//! Integration tests of `wshub-client` against a scripted fake
//! Centrifugo-protocol server (`fake`), one binary.

mod commands;
mod connect;
mod fake;
mod heartbeat;
mod reconnect;
mod recovery;
