//! Errors of the connection core. Each maps to the close code it is
//! answered with on the wire.

use std::fmt;

use crate::close::CloseCode;

/// Why the connection failed.
///
/// When [`crate::Connection::poll_event`] returns one of these, the
/// connection has already queued a close frame with [`Error::close_code`]
/// (when one may be sent) and is closed: flush the queued bytes, then close
/// the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke a framing rule (close 1002); the text says which.
    Protocol(&'static str),
    /// A text message or close reason was not valid UTF-8 (close 1007).
    InvalidUtf8,
    /// A compressed message was not a valid deflate stream (close 1007).
    InvalidCompressedData,
    /// A frame was larger than `Limits::max_frame_size` (close 1009).
    FrameTooBig,
    /// A message was larger than `Limits::max_message_size`, counted after
    /// inflate (close 1009).
    MessageTooBig,
    /// A message had more than `Limits::max_fragments` frames (close 1009).
    TooManyFragments,
    /// No pong or other traffic arrived within the keepalive timeout
    /// (close 1011).
    KeepaliveTimeout,
    /// The peer did not answer our close frame within the close timeout.
    CloseTimeout,
    /// The transport ended without a closing handshake (1006).
    AbnormalClosure,
    /// An internal invariant of the engine did not hold (close 1011); the
    /// text says which. It is a bug if this is ever seen: it takes the place
    /// of a panic, so one connection fails and not the process.
    Internal(&'static str),
}

impl Error {
    /// The close code that reports this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::Protocol(_) => CloseCode::PROTOCOL,
            Error::InvalidUtf8 | Error::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            Error::FrameTooBig | Error::MessageTooBig | Error::TooManyFragments => {
                CloseCode::TOO_BIG
            }
            Error::KeepaliveTimeout | Error::Internal(_) => CloseCode::INTERNAL,
            Error::CloseTimeout | Error::AbnormalClosure => CloseCode::ABNORMAL,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(why) => write!(f, "protocol error: {why}"),
            Error::InvalidUtf8 => f.write_str("invalid UTF-8 in a text message or close reason"),
            Error::InvalidCompressedData => f.write_str("invalid compressed data"),
            Error::FrameTooBig => f.write_str("frame too big"),
            Error::MessageTooBig => f.write_str("message too big"),
            Error::TooManyFragments => f.write_str("too many fragments in one message"),
            Error::KeepaliveTimeout => f.write_str("keepalive timeout: no pong from peer"),
            Error::CloseTimeout => f.write_str("the peer did not complete the closing handshake"),
            Error::AbnormalClosure => f.write_str("connection closed without a closing handshake"),
            Error::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Why a send command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was already sent or received; no more data may go out.
    Closed,
    /// The close code may not be sent on the wire (see
    /// [`CloseCode::is_sendable`]).
    InvalidCloseCode,
    /// A control frame payload (ping, pong, close code plus reason) is over
    /// 125 bytes.
    ControlTooLong,
    /// The compressor reported a broken stream (zlib does not for a stream
    /// driven as this engine does; it takes the place of a panic). Nothing
    /// was queued; close the connection.
    Compression,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closed => "the connection is closing or closed",
            SendError::InvalidCloseCode => "close code not allowed on the wire",
            SendError::ControlTooLong => "control frame payload over 125 bytes",
            SendError::Compression => "the compressor failed",
        })
    }
}

impl std::error::Error for SendError {}
