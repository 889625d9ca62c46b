//! The streaming HTTP adapters: HTTP-streaming and SSE, bidirectional (with
//! the emulation endpoint for the client's further commands) and
//! unidirectional. Each is one long response whose body is the session's
//! output; nothing of the protocol is here, only how its messages are cut
//! into the stream:
//!
//! | transport | first message | on the stream |
//! |---|---|---|
//! | `http_stream` | the connect command, request body | replies and pushes: JSON lines, or protobuf length-prefixed |
//! | `sse` | the connect command, `cf_connect` query or body | one SSE event (`data:` lines) per reply or push |
//! | `uni_http_stream` | a `ConnectRequest`, request body | bare pushes, JSON lines |
//! | `uni_sse` | a `ConnectRequest`, `cf_connect` query or body | one SSE event per push |
//!
//! One task per stream runs the [`Session`] as `server::ws` does for a
//! WebSocket: its one timer, the node's actions, the emulation inbox, the
//! shutdown. Output goes to the response body through a small channel;
//! what the body has not handed to hyper yet is reported as in flight, so
//! `client.queue_max_size` and the slow-consumer disconnect hold as on
//! WebSocket, and a body that takes nothing for `websocket.write_timeout`
//! ends the session (3006 write error). A client that goes away drops the
//! body, which ends the session at once.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use wshub_hub::emulation::Inbox;
use wshub_hub::limits::IpPermit;
use wshub_hub::session::{Session, TransportInfo};
use wshub_protocol::unidirectional::{self, UniMessage};
use wshub_protocol::{ConnectRequest, Disconnect, DisconnectCode, Encoding};

use crate::http::Body;
use crate::Shared;

const FAR: Duration = Duration::from_secs(86400 * 365);

/// Chunks the body may hold before the task waits (each chunk is all the
/// output of one wakeup; the bytes are bounded by `client.queue_max_size`).
const BODY_CHUNKS: usize = 8;

/// Which streaming transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    HttpStream,
    Sse,
    UniHttpStream,
    UniSse,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::HttpStream => "http_stream",
            Kind::Sse => "sse",
            Kind::UniHttpStream => "uni_http_stream",
            Kind::UniSse => "uni_sse",
        }
    }

    fn unidirectional(self) -> bool {
        matches!(self, Kind::UniHttpStream | Kind::UniSse)
    }

    fn sse(self) -> bool {
        matches!(self, Kind::Sse | Kind::UniSse)
    }

    fn content_type(self, encoding: Encoding) -> &'static str {
        match (self.sse(), encoding) {
            (true, _) => "text/event-stream; charset=utf-8",
            (false, Encoding::Json) => "application/json",
            (false, Encoding::Protobuf) => "application/octet-stream",
        }
    }
}

/// What the client opens the stream with.
pub(crate) enum First {
    /// A connect command (bidirectional transports), as the client encoded it.
    Command(Bytes),
    /// A connect request (unidirectional transports).
    Connect(ConnectRequest),
}

/// The response body: the chunks the task sends, as hyper asks for them.
struct StreamBody {
    rx: mpsc::Receiver<Bytes>,
    in_flight: Arc<AtomicUsize>,
}

impl hyper::body::Body for StreamBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|c| {
            c.map(|b| {
                self.in_flight.fetch_sub(b.len(), Ordering::Relaxed);
                Ok(Frame::data(b))
            })
        })
    }
}

/// The task's end of the body.
struct Writer {
    tx: mpsc::Sender<Bytes>,
    in_flight: Arc<AtomicUsize>,
    kind: Kind,
    encoding: Encoding,
    buf: Vec<u8>,
}

impl Writer {
    /// Adds one protocol message (an encoded reply, as the session hands it
    /// out) to the next chunk. `Err`: the session must end with it (a
    /// unidirectional connect that failed).
    fn add(&mut self, message: &Bytes) -> Result<(), Disconnect> {
        if self.kind.unidirectional() {
            match unidirectional::to_push(self.encoding, message) {
                Ok(UniMessage::Push(p)) => self.put(&p),
                Ok(UniMessage::Error(e)) => return Err(uni_connect_error(e.code, &e.message)),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot re-encode a message as a push"),
            }
        } else {
            self.put(message);
        }
        Ok(())
    }

    fn put(&mut self, message: &[u8]) {
        if self.kind.sse() {
            // One event; a line break inside the message (raw JSON data may
            // hold one) starts another `data:` line, which the client joins
            // back with `\n`.
            for line in message.split(|b| *b == b'\n' || *b == b'\r') {
                self.buf.extend_from_slice(b"data: ");
                self.buf.extend_from_slice(line);
                self.buf.push(b'\n');
            }
            self.buf.push(b'\n');
        } else {
            self.buf.extend_from_slice(message);
            if self.encoding == Encoding::Json {
                self.buf.push(b'\n');
            }
        }
    }

