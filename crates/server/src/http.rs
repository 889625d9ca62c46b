//! HTTP routes: WebSocket upgrade, server API, health, metrics, demo files.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use wshub_hub::api;
use wshub_hub::limits::IpPermit;
use wshub_hub::metrics::ApiLimit;
use wshub_protocol::Encoding;
use wshub_ws::ServerOptions;

use crate::Shared;

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Largest API request body.
const MAX_API_BODY: usize = 16 << 20;

fn full(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    full(status, "application/json", v.to_string())
}

fn text(status: StatusCode, t: &'static str) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", t)
}

/// Routes one request.
pub(crate) async fn route(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let cfg = shared.node.config().clone();
    let path = req.uri().path().to_owned();
    let ws_path = prefix(&cfg.websocket.handler_prefix, "/connection/websocket");
    let health_path = prefix(&cfg.health.handler_prefix, "/health");
    let metrics_path = prefix(&cfg.prometheus.handler_prefix, "/metrics");
    let demo_prefix = prefix(&cfg.demo.handler_prefix, "/demo");
    let api_prefix = cfg.http_api.handler_prefix.trim_end_matches('/').to_owned();
    if let Some(kind) = stream_route(&cfg, &path) {
        return Ok(match kind {
            Route::Stream(kind) => crate::fallback::stream(shared, peer, req, kind).await,
            Route::Emulation => crate::fallback::emulation(shared, req).await,
            Route::Poll => crate::fallback::poll(shared, req).await,
        });
    }
    if !shared.pusher.is_empty() {
        if path.starts_with("/app/") {
            return Ok(crate::pusher::websocket(shared, peer, req));
        }
        if wshub_pusher::api::is_api_path(&path) {
            return Ok(crate::pusher::api(shared, req).await);
        }
    }
    Ok(if path == ws_path && !cfg.websocket.disabled {
        websocket(shared, peer, req, false)
    } else if cfg.uni_websocket.enabled
        && path == cfg.uni_websocket.handler_prefix.trim_end_matches('/')
    {
        websocket(shared, peer, req, true)
    } else if !cfg.http_api.disabled
        && (path == api_prefix || path.starts_with(&format!("{api_prefix}/")))
    {
        api_route(shared, req, &path[api_prefix.len()..]).await
    } else if cfg.health.enabled && path == health_path {
        json(StatusCode::OK, &serde_json::json!({}))
    } else if cfg.health.enabled && path == "/ready" {
        match shared.node.broker().health().await {
            Ok(()) => json(StatusCode::OK, &serde_json::json!({})),
            Err(e) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({ "error": e.to_string() }),
            ),
        }
    } else if cfg.prometheus.enabled && path == metrics_path {
        let text = shared.node.metrics_text();
        full(StatusCode::OK, wshub_hub::metrics::CONTENT_TYPE, text)
    } else if cfg.demo.enabled && req.method() == Method::GET {
        // The demo lives under its prefix and, for convenience, at `/`.
        static_file(path.strip_prefix(&demo_prefix).unwrap_or(&path))
    } else {
        text(StatusCode::NOT_FOUND, "not found")
    })
}

/// An HTTP transport's endpoint.
enum Route {
    Stream(crate::stream::Kind),
    Emulation,
    Poll,
}

/// Which enabled HTTP transport `path` names, if any.
fn stream_route(cfg: &wshub_config::Config, path: &str) -> Option<Route> {
    use crate::stream::Kind;
    let is = |configured: &str| path == configured.trim_end_matches('/');
    if cfg.http_stream.enabled && is(&cfg.http_stream.handler_prefix) {
        Some(Route::Stream(Kind::HttpStream))
    } else if cfg.sse.enabled && is(&cfg.sse.handler_prefix) {
        Some(Route::Stream(Kind::Sse))
    } else if (cfg.http_stream.enabled || cfg.sse.enabled || cfg.long_poll.enabled)
        && is(&cfg.emulation.handler_prefix)
    {
        Some(Route::Emulation)
    } else if cfg.long_poll.enabled && is(&cfg.long_poll.handler_prefix) {
        Some(Route::Stream(Kind::LongPoll))
    } else if cfg.long_poll.enabled
        && path
            .strip_prefix(cfg.long_poll.handler_prefix.trim_end_matches('/'))
            .is_some_and(|rest| rest == "/poll")
    {
        Some(Route::Poll)
    } else if cfg.uni_http_stream.enabled && is(&cfg.uni_http_stream.handler_prefix) {
        Some(Route::Stream(Kind::UniHttpStream))
    } else if cfg.uni_sse.enabled && is(&cfg.uni_sse.handler_prefix) {
        Some(Route::Stream(Kind::UniSse))
    } else {
        None
    }
}

