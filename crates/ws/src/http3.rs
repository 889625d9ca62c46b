//! WebSocket over HTTP/3 (RFC 9220): many WebSockets as streams of one
//! QUIC connection, opened with an extended CONNECT (`:method = CONNECT`,
//! `:protocol = websocket`), after the server advertised
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL`.
//!
//! QUIC (handshake, address validation and anti-amplification, flow
//! control, stream limits, loss recovery) is `quinn`'s; the HTTP/3
//! connection (control and QPACK streams, SETTINGS, GOAWAY) and ordinary
//! requests are `h3`'s. h3 does not know `:protocol = websocket` yet, so
//! this module reads the first frame of every request stream itself: an
//! extended CONNECT for a WebSocket is answered here and runs the sans-I/O
//! core over its stream ([`Http3Stream`]: DATA frames both ways), anything
//! else is handed back to h3 whole and surfaced as an ordinary request
//! ([`Http3Request::Request`]), for the caller to answer or to turn into a
//! WebTransport session ([`Http3Connection::into_inner`]).
//!
//! **Server:** [`bind_http3`] (or [`Http3Options::server_config`]) makes
//! the QUIC endpoint; [`serve_http3`] serves WebSockets on it, or run your
//! own loop with [`Http3Connection::accept`] and [`Http3Connection::next`].
//!
//! **Client:** [`Http3Client::connect`] opens one QUIC connection (ALPN
//! `h3`) and [`Http3Client::websocket`] opens WebSockets on it, as many at
//! once as the server's QUIC stream limit allows.
//!
//! As over HTTP/2, the connection is shared by its streams: quinn drives
//! it on a task of its own, the client runs h3's connection driver on a
//! task, and [`serve_http3`] runs each connection and each WebSocket on a
//! task.
//!
//! Two h3 0.0.8 quirks shape this module. h3-quinn holds the QUIC receive
//! stream inside its pending read, and its `stop_sending` and `recv_id`
//! panic meanwhile: [`Http3Stream`] tracks that and never calls them then.
//! And h3 counts a request stream as ongoing until its h3 `RequestStream`
//! is dropped; the streams taken here never get one, so h3's set of
//! ongoing streams keeps one id (some 16 bytes) per WebSocket stream for
//! the life of the connection, and a client's GOAWAY never makes
//! [`Http3Connection::next`] return `None`.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h3::error::Code;
use h3::frame::FrameStream;
use h3::proto::frame::{Frame, SettingId};
use h3::quic::{self as h3q, RecvStream as _, SendStream as _, SendStreamUnframed as _};
use h3::stream::BufRecvStream;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use qpack::HeaderField;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};
use wshub_proto::handshake::{
    self, ExtendedConnect, ExtendedConnectHandshake, Rejection, RequestHead,
};
use wshub_proto::{Connection, Role};

use crate::client::{parse_url, ClientOptions, Target};
use crate::error::WsError;
use crate::server::{conn_config, ServerOptions};
use crate::tls::{self, TlsOptions};
use crate::websocket::WebSocket;

/// h3's server connection over quinn: what [`Http3Connection::into_inner`]
/// returns, and what `h3_webtransport::server::WebTransportSession::accept`
/// takes.
pub type H3Connection = h3::server::Connection<h3_quinn::Connection, Bytes>;

/// The stream of an ordinary request ([`Http3Request::Request`]), h3's.
pub type H3RequestStream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// A WebSocket over one stream of an HTTP/3 connection.
pub type Http3WebSocket = WebSocket<Http3Stream>;

type QuicBidi = h3_quinn::BidiStream<Bytes>;
type RawStream = BufRecvStream<QuicBidi, Bytes>;

const ALPN_H3: &[u8] = b"h3";
const FRAME_DATA: u64 = 0x00;
const FRAME_HEADERS: u64 = 0x01;
/// The signal value that opens a WebTransport bidirectional stream.
const WEBTRANSPORT_STREAM: u64 = 0x41;
/// `H3_WEBTRANSPORT_BUFFERED_STREAM_REJECTED` (draft-ietf-webtrans-http3).
const WEBTRANSPORT_STREAM_REJECTED: u64 = 0x3994_bd84;
/// The largest DATA frame written at once: what one stream holds beyond
/// QUIC's send buffer, so the WebSocket's high-water mark applies to a
/// peer that stops granting flow-control credit.
const MAX_DATA_FRAME: usize = 32 << 10;

// ----- options --------------------------------------------------------------

/// The QUIC and HTTP/3 settings of a server (and, where they apply, of a
/// client) connection.
///
/// The defaults bound what one client can make the server hold: 128
/// concurrent request streams (a stream past it is not opened: QUIC flow
/// control makes the client wait), a 1 MiB connection receive window and
/// 256 KiB per stream, a 16 KiB header section, 10 s for the QUIC
/// handshake and 10 s for each stream's request headers, 30 s of silence
/// before the connection is dropped.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Http3Options {
    /// Concurrent bidirectional (request) streams the peer may open
    /// (default 128): QUIC's `initial_max_streams_bidi`, raised as streams
    /// end.
    pub max_concurrent_streams: u32,
    /// Concurrent unidirectional streams the peer may open (default 16):
    /// HTTP/3 needs three (control, QPACK encoder and decoder), plus
    /// WebTransport's.
    pub max_concurrent_uni_streams: u32,
    /// `SETTINGS_MAX_FIELD_SECTION_SIZE` (default 16 KiB): a request (or,
    /// on a client, a response) whose header section is larger, encoded or
    /// decoded, is refused with 431 without being read whole.
    pub max_field_section_size: u64,
    /// QUIC's idle timeout (default 30 s): a connection that hears nothing
    /// from its peer for this long is dropped.
    pub idle_timeout: Duration,
    /// Server: longest time from [`Http3Connection::accept`] to a
    /// completed QUIC handshake and HTTP/3 setup (default 10 s); a
    /// connection that has not finished by then is dropped. (A client's
    /// QUIC handshake is bounded by `ClientOptions::connect_timeout`.)
    pub handshake_timeout: Duration,
    /// Server: longest time a request stream may take from its opening to
    /// a complete HEADERS frame (default 10 s); the stream is reset
    /// (`H3_REQUEST_REJECTED`) after it.
    pub request_header_timeout: Duration,
    /// The receive window of each stream (default 256 KiB).
    pub stream_window: u32,
    /// The receive window of the connection, all streams together
    /// (default 1 MiB).
    pub connection_window: u32,
    /// QUIC PING every interval while nothing else is sent, so the idle
    /// timeout (ours and the peer's) and NAT bindings do not expire
    /// (default 10 s; `None`: no pings).
    pub keepalive_interval: Option<Duration>,
    /// Server: advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL` (default
    /// `true`). Off, clients will not open WebSockets (ours refuses the
    /// connection), and an extended CONNECT is reset as malformed.
    pub extended_connect: bool,
    /// Server: advertise WebTransport (`SETTINGS_ENABLE_WEBTRANSPORT`,
    /// `SETTINGS_H3_DATAGRAM`, `SETTINGS_WEBTRANSPORT_MAX_SESSIONS`) and
    /// accept QUIC datagrams (default `false`), for a caller that turns a
    /// WebTransport CONNECT into a session with
    /// [`Http3Connection::into_inner`]. Needs
    /// [`extended_connect`](Self::extended_connect).
    pub webtransport: bool,
    /// `SETTINGS_WEBTRANSPORT_MAX_SESSIONS` when
    /// [`webtransport`](Self::webtransport) is on (default 1).
    pub max_webtransport_sessions: u64,
    /// Server: answer a client whose address is not validated yet with a
    /// QUIC Retry before any handshake work (default `false`, quinn's
    /// default). Without it the server answers a first Initial with its
    /// handshake flight, bounded by the anti-amplification limit, which
    /// quinn rounds up to a whole datagram (up to 3x what the client sent
    /// plus one MTU); with it, one small Retry packet, and the client's
    /// second Initial (with the token) is accepted: one more round trip
    /// per connection, for a server under a flood of spoofed Initials.
    pub retry: bool,
}

impl Default for Http3Options {
    fn default() -> Self {
        Http3Options {
            max_concurrent_streams: 128,
            max_concurrent_uni_streams: 16,
            max_field_section_size: 16 << 10,
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            request_header_timeout: Duration::from_secs(10),
            stream_window: 256 << 10,
            connection_window: 1 << 20,
            keepalive_interval: Some(Duration::from_secs(10)),
            extended_connect: true,
            webtransport: false,
            max_webtransport_sessions: 1,
            retry: false,
        }
    }
}

