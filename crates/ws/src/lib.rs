//! # wshub-ws: the tokio transport for the wshub WebSocket engine
//!
//! This crate puts the sans-I/O core [`wshub_proto`] on tokio byte streams.
//! It owns: accepting ([`accept`], [`accept_with`], and [`upgrade`] for
//! hyper/axum services) and connecting ([`connect`] for `ws://` and
//! `wss://`, [`connect_on`] over any stream); WebSockets over HTTP/2
//! (RFC 8441: [`serve_http2`], [`Http2Connection`],
//! [`connect_prefer_http2`]); WebSockets over HTTP/3 (RFC 9220, on quinn
//! and h3: [`serve_http3`], [`Http3Connection`], [`Http3Client`]); TLS
//! with rustls
//! ([`tls_acceptor_from_pem`], [`TlsOptions`]); the timers (handshake
//! timeout, keepalive, close timeout, lingering close); the bounded write
//! queue with its high-water mark; and vectored writes, one per wakeup.
//!
//! It must not know about what runs on top: no gateway, channels,
//! sessions or client protocol. It never parses frames itself (that is the
//! core's job) and spawns no task for a WebSocket on its own socket: a
//! [`WebSocket`] does its I/O inside the calls you make, with no channel or
//! task per connection. HTTP/2 and HTTP/3 are the exception: their
//! connection is shared by its streams, so it runs on tasks (see
//! [`Http2Connection`], [`serve_http2`], [`Http3Client`] and
//! [`serve_http3`]). Split it
//! ([`WebSocket::split`]) to read and write from two tasks.
//!
//! Every `async fn` documents its cancel safety; [`WebSocket::recv`] is
//! cancel safe, so it can sit in `tokio::select!` next to a ticker or a
//! channel without losing a partly received frame.
//!
//! ```no_run
//! use wshub_ws::{accept, connect, ClientOptions, CloseCode, Message, ServerOptions};
//!
//! # async fn run() -> Result<(), wshub_ws::WsError> {
//! // An echo server.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//! tokio::spawn(async move {
//!     let opts = ServerOptions::default();
//!     while let Ok((tcp, _)) = listener.accept().await {
//!         let _ = tcp.set_nodelay(true);
//!         let opts = opts.clone();
//!         tokio::spawn(async move {
//!             let mut ws = accept(tcp, &opts).await?;
//!             while let Some(msg) = ws.recv().await {
//!                 ws.send(msg?).await?;
//!             }
//!             Ok::<_, wshub_ws::WsError>(())
//!         });
//!     }
//! });
//!
//! // A client.
//! let mut ws = connect("ws://127.0.0.1:9001/echo", &ClientOptions::default()).await?;
//! ws.send_text("hello").await?;
//! if let Some(Ok(Message::Text(t))) = ws.recv().await {
//!     assert_eq!(&*t, "hello");
//! }
//! ws.close(CloseCode::NORMAL, "bye").await?;
//! # Ok(()) }
//! ```
// No panic reachable from input: the release profile aborts on panic. Each
// remaining exception is a tiny `#[allow]` with a comment proving it cannot fire.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod client;
mod engine;
mod error;
mod http2;
mod http3;
mod options;
mod server;
mod split;
mod stream;
mod tls;
mod websocket;

pub use client::{connect, connect_on, connect_prefer_http2, ClientOptions};
pub use error::WsError;
pub use http2::{
    is_http2_preface, serve_http2, serve_http2_with, sniff_http2, Http2Connection, Http2Options,
    Http2Stream, Http2WebSocket, HTTP2_PREFACE,
};
pub use http3::{
    bind_http3, serve_http3, serve_http3_with, H3Connection, H3RequestStream, Http3Client,
    Http3Connection, Http3Options, Http3Request, Http3Stream, Http3WebSocket,
    Http3WebSocketRequest,
};
pub use options::Options;
pub use server::{
    accept, accept_with, is_extended_connect, upgrade, RejectResponse, ServerOptions, UpgradeFut,
    UpgradeResponse, UpgradedStream, UpgradedWebSocket,
};
pub use split::{WsReader, WsSender, WsWriter};
pub use stream::MaybeTlsStream;
pub use tls::{
    http3_tls_config_from_pem, tls_acceptor_from_pem, tls_acceptor_from_pem_h2, TlsOptions,
};
pub use websocket::WebSocket;

/// The protocol core this crate drives, re-exported for its types
/// (handshake options, limits, errors).
pub use wshub_proto as proto;
pub use wshub_proto::handshake::{reject, Rejection, RequestHead};
pub use wshub_proto::{
    CloseCode, Config, DeflateConfig, DeflateParams, KeepAlive, Limits, Message, Utf8Bytes,
};
