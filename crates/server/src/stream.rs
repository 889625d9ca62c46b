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
//! | `long_poll` | the connect command, request body | no stream: each poll's answer is a JSON object of the messages after the client's acknowledged sequence number |
//!
//! One task per stream runs the [`Session`] as `server::ws` does for a
//! WebSocket: its one timer, the node's actions, the emulation inbox, the
//! shutdown. Output goes to the response body through a small channel;
//! what the body has not handed to hyper yet is reported as in flight, so
//! `client.queue_max_size` and the slow-consumer disconnect hold as on
//! WebSocket, and a body that takes nothing for `websocket.write_timeout`
//! ends the session (3009 write error). A client that goes away drops the
//! body, which ends the session at once.
//!
//! Long-poll keeps the messages instead, numbered, until a poll
//! acknowledges them: a poll's answer that is lost on the way is sent again
//! on the next poll with the same `ack`, so the client gets each message
//! once and in order. The unacknowledged bytes are what is "in flight"; a
//! session with no poll held for `long_poll.session_timeout` is closed.

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
use wshub_hub::emulation::{Answer, Batch, Inbox, Request};
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
    LongPoll,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::HttpStream => "http_stream",
            Kind::Sse => "sse",
            Kind::UniHttpStream => "uni_http_stream",
            Kind::UniSse => "uni_sse",
            Kind::LongPoll => "long_poll",
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

/// Where the output goes.
enum Sink {
    /// A streamed response body: the chunk being built, and the bytes the
    /// body holds that hyper has not taken.
    Body {
        tx: mpsc::Sender<Bytes>,
        in_flight: Arc<AtomicUsize>,
        buf: Vec<u8>,
    },
    /// Long-poll.
    Poll(Polls),
}

/// Largest poll answer (at least one message goes, whatever its size).
const POLL_ANSWER_BYTES: usize = 256 << 10;

/// A long-poll session's messages and its poll.
struct Polls {
    /// Messages not acknowledged yet, numbered from 1.
    unacked: std::collections::VecDeque<(u64, Bytes)>,
    bytes: usize,
    /// The number of the last message added.
    last: u64,
    /// The poll being held, with its `ack`, until `held_until`.
    held: Option<(u64, Batch)>,
    held_until: Instant,
    /// When the last poll was answered (no poll held since).
    idle_since: Instant,
    poll_timeout: Duration,
    session_timeout: Duration,
}

/// What a long-poll sink wants the task to do.
enum PollEvent {
    /// The held poll timed out or went; check again.
    Again,
    /// No poll for `session_timeout`: the client is gone.
    Gone,
}

impl Polls {
    fn new(poll_timeout: Duration, session_timeout: Duration) -> Polls {
        let now = Instant::now();
        Polls {
            unacked: Default::default(),
            bytes: 0,
            last: 0,
            held: None,
            held_until: now,
            idle_since: now,
            poll_timeout,
            session_timeout,
        }
    }

    fn add(&mut self, message: Bytes) {
        self.last += 1;
        self.bytes += message.len();
        self.unacked.push_back((self.last, message));
    }

    /// `{"seq":M,"messages":[...]}` of the messages after `ack`.
    fn answer_body(&self, ack: u64) -> Bytes {
        let mut out = Vec::with_capacity(64);
        let mut seq = ack;
        out.extend_from_slice(b"{\"seq\":");
        let at = out.len();
        out.extend_from_slice(b",\"messages\":[");
        let mut size = 0;
        for (n, m) in self.unacked.iter().filter(|(n, _)| *n > ack) {
            if seq > ack && size + m.len() > POLL_ANSWER_BYTES {
                break;
            }
            if seq > ack {
                out.push(b',');
            }
            out.extend_from_slice(m);
            size += m.len();
            seq = *n;
        }
        out.extend_from_slice(b"]}");
        let n = seq.to_string();
        out.splice(at..at, n.bytes());
        Bytes::from(out)
    }