impl Http3Options {
    /// Sets [`Http3Options::max_concurrent_streams`].
    pub fn max_concurrent_streams(mut self, v: u32) -> Self {
        self.max_concurrent_streams = v;
        self
    }
    /// Sets [`Http3Options::max_concurrent_uni_streams`].
    pub fn max_concurrent_uni_streams(mut self, v: u32) -> Self {
        self.max_concurrent_uni_streams = v;
        self
    }
    /// Sets [`Http3Options::max_field_section_size`].
    pub fn max_field_section_size(mut self, v: u64) -> Self {
        self.max_field_section_size = v;
        self
    }
    /// Sets [`Http3Options::idle_timeout`].
    pub fn idle_timeout(mut self, v: Duration) -> Self {
        self.idle_timeout = v;
        self
    }
    /// Sets [`Http3Options::handshake_timeout`].
    pub fn handshake_timeout(mut self, v: Duration) -> Self {
        self.handshake_timeout = v;
        self
    }
    /// Sets [`Http3Options::request_header_timeout`].
    pub fn request_header_timeout(mut self, v: Duration) -> Self {
        self.request_header_timeout = v;
        self
    }
    /// Sets [`Http3Options::stream_window`].
    pub fn stream_window(mut self, v: u32) -> Self {
        self.stream_window = v;
        self
    }
    /// Sets [`Http3Options::connection_window`].
    pub fn connection_window(mut self, v: u32) -> Self {
        self.connection_window = v;
        self
    }
    /// Sets [`Http3Options::keepalive_interval`].
    pub fn keepalive_interval(mut self, v: Option<Duration>) -> Self {
        self.keepalive_interval = v;
        self
    }
    /// Sets [`Http3Options::extended_connect`].
    pub fn extended_connect(mut self, v: bool) -> Self {
        self.extended_connect = v;
        self
    }
    /// Sets [`Http3Options::webtransport`].
    pub fn webtransport(mut self, v: bool) -> Self {
        self.webtransport = v;
        self
    }
    /// Sets [`Http3Options::max_webtransport_sessions`].
    pub fn max_webtransport_sessions(mut self, v: u64) -> Self {
        self.max_webtransport_sessions = v;
        self
    }
    /// Sets [`Http3Options::retry`].
    pub fn retry(mut self, v: bool) -> Self {
        self.retry = v;
        self
    }

    /// quinn's transport settings for these options: stream limits,
    /// windows, idle timeout, keepalive, datagrams (on with WebTransport).
    pub fn transport_config(&self) -> quinn::TransportConfig {
        self.transport(true)
    }

    fn transport(&self, server: bool) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        // A client accepts no request streams from the server (RFC 9114
        // §6.1); both sides need uni streams for control and QPACK.
        let bidi = if server {
            self.max_concurrent_streams
        } else {
            0
        };
        t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(bidi))
            .max_concurrent_uni_streams(quinn::VarInt::from_u32(
                self.max_concurrent_uni_streams.max(4),
            ))
            .stream_receive_window(quinn::VarInt::from_u32(self.stream_window))
            .receive_window(quinn::VarInt::from_u32(self.connection_window))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(self.idle_timeout)
                    .unwrap_or_else(|_| quinn::IdleTimeout::from(quinn::VarInt::MAX)),
            ))
            .keep_alive_interval(self.keepalive_interval);
        if !(server && self.webtransport) {
            t.datagram_receive_buffer_size(None);
        }
        t
    }

    /// A quinn server configuration for `tls` with these settings: ALPN
    /// `h3` (replacing the configuration's), no 0-RTT, TLS 1.3 (the only
    /// version QUIC speaks, whatever `tls` allows), and quinn's defaults
    /// for the rest: address validation (a Retry only with
    /// [`retry`](Self::retry), applied by [`Http3Connection::accept`]), the
    /// anti-amplification limit of RFC 9000 §8 (about three times the bytes
    /// received before the client's address is validated), stateless
    /// resets.
    ///
    /// Fails with [`WsError::Tls`] when `tls` cannot run QUIC (no TLS 1.3,
    /// or no `TLS13_AES_128_GCM_SHA256` suite).
    pub fn server_config(&self, tls: rustls::ServerConfig) -> Result<quinn::ServerConfig, WsError> {
        let mut tls = tls;
        tls.alpn_protocols = vec![ALPN_H3.to_vec()];
        tls.max_early_data_size = 0;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| WsError::Tls(format!("the TLS configuration cannot run QUIC: {e}")))?;
        let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        cfg.transport_config(Arc::new(self.transport(true)));
        Ok(cfg)
    }

    /// The quinn client configuration: rustls from `tls` as for `wss://`
    /// (roots, extra CAs, or your own configuration), ALPN `h3`.
    fn client_config(&self, tls_opts: &TlsOptions) -> Result<quinn::ClientConfig, WsError> {
        let mut cfg = (*tls::client_config(tls_opts)?).clone();
        cfg.alpn_protocols = vec![ALPN_H3.to_vec()];
        cfg.enable_early_data = false;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(cfg)
            .map_err(|e| WsError::Tls(format!("the TLS configuration cannot run QUIC: {e}")))?;
        let mut c = quinn::ClientConfig::new(Arc::new(crypto));
        c.transport_config(Arc::new(self.transport(false)));
        Ok(c)
    }

    fn h3_server_builder(&self) -> h3::server::Builder {
        let mut b = h3::server::builder();
        b.max_field_section_size(self.max_field_section_size)
            .enable_extended_connect(self.extended_connect);
        if self.webtransport {
            b.enable_webtransport(true)
                .enable_datagram(true)
                .max_webtransport_sessions(self.max_webtransport_sessions);
        }
        b
    }
}

/// Binds a QUIC server endpoint on `addr` (UDP) for HTTP/3 with `tls`
/// (see [`Http3Options::server_config`];
/// [`crate::http3_tls_config_from_pem`] makes one from PEM files). Must be
/// called inside a tokio runtime: quinn drives the endpoint on a task.
pub fn bind_http3(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    opts: &Http3Options,
) -> io::Result<quinn::Endpoint> {
    let cfg = opts.server_config(tls)?;
    quinn::Endpoint::server(cfg, addr)
}

// ----- framing helpers ------------------------------------------------------

/// The length of a QUIC variable-length integer from its first byte.
fn varint_len(first: u8) -> usize {
    1usize << (first >> 6)
}

/// Decodes a complete varint (`bytes` as long as [`varint_len`] says).
fn varint_decode(bytes: &[u8]) -> u64 {
    let mut it = bytes.iter();
    let mut v = it.next().map_or(0, |b| u64::from(b & 0x3f));
    for b in it {
        v = (v << 8) | u64::from(*b);
    }
    v
}

/// Appends `v` (below 2^62) as a varint.
fn put_varint(out: &mut BytesMut, v: u64) {
    if v < 1 << 6 {
        out.put_u8(v as u8);
    } else if v < 1 << 14 {
        out.put_u16(0x4000 | v as u16);
    } else if v < 1 << 30 {
        out.put_u32(0x8000_0000 | v as u32);
    } else {
        out.put_u64(0xc000_0000_0000_0000 | (v & ((1 << 62) - 1)));
    }
}

/// Frame types that must not appear on a request stream: CANCEL_PUSH,
/// SETTINGS, PUSH_PROMISE (we never allow pushes), GOAWAY, MAX_PUSH_ID,
/// and the HTTP/2 types reserved by RFC 9114 §7.2.8.
fn is_forbidden_on_request_stream(ty: u64) -> bool {
    matches!(ty, 0x02..=0x09 | 0x0d)
}

fn headers_frame(fields: Vec<HeaderField>) -> Result<Bytes, WsError> {
    let mut block = BytesMut::new();
    qpack::encode_stateless(&mut block, fields)
        .map_err(|e| WsError::Http3(format!("cannot encode a header section: {e}")))?;
    let mut out = BytesMut::with_capacity(block.len() + 16);
    put_varint(&mut out, FRAME_HEADERS);
    put_varint(&mut out, block.len() as u64);
    out.extend_from_slice(&block);
    Ok(out.freeze())
}

fn data_frame_header(out: &mut BytesMut, len: usize) {
    put_varint(out, FRAME_DATA);
    put_varint(out, len as u64);
}

/// Header fields HTTP/3 forbids (RFC 9114 §4.2): connection-specific.
fn is_connection_specific(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
    )
}

/// A response's HEADERS frame: `:status` and `headers`, names lower-cased,
/// connection-specific ones left out.
fn response_frame<'h>(
    status: u16,
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Result<Bytes, WsError> {
    let mut fields = vec![HeaderField::new(":status", status.to_string())];
    for (n, v) in headers {
        let n = n.to_ascii_lowercase();
        if !is_connection_specific(&n) {
            fields.push(HeaderField::new(n, v));
        }
    }
    headers_frame(fields)
}

