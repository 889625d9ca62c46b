//! The per-connection driver: one [`Connection`] and one byte stream,
//! advanced by `poll_*` functions that keep every bit of state in `self`
//! (which is what makes the async wrappers cancel safe).
//!
//! [`crate::WebSocket`] owns a `Core` directly; the split halves share one
//! behind a mutex.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use wshub_proto::{CloseCode, Connection, DeflateParams, Event, Message, Role, State};

use crate::error::WsError;

/// Bytes reserved in the receive buffer before a read (small messages).
const READ_CHUNK: usize = 8 * 1024;
/// Largest read reservation while a big frame is arriving (the reservation
/// is twice the bytes already buffered, up to this).
const READ_CHUNK_MAX: usize = 256 * 1024;
/// Most slices handed to one vectored write.
const MAX_IOV: usize = 64;
/// Slices of the small array tried first (a frame header and its payload,
/// a few frames).
const SMALL_IOV: usize = 8;

/// Buffers that idle connections released, for the next read or send of
/// any connection on the same thread. Releasing every buffer when a read
/// finds nothing keeps an idle connection free of them; with one message
/// in flight that happens after every message, so the buffers go round
/// here instead of through the allocator (whose large-chunk path costs
/// more than the rest of an echo).
mod pool {
    use std::cell::RefCell;

    use bytes::BytesMut;

    /// Buffers kept per thread: enough for the connections that are busy
    /// at one moment on one thread (at most this many × `MAX_CAP` bytes).
    const MAX_BUFFERS: usize = 16;
    /// Least room a buffer must offer, without allocating, to be worth
    /// keeping (half the usual read reservation: a read reserves more only
    /// below that).
    const MIN_ROOM: usize = super::READ_CHUNK / 2;
    /// Larger buffers (left by big frames) go back to the allocator.
    const MAX_CAP: usize = 64 * 1024;

    thread_local! {
        static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty buffer with room for at least `MIN_ROOM` bytes, if one is
    /// pooled.
    pub(super) fn get() -> Option<BytesMut> {
        POOL.try_with(|p| p.borrow_mut().pop()).ok().flatten()
    }

    /// Keeps `buf` for reuse if it is worth it: `MIN_ROOM..=MAX_CAP` bytes
    /// usable without allocating (a buffer still shared with a payload the
    /// application holds offers less), and the pool is not full. `reset`:
    /// move the start of the emptied buffer back to the start of its
    /// allocation (no copy: it is empty), so that the next read has all of
    /// it and a large frame arrives whole instead of growing (copying) a
    /// partial one; it does nothing to a buffer still shared. Without it,
    /// only a buffer whose room ran low is reset.
    pub(super) fn put(mut buf: BytesMut, reset: bool) {
        buf.clear();
        let room = buf.capacity();
        if reset || room < MIN_ROOM {
            // Asking for one byte more than the room shown reclaims the
            // consumed front, if any.
            let _ = buf.try_reclaim(room + 1);
        }
        if buf.capacity() < MIN_ROOM || buf.capacity() > MAX_CAP {
            return;
        }
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < MAX_BUFFERS {
                p.push(buf);
            }
        });
    }
}

/// The clock, read once per batch of work. Tokio's clock, so that paused
/// test time and our timers agree; in a normal build it is the OS clock.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Where the connection is in its life, from the transport's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The protocol core is Open or Closing; messages are read.
    Open,
    /// The core is Closed: write out what it queued (close frame).
    Flush,
    /// Server: half-close our side (FIN) before draining.
    Shutdown,
    /// Read and discard until the peer's EOF (lingering close).
    Drain,
    /// Client: close our side after the server's EOF.
    ClientShutdown,
    /// The transport is finished.
    Done,
}

/// How the connection ended; kept so that both `recv` and `close` (and
/// both split halves) can report it.
#[derive(Clone, Debug)]
enum Outcome {
    /// A closing handshake took place.
    Clean,
    /// The protocol core failed.
    Proto(wshub_proto::Error),
    /// The transport failed.
    Io(io::ErrorKind, String),
}

impl Outcome {
    fn to_result(&self) -> Result<(), WsError> {
        match self {
            Outcome::Clean => Ok(()),
            Outcome::Proto(e) => Err(WsError::Protocol(e.clone())),
            Outcome::Io(kind, msg) => Err(WsError::Io(io::Error::new(*kind, msg.clone()))),
        }
    }
}

