//! WebSocket over HTTP/2 (RFC 8441): many WebSockets as streams of one
//! connection, opened with an extended CONNECT (`:method = CONNECT`,
//! `:protocol = websocket`), after the server advertised
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL`.
//!
//! The HTTP/2 framing, HPACK, flow control and the protections of a
//! server against abusive peers (rapid reset, CONTINUATION and SETTINGS
//! floods, stream limits) are the `h2` crate's (under hyper on the server
//! side); this module is the glue: the settings, the extended CONNECT, and
//! a byte stream over one HTTP/2 stream that the sans-I/O core runs on with
//! its usual limits.
//!
//! **Server:** [`serve_http2`] serves one HTTP/2 connection (after TLS with
//! ALPN `h2`, or cleartext with prior knowledge: [`is_http2_preface`]);
//! inside your own hyper service, [`crate::upgrade`] accepts the extended
//! CONNECT of an HTTP/2 request as it does the `GET` of an HTTP/1.1 one.
//!
//! **Client:** [`Http2Connection::connect`] opens one connection (`wss://`
//! with ALPN `h2`, `ws://` with prior knowledge) and
//! [`Http2Connection::websocket`] opens a WebSocket on it, as many as the
//! server's `SETTINGS_MAX_CONCURRENT_STREAMS` allows at once.
//! [`crate::connect_prefer_http2`] uses HTTP/2 when the server offers it
//! and HTTP/1.1 otherwise.
//!
//! Unlike a [`WebSocket`] on its own socket, an HTTP/2 connection is shared
//! by its streams, so its frames are read and written by a task of its own
//! (spawned on the current tokio runtime), and on the server each stream's
//! WebSocket runs on a task too: the one place this crate spawns.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use wshub_proto::handshake::{ExtendedConnectHandshake, Rejection, RequestHead};
use wshub_proto::{Connection, Role};

use crate::client::{parse_url, tcp_connect, ClientOptions, Target};
use crate::error::WsError;
use crate::server::{conn_config, ServerOptions, UpgradedWebSocket};
use crate::tls;
use crate::websocket::WebSocket;

/// The first bytes of every HTTP/2 connection (RFC 9113 §3.4): a server
/// that sees them on a cleartext socket speaks HTTP/2 with prior
/// knowledge.
pub const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `first` (the first bytes read from a connection, at least one)
/// can be the start of the HTTP/2 preface. Once 24 bytes are there, whether
/// it is.
pub fn is_http2_preface(first: &[u8]) -> bool {
    let n = first.len().min(HTTP2_PREFACE.len());
    n > 0 && first.get(..n) == HTTP2_PREFACE.get(..n)
}

