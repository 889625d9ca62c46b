//! One HTTP/1.1 connection under timeouts.
//!
//! hyper's own `header_read_timeout` (hyper 1.x) starts whenever hyper
//! waits for a request head: at the first poll of the connection and again
//! right after each response, so it covers a silent connection and a
//! half-sent request but also closes every idle keep-alive connection after
//! the *header* timeout, and it does not say which case timed out. So it
//! is switched off and this module keeps the phase of the connection
//! itself:
//!
//! | phase | from | deadline | counted as |
//! |---|---|---|---|
//! | first request | the accept | `read_header_timeout` | `header` |
//! | idle keep-alive | the end of a response | `idle_timeout` | `idle` |
//! | next request's head | its first byte | `read_header_timeout` | `header` |
//! | busy (request being answered) | the end of its head | none | — |
//!
//! The phase lives in a small shared [`Clock`]: the socket wrapper
//! [`Watched`] notices the first byte after an idle period, the service
//! marks the request busy, and the response body's guard marks the
//! connection idle when hyper is done with the body. The supervisor polls
//! the hyper connection and then re-arms one timer on the current phase's
//! deadline; every phase change happens inside that poll, so the timer is
//! always up to date. After a WebSocket upgrade the hyper connection ends
//! and so does the supervision: the WebSocket has its own timers.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::admission::{HttpVersion, Phase, SocketPermit};
use crate::Shared;

const FIRST: u8 = 0;
const IDLE: u8 = 1;
const HEAD: u8 = 2;
const BUSY: u8 = 3;

/// The timeouts of the HTTP phases (zero = none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// The phase of one connection and when it began.
#[derive(Debug)]
pub(crate) struct Clock {
    base: Instant,
    phase: AtomicU8,
    /// Milliseconds from `base` to the start of the phase.
    since: AtomicU64,
    /// Requests being answered and WebSockets open on the connection (one
    /// at a time over HTTP/1.1, any number of streams over HTTP/2): the
    /// connection is idle when none are.
    active: AtomicUsize,
    /// HTTP/2: bytes after an idle period are frames (PING, SETTINGS), not
    /// the head of a request, so they do not start the header phase.
    http2: bool,
}

impl Clock {
    fn new(http2: bool) -> Clock {
        Clock {
            base: Instant::now(),
            phase: AtomicU8::new(FIRST),
            since: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            http2,
        }
    }

    /// A request (or a WebSocket) starts: the connection is busy.
    fn enter(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.set(BUSY);
    }

    /// A request (or a WebSocket) is over: idle when it was the last one.
    fn leave(&self) {
        if self.active.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.set(IDLE);
        }
    }

    fn set(&self, phase: u8) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.since.store(ms, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// The deadline of the current phase and the phase it counts as.
    fn deadline(&self, t: Timeouts) -> Option<(Instant, Phase)> {
        let (limit, phase) = match self.phase.load(Ordering::Relaxed) {
            FIRST | HEAD => (t.header, Phase::Header),
            IDLE => (t.idle, Phase::Idle),
            _ => return None,
        };
        if limit.is_zero() {
            return None;
        }
        let since = Duration::from_millis(self.since.load(Ordering::Relaxed));
        Some((self.base + since + limit, phase))
    }
}