    /// Answers the held poll if there is something for it (or `always`).
    fn answer_held(&mut self, always: bool) {
        let ready = self
            .held
            .as_ref()
            .is_some_and(|(ack, _)| always || self.last > *ack);
        if !ready {
            return;
        }
        if let Some((ack, batch)) = self.held.take() {
            batch.answer(Answer::Poll(self.answer_body(ack)));
            self.idle_since = Instant::now();
        }
    }

    /// A poll after `ack`: forget what it acknowledges, answer the poll
    /// held before it (empty), then answer this one now or hold it.
    fn poll(&mut self, ack: u64, batch: Batch) {
        if ack > self.last {
            batch.answer(Answer::Refused);
            return;
        }
        while self.unacked.front().is_some_and(|(n, _)| *n <= ack) {
            if let Some((_, m)) = self.unacked.pop_front() {
                self.bytes -= m.len();
            }
        }
        self.answer_held(true);
        self.held = Some((ack, batch));
        self.held_until = Instant::now() + self.poll_timeout;
        self.answer_held(false);
    }

    /// Waits for the held poll's timeout or its client going away, or, with
    /// none held, for the session timeout.
    async fn event(&mut self) -> PollEvent {
        match &mut self.held {
            Some((_, batch)) => {
                tokio::select! {
                    () = sleep_until(self.held_until) => self.answer_held(true),
                    () = batch.abandoned() => {
                        self.held = None;
                        self.idle_since = Instant::now();
                    }
                }
                PollEvent::Again
            }
            None => {
                sleep_until(self.idle_since + self.session_timeout).await;
                PollEvent::Gone
            }
        }
    }
}

/// The task's end of the output.
struct Writer {
    sink: Sink,
    kind: Kind,
    encoding: Encoding,
}