/// The HTTP/2 settings of a server connection.
///
/// The defaults bound what one client can make the server hold: 128
/// concurrent streams, a 1 MiB connection window (every byte the client
/// sends and the server has not read yet counts against it, whatever the
/// stream), 256 KiB per stream, 64 KiB of queued output per stream before
/// a WebSocket's own high-water mark applies, a 16 KiB header list.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Http2Options {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` (default 128). A stream past it is
    /// refused (`REFUSED_STREAM`).
    pub max_concurrent_streams: u32,
    /// The initial flow-control window of the connection (default 1 MiB).
    pub connection_window: u32,
    /// The initial flow-control window of each stream (default 256 KiB).
    pub stream_window: u32,
    /// Most bytes h2 queues for one stream before writes wait (default 64
    /// KiB).
    pub max_send_buf_size: usize,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE` (default 16 KiB): a bigger header
    /// block (however many CONTINUATION frames carry it) is refused.
    pub max_header_list_size: u32,
    /// Streams a client may open and reset before the server accepted
    /// them (the HTTP/2 rapid-reset attack, CVE-2023-44487); past it the
    /// connection is closed with `ENHANCE_YOUR_CALM` (default 20).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server may reset because the client broke the
    /// protocol on them, before it closes the connection (default 1024).
    /// h2 counts the streams refused past
    /// [`max_concurrent_streams`](Self::max_concurrent_streams) here too,
    /// so a low value would let a burst of refused streams take the
    /// connection's open WebSockets down with it.
    pub max_local_error_reset_streams: usize,
    /// HTTP/2 PING every interval, the connection closed when one is not
    /// answered within [`keepalive_timeout`](Self::keepalive_timeout)
    /// (default 20 s; `None`: no pings).
    pub keepalive_interval: Option<Duration>,
    /// See [`keepalive_interval`](Self::keepalive_interval) (default 20 s).
    pub keepalive_timeout: Duration,
}

impl Default for Http2Options {
    fn default() -> Self {
        Http2Options {
            max_concurrent_streams: 128,
            connection_window: 1 << 20,
            stream_window: 256 << 10,
            max_send_buf_size: 64 << 10,
            max_header_list_size: 16 << 10,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            keepalive_interval: Some(Duration::from_secs(20)),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

impl Http2Options {
    /// Sets [`Http2Options::max_concurrent_streams`].
    pub fn max_concurrent_streams(mut self, v: u32) -> Self {
        self.max_concurrent_streams = v;
        self
    }
    /// Sets [`Http2Options::keepalive_interval`].
    pub fn keepalive_interval(mut self, v: Option<Duration>) -> Self {
        self.keepalive_interval = v;
        self
    }

    /// A hyper HTTP/2 server builder with these settings and
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL` on, for serving WebSockets (and
    /// anything else) with your own service and [`crate::upgrade`].
    pub fn server_builder(&self) -> hyper::server::conn::http2::Builder<TokioExecutor> {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        self.apply(&mut b);
        b
    }

    /// Applies these settings to a hyper HTTP/2 server builder (e.g. the
    /// HTTP/2 half of `hyper_util`'s auto builder), with
    /// `SETTINGS_ENABLE_CONNECT_PROTOCOL` on.
    pub fn apply<E>(&self, b: &mut hyper::server::conn::http2::Builder<E>) {
        b.enable_connect_protocol()
            .max_concurrent_streams(self.max_concurrent_streams)
            .initial_connection_window_size(self.connection_window)
            .initial_stream_window_size(self.stream_window)
            .max_send_buf_size(self.max_send_buf_size)
            .max_header_list_size(self.max_header_list_size)
            .max_pending_accept_reset_streams(self.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(self.max_local_error_reset_streams)
            .keep_alive_interval(self.keepalive_interval)
            .keep_alive_timeout(self.keepalive_timeout)
            .timer(TokioTimer::new());
    }
}

type AnyBody = BoxBody<Bytes, std::convert::Infallible>;

/// Serves WebSockets over one HTTP/2 connection until it ends: every
/// extended CONNECT that `check` lets through (it sees the request as
/// [`RequestHead`], `:path` as its path) and that passes the handshake
/// check of [`crate::upgrade`] becomes a WebSocket handed to `on_socket`
/// with its request; any other request is answered `404`, a refused
/// handshake with its status. The connection must speak HTTP/2 from its
/// first byte (ALPN `h2`, or the preface: [`is_http2_preface`]).
///
/// `opts.ws.handshake_timeout` bounds the wait for the client's preface
/// and first request; the HTTP/2 settings are [`Http2Options`]' defaults
/// (use [`serve_http2_with`] for others). The futures `on_socket` returns
/// run on tasks of their own.
///
/// **Cancel safety:** not cancel safe: cancelling closes the connection.
pub async fn serve_http2<S, C, F, Fut>(
    io: S,
    opts: &ServerOptions,
    check: C,
    on_socket: F,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: Fn(&RequestHead<'_>) -> Result<(), Rejection> + Send + Sync + 'static,
    F: Fn(UpgradedWebSocket, Request<()>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve_http2_with(io, opts, &Http2Options::default(), check, on_socket).await
}

/// [`serve_http2`] with HTTP/2 settings of your choice.
///
/// **Cancel safety:** not cancel safe: cancelling closes the connection.
pub async fn serve_http2_with<S, C, F, Fut>(
    io: S,
    opts: &ServerOptions,
    h2: &Http2Options,
    check: C,
    on_socket: F,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: Fn(&RequestHead<'_>) -> Result<(), Rejection> + Send + Sync + 'static,
    F: Fn(UpgradedWebSocket, Request<()>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let shared = Arc::new((opts.clone(), check, on_socket));
    let first = Arc::new(tokio::sync::Notify::new());
    let first_seen = first.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        first_seen.notify_one();
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&mut req, &shared)) }
    });
    let conn = h2.server_builder().serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let handshake = tokio::time::sleep(opts.ws.handshake_timeout);
    tokio::pin!(handshake);
    let mut waiting = true;
    loop {
        tokio::select! {
            r = conn.as_mut() => return r.map_err(|e| WsError::Http2(e.to_string())),
            () = first.notified(), if waiting => waiting = false,
            () = &mut handshake, if waiting => {
                conn.as_mut().graceful_shutdown();
                return Err(WsError::Timeout);
            }
        }
    }
}

