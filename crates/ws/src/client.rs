//! Client side: [`connect`] (`ws://`, `wss://`) and [`connect_on`] (the
//! handshake over a stream you opened).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use url::Url;
use wshub_proto::handshake::{self, ClientHandshake};
use wshub_proto::{Connection, DeflateConfig, Role};

use crate::error::WsError;
use crate::options::Options;
use crate::server::conn_config;
use crate::stream::MaybeTlsStream;
use crate::tls::{self, TlsOptions};
use crate::websocket::WebSocket;

/// Settings for connecting to a WebSocket server.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Per-connection settings (limits, keepalive, write queue, handshake
    /// timeout).
    pub ws: Options,
    /// What the request asks for: subprotocols, permessage-deflate offer,
    /// `Origin`, extra headers. When `handshake.deflate` is set, its
    /// compression level and minimum size also apply to the connection.
    pub handshake: handshake::ClientOptions,
    /// Longest time the TCP connect plus the TLS handshake may take
    /// (default 10 s).
    pub connect_timeout: Duration,
    /// How `wss://` servers are verified.
    pub tls: TlsOptions,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ws: Options::default(),
            handshake: handshake::ClientOptions::default(),
            connect_timeout: Duration::from_secs(10),
            tls: TlsOptions::default(),
        }
    }
}

impl ClientOptions {
    /// Sets [`ClientOptions::ws`].
    pub fn ws(mut self, v: Options) -> Self {
        self.ws = v;
        self
    }
    /// Sets [`ClientOptions::handshake`].
    pub fn handshake(mut self, v: handshake::ClientOptions) -> Self {
        self.handshake = v;
        self
    }
    /// Sets [`ClientOptions::connect_timeout`].
    pub fn connect_timeout(mut self, v: Duration) -> Self {
        self.connect_timeout = v;
        self
    }
    /// Sets [`ClientOptions::tls`].
    pub fn tls(mut self, v: TlsOptions) -> Self {
        self.tls = v;
        self
    }
    /// Sets the subprotocols to offer, most preferred first.
    pub fn subprotocols<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Self {
        self.handshake = self.handshake.subprotocols(protocols);
        self
    }
    /// Sets the permessage-deflate offer (`None`: no compression).
    pub fn deflate(mut self, v: Option<DeflateConfig>) -> Self {
        self.handshake = self.handshake.deflate(v);
        self
    }
}

/// What a `ws://` / `wss://` URL says.
pub(crate) struct Target {
    pub(crate) tls: bool,
    pub(crate) host: url::Host<String>,
    pub(crate) port: u16,
    pub(crate) host_header: String,
    pub(crate) path_and_query: String,
}

pub(crate) fn parse_url(s: &str) -> Result<Target, WsError> {
    let url = Url::parse(s).map_err(|e| WsError::InvalidUrl(format!("{s:?}: {e}")))?;
    let tls = match url.scheme() {
        "ws" | "http" => false,
        "wss" | "https" => true,
        other => return Err(WsError::InvalidUrl(format!("unsupported scheme {other:?}"))),
    };
    let host = url
        .host()
        .ok_or_else(|| WsError::InvalidUrl(format!("{s:?} has no host")))?
        .to_owned();
    let host_str = url.host_str().unwrap_or_default();
    // `port()` is None when the URL gives none or the scheme's default.
    let host_header = match url.port() {
        Some(p) => format!("{host_str}:{p}"),
        None => host_str.to_owned(),
    };
    let port = url.port().unwrap_or(if tls { 443 } else { 80 });
    let mut path_and_query = url.path().to_owned();
    if path_and_query.is_empty() {
        path_and_query.push('/');
    }
    if let Some(q) = url.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    Ok(Target {
        tls,
        host,
        port,
        host_header,
        path_and_query,
    })
}

/// Connects to a `ws://` or `wss://` URL and runs the opening handshake.
///
/// The `Host` header carries the port when it is not the scheme's default;
/// the request target is the URL's path and query (a fragment is dropped).
/// TCP connect plus TLS are bounded by `connect_timeout`, the handshake by
/// `ws.handshake_timeout` (both fail with [`WsError::Timeout`]). `wss://`
/// uses rustls with the Mozilla roots, the OS store and
/// [`TlsOptions::extra_ca_pem`] (see [`TlsOptions`]). `TCP_NODELAY` is set.
///
/// **Cancel safety:** not cancel safe (nothing is left to resume).
pub async fn connect(
    url: &str,
    opts: &ClientOptions,
) -> Result<WebSocket<MaybeTlsStream>, WsError> {
    let target = parse_url(url)?;
    let stream = timeout(opts.connect_timeout, open(&target, &opts.tls)).await??;
    handshake_on(stream, &target, opts).await
}

