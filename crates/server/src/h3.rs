//! The HTTP/3 front: a QUIC endpoint (quinn) on the HTTP port number (UDP)
//! when `http_server.http3.enabled` (TLS required: QUIC is TLS 1.3 only,
//! ALPN `h3`). Each QUIC connection holds a socket permit under
//! `http_server.max_connections` like a TCP one, completes its handshake
//! within `http_server.tls_handshake_timeout` (else it is dropped and
//! counted in [`QUIC_HANDSHAKE_FAILURES`](crate::QUIC_HANDSHAKE_FAILURES)),
//! and is served by h3:
//!
//! - extended CONNECT with `:protocol = websocket` (RFC 9220, the engine's
//!   [`Http3Connection`] glue) at `/connection/websocket` and
//!   `/connection/uni_websocket`: the origin and per-IP checks, then the
//!   WebSocket adapter (`server::ws`) exactly as over HTTP/1.1 and HTTP/2;
//! - `CONNECT` with `:protocol = webtransport` at `webtransport.handler_prefix`
//!   (with `webtransport.enabled`): the same checks, then a WebTransport
//!   session (`server::webtransport`). The session takes the connection (one
//!   session per connection, as browsers open them; WebSockets already open
//!   on it end);
//! - anything else is answered `404` with a short text.
//!
//! QUIC itself bounds what a peer can make the node do before it proves
//! its address: at most three times the bytes received (RFC 9000 §8.1,
//! quinn's default), and streams and bytes per connection by the transport
//! parameters of [`Http3Options`]; each request stream must send its
//! headers within `http_server.read_header_timeout`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use wshub_protocol::Encoding;
use wshub_ws::{Http3Connection, Http3Options, Http3Request, Http3WebSocketRequest};

use crate::admission::{HttpVersion, Phase, SocketPermit};
use crate::{ServerError, Shared};

/// The QUIC endpoint's settings from `http_server`.
pub(crate) fn options(cfg: &wshub_config::Config, handshake: Duration) -> Http3Options {
    let hs = &cfg.http_server;
    let header = match hs.read_header_timeout.as_std() {
        d if d.is_zero() => Duration::from_secs(86400),
        d => d,
    };
    Http3Options::default()
        .max_concurrent_streams(hs.http3.max_concurrent_streams.max(1))
        .handshake_timeout(handshake)
        .request_header_timeout(header)
        .webtransport(cfg.webtransport.enabled)
}

/// Binds the QUIC endpoint at `addr` (UDP) with the PEM chain and key.
pub(crate) fn bind(
    addr: SocketAddr,
    cert_pem: &[u8],
    key_pem: &[u8],
    opts: &Http3Options,
) -> Result<quinn::Endpoint, ServerError> {
    let tls = wshub_ws::http3_tls_config_from_pem(cert_pem, key_pem)
        .map_err(|e| ServerError::Tls(format!("HTTP/3: {e}")))?;
    wshub_ws::bind_http3(addr, tls, opts).map_err(|source| ServerError::Bind {
        addr: format!("udp/{addr}"),
        source,
    })
}

/// Accepts QUIC connections until the shutdown, each in its own task.
pub(crate) async fn run(shared: Arc<Shared>, endpoint: quinn::Endpoint, opts: Http3Options) {
    let mut shutdown = shared.shutdown.clone();
    let opts = Arc::new(opts);
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => break,
        };
        let Some(permit) = shared.admission.try_admit() else {
            // Over the cap: refused before any state is kept for it.
            incoming.refuse();
            shared
                .admission
                .count_refused(crate::admission::Refusal::MaxConnections);
            continue;
        };
        let shared = shared.clone();
        let opts = opts.clone();
        shared.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            connection(&shared, incoming, &opts, permit).await;
            shared.connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
    // New connections are refused from now on; open ones end with their
    // sessions (the drain tells each client 3001).
    endpoint.set_server_config(None);
}

