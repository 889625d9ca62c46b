//! The opening handshake (RFC 6455 §4), both roles, without I/O.
//!
//! **Server.** Parse the request head from raw bytes with [`parse_request`]
//! (or build a [`RequestHead`] from an HTTP library's parts with
//! [`RequestHead::from_parts`]), then call [`accept`]. It answers with an
//! [`Accepted`] (the `101 Switching Protocols` bytes plus the negotiated
//! subprotocol and permessage-deflate parameters) or a [`Rejection`] (a
//! complete error response). Bytes after the request head belong to the
//! WebSocket stream.
//!
//! **Client.** [`ClientHandshake::new`] builds the request with a fresh
//! random key; send [`ClientHandshake::request`], then feed what arrives to
//! [`ClientHandshake::receive_response`] until it returns a
//! [`ClientAccepted`].
//!
//! ```
//! use wshub_proto::handshake::{accept, parse_request, ClientHandshake, ClientOptions, ServerOptions};
//! use wshub_proto::Limits;
//!
//! let client = ClientHandshake::new("example.com", "/chat", ClientOptions::default());
//! let limits = Limits::default();
//! let (req, used) = parse_request(client.request(), &limits).unwrap().unwrap();
//! assert_eq!(used, client.request().len());
//! let accepted = accept(&req, &ServerOptions::default()).unwrap();
//! let (done, used) = client
//!     .receive_response(&accepted.response, &limits)
//!     .unwrap()
//!     .unwrap();
//! assert_eq!(used, accepted.response.len());
//! assert_eq!(done.subprotocol, None);
//! ```

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::deflate::{DeflateConfig, DeflateParams};
use crate::extension::{self, is_tchar, ExtensionError};
use crate::limits::Limits;

/// The GUID appended to the key before hashing (RFC 6455 §1.3).
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`:
/// `base64(sha1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    BASE64.encode(sha.finalize())
}

// ---------------------------------------------------------------------------
// Small HTTP helpers
// ---------------------------------------------------------------------------

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// A header value we may write: no CR, LF, NUL or other control bytes
/// except HTAB.
fn is_safe_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or_default()
}

/// The non-empty, trimmed elements of comma-separated header values.
fn list_items<'v>(values: impl Iterator<Item = &'v [u8]>) -> impl Iterator<Item = &'v [u8]> {
    values
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|i| !i.is_empty())
}

fn list_has_token<'v>(values: impl Iterator<Item = &'v [u8]>, token: &str) -> bool {
    list_items(values).any(|i| i.eq_ignore_ascii_case(token.as_bytes()))
}

fn values_of<'h, 'n, N: AsRef<str>, V: AsRef<[u8]>>(
    headers: &'h [(N, V)],
    name: &'n str,
) -> impl Iterator<Item = &'h [u8]> + use<'h, 'n, N, V> {
    headers
        .iter()
        .filter(move |(n, _)| n.as_ref().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn check_extra_header(name: &str, value: &str) -> Result<(), &'static str> {
    if !is_token(name) {
        return Err("header name is not an HTTP token");
    }
    if !is_safe_value(value.as_bytes()) {
        return Err("header value contains control characters");
    }
    Ok(())
}

/// Outcome of running httparse over at most `max_handshake_bytes` bytes.
fn too_large_or_partial<T>(buf_len: usize, limits: &Limits) -> Result<Option<T>, HandshakeError> {
    if buf_len >= limits.max_handshake_bytes {
        Err(HandshakeError::HeadTooLarge)
    } else {
        Ok(None)
    }
}

fn map_httparse(e: httparse::Error) -> HandshakeError {
    match e {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders,
        e => HandshakeError::Malformed(e.to_string()),
    }
}

/// Header slots to give httparse: `max_headers`, but never more than the
/// input could hold (a header line takes at least 3 bytes), so a huge limit
/// does not mean a huge allocation.
fn header_slots(window: &[u8], limits: &Limits) -> Vec<httparse::Header<'static>> {
    vec![httparse::EMPTY_HEADER; limits.max_headers.min(window.len() / 2 + 1)]
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why an opening handshake failed.
///
/// From [`parse_request`] (server side) these carry an HTTP status to
/// answer with ([`HandshakeError::http_status`],
/// [`HandshakeError::rejection`]); from [`ClientHandshake`] they say why the
/// server's response was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head is longer than [`Limits::max_handshake_bytes`] (HTTP 431).
    HeadTooLarge,
    /// The head has more than [`Limits::max_headers`] headers (HTTP 431).
    TooManyHeaders,
    /// Not a valid HTTP/1.x head (HTTP 400); the text says what is wrong.
    Malformed(String),
    /// The server answered with this status instead of 101.
    UnexpectedStatus(u16),
    /// The response lacks `Upgrade: websocket`.
    MissingUpgrade,
    /// The response lacks `Connection: Upgrade`.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Accept` is missing, repeated or does not match our key.
    InvalidAccept,
    /// The server chose a subprotocol we did not offer.
    UnofferedSubprotocol(String),
    /// `Sec-WebSocket-Protocol` in the response is empty or names more than
    /// one subprotocol.
    InvalidSubprotocol,
    /// The server's `Sec-WebSocket-Extensions` answer was refused.
    Extension(ExtensionError),
    /// [`ClientHandshake::try_new`] was given a host, path, header, origin
    /// or subprotocol that cannot be written into a request.
    InvalidRequest(&'static str),
    /// The operating system's random number generator failed.
    Random(String),
}