pub(crate) fn full_response(
    status: StatusCode,
    ctype: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    full(status, ctype, body)
}

pub(crate) fn text_response(status: StatusCode, t: &'static str) -> Response<Body> {
    text(status, t)
}

/// The CORS headers of an answer to an allowed browser origin: that origin
/// (never `*`, so that credentials may be sent), credentials, and `Vary`
/// so that caches keep answers to different origins apart.
pub(crate) fn cors_headers(h: &mut http::HeaderMap, origin: HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

fn prefix(configured: &str, default: &str) -> String {
    let p = configured.trim_end_matches('/');
    if p.is_empty() {
        default.to_owned()
    } else {
        p.to_owned()
    }
}

fn static_file(path: &str) -> Response<Body> {
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let found = crate::static_files::FILES
        .iter()
        .find(|(p, _)| *p == rel)
        .map(|(_, b)| *b);
    match found {
        Some(b) => {
            let ctype = match rel.rsplit('.').next() {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                Some("json") => "application/json",
                Some("svg") => "image/svg+xml",
                Some("png") => "image/png",
                _ => "application/octet-stream",
            };
            full(StatusCode::OK, ctype, Bytes::from_static(b))
        }
        None if rel == "index.html" => full(
            StatusCode::OK,
            "text/html; charset=utf-8",
            "<!doctype html><title>wshub</title><h1>wshub</h1>\
             <p>Connect to <code>/connection/websocket</code>.</p>",
        ),
        None => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Centrifugo's origin rule: a request without `Origin` passes; otherwise
/// the origin must match one of `allowed_origins` (`*` wildcards, case
/// insensitive); an empty list refuses every request that has an `Origin`.
pub(crate) fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.to_ascii_lowercase();
    allowed
        .iter()
        .any(|p| wildcard(&p.to_ascii_lowercase(), &origin))
}

fn wildcard(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            if !s.starts_with(head) {
                return false;
            }
            let rest = &s[head.len()..];
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && wildcard(tail, &rest[i..]))
        }
    }
}

/// Why a real-time client was refused before any session exists.
pub(crate) enum ClientRefusal {
    /// The origin is not in `client.allowed_origins` (403).
    Origin,
    /// Over a per-IP or node connection limit (429, `Retry-After: 1`).
    Limit,
}

