//! The Pusher front's HTTP side: the WebSocket endpoint `/app/{key}`
//! (a transport adapter that drives a [`PusherSession`], as `server::ws`
//! drives the Centrifugo session) and the HTTP API under `/apps/`.
//!
//! Refusals follow Pusher: an unknown key, a missing or unsupported
//! `protocol` are answered on the WebSocket with `pusher:error` and a close
//! with the code pusher-js reads (4001, 4008, 4007), not with an HTTP
//! status it cannot see.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, Instant};
use wshub_hub::metrics::ClientLimit;
use wshub_protocol::Disconnect;
use wshub_pusher::app::App;
use wshub_pusher::session::{close, disconnect, PusherSession};
use wshub_pusher::wire;
use wshub_ws::{CloseCode, Message, Utf8Bytes, WsReader, WsWriter};

use crate::http::Body;
use crate::Shared;

/// The protocol version served.
const PROTOCOL: u32 = 7;

/// What the URL asked for, checked after the upgrade (see the module doc).
fn check_url(shared: &Shared, path: &str, query: Option<&str>) -> Result<Arc<App>, Disconnect> {
    let key = path.strip_prefix("/app/").unwrap_or("");
    let app = shared.pusher.by_key(key).cloned().ok_or_else(|| {
        disconnect(
            close::APP_DOES_NOT_EXIST,
            &format!("App key {key} does not exist"),
        )
    })?;
    let protocol = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "protocol")
            .map(|(_, v)| v.into_owned())
    });
    match protocol.as_deref().map(str::parse::<u32>) {
        None => Err(disconnect(
            close::NO_PROTOCOL,
            "No protocol version supplied",
        )),
        Some(Err(_)) => Err(disconnect(
            close::INVALID_VERSION,
            "Invalid version string format",
        )),
        Some(Ok(PROTOCOL)) => Ok(app),
        Some(Ok(v)) => Err(disconnect(
            close::UNSUPPORTED_PROTOCOL,
            &format!("Unsupported protocol version {v} (this server speaks {PROTOCOL})"),
        )),
    }
}

/// `GET /app/{key}`: the WebSocket upgrade.
pub(crate) fn websocket(
    shared: Arc<Shared>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    use http_body_util::BodyExt;
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let permit = match crate::http::admit_client(&shared, peer, origin, "pusher") {
        Ok(p) => p,
        Err(refused) => return refused.response(),
    };
    let opened = check_url(&shared, req.uri().path(), req.uri().query());
    let version = if req.version() >= http::Version::HTTP_2 {
        crate::admission::HttpVersion::Http2
    } else {
        crate::admission::HttpVersion::Http1
    };
    let activity = req.extensions().get::<crate::conn::Activity>().cloned();
    let opts = crate::http::ws_server_options(shared.node.config(), false);
    match wshub_ws::upgrade(&mut req, &opts) {
        Ok((resp, fut)) => {
            shared.admission.count_websocket(version);
            let fut = Box::pin(fut);
            let active = activity.map(|a| a.hold());
            tokio::spawn(async move {
                let _permit = permit;
                let _active = active;
                let halves = match fut.await {
                    Ok(ws) => ws.split(),
                    Err(e) => {
                        tracing::debug!(error = %e, "upgrade failed");
                        return;
                    }
                };
                serve(shared, halves, opened).await;
            });
            resp.map(|b| b.map_err(|never| match never {}).boxed())
        }
        Err(resp) => resp.map(|b| b.map_err(|never| match never {}).boxed()),
    }
}

/// The fan-out's way onto this connection's socket, as for the Centrifugo
/// WebSocket (`server::ws`): wire messages only; presence records go to
/// the session, which turns them into member events.
struct Direct<S> {
    sender: wshub_ws::WsSender<S>,
    node: Arc<wshub_hub::node::Node>,
}

impl<S> wshub_hub::outbound::DirectWrite for Direct<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn try_write(&self, payload: bytes::Bytes) -> Result<usize, ()> {
        let len = payload.len() as u64;
        let Ok(text) = Utf8Bytes::try_from_bytes(payload) else {
            return Ok(0);
        };
        let left = self.sender.try_send(Message::Text(text)).map_err(|_| ())?;
        self.node
            .metrics()
            .count_sent(wshub_protocol::Encoding::Json, 1, len);
        Ok(left)
    }

    fn accepts(&self, message: &[u8]) -> bool {
        !wshub_pusher::front::is_record(message)
    }
}

