//! [`WebSocket`]: one connection over one byte stream, no tasks, no
//! channels.

use std::fmt;
use std::future::poll_fn;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use wshub_proto::{CloseCode, Connection, DeflateParams, Message};

use crate::engine::Core;
use crate::error::WsError;
use crate::options::Options;
use crate::split::{self, WsReader, WsWriter};

/// A WebSocket connection after the opening handshake, over any byte
/// stream (`TcpStream`, a TLS stream, a hyper upgrade, a duplex pipe).
///
/// It owns the stream and a [`wshub_proto::Connection`], and does all of
/// its work inside the calls you make: [`recv`](Self::recv) reads, answers
/// pings, runs keepalive and the closing handshake; [`send`](Self::send)
/// and [`flush`](Self::flush) write. No task or channel per connection.
/// Keepalive and automatic pongs happen only while a `recv` is pending, so
/// keep one pending (e.g. in `tokio::select!`, which is safe: see
/// [`recv`](Self::recv)) or [`split`](Self::split) the connection.
///
/// Obtain one with [`crate::accept`], [`crate::connect`], [`crate::upgrade`]
/// or, after a handshake done elsewhere, [`WebSocket::from_connection`].
pub struct WebSocket<S> {
    pub(crate) core: Core<S>,
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.core.conn)
            .field("protocol", &self.core.protocol)
            .finish_non_exhaustive()
    }
}

impl<S> WebSocket<S> {
    /// Wraps a stream on which a handshake has already been done
    /// elsewhere. `conn` carries the role, configuration and negotiated
    /// deflate parameters; `leftover` is whatever was read after the
    /// handshake head (it is WebSocket data). The high-water mark and
    /// fail-fast setting are [`Options`]' defaults; change them with
    /// [`set_high_water_mark`](Self::set_high_water_mark) and
    /// [`set_fail_fast_when_full`](Self::set_fail_fast_when_full).
    pub fn from_connection(stream: S, conn: Connection, leftover: &[u8]) -> Self {
        let d = Options::default();
        WebSocket {
            core: Core::new(
                stream,
                conn,
                leftover,
                None,
                d.high_water_mark,
                d.fail_fast_when_full,
            ),
        }
    }

    pub(crate) fn with_options(
        stream: S,
        conn: Connection,
        leftover: &[u8],
        protocol: Option<String>,
        opts: &Options,
    ) -> Self {
        WebSocket {
            core: Core::new(
                stream,
                conn,
                leftover,
                protocol,
                opts.high_water_mark,
                opts.fail_fast_when_full,
            ),
        }
    }

    /// Records the subprotocol a handshake done elsewhere agreed on, for
    /// [`protocol`](Self::protocol).
    pub fn with_protocol(mut self, protocol: Option<String>) -> Self {
        self.core.protocol = protocol;
        self
    }

    /// Sets the write-queue high-water mark (see
    /// [`Options::high_water_mark`]).
    pub fn set_high_water_mark(&mut self, bytes: usize) {
        self.core.set_high_water_mark(bytes);
    }

    /// Sets whether [`feed`](Self::feed) fails over the high-water mark
    /// (see [`Options::fail_fast_when_full`]).
    pub fn set_fail_fast_when_full(&mut self, v: bool) {
        self.core.set_fail_fast(v);
    }

    /// What the peer sent in its close frame (code and reason), once it
    /// closed. `None` while open, or if the connection ended without a
    /// close frame from the peer.
    pub fn close_info(&self) -> Option<(Option<CloseCode>, String)> {
        self.core.close_info()
    }

