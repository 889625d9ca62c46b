//! The WebSocket adapter: the only code of the gateway that knows WebSocket
//! framing. One task per connection moves bytes between the engine
//! ([`WebSocket`]) and the transport-agnostic [`Session`]: each message's
//! payload goes to [`Session::handle_data`]; after every wakeup everything
//! the session has for the client ([`Session::take_output`]) is framed as
//! text (JSON) or binary (protobuf) messages and written in one flush; the
//! session's single deadline ([`Session::poll_timeout`]) is the task's one
//! timer. What is WebSocket's own stays here: the message-size close
//! (1009), the close handshake, and the write timeout of a socket that does
//! not drain.
//!
//! The same task serves `uni_websocket`, Centrifugo's unidirectional
//! WebSocket ([`Uni`]): the client's one `ConnectRequest` (its first
//! message, or the `cf_connect` query parameter), then only bare pushes as
//! text frames; anything else the client sends is read and dropped. Dead
//! peers are found by WebSocket pings (the engine's keepalive), since a
//! unidirectional client answers no protocol ping.
//!
//! The connection is split: the task owns the reader and the writer, and a
//! [`WsSender`] is registered on the session's queue as its
//! [`DirectWrite`], so the fan-out can write a publication to an idle
//! socket at once, without waiting for this task to be scheduled.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, Instant};
use wshub_hub::metrics::ClientLimit;
use wshub_hub::node::Node;
use wshub_hub::outbound::DirectWrite;
use wshub_hub::session::{Session, TransportInfo};
use wshub_protocol::unidirectional::{self, UniMessage};
use wshub_protocol::{ConnectRequest, Disconnect, DisconnectCode, Encoding};
use wshub_ws::{CloseCode, Message, Utf8Bytes, WsError, WsReader, WsSender, WsWriter};

#[cfg(doc)]
use wshub_ws::WebSocket;

use crate::Shared;

const FAR: Duration = Duration::from_secs(86400 * 365);

/// How a `uni_websocket` client is served (boxed in the task: WebSocket
/// connections, the many, carry only a pointer's room for it).
#[derive(Debug, Default)]
pub(crate) struct Uni {
    /// The connect request from the `cf_connect` query parameter, if given.
    pub connect: Option<ConnectRequest>,
    /// `uni_websocket.join_push_messages`.
    pub join: bool,
    /// Not `uni_websocket.disable_disconnect_push`.
    pub disconnect_push: bool,
    /// Not `uni_websocket.disable_closing_handshake`.
    pub closing_handshake: bool,
}

/// What this transport is, for the session.
fn transport(encoding: Encoding, uni: bool) -> TransportInfo {
    if uni {
        TransportInfo::unidirectional("uni_websocket", Encoding::Json)
    } else {
        TransportInfo::bidirectional("websocket", encoding)
    }
}

/// One protocol message as a WebSocket message: text for JSON (the
/// session's encoder writes UTF-8 only; anything else is dropped, not
/// sent), binary for protobuf.
fn message(encoding: Encoding, payload: Bytes) -> Option<Message> {
    if encoding.is_binary() {
        return Some(Message::Binary(payload));
    }
    match Utf8Bytes::try_from_bytes(payload) {
        Ok(t) => Some(Message::Text(t)),
        Err(_) => {
            tracing::warn!("dropping a JSON message that is not UTF-8");
            None
        }
    }
}

fn feed<S>(ws: &mut WsWriter<S>, encoding: Encoding, payload: Bytes) -> Result<(), WsError> {
    match message(encoding, payload) {
        Some(m) => ws.feed(m),
        None => Ok(()),
    }
}

/// Why a batch of messages could not be written.
enum WriteError {
    /// The connection is gone.
    Closed,
    /// End the session with this (a unidirectional connect that failed).
    Disconnect(Disconnect),
}