impl ClientRefusal {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ClientRefusal::Origin => StatusCode::FORBIDDEN,
            ClientRefusal::Limit => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub(crate) fn response(&self) -> Response<Body> {
        match self {
            ClientRefusal::Origin => text(self.status(), "origin not allowed"),
            ClientRefusal::Limit => {
                let mut r = text(self.status(), "too many requests");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
        }
    }
}

/// What every real-time endpoint checks before a session exists, on every
/// HTTP version: the origin (`client.allowed_origins`) and the per-IP
/// limits; the permit holds the client's place in them.
pub(crate) fn admit_client(
    shared: &Shared,
    peer: SocketAddr,
    origin: Option<&str>,
    what: &'static str,
) -> Result<IpPermit, ClientRefusal> {
    if !origin_allowed(&shared.node.config().client.allowed_origins, origin) {
        tracing::info!(?origin, transport = what, "refused: origin not allowed");
        return Err(ClientRefusal::Origin);
    }
    match shared
        .ip_limits
        .acquire(peer.ip(), std::time::Instant::now())
    {
        Ok(p) => Ok(p),
        Err(refusal) => {
            tracing::debug!(peer = %peer.ip(), limit = refusal.limit().as_str(), transport = what, "refused: limit");
            shared.node.metrics().limit_exceeded(refusal.limit());
            Err(ClientRefusal::Limit)
        }
    }
}

/// How a WebSocket at the gateway's endpoint is accepted and served, the
/// same on every HTTP version: the engine's options (size limits,
/// subprotocols, permessage-deflate, keepalive for `uni_websocket`), the
/// encoding asked for in the URL, and the unidirectional mode.
pub(crate) struct WsPlan {
    pub opts: ServerOptions,
    /// `?format=protobuf` (bidirectional only).
    pub query_protobuf: bool,
    pub uni_mode: Option<Box<crate::ws::Uni>>,
}

impl WsPlan {
    /// `Err`: a `cf_connect` query parameter that is not a connect request.
    pub(crate) fn new(
        cfg: &wshub_config::Config,
        uri: &http::Uri,
        uni: bool,
    ) -> Result<WsPlan, &'static str> {
        let query = |name: &str| {
            uri.query().and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            })
        };
        let query_protobuf = !uni
            && query("format")
                .is_some_and(|v| Encoding::from_query_value(&v) == Encoding::Protobuf);
        let uni_mode = if uni {
            let u = &cfg.uni_websocket;
            let connect = match query("cf_connect") {
                None => None,
                Some(v) => {
                    match serde_json::from_str::<Option<wshub_protocol::ConnectRequest>>(&v) {
                        Ok(c) => Some(c.unwrap_or_default()),
                        Err(_) => return Err("invalid connect request"),
                    }
                }
            };
            Some(Box::new(crate::ws::Uni {
                connect,
                join: u.join_push_messages,
                disconnect_push: !u.disable_disconnect_push,
                closing_handshake: !u.disable_closing_handshake,
            }))
        } else {
            None
        };
        Ok(WsPlan {
            opts: ws_server_options(cfg, uni),
            query_protobuf,
            uni_mode,
        })
    }

    /// The encoding of an accepted WebSocket: protobuf when its subprotocol
    /// or the URL asked for it (never for `uni_websocket`).
    pub(crate) fn encoding(&self, subprotocol: Option<&str>) -> Encoding {
        let sub_protobuf = subprotocol
            .and_then(Encoding::from_subprotocol)
            .is_some_and(|e| e == Encoding::Protobuf);
        if self.uni_mode.is_none() && (sub_protobuf || self.query_protobuf) {
            Encoding::Protobuf
        } else {
            Encoding::Json
        }
    }
}

/// The engine's options for the gateway's WebSocket endpoints.
pub(crate) fn ws_server_options(cfg: &wshub_config::Config, uni: bool) -> ServerOptions {
    // `websocket.message_size_limit` bounds each frame on the wire and,
    // unless `decompressed_message_size_limit` is set, the whole message
    // after inflate; over it the engine closes with 1009. The same keys of
    // `uni_websocket` (whose inflated limit defaults to 10 × the wire one,
    // as in Centrifugo).
    let (wire, inflated, compression) = if uni {
        let u = &cfg.uni_websocket;
        let inflated = match u.decompressed_message_size_limit {
            0 => u.message_size_limit.saturating_mul(10),
            n => n,
        };
        (u.message_size_limit, inflated, u.compression)
    } else {
        let w = &cfg.websocket;
        (
            w.message_size_limit,
            w.decompressed_message_size_limit,
            w.compression,
        )
    };
    let mut limits = wshub_ws::Limits::default();
    let wire = usize::try_from(wire).unwrap_or(usize::MAX);
    if wire > 0 {
        limits.max_frame_size = wire;
        limits.max_message_size = wire;
    }
    match usize::try_from(inflated).unwrap_or(usize::MAX) {
        0 => {}
        inflated => limits.max_message_size = inflated,
    }
    let mut ws_opts = wshub_ws::Options::default().limits(limits);
    if uni {
        // The client answers no protocol ping: WebSocket pings find a
        // dead peer (Centrifugo's defaults when the intervals are 0).
        let c = &cfg.client;
        let every = c.ping_interval.as_std();
        let every = if every.is_zero() {
            std::time::Duration::from_secs(25)
        } else {
            every
        };
        let timeout = c.pong_timeout.as_std();
        let timeout = if timeout.is_zero() {
            std::time::Duration::from_secs(10)
        } else {
            timeout
        };
        ws_opts = ws_opts.keepalive(Some(wshub_ws::KeepAlive {
            interval: every,
            timeout,
        }));
    }
    let mut opts = ServerOptions::default().ws(ws_opts);
    if !uni {
        opts = opts.subprotocols([Encoding::PROTOBUF_SUBPROTOCOL, Encoding::JSON_SUBPROTOCOL]);
    }
    if compression {
        // Broadcast frames stay pre-encoded and uncompressed (RSV1 clear),
        // which permessage-deflate allows; replies may be compressed.
        opts = opts.deflate(Some(wshub_ws::DeflateConfig::default()));
    }
    opts
}

