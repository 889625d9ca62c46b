//! Server side: the opening handshake over a raw stream ([`accept`],
//! [`accept_with`]) or inside a hyper/axum service ([`upgrade`]).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};
use wshub_proto::handshake::{self, Accepted, ExtendedConnect, Rejection, RequestHead};
use wshub_proto::{Config, Connection, DeflateConfig, Role};

use crate::error::WsError;
use crate::options::Options;
use crate::websocket::WebSocket;

/// How long a server keeps reading (and discarding) after sending a
/// handshake rejection, so that unread request bytes do not turn the close
/// into a reset that destroys the response in flight.
const REJECT_LINGER: Duration = Duration::from_millis(500);

/// Settings for accepting WebSocket connections.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Per-connection settings (limits, keepalive, write queue, handshake
    /// timeout).
    pub ws: Options,
    /// What the handshake accepts: subprotocols, permessage-deflate, extra
    /// response headers. When `handshake.deflate` is set, its compression
    /// level and minimum size also apply to the connection.
    pub handshake: handshake::ServerOptions,
}

impl ServerOptions {
    /// Sets [`ServerOptions::ws`].
    pub fn ws(mut self, v: Options) -> Self {
        self.ws = v;
        self
    }
    /// Sets [`ServerOptions::handshake`].
    pub fn handshake(mut self, v: handshake::ServerOptions) -> Self {
        self.handshake = v;
        self
    }
    /// Sets the subprotocols we speak, most preferred first.
    pub fn subprotocols<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Self {
        self.handshake = self.handshake.subprotocols(protocols);
        self
    }
    /// Sets the permessage-deflate policy (`None`: no compression).
    pub fn deflate(mut self, v: Option<DeflateConfig>) -> Self {
        self.handshake = self.handshake.deflate(v);
        self
    }
}

/// The connection configuration: `ws.config`, with the compression level
/// and threshold of the handshake's deflate policy.
pub(crate) fn conn_config(ws: &Options, deflate: Option<&DeflateConfig>) -> Config {
    let config = ws.config.clone();
    match deflate {
        Some(d) => config.deflate(d.clone()),
        None => config,
    }
}

/// Accepts a WebSocket connection on `stream` (TCP, TLS, ...).
///
/// Reads the upgrade request (at most `limits.max_handshake_bytes`, within
/// `handshake_timeout`), answers `101 Switching Protocols`, and returns the
/// connection. A bad request is answered with the RFC's status (400, 405,
/// 426 with `Sec-WebSocket-Version: 13`, 431) and fails with
/// [`WsError::Handshake`] or [`WsError::Rejected`]; a slow one fails with
/// [`WsError::Timeout`].
///
/// Set `TCP_NODELAY` on accepted TCP sockets: the connection batches its
/// writes itself. For `wss://`, bound the TLS handshake you run before this
/// call with your own timeout (`handshake_timeout` starts here).
///
/// **Cancel safety:** not cancel safe: cancelling loses the stream.
pub async fn accept<S>(stream: S, opts: &ServerOptions) -> Result<WebSocket<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(stream, opts, |_| Ok(())).await
}

/// Like [`accept`], with a check on the request before it is accepted:
/// return a [`Rejection`] (e.g. `wshub_proto::handshake::reject(403,
/// "origin not allowed")`) to refuse it with that response.
///
/// **Cancel safety:** not cancel safe: cancelling loses the stream.
pub async fn accept_with<S, F>(
    mut stream: S,
    opts: &ServerOptions,
    check: F,
) -> Result<WebSocket<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&RequestHead<'_>) -> Result<(), Rejection>,
{
    let limits = &opts.ws.config.limits;
    let deadline = Instant::now() + opts.ws.handshake_timeout;
    let mut buf = BytesMut::with_capacity(1024);
    // Read until the head is complete (or invalid).
    let read = timeout_at(deadline, async {
        loop {
            let n = stream.read_buf(&mut buf).await?;
            match handshake::parse_request(&buf, limits) {
                Ok(Some(_)) => return Ok(Ok(())),
                Ok(None) if n == 0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed during the opening handshake",
                    ))
                }
                Ok(None) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
    })
    .await;
    let answer = match read {
        Err(_) => return Err(WsError::Timeout),
        Ok(Err(e)) => return Err(WsError::Io(e)),
        Ok(Ok(Err(e))) => {
            if let Some(rej) = e.rejection() {
                send_rejection(&mut stream, &rej, deadline).await;
            }
            return Err(e.into());
        }
        Ok(Ok(Ok(()))) => {
            let Ok(Some((head, used))) = handshake::parse_request(&buf, limits) else {
                unreachable!("the head parsed a moment ago");
            };
            let answer = check(&head).and_then(|()| handshake::accept(&head, &opts.handshake));
            (answer, used)
        }
    };
    match answer {
        (Ok(accepted), used) => {
            let written = timeout_at(deadline, async {
                stream.write_all(&accepted.response).await?;
                stream.flush().await
            })
            .await;
            match written {
                Err(_) => return Err(WsError::Timeout),
                Ok(Err(e)) => return Err(WsError::Io(e)),
                Ok(Ok(())) => {}
            }
            let config = conn_config(&opts.ws, opts.handshake.deflate.as_ref());
            let conn = Connection::new(Role::Server, config, accepted.deflate);
            Ok(WebSocket::with_options(
                stream,
                conn,
                // `used` is the length of the head the parser found in `buf`.
                buf.get(used..).unwrap_or_default(),
                accepted.subprotocol,
                &opts.ws,
            ))
        }
        (Err(rej), _) => {
            send_rejection(&mut stream, &rej, deadline).await;
            Err(WsError::Rejected {
                status: rej.status,
                reason: rej.reason,
            })
        }
    }
}