fn feed<S>(ws: &mut WsWriter<S>, frames: Vec<bytes::Bytes>) -> Result<(), ()> {
    for f in frames {
        match Utf8Bytes::try_from_bytes(f) {
            Ok(t) => ws.feed(Message::Text(t)).map_err(|_| ())?,
            Err(_) => tracing::warn!("dropping a Pusher message that is not UTF-8"),
        }
    }
    Ok(())
}

async fn close_with<S>(ws: &mut WsWriter<S>, d: &Disconnect)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (code, reason) = d.close_frame();
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(CloseCode(code), reason)).await;
}

/// Serves one Pusher connection until it ends.
async fn serve<S>(
    shared: Arc<Shared>,
    (mut reader, mut ws): (WsReader<S>, WsWriter<S>),
    opened: Result<Arc<App>, Disconnect>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let node = shared.node.clone();
    let now = std::time::Instant::now();
    let session = opened.and_then(|app| PusherSession::open(node.clone(), app, now));
    let mut session = match session {
        Ok(s) => s,
        Err(d) => {
            let code = u16::try_from(d.code).ok();
            let _ = feed(&mut ws, vec![wire::error(code, &d.reason)]);
            close_with(&mut ws, &d).await;
            return;
        }
    };
    shared.open_ws.fetch_add(1, Ordering::Relaxed);
    session.handle().set_direct(Some(Arc::new(Direct {
        sender: ws.sender(),
        node: node.clone(),
    })));
    let write_timeout = match node.config().websocket.write_timeout.as_std() {
        d if d.is_zero() => Duration::from_secs(86400),
        d => d.max(Duration::from_millis(100)),
    };
    let handle = session.handle().clone();
    let mut shutdown = shared.shutdown.clone();
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        session.begin_shutdown(std::time::Instant::now(), Duration::ZERO);
    }
    let end: Option<Disconnect> = 'outer: loop {
        let wake = session.poll_timeout().map_or_else(
            || Instant::now() + Duration::from_secs(86400),
            Instant::from_std,
        );
        tokio::select! {
            _ = sleep_until(wake) => {
                if let Err(d) = Box::pin(session.handle_timeout(std::time::Instant::now())).await {
                    break Some(d);
                }
            }
            m = reader.recv() => {
                let msg = match m {
                    None => break None,
                    Some(Err(e)) => {
                        if e.is_message_too_big() {
                            node.metrics().limit_exceeded(ClientLimit::MessageSize);
                        }
                        tracing::debug!(socket_id = %session.socket_id(), error = %e, "read failed");
                        break None;
                    }
                    Some(Ok(msg)) => msg,
                };
                if let Err(d) = Box::pin(session.handle_data(msg.as_bytes())).await {
                    break Some(d);
                }
            }
            _ = handle.notified() => {}
            r = async { shutdown.wait_for(|s| *s).await.map(|_| ()) }, if !shutting_down => {
                shutting_down = true;
                if r.is_err() {
                    break Some(disconnect(close::RECONNECT, "server shutting down"));
                }
                session.begin_shutdown(std::time::Instant::now(), shared.drain);
            }
        }
        let out = session.take_output();
        if feed(&mut ws, out.messages).is_err() {
            break None;
        }
        handle.set_in_flight(ws.buffered_out());
        if let Some(d) = out.disconnect {
            break Some(d);
        }
        tokio::select! {
            r = ws.flush() => {
                if r.is_err() {
                    break 'outer None;
                }
                handle.set_in_flight(ws.buffered_out());
            }
            _ = handle.closing() => {
                break session.take_output().disconnect;
            }
            _ = tokio::time::sleep(write_timeout) => {
                break Some(disconnect(close::OVER_CAPACITY, "write timeout"));
            }
        }
    };
    // The fan-out must not write (or keep the socket) any more.
    handle.set_direct(None);
    Box::pin(session.close()).await;
    if let Some(d) = end {
        let _ = feed(&mut ws, session.take_output().messages);
        close_with(&mut ws, &d).await;
    }
    shared.open_ws.fetch_sub(1, Ordering::Relaxed);
}

/// `/apps/...`: the HTTP API. The signature is checked before the body is
/// read (it covers `body_md5`); the body is then read like the server
/// API's: bounded in size, time and the node's in-flight budget.
pub(crate) async fn api(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let authorized =
        match wshub_pusher::api::authorize(&shared.node, &shared.pusher, &method, &path, &query) {
            Ok(a) => a,
            Err(r) => return response(r),
        };
    let (body, _permit) = match crate::http::read_api_body(&shared, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    response(wshub_pusher::api::answer(&shared.node, authorized, &method, &path, &body).await)
}

fn response(r: wshub_pusher::api::Response) -> Response<Body> {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    crate::http::full_response(status, r.content_type, r.body)
}