    /// The last message of a stream: the disconnect as a push (a stream has
    /// no close frame to carry it).
    fn add_disconnect(&mut self, d: &Disconnect) {
        let push = wshub_protocol::Push {
            disconnect: Some(d.clone()),
            ..Default::default()
        };
        let encoded = if self.kind.unidirectional() {
            unidirectional::encode_push(self.encoding, &push)
        } else {
            wshub_protocol::encode_push_reply(self.encoding, &push)
        };
        if let Ok(b) = encoded {
            self.put(&b);
        }
    }

    /// Bytes the body holds that hyper has not taken.
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Hands the chunk built so far to the body, waiting while the body is
    /// full. `Err(())`: the client went away.
    async fn flush(&mut self) -> Result<(), ()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.in_flight.fetch_add(chunk.len(), Ordering::Relaxed);
        let len = chunk.len();
        if self.tx.send(chunk).await.is_err() {
            self.in_flight.fetch_sub(len, Ordering::Relaxed);
            return Err(());
        }
        Ok(())
    }
}

/// A unidirectional client learns that its connect failed from a
/// disconnect, mapped as Centrifugo maps it: an expired token 3005 (get a
/// new one and reconnect), too many requests 3013, permission denied 3507,
/// any other error 3004 (reconnect).
fn uni_connect_error(code: u32, message: &str) -> Disconnect {
    use wshub_protocol::ErrorCode;
    let code = match wshub_protocol::ErrorCode(code) {
        ErrorCode::TOKEN_EXPIRED | ErrorCode::EXPIRED => DisconnectCode::EXPIRED,
        ErrorCode::TOO_MANY_REQUESTS => DisconnectCode::TOO_MANY_REQUESTS,
        ErrorCode::PERMISSION_DENIED => DisconnectCode::PERMISSION_DENIED,
        _ => DisconnectCode::SERVER_ERROR,
    };
    let mut d = code.to_disconnect();
    if d.reason.is_empty() {
        d.reason = message.to_owned();
    }
    d
}

/// Starts a stream: the response to return now, and the task that feeds
/// it until the session ends.
pub(crate) fn start(
    shared: Arc<Shared>,
    kind: Kind,
    encoding: Encoding,
    first: First,
    permit: IpPermit,
    cors: Option<HeaderValue>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel(BODY_CHUNKS);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let body = StreamBody {
        rx,
        in_flight: in_flight.clone(),
    };
    let writer = Writer {
        tx,
        in_flight,
        kind,
        encoding,
        buf: Vec::new(),
    };
    let inbox = (!kind.unidirectional()).then(|| shared.node.emulation().open());
    tokio::spawn(Box::pin(run(shared, writer, first, inbox, permit)));
    let mut r = Response::new(body.boxed());
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kind.content_type(encoding)),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::EXPIRES, HeaderValue::from_static("0"));
    // nginx: pass the stream on as it comes.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(origin) = cors {
        crate::http::cors_headers(h, origin);
    }
    r
}