/// Writes a rejection, half-closes, and drains briefly (best effort).
async fn send_rejection<S>(stream: &mut S, rej: &Rejection, deadline: Instant)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = timeout_at(deadline, async {
        stream.write_all(&rej.response).await?;
        stream.shutdown().await
    })
    .await;
    let _ = timeout(REJECT_LINGER, async {
        let mut scratch = [0u8; 1024];
        while stream.read(&mut scratch).await? != 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

// ----- hyper / axum -------------------------------------------------------

/// The WebSocket a hyper upgrade yields.
pub type UpgradedWebSocket = WebSocket<UpgradedStream>;

/// The largest write handed to an upgraded HTTP/2 stream at once. hyper
/// accepts every write to an upgraded HTTP/2 stream whole (a one-slot
/// channel in front of h2's own send buffer), whatever the peer's window:
/// handing it small pieces keeps the rest in the WebSocket's queue, where
/// its high-water mark (and the gateway's slow-consumer rule) applies to a
/// peer that stops granting window.
const HTTP2_MAX_WRITE: usize = 32 << 10;

/// The byte stream of an upgraded connection: the socket of an HTTP/1.1
/// upgrade, or one stream of an HTTP/2 connection (RFC 8441), whose writes
/// are cut to [`HTTP2_MAX_WRITE`] bytes.
pub struct UpgradedStream {
    io: TokioIo<hyper::upgrade::Upgraded>,
    max_write: usize,
}

impl fmt::Debug for UpgradedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradedStream")
            .field("http2", &(self.max_write != usize::MAX))
            .finish_non_exhaustive()
    }
}

impl UpgradedStream {
    /// Whether this is a stream of an HTTP/2 connection.
    pub fn is_http2(&self) -> bool {
        self.max_write != usize::MAX
    }
}

