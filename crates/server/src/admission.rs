//! Connection admission: the node-wide cap on open sockets, the fast `503`
//! for connections over it, shedding when `accept` runs out of file
//! descriptors, and the counters of the HTTP front (timeouts, refusals).
//!
//! Every accepted socket takes a [`SocketPermit`] that lives exactly as long
//! as the socket (it moves into the hyper connection and, after an upgrade,
//! into the WebSocket), so the count is the number of descriptors the
//! connections hold. A connection over the cap is answered inline from the
//! accept loop — one non-blocking read of what the client already sent, one
//! non-blocking write of a canned `503 Service Unavailable` with
//! `Retry-After`, close — before any task, buffer or session exists for it.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The answer to a connection over the cap (or shed for lack of
/// descriptors). HTTP/1.1 so that WebSocket clients report the status.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 20\r\nRetry-After: 1\r\nConnection: close\r\n\r\nserver at capacity.\n";

/// Phases whose timeouts are counted (`phase` label of
/// [`HTTP_TIMEOUTS`](crate::HTTP_TIMEOUTS)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No complete request line and headers in time.
    Header = 0,
    /// A keep-alive connection idle for too long.
    Idle = 1,
    /// No complete TLS handshake in time.
    Tls = 2,
}

const PHASES: [&str; 3] = ["header", "idle", "tls"];

/// Why a connection was refused (`reason` label of
/// [`HTTP_REFUSED`](crate::HTTP_REFUSED)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The node holds `http_server.max_connections` sockets.
    MaxConnections = 0,
    /// `accept` failed with EMFILE/ENFILE; answered through the spare
    /// descriptor.
    NoDescriptors = 1,
}

const REFUSALS: [&str; 2] = ["max_connections", "no_descriptors"];

/// The node's open sockets and the counters of the HTTP front.
#[derive(Debug)]
pub(crate) struct Admission {
    limit: usize,
    open: AtomicUsize,
    timeouts: [AtomicU64; PHASES.len()],
    refused: [AtomicU64; REFUSALS.len()],
    accept_errors: AtomicU64,
}

impl Admission {
    pub fn new(limit: usize) -> Arc<Admission> {
        Arc::new(Admission {
            limit: limit.max(1),
            open: AtomicUsize::new(0),
            timeouts: Default::default(),
            refused: Default::default(),
            accept_errors: AtomicU64::new(0),
        })
    }

