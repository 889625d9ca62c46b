//! Interop tests: `wshub` and the wshub Rust client against WebSocket peers
//! that we did not write (Python `websockets`, Node `ws`).
//!
//! Every test spawns real processes on 127.0.0.1 with ephemeral ports; every
//! wait is bounded; every spawned process is killed when its guard drops. A
//! missing peer fails the test with the command that installs it (CI
//! installs them; see `tests/interop/`).

mod bench_cli;
mod browser;
mod browser_h2;
mod browser_pusher;
mod browser_transports;
mod browser_wt;
mod cluster;
mod connect_cli;
mod echo_strict;
mod fallback;
mod front_limits;
mod gateway_h2;
mod gateway_h3;
mod h2_hostile;
mod h2_node;
mod join_storm;
mod node_peer;
mod payload;
mod pusher;
mod pusher_hostile;
mod pusher_py;
mod python_peer;
mod rust_client;
mod sdk_interop;
mod serve_cli;
mod slow_consumer;
mod storm;
mod support;