async fn connection(
    shared: &Arc<Shared>,
    incoming: quinn::Incoming,
    opts: &Http3Options,
    _permit: SocketPermit,
) {
    let peer = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "QUIC: refused");
            shared.admission.count_quic_handshake_failure();
            return;
        }
    };
    let quic = match tokio::time::timeout(opts.handshake_timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "QUIC handshake failed");
            shared.admission.count_quic_handshake_failure();
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "QUIC handshake timed out");
            shared.admission.count_quic_handshake_failure();
            shared.admission.count_timeout(Phase::Tls);
            return;
        }
    };
    shared.admission.count_connection(HttpVersion::Http3);
    let mut conn = match Http3Connection::new(quic.clone(), opts).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "HTTP/3 set-up failed");
            return;
        }
    };
    let cfg = shared.node.config().clone();
    let wt_enabled = cfg.webtransport.enabled;
    let wt_path = cfg
        .webtransport
        .handler_prefix
        .trim_end_matches('/')
        .to_owned();
    let mut shutdown = shared.shutdown.clone();
    loop {
        let next = tokio::select! {
            r = conn.next() => r,
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => {
                // WebSockets on the connection drain on their own (3001);
                // no new request is taken.
                let _ = conn.shutdown(0).await;
                wait_closed(shared, &quic).await;
                return;
            }
        };
        let (req, mut stream) = match next {
            Ok(Some(Http3Request::WebSocket(r))) => {
                websocket(shared, peer, r);
                continue;
            }
            Ok(Some(Http3Request::Request(req, stream))) => (req, stream),
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "HTTP/3 connection ended");
                return;
            }
        };
        if wt_enabled && is_webtransport(&req) && req.uri().path().trim_end_matches('/') == wt_path
        {
            let origin = req
                .headers()
                .get(http::header::ORIGIN)
                .and_then(|v| v.to_str().ok());
            let permit = match crate::http::admit_client(shared, peer, origin, "webtransport") {
                Ok(p) => p,
                Err(refused) => {
                    let status = refused.status();
                    tokio::spawn(async move { respond(&mut stream, status, "refused").await });
                    continue;
                }
            };
            let encoding = match query(&req, "cf_protocol") {
                Some(v) if Encoding::from_query_value(&v) == Encoding::Protobuf => {
                    Encoding::Protobuf
                }
                _ => Encoding::Json,
            };
            let wt = match crate::webtransport::WtSession::accept(req, stream, conn.into_inner())
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "webtransport: session refused");
                    return;
                }
            };
            shared.admission.count_webtransport();
            crate::webtransport::serve(shared.clone(), wt, quic, encoding, permit).await;
            return;
        }
        let msg = if is_webtransport(&req) && !wt_enabled {
            "WebTransport is not enabled (webtransport.enabled)"
        } else {
            "not found: over HTTP/3 this node serves /connection/websocket and WebTransport"
        };
        // On its own task: a client slow to take the answer holds up only
        // this stream, not the connection's next requests.
        tokio::spawn(async move { respond(&mut stream, StatusCode::NOT_FOUND, msg).await });
    }
}

/// While the node drains, a connection stays up until the node's
/// WebSockets are gone (each told 3001), the client closes it, or
/// `shutdown.timeout`.
async fn wait_closed(shared: &Arc<Shared>, quic: &quinn::Connection) {
    let limit = shared.node.config().shutdown.timeout.as_std();
    let _ = tokio::time::timeout(limit, async {
        while quic.close_reason().is_none() && shared.open_ws.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// A WebSocket by extended CONNECT (RFC 9220): the same endpoint, checks
/// and adapter as over HTTP/1.1 and HTTP/2.
fn websocket(shared: &Arc<Shared>, peer: SocketAddr, r: Http3WebSocketRequest) {
    let cfg = shared.node.config();
    let path = r.request().uri().path().trim_end_matches('/');
    let ws_path = cfg.websocket.handler_prefix.trim_end_matches('/');
    let uni_path = cfg.uni_websocket.handler_prefix.trim_end_matches('/');
    let uni = if path == ws_path {
        false
    } else if cfg.uni_websocket.enabled && path == uni_path {
        true
    } else {
        tokio::spawn(async move { r.reject(&wshub_ws::reject(404, "not found")).await });
        return;
    };
    let origin = r
        .request()
        .headers()
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let permit = match crate::http::admit_client(shared, peer, origin, "websocket") {
        Ok(p) => p,
        Err(refused) => {
            let status = refused.status().as_u16();
            tokio::spawn(async move { r.reject(&wshub_ws::reject(status, "refused")).await });
            return;
        }
    };
    let plan = match crate::http::WsPlan::new(cfg, r.request().uri(), uni) {
        Ok(p) => p,
        Err(msg) => {
            tokio::spawn(async move { r.reject(&wshub_ws::reject(400, msg)).await });
            return;
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let ws = match Box::pin(r.accept(&plan.opts)).await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "HTTP/3 WebSocket refused");
                return;
            }
        };
        shared.admission.count_websocket(HttpVersion::Http3);
        let encoding = plan.encoding(ws.protocol());
        crate::ws::serve(shared, ws.split(), encoding, plan.uni_mode).await;
    });
}

fn is_webtransport(req: &Request<()>) -> bool {
    req.method() == Method::CONNECT
        && req.extensions().get::<h3::ext::Protocol>() == Some(&h3::ext::Protocol::WEB_TRANSPORT)
}

fn query(req: &Request<()>, name: &str) -> Option<String> {
    req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    })
}

/// A short plain-text answer, bounded in time.
async fn respond<S>(stream: &mut h3::server::RequestStream<S, Bytes>, status: StatusCode, msg: &str)
where
    S: h3::quic::BidiStream<Bytes>,
{
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let body = Bytes::from(format!("{msg}\n"));
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        stream.send_response(resp).await?;
        stream.send_data(body).await?;
        stream.finish().await
    })
    .await;
}
