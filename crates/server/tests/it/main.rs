//! End-to-end tests of `wshub serve` over real sockets on 127.0.0.1: the
//! server runs in-process on port 0 and clients speak the Centrifugo
//! protocol by hand with `wshub_ws::connect`.

mod api;
mod client_protocol;
mod http_timeouts;
mod jwks;
mod limits;
mod metrics;
mod support;
mod tls;
mod unsupported;
