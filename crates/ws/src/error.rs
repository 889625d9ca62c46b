//! The transport's error type.

use std::fmt;
use std::io;

use wshub_proto::handshake::HandshakeError;
use wshub_proto::SendError;

/// Why a WebSocket operation failed.
///
/// Kept small (the hot path returns `Result<Message, WsError>` for every
/// message): the larger payloads are boxed.
#[derive(Debug)]
#[non_exhaustive]
pub enum WsError {
    /// The connection failed in the protocol core: the peer broke the
    /// protocol (a close frame with the matching code was sent), it sent
    /// nothing within the keepalive timeout (close 1011), it did not answer
    /// our close frame in time ([`wshub_proto::Error::CloseTimeout`]), or
    /// the transport ended without a closing handshake
    /// ([`wshub_proto::Error::AbnormalClosure`]).
    Protocol(wshub_proto::Error),
    /// The transport (TCP or TLS) failed.
    Io(io::Error),
    /// The connection is closing or closed: no more messages may be sent.
    Closed,
    /// The write queue is over the high-water mark and
    /// [`Options::fail_fast_when_full`](crate::Options::fail_fast_when_full)
    /// is set. Nothing was queued; the connection is still usable.
    QueueFull,
    /// The TCP/TLS connect or the opening handshake did not finish in time.
    Timeout,
    /// The opening handshake failed: a malformed or oversized request
    /// (the server answered it with 400 or 431), or a response our client
    /// refused (including a status other than 101).
    Handshake(Box<HandshakeError>),
    /// Our server refused the handshake with this HTTP status (the
    /// response was sent): wrong version (426), wrong method (405), a
    /// failed `accept_with` check (e.g. 403), ...
    Rejected {
        /// The HTTP status sent.
        status: u16,
        /// The reason sent as the response body.
        reason: String,
    },
    /// The URL is not a usable `ws://` or `wss://` URL.
    InvalidUrl(String),
    /// TLS could not be set up: unreadable PEM, no usable key, an invalid
    /// server name, a rejected configuration.
    Tls(String),
    /// A command was refused before anything was queued: a ping payload
    /// or close reason too long, or a close code that may not be sent.
    Send(SendError),
    /// HTTP/2 (RFC 8441): the connection failed or refused the stream
    /// (GOAWAY, RST_STREAM, a broken frame), or the server does not allow
    /// WebSockets over it (it did not advertise
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL`).
    Http2(String),
    /// HTTP/3 (RFC 9220) or QUIC: the connection or its handshake failed
    /// (an untrusted certificate, no ALPN `h3`, a CONNECTION_CLOSE, an idle
    /// timeout), a stream was reset or broke the framing, or the server
    /// does not allow WebSockets over it (it did not advertise
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL`).
    Http3(String),
}

impl WsError {
    /// Whether the peer sent a message or frame over the size limits (the
    /// engine closed with 1009): a limit to count, not a broken peer.
    pub fn is_message_too_big(&self) -> bool {
        matches!(
            self,
            WsError::Protocol(
                wshub_proto::Error::MessageTooBig
                    | wshub_proto::Error::FrameTooBig
                    | wshub_proto::Error::TooManyFragments
            )
        )
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::Protocol(e) => write!(f, "websocket: {e}"),
            WsError::Io(e) => write!(f, "websocket transport: {e}"),
            WsError::Closed => f.write_str("websocket is closed"),
            WsError::QueueFull => f.write_str("websocket write queue is full"),
            WsError::Timeout => f.write_str("websocket connect or handshake timed out"),
            WsError::Handshake(e) => write!(f, "websocket handshake: {e}"),
            WsError::Rejected { status, reason } => {
                write!(
                    f,
                    "websocket handshake rejected with HTTP {status}: {reason}"
                )
            }
            WsError::InvalidUrl(why) => write!(f, "invalid websocket URL: {why}"),
            WsError::Tls(why) => write!(f, "TLS setup: {why}"),
            WsError::Send(e) => write!(f, "websocket command refused: {e}"),
            WsError::Http2(why) => write!(f, "websocket over HTTP/2: {why}"),
            WsError::Http3(why) => write!(f, "websocket over HTTP/3: {why}"),
        }
    }
}

/// The wrapped error's text is part of `Display`, so it is not repeated as a
/// `source` (a `{:#}` chain would print it twice); match on the variant to
/// reach the inner error.
impl std::error::Error for WsError {}

impl From<io::Error> for WsError {
    fn from(e: io::Error) -> Self {
        WsError::Io(e)
    }
}

impl From<wshub_proto::Error> for WsError {
    fn from(e: wshub_proto::Error) -> Self {
        WsError::Protocol(e)
    }
}

impl From<HandshakeError> for WsError {
    fn from(e: HandshakeError) -> Self {
        WsError::Handshake(Box::new(e))
    }
}

impl From<SendError> for WsError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Closed => WsError::Closed,
            other => WsError::Send(other),
        }
    }
}

impl From<h2::Error> for WsError {
    fn from(e: h2::Error) -> Self {
        if e.is_io() {
            if let Some(io) = e.into_io() {
                return WsError::Io(io);
            }
            return WsError::Http2("I/O error".into());
        }
        WsError::Http2(e.to_string())
    }
}

impl From<tokio::time::error::Elapsed> for WsError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        WsError::Timeout
    }
}

impl From<WsError> for io::Error {
    fn from(e: WsError) -> Self {
        match e {
            WsError::Io(e) => e,
            WsError::Timeout => io::Error::new(io::ErrorKind::TimedOut, e),
            WsError::Closed => io::Error::new(io::ErrorKind::NotConnected, e),
            other => io::Error::other(other),
        }
    }
}
