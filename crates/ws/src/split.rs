//! [`WsReader`] and [`WsWriter`]: the two halves of a split [`WebSocket`].
//!
//! Both share one driver behind a mutex that is held only for the length of
//! one non-blocking `poll_*` call. The stream is polled with a waker that
//! wakes both halves, so whichever half the socket's readiness (or a timer)
//! concerns gets to run even when the other polled last.

use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use wshub_proto::{CloseCode, DeflateParams, Message};

use crate::engine::Core;
use crate::error::WsError;
use crate::websocket::WebSocket;

/// Which half of a split stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Half {
    Reader,
    Writer,
}

impl Half {
    fn other(self) -> Half {
        match self {
            Half::Reader => Half::Writer,
            Half::Writer => Half::Reader,
        }
    }

    fn slot(self, slots: &mut [Option<Waker>; 2]) -> &mut Option<Waker> {
        let [reader, writer] = slots;
        match self {
            Half::Reader => reader,
            Half::Writer => writer,
        }
    }
}

/// The wakers of the two halves; handed to the stream as one waker.
#[derive(Default)]
struct FanOut {
    slots: Mutex<[Option<Waker>; 2]>,
}

impl FanOut {
    fn slots(&self) -> MutexGuard<'_, [Option<Waker>; 2]> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, half: Half, w: &Waker) {
        let mut slots = self.slots();
        let slot = half.slot(&mut slots);
        match slot {
            Some(old) if old.will_wake(w) => {}
            _ => *slot = Some(w.clone()),
        }
    }

    fn wake_half(&self, half: Half) {
        let w = half.slot(&mut self.slots()).take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

impl Wake for FanOut {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let [a, b] = {
            let mut s = self.slots();
            let [a, b] = &mut *s;
            [a.take(), b.take()]
        };
        if let Some(a) = a {
            a.wake();
        }
        if let Some(b) = b {
            b.wake();
        }
    }
}

struct Shared<S> {
    core: Mutex<Core<S>>,
    fanout: Arc<FanOut>,
    waker: Waker,
    protocol: Option<String>,
    deflate: Option<DeflateParams>,
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Core<S>> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one poll of the driver on behalf of `half`, then wakes the
    /// other half if the poll changed something it waits for.
    fn poll<T>(
        &self,
        half: Half,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Core<S>, &mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.fanout.register(half, cx.waker());
        let mut inner_cx = Context::from_waker(&self.waker);
        let mut core = self.lock();
        let before = core.progress();
        let r = f(&mut core, &mut inner_cx);
        let wake_other = core.concerns_other(before, half == Half::Reader);
        drop(core);
        if wake_other {
            self.fanout.wake_half(half.other());
        }
        r
    }
}

pub(crate) fn split<S>(mut core: Core<S>) -> (WsReader<S>, WsWriter<S>) {
    let fanout = Arc::new(FanOut::default());
    let shared = Arc::new(Shared {
        // Moved, not copied (given back by `reunite`): one copy per
        // connection.
        protocol: core.protocol.take(),
        deflate: core.deflate(),
        core: Mutex::new(core),
        waker: Waker::from(fanout.clone()),
        fanout,
    });
    (
        WsReader {
            shared: shared.clone(),
        },
        WsWriter { shared },
    )
}

/// The receiving half of a split [`WebSocket`] (see
/// [`WebSocket::split`]).
pub struct WsReader<S> {
    shared: Arc<Shared<S>>,
}

/// The sending half of a split [`WebSocket`] (see [`WebSocket::split`]).
pub struct WsWriter<S> {
    shared: Arc<Shared<S>>,
}

/// A cloneable, thread-safe handle that writes messages on a split
/// connection from anywhere, without blocking and without a task: one
/// non-blocking write attempt per call (see [`WsSender::try_send`]). For a
/// broadcast loop (a fan-out worker) that wants a message on an idle
/// socket now rather than after the connection's task is scheduled.
///
/// It keeps the connection (and its socket) alive while it exists: drop
/// it when the connection ends.
pub struct WsSender<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for WsSender<S> {
    fn clone(&self) -> Self {
        WsSender {
            shared: self.shared.clone(),
        }
    }
}

impl<S> fmt::Debug for WsSender<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsSender").finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsSender<S> {
    /// Queues `msg` behind whatever is queued, then makes one non-blocking
    /// attempt to write everything queued (and to flush the stream).
    /// Returns how many bytes are still queued: 0 when all went to the
    /// socket; otherwise the rest waits for the next flush, which the
    /// caller must arrange (e.g. wake the task that owns the
    /// [`WsWriter`]). The driver's lock is held for that one attempt only.
    ///
    /// Fails like [`WsWriter::feed`] (closed, queue full) or with the
    /// write's I/O error.
    pub fn try_send(&self, msg: Message) -> Result<usize, WsError> {
        let mut cx = Context::from_waker(&self.shared.waker);
        let mut core = self.shared.lock();
        let before = core.progress();
        core.feed(msg)?;
        let r = core.poll_flush(&mut cx);
        let left = core.conn.buffered_out();
        let wake_reader = core.concerns_other(before, false);
        drop(core);
        if wake_reader {
            self.shared.fanout.wake_half(Half::Reader);
        }
        match r {
            Poll::Ready(Err(e)) => Err(e),
            Poll::Ready(Ok(())) | Poll::Pending => Ok(left),
        }
    }
}

impl<S> fmt::Debug for WsReader<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsReader").finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for WsWriter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsWriter").finish_non_exhaustive()
    }
}