    /// The subprotocol agreed on in the opening handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.core.protocol.as_deref()
    }

    /// The permessage-deflate parameters agreed on, if compression is on.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.core.deflate()
    }

    /// Whether messages may still be sent (no close frame sent or received,
    /// the transport has not failed).
    pub fn is_open(&self) -> bool {
        self.core.is_open()
    }

    /// Bytes queued for the socket and not yet written.
    pub fn buffered_out(&self) -> usize {
        self.core.conn.buffered_out()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.core.stream
    }

    /// Queues a message without writing it (see [`flush`](Self::flush)).
    ///
    /// Over the high-water mark this fails with [`WsError::QueueFull`] when
    /// [`Options::fail_fast_when_full`] is set; otherwise it queues, and the
    /// next flush or send waits for the queue to drain. A single message
    /// larger than the mark is accepted when the queue is empty.
    pub fn feed(&mut self, msg: Message) -> Result<(), WsError> {
        self.core.feed(msg)
    }

    /// Queues a frame encoded once with [`wshub_proto::encode_frame`] and
    /// shared between many connections (broadcast): the bytes are neither
    /// copied nor re-framed. Same queue rules as [`feed`](Self::feed).
    ///
    /// # Panics
    ///
    /// On a client connection: clients must mask every frame themselves.
    pub fn feed_encoded(&mut self, frame: Bytes) -> Result<(), WsError> {
        self.core.feed_encoded(frame)
    }

    /// Starts the closing handshake without waiting for it: queues a close
    /// frame with `code` and `reason` (at most 123 bytes). Keep calling
    /// [`recv`](Self::recv): it returns the messages the peer sent before
    /// its close, then `None` once the handshake is over (or an error when
    /// the peer does not answer within `limits.close_timeout`). The frame is
    /// written by the next `flush` or `recv`.
    pub fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), WsError> {
        self.core.start_close(code, reason)
    }

    /// Splits into a reader and a writer that may be used from two tasks.
    ///
    /// Whichever half is being polled does the connection's I/O: the
    /// reader answers pings and echoes the peer's close even while the
    /// writer is idle; [`WsWriter::close`] completes the closing handshake
    /// even if the reader is not polled (messages that arrive meanwhile
    /// are kept for the reader, up to the high-water mark).
    pub fn split(self) -> (WsReader<S>, WsWriter<S>) {
        split::split(self.core)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// The next data message.
    ///
    /// Pings are answered (the pong is flushed), pongs are consumed, a
    /// keepalive ping goes out when due, and a close from the peer is
    /// echoed. Returns `None` once the connection is over after a closing
    /// handshake (the peer's close frame was received, or ours was
    /// answered) and the transport is closed; `Some(Err(_))` once if it
    /// failed instead (protocol error, keepalive timeout, EOF without a
    /// close frame: [`WsError::Protocol`]; socket error: [`WsError::Io`]),
    /// then `None`.
    ///
    /// **Cancel safety:** cancel safe. All state (including a partly
    /// received frame) lives in `self`; dropping the future, e.g. when
    /// another `select!` branch wins, loses nothing.
    pub async fn recv(&mut self) -> Option<Result<Message, WsError>> {
        poll_fn(|cx| self.core.poll_recv(cx)).await
    }

    /// A message already received and buffered, without any I/O; `None`
    /// if none is complete (or the connection is over).
    ///
    /// Useful to drain a burst before one [`flush`](Self::flush):
    /// `recv().await`, then `try_recv()` in a loop, feeding the answers.
    /// After it returns an error, the close frame is queued behind what was
    /// fed before: `flush`, then call `recv` until `None` to finish the
    /// closing handshake (dropping the socket instead loses both).
    pub fn try_recv(&mut self) -> Option<Result<Message, WsError>> {
        self.core.try_recv()
    }

    /// Queues a message and flushes the queue.
    ///
    /// Fails with [`WsError::Closed`] once a close frame was sent or
    /// received, with [`WsError::QueueFull`] in fail-fast mode over the
    /// high-water mark (see [`feed`](Self::feed)).
    ///
    /// **Cancel safety:** if cancelled, the message may be queued and
    /// partly written; it is neither lost nor duplicated, and the next
    /// `flush`, `send` or `recv` writes the rest.
    pub async fn send(&mut self, msg: Message) -> Result<(), WsError> {
        self.core.feed(msg)?;
        self.flush().await
    }

    /// Sends a text message (copies `s` into the write queue).
    ///
    /// **Cancel safety:** as [`send`](Self::send).
    pub async fn send_text(&mut self, s: &str) -> Result<(), WsError> {
        self.core.feed_text(s)?;
        self.flush().await
    }

    /// Sends a binary message (copies `b` into the write queue).
    ///
    /// **Cancel safety:** as [`send`](Self::send).
    pub async fn send_binary(&mut self, b: &[u8]) -> Result<(), WsError> {
        self.core.feed_binary(b)?;
        self.flush().await
    }

    /// Sends a pre-encoded frame (see [`feed_encoded`](Self::feed_encoded))
    /// and flushes.
    ///
    /// **Cancel safety:** as [`send`](Self::send).
    ///
    /// # Panics
    ///
    /// On a client connection.
    pub async fn send_encoded(&mut self, frame: Bytes) -> Result<(), WsError> {
        self.core.feed_encoded(frame)?;
        self.flush().await
    }

    /// Writes everything queued: one vectored write (up to 64 slices) per
    /// wakeup, looping on partial writes, until the queue is empty.
    ///
    /// **Cancel safety:** if cancelled, some bytes may remain queued; they
    /// are written, in order, by the next `flush`, `send` or `recv`.
    pub async fn flush(&mut self) -> Result<(), WsError> {
        poll_fn(|cx| self.core.poll_flush(cx)).await
    }

    /// Sends a ping (payload at most 125 bytes). The pong is consumed by
    /// [`recv`](Self::recv).
    ///
    /// **Cancel safety:** as [`send`](Self::send).
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), WsError> {
        self.core.feed_ping(payload)?;
        self.flush().await
    }

    /// Closes the connection: sends a close frame with `code` and `reason`
    /// (at most 123 bytes), waits for the peer's close frame (at most
    /// `limits.close_timeout`, then [`wshub_proto::Error::CloseTimeout`]),
    /// and closes the transport (a server half-closes first and waits for
    /// the client's EOF; a client waits for the server's). Messages that
    /// arrive meanwhile are kept for [`recv`](Self::recv).
    ///
    /// If the peer had already closed, this completes its closing
    /// handshake. Calling it again after the end returns the same result.
    ///
    /// **Cancel safety:** cancel safe: the close frame stays queued and the
    /// handshake continues with the next `recv` or `close`.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), WsError> {
        self.core.start_close(code, reason)?;
        poll_fn(|cx| self.core.poll_close(cx)).await
    }
}