/// A rejection as HEADERS (its status and headers) and DATA (the reason).
fn rejection_frames(rej: &Rejection) -> Result<Bytes, WsError> {
    let len = rej.reason.len().to_string();
    let head = response_frame(
        rej.status,
        [
            ("content-type", "text/plain; charset=utf-8"),
            ("content-length", len.as_str()),
        ]
        .into_iter()
        .chain(rej.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
    )?;
    let mut out = BytesMut::from(&head[..]);
    if !rej.reason.is_empty() {
        data_frame_header(&mut out, rej.reason.len());
        out.extend_from_slice(rej.reason.as_bytes());
    }
    Ok(out.freeze())
}

fn stream_err(e: h3q::StreamErrorIncoming) -> io::Error {
    match e {
        h3q::StreamErrorIncoming::StreamTerminated { error_code } => io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!(
                "HTTP/3 stream reset by the peer ({})",
                Code::from(error_code)
            ),
        ),
        h3q::StreamErrorIncoming::ConnectionErrorIncoming { connection_error } => io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("HTTP/3 connection lost: {connection_error}"),
        ),
        h3q::StreamErrorIncoming::Unknown(e) => io::Error::other(e.to_string()),
    }
}

fn quic_err(what: &str, e: impl fmt::Display) -> WsError {
    WsError::Http3(format!("{what}: {e}"))
}

// ----- one QUIC stream ------------------------------------------------------

/// One bidirectional QUIC stream as h3-quinn hands it out.
struct StreamIo {
    io: RawStream,
    /// h3-quinn's last read on the stream is pending: it holds the quinn
    /// receive stream inside that read meanwhile, and its `stop_sending`
    /// (and `recv_id`) would panic.
    reading: bool,
}

impl StreamIo {
    fn new(s: QuicBidi) -> StreamIo {
        StreamIo {
            io: BufRecvStream::new(s),
            reading: false,
        }
    }

    fn id(&self) -> u64 {
        self.io.send_id().into_inner()
    }

    /// The next received bytes (what is buffered first); `None` at the end.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        match self.io.poll_data(cx) {
            Poll::Pending => {
                self.reading = true;
                Poll::Pending
            }
            Poll::Ready(r) => {
                self.reading = false;
                Poll::Ready(r.map_err(stream_err))
            }
        }
    }

    /// Waits until bytes are buffered (`true`) or the stream is finished
    /// (`false`), without taking them.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            if self.io.has_remaining() {
                return Poll::Ready(Ok(true));
            }
            if self.io.is_eos() {
                return Poll::Ready(Ok(false));
            }
            match self.io.poll_read(cx) {
                Poll::Pending => {
                    self.reading = true;
                    return Poll::Pending;
                }
                Poll::Ready(r) => {
                    self.reading = false;
                    r.map_err(stream_err)?;
                }
            }
        }
    }

    /// Writes from `buf` (advancing it); the count written.
    fn poll_send(&mut self, cx: &mut Context<'_>, buf: &mut Bytes) -> Poll<io::Result<usize>> {
        self.io.poll_send(cx, buf).map_err(stream_err)
    }

    /// Ends the send side cleanly (FIN).
    fn finish(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        // h3-quinn finishes at once; a stream already finished or reset
        // is as finished as it gets.
        let _ = self.io.poll_finish(&mut cx);
    }

    /// Stops reading (STOP_SENDING with `code`) unless a read is in flight.
    fn stop_reading(&mut self, code: Code) {
        if !self.reading {
            self.io.stop_sending(code.value());
        }
    }

    /// Resets both directions with `code`.
    fn abort(&mut self, code: Code) {
        self.io.reset(code.value());
        self.stop_reading(code);
    }

    fn into_raw(self) -> RawStream {
        self.io
    }
}

/// Writes all of `data`.
async fn write_all(s: &mut StreamIo, mut data: Bytes) -> io::Result<()> {
    while !data.is_empty() {
        if poll_fn(|cx| s.poll_send(cx, &mut data)).await? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

/// Sends `rej` as the response and ends the stream; best effort within
/// `deadline`.
async fn send_rejection(s: &mut StreamIo, rej: &Rejection, deadline: Instant) {
    let sent = match rejection_frames(rej) {
        Ok(frames) => timeout_at(deadline, write_all(s, frames)).await,
        Err(_) => Ok(Err(io::ErrorKind::InvalidInput.into())),
    };
    match sent {
        Ok(Ok(())) => {
            s.finish();
            // The response is complete: the rest of the request is not
            // needed (RFC 9114 §4.1.2).
            s.stop_reading(Code::H3_NO_ERROR);
        }
        _ => s.abort(Code::H3_REQUEST_REJECTED),
    }
}

// ----- reading a request's (or response's) HEADERS frame --------------------

/// Why the first HEADERS frame of a stream could not be read.
#[derive(Debug)]
enum HeadError {
    /// The stream ended before a complete HEADERS frame.
    Incomplete,
    /// The HEADERS frame is larger than the field section limit.
    TooLarge,
    /// A frame that may not come before the headers (DATA) or at all.
    Unexpected(u64),
    /// A WebTransport stream (its signal value came first).
    WebTransport,
    /// The stream failed.
    Io(io::Error),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Incomplete => f.write_str("the stream ended before its HEADERS frame"),
            HeadError::TooLarge => f.write_str("the HEADERS frame is over the size limit"),
            HeadError::Unexpected(t) => write!(f, "unexpected frame type {t:#x} before HEADERS"),
            HeadError::WebTransport => f.write_str("a WebTransport stream"),
            HeadError::Io(e) => write!(f, "{e}"),
        }
    }
}

async fn fill(s: &mut StreamIo) -> Result<(), HeadError> {
    match poll_fn(|cx| s.poll_fill(cx)).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(HeadError::Incomplete),
        Err(e) => Err(HeadError::Io(e)),
    }
}

/// Appends exactly `n` more bytes of the stream to `out`. Whatever follows
/// stays buffered in the stream, so h3 (or [`Http3Stream`]) reads on from
/// exactly there.
async fn take_exact(s: &mut StreamIo, n: usize, out: &mut BytesMut) -> Result<(), HeadError> {
    let end = out.len() + n;
    while out.len() < end {
        fill(s).await?;
        if let Some(c) = s.io.take_chunk(end - out.len()) {
            out.extend_from_slice(&c);
        }
    }
    Ok(())
}

/// Discards exactly `n` bytes of the stream, holding none of them.
async fn skip_exact(s: &mut StreamIo, mut n: u64) -> Result<(), HeadError> {
    while n > 0 {
        fill(s).await?;
        let limit = usize::try_from(n).unwrap_or(usize::MAX);
        if let Some(c) = s.io.take_chunk(limit) {
            n -= c.len() as u64;
        }
    }
    Ok(())
}

async fn read_varint(s: &mut StreamIo) -> Result<u64, HeadError> {
    let mut b = BytesMut::with_capacity(8);
    take_exact(s, 1, &mut b).await?;
    let first = b.first().copied().unwrap_or(0);
    take_exact(s, varint_len(first) - 1, &mut b).await?;
    Ok(varint_decode(&b))
}

/// Reads frames up to the first HEADERS frame and returns its block,
/// skipping unknown and reserved frame types (RFC 9114 §9) without holding
/// them. A HEADERS frame over `max` bytes is refused when its length is
/// read: nothing past the frame header is buffered. `webtransport`: a
/// WebTransport signal value first is [`HeadError::WebTransport`].
async fn read_headers_frame(
    s: &mut StreamIo,
    max: u64,
    webtransport: bool,
) -> Result<Bytes, HeadError> {
    let mut first = true;
    loop {
        let ty = read_varint(s).await?;
        if first && webtransport && ty == WEBTRANSPORT_STREAM {
            return Err(HeadError::WebTransport);
        }
        first = false;
        let len = read_varint(s).await?;
        match ty {
            FRAME_HEADERS => {
                if len > max {
                    return Err(HeadError::TooLarge);
                }
                let len = usize::try_from(len).map_err(|_| HeadError::TooLarge)?;
                let mut block = BytesMut::with_capacity(len);
                take_exact(s, len, &mut block).await?;
                return Ok(block.freeze());
            }
            FRAME_DATA => return Err(HeadError::Unexpected(ty)),
            t if is_forbidden_on_request_stream(t) => return Err(HeadError::Unexpected(t)),
            _ => skip_exact(s, len).await?,
        }
    }
}

/// The value of pseudo-header `name` (the first one).
fn pseudo<'f>(fields: &'f [HeaderField], name: &[u8]) -> Option<&'f [u8]> {
    fields
        .iter()
        .find(|f| f.name.as_ref() == name)
        .map(|f| f.value.as_ref())
}