fn answer<C, F, Fut>(
    req: &mut Request<Incoming>,
    shared: &Arc<(ServerOptions, C, F)>,
) -> Response<AnyBody>
where
    C: Fn(&RequestHead<'_>) -> Result<(), Rejection> + Send + Sync + 'static,
    F: Fn(UpgradedWebSocket, Request<()>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (opts, check, _) = &**shared;
    if !crate::server::is_extended_connect(req) {
        let mut r = Response::new(Empty::new().boxed());
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    let checked = {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let head = RequestHead::from_parts(
            req.method().as_str(),
            false,
            path,
            req.headers()
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        );
        check(&head)
    };
    if let Err(rej) = checked {
        return crate::server::rejection_response(&rej).map(|b| b.boxed());
    }
    match crate::server::upgrade(req, opts) {
        Ok((resp, fut)) => {
            let mut info = Request::new(());
            *info.method_mut() = req.method().clone();
            *info.uri_mut() = req.uri().clone();
            *info.version_mut() = req.version();
            *info.headers_mut() = req.headers().clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Ok(ws) = fut.await {
                    (shared.2)(ws, info).await;
                }
            });
            resp.map(|b| b.boxed())
        }
        Err(resp) => resp.map(|b| b.boxed()),
    }
}

// ----- client ---------------------------------------------------------------

/// One HTTP/2 connection to a WebSocket server, on which
/// [`websocket`](Self::websocket) opens WebSockets as streams (RFC 8441).
/// Cheap to clone: clones share the connection, which closes when the last
/// clone and the last of its WebSockets are gone.
#[derive(Clone, Debug)]
pub struct Http2Connection {
    send: h2::client::SendRequest<Bytes>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
}

/// A WebSocket's byte stream over one HTTP/2 stream (client side).
pub type Http2WebSocket = WebSocket<Http2Stream>;

impl Http2Connection {
    /// Opens an HTTP/2 connection to the server of `url`: `wss://` with TLS
    /// and ALPN `h2` (fails with [`WsError::Http2`] if the server does not
    /// pick it), `ws://` in cleartext with prior knowledge. Waits for the
    /// server's settings: fails with [`WsError::Http2`] when they do not
    /// allow WebSockets. Bounded by `opts.connect_timeout` (TCP and TLS)
    /// and `opts.ws.handshake_timeout` (the HTTP/2 handshake).
    ///
    /// **Cancel safety:** not cancel safe (nothing is left to resume).
    pub async fn connect(url: &str, opts: &ClientOptions) -> Result<Http2Connection, WsError> {
        let target = parse_url(url)?;
        let io = timeout(opts.connect_timeout, open_h2(&target, opts)).await??;
        let conn = match io {
            Opened::H2(io) => Self::handshake(io, &target, opts).await?,
            Opened::OtherAlpn(_) => {
                return Err(WsError::Http2(
                    "the server did not pick HTTP/2 in the TLS handshake (ALPN)".into(),
                ))
            }
        };
        conn.require_websockets()?;
        Ok(conn)
    }

