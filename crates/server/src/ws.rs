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
use wshub_protocol::{Disconnect, DisconnectCode, Encoding};
use wshub_ws::{CloseCode, Message, Utf8Bytes, WsError, WsReader, WsSender, WsWriter};

#[cfg(doc)]
use wshub_ws::WebSocket;

use crate::Shared;

const FAR: Duration = Duration::from_secs(86400 * 365);

/// What this transport is, for the session.
fn transport(encoding: Encoding) -> TransportInfo {
    TransportInfo::bidirectional("websocket", encoding)
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

/// The fan-out's way onto this connection's socket (see the module doc).
struct Direct<S> {
    sender: WsSender<S>,
    encoding: Encoding,
    node: Arc<Node>,
}

impl<S> DirectWrite for Direct<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn try_write(&self, payload: Bytes) -> Result<usize, ()> {
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
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    shared.open_ws.fetch_add(1, Ordering::Relaxed);
    let node = shared.node.clone();
    let write_timeout = match node.config().websocket.write_timeout.as_std() {
        d if d.is_zero() => FAR,
        d => d.max(Duration::from_millis(100)),
    };
    let mut session = Session::new(node.clone(), transport(encoding), std::time::Instant::now());
    let handle = session.handle().clone();
    handle.set_direct(Some(Arc::new(Direct {
        sender: ws.sender(),
        encoding,
        node: node.clone(),
    })));
    let mut shutdown = shared.shutdown.clone();
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        session.begin_shutdown(std::time::Instant::now(), Duration::ZERO);
    }

    let disconnect: Option<Disconnect> = 'outer: loop {
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
                if let Err(d) = Box::pin(session.handle_data(msg.as_bytes())).await {
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
            for m in out.messages {
                if feed(&mut ws, encoding, m).is_err() {
                    break 'outer None;
                }
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
                for m in session.take_output().messages {
                    let _ = feed(&mut ws, encoding, m);
                }
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
        for m in handle.drain().frames {
            let _ = feed(&mut ws, encoding, m);
        }
        let (code, reason) = d.close_frame();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), ws.close(CloseCode(code), reason)).await;
    }
    shared.open_ws.fetch_sub(1, Ordering::Relaxed);
}
