//! The HTTP side of the fallback transports: the requests that open a
//! stream (`http_stream`, `sse`, `uni_http_stream`, `uni_sse`), the
//! emulation endpoint that carries an HTTP-streaming or SSE client's
//! further commands, and CORS for browser pages on other origins. The
//! stream itself is [`crate::stream`].
//!
//! Every request passes the origin check of `client.allowed_origins` (a
//! request without `Origin` is not from a browser page and passes, as on
//! WebSocket); an allowed origin gets CORS headers naming it, with
//! credentials. A stream takes a per-IP connection permit, as a WebSocket
//! does. Bodies are bounded by the section's `max_request_body_size` (413
//! past it) and must arrive within `http_server.read_header_timeout` (408).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use wshub_hub::emulation::Outcome;
use wshub_protocol::{ConnectRequest, EmulationRequest, Encoding};

use crate::http::{cors_headers, full_response, origin_allowed, text_response, Body};
use crate::stream::{self, First, Kind};
use crate::Shared;

/// The origin check and what CORS needs: `Err` is the 403 to answer;
/// `Ok(Some(origin))` a browser origin that is allowed.
fn check_origin(shared: &Shared, req: &Request<Incoming>) -> Result<Option<HeaderValue>, ()> {
    let origin = req.headers().get(header::ORIGIN);
    let text = origin.and_then(|v| v.to_str().ok());
    if origin.is_some() && text.is_none() {
        return Err(());
    }
    if !origin_allowed(&shared.node.config().client.allowed_origins, text) {
        tracing::info!(origin = ?text, path = req.uri().path(), "refused: origin not allowed");
        return Err(());
    }
    Ok(origin.cloned())
}

fn forbidden() -> Response<Body> {
    text_response(StatusCode::FORBIDDEN, "origin not allowed")
}

fn with_cors(mut r: Response<Body>, origin: Option<HeaderValue>) -> Response<Body> {
    if let Some(o) = origin {
        cors_headers(r.headers_mut(), o);
    }
    r
}