/// Why an extended CONNECT's header section is refused.
enum HeadProblem {
    /// Malformed (RFC 9114 §4.1.2): the stream is reset with
    /// `H3_MESSAGE_ERROR`.
    Malformed(&'static str),
    /// Well-formed HTTP but not a usable request: answered with this.
    Refused(Rejection),
}

/// Parses the header section of an extended CONNECT strictly: known
/// pseudo-headers once each and before the regular ones, lower-case
/// names, no connection-specific headers; `:scheme`, `:authority` and
/// `:path` present and valid. Returns the request and its `:protocol`.
fn parse_connect(fields: Vec<HeaderField>) -> Result<(Request<()>, String), HeadProblem> {
    use HeadProblem::{Malformed, Refused};
    let (mut method, mut scheme, mut authority, mut path, mut protocol) =
        (None, None, None, None, None);
    let mut headers = http::HeaderMap::new();
    let mut regular_seen = false;
    for f in fields {
        let (name, value) = (f.name.as_ref(), f.value.as_ref());
        if let Some(p) = name.strip_prefix(b":") {
            if regular_seen {
                return Err(Malformed("a pseudo-header after a regular header"));
            }
            let slot = match p {
                b"method" => &mut method,
                b"scheme" => &mut scheme,
                b"authority" => &mut authority,
                b"path" => &mut path,
                b"protocol" => &mut protocol,
                _ => return Err(Malformed("an unknown pseudo-header")),
            };
            if slot.is_some() {
                return Err(Malformed("a repeated pseudo-header"));
            }
            let v =
                std::str::from_utf8(value).map_err(|_| Malformed("a pseudo-header not UTF-8"))?;
            *slot = Some(v.to_owned());
            continue;
        }
        regular_seen = true;
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err(Malformed("an upper-case header name"));
        }
        let n = HeaderName::from_bytes(name).map_err(|_| Malformed("an invalid header name"))?;
        if is_connection_specific(n.as_str()) {
            return Err(Malformed("a connection-specific header"));
        }
        let v = HeaderValue::from_bytes(value).map_err(|_| Malformed("an invalid header value"))?;
        headers.append(n, v);
    }
    if method.as_deref() != Some("CONNECT") {
        return Err(Malformed("not a CONNECT"));
    }
    let protocol = protocol.ok_or(Malformed("no :protocol"))?;
    let missing = |what: &str| {
        Refused(handshake::reject(
            400,
            &format!("extended CONNECT: {what} required"),
        ))
    };
    let scheme = scheme
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing(":scheme"))?;
    let authority = authority
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing(":authority"))?;
    let path = path
        .filter(|s| !s.is_empty())
        .ok_or_else(|| missing(":path"))?;
    let uri = http::Uri::builder()
        .scheme(scheme.as_str())
        .authority(authority.as_str())
        .path_and_query(path.as_str())
        .build()
        .map_err(|e| {
            Refused(handshake::reject(
                400,
                &format!("extended CONNECT: invalid :scheme, :authority or :path: {e}"),
            ))
        })?;
    let mut req = Request::new(());
    *req.method_mut() = Method::CONNECT;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_3;
    *req.headers_mut() = headers;
    Ok((req, protocol))
}

// ----- server ---------------------------------------------------------------

/// What each stream's header reading needs.
#[derive(Debug)]
struct HeadCfg {
    max_field_section_size: u64,
    header_timeout: Duration,
    extended_connect: bool,
    webtransport: bool,
}

/// A stream whose request headers were read.
// One per stream, moved once from its task: boxing would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
enum Head {
    WebSocket(Http3WebSocketRequest),
    /// Anything else: the stream (positioned after the HEADERS frame) and
    /// the header block, for h3.
    Other(RawStream, Bytes),
}

/// What reading a stream's first frame decided.
enum Outcome {
    WebSocket(Request<()>, String),
    Other(Bytes),
    Reject(Rejection),
    Abort(Code, String),
}

/// Resets an unanswered stream when its header reading is cancelled
/// ([`Http3Connection::into_inner`], or the connection dropped).
struct ResetOnDrop(Option<StreamIo>);

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if let Some(s) = &mut self.0 {
            s.abort(Code::H3_REQUEST_REJECTED);
        }
    }
}

async fn read_head(stream: QuicBidi, cfg: Arc<HeadCfg>) -> Option<Head> {
    let mut guard = ResetOnDrop(Some(StreamIo::new(stream)));
    let deadline = Instant::now() + cfg.header_timeout;
    let outcome = match guard.0.as_mut() {
        Some(s) => classify(s, &cfg, deadline).await,
        None => return None,
    };
    let mut s = guard.0.take()?;
    match outcome {
        Outcome::WebSocket(request, protocol) => Some(Head::WebSocket(Http3WebSocketRequest {
            request,
            protocol,
            io: Some(s),
            answer_timeout: cfg.header_timeout,
        })),
        Outcome::Other(block) => Some(Head::Other(s.into_raw(), block)),
        Outcome::Reject(rej) => {
            tracing::debug!(stream = s.id(), status = rej.status, reason = %rej.reason, "HTTP/3 request refused");
            send_rejection(&mut s, &rej, Instant::now() + cfg.header_timeout).await;
            None
        }
        Outcome::Abort(code, why) => {
            tracing::debug!(stream = s.id(), %code, %why, "HTTP/3 request stream reset");
            s.abort(code);
            None
        }
    }
}

/// Reads the first HEADERS frame (by `deadline`) and decides what the
/// stream is.
async fn classify(s: &mut StreamIo, cfg: &HeadCfg, deadline: Instant) -> Outcome {
    let max = cfg.max_field_section_size;
    let block = match timeout_at(deadline, read_headers_frame(s, max, cfg.webtransport)).await {
        Err(_) => {
            return Outcome::Abort(
                Code::H3_REQUEST_REJECTED,
                "no request headers within the header timeout".into(),
            )
        }
        Ok(Ok(block)) => block,
        Ok(Err(HeadError::TooLarge)) => {
            return Outcome::Reject(handshake::reject(431, "request header section too large"))
        }
        Ok(Err(HeadError::Incomplete)) => {
            return Outcome::Abort(
                Code::H3_REQUEST_INCOMPLETE,
                HeadError::Incomplete.to_string(),
            )
        }
        Ok(Err(e @ HeadError::Unexpected(_))) => {
            return Outcome::Abort(Code::H3_FRAME_UNEXPECTED, e.to_string())
        }
        Ok(Err(HeadError::WebTransport)) => {
            return Outcome::Abort(
                Code::from(WEBTRANSPORT_STREAM_REJECTED),
                "a WebTransport stream before its session was handed over".into(),
            )
        }
        Ok(Err(e @ HeadError::Io(_))) => {
            return Outcome::Abort(Code::H3_REQUEST_CANCELLED, e.to_string())
        }
    };
    let fields = match qpack::decode_stateless(&mut block.clone(), max) {
        Ok(d) => d.fields,
        Err(qpack::DecoderError::HeaderTooLong(_)) => {
            return Outcome::Reject(handshake::reject(431, "request header section too large"))
        }
        Err(e) => {
            return Outcome::Abort(
                Code::H3_MESSAGE_ERROR,
                format!("undecodable header section: {e}"),
            )
        }
    };
    let ours = pseudo(&fields, b":method") == Some(b"CONNECT")
        && matches!(pseudo(&fields, b":protocol"),
            Some(p) if p != b"webtransport" && p != b"connect-udp");
    if !ours {
        return Outcome::Other(block);
    }
    if !cfg.extended_connect {
        return Outcome::Abort(
            Code::H3_MESSAGE_ERROR,
            ":protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL".into(),
        );
    }
    match parse_connect(fields) {
        Ok((req, protocol)) => Outcome::WebSocket(req, protocol),
        Err(HeadProblem::Refused(rej)) => Outcome::Reject(rej),
        Err(HeadProblem::Malformed(why)) => {
            Outcome::Abort(Code::H3_MESSAGE_ERROR, format!("malformed request: {why}"))
        }
    }
}

/// One HTTP/3 server connection: the WebSocket requests and ordinary
/// requests its client opens, from [`next`](Self::next).
///
/// Keep it (and keep calling [`next`](Self::next)) for as long as its
/// WebSockets should live: its streams run on their own, but dropping it
/// closes the QUIC connection (`H3_NO_ERROR`), and only `next` processes
/// the client's control stream and accepts new streams.
pub struct Http3Connection {
    conn: H3Connection,
    quic: quinn::Connection,
    heads: JoinSet<Option<Head>>,
    cfg: Arc<HeadCfg>,
}

impl fmt::Debug for Http3Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http3Connection")
            .field("remote", &self.quic.remote_address())
            .field("reading_headers", &self.heads.len())
            .finish_non_exhaustive()
    }
}

/// What [`Http3Connection::next`] yields.
// The WebSocket variant is the common one; boxing it would cost an
// allocation per request to save little.
#[allow(clippy::large_enum_variant)]
pub enum Http3Request {
    /// An extended CONNECT with a `:protocol` of its own (`websocket`, or
    /// another one, which [`Http3WebSocketRequest::accept`] refuses with
    /// 400): accept or reject it.
    WebSocket(Http3WebSocketRequest),
    /// Any other request (a `GET`, a plain CONNECT, a WebTransport CONNECT
    /// with `h3::ext::Protocol::WEB_TRANSPORT` in its extensions), parsed
    /// by h3: answer it on its stream, or hand it to
    /// `h3_webtransport::server::WebTransportSession::accept` with
    /// [`Http3Connection::into_inner`].
    Request(Request<()>, H3RequestStream),
}