/// A snapshot used by the split halves to decide whether the other half
/// must be woken.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    phase: Phase,
    inbox: usize,
    out: usize,
}

/// The state of a connection that is closing or closed.
#[derive(Default)]
struct Ending {
    /// Deadline of the lingering close (phases after Open).
    linger_until: Option<Instant>,
    outcome: Option<Outcome>,
    close_info: Option<(Option<CloseCode>, String)>,
    /// Messages read while `close` drove the connection, for `recv`.
    inbox: VecDeque<Message>,
    inbox_bytes: usize,
}

pub(crate) struct Core<S> {
    pub(crate) stream: S,
    pub(crate) conn: Connection,
    pub(crate) protocol: Option<String>,
    hwm: usize,
    fail_fast: bool,
    /// A keepalive is configured, so the core needs the clock every batch.
    keepalive: bool,
    close_timeout: Duration,
    phase: Phase,
    timer: Option<Pin<Box<Sleep>>>,
    timer_at: Option<Instant>,
    /// `recv` has reported the outcome (None or the error).
    recv_reported: bool,
    /// What only a closing connection needs; boxed, so that every open
    /// connection does not carry its room.
    ending: Option<Box<Ending>>,
    /// The receive buffer was larger than the usual read reservation (a
    /// large frame came): reset it when it goes back to the pool.
    rx_large: bool,
}

impl<S> Core<S> {
    pub(crate) fn new(
        stream: S,
        mut conn: Connection,
        leftover: &[u8],
        protocol: Option<String>,
        hwm: usize,
        fail_fast: bool,
    ) -> Self {
        if !leftover.is_empty() {
            conn.receive_data(leftover);
        }
        let keepalive = conn.config().keepalive.is_some();
        let close_timeout = conn.config().limits.close_timeout;
        Core {
            stream,
            conn,
            protocol,
            hwm,
            fail_fast,
            keepalive,
            close_timeout,
            phase: Phase::Open,
            timer: None,
            timer_at: None,
            recv_reported: false,
            ending: None,
            rx_large: false,
        }
    }

    pub(crate) fn set_high_water_mark(&mut self, v: usize) {
        self.hwm = v;
    }

    pub(crate) fn set_fail_fast(&mut self, v: bool) {
        self.fail_fast = v;
    }

    pub(crate) fn close_info(&self) -> Option<(Option<CloseCode>, String)> {
        self.ending.as_ref()?.close_info.clone()
    }

    fn ending(&mut self) -> &mut Ending {
        self.ending.get_or_insert_with(Box::default)
    }

    fn outcome(&self) -> Option<&Outcome> {
        self.ending.as_ref()?.outcome.as_ref()
    }

    fn linger_until(&self) -> Option<Instant> {
        self.ending.as_ref()?.linger_until
    }

    pub(crate) fn deflate(&self) -> Option<DeflateParams> {
        self.conn.deflate_params()
    }

    pub(crate) fn is_open(&self) -> bool {
        self.phase == Phase::Open && self.conn.state() == State::Open
    }

    pub(crate) fn progress(&self) -> Progress {
        Progress {
            phase: self.phase,
            inbox: self.ending.as_ref().map_or(0, |e| e.inbox.len()),
            out: self.conn.buffered_out(),
        }
    }

    /// Whether a change from `before` to now concerns the half that did not
    /// make it. `by_reader`: the reader made the change.
    pub(crate) fn concerns_other(&self, before: Progress, by_reader: bool) -> bool {
        let now = self.progress();
        if now.phase != before.phase || now.inbox > before.inbox {
            return true;
        }
        if by_reader {
            // The reader wrote out what the writer was waiting to flush.
            now.out < before.out && now.out == 0
        } else {
            // The writer drained the queue under the mark: the reader may
            // read again.
            before.out > self.hwm && now.out <= self.hwm
        }
    }

    // ----- outcome --------------------------------------------------------