impl Writer {
    /// Adds one protocol message (an encoded reply, as the session hands it
    /// out) to the next chunk. `Err`: the session must end with it (a
    /// unidirectional connect that failed).
    fn add(&mut self, message: &Bytes) -> Result<(), Disconnect> {
        if self.kind.unidirectional() {
            match unidirectional::to_push(self.encoding, message) {
                Ok(UniMessage::Push(p)) => self.put(p),
                Ok(UniMessage::Error(e)) => {
                    return Err(unidirectional::connect_error_disconnect(&e))
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot re-encode a message as a push"),
            }
        } else {
            self.put(message.clone());
        }
        Ok(())
    }

    fn put(&mut self, message: Bytes) {
        let sse = self.kind.sse();
        let json = self.encoding == Encoding::Json;
        match &mut self.sink {
            Sink::Poll(p) => p.add(message),
            Sink::Body { buf, .. } if sse => {
                // One event; a line break inside the message (raw JSON data
                // may hold one) starts another `data:` line, which the
                // client joins back with `\n`.
                for line in message.split(|b| *b == b'\n' || *b == b'\r') {
                    buf.extend_from_slice(b"data: ");
                    buf.extend_from_slice(line);
                    buf.push(b'\n');
                }
                buf.push(b'\n');
            }
            Sink::Body { buf, .. } => {
                buf.extend_from_slice(&message);
                if json {
                    buf.push(b'\n');
                }
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
            self.put(b);
        }
    }

    /// Bytes taken from the session that the client has not: in the body
    /// and not taken by hyper yet, or not acknowledged by a poll.
    fn in_flight(&self) -> usize {
        match &self.sink {
            Sink::Body { in_flight, .. } => in_flight.load(Ordering::Relaxed),
            Sink::Poll(p) => p.bytes,
        }
    }

    /// Hands what was added to the client: the chunk to the body (waiting
    /// while the body is full), or to the held poll. `Err(())`: the client
    /// went away.
    async fn flush(&mut self) -> Result<(), ()> {
        match &mut self.sink {
            Sink::Poll(p) => {
                p.answer_held(false);
                Ok(())
            }
            Sink::Body { tx, in_flight, buf } => {
                if buf.is_empty() {
                    return Ok(());
                }
                let chunk = Bytes::from(std::mem::take(buf));
                let len = chunk.len();
                in_flight.fetch_add(len, Ordering::Relaxed);
                if tx.send(chunk).await.is_err() {
                    in_flight.fetch_sub(len, Ordering::Relaxed);
                    return Err(());
                }
                Ok(())
            }
        }
    }

    /// Resolves when the client is gone: the body was dropped, or no poll
    /// came for the session timeout.
    async fn gone(&mut self) {
        match &mut self.sink {
            Sink::Body { tx, .. } => tx.closed().await,
            Sink::Poll(p) => loop {
                if let PollEvent::Gone = p.event().await {
                    return;
                }
            },
        }
    }

    /// A request from the emulation endpoint that is not commands.
    fn request(&mut self, batch: Batch) {
        match (&mut self.sink, &batch.request) {
            (Sink::Poll(p), Request::Poll { ack }) => {
                let ack = *ack;
                p.poll(ack, batch);
            }
            _ => batch.answer(Answer::Refused),
        }
    }
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
        sink: Sink::Body {
            tx,
            in_flight,
            buf: Vec::new(),
        },
        kind,
        encoding,
    };
    let inbox = (!kind.unidirectional()).then(|| shared.node.emulation().open());
    tokio::spawn(Box::pin(run(shared, writer, first, inbox, permit)));
    let mut r = Response::new(body.boxed());
    no_cache(r.headers_mut(), kind.content_type(encoding));
    if let Some(origin) = cors {
        crate::http::cors_headers(r.headers_mut(), origin);
    }
    r
}

/// Opens a long-poll session: the answer to the opening request is the
/// first poll's (the connect reply), as soon as it is there.
pub(crate) async fn start_long_poll(
    shared: Arc<Shared>,
    connect: Bytes,
    permit: IpPermit,
    cors: Option<HeaderValue>,
) -> Response<Body> {
    let cfg = &shared.node.config().long_poll;
    let mut polls = Polls::new(cfg.poll_timeout.as_std(), cfg.session_timeout.as_std());
    let (first, answer) = Batch::new(Request::Poll { ack: 0 });
    polls.poll(0, first);
    let writer = Writer {
        sink: Sink::Poll(polls),
        kind: Kind::LongPoll,
        encoding: Encoding::Json,
    };
    let inbox = shared.node.emulation().open();
    tokio::spawn(Box::pin(run(
        shared,
        writer,
        First::Command(connect),
        Some(inbox),
        permit,
    )));
    let mut r = match tokio::time::timeout(Duration::from_secs(30), answer).await {
        Ok(Ok(Answer::Poll(body))) => {
            crate::http::full_response(StatusCode::OK, "application/json", body)
        }
        _ => crate::http::text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the session did not answer",
        ),
    };
    no_cache(r.headers_mut(), "application/json");
    if let Some(origin) = cors {
        crate::http::cors_headers(r.headers_mut(), origin);
    }
    r
}