impl HandshakeError {
    /// The HTTP status a server answers with when [`parse_request`] fails
    /// with this error (400 or 431); `None` for client-side errors.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            HandshakeError::HeadTooLarge | HandshakeError::TooManyHeaders => Some(431),
            HandshakeError::Malformed(_) => Some(400),
            _ => None,
        }
    }

    /// The complete error response for a server to send (then close the
    /// connection), for errors that have an [`http_status`](Self::http_status).
    pub fn rejection(&self) -> Option<Rejection> {
        self.http_status().map(|s| reject(s, &self.to_string()))
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::HeadTooLarge => f.write_str("handshake head too large"),
            HandshakeError::TooManyHeaders => f.write_str("too many handshake headers"),
            HandshakeError::Malformed(what) => write!(f, "malformed HTTP head: {what}"),
            HandshakeError::UnexpectedStatus(s) => {
                write!(f, "server answered with HTTP status {s} instead of 101")
            }
            HandshakeError::MissingUpgrade => f.write_str("response lacks Upgrade: websocket"),
            HandshakeError::MissingConnectionUpgrade => {
                f.write_str("response lacks Connection: Upgrade")
            }
            HandshakeError::InvalidAccept => {
                f.write_str("missing or wrong Sec-WebSocket-Accept in response")
            }
            HandshakeError::UnofferedSubprotocol(p) => {
                write!(f, "server chose subprotocol {p:?} that was not offered")
            }
            HandshakeError::InvalidSubprotocol => {
                f.write_str("response Sec-WebSocket-Protocol must name exactly one subprotocol")
            }
            HandshakeError::Extension(e) => write!(f, "extension negotiation failed: {e}"),
            HandshakeError::InvalidRequest(what) => write!(f, "invalid handshake request: {what}"),
            HandshakeError::Random(e) => write!(f, "random number generator failed: {e}"),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::Extension(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ExtensionError> for HandshakeError {
    fn from(e: ExtensionError) -> Self {
        HandshakeError::Extension(e)
    }
}

// ---------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------

/// The head of an HTTP request: method, version, target and headers, either
/// borrowed from the bytes it was parsed from or owned
/// ([`RequestHead::into_owned`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead<'a> {
    method: Cow<'a, str>,
    http11: bool,
    path: Cow<'a, str>,
    headers: Vec<(Cow<'a, str>, Cow<'a, [u8]>)>,
}

impl<'a> RequestHead<'a> {
    /// Builds a head from an HTTP library's request parts, e.g. from
    /// `http::request::Parts`: `parts.method.as_str()`,
    /// `parts.version == Version::HTTP_11`, the path and query, and
    /// `parts.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))`.
    pub fn from_parts(
        method: &'a str,
        is_http11: bool,
        path: &'a str,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Self {
        RequestHead {
            method: Cow::Borrowed(method),
            http11: is_http11,
            path: Cow::Borrowed(path),
            headers: headers
                .into_iter()
                .map(|(n, v)| (Cow::Borrowed(n), Cow::Borrowed(v)))
                .collect(),
        }
    }

    /// Copies whatever is borrowed, so the head outlives its buffer.
    pub fn into_owned(self) -> RequestHead<'static> {
        RequestHead {
            method: Cow::Owned(self.method.into_owned()),
            http11: self.http11,
            path: Cow::Owned(self.path.into_owned()),
            headers: self
                .headers
                .into_iter()
                .map(|(n, v)| (Cow::Owned(n.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
        }
    }

    /// The request method, e.g. `GET` (case-sensitive).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Whether the request is HTTP/1.1 (as opposed to HTTP/1.0).
    pub fn is_http11(&self) -> bool {
        self.http11
    }

    /// The request target: path and query, e.g. `/chat?room=1`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// All headers in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (&**n, &**v))
    }

    /// The values of every header named `name` (case-insensitive), in order.
    pub fn header_values<'s, 'n>(
        &'s self,
        name: &'n str,
    ) -> impl Iterator<Item = &'s [u8]> + use<'s, 'n, 'a> {
        values_of(&self.headers, name)
    }

    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.header_values(name).next()
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&[u8]> {
        self.header("host")
    }

    /// The `Origin` header, for the caller's origin check. `None` when it
    /// is absent *or repeated*; [`accept`] refuses a request with more than
    /// one `Origin` header, so a check that lets origin-less clients in
    /// cannot be bypassed by sending two.
    pub fn origin(&self) -> Option<&[u8]> {
        let mut it = self.header_values("origin");
        match (it.next(), it.next()) {
            (Some(v), None) => Some(trim_ows(v)),
            _ => None,
        }
    }

    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`, all
    /// lines), in its order.
    pub fn subprotocols(&self) -> impl Iterator<Item = &str> {
        list_items(self.header_values("sec-websocket-protocol"))
            .filter_map(|p| std::str::from_utf8(p).ok())
            .filter(|p| is_token(p))
    }
}

/// Parses an HTTP/1.x request head from the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete, or the head and the
/// number of bytes it took: anything after that in `buf` is already
/// WebSocket data. Fails with [`HandshakeError::HeadTooLarge`] once `buf`
/// holds [`Limits::max_handshake_bytes`] without a complete head, with
/// [`HandshakeError::TooManyHeaders`] past [`Limits::max_headers`] (both
/// 431), and with [`HandshakeError::Malformed`] (400) on bad syntax.
pub fn parse_request<'b>(
    buf: &'b [u8],
    limits: &Limits,
) -> Result<Option<(RequestHead<'b>, usize)>, HandshakeError> {
    let window = buf.get(..limits.max_handshake_bytes).unwrap_or(buf);
    let mut slots = header_slots(window, limits);
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(window).map_err(map_httparse)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return too_large_or_partial(buf.len(), limits),
    };
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HandshakeError::Malformed("incomplete request line".into()));
    };
    let head = RequestHead {
        method: Cow::Borrowed(method),
        http11: version == 1,
        path: Cow::Borrowed(path),
        headers: req
            .headers
            .iter()
            .map(|h| (Cow::Borrowed(h.name), Cow::Borrowed(h.value)))
            .collect(),
    };
    Ok(Some((head, len)))
}

/// How a server answers WebSocket upgrade requests.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Subprotocols we speak, most preferred first. Only HTTP tokens can
    /// ever match.
    pub subprotocols: Vec<String>,
    /// permessage-deflate policy; `None` declines every extension.
    pub deflate: Option<DeflateConfig>,
    /// Extra headers for the 101 response (validated by
    /// [`ServerOptions::header`]).
    extra_headers: Vec<(String, String)>,
}

impl ServerOptions {
    /// Sets [`ServerOptions::subprotocols`], most preferred first.
    pub fn subprotocols<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Self {
        self.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`ServerOptions::deflate`].
    pub fn deflate(mut self, config: Option<DeflateConfig>) -> Self {
        self.deflate = config;
        self
    }

    /// Adds a header to every 101 response.
    ///
    /// # Panics
    ///
    /// If `name` is not an HTTP token or `value` contains control
    /// characters (CR, LF, NUL, ...): a configuration error.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        if let Err(e) = check_extra_header(&name, &value) {
            panic!("ServerOptions::header({name:?}, {value:?}): {e}");
        }
        self.extra_headers.push((name, value));
        self
    }

    /// The extra response headers added with [`ServerOptions::header`].
    pub fn extra_headers(&self) -> &[(String, String)] {
        &self.extra_headers
    }
}

/// A successful server handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accepted {
    /// The complete `HTTP/1.1 101 Switching Protocols` response head,
    /// ending with an empty line.
    pub response: Vec<u8>,
    /// The response headers, in the order written in
    /// [`response`](Self::response): `Upgrade`, `Connection`,
    /// `Sec-WebSocket-Accept`, the optional protocol and extension headers,
    /// then the extra headers. For building the response with an HTTP
    /// library instead.
    pub headers: Vec<(String, String)>,
    /// The `Sec-WebSocket-Accept` value.
    pub accept_key: String,
    /// The chosen subprotocol (`Sec-WebSocket-Protocol`), if any.
    pub subprotocol: Option<String>,
    /// The `Sec-WebSocket-Extensions` value, if an extension was accepted.
    pub extensions: Option<String>,
    /// The negotiated permessage-deflate parameters, if accepted.
    pub deflate: Option<DeflateParams>,
}

/// A refused handshake: a complete HTTP error response to send before
/// closing the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The HTTP status: 400, 403, 405, 426, 431, or whatever the caller
    /// passed to [`reject`].
    pub status: u16,
    /// Human-readable reason, also the response body.
    pub reason: String,
    /// Headers besides `Content-Type`, `Content-Length` and `Connection`,
    /// e.g. `Allow: GET` (405) or `Sec-WebSocket-Version: 13` (426).
    pub headers: Vec<(String, String)>,
    /// The complete response: status line, headers
    /// (`Content-Type: text/plain`, `Content-Length`, `Connection: close`
    /// and [`headers`](Self::headers)) and the body.
    pub response: Vec<u8>,
}

impl Rejection {
    /// Adds a header to the response.
    ///
    /// # Panics
    ///
    /// If `name` is not an HTTP token or `value` contains control
    /// characters.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        if let Err(e) = check_extra_header(&name, &value) {
            panic!("Rejection::with_header({name:?}, {value:?}): {e}");
        }
        self.headers.push((name, value));
        self.render();
        self
    }

    /// Sets the `Allow` header of a 405 (default `GET`).
    fn with_allow(mut self, methods: &str) -> Self {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("allow"));
        self.headers.push(("Allow".to_owned(), methods.to_owned()));
        self.render();
        self
    }

    fn render(&mut self) {
        let body = self.reason.as_bytes();
        let mut r = Vec::with_capacity(128 + body.len());
        r.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\n",
                self.status,
                reason_phrase(self.status)
            )
            .as_bytes(),
        );
        push_header(&mut r, "Content-Type", b"text/plain; charset=utf-8");
        push_header(&mut r, "Content-Length", body.len().to_string().as_bytes());
        push_header(&mut r, "Connection", b"close");
        for (n, v) in &self.headers {
            push_header(&mut r, n, v.as_bytes());
        }
        r.extend_from_slice(b"\r\n");
        r.extend_from_slice(body);
        self.response = r;
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Builds a [`Rejection`] for callers that refuse a handshake themselves
/// (e.g. an origin check answering 403).
///
/// `405` gets `Allow: GET` and `426` gets `Sec-WebSocket-Version: 13`
/// automatically. A status outside 100–999 becomes 500; control characters
/// in `reason` become spaces.
pub fn reject(status: u16, reason: &str) -> Rejection {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let headers = match status {
        405 => vec![("Allow".to_owned(), "GET".to_owned())],
        426 => vec![("Sec-WebSocket-Version".to_owned(), "13".to_owned())],
        _ => Vec::new(),
    };
    let mut r = Rejection {
        status,
        reason,
        headers,
        response: Vec::new(),
    };
    r.render();
    r
}

/// Checks a WebSocket upgrade request (RFC 6455 §4.2.1) and builds the
/// answer: subprotocol by our preference among the client's offers,
/// permessage-deflate by [`extension::negotiate_server`].
///
/// Refuses with 405 (method other than `GET`), 426 (missing or other
/// `Sec-WebSocket-Version` than 13) or 400 (not HTTP/1.1; missing or
/// repeated `Host`; no `websocket` in `Upgrade`; no `upgrade` in
/// `Connection`; missing, repeated or malformed `Sec-WebSocket-Key`;
/// repeated `Origin`).
pub fn accept(req: &RequestHead<'_>, opts: &ServerOptions) -> Result<Accepted, Rejection> {
    if req.method() != "GET" {
        return Err(reject(405, "WebSocket upgrade requires GET"));
    }
    if !req.is_http11() {
        return Err(reject(400, "WebSocket upgrade requires HTTP/1.1"));
    }
    if req.header_values("host").count() != 1 {
        return Err(reject(400, "exactly one Host header required"));
    }
    if req.header_values("origin").count() > 1 {
        return Err(reject(400, "more than one Origin header"));
    }
    if !list_has_token(req.header_values("upgrade"), "websocket") {
        return Err(reject(400, "Upgrade: websocket header required"));
    }
    if !list_has_token(req.header_values("connection"), "upgrade") {
        return Err(reject(400, "Connection: Upgrade header required"));
    }
    let mut versions = req.header_values("sec-websocket-version");
    match (versions.next().map(trim_ows), versions.next()) {
        (Some(b"13"), None) => {}
        _ => return Err(reject(426, "Sec-WebSocket-Version: 13 required")),
    }
    let mut keys = req.header_values("sec-websocket-key");
    let key = match (keys.next().map(trim_ows), keys.next()) {
        (Some(k), None) if BASE64.decode(k).is_ok_and(|d| d.len() == 16) => k,
        (None, _) => return Err(reject(400, "Sec-WebSocket-Key header required")),
        (Some(_), Some(_)) => return Err(reject(400, "more than one Sec-WebSocket-Key header")),
        (Some(_), None) => return Err(reject(400, "invalid Sec-WebSocket-Key")),
    };

    let accept_key = accept_key(key);
    let mut headers = vec![
        ("Upgrade".to_owned(), "websocket".to_owned()),
        ("Connection".to_owned(), "Upgrade".to_owned()),
        ("Sec-WebSocket-Accept".to_owned(), accept_key.clone()),
    ];
    let (subprotocol, extensions, deflate) = negotiate(req, opts, &mut headers);
    let mut response = Vec::with_capacity(256);
    response.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    for (n, v) in &headers {
        push_header(&mut response, n, v.as_bytes());
    }
    response.extend_from_slice(b"\r\n");
    Ok(Accepted {
        response,
        headers,
        accept_key,
        subprotocol,
        extensions,
        deflate,
    })
}

/// The subprotocol (ours by preference among the client's offers) and
/// permessage-deflate answers, appended to `headers` with the extra
/// headers; the same over HTTP/1.1, HTTP/2 and HTTP/3.
fn negotiate(
    req: &RequestHead<'_>,
    opts: &ServerOptions,
    headers: &mut Vec<(String, String)>,
) -> (Option<String>, Option<String>, Option<DeflateParams>) {
    let subprotocol = opts
        .subprotocols
        .iter()
        .find(|ours| req.subprotocols().any(|theirs| theirs == ours.as_str()))
        .cloned();
    let negotiated = opts.deflate.as_ref().and_then(|cfg| {
        let offers: Vec<&[u8]> = req.header_values("sec-websocket-extensions").collect();
        extension::negotiate_server(cfg, &offers)
    });
    let (deflate, extensions) = match negotiated {
        Some((p, s)) => (Some(p), Some(s)),
        None => (None, None),
    };
    if let Some(p) = &subprotocol {
        headers.push(("Sec-WebSocket-Protocol".to_owned(), p.clone()));
    }
    if let Some(e) = &extensions {
        headers.push(("Sec-WebSocket-Extensions".to_owned(), e.clone()));
    }
    headers.extend(opts.extra_headers.iter().cloned());
    (subprotocol, extensions, deflate)
}

/// The pseudo-headers of an extended CONNECT request (RFC 8441 §4 over
/// HTTP/2, RFC 9220 over HTTP/3) that [`RequestHead`] does not carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtendedConnect<'a> {
    /// `:protocol`, absent on a plain CONNECT.
    pub protocol: Option<&'a str>,
    /// `:authority`.
    pub authority: Option<&'a str>,
    /// `:scheme`.
    pub scheme: Option<&'a str>,
}

/// Checks a WebSocket opened with extended CONNECT over HTTP/2 (RFC 8441)
/// or HTTP/3 (RFC 9220) and builds the answer: status 200 with the
/// subprotocol and permessage-deflate answers negotiated as in [`accept`]
/// ([`Accepted::response`] is empty and [`Accepted::accept_key`] too: the
/// stream itself is the upgrade, there is no key to prove).
///
/// `req` carries the method, the `:path` (as [`RequestHead::path`]) and the
/// regular headers. Refuses with 405 (method other than `CONNECT`), 400
/// (no `:protocol`, or one other than `websocket`; no `:authority` or
/// `:scheme`; an empty `:path`; repeated `Origin`) or 426 (missing or
/// other `Sec-WebSocket-Version` than 13).
pub fn accept_extended_connect(
    req: &RequestHead<'_>,
    pseudo: ExtendedConnect<'_>,
    opts: &ServerOptions,
) -> Result<Accepted, Rejection> {
    if req.method() != "CONNECT" {
        return Err(
            reject(405, "a WebSocket over HTTP/2 or HTTP/3 requires CONNECT").with_allow("CONNECT"),
        );
    }
    match pseudo.protocol {
        Some(p) if p.eq_ignore_ascii_case("websocket") => {}
        Some(_) => return Err(reject(400, "extended CONNECT: :protocol must be websocket")),
        None => return Err(reject(400, "CONNECT without :protocol is not a WebSocket")),
    }
    if pseudo.authority.is_none_or(str::is_empty) {
        return Err(reject(400, "extended CONNECT: :authority required"));
    }
    if pseudo.scheme.is_none_or(str::is_empty) {
        return Err(reject(400, "extended CONNECT: :scheme required"));
    }
    if req.path().is_empty() {
        return Err(reject(400, "extended CONNECT: :path required"));
    }
    if req.header_values("origin").count() > 1 {
        return Err(reject(400, "more than one Origin header"));
    }
    let mut versions = req.header_values("sec-websocket-version");
    match (versions.next().map(trim_ows), versions.next()) {
        (Some(b"13"), None) => {}
        _ => return Err(reject(426, "Sec-WebSocket-Version: 13 required")),
    }
    let mut headers = Vec::new();
    let (subprotocol, extensions, deflate) = negotiate(req, opts, &mut headers);
    Ok(Accepted {
        response: Vec::new(),
        headers,
        accept_key: String::new(),
        subprotocol,
        extensions,
        deflate,
    })
}

// ---------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------

/// What a client asks for in its opening handshake.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Subprotocols to offer, most preferred first (HTTP tokens).
    pub subprotocols: Vec<String>,
    /// permessage-deflate offer; `None` offers no extension.
    pub deflate: Option<DeflateConfig>,
    /// Extra request headers, written after the handshake headers.
    pub extra_headers: Vec<(String, String)>,
    /// The `Origin` header to send, if any.
    pub origin: Option<String>,
}

impl ClientOptions {
    /// Sets [`ClientOptions::subprotocols`], most preferred first.
    pub fn subprotocols<S: Into<String>>(mut self, protocols: impl IntoIterator<Item = S>) -> Self {
        self.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`ClientOptions::deflate`].
    pub fn deflate(mut self, config: Option<DeflateConfig>) -> Self {
        self.deflate = config;
        self
    }

    /// Adds an extra request header (e.g. `Authorization`). Checked by
    /// [`ClientHandshake::try_new`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_headers.push((name.into(), value.into()));
        self
    }

    /// Sets [`ClientOptions::origin`].
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }
}

/// A client's opening handshake in progress: the request to send and what
/// the response must look like.
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    request: Vec<u8>,
    expected_accept: String,
    subprotocols: Vec<String>,
    deflate: Option<DeflateConfig>,
}

/// A successful client handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientAccepted {
    /// The subprotocol the server chose, if any.
    pub subprotocol: Option<String>,
    /// The negotiated permessage-deflate parameters, if the server accepted
    /// our offer.
    pub deflate: Option<DeflateParams>,
    /// All response headers, in order, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ClientAccepted {
    /// The value of the first response header named `name`
    /// (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        values_of(&self.headers, name).next()
    }
}

fn is_visible(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b > 0x20 && b != 0x7f)
}

impl ClientHandshake {
    /// Builds the upgrade request with a fresh random `Sec-WebSocket-Key`.
    ///
    /// `host_header` is the `Host` value (`example.com`, `[::1]:8080`),
    /// `path_and_query` the request target (`/chat?room=1`).
    ///
    /// # Panics
    ///
    /// When [`try_new`](Self::try_new) fails: a host, path, subprotocol,
    /// origin or header that cannot be written into an HTTP request, or a
    /// failing operating-system random number generator.
    pub fn new(host_header: &str, path_and_query: &str, opts: ClientOptions) -> ClientHandshake {
        match Self::try_new(host_header, path_and_query, opts) {
            Ok(h) => h,
            Err(e) => panic!("ClientHandshake::new: {e}"),
        }
    }

    /// Like [`new`](Self::new), returning an error instead of panicking.
    pub fn try_new(
        host_header: &str,
        path_and_query: &str,
        opts: ClientOptions,
    ) -> Result<ClientHandshake, HandshakeError> {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key).map_err(|e| HandshakeError::Random(e.to_string()))?;
        Self::with_key(host_header, path_and_query, opts, key)
    }

    fn with_key(
        host: &str,
        path: &str,
        opts: ClientOptions,
        key: [u8; 16],
    ) -> Result<ClientHandshake, HandshakeError> {
        if !is_visible(host) {
            return Err(HandshakeError::InvalidRequest("invalid Host"));
        }
        if !is_visible(path) {
            return Err(HandshakeError::InvalidRequest("invalid request target"));
        }
        if !opts.subprotocols.iter().all(|p| is_token(p)) {
            return Err(HandshakeError::InvalidRequest(
                "subprotocol is not an HTTP token",
            ));
        }
        if let Some(o) = &opts.origin {
            if !is_safe_value(o.as_bytes()) {
                return Err(HandshakeError::InvalidRequest("invalid Origin"));
            }
        }
        for (n, v) in &opts.extra_headers {
            check_extra_header(n, v).map_err(HandshakeError::InvalidRequest)?;
        }

        let key = BASE64.encode(key);
        let mut r = Vec::with_capacity(256);
        r.extend_from_slice(b"GET ");
        r.extend_from_slice(path.as_bytes());
        r.extend_from_slice(b" HTTP/1.1\r\n");
        push_header(&mut r, "Host", host.as_bytes());
        push_header(&mut r, "Upgrade", b"websocket");
        push_header(&mut r, "Connection", b"Upgrade");
        push_header(&mut r, "Sec-WebSocket-Key", key.as_bytes());
        push_header(&mut r, "Sec-WebSocket-Version", b"13");
        if let Some(o) = &opts.origin {
            push_header(&mut r, "Origin", o.as_bytes());
        }
        if !opts.subprotocols.is_empty() {
            push_header(
                &mut r,
                "Sec-WebSocket-Protocol",
                opts.subprotocols.join(", ").as_bytes(),
            );
        }
        if let Some(cfg) = &opts.deflate {
            push_header(
                &mut r,
                "Sec-WebSocket-Extensions",
                extension::client_offer(cfg).as_bytes(),
            );
        }
        for (n, v) in &opts.extra_headers {
            push_header(&mut r, n, v.as_bytes());
        }
        r.extend_from_slice(b"\r\n");
        Ok(ClientHandshake {
            request: r,
            expected_accept: accept_key(key.as_bytes()),
            subprotocols: opts.subprotocols,
            deflate: opts.deflate,
        })
    }

    fn check_response_headers(
        &self,
        headers: &[(String, Vec<u8>)],
    ) -> Result<(Option<String>, Option<DeflateParams>), HandshakeError> {
        let values = |name| values_of(headers, name);

        if !list_has_token(values("upgrade"), "websocket") {
            return Err(HandshakeError::MissingUpgrade);
        }
        if !list_has_token(values("connection"), "upgrade") {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        let mut accepts = values("sec-websocket-accept");
        match (accepts.next().map(trim_ows), accepts.next()) {
            (Some(a), None) if a == self.expected_accept.as_bytes() => {}
            _ => return Err(HandshakeError::InvalidAccept),
        }
        check_negotiated(&self.subprotocols, self.deflate.as_ref(), headers)
    }

    /// The request bytes to send.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// The `Sec-WebSocket-Accept` value the server must answer with.
    pub fn expected_accept(&self) -> &str {
        &self.expected_accept
    }

    /// Checks the server's response head at the start of `buf`.
    ///
    /// `Ok(None)` while the head is incomplete; otherwise the result and
    /// the number of bytes the head took (anything after it is already
    /// WebSocket frames). Errors: a status other than 101
    /// ([`HandshakeError::UnexpectedStatus`]), missing `Upgrade: websocket`
    /// or `Connection: Upgrade`, a wrong `Sec-WebSocket-Accept`, a
    /// subprotocol we did not offer, an extension answer that
    /// [`extension::accept_client`] refuses (or any extension if we offered
    /// none), and the same size limits as [`parse_request`].
    pub fn receive_response(
        &self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(ClientAccepted, usize)>, HandshakeError> {
        let window = buf.get(..limits.max_handshake_bytes).unwrap_or(buf);
        let mut slots = header_slots(window, limits);
        let mut resp = httparse::Response::new(&mut slots);
        let len = match resp.parse(window).map_err(map_httparse)? {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial => return too_large_or_partial(buf.len(), limits),
        };
        match (resp.version, resp.code) {
            (Some(1), Some(101)) => {}
            (Some(1), Some(code)) => return Err(HandshakeError::UnexpectedStatus(code)),
            _ => {
                return Err(HandshakeError::Malformed(
                    "HTTP/1.1 status line expected".into(),
                ))
            }
        }
        let headers: Vec<(String, Vec<u8>)> = resp
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect();
        let (subprotocol, deflate) = self.check_response_headers(&headers)?;
        Ok(Some((
            ClientAccepted {
                subprotocol,
                deflate,
                headers,
            },
            len,
        )))
    }
}

/// The subprotocol and extension answers of a response (any HTTP version):
/// at most one subprotocol, one we offered; extensions as
/// [`extension::accept_client`] allows, none if we offered none.
fn check_negotiated(
    subprotocols: &[String],
    deflate: Option<&DeflateConfig>,
    headers: &[(String, Vec<u8>)],
) -> Result<(Option<String>, Option<DeflateParams>), HandshakeError> {
    let values = |name| values_of(headers, name);
    let mut subprotocol = None;
    if values("sec-websocket-protocol").next().is_some() {
        let mut items = list_items(values("sec-websocket-protocol"));
        let (Some(p), None) = (items.next(), items.next()) else {
            return Err(HandshakeError::InvalidSubprotocol);
        };
        let p = String::from_utf8_lossy(p);
        if !subprotocols.iter().any(|o| *o == p) {
            return Err(HandshakeError::UnofferedSubprotocol(p.into_owned()));
        }
        subprotocol = Some(p.into_owned());
    }

    let ext_values: Vec<&[u8]> = values("sec-websocket-extensions").collect();
    let deflate = match deflate {
        Some(cfg) => extension::accept_client(cfg, &ext_values)?,
        None => {
            if let Some(e) = extension::parse_extensions(&ext_values)?.first() {
                return Err(ExtensionError::Unoffered(e.name.to_owned()).into());
            }
            None
        }
    };
    Ok((subprotocol, deflate))
}

/// A client's WebSocket over extended CONNECT (RFC 8441 over HTTP/2, RFC
/// 9220 over HTTP/3): the regular headers to send beside the pseudo-headers
/// `:method = CONNECT`, `:protocol = websocket`, `:scheme`, `:authority`
/// and `:path` (which the HTTP library writes), and the check of the
/// answer. There is no key: the stream is the upgrade.
#[derive(Clone, Debug)]
pub struct ExtendedConnectHandshake {
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    deflate: Option<DeflateConfig>,
}

impl ExtendedConnectHandshake {
    /// The request's headers for `opts`: `sec-websocket-version: 13`, the
    /// origin, subprotocols, the permessage-deflate offer and the extra
    /// headers, names in lower case (HTTP/2 and HTTP/3 require it).
    pub fn try_new(opts: ClientOptions) -> Result<ExtendedConnectHandshake, HandshakeError> {
        if !opts.subprotocols.iter().all(|p| is_token(p)) {
            return Err(HandshakeError::InvalidRequest(
                "subprotocol is not an HTTP token",
            ));
        }
        let mut headers = vec![("sec-websocket-version".to_owned(), "13".to_owned())];
        if let Some(o) = &opts.origin {
            if !is_safe_value(o.as_bytes()) {
                return Err(HandshakeError::InvalidRequest("invalid Origin"));
            }
            headers.push(("origin".to_owned(), o.clone()));
        }
        if !opts.subprotocols.is_empty() {
            headers.push((
                "sec-websocket-protocol".to_owned(),
                opts.subprotocols.join(", "),
            ));
        }
        if let Some(cfg) = &opts.deflate {
            headers.push((
                "sec-websocket-extensions".to_owned(),
                extension::client_offer(cfg),
            ));
        }
        for (n, v) in &opts.extra_headers {
            check_extra_header(n, v).map_err(HandshakeError::InvalidRequest)?;
            headers.push((n.to_ascii_lowercase(), v.clone()));
        }
        Ok(ExtendedConnectHandshake {
            headers,
            subprotocols: opts.subprotocols,
            deflate: opts.deflate,
        })
    }

    /// The headers to send.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Checks the answer: a 2xx status ([`HandshakeError::UnexpectedStatus`]
    /// otherwise), then the subprotocol and extensions as
    /// [`ClientHandshake::receive_response`] does.
    pub fn receive_response(
        &self,
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Result<ClientAccepted, HandshakeError> {
        if !(200..300).contains(&status) {
            return Err(HandshakeError::UnexpectedStatus(status));
        }
        let (subprotocol, deflate) =
            check_negotiated(&self.subprotocols, self.deflate.as_ref(), &headers)?;
        Ok(ClientAccepted {
            subprotocol,
            deflate,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    /// RFC 6455 §1.3 sample.
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn limits() -> Limits {
        Limits::default()
    }

    /// A valid request with `extra` header lines inserted.
    fn request_with(extra: &str) -> String {
        format!(
            "GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
             {extra}\r\n"
        )
    }

    /// Builds a request from header lines (no terminating blank line).
    fn request_lines(first: &str, lines: &[&str]) -> String {
        let mut s = format!("{first}\r\n");
        for l in lines {
            s.push_str(l);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s
    }

    fn parse_ok(s: &str) -> RequestHead<'_> {
        let (head, used) = parse_request(s.as_bytes(), &limits()).unwrap().unwrap();
        assert_eq!(used, s.len());
        head
    }

    fn accept_str(s: &str, opts: &ServerOptions) -> Result<Accepted, Rejection> {
        accept(&parse_ok(s), opts)
    }

    fn status_of(s: &str) -> u16 {
        match accept_str(s, &ServerOptions::default()) {
            Ok(_) => 101,
            Err(r) => r.status,
        }
    }

    const BASE: [&str; 5] = [
        "Host: h",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];

    /// BASE with line `i` replaced (or removed when `with` is None) and
    /// `add` appended.
    fn variant(i: usize, with: Option<&str>, add: &[&str]) -> String {
        let mut lines: Vec<&str> = Vec::new();
        for (j, l) in BASE.iter().enumerate() {
            if j == i {
                if let Some(w) = with {
                    lines.push(w);
                }
            } else {
                lines.push(l);
            }
        }
        lines.extend_from_slice(add);
        request_lines("GET / HTTP/1.1", &lines)
    }

    #[test]
    fn rfc_sample_accept_key() {
        assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
    }

    #[test]
    fn accepts_rfc_sample_request() {
        let req = request_with("Origin: http://example.com\r\n");
        let head = parse_ok(&req);
        assert_eq!(head.method(), "GET");
        assert!(head.is_http11());
        assert_eq!(head.path(), "/chat?x=1");
        assert_eq!(head.host(), Some(&b"server.example.com"[..]));
        assert_eq!(head.origin(), Some(&b"http://example.com"[..]));
        let a = accept(&head, &ServerOptions::default()).unwrap();
        assert_eq!(a.accept_key, ACCEPT);
        assert_eq!(
            a.response,
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
            )
            .as_bytes()
        );
        assert_eq!(a.subprotocol, None);
        assert_eq!(a.extensions, None);
        assert_eq!(a.deflate, None);
        assert_eq!(a.headers.len(), 3);
    }

    #[test]
    fn response_carries_protocol_extension_and_extra_headers() {
        let req = request_with(
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
        );
        let opts = ServerOptions::default()
            .subprotocols(["chat"])
            .deflate(Some(
                DeflateConfig::default().server_no_context_takeover(true),
            ))
            .header("X-Node", "n1");
        let a = accept_str(&req, &opts).unwrap();
        let text = String::from_utf8(a.response.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\
                 Sec-WebSocket-Protocol: chat\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\
                 X-Node: n1\r\n\r\n"
            )
        );
        assert_eq!(a.subprotocol.as_deref(), Some("chat"));
        assert_eq!(
            a.extensions.as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        assert_eq!(
            a.deflate,
            Some(DeflateParams {
                server_no_context_takeover: true,
                ..DeflateParams::default()
            })
        );
        assert_eq!(a.headers.last().unwrap(), &("X-Node".into(), "n1".into()));
    }

    #[test]
    fn deflate_not_configured_declines_offer() {
        let req = request_with("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        let a = accept_str(&req, &ServerOptions::default()).unwrap();
        assert_eq!(a.deflate, None);
        assert!(!String::from_utf8(a.response)
            .unwrap()
            .contains("Extensions"));
    }

    #[test]
    fn key_rejections() {
        // Missing.
        assert_eq!(status_of(&variant(3, None, &[])), 400);
        // Duplicated.
        assert_eq!(status_of(&variant(3, Some(BASE[3]), &[BASE[3]])), 400);
        for bad in [
            "Sec-WebSocket-Key: ",
            "Sec-WebSocket-Key: not base64!",
            // 15 and 17 bytes.
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA",
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=",
            // 16 bytes without padding.
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ==",
        ] {
            assert_eq!(status_of(&variant(3, Some(bad), &[])), 400, "{bad}");
        }
        // Surrounding whitespace is fine.
        assert_eq!(
            status_of(&variant(
                3,
                Some("Sec-WebSocket-Key:   dGhlIHNhbXBsZSBub25jZQ==  "),
                &[]
            )),
            101
        );
        let r = accept_str(&variant(3, None, &[]), &ServerOptions::default()).unwrap_err();
        assert!(r.reason.contains("Sec-WebSocket-Key"));
    }

    #[test]
    fn version_rejections_are_426_with_header() {
        for v in [
            None,
            Some("Sec-WebSocket-Version: 8"),
            Some("Sec-WebSocket-Version: 13, 8"),
            Some("Sec-WebSocket-Version: "),
        ] {
            let r = accept_str(&variant(4, v, &[]), &ServerOptions::default()).unwrap_err();
            assert_eq!(r.status, 426, "{v:?}");
            let text = String::from_utf8(r.response.clone()).unwrap();
            assert!(
                text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
                "{text}"
            );
            assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
            assert_eq!(
                r.headers,
                vec![("Sec-WebSocket-Version".into(), "13".into())]
            );
        }
        // Two header lines.
        assert_eq!(
            status_of(&variant(4, Some(BASE[4]), &["Sec-WebSocket-Version: 13"])),
            426
        );
    }

    #[test]
    fn upgrade_and_connection_rejections() {
        assert_eq!(status_of(&variant(1, None, &[])), 400);
        assert_eq!(status_of(&variant(1, Some("Upgrade: h2c"), &[])), 400);
        assert_eq!(
            status_of(&variant(1, Some("Upgrade: websockets"), &[])),
            400
        );
        assert_eq!(status_of(&variant(2, None, &[])), 400);
        assert_eq!(
            status_of(&variant(2, Some("Connection: keep-alive"), &[])),
            400
        );
        assert_eq!(
            status_of(&variant(2, Some("Connection: upgraded"), &[])),
            400
        );
        // Token lists and case.
        for ok in [
            "Connection: keep-alive, Upgrade",
            "Connection: keep-alive,upgrade",
            "Connection: UPGRADE",
            "Connection:  Upgrade , keep-alive ",
        ] {
            assert_eq!(status_of(&variant(2, Some(ok), &[])), 101, "{ok}");
        }
        assert_eq!(
            status_of(&variant(
                2,
                Some("Connection: keep-alive"),
                &["Connection: Upgrade"]
            )),
            101
        );
        for ok in ["Upgrade: WebSocket", "Upgrade: h2c, websocket"] {
            assert_eq!(status_of(&variant(1, Some(ok), &[])), 101, "{ok}");
        }
    }

    #[test]
    fn method_version_and_host_rejections() {
        let post = request_lines("POST / HTTP/1.1", &BASE);
        let r = accept_str(&post, &ServerOptions::default()).unwrap_err();
        assert_eq!(r.status, 405);
        let text = String::from_utf8(r.response).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nAllow: GET\r\n"));

        assert_eq!(status_of(&request_lines("get / HTTP/1.1", &BASE)), 405);
        assert_eq!(status_of(&request_lines("GET / HTTP/1.0", &BASE)), 400);
        assert_eq!(status_of(&variant(0, None, &[])), 400);
        assert_eq!(status_of(&variant(0, Some(BASE[0]), &["Host: other"])), 400);
        // Two Origin headers.
        assert_eq!(
            status_of(&variant(
                0,
                Some(BASE[0]),
                &["Origin: http://a", "Origin: http://b"]
            )),
            400
        );
    }

    #[test]
    fn rejection_response_format() {
        let r = reject(403, "origin not allowed");
        assert_eq!(r.status, 403);
        assert_eq!(
            String::from_utf8(r.response.clone()).unwrap(),
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 18\r\nConnection: close\r\n\r\norigin not allowed"
        );
        let r = reject(429, "slow\r\ndown").with_header("Retry-After", "5");
        let text = String::from_utf8(r.response).unwrap();
        assert!(text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(text.contains("\r\nRetry-After: 5\r\n"));
        assert!(text.ends_with("\r\n\r\nslow  down"));
        assert_eq!(reject(7, "x").status, 500);
        assert!(String::from_utf8(reject(431, "big").response)
            .unwrap()
            .starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }

    #[test]
    #[should_panic(expected = "control characters")]
    fn server_header_setter_rejects_injection() {
        let _ = ServerOptions::default().header("X-A", "a\r\nX-B: b");
    }

    #[test]
    fn subprotocol_preference() {
        let opts = ServerOptions::default().subprotocols(["v2.chat", "v1.chat"]);
        let pick = |lines: &[&str]| {
            let extra: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
            accept_str(&request_with(&extra), &opts)
                .unwrap()
                .subprotocol
        };
        // Server preference wins over client order.
        assert_eq!(
            pick(&["Sec-WebSocket-Protocol: v1.chat, v2.chat"]).as_deref(),
            Some("v2.chat")
        );
        assert_eq!(
            pick(&["Sec-WebSocket-Protocol: v1.chat, other"]).as_deref(),
            Some("v1.chat")
        );
        // Across header lines.
        assert_eq!(
            pick(&[
                "Sec-WebSocket-Protocol: other",
                "Sec-WebSocket-Protocol: v1.chat,v2.chat"
            ])
            .as_deref(),
            Some("v2.chat")
        );
        // No overlap, none offered, case-sensitive.
        assert_eq!(pick(&["Sec-WebSocket-Protocol: mqtt"]), None);
        assert_eq!(pick(&[]), None);
        assert_eq!(pick(&["Sec-WebSocket-Protocol: V2.CHAT"]), None);
        let a = accept_str(&request_with("Sec-WebSocket-Protocol: v1.chat\r\n"), &opts).unwrap();
        assert!(String::from_utf8(a.response)
            .unwrap()
            .contains("\r\nSec-WebSocket-Protocol: v1.chat\r\n"));
    }

    #[test]
    fn incomplete_and_leftover() {
        let req = request_with("");
        for cut in 0..req.len() {
            assert_eq!(
                parse_request(&req.as_bytes()[..cut], &limits()).unwrap(),
                None,
                "cut at {cut}"
            );
        }
        let mut buf = req.clone().into_bytes();
        buf.extend_from_slice(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
        let (head, used) = parse_request(&buf, &limits()).unwrap().unwrap();
        assert_eq!(used, req.len());
        assert_eq!(
            &buf[used..],
            b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
        );
        assert!(accept(&head, &ServerOptions::default()).is_ok());
    }

    #[test]
    fn head_too_large_is_431() {
        let req = request_with(&format!("X-Pad: {}\r\n", "a".repeat(300)));
        let small = limits().max_handshake_bytes(200);
        // Incomplete but already past the limit.
        let e = parse_request(&req.as_bytes()[..250], &small).unwrap_err();
        assert_eq!(e, HandshakeError::HeadTooLarge);
        assert_eq!(e.http_status(), Some(431));
        // Complete but past the limit.
        assert_eq!(
            parse_request(req.as_bytes(), &small).unwrap_err(),
            HandshakeError::HeadTooLarge
        );
        // Below the limit and incomplete: wait for more.
        assert_eq!(parse_request(&req.as_bytes()[..150], &small).unwrap(), None);
        // Exactly at the limit is fine.
        let exact = limits().max_handshake_bytes(req.len());
        assert!(parse_request(req.as_bytes(), &exact).unwrap().is_some());
        let r = e.rejection().unwrap();
        assert_eq!(r.status, 431);
        assert!(String::from_utf8(r.response)
            .unwrap()
            .starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        // A default-limit request with a 20 KiB header.
        let big = request_with(&format!("X-Pad: {}\r\n", "a".repeat(20 << 10)));
        assert_eq!(
            parse_request(big.as_bytes(), &limits()).unwrap_err(),
            HandshakeError::HeadTooLarge
        );
    }

    #[test]
    fn too_many_headers_is_431() {
        let extra: String = (0..10).map(|i| format!("X-{i}: v\r\n")).collect();
        let req = request_with(&extra);
        let few = limits().max_headers(10);
        let e = parse_request(req.as_bytes(), &few).unwrap_err();
        assert_eq!(e, HandshakeError::TooManyHeaders);
        assert_eq!(e.http_status(), Some(431));
        // Also while still incomplete.
        assert_eq!(
            parse_request(&req.as_bytes()[..req.len() - 2], &few).unwrap_err(),
            HandshakeError::TooManyHeaders
        );
        // 5 + 10 headers fit in 15, not in 14.
        assert!(parse_request(req.as_bytes(), &limits().max_headers(15))
            .unwrap()
            .is_some());
        assert_eq!(
            parse_request(req.as_bytes(), &limits().max_headers(14)).unwrap_err(),
            HandshakeError::TooManyHeaders
        );
        // A huge limit does not allocate hugely.
        assert!(
            parse_request(req.as_bytes(), &limits().max_headers(usize::MAX))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn malformed_request_is_400() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost h\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
        ] {
            let e = parse_request(bad, &limits()).unwrap_err();
            assert_eq!(e.http_status(), Some(400), "{e}");
        }
    }

    #[test]
    fn parse_request_never_panics_on_truncations_and_mutations() {
        let req = request_with(
            "Sec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Extensions: permessage-deflate; \
             client_max_window_bits\r\nOrigin: http://x\r\n",
        );
        let bytes = req.as_bytes();
        let opts = ServerOptions::default()
            .subprotocols(["b"])
            .deflate(Some(DeflateConfig::default()));
        let small = limits().max_handshake_bytes(100).max_headers(4);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for cut in 0..=bytes.len() {
            for l in [limits(), small.clone()] {
                if let Ok(Some((head, used))) = parse_request(&bytes[..cut], &l) {
                    assert!(used <= cut);
                    let _ = accept(&head, &opts);
                }
            }
            // Flip a few bytes of the prefix too.
            for _ in 0..8 {
                let mut m = bytes[..cut].to_vec();
                if m.is_empty() {
                    break;
                }
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % m.len();
                m[i] = (seed >> 32) as u8;
                if let Ok(Some((head, used))) = parse_request(&m, &limits()) {
                    assert!(used <= m.len());
                    let _ = accept(&head, &opts);
                    let _ = head.into_owned();
                }
            }
        }
        // Complete only at the full length.
        assert!(parse_request(bytes, &limits()).unwrap().is_some());
    }

    #[test]
    fn request_head_from_parts() {
        let headers: Vec<(&str, &[u8])> = vec![
            ("host", b"h"),
            ("upgrade", b"websocket"),
            ("connection", b"upgrade"),
            ("sec-websocket-key", KEY.as_bytes()),
            ("sec-websocket-version", b"13"),
            ("sec-websocket-protocol", b"x, y"),
            ("origin", b"https://o"),
        ];
        let head = RequestHead::from_parts("GET", true, "/ws", headers.iter().copied());
        assert_eq!(head.path(), "/ws");
        assert_eq!(head.origin(), Some(&b"https://o"[..]));
        assert_eq!(head.subprotocols().collect::<Vec<_>>(), ["x", "y"]);
        let owned: RequestHead<'static> = head.clone().into_owned();
        assert_eq!(owned, head);
        let a = accept(&owned, &ServerOptions::default().subprotocols(["y"])).unwrap();
        assert_eq!(a.accept_key, ACCEPT);
        assert_eq!(a.subprotocol.as_deref(), Some("y"));
        let http10 = RequestHead::from_parts("GET", false, "/ws", headers.iter().copied());
        assert_eq!(
            accept(&http10, &ServerOptions::default())
                .unwrap_err()
                .status,
            400
        );
    }

    // ---- client ----

    fn client_with(opts: ClientOptions) -> ClientHandshake {
        ClientHandshake::with_key("example.com:80", "/ws?a=b", opts, *b"the sample nonce").unwrap()
    }

    fn response(lines: &[&str]) -> String {
        let mut s = String::from("HTTP/1.1 101 Switching Protocols\r\n");
        for l in lines {
            s.push_str(l);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s
    }

    const OK_LINES: [&str; 3] = [
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    ];

    fn ok_plus(extra: &[&str]) -> String {
        let mut l = OK_LINES.to_vec();
        l.extend_from_slice(extra);
        response(&l)
    }

    fn receive(c: &ClientHandshake, s: &str) -> Result<ClientAccepted, HandshakeError> {
        c.receive_response(s.as_bytes(), &limits())
            .map(|r| r.expect("complete").0)
    }

    #[test]
    fn client_request_bytes() {
        let c = client_with(
            ClientOptions::default()
                .subprotocols(["a", "b"])
                .deflate(Some(DeflateConfig::default()))
                .origin("http://example.com")
                .header("Authorization", "Bearer t"),
        );
        assert_eq!(
            String::from_utf8(c.request().to_vec()).unwrap(),
            format!(
                "GET /ws?a=b HTTP/1.1\r\nHost: example.com:80\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
                 Origin: http://example.com\r\nSec-WebSocket-Protocol: a, b\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
                 Authorization: Bearer t\r\n\r\n"
            )
        );
        assert_eq!(c.expected_accept(), ACCEPT);
    }

    #[test]
    fn client_keys_are_random_and_valid() {
        let a = ClientHandshake::new("h", "/", ClientOptions::default());
        let b = ClientHandshake::new("h", "/", ClientOptions::default());
        assert_ne!(a.request(), b.request());
        let (head, _) = parse_request(a.request(), &limits()).unwrap().unwrap();
        let key = head.header("sec-websocket-key").unwrap();
        assert_eq!(BASE64.decode(key).unwrap().len(), 16);
        assert_eq!(accept_key(key), a.expected_accept());
    }

    #[test]
    fn client_try_new_rejects_unwritable_input() {
        let o = ClientOptions::default;
        for (host, path, opts) in [
            ("", "/", o()),
            ("a b", "/", o()),
            ("h\r\nX: y", "/", o()),
            ("h", "", o()),
            ("h", "/a b", o()),
            ("h", "/\n", o()),
            ("h", "/", o().subprotocols(["a b"])),
            ("h", "/", o().subprotocols([""])),
            ("h", "/", o().origin("http://x\r\nX: y")),
            ("h", "/", o().header("Bad Name", "v")),
            ("h", "/", o().header("X", "v\n")),
        ] {
            assert!(
                matches!(
                    ClientHandshake::try_new(host, path, opts),
                    Err(HandshakeError::InvalidRequest(_))
                ),
                "{host:?} {path:?}"
            );
        }
    }

    #[test]
    fn client_full_round_trip_with_server() {
        let c = ClientHandshake::new(
            "h",
            "/",
            ClientOptions::default()
                .subprotocols(["b", "a"])
                .deflate(Some(DeflateConfig::default().client_max_window_bits(12))),
        );
        let (head, _) = parse_request(c.request(), &limits()).unwrap().unwrap();
        let s = accept(
            &head,
            &ServerOptions::default()
                .subprotocols(["a", "b"])
                .deflate(Some(DeflateConfig::default().server_max_window_bits(10))),
        )
        .unwrap();
        let mut wire = s.response.clone();
        wire.extend_from_slice(b"\x81\x02hi");
        let (acc, used) = c.receive_response(&wire, &limits()).unwrap().unwrap();
        assert_eq!(used, s.response.len());
        assert_eq!(acc.subprotocol.as_deref(), Some("a"));
        assert_eq!(acc.deflate, s.deflate);
        assert_eq!(
            acc.deflate,
            Some(DeflateParams {
                server_max_window_bits: 10,
                client_max_window_bits: 12,
                ..DeflateParams::default()
            })
        );
        assert_eq!(acc.header("upgrade"), Some(&b"websocket"[..]));
        assert_eq!(acc.headers.len(), s.headers.len());
    }

    #[test]
    fn client_accepts_minimal_response_and_waits_for_more() {
        let c = client_with(ClientOptions::default());
        let r = ok_plus(&[]);
        for cut in 0..r.len() {
            assert_eq!(
                c.receive_response(&r.as_bytes()[..cut], &limits()).unwrap(),
                None
            );
        }
        let acc = receive(&c, &r).unwrap();
        assert_eq!(acc.subprotocol, None);
        assert_eq!(acc.deflate, None);
        // Case and token lists.
        let r = response(&[
            "upgrade: WebSocket",
            "connection: keep-alive, upgrade",
            "sec-websocket-accept:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo= ",
        ]);
        assert!(receive(&c, &r).is_ok());
    }

    #[test]
    fn client_rejects_bad_responses() {
        let c = client_with(ClientOptions::default().subprotocols(["chat"]));
        let e = receive(&c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").unwrap_err();
        assert_eq!(e, HandshakeError::UnexpectedStatus(403));
        assert_eq!(e.http_status(), None);
        assert_eq!(
            receive(&c, "HTTP/1.1 200 OK\r\n\r\n").unwrap_err(),
            HandshakeError::UnexpectedStatus(200)
        );
        assert!(matches!(
            receive(&c, "HTTP/1.0 101 Switching Protocols\r\n\r\n").unwrap_err(),
            HandshakeError::Malformed(_)
        ));
        assert!(matches!(
            receive(&c, "HTTQ/1.1 101 x\r\n\r\n").unwrap_err(),
            HandshakeError::Malformed(_)
        ));
        let wrong_accept = response(&[
            OK_LINES[0],
            OK_LINES[1],
            "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ]);
        assert_eq!(
            receive(&c, &wrong_accept).unwrap_err(),
            HandshakeError::InvalidAccept
        );
        assert_eq!(
            receive(&c, &response(&OK_LINES[..2])).unwrap_err(),
            HandshakeError::InvalidAccept
        );
        assert_eq!(
            receive(&c, &ok_plus(&[OK_LINES[2]])).unwrap_err(),
            HandshakeError::InvalidAccept
        );
        assert_eq!(
            receive(&c, &response(&OK_LINES[1..])).unwrap_err(),
            HandshakeError::MissingUpgrade
        );
        assert_eq!(
            receive(&c, &response(&["Upgrade: h2c", OK_LINES[1], OK_LINES[2]])).unwrap_err(),
            HandshakeError::MissingUpgrade
        );
        assert_eq!(
            receive(&c, &response(&[OK_LINES[0], OK_LINES[2]])).unwrap_err(),
            HandshakeError::MissingConnectionUpgrade
        );
        assert_eq!(
            receive(
                &c,
                &response(&[OK_LINES[0], "Connection: close", OK_LINES[2]])
            )
            .unwrap_err(),
            HandshakeError::MissingConnectionUpgrade
        );
    }

    #[test]
    fn client_subprotocol_checks() {
        let c = client_with(ClientOptions::default().subprotocols(["chat", "v2"]));
        assert_eq!(
            receive(&c, &ok_plus(&["Sec-WebSocket-Protocol: v2"]))
                .unwrap()
                .subprotocol
                .as_deref(),
            Some("v2")
        );
        assert_eq!(
            receive(&c, &ok_plus(&["Sec-WebSocket-Protocol: mqtt"])).unwrap_err(),
            HandshakeError::UnofferedSubprotocol("mqtt".into())
        );
        assert_eq!(
            receive(&c, &ok_plus(&["Sec-WebSocket-Protocol: chat, v2"])).unwrap_err(),
            HandshakeError::InvalidSubprotocol
        );
        assert_eq!(
            receive(
                &c,
                &ok_plus(&[
                    "Sec-WebSocket-Protocol: chat",
                    "Sec-WebSocket-Protocol: chat"
                ])
            )
            .unwrap_err(),
            HandshakeError::InvalidSubprotocol
        );
        assert_eq!(
            receive(&c, &ok_plus(&["Sec-WebSocket-Protocol: "])).unwrap_err(),
            HandshakeError::InvalidSubprotocol
        );
        // Offered none, got one.
        let none = client_with(ClientOptions::default());
        assert_eq!(
            receive(&none, &ok_plus(&["Sec-WebSocket-Protocol: chat"])).unwrap_err(),
            HandshakeError::UnofferedSubprotocol("chat".into())
        );
    }

    #[test]
    fn client_extension_checks() {
        let none = client_with(ClientOptions::default());
        assert_eq!(
            receive(
                &none,
                &ok_plus(&["Sec-WebSocket-Extensions: permessage-deflate"])
            )
            .unwrap_err(),
            HandshakeError::Extension(ExtensionError::Unoffered("permessage-deflate".into()))
        );
        assert!(receive(&none, &ok_plus(&["Sec-WebSocket-Extensions: "])).is_ok());

        let c = client_with(ClientOptions::default().deflate(Some(DeflateConfig::default())));
        assert_eq!(receive(&c, &ok_plus(&[])).unwrap().deflate, None);
        assert_eq!(
            receive(
                &c,
                &ok_plus(&[
                    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=9"
                ])
            )
            .unwrap()
            .deflate,
            Some(DeflateParams {
                client_max_window_bits: 9,
                ..DeflateParams::default()
            })
        );
        assert_eq!(
            receive(&c, &ok_plus(&["Sec-WebSocket-Extensions: x-foo"])).unwrap_err(),
            HandshakeError::Extension(ExtensionError::Unoffered("x-foo".into()))
        );
        assert_eq!(
            receive(
                &c,
                &ok_plus(&[
                    "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16"
                ])
            )
            .unwrap_err(),
            HandshakeError::Extension(ExtensionError::InvalidParam(
                "server_max_window_bits".into()
            ))
        );
        assert_eq!(
            receive(
                &c,
                &ok_plus(&[
                    "Sec-WebSocket-Extensions: permessage-deflate",
                    "Sec-WebSocket-Extensions: permessage-deflate"
                ])
            )
            .unwrap_err(),
            HandshakeError::Extension(ExtensionError::Duplicate)
        );
        let e = receive(
            &c,
            &ok_plus(&["Sec-WebSocket-Extensions: permessage-deflate; x"]),
        )
        .unwrap_err();
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn client_response_limits_and_leftover() {
        let c = client_with(ClientOptions::default());
        let r = ok_plus(&[]);
        let mut wire = r.clone().into_bytes();
        wire.extend_from_slice(b"\x82\x00");
        let (_, used) = c.receive_response(&wire, &limits()).unwrap().unwrap();
        assert_eq!(used, r.len());
        assert_eq!(
            c.receive_response(r.as_bytes(), &limits().max_handshake_bytes(50))
                .unwrap_err(),
            HandshakeError::HeadTooLarge
        );
        assert_eq!(
            c.receive_response(r.as_bytes(), &limits().max_headers(2))
                .unwrap_err(),
            HandshakeError::TooManyHeaders
        );
    }

    fn h2_request<'a>(method: &'a str, headers: &'a [(&'a str, &'a [u8])]) -> RequestHead<'a> {
        RequestHead::from_parts(method, false, "/chat?x=1", headers.iter().copied())
    }

    const H2: ExtendedConnect<'static> = ExtendedConnect {
        protocol: Some("websocket"),
        authority: Some("example.com"),
        scheme: Some("https"),
    };

    #[test]
    fn extended_connect_accepted_with_negotiation() {
        let headers: &[(&str, &[u8])] = &[
            ("sec-websocket-version", b"13"),
            ("sec-websocket-protocol", b"chat, superchat"),
            ("sec-websocket-extensions", b"permessage-deflate"),
            ("origin", b"https://example.com"),
        ];
        let opts = ServerOptions::default()
            .subprotocols(["superchat"])
            .deflate(Some(DeflateConfig::default()));
        let a = accept_extended_connect(&h2_request("CONNECT", headers), H2, &opts).unwrap();
        assert_eq!(a.subprotocol.as_deref(), Some("superchat"));
        assert!(a.deflate.is_some());
        assert!(a.response.is_empty() && a.accept_key.is_empty());
        let names: Vec<&str> = a.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"]
        );
        assert!(!names.iter().any(|n| n.eq_ignore_ascii_case("upgrade")));

        // The client's check of that answer.
        let client = ExtendedConnectHandshake::try_new(
            ClientOptions::default()
                .subprotocols(["chat", "superchat"])
                .deflate(Some(DeflateConfig::default()))
                .origin("https://example.com"),
        )
        .unwrap();
        let sent: Vec<&str> = client.headers().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            sent,
            [
                "sec-websocket-version",
                "origin",
                "sec-websocket-protocol",
                "sec-websocket-extensions"
            ]
        );
        let answer: Vec<(String, Vec<u8>)> = a
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone().into_bytes()))
            .collect();
        let done = client.receive_response(200, answer.clone()).unwrap();
        assert_eq!(done.subprotocol.as_deref(), Some("superchat"));
        assert!(done.deflate.is_some());
        assert_eq!(
            client.receive_response(404, answer).unwrap_err(),
            HandshakeError::UnexpectedStatus(404)
        );
        let plain = ExtendedConnectHandshake::try_new(ClientOptions::default()).unwrap();
        let unoffered = vec![("sec-websocket-protocol".to_owned(), b"chat".to_vec())];
        assert!(matches!(
            plain.receive_response(200, unoffered),
            Err(HandshakeError::UnofferedSubprotocol(_))
        ));
        let ext = vec![(
            "sec-websocket-extensions".to_owned(),
            b"permessage-deflate".to_vec(),
        )];
        assert!(plain.receive_response(200, ext).is_err());
    }

    #[test]
    fn extended_connect_refusals() {
        let ok: &[(&str, &[u8])] = &[("sec-websocket-version", b"13")];
        let opts = ServerOptions::default();
        let status = |method, pseudo, headers| {
            accept_extended_connect(&h2_request(method, headers), pseudo, &opts)
                .map(|_| 200)
                .unwrap_or_else(|r| r.status)
        };
        assert_eq!(status("CONNECT", H2, ok), 200);
        let get = accept_extended_connect(&h2_request("GET", ok), H2, &opts).unwrap_err();
        assert_eq!(get.status, 405);
        assert!(get
            .headers
            .iter()
            .any(|(n, v)| n == "Allow" && v == "CONNECT"));
        let with = |f: fn(&mut ExtendedConnect<'static>)| {
            let mut p = H2;
            f(&mut p);
            p
        };
        assert_eq!(status("CONNECT", with(|p| p.protocol = None), ok), 400);
        assert_eq!(
            status("CONNECT", with(|p| p.protocol = Some("connect-udp")), ok),
            400
        );
        assert_eq!(status("CONNECT", with(|p| p.authority = None), ok), 400);
        assert_eq!(status("CONNECT", with(|p| p.authority = Some("")), ok), 400);
        assert_eq!(status("CONNECT", with(|p| p.scheme = None), ok), 400);
        assert_eq!(status("CONNECT", H2, &[]), 426);
        assert_eq!(
            status("CONNECT", H2, &[("sec-websocket-version", b"8")]),
            426
        );
        assert_eq!(
            status(
                "CONNECT",
                H2,
                &[
                    ("sec-websocket-version", b"13"),
                    ("origin", b"https://a"),
                    ("origin", b"https://b")
                ]
            ),
            400
        );
    }
}