    fn begin_finish(&mut self, outcome: Outcome) {
        let linger = match &outcome {
            Outcome::Io(..) => None,
            // The peer already proved unresponsive: one attempt to write
            // the close frame and the FIN, no waiting.
            Outcome::Proto(wshub_proto::Error::CloseTimeout)
            | Outcome::Proto(wshub_proto::Error::KeepaliveTimeout) => Some(Duration::ZERO),
            _ => Some(self.close_timeout),
        };
        tracing::debug!(role = ?self.conn.role(), outcome = ?outcome, "websocket closing");
        self.ending().outcome.get_or_insert(outcome);
        match linger {
            None => self.finish(),
            Some(d) => {
                self.ending().linger_until = Some(now() + d);
                self.phase = Phase::Flush;
            }
        }
    }

    fn fail_io(&mut self, e: &io::Error) {
        tracing::debug!(role = ?self.conn.role(), error = %e, "websocket transport failed");
        let end = self.ending();
        if end.outcome.is_none() {
            end.outcome = Some(Outcome::Io(e.kind(), e.to_string()));
        }
        // Moves the core to Closed so it refuses further commands.
        self.conn.receive_eof();
        self.finish();
    }

    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.timer = None;
        self.timer_at = None;
        if let Some(e) = &mut self.ending {
            e.linger_until = None;
        }
        self.release_idle_buffers();
    }

    /// Hands the buffers an idle connection does not need to the pool.
    fn release_idle_buffers(&mut self) {
        if let Some(b) = self.conn.take_idle_send_buffer() {
            pool::put(b, false);
        }
        if let Some(b) = self.conn.take_idle_recv_buffer() {
            pool::put(b, std::mem::take(&mut self.rx_large));
        }
    }

    /// Lends the connection a pooled buffer to encode into, if it released
    /// its own (or a new one of the pooled size, which then joins the pool
    /// when the connection goes idle).
    fn lend_send_buffer(&mut self) {
        if self.conn.needs_send_buffer() {
            let b = pool::get().unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK));
            self.conn.set_send_buffer(b);
        }
    }

    fn on_peer_close(&mut self, code: Option<CloseCode>, reason: String) {
        self.ending().close_info = Some((code, reason));
        self.begin_finish(Outcome::Clean);
    }

    fn report_recv_end(&mut self) -> Option<Result<Message, WsError>> {
        if self.recv_reported {
            return None;
        }
        self.recv_reported = true;
        match self.outcome() {
            Some(o) => o.to_result().err().map(Err),
            None => None,
        }
    }

    fn pop_inbox(&mut self) -> Option<Message> {
        let end = self.ending.as_mut()?;
        let m = end.inbox.pop_front()?;
        end.inbox_bytes -= m.len();
        Some(m)
    }

    /// Keeps a message that arrived while `close` was driving the
    /// connection, within the high-water mark.
    fn stash(&mut self, m: Message) {
        let hwm = self.hwm;
        let end = self.ending();
        if end.inbox_bytes + m.len() > hwm && !end.inbox.is_empty() {
            tracing::debug!(
                len = m.len(),
                "websocket: message dropped while closing (inbox full)"
            );
            return;
        }
        end.inbox_bytes += m.len();
        end.inbox.push_back(m);
    }

    // ----- commands -------------------------------------------------------

    fn check_room(&self, len: usize) -> Result<(), WsError> {
        if self.phase != Phase::Open {
            return Err(WsError::Closed);
        }
        let queued = self.conn.buffered_out();
        if self.fail_fast && queued > 0 && queued.saturating_add(len) > self.hwm {
            return Err(WsError::QueueFull);
        }
        Ok(())
    }

    pub(crate) fn feed(&mut self, msg: Message) -> Result<(), WsError> {
        self.check_room(msg.len())?;
        self.lend_send_buffer();
        Ok(self.conn.send(msg)?)
    }

    pub(crate) fn feed_text(&mut self, s: &str) -> Result<(), WsError> {
        self.check_room(s.len())?;
        self.lend_send_buffer();
        Ok(self.conn.send_text(s)?)
    }

    pub(crate) fn feed_binary(&mut self, b: &[u8]) -> Result<(), WsError> {
        self.check_room(b.len())?;
        self.lend_send_buffer();
        Ok(self.conn.send_binary(b)?)
    }

    pub(crate) fn feed_encoded(&mut self, frame: Bytes) -> Result<(), WsError> {
        self.check_room(frame.len())?;
        Ok(self.conn.send_encoded(frame)?)
    }

    pub(crate) fn feed_ping(&mut self, payload: &[u8]) -> Result<(), WsError> {
        if self.phase != Phase::Open {
            return Err(WsError::Closed);
        }
        Ok(self.conn.ping(payload)?)
    }

    /// Queues our close frame unless one was already sent or received.
    pub(crate) fn start_close(&mut self, code: CloseCode, reason: &str) -> Result<(), WsError> {
        if self.phase == Phase::Open && self.conn.state() == State::Open {
            self.conn.close(code, reason)?;
        }
        Ok(())
    }
}