    /// Runs the HTTP/2 handshake over a stream you connected (TLS with
    /// ALPN `h2` done, or cleartext); `url` names the `:scheme` and
    /// `:authority` of the requests. Waits for the server's settings.
    ///
    /// **Cancel safety:** not cancel safe.
    pub async fn handshake_on<S>(
        io: S,
        url: &str,
        opts: &ClientOptions,
    ) -> Result<Http2Connection, WsError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let target = parse_url(url)?;
        let conn = Self::handshake(Box::new(io), &target, opts).await?;
        conn.require_websockets()?;
        Ok(conn)
    }

    async fn handshake(
        io: Box<dyn Io>,
        target: &Target,
        opts: &ClientOptions,
    ) -> Result<Http2Connection, WsError> {
        let scheme = if target.tls {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        };
        let authority: http::uri::Authority = target
            .host_header
            .parse()
            .map_err(|e| WsError::InvalidUrl(format!("{:?}: {e}", target.host_header)))?;
        let handshake = async {
            let (send, mut connection) = h2::client::Builder::new()
                .initial_window_size(256 << 10)
                .initial_connection_window_size(1 << 20)
                .max_send_buffer_size(64 << 10)
                .max_header_list_size(16 << 10)
                .handshake::<_, Bytes>(io)
                .await?;
            let mut ping = connection.ping_pong();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "HTTP/2 connection ended");
                }
            });
            // The server's SETTINGS are its first frame, so once our PING
            // is answered they have been applied.
            if let Some(p) = ping.as_mut() {
                p.ping(h2::Ping::opaque()).await?;
            }
            Ok::<_, WsError>(send)
        };
        let send = timeout(opts.ws.handshake_timeout, handshake).await??;
        Ok(Http2Connection {
            send,
            scheme,
            authority,
        })
    }

    fn require_websockets(&self) -> Result<(), WsError> {
        if self.supports_websockets() {
            Ok(())
        } else {
            Err(WsError::Http2(
                "the server does not allow WebSockets over HTTP/2 \
                 (no SETTINGS_ENABLE_CONNECT_PROTOCOL)"
                    .into(),
            ))
        }
    }

    /// Whether the server advertised `SETTINGS_ENABLE_CONNECT_PROTOCOL`.
    pub fn supports_websockets(&self) -> bool {
        self.send.is_extended_connect_protocol_enabled()
    }

    /// Opens a WebSocket at `path_and_query` (e.g. `/chat?room=1`) as a new
    /// stream of this connection: an extended CONNECT with the
    /// subprotocols, permessage-deflate offer, origin and extra headers of
    /// `opts.handshake`, checked as over HTTP/1.1 (a status other than 2xx
    /// fails with [`WsError::Handshake`]). Waits while the server's stream
    /// limit is reached; bounded by `opts.ws.handshake_timeout`.
    ///
    /// **Cancel safety:** not cancel safe (the stream is reset).
    pub async fn websocket(
        &self,
        path_and_query: &str,
        opts: &ClientOptions,
    ) -> Result<Http2WebSocket, WsError> {
        let (stream, conn, protocol) = self.open_stream(path_and_query, opts).await?;
        Ok(WebSocket::with_options(
            stream,
            conn,
            &[],
            protocol,
            &opts.ws,
        ))
    }

    /// The byte stream of a WebSocket opened as [`websocket`](Self::websocket)
    /// does (the same extended CONNECT and checks), without the engine on
    /// it: for callers that run their own framing (conformance tests,
    /// tunnels). The frames on it are the client's to mask.
    ///
    /// **Cancel safety:** not cancel safe (the stream is reset).
    pub async fn raw_stream(
        &self,
        path_and_query: &str,
        opts: &ClientOptions,
    ) -> Result<Http2Stream, WsError> {
        Ok(self.open_stream(path_and_query, opts).await?.0)
    }

    /// The extended CONNECT of [`websocket`](Self::websocket): the stream,
    /// the core's connection and the subprotocol.
    pub(crate) async fn open_stream(
        &self,
        path_and_query: &str,
        opts: &ClientOptions,
    ) -> Result<(Http2Stream, Connection, Option<String>), WsError> {
        let hs = ExtendedConnectHandshake::try_new(opts.handshake.clone())?;
        let uri = http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| WsError::InvalidUrl(format!("{path_and_query:?}: {e}")))?;
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri(uri);
        for (n, v) in hs.headers() {
            req = req.header(n.as_str(), v.as_str());
        }
        let mut req = req
            .body(())
            .map_err(|e| WsError::Http2(format!("cannot build the request: {e}")))?;
        req.extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
        let open = async {
            let mut send = self.send.clone().ready().await?;
            let (response, send_stream) = send.send_request(req, false)?;
            let response = response.await?;
            Ok::<_, WsError>((response, send_stream))
        };
        let (response, send_stream) = timeout(opts.ws.handshake_timeout, open).await??;
        let (parts, recv) = response.into_parts();
        let headers = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        let accepted = hs.receive_response(parts.status.as_u16(), headers)?;
        let config = conn_config(&opts.ws, opts.handshake.deflate.as_ref());
        let conn = Connection::new(Role::Client, config, accepted.deflate);
        Ok((
            Http2Stream::new(send_stream, recv),
            conn,
            accepted.subprotocol,
        ))
    }
}

