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
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use wshub_hub::metrics::{counter_name, fixed};

/// The answer to a connection over the cap (or shed for lack of
/// descriptors). HTTP/1.1 so that WebSocket clients report the status.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 20\r\nRetry-After: 1\r\nConnection: close\r\n\r\nserver at capacity.\n";

/// Phases whose timeouts are counted (`phase` label of
/// [`HTTP_TIMEOUTS`](crate::HTTP_TIMEOUTS)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Phase {
    /// No complete request line and headers in time.
    Header = 0,
    /// A keep-alive connection idle for too long.
    Idle = 1,
    /// No complete TLS handshake in time.
    Tls = 2,
}

const PHASES: [Phase; 3] = [Phase::Header, Phase::Idle, Phase::Tls];

impl EncodeLabelValue for Phase {
    fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        e.write_str(match self {
            Phase::Header => "header",
            Phase::Idle => "idle",
            Phase::Tls => "tls",
        })
    }
}

/// Why a connection was refused (`reason` label of
/// [`HTTP_REFUSED`](crate::HTTP_REFUSED)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Refusal {
    /// The node holds `http_server.max_connections` sockets.
    MaxConnections = 0,
    /// `accept` failed with EMFILE/ENFILE; answered through the spare
    /// descriptor.
    NoDescriptors = 1,
}

const REFUSALS: [Refusal; 2] = [Refusal::MaxConnections, Refusal::NoDescriptors];

impl EncodeLabelValue for Refusal {
    fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        e.write_str(match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::NoDescriptors => "no_descriptors",
        })
    }
}

/// The HTTP version a connection speaks (`version` label of
/// [`HTTP_CONNECTIONS`](crate::HTTP_CONNECTIONS) and `http_version` of
/// [`WEBSOCKETS_OPENED`](crate::WEBSOCKETS_OPENED)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HttpVersion {
    /// HTTP/1.1 (and 1.0).
    Http1 = 0,
    /// HTTP/2: ALPN `h2`, or cleartext with prior knowledge.
    Http2 = 1,
    /// HTTP/3 over QUIC (ALPN `h3`).
    Http3 = 2,
}

const HTTP_VERSIONS: [HttpVersion; 3] =
    [HttpVersion::Http1, HttpVersion::Http2, HttpVersion::Http3];