impl<S> WsReader<S> {
    /// What the peer sent in its close frame, once it closed.
    pub fn close_info(&self) -> Option<(Option<CloseCode>, String)> {
        self.shared.lock().close_info()
    }

    /// The subprotocol agreed on in the opening handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.shared.protocol.as_deref()
    }

    /// The permessage-deflate parameters agreed on, if any.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.shared.deflate
    }

    /// Puts the halves back together. Fails (returning both) if they come
    /// from different connections or a [`WsSender`] of the connection is
    /// still alive.
    pub fn reunite(self, writer: WsWriter<S>) -> Result<WebSocket<S>, (WsReader<S>, WsWriter<S>)> {
        // A live `WsSender` shares the driver too: then they cannot be
        // put back together (no new sender can appear meanwhile: senders
        // come from the writer, which is ours, or from existing senders).
        if !Arc::ptr_eq(&self.shared, &writer.shared) || Arc::strong_count(&self.shared) != 2 {
            return Err((self, writer));
        }
        drop(writer);
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => {
                let mut core = shared
                    .core
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner);
                core.protocol = shared.protocol;
                Ok(WebSocket { core })
            }
            Err(_) => unreachable!("both halves were given"),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsReader<S> {
    /// The next data message; see [`WebSocket::recv`] (pings are answered
    /// and the peer's close echoed here, even while the writer is idle).
    ///
    /// **Cancel safety:** cancel safe; dropping the future loses nothing.
    pub async fn recv(&mut self) -> Option<Result<Message, WsError>> {
        let shared = &self.shared;
        poll_fn(|cx| shared.poll(Half::Reader, cx, |core, cx| core.poll_recv(cx))).await
    }

    /// A message already buffered, without I/O; see
    /// [`WebSocket::try_recv`].
    pub fn try_recv(&mut self) -> Option<Result<Message, WsError>> {
        self.shared.lock().try_recv()
    }
}

impl<S> WsWriter<S> {
    /// A [`WsSender`] for this connection.
    pub fn sender(&self) -> WsSender<S> {
        WsSender {
            shared: self.shared.clone(),
        }
    }

    /// Queues a message without writing it; see [`WebSocket::feed`].
    pub fn feed(&mut self, msg: Message) -> Result<(), WsError> {
        self.shared.lock().feed(msg)
    }

    /// Queues a shared pre-encoded frame; see [`WebSocket::feed_encoded`].
    ///
    /// # Panics
    ///
    /// On a client connection.
    pub fn feed_encoded(&mut self, frame: Bytes) -> Result<(), WsError> {
        self.shared.lock().feed_encoded(frame)
    }

    /// Whether messages may still be sent.
    pub fn is_open(&self) -> bool {
        self.shared.lock().is_open()
    }

    /// Bytes queued for the socket and not yet written.
    pub fn buffered_out(&self) -> usize {
        self.shared.lock().conn.buffered_out()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWriter<S> {
    /// Queues a message and flushes; see [`WebSocket::send`].
    ///
    /// **Cancel safety:** if cancelled, the message may stay queued; it is
    /// written by the next flush (or by the reader's next wakeup).
    pub async fn send(&mut self, msg: Message) -> Result<(), WsError> {
        self.shared.lock().feed(msg)?;
        self.flush().await
    }

    /// Sends a text message; see [`WebSocket::send_text`].
    ///
    /// **Cancel safety:** as [`send`](Self::send).
    pub async fn send_text(&mut self, s: &str) -> Result<(), WsError> {
        self.shared.lock().feed_text(s)?;
        self.flush().await
    }

    /// Sends a binary message; see [`WebSocket::send_binary`].
    ///
    /// **Cancel safety:** as [`send`](Self::send).
    pub async fn send_binary(&mut self, b: &[u8]) -> Result<(), WsError> {
        self.shared.lock().feed_binary(b)?;
        self.flush().await
    }

    /// Sends a shared pre-encoded frame; see [`WebSocket::send_encoded`].
    ///
    /// **Cancel safety:** as [`send`](Self::send).
    ///
    /// # Panics
    ///
    /// On a client connection.
    pub async fn send_encoded(&mut self, frame: Bytes) -> Result<(), WsError> {
        self.shared.lock().feed_encoded(frame)?;
        self.flush().await
    }

    /// Writes everything queued; see [`WebSocket::flush`].
    ///
    /// **Cancel safety:** if cancelled, bytes may remain queued; the next
    /// flush writes them, in order.
    pub async fn flush(&mut self) -> Result<(), WsError> {
        let shared = &self.shared;
        poll_fn(|cx| shared.poll(Half::Writer, cx, |core, cx| core.poll_flush(cx))).await
    }

    /// Sends a ping; see [`WebSocket::ping`].
    ///
    /// **Cancel safety:** as [`send`](Self::send).
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), WsError> {
        self.shared.lock().feed_ping(payload)?;
        self.flush().await
    }

    /// Closes the connection; see [`WebSocket::close`]. Completes even if
    /// the reader is not being polled: messages read meanwhile are kept for
    /// the reader (up to the high-water mark), and the reader's `recv`
    /// returns `None` (or the failure) afterwards.
    ///
    /// **Cancel safety:** cancel safe: the close frame stays queued and the
    /// handshake continues with the reader or the next `close`.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), WsError> {
        self.shared.lock().start_close(code, reason)?;
        let shared = &self.shared;
        poll_fn(|cx| shared.poll(Half::Writer, cx, |core, cx| core.poll_close(cx))).await
    }
}