/// Frames the messages of one `take_output`: as they are, or for a
/// unidirectional client as bare pushes (one frame each, or all in one
/// frame, `\n`-separated, with `join`).
fn write_all<S>(
    ws: &mut WsWriter<S>,
    encoding: Encoding,
    uni: Option<&Uni>,
    messages: Vec<Bytes>,
) -> Result<(), WriteError> {
    let Some(u) = uni else {
        for m in messages {
            feed(ws, encoding, m).map_err(|_| WriteError::Closed)?;
        }
        return Ok(());
    };
    let mut joined: Vec<u8> = Vec::new();
    for m in &messages {
        let push = match unidirectional::to_push(Encoding::Json, m) {
            Ok(UniMessage::Push(p)) => p,
            Ok(UniMessage::Error(e)) => {
                return Err(WriteError::Disconnect(
                    unidirectional::connect_error_disconnect(&e),
                ))
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-encode a message as a push");
                continue;
            }
        };
        if u.join && messages.len() > 1 {
            if !joined.is_empty() {
                joined.push(b'\n');
            }
            joined.extend_from_slice(&push);
        } else {
            feed(ws, Encoding::Json, push).map_err(|_| WriteError::Closed)?;
        }
    }
    if !joined.is_empty() {
        feed(ws, Encoding::Json, Bytes::from(joined)).map_err(|_| WriteError::Closed)?;
    }
    Ok(())
}

/// The fan-out's way onto this connection's socket (see the module doc).
struct Direct<S> {
    sender: WsSender<S>,
    encoding: Encoding,
    node: Arc<Node>,
    /// A unidirectional client: send the bare push.
    uni: bool,
}

impl<S> DirectWrite for Direct<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn try_write(&self, payload: Bytes) -> Result<usize, ()> {
        let payload = if self.uni {
            // A publication's shared frame: sliced, not decoded.
            match unidirectional::to_push(Encoding::Json, &payload) {
                Ok(UniMessage::Push(p)) => p,
                _ => return Ok(0),
            }
        } else {
            payload
        };
        let len = payload.len() as u64;
        let Some(msg) = message(self.encoding, payload) else {
            return Ok(0);
        };
        match self.sender.try_send(msg) {
            Ok(left) => {
                self.node.metrics().count_sent(self.encoding, 1, len);
                Ok(left)
            }
            Err(_) => Err(()),
        }
    }
}

