//! End-to-end tests of `wshub-client` against the real gateway
//! (`wshub-server` started in-process on 127.0.0.1:0 with the in-memory
//! broker), one binary. Every wait is bounded.

mod commands;
mod connect;
mod gaps;
mod lifecycle;
mod recovery;
mod support;