impl EncodeLabelValue for HttpVersion {
    fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        e.write_str(match self {
            HttpVersion::Http1 => "1.1",
            HttpVersion::Http2 => "2",
            HttpVersion::Http3 => "3",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VersionLabels {
    version: HttpVersion,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpVersionLabels {
    http_version: HttpVersion,
}

/// Why a TLS handshake failed (`reason` label of
/// [`TLS_HANDSHAKE_FAILURES`](crate::TLS_HANDSHAKE_FAILURES)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TlsFailure {
    /// No complete handshake in time.
    Timeout = 0,
    /// Plain HTTP or other bytes sent to the TLS port.
    NotTls = 1,
    /// The handshake itself failed.
    Error = 2,
}

const TLS_FAILURES: [TlsFailure; 3] = [TlsFailure::Timeout, TlsFailure::NotTls, TlsFailure::Error];

impl EncodeLabelValue for TlsFailure {
    fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        e.write_str(match self {
            TlsFailure::Timeout => "timeout",
            TlsFailure::NotTls => "not_tls",
            TlsFailure::Error => "error",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PhaseLabels {
    phase: Phase,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    reason: Refusal,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TlsLabels {
    reason: TlsFailure,
}

/// The node's open sockets and the counters of the HTTP front (their
/// families in the node's registry; counting is an atomic add on a handle
/// kept here).
#[derive(Debug)]
pub(crate) struct Admission {
    limit: usize,
    open: Gauge,
    timeouts: [Counter; PHASES.len()],
    refused: [Counter; REFUSALS.len()],
    accept_errors: Counter,
    tls_failures: [Counter; TLS_FAILURES.len()],
    versions: [Counter; HTTP_VERSIONS.len()],
    websockets: [Counter; HTTP_VERSIONS.len()],
    webtransport: Counter,
    quic_handshake_failures: Counter,
}

impl Admission {
    /// At most `limit` open sockets; the families go into `registry`.
    pub fn new(limit: usize, registry: &mut Registry) -> Arc<Admission> {
        let limit = limit.max(1);
        let (tls_failures, f) = fixed(TLS_FAILURES, |reason| TlsLabels { reason });
        registry.register(
            counter_name(crate::TLS_HANDSHAKE_FAILURES),
            "TLS handshakes that failed: timeout (no complete handshake in time), not_tls \
             (plain HTTP or other bytes sent to the TLS port), error (the handshake failed)",
            f,
        );
        let open = Gauge::default();
        registry.register(
            crate::HTTP_CONNECTIONS_OPEN,
            "Open HTTP and WebSocket sockets",
            open.clone(),
        );
        let cap: Gauge = Gauge::default();
        cap.set(i64::try_from(limit).unwrap_or(i64::MAX));
        registry.register(
            crate::HTTP_CONNECTIONS_LIMIT,
            "Cap on open sockets (http_server.max_connections)",
            cap,
        );
        let (timeouts, f) = fixed(PHASES, |phase| PhaseLabels { phase });
        registry.register(
            counter_name(crate::HTTP_TIMEOUTS),
            "Connections closed by a timeout: header (read_header_timeout), \
             idle (idle_timeout), tls (tls_handshake_timeout)",
            f,
        );
        let (refused, f) = fixed(REFUSALS, |reason| RefusalLabels { reason });
        registry.register(
            counter_name(crate::HTTP_REFUSED),
            "Connections answered 503 and closed at accept: max_connections \
             (the cap was reached), no_descriptors (accept ran out of file descriptors)",
            f,
        );
        let accept_errors = Counter::default();
        registry.register(
            counter_name(crate::HTTP_ACCEPT_ERRORS),
            "Failed accept calls (the pending connection could not be taken)",
            accept_errors.clone(),
        );
        let (versions, f) = fixed(HTTP_VERSIONS, |version| VersionLabels { version });
        registry.register(
            counter_name(crate::HTTP_CONNECTIONS),
            "HTTP connections served, by the HTTP version they speak (1.1, 2, 3: QUIC connections)",
            f,
        );
        let (websockets, f) = fixed(HTTP_VERSIONS, |http_version| HttpVersionLabels {
            http_version,
        });
        registry.register(
            counter_name(crate::WEBSOCKETS_OPENED),
            "WebSockets opened, by the HTTP version of their handshake: 1.1 (Upgrade), \
             2 (extended CONNECT, RFC 8441), 3 (extended CONNECT, RFC 9220)",
            f,
        );
        let webtransport = Counter::default();
        registry.register(
            counter_name(crate::WEBTRANSPORT_SESSIONS),
            "WebTransport sessions opened (over HTTP/3)",
            webtransport.clone(),
        );
        let quic_handshake_failures = Counter::default();
        registry.register(
            counter_name(crate::QUIC_HANDSHAKE_FAILURES),
            "QUIC connections that did not complete their handshake (timed out or failed)",
            quic_handshake_failures.clone(),
        );
        Arc::new(Admission {
            limit,
            open,
            timeouts,
            refused,
            accept_errors,
            tls_failures,
            versions,
            websockets,
            webtransport,
            quic_handshake_failures,
        })
    }

    /// Counts a WebTransport session opened.
    pub fn count_webtransport(&self) {
        self.webtransport.inc();
    }

    /// Counts a QUIC connection whose handshake failed or timed out.
    pub fn count_quic_handshake_failure(&self) {
        self.quic_handshake_failures.inc();
    }

    /// Counts a connection that speaks `v`.
    pub fn count_connection(&self, v: HttpVersion) {
        if let Some(c) = self.versions.get(v as usize) {
            c.inc();
        }
    }

    /// Counts a WebSocket opened over `v`.
    pub fn count_websocket(&self, v: HttpVersion) {
        if let Some(c) = self.websockets.get(v as usize) {
            c.inc();
        }
    }

    /// The cap on open sockets.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Sockets open now.
    pub fn open(&self) -> usize {
        usize::try_from(self.open.get()).unwrap_or(0)
    }

    /// A permit for one more socket, or `None` at the cap. Called from the
    /// accept loop only, so the check and the increment do not race with
    /// another admission (releases only lower the count).
    pub fn try_admit(self: &Arc<Self>) -> Option<SocketPermit> {
        if self.open() >= self.limit {
            return None;
        }
        self.open.inc();
        Some(SocketPermit(self.clone()))
    }

    pub fn count_timeout(&self, phase: Phase) {
        if let Some(c) = self.timeouts.get(phase as usize) {
            c.inc();
        }
    }

    pub fn count_refused(&self, why: Refusal) {
        if let Some(c) = self.refused.get(why as usize) {
            c.inc();
        }
    }

    pub fn count_accept_error(&self) {
        self.accept_errors.inc();
    }

    pub fn count_tls_failure(&self, why: TlsFailure) {
        if let Some(c) = self.tls_failures.get(why as usize) {
            c.inc();
        }
    }
}

/// One open socket; dropping it releases its place under the cap.
#[derive(Debug)]
pub(crate) struct SocketPermit(Arc<Admission>);

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.0.open.dec();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn render(r: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut s, r).unwrap();
        s
    }

    #[test]
    fn the_http_front_families_render_under_their_names() {
        let mut r = Registry::default();
        let a = Admission::new(2, &mut r);
        let p1 = a.try_admit().unwrap();
        let _p2 = a.try_admit().unwrap();
        assert!(a.try_admit().is_none(), "over the cap");
        a.count_timeout(Phase::Idle);
        a.count_timeout(Phase::Tls);
        a.count_refused(Refusal::NoDescriptors);
        a.count_accept_error();
        a.count_tls_failure(TlsFailure::NotTls);
        a.count_connection(HttpVersion::Http2);
        a.count_websocket(HttpVersion::Http1);
        a.count_connection(HttpVersion::Http3);
        a.count_websocket(HttpVersion::Http3);
        a.count_webtransport();
        a.count_quic_handshake_failure();
        let t = render(&r);
        let samples: Vec<&str> = t.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "wshub_tls_handshake_failures_total{reason=\"timeout\"} 0",
                "wshub_tls_handshake_failures_total{reason=\"not_tls\"} 1",
                "wshub_tls_handshake_failures_total{reason=\"error\"} 0",
                "wshub_http_connections_open 2",
                "wshub_http_connections_limit 2",
                "wshub_http_timeouts_total{phase=\"header\"} 0",
                "wshub_http_timeouts_total{phase=\"idle\"} 1",
                "wshub_http_timeouts_total{phase=\"tls\"} 1",
                "wshub_http_connections_refused_total{reason=\"max_connections\"} 0",
                "wshub_http_connections_refused_total{reason=\"no_descriptors\"} 1",
                "wshub_http_accept_errors_total 1",
                "wshub_http_connections_total{version=\"1.1\"} 0",
                "wshub_http_connections_total{version=\"2\"} 1",
                "wshub_http_connections_total{version=\"3\"} 1",
                "wshub_websockets_opened_total{http_version=\"1.1\"} 1",
                "wshub_websockets_opened_total{http_version=\"2\"} 0",
                "wshub_websockets_opened_total{http_version=\"3\"} 1",
                "wshub_webtransport_sessions_total 1",
                "wshub_quic_handshake_failures_total 1",
            ],
            "{t}"
        );
        assert!(t.contains("# TYPE wshub_http_timeouts_total counter\n"));
        assert!(t.contains("# TYPE wshub_http_connections_open gauge\n"));
        assert!(!t.contains("..\n"), "{t}");
        drop(p1);
        assert_eq!(a.open(), 1);
        assert!(render(&r).contains("\nwshub_http_connections_open 1\n"));
    }
}