/// Serves one upgraded connection until it ends.
///
/// Takes the connection split (see [`WebSocket::split`]): a `WebSocket`
/// moved in by value would keep its room in the task next to the halves.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    (mut reader, mut ws): (WsReader<S>, WsWriter<S>),
    encoding: Encoding,
    mut uni: Option<Box<Uni>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    shared.open_ws.fetch_add(1, Ordering::Relaxed);
    let node = shared.node.clone();
    let write_timeout = match uni {
        Some(_) => node.config().uni_websocket.write_timeout.as_std(),
        None => node.config().websocket.write_timeout.as_std(),
    };
    let write_timeout = match write_timeout {
        d if d.is_zero() => FAR,
        d => d.max(Duration::from_millis(100)),
    };
    let mut session = Session::new(
        node.clone(),
        transport(encoding, uni.is_some()),
        std::time::Instant::now(),
    );
    let handle = session.handle().clone();
    handle.set_direct(Some(Arc::new(Direct {
        sender: ws.sender(),
        encoding,
        node: node.clone(),
        uni: uni.is_some(),
    })));
    // A unidirectional client's connect request, from the URL.
    let mut opened: Result<(), Disconnect> = Ok(());
    if let Some(req) = uni.as_mut().and_then(|u| u.connect.take()) {
        opened = Box::pin(session.connect_unidirectional(req)).await;
    }
    let mut shutdown = shared.shutdown.clone();
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        session.begin_shutdown(std::time::Instant::now(), Duration::ZERO);
    }

    let disconnect: Option<Disconnect> = 'outer: loop {
        if let Err(d) = std::mem::replace(&mut opened, Ok(())) {
            break Some(d);
        }
        let wake = session
            .poll_timeout()
            .map_or_else(|| Instant::now() + FAR, Instant::from_std);
        tokio::select! {
            _ = sleep_until(wake) => {
                // Boxed, here and below: the session's futures (token
                // checks, broker calls) are large, and inline they would
                // make every idle connection's task as large as the
                // largest of them.
                let now = std::time::Instant::now();
                if let Err(d) = Box::pin(session.handle_timeout(now)).await {
                    break Some(d);
                }
            }
            m = reader.recv() => {
                let msg: Message = match m {
                    None => break None,
                    Some(Err(e)) => {
                        if e.is_message_too_big() {
                            // The engine closed with 1009.
                            tracing::debug!(client = %session.client_id(), error = %e, "message size limit");
                            node.metrics().limit_exceeded(ClientLimit::MessageSize);
                        } else {
                            tracing::debug!(client = %session.client_id(), error = %e, "read failed");
                        }
                        break None;
                    }
                    Some(Ok(msg)) => msg,
                };
                if uni.is_some() {
                    // One connect request; whatever comes after it is
                    // dropped, as Centrifugo does.
                    if session.is_connected() {
                        continue;
                    }
                    let req = match serde_json::from_slice::<Option<ConnectRequest>>(msg.as_bytes()) {
                        Ok(r) => r.unwrap_or_default(),
                        Err(_) => break Some(DisconnectCode::BAD_REQUEST.to_disconnect()),
                    };
                    if let Err(d) = Box::pin(session.connect_unidirectional(req)).await {
                        break Some(d);
                    }
                } else if let Err(d) = Box::pin(session.handle_data(msg.as_bytes())).await {
                    break Some(d);
                }
            }
            _ = handle.notified() => {}
            r = async { shutdown.wait_for(|s| *s).await.map(|_| ()) }, if !shutting_down => {
                shutting_down = true;
                if r.is_err() {
                    // The server is gone.
                    break Some(DisconnectCode::SHUTDOWN.to_disconnect());
                }
                session.begin_shutdown(std::time::Instant::now(), shared.drain);
            }
        }
        // Write everything the session has for the client in one flush;
        // actions from the node may add more.
        loop {
            let out = session.take_output();
            match write_all(&mut ws, encoding, uni.as_deref(), out.messages) {
                Ok(()) => {}
                Err(WriteError::Closed) => break 'outer None,
                Err(WriteError::Disconnect(d)) => break 'outer Some(d),
            }
            // What the engine holds unwritten stays counted against
            // `client.queue_max_size` until the socket takes it.
            handle.set_in_flight(ws.buffered_out());
            if let Some(d) = out.disconnect {
                break 'outer Some(d);
            }
            if !out.actions {
                break;
            }
            if let Err(d) = Box::pin(session.apply_actions()).await {
                // What the actions queued before still goes out.
                let _ = write_all(
                    &mut ws,
                    encoding,
                    uni.as_deref(),
                    session.take_output().messages,
                );
                break 'outer Some(d);
            }
        }
        // A peer that does not read must not hold the task forever: give
        // up when the queue overflows (3008) or a write stalls too long.
        tokio::select! {
            r = ws.flush() => {
                if r.is_err() {
                    break None;
                }
                handle.set_in_flight(ws.buffered_out());
            }
            _ = handle.closing() => {
                break handle.pending_disconnect();
            }
            _ = tokio::time::sleep(write_timeout) => {
                tracing::debug!(client = %session.client_id(), "write timeout");
                break Some(DisconnectCode::WRITE_ERROR.to_disconnect());
            }
        }
    };

    if let Some(d) = &disconnect {
        if d.code == DisconnectCode::SLOW.0 {
            tracing::info!(client = %session.client_id(), "slow consumer disconnected");
        }
    }
    // The fan-out must not write (or keep the socket) any more.
    handle.set_direct(None);
    Box::pin(session.close(disconnect.as_ref())).await;
    if let Some(d) = disconnect {
        // Messages queued before a requested disconnect still go out,
        // except for a slow consumer (its queue was dropped).
        let _ = write_all(&mut ws, encoding, uni.as_deref(), handle.drain().frames);
        let mut wait = Duration::from_secs(5);
        if let Some(u) = uni.as_deref() {
            // A unidirectional client reads the code from a push first.
            if u.disconnect_push {
                if let Ok(p) = unidirectional::encode_disconnect_push(Encoding::Json, &d) {
                    let _ = feed(&mut ws, Encoding::Json, p);
                }
            }
            if !u.closing_handshake {
                wait = Duration::from_millis(100);
            }
        }
        let (code, reason) = d.close_frame();
        let _ = tokio::time::timeout(wait, ws.close(CloseCode(code), reason)).await;
    }
    shared.open_ws.fetch_sub(1, Ordering::Relaxed);
}