impl fmt::Debug for Http3Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Http3Request::WebSocket(r) => f.debug_tuple("WebSocket").field(r).finish(),
            Http3Request::Request(r, _) => f.debug_tuple("Request").field(r).finish(),
        }
    }
}

impl Http3Connection {
    /// Accepts an incoming QUIC connection and sets up HTTP/3 on it (our
    /// SETTINGS sent, with `SETTINGS_ENABLE_CONNECT_PROTOCOL`). The QUIC
    /// handshake and the setup together are bounded by
    /// `opts.handshake_timeout` ([`WsError::Timeout`]; the connection is
    /// dropped, which closes it). Until the client's address is validated
    /// quinn sends it about three times what it received (see
    /// [`Http3Options::retry`]); with `opts.retry`, an unvalidated client
    /// is sent a Retry and this fails with [`WsError::Http3`] (the client
    /// comes back as a new `Incoming`).
    ///
    /// **Cancel safety:** not cancel safe (the connection is dropped).
    pub async fn accept(
        incoming: quinn::Incoming,
        opts: &Http3Options,
    ) -> Result<Http3Connection, WsError> {
        let deadline = Instant::now() + opts.handshake_timeout;
        let incoming = if opts.retry && !incoming.remote_address_validated() {
            match incoming.retry() {
                Ok(()) => {
                    return Err(WsError::Http3(
                        "sent a QUIC Retry to validate the client's address".into(),
                    ))
                }
                Err(e) => e.into_incoming(),
            }
        } else {
            incoming
        };
        let connecting = incoming
            .accept()
            .map_err(|e| quic_err("QUIC handshake", e))?;
        let quic = timeout_at(deadline, connecting)
            .await?
            .map_err(|e| quic_err("QUIC handshake", e))?;
        Self::setup(quic, opts, deadline).await
    }

    /// Sets up HTTP/3 on a QUIC connection you accepted yourself (e.g.
    /// after `quinn::Incoming::retry`), bounded by
    /// `opts.handshake_timeout`.
    ///
    /// **Cancel safety:** not cancel safe.
    pub async fn new(
        quic: quinn::Connection,
        opts: &Http3Options,
    ) -> Result<Http3Connection, WsError> {
        Self::setup(quic, opts, Instant::now() + opts.handshake_timeout).await
    }

    async fn setup(
        quic: quinn::Connection,
        opts: &Http3Options,
        deadline: Instant,
    ) -> Result<Http3Connection, WsError> {
        let builder = opts.h3_server_builder();
        let build = builder.build(h3_quinn::Connection::new(quic.clone()));
        let conn = match timeout_at(deadline, build).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(quic_err("HTTP/3 setup", e)),
            Err(_) => {
                quic.close(quinn::VarInt::from_u32(0x100), b"HTTP/3 setup timed out");
                return Err(WsError::Timeout);
            }
        };
        Ok(Http3Connection {
            conn,
            quic,
            heads: JoinSet::new(),
            cfg: Arc::new(HeadCfg {
                max_field_section_size: opts.max_field_section_size,
                header_timeout: opts.request_header_timeout,
                extended_connect: opts.extended_connect,
                webtransport: opts.webtransport,
            }),
        })
    }

    /// The next request: a WebSocket to accept or reject, or an ordinary
    /// request. Each stream's headers are read concurrently (a slow one
    /// holds up no other), within `Http3Options::request_header_timeout`;
    /// streams that break the framing, send a malformed or oversized
    /// header section (431) or a malformed extended CONNECT are answered
    /// or reset here and not returned. `Ok(None)` once the client closed
    /// the connection cleanly (`H3_NO_ERROR`); a connection error or
    /// timeout fails with [`WsError::Http3`].
    ///
    /// **Cancel safety:** cancel safe: streams being read stay here for
    /// the next call.
    pub async fn next(&mut self) -> Result<Option<Http3Request>, WsError> {
        #[allow(clippy::large_enum_variant)]
        enum Event {
            Head(Result<Option<Head>, tokio::task::JoinError>),
            Stream(Result<Option<QuicBidi>, h3::error::ConnectionError>),
        }
        loop {
            let event = poll_fn(|cx| {
                if let Poll::Ready(Some(done)) = self.heads.poll_join_next(cx) {
                    return Poll::Ready(Event::Head(done));
                }
                self.conn.poll_accept_request_stream(cx).map(Event::Stream)
            })
            .await;
            match event {
                Event::Stream(Ok(Some(s))) => {
                    self.heads.spawn(read_head(s, self.cfg.clone()));
                }
                Event::Stream(Ok(None)) => return Ok(None),
                Event::Stream(Err(e)) if e.is_h3_no_error() => return Ok(None),
                Event::Stream(Err(e)) => return Err(quic_err("HTTP/3 connection", e)),
                Event::Head(Ok(Some(Head::WebSocket(r)))) => {
                    return Ok(Some(Http3Request::WebSocket(r)))
                }
                Event::Head(Ok(Some(Head::Other(raw, block)))) => {
                    let resolver = self.conn.create_resolver(FrameStream::new(raw));
                    // The size was checked with the same limit h3 uses, so
                    // `resolve` does not wait to send a 431.
                    let resolved = resolver
                        .accept_with_frame(Ok(Some(Frame::Headers(block))))
                        .map(|r| r.resolve());
                    let resolved = match resolved {
                        Ok(fut) => fut.await,
                        Err(e) => Err(e),
                    };
                    match resolved {
                        Ok((req, stream)) => return Ok(Some(Http3Request::Request(req, stream))),
                        // h3 reset the stream (or failed the connection,
                        // which the next poll reports).
                        Err(e) => tracing::debug!(error = %e, "HTTP/3 request refused by h3"),
                    }
                }
                Event::Head(Ok(None)) => {}
                Event::Head(Err(e)) => tracing::debug!(error = %e, "HTTP/3 header reading task"),
            }
        }
    }

    /// The QUIC connection (peer address, statistics, close).
    pub fn quic(&self) -> &quinn::Connection {
        &self.quic
    }

    /// Starts a graceful shutdown: GOAWAY, accepting `max_requests` more
    /// requests that may be in flight.
    ///
    /// **Cancel safety:** not cancel safe.
    pub async fn shutdown(&mut self, max_requests: usize) -> Result<(), WsError> {
        self.conn
            .shutdown(max_requests)
            .await
            .map_err(|e| quic_err("HTTP/3 shutdown", e))
    }

    /// h3's connection, for what this type does not do: WebTransport
    /// (`WebTransportSession::accept(request, stream, conn)` with an
    /// ordinary request from [`next`](Self::next)). WebSockets already
    /// accepted keep running; streams whose headers were still being read
    /// are reset (`H3_REQUEST_REJECTED`), and later extended CONNECTs for
    /// WebSockets are h3's to refuse.
    pub fn into_inner(self) -> H3Connection {
        self.conn
    }
}

/// An extended CONNECT for a WebSocket ([`Http3Request::WebSocket`]),
/// waiting to be accepted or rejected. Dropping it resets the stream
/// (`H3_REQUEST_REJECTED`).
pub struct Http3WebSocketRequest {
    request: Request<()>,
    protocol: String,
    /// `None` once answered.
    io: Option<StreamIo>,
    answer_timeout: Duration,
}

impl fmt::Debug for Http3WebSocketRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http3WebSocketRequest")
            .field("request", &self.request)
            .field("protocol", &self.protocol)
            .field("stream", &self.io.as_ref().map(StreamIo::id))
            .finish_non_exhaustive()
    }
}

impl Drop for Http3WebSocketRequest {
    fn drop(&mut self) {
        if let Some(io) = &mut self.io {
            io.abort(Code::H3_REQUEST_REJECTED);
        }
    }
}