async fn run(
    shared: Arc<Shared>,
    mut w: Writer,
    first: First,
    mut inbox: Option<Inbox>,
    permit: IpPermit,
) {
    let _permit = permit;
    shared.open_streams.fetch_add(1, Ordering::Relaxed);
    let node = shared.node.clone();
    let kind = w.kind;
    let info = if kind.unidirectional() {
        TransportInfo::unidirectional(kind.name(), w.encoding)
    } else {
        TransportInfo::bidirectional(kind.name(), w.encoding)
    };
    let write_timeout = match node.config().websocket.write_timeout.as_std() {
        d if d.is_zero() => FAR,
        d => d.max(Duration::from_millis(100)),
    };
    let mut session = Session::new(node.clone(), info, std::time::Instant::now());
    if let Some(i) = &inbox {
        session.set_emulation_session(i.id());
    }
    let handle = session.handle().clone();
    let mut shutdown = shared.shutdown.clone();
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        session.begin_shutdown(std::time::Instant::now(), Duration::ZERO);
    }
    let opened = match first {
        First::Command(data) => Box::pin(session.handle_data(&data)).await,
        First::Connect(req) => Box::pin(session.connect_unidirectional(req)).await,
    };

    let disconnect: Option<Disconnect> = 'outer: loop {
        if let Err(d) = &opened {
            break Some(d.clone());
        }
        // Everything the session has for the client goes out in one chunk;
        // actions from the node may add more.
        loop {
            let out = session.take_output();
            for m in &out.messages {
                if let Err(d) = w.add(m) {
                    break 'outer Some(d);
                }
            }
            if let Some(d) = out.disconnect {
                break 'outer Some(d);
            }
            if !out.actions {
                break;
            }
            if let Err(d) = Box::pin(session.apply_actions()).await {
                for m in session.take_output().messages {
                    let _ = w.add(&m);
                }
                break 'outer Some(d);
            }
        }
        tokio::select! {
            r = w.flush() => {
                if r.is_err() {
                    break None;
                }
                handle.set_in_flight(w.in_flight());
            }
            _ = handle.closing() => break handle.pending_disconnect(),
            _ = tokio::time::sleep(write_timeout) => {
                tracing::debug!(client = %session.client_id(), transport = kind.name(), "write timeout");
                break Some(DisconnectCode::WRITE_ERROR.to_disconnect());
            }
        }
        let wake = session
            .poll_timeout()
            .map_or_else(|| Instant::now() + FAR, Instant::from_std);
        tokio::select! {
            _ = sleep_until(wake) => {
                let now = std::time::Instant::now();
                if let Err(d) = Box::pin(session.handle_timeout(now)).await {
                    break Some(d);
                }
            }
            data = async {
                match inbox.as_mut() {
                    Some(i) => i.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let Some(batch) = data else { break None };
                let r = Box::pin(session.handle_data(&batch.data)).await;
                batch.done();
                if let Err(d) = r {
                    break Some(d);
                }
            }
            _ = handle.notified() => {}
            () = w.tx.closed() => {
                // The client went away (the body was dropped).
                break None;
            }
            r = async { shutdown.wait_for(|s| *s).await.map(|_| ()) }, if !shutting_down => {
                shutting_down = true;
                if r.is_err() {
                    break Some(DisconnectCode::SHUTDOWN.to_disconnect());
                }
                session.begin_shutdown(std::time::Instant::now(), shared.drain);
            }
        }
        // The in-flight count may have dropped while the task slept.
        handle.set_in_flight(w.in_flight());
    };

    // Commands sent for this session from now on are refused.
    drop(inbox);
    Box::pin(session.close(disconnect.as_ref())).await;
    if let Some(d) = disconnect {
        // What was queued before a requested disconnect still goes out
        // (not for a slow consumer: its queue was dropped), then the
        // disconnect itself, then the stream ends.
        for m in handle.drain().frames {
            let _ = w.add(&m);
        }
        w.add_disconnect(&d);
        let _ = tokio::time::timeout(Duration::from_secs(5), w.flush()).await;
    }
    shared.open_streams.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(kind: Kind, encoding: Encoding) -> Writer {
        let (tx, _rx) = mpsc::channel(1);
        Writer {
            tx,
            in_flight: Arc::default(),
            kind,
            encoding,
            buf: Vec::new(),
        }
    }

    #[test]
    fn each_transport_cuts_messages_its_own_way() {
        let push = wshub_protocol::encode_push_reply(
            Encoding::Json,
            &wshub_protocol::Push::publication(
                "c",
                wshub_protocol::Publication {
                    data: Bytes::from_static(b"{\"a\":1}"),
                    ..Default::default()
                },
            ),
        )
        .unwrap();
        let ping = Bytes::from_static(b"{}");

        let mut w = writer(Kind::HttpStream, Encoding::Json);
        w.add(&ping).unwrap();
        w.add(&push).unwrap();
        assert_eq!(
            String::from_utf8(w.buf).unwrap(),
            "{}\n{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":{\"a\":1}}}}\n"
        );

        // The encoder never writes a line break (it drops those of raw JSON
        // data), but a message that held one would still be one event.
        let mut w = writer(Kind::Sse, Encoding::Json);
        w.add(&Bytes::from_static(b"{\"a\":\r\n1}")).unwrap();
        assert_eq!(
            String::from_utf8(w.buf).unwrap(),
            "data: {\"a\":\ndata: \ndata: 1}\n\n"
        );

        let mut w = writer(Kind::UniSse, Encoding::Json);
        w.add(&ping).unwrap();
        w.add(&push).unwrap();
        assert_eq!(
            String::from_utf8(w.buf).unwrap(),
            "data: {}\n\ndata: {\"channel\":\"c\",\"pub\":{\"data\":{\"a\":1}}}\n\n"
        );

        let mut w = writer(Kind::UniHttpStream, Encoding::Json);
        w.add_disconnect(&DisconnectCode::SHUTDOWN.to_disconnect());
        let line = String::from_utf8(w.buf).unwrap();
        assert!(line.starts_with("{\"disconnect\":{\"code\":3001"), "{line}");
        assert!(line.ends_with("}\n"));

        let proto = wshub_protocol::encode_push_reply(
            Encoding::Protobuf,
            &wshub_protocol::Push::publication("c", Default::default()),
        )
        .unwrap();
        let mut w = writer(Kind::HttpStream, Encoding::Protobuf);
        w.add(&proto).unwrap();
        assert_eq!(
            w.buf,
            proto.to_vec(),
            "protobuf goes length-prefixed, as is"
        );
    }

    #[test]
    fn a_failed_unidirectional_connect_is_a_disconnect() {
        let mut w = writer(Kind::UniSse, Encoding::Json);
        let err = wshub_protocol::encode_reply(
            Encoding::Json,
            &wshub_protocol::Reply::error(1, wshub_protocol::ErrorCode::TOKEN_EXPIRED),
        )
        .unwrap();
        assert_eq!(w.add(&err).unwrap_err().code, 3005);
    }
}