impl AsyncRead for UpgradedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for UpgradedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.max_write);
        Pin::new(&mut self.io).poll_write(cx, buf.get(..n).unwrap_or(buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let max = self.max_write;
        let mut total = 0usize;
        let mut take = 0;
        for b in bufs {
            if total + b.len() > max {
                break;
            }
            total += b.len();
            take += 1;
        }
        match (take, bufs.first()) {
            // The first slice alone is over the cap: a piece of it.
            (0, Some(first)) => {
                let n = first.len().min(max);
                Pin::new(&mut self.io).poll_write(cx, first.get(..n).unwrap_or(first))
            }
            _ => Pin::new(&mut self.io).poll_write_vectored(cx, bufs.get(..take).unwrap_or(bufs)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The response [`upgrade`] returns: `101 Switching Protocols` over
/// HTTP/1.1, `200` over HTTP/2.
pub type UpgradeResponse = Response<Empty<Bytes>>;

/// The error response [`upgrade`] returns for a refused request: the status
/// (400, 405, 426, ...), its headers and a plain-text reason.
pub type RejectResponse = Response<Full<Bytes>>;

/// Validates a WebSocket upgrade request inside an HTTP server (hyper 1,
/// axum) with the same handshake code as [`accept`].
///
/// On success returns the response to hand back to the server and an
/// [`UpgradeFut`] that resolves to the connection once the server has sent
/// the response (spawn a task that awaits it). On failure returns the error
/// response (400, 405, 426, ...) to send instead.
///
/// Over HTTP/1.1 the request is a `GET` with `Upgrade: websocket` and the
/// answer `101 Switching Protocols`; the connection must be served with
/// upgrades enabled (`http1::Builder::serve_connection(..).with_upgrades()`).
/// Over HTTP/2 (RFC 8441) the request is an extended CONNECT with
/// `:protocol = websocket` ([`is_extended_connect`]), the answer `200`, and
/// the WebSocket runs on that one stream of the connection; the server must
/// advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL`
/// (`http2::Builder::enable_connect_protocol()`, or use [`serve_http2`]).
/// The subprotocol, permessage-deflate and limits are the same on both.
///
/// ```no_run
/// use http_body_util::{BodyExt, Empty, Full};
/// use bytes::Bytes;
///
/// async fn handle(
///     mut req: http::Request<hyper::body::Incoming>,
/// ) -> Result<http::Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>, std::convert::Infallible> {
///     let opts = wshub_ws::ServerOptions::default();
///     match wshub_ws::upgrade(&mut req, &opts) {
///         Ok((resp, fut)) => {
///             tokio::spawn(async move {
///                 let Ok(mut ws) = fut.await else { return };
///                 while let Some(Ok(msg)) = ws.recv().await {
///                     if ws.send(msg).await.is_err() { break; }
///                 }
///             });
///             Ok(resp.map(|b| b.boxed()))
///         }
///         Err(resp) => Ok(resp.map(|b| b.boxed())),
///     }
/// }
/// ```
// The error is an HTTP response the caller hands straight back to the
// server: boxing it would only add an allocation on a cold path.
#[allow(clippy::result_large_err)]
pub fn upgrade<B>(
    req: &mut http::Request<B>,
    opts: &ServerOptions,
) -> Result<(UpgradeResponse, UpgradeFut), RejectResponse> {
    let extended = is_extended_connect(req);
    let accepted = {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let head = RequestHead::from_parts(
            req.method().as_str(),
            req.version() == http::Version::HTTP_11,
            path,
            req.headers()
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes())),
        );
        if extended {
            let pseudo = ExtendedConnect {
                protocol: req
                    .extensions()
                    .get::<hyper::ext::Protocol>()
                    .map(|p| p.as_str()),
                authority: req.uri().authority().map(|a| a.as_str()),
                scheme: req.uri().scheme_str(),
            };
            handshake::accept_extended_connect(&head, pseudo, &opts.handshake)
        } else {
            handshake::accept(&head, &opts.handshake)
        }
    };
    let accepted = accepted.map_err(|rej| rejection_response(&rej))?;
    let status = if extended {
        StatusCode::OK
    } else {
        StatusCode::SWITCHING_PROTOCOLS
    };
    let response = switching_response(&accepted, status).map_err(|e| {
        rejection_response(&handshake::reject(
            500,
            &format!("cannot build the 101 response: {e}"),
        ))
    })?;
    let fut = UpgradeFut {
        on: hyper::upgrade::on(req),
        http2: extended,
        config: Some(conn_config(&opts.ws, opts.handshake.deflate.as_ref())),
        deflate: accepted.deflate,
        protocol: accepted.subprotocol,
        ws: opts.ws.clone(),
    };
    Ok((response, fut))
}

/// Whether `req` opens a WebSocket the HTTP/2 (RFC 8441) or HTTP/3 (RFC
/// 9220) way: a CONNECT over a version past 1.1. A CONNECT without
/// `:protocol`, or with another one, is refused by the handshake check.
pub fn is_extended_connect<B>(req: &http::Request<B>) -> bool {
    req.method() == http::Method::CONNECT && req.version() >= http::Version::HTTP_2
}

fn switching_response(acc: &Accepted, status: StatusCode) -> Result<UpgradeResponse, http::Error> {
    let mut resp = Response::new(Empty::new());
    *resp.status_mut() = status;
    for (n, v) in &acc.headers {
        resp.headers_mut().append(
            HeaderName::from_bytes(n.as_bytes())?,
            HeaderValue::from_str(v)?,
        );
    }
    Ok(resp)
}

pub(crate) fn rejection_response(rej: &Rejection) -> RejectResponse {
    let mut resp = Response::new(Full::new(Bytes::from(rej.reason.clone())));
    *resp.status_mut() =
        StatusCode::from_u16(rej.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    for (n, v) in &rej.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.append(n, v);
        }
    }
    resp
}

/// Resolves to the WebSocket once hyper has handed over the upgraded
/// connection (see [`upgrade`]). Fails with [`WsError::Io`] if the HTTP
/// connection ended before that.
#[must_use = "futures do nothing unless awaited"]
pub struct UpgradeFut {
    on: hyper::upgrade::OnUpgrade,
    http2: bool,
    config: Option<Config>,
    deflate: Option<wshub_proto::DeflateParams>,
    protocol: Option<String>,
    ws: Options,
}

impl fmt::Debug for UpgradeFut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeFut")
            .field("protocol", &self.protocol)
            .field("deflate", &self.deflate)
            .finish_non_exhaustive()
    }
}

impl Future for UpgradeFut {
    type Output = Result<UpgradedWebSocket, WsError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let upgraded = ready!(Pin::new(&mut this.on).poll(cx))
            .map_err(|e| WsError::Io(io::Error::other(e)))?;
        let Some(config) = this.config.take() else {
            return Poll::Ready(Err(WsError::Io(io::Error::other(
                "UpgradeFut polled after completion",
            ))));
        };
        let conn = Connection::new(Role::Server, config, this.deflate);
        let stream = UpgradedStream {
            io: TokioIo::new(upgraded),
            max_write: if this.http2 {
                HTTP2_MAX_WRITE
            } else {
                usize::MAX
            },
        };
        Poll::Ready(Ok(WebSocket::with_options(
            stream,
            conn,
            &[],
            this.protocol.take(),
            &this.ws,
        )))
    }
}