impl Http3WebSocketRequest {
    /// The request: `CONNECT`, `scheme://authority/path` as its URI (from
    /// `:scheme`, `:authority` and `:path`), HTTP/3, its headers.
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// The `:protocol` asked for (`websocket` for a WebSocket).
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The request as the handshake checks see it: method, `:path` (with
    /// the query) as the path, the headers.
    pub fn head(&self) -> RequestHead<'_> {
        let path = self
            .request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str());
        RequestHead::from_parts(
            self.request.method().as_str(),
            false,
            path,
            self.request
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        )
    }

    /// Accepts the WebSocket: checks the request as over HTTP/2
    /// (`:protocol = websocket`, `sec-websocket-version: 13`, ...; a
    /// refusal is answered with its status, 400 or 426, and fails with
    /// [`WsError::Rejected`]), answers `200` with the negotiated
    /// subprotocol and permessage-deflate, and returns the WebSocket.
    /// Bounded by `opts.ws.handshake_timeout`.
    ///
    /// **Cancel safety:** not cancel safe (the stream is reset).
    pub async fn accept(self, opts: &ServerOptions) -> Result<Http3WebSocket, WsError> {
        self.accept_with(opts, |_| Ok(())).await
    }

    /// Like [`accept`](Self::accept), with a check on the request first:
    /// return a [`Rejection`] (e.g. `wshub_proto::handshake::reject(403,
    /// "origin not allowed")`) to refuse it with that response.
    ///
    /// **Cancel safety:** not cancel safe (the stream is reset).
    pub async fn accept_with<F>(
        mut self,
        opts: &ServerOptions,
        check: F,
    ) -> Result<Http3WebSocket, WsError>
    where
        F: FnOnce(&RequestHead<'_>) -> Result<(), Rejection>,
    {
        let answer = {
            let head = self.head();
            let uri = self.request.uri();
            let pseudo = ExtendedConnect {
                protocol: Some(self.protocol.as_str()),
                authority: uri.authority().map(|a| a.as_str()),
                scheme: uri.scheme_str(),
            };
            check(&head)
                .and_then(|()| handshake::accept_extended_connect(&head, pseudo, &opts.handshake))
        };
        let deadline = Instant::now() + opts.ws.handshake_timeout;
        let Some(mut io) = self.io.take() else {
            return Err(WsError::Closed);
        };
        let accepted = match answer {
            Ok(a) => a,
            Err(rej) => {
                send_rejection(&mut io, &rej, deadline).await;
                return Err(WsError::Rejected {
                    status: rej.status,
                    reason: rej.reason,
                });
            }
        };
        let sent = match response_frame(
            200,
            accepted
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        ) {
            Ok(frame) => timeout_at(deadline, write_all(&mut io, frame))
                .await
                .map_err(WsError::from)
                .and_then(|r| r.map_err(WsError::Io)),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            io.abort(Code::H3_INTERNAL_ERROR);
            return Err(e);
        }
        let config = conn_config(&opts.ws, opts.handshake.deflate.as_ref());
        let conn = Connection::new(Role::Server, config, accepted.deflate);
        Ok(WebSocket::with_options(
            Http3Stream::new(io, None),
            conn,
            &[],
            accepted.subprotocol,
            &opts.ws,
        ))
    }

    /// Refuses the request with `rej` (its status, its headers and its
    /// reason as the body) and ends the stream, within
    /// `Http3Options::request_header_timeout`.
    ///
    /// **Cancel safety:** not cancel safe (the stream is reset).
    pub async fn reject(mut self, rej: &Rejection) {
        if let Some(mut io) = self.io.take() {
            send_rejection(&mut io, rej, Instant::now() + self.answer_timeout).await;
        }
    }
}

/// Answers an ordinary request [`serve_http3`] does not serve.
async fn answer_ordinary(req: Request<()>, mut stream: H3RequestStream, limit: Duration) {
    let (status, body) = if req.method() == Method::CONNECT {
        (
            StatusCode::NOT_IMPLEMENTED,
            "this server implements no CONNECT but WebSockets over HTTP/3 (RFC 9220, \
             :protocol websocket)\n",
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "not found: this server only serves WebSockets over HTTP/3 (RFC 9220 extended \
             CONNECT)\n",
        )
    };
    let Ok(resp) = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(())
    else {
        return;
    };
    let answered = timeout(limit, async {
        stream.send_response(resp).await?;
        stream
            .send_data(Bytes::from_static(body.as_bytes()))
            .await?;
        stream.finish().await
    })
    .await;
    if !matches!(answered, Ok(Ok(()))) {
        stream.stop_stream(Code::H3_REQUEST_REJECTED);
    }
}

/// Serves WebSockets over HTTP/3 on `endpoint` (see [`bind_http3`]) until
/// it is closed: every connection is accepted ([`Http3Connection::accept`],
/// bounded by the handshake timeout) and runs on a task; every extended
/// CONNECT that `check` lets through (it sees the request as
/// [`RequestHead`], `:path` as its path) and that passes the handshake
/// check becomes a WebSocket handed to `on_socket` with its request; a
/// refused handshake is answered with its status, any other request with
/// 404 (a CONNECT for another protocol with 501), each with a plain-text
/// body saying so.
///
/// The QUIC and HTTP/3 settings are [`Http3Options`]' defaults (use
/// [`serve_http3_with`] for others; the endpoint's own transport settings
/// are the ones it was bound with). The futures `on_socket` returns run on
/// tasks of their own.
///
/// **Cancel safety:** not cancel safe: cancelling stops accepting; the
/// connections already accepted keep running.
pub async fn serve_http3<C, F, Fut>(
    endpoint: quinn::Endpoint,
    opts: &ServerOptions,
    check: C,
    on_socket: F,
) -> Result<(), WsError>
where
    C: Fn(&RequestHead<'_>) -> Result<(), Rejection> + Send + Sync + 'static,
    F: Fn(Http3WebSocket, Request<()>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve_http3_with(endpoint, opts, &Http3Options::default(), check, on_socket).await
}

/// [`serve_http3`] with HTTP/3 settings of your choice (the handshake,
/// header timeouts, field section limit and SETTINGS; bind the endpoint
/// with the same options for the QUIC ones).
///
/// **Cancel safety:** not cancel safe: cancelling stops accepting.
pub async fn serve_http3_with<C, F, Fut>(
    endpoint: quinn::Endpoint,
    opts: &ServerOptions,
    h3: &Http3Options,
    check: C,
    on_socket: F,
) -> Result<(), WsError>
where
    C: Fn(&RequestHead<'_>) -> Result<(), Rejection> + Send + Sync + 'static,
    F: Fn(Http3WebSocket, Request<()>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let shared = Arc::new((opts.clone(), h3.clone(), check, on_socket));
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let mut conn = match Http3Connection::accept(incoming, &shared.1).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(%remote, error = %e, "HTTP/3 connection not set up");
                    return;
                }
            };
            loop {
                match conn.next().await {
                    Ok(Some(Http3Request::WebSocket(req))) => {
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            let info = copy_request(req.request());
                            let (opts, _, check, on_socket) = &*shared;
                            match req.accept_with(opts, |h| check(h)).await {
                                Ok(ws) => on_socket(ws, info).await,
                                Err(e) => tracing::debug!(error = %e, "HTTP/3 WebSocket refused"),
                            }
                        });
                    }
                    Ok(Some(Http3Request::Request(req, stream))) => {
                        tokio::spawn(answer_ordinary(
                            req,
                            stream,
                            shared.1.request_header_timeout,
                        ));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(%remote, error = %e, "HTTP/3 connection ended");
                        break;
                    }
                }
            }
        });
    }
    Ok(())
}

fn copy_request(req: &Request<()>) -> Request<()> {
    let mut info = Request::new(());
    *info.method_mut() = req.method().clone();
    *info.uri_mut() = req.uri().clone();
    *info.version_mut() = req.version();
    *info.headers_mut() = req.headers().clone();
    info
}

// ----- the byte stream ------------------------------------------------------

/// A WebSocket's bytes over one HTTP/3 request stream: the payload of the
/// DATA frames in both directions (writes are cut into DATA frames of at
/// most 32 KiB), unknown and reserved frame types skipped (RFC 9114 §9),
/// a HEADERS frame after the start (trailers) read as the end, FIN on
/// shutdown. A frame that may not appear on a request stream resets the
/// stream with `H3_FRAME_UNEXPECTED`, a stream that ends inside a frame
/// with `H3_FRAME_ERROR`; both read as errors, as does a stream reset by
/// the peer.
pub struct Http3Stream {
    io: StreamIo,
    /// Received bytes not looked at yet (at most one QUIC chunk).
    rx: Bytes,
    /// A frame header being received (type and length varints).
    hdr: [u8; 16],
    hdr_len: usize,
    /// Payload bytes left in the current DATA frame, to hand out.
    data_left: u64,
    /// Payload bytes left in the current unknown frame, to drop.
    skip_left: u64,
    /// The read side is over (FIN, trailers, or an error).
    rx_done: bool,
    /// Encoded DATA frame not yet taken by QUIC (at most one).
    tx: Bytes,
    shut: bool,
    /// A client's stream keeps its connection open.
    client: Option<Arc<ClientShared>>,
}

impl fmt::Debug for Http3Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http3Stream")
            .field("id", &self.io.id())
            .field("client", &self.client.is_some())
            .field("pending_out", &self.tx.len())
            .field("shut", &self.shut)
            .finish_non_exhaustive()
    }
}

impl Http3Stream {
    fn new(io: StreamIo, conn: Option<Arc<ClientShared>>) -> Http3Stream {
        Http3Stream {
            io,
            rx: Bytes::new(),
            hdr: [0; 16],
            hdr_len: 0,
            data_left: 0,
            skip_left: 0,
            rx_done: false,
            tx: Bytes::new(),
            shut: false,
            client: conn,
        }
    }

    /// The QUIC stream id.
    pub fn id(&self) -> u64 {
        self.io.id()
    }

    /// Whether this is a client's stream ([`Http3Client`]).
    pub fn is_client(&self) -> bool {
        self.client.is_some()
    }

    /// Resets the stream for a framing error; the error to read.
    fn broken(&mut self, code: Code, why: &str) -> io::Error {
        self.rx_done = true;
        self.io.abort(code);
        io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/3 stream: {why}"))
    }