/// The headers of an answer that no cache or proxy may keep or hold back.
pub(crate) fn no_cache(h: &mut http::HeaderMap, content_type: &'static str) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::EXPIRES, HeaderValue::from_static("0"));
    // nginx: pass the stream on as it comes.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
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
            batch = async {
                match inbox.as_mut() {
                    Some(i) => i.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let Some(batch) = batch else { break None };
                let Request::Commands(data) = &batch.request else {
                    w.request(batch);
                    continue;
                };
                let r = Box::pin(session.handle_data(data)).await;
                batch.done();
                if let Err(d) = r {
                    break Some(d);
                }
            }
            _ = handle.notified() => {}
            () = w.gone() => {
                // The client went away (the body was dropped, or no poll).
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
        // A long-poll client gets the disconnect with its next poll, if
        // that comes soon; commands are refused meanwhile.
        if let (Sink::Poll(_), Some(inbox)) = (&w.sink, inbox.as_mut()) {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while w.in_flight() > 0 {
                    match inbox.recv().await {
                        Some(b) if matches!(b.request, Request::Poll { .. }) => w.request(b),
                        Some(b) => b.answer(Answer::Refused),
                        None => break,
                    }
                }
            })
            .await;
            if let Sink::Poll(p) = &mut w.sink {
                p.answer_held(true);
            }
        }
    }
    // Requests for this session from now on find no session.
    drop(inbox);
    shared.open_streams.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(kind: Kind, encoding: Encoding) -> Writer {
        let (tx, _rx) = mpsc::channel(1);
        Writer {
            sink: Sink::Body {
                tx,
                in_flight: Arc::default(),
                buf: Vec::new(),
            },
            kind,
            encoding,
        }
    }

    fn buf(w: Writer) -> String {
        match w.sink {
            Sink::Body { buf, .. } => String::from_utf8(buf).unwrap(),
            Sink::Poll(_) => unreachable!(),
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
            buf(w),
            "{}\n{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":{\"a\":1}}}}\n"
        );

        // The encoder never writes a line break (it drops those of raw JSON
        // data), but a message that held one would still be one event.
        let mut w = writer(Kind::Sse, Encoding::Json);
        w.add(&Bytes::from_static(b"{\"a\":\r\n1}")).unwrap();
        assert_eq!(buf(w), "data: {\"a\":\ndata: \ndata: 1}\n\n");

        let mut w = writer(Kind::UniSse, Encoding::Json);
        w.add(&ping).unwrap();
        w.add(&push).unwrap();
        assert_eq!(
            buf(w),
            "data: {}\n\ndata: {\"channel\":\"c\",\"pub\":{\"data\":{\"a\":1}}}\n\n"
        );

        let mut w = writer(Kind::UniHttpStream, Encoding::Json);
        w.add_disconnect(&DisconnectCode::SHUTDOWN.to_disconnect());
        let line = buf(w);
        assert!(line.starts_with("{\"disconnect\":{\"code\":3001"), "{line}");
        assert!(line.ends_with("}\n"));

        let proto = wshub_protocol::encode_push_reply(
            Encoding::Protobuf,
            &wshub_protocol::Push::publication("c", Default::default()),
        )
        .unwrap();
        let mut w = writer(Kind::HttpStream, Encoding::Protobuf);
        w.add(&proto).unwrap();
        let Sink::Body { buf, .. } = w.sink else {
            unreachable!()
        };
        assert_eq!(buf, proto.to_vec(), "protobuf goes length-prefixed, as is");
    }

    #[tokio::test]
    async fn a_long_poll_hands_out_what_it_was_not_acknowledged_once() {
        let mut p = Polls::new(Duration::from_secs(60), Duration::from_secs(60));
        p.add(Bytes::from_static(b"{\"a\":1}"));
        p.add(Bytes::from_static(b"{}"));
        let (b, mut first) = Batch::new(Request::Poll { ack: 0 });
        p.poll(0, b);
        let Ok(Answer::Poll(body)) = first.try_recv() else {
            panic!("answered at once")
        };
        assert_eq!(&body[..], br#"{"seq":2,"messages":[{"a":1},{}]}"#);
        // The same ack again (that answer was lost): the same messages.
        let (b, mut again) = Batch::new(Request::Poll { ack: 0 });
        p.poll(0, b);
        assert!(matches!(again.try_recv(), Ok(Answer::Poll(b)) if b == body));
        // Acknowledged: forgotten; nothing new, so the poll is held.
        let (b, mut held) = Batch::new(Request::Poll { ack: 2 });
        p.poll(2, b);
        assert_eq!(p.bytes, 0);
        assert!(held.try_recv().is_err());
        p.add(Bytes::from_static(b"{\"b\":2}"));
        p.answer_held(false);
        assert!(
            matches!(held.try_recv(), Ok(Answer::Poll(b)) if &b[..] == br#"{"seq":3,"messages":[{"b":2}]}"#)
        );
        // A second poll answers the one held before it, empty.
        let (b, mut one) = Batch::new(Request::Poll { ack: 3 });
        p.poll(3, b);
        let (b, _two) = Batch::new(Request::Poll { ack: 3 });
        p.poll(3, b);
        assert!(
            matches!(one.try_recv(), Ok(Answer::Poll(b)) if &b[..] == br#"{"seq":3,"messages":[]}"#)
        );
        // Ahead of what was sent: refused.
        let (b, mut ahead) = Batch::new(Request::Poll { ack: 9 });
        p.poll(9, b);
        assert_eq!(ahead.try_recv().ok(), Some(Answer::Refused));
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