/// What [`crate::connect_prefer_http2`] connected over.
pub(crate) enum Opened {
    /// HTTP/2 was agreed (ALPN `h2`), or is assumed (cleartext).
    H2(Box<dyn Io>),
    /// TLS picked another protocol (HTTP/1.1): the stream to use for it.
    OtherAlpn(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A byte stream a boxed HTTP/2 connection runs over.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// TCP (and TLS offering `h2` then `http/1.1`) to `target`.
pub(crate) async fn open_h2(target: &Target, opts: &ClientOptions) -> Result<Opened, WsError> {
    let tcp = tcp_connect(target).await?;
    if !target.tls {
        return Ok(Opened::H2(Box::new(tcp)));
    }
    let mut config = (*tls::client_config(&opts.tls)?).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = tls::server_name(&target.host)?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        Ok(Opened::H2(Box::new(tls)))
    } else {
        Ok(Opened::OtherAlpn(Box::new(tls)))
    }
}

impl Http2Connection {
    /// For [`crate::connect_prefer_http2`]: the handshake over a stream
    /// that agreed on `h2`.
    pub(crate) async fn handshake_opened(
        io: Box<dyn Io>,
        target: &Target,
        opts: &ClientOptions,
    ) -> Result<Http2Connection, WsError> {
        Self::handshake(io, target, opts).await
    }
}

/// A WebSocket's bytes over one HTTP/2 stream: DATA frames in both
/// directions, flow control given back as the bytes are read, END_STREAM
/// on shutdown. A reset stream reads as an error.
pub struct Http2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received bytes not read yet (at most one DATA frame).
    pending: Bytes,
    shut: bool,
}

impl std::fmt::Debug for Http2Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http2Stream")
            .field("pending", &self.pending.len())
            .field("shut", &self.shut)
            .finish_non_exhaustive()
    }
}

impl Http2Stream {
    fn new(send: SendStream<Bytes>, recv: RecvStream) -> Http2Stream {
        Http2Stream {
            send,
            recv,
            pending: Bytes::new(),
            shut: false,
        }
    }

    /// Room in the stream's and the connection's windows, waiting for it.
    fn poll_room(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        loop {
            let have = self.send.capacity();
            if have > 0 {
                return Poll::Ready(Ok(have.min(want)));
            }
            self.send.reserve_capacity(want);
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "HTTP/2 stream closed",
                    )))
                }
            }
        }
    }
}

fn h2_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        if let Some(io) = e.into_io() {
            return io;
        }
        return io::Error::other("HTTP/2 I/O error");
    }
    io::Error::other(e)
}

impl AsyncRead for Http2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(h2_io(e))),
                Some(Ok(data)) => {
                    // Give the window back now: at most this one frame is
                    // held here, and the sans-I/O core bounds the rest.
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.pending = data;
                }
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(self.pending.get(..n).unwrap_or_default());
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Http2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(self.poll_room(cx, buf.len()))?;
        let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
        self.send.send_data(chunk, false).map_err(h2_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let room = ready!(self.poll_room(cx, total))?;
        let mut chunk = BytesMut::with_capacity(room);
        for b in bufs {
            let take = (room - chunk.len()).min(b.len());
            chunk.extend_from_slice(b.get(..take).unwrap_or_default());
            if chunk.len() == room {
                break;
            }
        }
        let n = chunk.len();
        self.send.send_data(chunk.freeze(), false).map_err(h2_io)?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes what was queued.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut {
            self.shut = true;
            // A stream the peer already reset is as shut as it gets.
            let _ = self.send.send_data(Bytes::new(), true);
        }
        Poll::Ready(Ok(()))
    }
}

/// Waits (until `deadline`) for the first bytes of a cleartext connection
/// and tells whether they open HTTP/2 with prior knowledge (the preface)
/// rather than HTTP/1.1, without consuming them: one port can then serve
/// HTTP/1.1 upgrades ([`crate::accept`]) and HTTP/2 ([`serve_http2`]).
/// `Ok(false)` too when the peer closes before sending anything.
///
/// **Cancel safety:** cancel safe (nothing is read).
pub async fn sniff_http2(tcp: &TcpStream, deadline: tokio::time::Instant) -> io::Result<bool> {
    let mut first = [0u8; 24];
    loop {
        let n = tokio::time::timeout_at(deadline, tcp.peek(&mut first))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request in time"))??;
        let seen = first.get(..n).unwrap_or_default();
        if n == 0 || !is_http2_preface(seen) {
            return Ok(false);
        }
        if n == HTTP2_PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface: `peek` returns at once while those
        // bytes are there, so wait a little for the rest.
        if tokio::time::Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request in time",
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