    /// Moves frame header bytes from `rx` into `hdr`; once the header is
    /// complete, starts the frame (or ends the read side, or fails).
    fn take_frame_header(&mut self) -> io::Result<()> {
        while !self.rx.is_empty() {
            let need = match self.hdr.first() {
                None => 1,
                Some(_) if self.hdr_len == 0 => 1,
                Some(&t) => {
                    let tl = varint_len(t);
                    match self.hdr.get(tl) {
                        Some(&l) if self.hdr_len > tl => tl + varint_len(l),
                        _ => tl + 1,
                    }
                }
            };
            if self.hdr_len == need {
                break;
            }
            let n = (need - self.hdr_len).min(self.rx.len());
            let (Some(dst), Some(src)) = (
                self.hdr.get_mut(self.hdr_len..self.hdr_len + n),
                self.rx.get(..n),
            ) else {
                return Err(self.broken(Code::H3_FRAME_ERROR, "bad frame header"));
            };
            dst.copy_from_slice(src);
            self.hdr_len += n;
            self.rx.advance(n);
        }
        let first = self.hdr.first().copied().unwrap_or(0);
        let tl = varint_len(first);
        let complete = self.hdr_len > tl
            && self
                .hdr
                .get(tl)
                .is_some_and(|&l| self.hdr_len == tl + varint_len(l));
        if !complete {
            return Ok(());
        }
        let (ty, len) = match (self.hdr.get(..tl), self.hdr.get(tl..self.hdr_len)) {
            (Some(t), Some(l)) => (varint_decode(t), varint_decode(l)),
            _ => return Err(self.broken(Code::H3_FRAME_ERROR, "bad frame header")),
        };
        self.hdr_len = 0;
        match ty {
            FRAME_DATA => self.data_left = len,
            FRAME_HEADERS => {
                // Trailers: the message is over; nothing may follow.
                self.rx_done = true;
                self.io.stop_reading(Code::H3_NO_ERROR);
            }
            t if is_forbidden_on_request_stream(t) => {
                return Err(self.broken(
                    Code::H3_FRAME_UNEXPECTED,
                    &format!("frame type {t:#x} on a request stream"),
                ))
            }
            _ => self.skip_left = len,
        }
        Ok(())
    }

    /// Hands the queued DATA frame to QUIC.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.tx.is_empty() {
            let mut tx = std::mem::take(&mut self.tx);
            let r = self.io.poll_send(cx, &mut tx);
            self.tx = tx;
            if ready!(r)? == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Queues `bufs` (at most [`MAX_DATA_FRAME`] bytes of them) as one
    /// DATA frame and starts sending it; the count taken.
    fn poll_write_frame(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        if self.shut {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "HTTP/3 stream shut down",
            )));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let len = total.min(MAX_DATA_FRAME);
        if len == 0 {
            return Poll::Ready(Ok(0));
        }
        let mut frame = BytesMut::with_capacity(len + 16);
        data_frame_header(&mut frame, len);
        let mut left = len;
        for b in bufs {
            let take = left.min(b.len());
            frame.extend_from_slice(b.get(..take).unwrap_or_default());
            left -= take;
            if left == 0 {
                break;
            }
        }
        self.tx = frame.freeze();
        // Start sending; what QUIC does not take now goes with the next
        // write or flush.
        if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(len))
    }
}

impl AsyncRead for Http3Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.data_left > 0 && !this.rx.is_empty() {
                let n = usize::try_from(this.data_left)
                    .unwrap_or(usize::MAX)
                    .min(this.rx.len())
                    .min(buf.remaining());
                buf.put_slice(this.rx.get(..n).unwrap_or_default());
                this.rx.advance(n);
                this.data_left -= n as u64;
                return Poll::Ready(Ok(()));
            }
            if this.skip_left > 0 && !this.rx.is_empty() {
                let n = usize::try_from(this.skip_left)
                    .unwrap_or(usize::MAX)
                    .min(this.rx.len());
                this.rx.advance(n);
                this.skip_left -= n as u64;
                continue;
            }
            if this.rx_done {
                return Poll::Ready(Ok(()));
            }
            if this.data_left == 0 && this.skip_left == 0 && !this.rx.is_empty() {
                this.take_frame_header()?;
                continue;
            }
            match ready!(this.io.poll_chunk(cx)) {
                Ok(Some(chunk)) => this.rx = chunk,
                Ok(None) => {
                    this.rx_done = true;
                    if this.hdr_len > 0 || this.data_left > 0 || this.skip_left > 0 {
                        return Poll::Ready(Err(
                            this.broken(Code::H3_FRAME_ERROR, "the stream ended inside a frame")
                        ));
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) => {
                    this.rx_done = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl AsyncWrite for Http3Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_frame(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_frame(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if !this.shut {
            this.shut = true;
            this.io.finish();
        }
        Poll::Ready(Ok(()))
    }
}

// ----- client ---------------------------------------------------------------

/// What the server's SETTINGS said.
#[derive(Clone, Copy, Debug)]
struct PeerSettings {
    extended_connect: bool,
    max_field_section_size: u64,
}

/// What a client connection's clones and streams share; the connection
/// closes when the last of them is gone.
struct ClientShared {
    quic: quinn::Connection,
    _endpoint: quinn::Endpoint,
    opener: h3_quinn::OpenStreams,
    /// Keeps h3's side of the connection open (dropping the last one
    /// closes it).
    _send_request: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    authority: String,
    peer: PeerSettings,
    max_field_section_size: u64,
}

impl Drop for ClientShared {
    fn drop(&mut self) {
        self.quic
            .close(quinn::VarInt::from_u32(0x100), b"client done");
    }
}

/// One HTTP/3 connection (QUIC, ALPN `h3`) to a WebSocket server, on which
/// [`websocket`](Self::websocket) opens WebSockets as streams (RFC 9220).
/// Cheap to clone: clones share the connection, which closes when the last
/// clone and the last of its WebSockets are gone.
#[derive(Clone)]
pub struct Http3Client {
    inner: Arc<ClientShared>,
}

impl fmt::Debug for Http3Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http3Client")
            .field("remote", &self.inner.quic.remote_address())
            .field("authority", &self.inner.authority)
            .finish_non_exhaustive()
    }
}

/// The address to connect to: an IP as given, a name's first IPv4
/// address (or its first one).
async fn resolve(target: &Target) -> Result<SocketAddr, WsError> {
    match &target.host {
        url::Host::Ipv4(a) => Ok(SocketAddr::new(IpAddr::V4(*a), target.port)),
        url::Host::Ipv6(a) => Ok(SocketAddr::new(IpAddr::V6(*a), target.port)),
        url::Host::Domain(d) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((d.as_str(), target.port))
                .await?
                .collect();
            addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or(addrs.first())
                .copied()
                .ok_or_else(|| {
                    WsError::Io(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{d}: no address"),
                    ))
                })
        }
    }
}

/// Runs h3's client connection until it ends, reporting the server's
/// SETTINGS (the first frame of its control stream) on `settings`.
async fn drive(
    mut conn: h3::client::Connection<h3_quinn::Connection, Bytes>,
    settings: tokio::sync::oneshot::Sender<PeerSettings>,
) {
    let mut settings = Some(settings);
    let end = poll_fn(|cx| {
        if settings.is_some() {
            match conn.inner.poll_control(cx) {
                Poll::Ready(Ok(Frame::Settings(s))) => {
                    let peer = PeerSettings {
                        extended_connect: s
                            .get(SettingId::ENABLE_CONNECT_PROTOCOL)
                            .is_some_and(|v| v == 1),
                        max_field_section_size: s
                            .get(SettingId::MAX_HEADER_LIST_SIZE)
                            .unwrap_or(u64::MAX),
                    };
                    if let Some(tx) = settings.take() {
                        let _ = tx.send(peer);
                    }
                }
                // h3 fails the connection on anything before SETTINGS.
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(e),
                Poll::Pending => {}
            }
        }
        conn.poll_close(cx)
    })
    .await;
    if end.is_h3_no_error() {
        tracing::debug!("HTTP/3 client connection closed");
    } else {
        tracing::debug!(error = %end, "HTTP/3 client connection ended");
    }
}