/// The socket of one connection: passes everything through, notices the
/// first byte of a request after an idle period, and holds the socket's
/// place under the node's cap until it closes (after an upgrade too).
pub(crate) struct Watched<S> {
    inner: S,
    clock: Arc<Clock>,
    _permit: SocketPermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && !self.clock.http2
            && self.clock.phase.load(Ordering::Relaxed) == IDLE
        {
            self.clock.set(HEAD);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body that keeps its request counted as active until hyper
/// drops it (after writing it, or when the connection ends); the last one
/// to go marks the connection idle.
pub(crate) struct Guarded<B> {
    inner: B,
    _active: ActiveGuard,
}

/// Keeps its connection out of the idle phase while held: a WebSocket on
/// an HTTP/2 stream, whose connection must not time out as idle under it
/// (given to the request as an extension; see [`Activity::hold`]).
#[derive(Clone, Debug)]
pub(crate) struct Activity(Arc<Clock>);

impl Activity {
    /// Busy until the returned guard is dropped.
    pub fn hold(&self) -> ActiveGuard {
        ActiveGuard::enter(&self.0)
    }
}

/// One request or WebSocket counted as active on its connection, from its
/// start until the guard drops, whatever ends it: the response written, the
/// request's future dropped (an HTTP/2 stream reset before the answer), the
/// WebSocket closed.
#[derive(Debug)]
pub(crate) struct ActiveGuard(Arc<Clock>);

impl ActiveGuard {
    fn enter(clock: &Arc<Clock>) -> ActiveGuard {
        clock.enter();
        ActiveGuard(clock.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.leave();
    }
}

impl<B: Body + Unpin> Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves HTTP/1.1 (and WebSocket upgrades) or HTTP/2 (and WebSockets by
/// extended CONNECT, RFC 8441) on one connection until it ends, a phase
/// times out, or, on shutdown, its in-flight requests are answered.
pub(crate) async fn serve_http<S>(
    shared: &Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    permit: SocketPermit,
    version: HttpVersion,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    shared.admission.count_connection(version);
    let http2 = version == HttpVersion::Http2;
    let clock = Arc::new(Clock::new(http2));
    let io = TokioIo::new(Watched {
        inner: stream,
        clock: clock.clone(),
        _permit: permit,
    });
    let svc_shared = shared.clone();
    let svc_clock = clock.clone();
    let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let active = ActiveGuard::enter(&svc_clock);
        let shared = svc_shared.clone();
        if http2 {
            req.extensions_mut().insert(Activity(svc_clock.clone()));
        }
        async move {
            let resp = crate::http::route(shared, peer, req).await?;
            Ok::<_, std::convert::Infallible>(resp.map(|inner| Guarded {
                inner,
                _active: active,
            }))
        }
    });
    if http2 {
        let conn = shared.http2.server_builder().serve_connection(io, svc);
        drive(shared, peer, &clock, conn, |c| c.graceful_shutdown()).await;
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .serve_connection(io, svc)
            .with_upgrades();
        drive(shared, peer, &clock, conn, |c| c.graceful_shutdown()).await;
    }
}

/// Polls a hyper connection under the phase timeouts until it ends; on
/// shutdown asks it to finish gracefully (`graceful`).
async fn drive<C: Future>(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    clock: &Clock,
    conn: C,
    graceful: impl Fn(Pin<&mut C>),
) {
    tokio::pin!(conn);
    let timeouts = shared.timeouts;
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    let mut shutdown = shared.shutdown.clone();
    let mut draining = false;
    loop {
        tokio::select! {
            end = Supervise { conn: conn.as_mut(), sleep: sleep.as_mut(), clock, timeouts } => {
                if let Some(phase) = end {
                    tracing::debug!(%peer, ?phase, "HTTP connection timed out");
                    shared.admission.count_timeout(phase);
                }
                return;
            }
            r = shutdown.wait_for(|s| *s), if !draining => {
                let _ = r;
                draining = true;
                graceful(conn.as_mut());
            }
        }
    }
}

/// Drives the hyper connection and fires when its phase's deadline passes:
/// `None` when the connection ended, `Some(phase)` when it timed out.
struct Supervise<'a, C> {
    conn: Pin<&'a mut C>,
    sleep: Pin<&'a mut Sleep>,
    clock: &'a Clock,
    timeouts: Timeouts,
}

impl<C: Future> Future for Supervise<'_, C> {
    type Output = Option<Phase>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Phase>> {
        if self.conn.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        let Some((deadline, phase)) = self.clock.deadline(self.timeouts) else {
            return Poll::Pending;
        };
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(phase)),
            Poll::Pending => Poll::Pending,
        }
    }
}
