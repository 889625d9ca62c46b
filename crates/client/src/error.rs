//! The client's error types.

use std::sync::Arc;

/// Why a client operation failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered the command with an error (see
    /// [`wshub_protocol::ErrorCode`]).
    #[error("server error {code}: {message}")]
    Server {
        /// The error code.
        code: u32,
        /// The server's message.
        message: String,
        /// The server says that retrying may succeed.
        temporary: bool,
    },
    /// No reply within [`ClientConfig::timeout`](crate::ClientConfig::timeout).
    #[error("timed out waiting for the reply")]
    Timeout,
    /// The client is disconnected (call [`Client::connect`](crate::Client::connect)).
    #[error("client is disconnected")]
    Disconnected,
    /// The connection was lost after the command was sent; it may or may
    /// not have been applied.
    #[error("connection lost before the reply arrived")]
    ConnectionLost,
    /// The subscription is not subscribed.
    #[error("subscription is unsubscribed")]
    Unsubscribed,
    /// The client's background task is gone (the runtime shut down).
    #[error("client task is gone")]
    Closed,
    /// A subscription to this channel already exists on this client.
    #[error("a subscription to {0:?} already exists")]
    DuplicateSubscription(String),
    /// The command could not be encoded (a payload that is not JSON on a
    /// JSON connection).
    #[error("cannot encode the command: {0}")]
    Encode(String),
    /// The server sent something this client could not read.
    #[error("bad protocol: {0}")]
    Protocol(String),
    /// The WebSocket failed.
    #[error("transport: {0}")]
    Transport(Arc<wshub_ws::WsError>),
    /// The token callback failed.
    #[error("token: {0}")]
    Token(TokenError),
}

/// What a [`GetToken`](crate::GetToken) callback may fail with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The user may not connect: the client stops reconnecting and goes to
    /// disconnected with code [`codes::UNAUTHORIZED`](crate::codes::UNAUTHORIZED).
    #[error("unauthorized")]
    Unauthorized,
    /// Fetching failed (network, backend down): the client retries with backoff.
    #[error("{0}")]
    Failed(String),
}

impl From<wshub_protocol::Error> for Error {
    fn from(e: wshub_protocol::Error) -> Self {
        Error::Server {
            code: e.code,
            message: e.message,
            temporary: e.temporary,
        }
    }
}

impl From<wshub_ws::WsError> for Error {
    fn from(e: wshub_ws::WsError) -> Self {
        Error::Transport(Arc::new(e))
    }
}