impl Http3Client {
    /// Opens an HTTP/3 connection to the server of `url` (`https://` or
    /// `wss://`; the path is ignored): QUIC with TLS as `opts.tls` says
    /// (roots, extra CAs, your own rustls configuration) and ALPN `h3`,
    /// bounded by `opts.connect_timeout`; then HTTP/3, whose connection
    /// driver runs on a task, and the wait for the server's SETTINGS,
    /// bounded by `opts.ws.handshake_timeout` (both [`WsError::Timeout`]).
    /// Fails with [`WsError::Http3`] when the server does not allow
    /// WebSockets (no `SETTINGS_ENABLE_CONNECT_PROTOCOL`) or QUIC fails
    /// (an untrusted certificate, no `h3`). A host name connects to its
    /// first IPv4 address (or its first address). `h3` gives the windows,
    /// idle timeout, keepalive and the field section limit of responses.
    ///
    /// **Cancel safety:** not cancel safe (nothing is left to resume).
    pub async fn connect(
        url: &str,
        opts: &ClientOptions,
        h3: &Http3Options,
    ) -> Result<Http3Client, WsError> {
        let target = parse_url(url)?;
        if !target.tls {
            return Err(WsError::InvalidUrl(format!(
                "{url:?}: WebSockets over HTTP/3 need an https:// or wss:// URL"
            )));
        }
        let config = h3.client_config(&opts.tls)?;
        let connect = async {
            let addr = resolve(&target).await?;
            let bind = if addr.is_ipv4() {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
            } else {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
            };
            let endpoint = quinn::Endpoint::client(bind)?;
            let name = match &target.host {
                url::Host::Domain(d) => d.clone(),
                url::Host::Ipv4(a) => a.to_string(),
                url::Host::Ipv6(a) => a.to_string(),
            };
            let quic = endpoint
                .connect_with(config, addr, &name)
                .map_err(|e| quic_err("QUIC connect", e))?
                .await
                .map_err(|e| quic_err("QUIC handshake", e))?;
            Ok::<_, WsError>((endpoint, quic))
        };
        let (endpoint, quic) = timeout(opts.connect_timeout, connect).await??;
        let setup = async {
            let h3q_conn = h3_quinn::Connection::new(quic.clone());
            let opener = h3q::Connection::<Bytes>::opener(&h3q_conn);
            let (driver, send_request) = h3::client::builder()
                .max_field_section_size(h3.max_field_section_size)
                .build::<_, _, Bytes>(h3q_conn)
                .await
                .map_err(|e| quic_err("HTTP/3 setup", e))?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(drive(driver, tx));
            let peer = rx.await.map_err(|_| {
                WsError::Http3("the connection ended before the server's SETTINGS".into())
            })?;
            Ok::<_, WsError>((opener, send_request, peer))
        };
        let (opener, send_request, peer) = match timeout(opts.ws.handshake_timeout, setup).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                quic.close(quinn::VarInt::from_u32(0x100), b"");
                return Err(e);
            }
            Err(_) => {
                quic.close(quinn::VarInt::from_u32(0x100), b"");
                return Err(WsError::Timeout);
            }
        };
        let client = Http3Client {
            inner: Arc::new(ClientShared {
                quic,
                _endpoint: endpoint,
                opener,
                _send_request: send_request,
                authority: target.host_header.clone(),
                peer,
                max_field_section_size: h3.max_field_section_size,
            }),
        };
        if !client.supports_websockets() {
            return Err(WsError::Http3(
                "the server does not allow WebSockets over HTTP/3 \
                 (no SETTINGS_ENABLE_CONNECT_PROTOCOL)"
                    .into(),
            ));
        }
        Ok(client)
    }

    /// Whether the server advertised `SETTINGS_ENABLE_CONNECT_PROTOCOL`
    /// (always, on a client [`connect`](Self::connect) returned).
    pub fn supports_websockets(&self) -> bool {
        self.inner.peer.extended_connect
    }

    /// The QUIC connection (statistics, addresses, closing it).
    pub fn quic(&self) -> &quinn::Connection {
        &self.inner.quic
    }

    /// Opens a WebSocket at `path_or_url` (`/chat?room=1`, or a URL whose
    /// path and query are used) as a new stream of this connection: an
    /// extended CONNECT (`:protocol websocket`, `:scheme https`, the
    /// connection's `:authority`) with the subprotocols, permessage-deflate
    /// offer, origin and extra headers of `opts.handshake`, checked as over
    /// HTTP/2 (a status other than 2xx fails with [`WsError::Handshake`]).
    /// Waits while the server's QUIC stream limit is reached; bounded by
    /// `opts.ws.handshake_timeout`.
    ///
    /// **Cancel safety:** not cancel safe (the stream is dropped).
    pub async fn websocket(
        &self,
        path_or_url: &str,
        opts: &ClientOptions,
    ) -> Result<Http3WebSocket, WsError> {
        let (stream, conn, protocol) = self.open_stream(path_or_url, opts).await?;
        Ok(WebSocket::with_options(
            stream,
            conn,
            &[],
            protocol,
            &opts.ws,
        ))
    }

    /// The byte stream of a WebSocket opened as
    /// [`websocket`](Self::websocket) does (the same extended CONNECT and
    /// checks), without the engine on it: for callers that run their own
    /// framing (conformance tests, tunnels). The frames on it are the
    /// client's to mask.
    ///
    /// **Cancel safety:** not cancel safe (the stream is dropped).
    pub async fn raw_stream(
        &self,
        path_or_url: &str,
        opts: &ClientOptions,
    ) -> Result<Http3Stream, WsError> {
        Ok(self.open_stream(path_or_url, opts).await?.0)
    }

    async fn open_stream(
        &self,
        path_or_url: &str,
        opts: &ClientOptions,
    ) -> Result<(Http3Stream, Connection, Option<String>), WsError> {
        let path = if path_or_url.starts_with('/') {
            path_or_url.to_owned()
        } else {
            parse_url(path_or_url)?.path_and_query
        };
        let hs = ExtendedConnectHandshake::try_new(opts.handshake.clone())?;
        let mut fields = vec![
            HeaderField::new(":method", "CONNECT"),
            HeaderField::new(":protocol", "websocket"),
            HeaderField::new(":scheme", "https"),
            HeaderField::new(":authority", self.inner.authority.as_str()),
            HeaderField::new(":path", path.as_str()),
        ];
        for (n, v) in hs.headers() {
            fields.push(HeaderField::new(n.as_str(), v.as_str()));
        }
        let size: u64 = fields.iter().map(|f| f.mem_size() as u64).sum();
        if size > self.inner.peer.max_field_section_size {
            return Err(WsError::Http3(format!(
                "the request's header section ({size} bytes) is over the server's \
                 SETTINGS_MAX_FIELD_SECTION_SIZE ({})",
                self.inner.peer.max_field_section_size
            )));
        }
        let frame = headers_frame(fields)?;
        let max = self.inner.max_field_section_size;
        let open = async {
            let mut opener = self.inner.opener.clone();
            let bidi: QuicBidi =
                poll_fn(|cx| h3q::OpenStreams::<Bytes>::poll_open_bidi(&mut opener, cx))
                    .await
                    .map_err(|e| WsError::Io(stream_err(e)))?;
            let mut s = StreamIo::new(bidi);
            write_all(&mut s, frame).await?;
            let response = read_response(&mut s, max).await;
            Ok::<_, WsError>((s, response))
        };
        let (mut s, response) = timeout(opts.ws.handshake_timeout, open).await??;
        let checked = response.and_then(|(status, headers)| {
            hs.receive_response(status, headers).map_err(WsError::from)
        });
        let accepted = match checked {
            Ok(a) => a,
            Err(e) => {
                s.abort(Code::H3_REQUEST_CANCELLED);
                return Err(e);
            }
        };
        let config = conn_config(&opts.ws, opts.handshake.deflate.as_ref());
        let conn = Connection::new(Role::Client, config, accepted.deflate);
        Ok((
            Http3Stream::new(s, Some(self.inner.clone())),
            conn,
            accepted.subprotocol,
        ))
    }
}

/// Reads the final response's HEADERS (skipping interim 1xx ones): its
/// status and headers.
async fn read_response(
    s: &mut StreamIo,
    max: u64,
) -> Result<(u16, Vec<(String, Vec<u8>)>), WsError> {
    loop {
        let block = read_headers_frame(s, max, false)
            .await
            .map_err(|e| match e {
                HeadError::Io(e) => WsError::Io(e),
                e => WsError::Http3(format!("response: {e}")),
            })?;
        let fields = qpack::decode_stateless(&mut block.clone(), max)
            .map_err(|e| WsError::Http3(format!("response headers: {e}")))?
            .fields;
        let mut status = None;
        let mut headers = Vec::new();
        for f in fields {
            let (name, value) = (f.name.as_ref(), f.value.as_ref());
            if name == b":status" {
                if status.is_some() || !headers.is_empty() {
                    return Err(WsError::Http3("malformed response: :status".into()));
                }
                status = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u16>().ok())
                    .filter(|s| (100..=999).contains(s));
                if status.is_none() {
                    return Err(WsError::Http3("malformed response: invalid :status".into()));
                }
            } else if name.starts_with(b":") {
                return Err(WsError::Http3("malformed response: a pseudo-header".into()));
            } else {
                let Ok(n) = std::str::from_utf8(name) else {
                    return Err(WsError::Http3("malformed response: a header name".into()));
                };
                headers.push((n.to_ascii_lowercase(), value.to_vec()));
            }
        }
        match status {
            Some(s) if (100..200).contains(&s) => continue,
            Some(s) => return Ok((s, headers)),
            None => return Err(WsError::Http3("malformed response: no :status".into())),
        }
    }
}
