//! Integration tests of the tokio transport, over real sockets on
//! 127.0.0.1.

mod backpressure;
mod cancel;
mod close;
mod echo;
mod handshake;
mod http2;
mod http3;
mod hyper_upgrade;
mod keepalive;
mod split;
mod tls;
mod util;