/// The TCP connection to `target`, `TCP_NODELAY` set.
pub(crate) async fn tcp_connect(target: &Target) -> Result<TcpStream, WsError> {
    let tcp = match &target.host {
        url::Host::Domain(d) => TcpStream::connect((d.as_str(), target.port)).await?,
        url::Host::Ipv4(a) => {
            TcpStream::connect(SocketAddr::new(IpAddr::V4(*a), target.port)).await?
        }
        url::Host::Ipv6(a) => {
            TcpStream::connect(SocketAddr::new(IpAddr::V6(*a), target.port)).await?
        }
    };
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

async fn open(target: &Target, tls_opts: &TlsOptions) -> Result<MaybeTlsStream, WsError> {
    let tcp = tcp_connect(target).await?;
    if !target.tls {
        return Ok(MaybeTlsStream::Plain(tcp));
    }
    let config = tls::client_config(tls_opts)?;
    let name = tls::server_name(&target.host)?;
    let tls = TlsConnector::from(config).connect(name, tcp).await?;
    Ok(MaybeTlsStream::Tls(tls))
}

/// Connects like [`connect`], over HTTP/2 (RFC 8441) when the server
/// offers it: for `wss://` the TLS handshake offers ALPN `h2` and
/// `http/1.1`; when the server picks `h2` and its settings allow
/// WebSockets (`SETTINGS_ENABLE_CONNECT_PROTOCOL`), the WebSocket is a
/// stream of a new HTTP/2 connection ([`MaybeTlsStream::Http2`]);
/// otherwise it is an HTTP/1.1 upgrade, on the same TLS connection when
/// the server picked `http/1.1` and on a new one when it picked `h2`
/// without allowing WebSockets. A `ws://` URL uses HTTP/1.1 (cleartext
/// HTTP/2 needs prior knowledge: [`crate::Http2Connection::connect`]).
///
/// To put many WebSockets on one connection, use
/// [`crate::Http2Connection`] directly.
///
/// **Cancel safety:** not cancel safe (nothing is left to resume).
pub async fn connect_prefer_http2(
    url: &str,
    opts: &ClientOptions,
) -> Result<WebSocket<MaybeTlsStream>, WsError> {
    let target = parse_url(url)?;
    if !target.tls {
        return connect(url, opts).await;
    }
    let opened = timeout(opts.connect_timeout, crate::http2::open_h2(&target, opts)).await??;
    match opened {
        crate::http2::Opened::OtherAlpn(tls) => {
            handshake_on(MaybeTlsStream::Tls(*tls), &target, opts).await
        }
        crate::http2::Opened::H2(io) => {
            let h2 = crate::Http2Connection::handshake_opened(io, &target, opts).await?;
            if !h2.supports_websockets() {
                return connect(url, opts).await;
            }
            let (stream, conn, protocol) = h2.open_stream(&target.path_and_query, opts).await?;
            Ok(WebSocket::with_options(
                MaybeTlsStream::Http2(Box::new(stream)),
                conn,
                &[],
                protocol,
                &opts.ws,
            ))
        }
    }
}

/// Runs the client's opening handshake over a stream you connected (a
/// proxy tunnel, a Unix socket, an in-memory pipe). `url` gives the `Host`
/// header and the request target; its scheme only selects the default
/// port. Bounded by `ws.handshake_timeout`.
///
/// **Cancel safety:** not cancel safe: cancelling loses the stream.
pub async fn connect_on<S>(
    stream: S,
    url: &str,
    opts: &ClientOptions,
) -> Result<WebSocket<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let target = parse_url(url)?;
    handshake_on(stream, &target, opts).await
}

async fn handshake_on<S>(
    mut stream: S,
    target: &Target,
    opts: &ClientOptions,
) -> Result<WebSocket<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hs = ClientHandshake::try_new(
        &target.host_header,
        &target.path_and_query,
        opts.handshake.clone(),
    )?;
    let limits = &opts.ws.config.limits;
    let done = timeout(opts.ws.handshake_timeout, async {
        stream.write_all(hs.request()).await?;
        stream.flush().await?;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            let n = stream.read_buf(&mut buf).await?;
            if let Some((accepted, used)) = hs.receive_response(&buf, limits)? {
                return Ok((accepted, buf, used));
            }
            if n == 0 {
                return Err(WsError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the opening handshake",
                )));
            }
        }
    })
    .await;
    let (accepted, buf, used) = done??;
    let config = conn_config(&opts.ws, opts.handshake.deflate.as_ref());
    let conn = Connection::new(Role::Client, config, accepted.deflate);
    Ok(WebSocket::with_options(
        stream,
        conn,
        // `used` is the length of the head the parser found inside `buf`.
        buf.get(used..).unwrap_or_default(),
        accepted.subprotocol,
        &opts.ws,
    ))
}