/// One vectored write of the queued bytes, with up to `N` slices.
fn write_vectored<S: AsyncWrite + Unpin, const N: usize>(
    stream: &mut S,
    conn: &Connection,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut iov = [IoSlice::new(&[]); N];
    let n = conn.transmit_vectored(&mut iov);
    Pin::new(stream).poll_write_vectored(cx, &iov[..n])
}

impl<S: AsyncRead + AsyncWrite + Unpin> Core<S> {
    /// Writes everything queued: one vectored write per loop turn, looping
    /// on partial writes, then flushes the stream (TLS buffers records).
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let chunks = self.conn.transmit_chunks();
            let written = if chunks == 1 {
                let chunk = self.conn.transmit_chunk();
                ready!(Pin::new(&mut self.stream).poll_write(cx, chunk))?
            } else if chunks <= SMALL_IOV {
                ready!(write_vectored::<S, SMALL_IOV>(
                    &mut self.stream,
                    &self.conn,
                    cx
                ))?
            } else {
                ready!(write_vectored::<S, MAX_IOV>(
                    &mut self.stream,
                    &self.conn,
                    cx
                ))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.conn.advance_transmit(written);
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// Reads what the socket has straight into the core's receive buffer.
    fn poll_read_in(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let buf = self.conn.recv_buffer();
        if buf.capacity() == 0 {
            if let Some(b) = pool::get() {
                *buf = b;
            }
        }
        // A frame in progress is at least as large again as what is
        // buffered: grow the reservation geometrically (fewer reads).
        let want = buf
            .len()
            .saturating_mul(2)
            .clamp(READ_CHUNK, READ_CHUNK_MAX);
        if buf.capacity() - buf.len() < want / 2 {
            buf.reserve(want);
        }
        self.rx_large |= buf.capacity() > READ_CHUNK;
        let read = std::pin::pin!(self.stream.read_buf(buf));
        read.poll(cx)
    }

    /// Arms the timer for the next deadline and polls it.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = match self.phase {
            Phase::Open => self.conn.poll_timeout(),
            _ => self.linger_until(),
        };
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        let at = tokio::time::Instant::from_std(deadline);
        let timer = match &mut self.timer {
            Some(t) => {
                if self.timer_at != Some(deadline) {
                    t.as_mut().reset(at);
                }
                t
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        self.timer_at = Some(deadline);
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timer_at = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// The next data message, driving everything else on the way: reads,
    /// auto-pongs and close echoes, keepalive, the closing handshake, the
    /// lingering close. `Ready(None)` once the transport is finished.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        loop {
            if self.phase != Phase::Open {
                ready!(self.poll_finish(cx));
                return Poll::Ready(None);
            }
            match self.conn.poll_event() {
                Ok(Some(Event::Message(m))) => return Poll::Ready(Some(m)),
                Ok(Some(Event::Ping(_) | Event::Pong(_))) => continue,
                Ok(Some(Event::Close { code, reason })) => {
                    self.on_peer_close(code, reason);
                    continue;
                }
                Err(e) => {
                    self.begin_finish(Outcome::Proto(e));
                    continue;
                }
                Ok(None) => {}
            }
            // The batch of buffered input is consumed.
            if self.conn.state() == State::Closed {
                // Cannot happen with the current core (a Closed state
                // always comes with an event or an error); be safe anyway.
                self.begin_finish(Outcome::Proto(wshub_proto::Error::AbnormalClosure));
                continue;
            }
            if self.keepalive || self.conn.state() == State::Closing {
                self.conn.handle_timeout(now());
                if self.conn.state() == State::Closed {
                    continue; // the next poll_event reports why
                }
            }
            // Write what the core queued: pongs, pings, our close frame,
            // and whatever the application fed without flushing.
            if self.conn.wants_write() {
                if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                    self.fail_io(&e);
                    continue;
                }
            }
            // Backpressure: while the peer does not read what we queued,
            // do not read what it sends (its pings would queue pongs).
            if self.conn.buffered_out() > self.hwm {
                if self.poll_timer(cx).is_ready() {
                    continue;
                }
                return Poll::Pending;
            }
            match self.poll_read_in(cx) {
                Poll::Ready(Ok(0)) => self.conn.receive_eof(),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => self.fail_io(&e),
                Poll::Pending => {
                    if self.conn.buffered_in() == 0 {
                        // Idle: hold no buffers (they go to the pool).
                        self.release_idle_buffers();
                    }
                    if self.poll_timer(cx).is_ready() {
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Runs the transport's side of closing: flush, FIN (server first),
    /// drain until EOF, all bounded by the linger deadline.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.phase {
                Phase::Open => unreachable!("poll_finish while open"),
                Phase::Done => return Poll::Ready(()),
                Phase::Flush => match self.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => {
                        self.phase = match self.conn.role() {
                            Role::Server => Phase::Shutdown,
                            Role::Client => Phase::Drain,
                        }
                    }
                    Poll::Ready(Err(_)) => self.finish(),
                    Poll::Pending => break,
                },
                Phase::Shutdown => match Pin::new(&mut self.stream).poll_shutdown(cx) {
                    Poll::Ready(_) => self.phase = Phase::Drain,
                    Poll::Pending => break,
                },
                Phase::Drain => {
                    let mut scratch = [0u8; 2048];
                    let mut rb = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut self.stream).poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                            self.phase = match self.conn.role() {
                                Role::Server => Phase::Done,
                                Role::Client => Phase::ClientShutdown,
                            };
                        }
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(_)) => self.phase = Phase::Done,
                        Poll::Pending => break,
                    }
                }
                Phase::ClientShutdown => match Pin::new(&mut self.stream).poll_shutdown(cx) {
                    Poll::Ready(_) => self.phase = Phase::Done,
                    Poll::Pending => break,
                },
            }
        }
        if self.poll_timer(cx).is_ready() {
            self.finish();
            return Poll::Ready(());
        }
        Poll::Pending
    }

    // ----- what the public API calls ---------------------------------------

    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, WsError>>> {
        if let Some(m) = self.pop_inbox() {
            return Poll::Ready(Some(Ok(m)));
        }
        match ready!(self.poll_next(cx)) {
            Some(m) => Poll::Ready(Some(Ok(m))),
            None => {
                self.finish();
                Poll::Ready(self.report_recv_end())
            }
        }
    }

    pub(crate) fn try_recv(&mut self) -> Option<Result<Message, WsError>> {
        if let Some(m) = self.pop_inbox() {
            return Some(Ok(m));
        }
        if self.phase != Phase::Open {
            return None;
        }
        loop {
            match self.conn.poll_event() {
                Ok(Some(Event::Message(m))) => return Some(Ok(m)),
                Ok(Some(Event::Ping(_) | Event::Pong(_))) => {}
                Ok(Some(Event::Close { code, reason })) => {
                    self.on_peer_close(code, reason);
                    return None;
                }
                Err(e) => {
                    self.begin_finish(Outcome::Proto(e.clone()));
                    self.recv_reported = true;
                    return Some(Err(WsError::Protocol(e)));
                }
                Ok(None) => return None,
            }
        }
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        if self.phase == Phase::Done {
            return Poll::Ready(if self.conn.wants_write() {
                Err(WsError::Closed)
            } else {
                Ok(())
            });
        }
        match ready!(self.poll_write_out(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => {
                let err = io::Error::new(e.kind(), e.to_string());
                self.fail_io(&e);
                Poll::Ready(Err(WsError::Io(err)))
            }
        }
    }

    /// Drives the connection until the transport is finished; messages that
    /// arrive meanwhile are kept for `recv`.
    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        loop {
            match ready!(self.poll_next(cx)) {
                Some(m) => self.stash(m),
                None => {
                    self.finish();
                    return Poll::Ready(match self.outcome() {
                        Some(o) => o.to_result(),
                        None => Ok(()),
                    });
                }
            }
        }
    }
}