    /// The cap on open sockets.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Sockets open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A permit for one more socket, or `None` at the cap. Called from the
    /// accept loop only, so the check and the increment do not race with
    /// another admission (releases only lower the count).
    pub fn try_admit(self: &Arc<Self>) -> Option<SocketPermit> {
        if self.open.load(Ordering::Relaxed) >= self.limit {
            return None;
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(SocketPermit(self.clone()))
    }

    pub fn count_timeout(&self, phase: Phase) {
        if let Some(c) = self.timeouts.get(phase as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count_refused(&self, why: Refusal) {
        if let Some(c) = self.refused.get(why as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count_accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the HTTP front's metrics (Prometheus text).
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {n} Open HTTP and WebSocket sockets.\n# TYPE {n} gauge\n{n} {}",
            self.open(),
            n = crate::HTTP_CONNECTIONS_OPEN
        );
        let _ = writeln!(
            out,
            "# HELP {n} Cap on open sockets (http_server.max_connections).\n\
             # TYPE {n} gauge\n{n} {}",
            self.limit,
            n = crate::HTTP_CONNECTIONS_LIMIT
        );
        let n = crate::HTTP_TIMEOUTS;
        let _ = writeln!(
            out,
            "# HELP {n} Connections closed by a timeout: header (read_header_timeout), \
             idle (idle_timeout), tls (tls_handshake_timeout).\n# TYPE {n} counter"
        );
        for (label, v) in PHASES.iter().zip(&self.timeouts) {
            let _ = writeln!(
                out,
                "{n}{{phase=\"{label}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let n = crate::HTTP_REFUSED;
        let _ = writeln!(
            out,
            "# HELP {n} Connections answered 503 and closed at accept: max_connections \
             (the cap was reached), no_descriptors (accept ran out of file descriptors).\n\
             # TYPE {n} counter"
        );
        for (label, v) in REFUSALS.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "{n}{{reason=\"{label}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP {n} Failed accept calls (the pending connection could not be taken).\n\
             # TYPE {n} counter\n{n} {}",
            self.accept_errors.load(Ordering::Relaxed),
            n = crate::HTTP_ACCEPT_ERRORS
        );
    }
}

/// One open socket; dropping it releases its place under the cap.
#[derive(Debug)]
pub(crate) struct SocketPermit(Arc<Admission>);

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers `503` on a just-accepted socket and closes it, without a task:
/// reads what the client already sent (so that the close is less likely to
/// be a reset), writes the canned answer, shuts the write side, closes.
/// Everything is non-blocking; a client that has not sent its request yet
/// still finds the answer waiting when it reads.
pub(crate) fn refuse(stream: tokio::net::TcpStream) {
    let Ok(mut s) = stream.into_std() else {
        return;
    };
    let mut buf = [0u8; 2048];
    for _ in 0..4 {
        match s.read(&mut buf) {
            Ok(n) if n == buf.len() => continue,
            _ => break,
        }
    }
    let _ = s.write(REFUSED);
    let _ = s.shutdown(Shutdown::Write);
}

/// Is `e` the process (EMFILE) or system (ENFILE) running out of file
/// descriptors?
pub(crate) fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// One descriptor kept open so that, when `accept` fails for lack of
/// descriptors, closing it makes room to take the pending connection and
/// answer it instead of leaving it in the queue.
#[derive(Debug)]
pub(crate) struct Spare(Option<std::fs::File>);

impl Spare {
    pub fn new() -> Spare {
        Spare(std::fs::File::open("/dev/null").ok())
    }

    /// Closes the spare descriptor.
    pub fn release(&mut self) {
        self.0 = None;
    }

    /// Opens the spare again (when a descriptor is free); whether it is held.
    pub fn reacquire(&mut self) -> bool {
        if self.0.is_none() {
            self.0 = std::fs::File::open("/dev/null").ok();
        }
        self.0.is_some()
    }
}

/// Logs refusals at most once per interval, with counts, instead of a line
/// per refused connection.
#[derive(Debug)]
pub(crate) struct ShedLog {
    every: Duration,
    last: Option<Instant>,
    capacity: u64,
    no_fd: u64,
    errors: u64,
    last_error: String,
}

impl ShedLog {
    pub fn new(every: Duration) -> ShedLog {
        ShedLog {
            every,
            last: None,
            capacity: 0,
            no_fd: 0,
            errors: 0,
            last_error: String::new(),
        }
    }

    pub fn refused(&mut self, why: Refusal, limit: usize) {
        match why {
            Refusal::MaxConnections => self.capacity += 1,
            Refusal::NoDescriptors => self.no_fd += 1,
        }
        self.flush(limit, false);
    }

    pub fn error(&mut self, e: &std::io::Error, limit: usize) {
        self.errors += 1;
        if self.last_error.is_empty() {
            self.last_error = e.to_string();
        }
        self.flush(limit, false);
    }

    /// Writes the pending counts if the interval passed (or `force`).
    pub fn flush(&mut self, limit: usize, force: bool) {
        let now = Instant::now();
        if !force
            && self
                .last
                .is_some_and(|t| now.duration_since(t) < self.every)
        {
            return;
        }
        let since = self.last.map(|t| now.duration_since(t));
        self.last = Some(now);
        if self.capacity > 0 {
            tracing::warn!(
                refused = self.capacity,
                max_connections = limit,
                ?since,
                "connections refused with 503: the node holds http_server.max_connections sockets"
            );
        }
        if self.no_fd > 0 {
            tracing::warn!(
                refused = self.no_fd,
                ?since,
                "accept ran out of file descriptors: connections answered 503 through the spare \
                 descriptor (raise the open-file limit or lower http_server.max_connections)"
            );
        }
        if self.errors > 0 {
            tracing::warn!(
                failures = self.errors,
                error = %self.last_error,
                ?since,
                "accept failed"
            );
        }
        self.capacity = 0;
        self.no_fd = 0;
        self.errors = 0;
        self.last_error.clear();
    }
}