/// The WebSocket endpoint. Per-IP limits (`limits.connections_per_ip`,
/// `limits.connect_rate_per_ip`) and the node's `client.connection_rate_limit`
/// are checked before the upgrade: over them the request gets HTTP 429 and
/// costs no task, session or buffers. (Centrifugo's 3504 is for limits
/// checked after authentication, at the connect command; a refused
/// handshake is a transient error the SDKs retry with backoff.) The IP is
/// the TCP peer; proxy headers are not trusted.
///
/// `uni`: the `uni_websocket` endpoint (JSON only; a `cf_connect` query
/// parameter that is not a connect request is answered 400 before the
/// upgrade; WebSocket pings every `client.ping_interval` find dead peers).
fn websocket(
    shared: Arc<Shared>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
    uni: bool,
) -> Response<Body> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let permit = match admit_client(&shared, peer, origin, "websocket") {
        Ok(p) => p,
        Err(refused) => return refused.response(),
    };
    let plan = match WsPlan::new(shared.node.config(), req.uri(), uni) {
        Ok(p) => p,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    // Over HTTP/2 the WebSocket is one stream of the connection: it keeps
    // the connection from counting as idle for as long as it is open.
    let version = if req.version() >= http::Version::HTTP_2 {
        crate::admission::HttpVersion::Http2
    } else {
        crate::admission::HttpVersion::Http1
    };
    let activity = req.extensions().get::<crate::conn::Activity>().cloned();
    match wshub_ws::upgrade(&mut req, &plan.opts) {
        Ok((resp, fut)) => {
            shared.admission.count_websocket(version);
            // Boxed before the task captures it: a captured value keeps its
            // room in the task for the connection's whole life, and the
            // upgrade future is only needed until the 101 went out.
            let fut = Box::pin(fut);
            let active = activity.map(|a| a.hold());
            let task = async move {
                let _permit = permit;
                let _active = active;
                // Split inside the match: the whole connection is not kept
                // by value in the task beside its halves.
                let (halves, encoding) = match fut.await {
                    Ok(ws) => {
                        let encoding = plan.encoding(ws.protocol());
                        (ws.split(), encoding)
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "upgrade failed");
                        return;
                    }
                };
                crate::ws::serve(shared, halves, encoding, plan.uni_mode).await;
            };
            tokio::spawn(task);
            resp.map(|b| b.map_err(|never| match never {}).boxed())
        }
        Err(resp) => resp.map(|b| b.map_err(|never| match never {}).boxed()),
    }
}

fn api_key(req: &Request<Incoming>) -> Option<String> {
    if let Some(k) = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.to_owned());
    }
    let auth = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("apikey")
        .then(|| key.trim().to_owned())
}

/// The answer for an API error that is not a method reply: its HTTP status
/// ([`api::ApiErrorKind::http_status`]) and the message as plain text.
fn api_error(e: &api::ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = full(
        status,
        "text/plain; charset=utf-8",
        format!("{}\n", e.message),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// A streamed answer: the chunks `run_batch` sends, as they come.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|c| c.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// Reads an API request body of at most [`MAX_API_BODY`] bytes, holding
/// permits of the node's body budget (`http_api.max_in_flight_body_size`)
/// for every byte: up front for a declared `Content-Length`, per chunk
/// otherwise. Over either limit, or not all in within
/// `http_api.request_body_timeout`: the error answer.
pub(crate) async fn read_api_body(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<(Bytes, Option<tokio::sync::OwnedSemaphorePermit>), Response<Body>> {
    let node = &shared.node;
    let limit = node.config().http_api.max_in_flight_body_size;
    let busy = || {
        node.metrics()
            .api_limit_exceeded(ApiLimit::MaxInFlightBodySize);
        api_error(&api::ApiError::busy(format!(
            "server busy: API request bodies in flight would pass \
             http_api.max_in_flight_body_size ({limit} bytes); retry later"
        )))
    };
    let too_large = || {
        node.metrics().api_limit_exceeded(ApiLimit::BodySize);
        full(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain; charset=utf-8",
            format!("request body larger than {MAX_API_BODY} bytes\n"),
        )
    };
    let budget = node.api_body_budget().clone();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut permit = None;
    let mut buf = Vec::new();
    if let Some(n) = declared {
        if n > MAX_API_BODY as u64 {
            return Err(too_large());
        }
        if n > 0 {
            // `n` <= 16 MiB fits u32.
            permit = Some(
                budget
                    .clone()
                    .try_acquire_many_owned(n as u32)
                    .map_err(|_| busy())?,
            );
        }
        buf.reserve_exact(n as usize);
    }
    let mut body = req.into_body();
    let deadline =
        tokio::time::Instant::now() + node.config().http_api.request_body_timeout.as_std();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => {
                node.metrics()
                    .api_limit_exceeded(ApiLimit::RequestBodyTimeout);
                let mut r = text(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received within http_api.request_body_timeout",
                );
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Err(r);
            }
        };
        let Ok(frame) = frame else {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "bad request: cannot read the body",
            ));
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > MAX_API_BODY {
            return Err(too_large());
        }
        if declared.is_none() && !data.is_empty() {
            let p = budget
                .clone()
                .try_acquire_many_owned(data.len() as u32)
                .map_err(|_| busy())?;
            match &mut permit {
                Some(all) => all.merge(p),
                None => permit = Some(p),
            }
        }
        buf.extend_from_slice(&data);
    }
    Ok((Bytes::from(buf), permit))
}