/// The answer to a CORS preflight from an allowed origin.
fn preflight(
    req: &Request<Incoming>,
    origin: Option<HeaderValue>,
    methods: &'static str,
) -> Response<Body> {
    let mut r = Response::new(http_body_util::Empty::new().boxed());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    // The headers the page asks for, when they are plain header names.
    let asked = req
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| {
            v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b" ,-_".contains(b))
        })
        .cloned()
        .unwrap_or(HeaderValue::from_static("content-type"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    with_cors(r, origin)
}

/// Reads a body of at most `max` bytes that must be complete by `timeout`.
async fn read_body(
    req: Request<Incoming>,
    max: u64,
    timeout: Duration,
) -> Result<Bytes, Response<Body>> {
    let too_large = || {
        full_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "text/plain; charset=utf-8",
            format!("request body larger than {max} bytes\n"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let mut body = req.into_body();
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now()
        + if timeout.is_zero() {
            Duration::from_secs(86400)
        } else {
            timeout
        };
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => f,
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(text_response(
                    StatusCode::BAD_REQUEST,
                    "bad request: cannot read the body",
                ))
            }
            Err(_) => {
                let mut r = text_response(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time",
                );
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Err(r);
            }
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// The value of query parameter `name`, percent-decoded.
fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn is_protobuf(req: &Request<Incoming>) -> bool {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ctype.starts_with("application/octet-stream")
        || query_param(req, "cf_protocol")
            .is_some_and(|v| Encoding::from_query_value(&v) == Encoding::Protobuf)
}

/// Opens a stream of `kind`.
pub(crate) async fn stream(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
    kind: Kind,
) -> Response<Body> {
    let Ok(origin) = check_origin(&shared, &req) else {
        return forbidden();
    };
    let cfg = shared.node.config().clone();
    let (methods, max_body) = match kind {
        Kind::HttpStream => ("POST, OPTIONS", cfg.http_stream.max_request_body_size),
        Kind::Sse => ("GET, POST, OPTIONS", cfg.sse.max_request_body_size),
        Kind::UniHttpStream => ("POST, OPTIONS", cfg.uni_http_stream.max_request_body_size),
        Kind::UniSse => ("GET, POST, OPTIONS", cfg.uni_sse.max_request_body_size),
        Kind::LongPoll => ("POST, OPTIONS", cfg.long_poll.max_request_body_size),
    };
    let get_allowed = matches!(kind, Kind::Sse | Kind::UniSse);
    let method = req.method().clone();
    if method == Method::OPTIONS {
        return preflight(&req, origin, methods);
    }
    if !(method == Method::POST || (get_allowed && method == Method::GET)) {
        let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        if let Ok(v) = HeaderValue::from_str(methods) {
            r.headers_mut().insert(header::ALLOW, v);
        }
        return with_cors(r, origin);
    }
    // Only HTTP-streaming carries protobuf; SSE events are text.
    let encoding = if kind == Kind::HttpStream && is_protobuf(&req) {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    let permit = match shared
        .ip_limits
        .acquire(peer.ip(), std::time::Instant::now())
    {
        Ok(p) => p,
        Err(refusal) => {
            tracing::debug!(peer = %peer.ip(), limit = refusal.limit().as_str(), transport = kind.name(), "stream refused: limit");
            shared.node.metrics().limit_exceeded(refusal.limit());
            let mut r = text_response(StatusCode::TOO_MANY_REQUESTS, "too many requests");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return with_cors(r, origin);
        }
    };
    let first = if method == Method::GET {
        match query_param(&req, "cf_connect") {
            // uni_sse: no parameter is an empty connect request.
            None if kind == Kind::UniSse => Bytes::from_static(b"{}"),
            Some(v) if (v.len() as u64) <= max_body => Bytes::from(v.into_bytes()),
            Some(_) => {
                return with_cors(
                    text_response(StatusCode::PAYLOAD_TOO_LARGE, "cf_connect too large"),
                    origin,
                )
            }
            None => {
                return with_cors(
                    text_response(
                        StatusCode::BAD_REQUEST,
                        "bad request: no cf_connect query parameter",
                    ),
                    origin,
                )
            }
        }
    } else {
        match read_body(req, max_body, cfg.http_server.read_header_timeout.as_std()).await {
            Ok(b) => b,
            Err(r) => return with_cors(r, origin),
        }
    };
    let first = match kind {
        Kind::LongPoll => return stream::start_long_poll(shared, first, permit, origin).await,
        Kind::HttpStream | Kind::Sse => First::Command(first),
        Kind::UniHttpStream | Kind::UniSse => {
            match serde_json::from_slice::<Option<ConnectRequest>>(&first) {
                // `null` is an empty request, as in Centrifugo.
                Ok(c) => First::Connect(c.unwrap_or_default()),
                Err(e) => {
                    tracing::debug!(error = %e, transport = kind.name(), "bad connect request");
                    return with_cors(
                        text_response(
                            StatusCode::BAD_REQUEST,
                            "bad request: the body is not a JSON connect request",
                        ),
                        origin,
                    );
                }
            }
        }
    };
    stream::start(shared, kind, encoding, first, permit, origin)
}

/// The origin check, the preflight and the method check of an endpoint
/// that takes only `POST`: `Ok` with the allowed browser origin (if any)
/// for a POST, else the answer to give.
fn post_only(
    shared: &Shared,
    req: &Request<Incoming>,
) -> Result<Option<HeaderValue>, Box<Response<Body>>> {
    let Ok(origin) = check_origin(shared, req) else {
        return Err(Box::new(forbidden()));
    };
    if req.method() == Method::OPTIONS {
        return Err(Box::new(preflight(req, origin, "POST, OPTIONS")));
    }
    if req.method() != Method::POST {
        let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return Err(Box::new(with_cors(r, origin)));
    }
    Ok(origin)
}

/// The commands of an HTTP-streaming or SSE session: `POST` of an
/// `EmulationRequest` (JSON, or protobuf with `Content-Type:
/// application/octet-stream`) naming the node and the session. Answers:
/// 204 once the session has run the commands (the replies go down its
/// stream); 400 a body that is not an emulation request; 404 no such node
/// or no such session on it (Centrifugo answers 204 to an unknown session;
/// a 404 makes the SDK reconnect, which is what a client whose session is
/// gone needs); 503 the session's queue stayed full; 504 the commands did
/// not run within [`wshub_hub::emulation::TIMEOUT`].
pub(crate) async fn emulation(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let origin = match post_only(&shared, &req) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let cfg = shared.node.config().clone();
    let protobuf = is_protobuf(&req);
    let body = match read_body(
        req,
        cfg.emulation.max_request_body_size,
        cfg.http_server.read_header_timeout.as_std(),
    )
    .await
    {
        Ok(b) => b,
        Err(r) => return with_cors(r, origin),
    };
    let Some(er) = decode_emulation(&body, protobuf) else {
        return with_cors(
            text_response(
                StatusCode::BAD_REQUEST,
                "bad request: not an emulation request (node, session and data)",
            ),
            origin,
        );
    };
    let outcome = shared.node.emulate(&er.node, &er.session, er.data).await;
    let r = match outcome {
        Outcome::Delivered => {
            let mut r = Response::new(http_body_util::Empty::new().boxed());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        o => outcome_response(o),
    };
    shared.node.metrics().emulation_request(outcome);
    with_cors(r, origin)
}

/// A long-poll: `POST {long_poll.handler_prefix}/poll` with
/// `{"session":S,"node":N,"ack":K}`; the answer is
/// `{"seq":M,"messages":[...]}`, the messages after K, as soon as there are
/// some or after `long_poll.poll_timeout` (none). 404 no such node or
/// session (reconnect), 400 malformed or `ack` ahead of what was sent.
pub(crate) async fn poll(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let origin = match post_only(&shared, &req) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let cfg = shared.node.config().clone();
    let body = match read_body(
        req,
        cfg.long_poll.max_request_body_size,
        cfg.http_server.read_header_timeout.as_std(),
    )
    .await
    {
        Ok(b) => b,
        Err(r) => return with_cors(r, origin),
    };
    let v: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let field = |k: &str| v.as_ref().and_then(|v| v.get(k));
    let parsed = (
        field("session").and_then(|s| s.as_str()),
        field("node").and_then(|s| s.as_str()),
        field("ack").and_then(|s| s.as_u64()),
    );
    let (Some(session), Some(node), Some(ack)) = parsed else {
        return with_cors(
            text_response(
                StatusCode::BAD_REQUEST,
                "bad request: not a poll (session, node and ack)",
            ),
            origin,
        );
    };
    let wait = cfg.long_poll.poll_timeout.as_std();
    let r = match shared.node.poll(node, session, ack, wait).await {
        Ok(body) => {
            let mut r = full_response(StatusCode::OK, "application/json", body);
            stream::no_cache(r.headers_mut(), "application/json");
            r
        }
        Err(o) => {
            shared.node.metrics().emulation_request(o);
            outcome_response(o)
        }
    };
    with_cors(r, origin)
}

/// The answer to an emulation or poll request that did not get through.
fn outcome_response(outcome: Outcome) -> Response<Body> {
    match outcome {
        Outcome::UnknownNode => text_response(StatusCode::NOT_FOUND, "node not found"),
        Outcome::UnknownSession => text_response(StatusCode::NOT_FOUND, "session not found"),
        Outcome::Refused => text_response(
            StatusCode::BAD_REQUEST,
            "bad request: the session does not take this request",
        ),
        Outcome::Busy => {
            let mut r = text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "session busy: too many requests waiting",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        _ => text_response(
            StatusCode::GATEWAY_TIMEOUT,
            "the node that holds the session did not answer",
        ),
    }
}

/// An emulation request's node, session and command bytes. In JSON the
/// SDKs send the commands as a string (their JSON text, one per line);
/// a JSON object is taken as one command.
fn decode_emulation(body: &[u8], protobuf: bool) -> Option<EmulationRequest> {
    let mut er = if protobuf {
        <EmulationRequest as prost::Message>::decode(body).ok()?
    } else {
        serde_json::from_slice::<EmulationRequest>(body).ok()?
    };
    if !protobuf && er.data.first() == Some(&b'"') {
        let text: String = serde_json::from_slice(&er.data).ok()?;
        er.data = Bytes::from(text.into_bytes());
    }
    (!er.node.is_empty() && !er.session.is_empty() && !er.data.is_empty()).then_some(er)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulation_requests_decode_as_the_sdks_send_them() {
        // centrifuge-js, JSON: the commands as a string.
        let er = decode_emulation(
            br#"{"session":"s","node":"n","data":"{\"id\":2,\"subscribe\":{\"channel\":\"c\"}}"}"#,
            false,
        )
        .unwrap();
        assert_eq!((er.node.as_str(), er.session.as_str()), ("n", "s"));
        assert_eq!(&er.data[..], br#"{"id":2,"subscribe":{"channel":"c"}}"#);
        // A command as an object.
        let er = decode_emulation(br#"{"session":"s","node":"n","data":{}}"#, false).unwrap();
        assert_eq!(&er.data[..], b"{}");
        // Protobuf.
        let pb = prost::Message::encode_to_vec(&EmulationRequest {
            node: "n".into(),
            session: "s".into(),
            data: Bytes::from_static(b"\x00"),
        });
        assert_eq!(&decode_emulation(&pb, true).unwrap().data[..], b"\x00");
        // Garbage, or a field missing.
        assert!(decode_emulation(b"\xff\x00garbage", false).is_none());
        assert!(decode_emulation(b"\xff\xff\xff", true).is_none());
        assert!(decode_emulation(br#"{"session":"s","data":"{}"}"#, false).is_none());
        assert!(decode_emulation(br#"{"session":"s","node":"n"}"#, false).is_none());
        assert!(decode_emulation(br#"{"session":"s","node":"n","data":"\u"}"#, false).is_none());
    }
}