/// The server API: `POST {prefix}/<method>` with a JSON body, and the
/// batch at `{prefix}` or `{prefix}/batch`. A body that is not a request
/// of the method, or passes `http_api.max_batch_commands` or
/// `http_api.max_broadcast_channels`, is answered 400 with a plain-text
/// message naming the problem; the method's own errors are 200 with
/// `{"error": ...}` (Centrifugo's way). A batch runs in a task of its own
/// and its answer is streamed (chunked) as its commands complete; a caller
/// that goes away stops it.
async fn api_route(shared: Arc<Shared>, req: Request<Incoming>, rest: &str) -> Response<Body> {
    let cfg = shared.node.config().clone();
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    if !cfg.http_api.insecure {
        let ok = !cfg.http_api.key.is_empty()
            && api_key(&req)
                .is_some_and(|k| constant_eq(k.as_bytes(), cfg.http_api.key.as_bytes()));
        if !ok {
            return text(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    let method = rest.trim_start_matches('/').to_owned();
    let is_batch = method.is_empty() || method == "batch";
    if !is_batch && !api::is_method(&method) {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    let (body, permit) = match read_api_body(&shared, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let node = &shared.node;
    let limits = api::ApiLimits::from_config(&cfg.http_api);
    if is_batch {
        let batch = match api::decode_batch(&body, &limits) {
            Ok(b) => b,
            Err(e) => {
                if e.kind == api::ApiErrorKind::TooLarge {
                    node.metrics()
                        .api_limit_exceeded(ApiLimit::MaxBatchCommands);
                }
                return api_error(&e);
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let node = node.clone();
        let write_timeout = cfg.http_api.response_write_timeout.as_std();
        tokio::spawn(async move {
            // Held until the batch is done: the body stays counted.
            let _permit = permit;
            match api::run_batch(&node, &body, &batch, &tx, write_timeout).await {
                api::BatchOutcome::Done => {}
                api::BatchOutcome::Stalled { ran } => {
                    node.metrics()
                        .api_limit_exceeded(ApiLimit::ResponseWriteTimeout);
                    tracing::info!(
                        ran,
                        commands = batch.len(),
                        "batch stopped: the caller does not read the answer"
                    );
                }
                outcome => {
                    tracing::info!(
                        ?outcome,
                        commands = batch.len(),
                        "batch stopped: caller gone"
                    );
                }
            }
        });
        let mut r = Response::new(ChannelBody(rx).boxed());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return r;
    }
    let r = api::call(node, &method, &body).await;
    drop(permit);
    match r {
        Err(e) if e.kind != api::ApiErrorKind::Reply => {
            if e.kind == api::ApiErrorKind::TooLarge {
                node.metrics()
                    .api_limit_exceeded(ApiLimit::MaxBroadcastChannels);
            }
            api_error(&e)
        }
        r => full(StatusCode::OK, "application/json", api::reply_json(&r)),
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let list = vec![
            "https://*.example.com".to_owned(),
            "http://localhost:3000".to_owned(),
        ];
        assert!(origin_allowed(&list, None));
        assert!(origin_allowed(&list, Some("https://app.example.com")));
        assert!(origin_allowed(&list, Some("HTTP://localhost:3000")));
        assert!(!origin_allowed(&list, Some("https://evil.com")));
        assert!(!origin_allowed(&[], Some("https://a.com")));
        assert!(origin_allowed(&["*".to_owned()], Some("https://a.com")));
    }
}
