//! The SSE side of the load generators (`--transport sse`): a plain
//! HTTP/1.1 client over a tokio `TcpStream`, not built on the WebSocket
//! engine.
//!
//! A session is one `GET /connection/sse?cf_connect=<connect command>`
//! whose (chunked) body carries one SSE event, `data:` lines, per protocol
//! message: the connect reply first (it names the session and the node),
//! then replies and pushes. The client's further commands, `subscribe` and
//! the empty command `{}` that answers a server ping, are
//! `POST /emulation` requests (`{"session":S,"node":N,"data":"<commands>"}`,
//! 204 once the session ran them) sent through a small pool of keep-alive
//! connections that every session of the generator shares ([`Emulator`]).
//!
//! Every wait during setup and every emulation request has a timeout
//! ([`TIMEOUT`]); a session's stream is then read until it ends or the
//! generator stops.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use super::raw::{self, Scratch};

/// The longest wait for any one step: a TCP connect, a response head, a
/// reply on the stream, an emulation request's answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the emulation endpoint is (the server's default
/// `emulation.handler_prefix`), on the SSE endpoint's host and port.
const EMULATION_PATH: &str = "/emulation";

/// The largest response head read.
const MAX_HEAD: usize = 16 << 10;

/// Where an `http://` URL points.
pub struct HttpTarget {
    pub addr: SocketAddr,
    host_header: String,
    /// The path, without the query.
    path: String,
}

impl HttpTarget {
    pub fn parse(url: &str) -> Result<HttpTarget> {
        let u = url::Url::parse(url).with_context(|| format!("bad URL {url:?}"))?;
        if u.scheme() != "http" {
            bail!(
                "--transport sse takes a plain http:// URL of the SSE endpoint \
                 (e.g. http://127.0.0.1:8000/connection/sse), not {url:?}"
            );
        }
        let (addr, host_header) = raw::resolve(&u, url)?;
        Ok(HttpTarget {
            addr,
            host_header,
            path: u.path().to_owned(),
        })
    }

    /// The gateway's WebSocket endpoint on the same host and port (where
    /// `bench fanout --transport sse` publishes by default).
    pub fn websocket_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.host_header)
    }
}

/// A response head.
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) chunked: bool,
    pub(super) content_length: Option<usize>,
    /// The server will close the connection after this response.
    pub(super) close: bool,
}

/// Reads a response head into `buf` (which may already hold some of it);
/// returns it and leaves `buf` holding what followed it.
pub(super) async fn read_head<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Head> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_head(&buf[..end])?;
            buf.drain(..end + 4);
            return Ok(head);
        }
        if buf.len() > MAX_HEAD {
            bail!("response head larger than {MAX_HEAD} bytes");
        }
        if stream.read_buf(buf).await? == 0 {
            bail!("connection closed before a response head");
        }
    }
}

fn parse_head(head: &[u8]) -> Result<Head> {
    let text = std::str::from_utf8(head).context("response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let mut h = Head {
        status,
        chunked: false,
        content_length: None,
        close: status_line.starts_with("HTTP/1.0"),
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => h.chunked = value.ends_with("chunked"),
            "content-length" => h.content_length = value.parse().ok(),
            "connection" => h.close = value.contains("close"),
            _ => {}
        }
    }
    Ok(h)
}

/// Decodes a streamed response body: HTTP/1.1 chunked framing (or none,
/// for a body that runs until the connection closes), then SSE events.
/// Only `data` fields matter; comments and other fields are skipped.
#[derive(Default)]
pub struct Decoder {
    chunked: bool,
    chunk: Chunk,
    /// A chunk-size (or trailer) line not complete yet.
    size_line: Vec<u8>,
    /// An SSE line not complete yet.
    line: Vec<u8>,
    /// The data of the event being read (its `data:` lines joined by `\n`).
    data: Vec<u8>,
    has_data: bool,
}

/// Where the chunked framing is.
#[derive(Default)]
enum Chunk {
    /// In a chunk-size line.
    #[default]
    Size,
    /// In a chunk's data: bytes left.
    Data(usize),
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
    /// The body ended.
    End,
}

impl Decoder {
    fn new(chunked: bool) -> Decoder {
        Decoder {
            chunked,
            ..Default::default()
        }
    }

    /// The body has ended (its last chunk arrived).
    pub fn ended(&self) -> bool {
        matches!(self.chunk, Chunk::End)
    }

    /// Feeds bytes that followed the response head; calls `on_event` with
    /// the data of every event that completed in them.
    pub fn feed(&mut self, mut input: &[u8], on_event: &mut impl FnMut(&[u8])) -> Result<()> {
        if !self.chunked {
            self.sse(input, on_event);
            return Ok(());
        }
        while !input.is_empty() {
            match self.chunk {
                Chunk::Size | Chunk::Trailer => {
                    let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                        self.size_line.extend_from_slice(input);
                        if self.size_line.len() > 1024 {
                            bail!("chunk-size line too long");
                        }
                        return Ok(());
                    };
                    self.size_line.extend_from_slice(&input[..nl]);
                    input = &input[nl + 1..];
                    let line = std::mem::take(&mut self.size_line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    if let Chunk::Trailer = self.chunk {
                        if line.is_empty() {
                            self.chunk = Chunk::End;
                        }
                        continue;
                    }
                    let hex = line.split(|&b| b == b';').next().unwrap_or(b"");
                    let hex = std::str::from_utf8(hex).unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| anyhow!("bad chunk size {hex:?}"))?;
                    self.chunk = if size == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    let n = left.min(input.len());
                    self.sse(&input[..n], on_event);
                    input = &input[n..];
                    self.chunk = if n == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n)
                    };
                }
                Chunk::DataEnd => {
                    match input[0] {
                        b'\r' => {}
                        b'\n' => self.chunk = Chunk::Size,
                        b => bail!("chunk data not followed by CRLF (byte {b:#04x})"),
                    }
                    input = &input[1..];
                }
                Chunk::End => return Ok(()),
            }
        }
        Ok(())
    }

    /// SSE lines out of body bytes.
    fn sse(&mut self, mut input: &[u8], on_event: &mut impl FnMut(&[u8])) {
        while let Some(nl) = input.iter().position(|&b| b == b'\n') {
            if self.line.is_empty() {
                self.sse_line(&input[..nl], on_event);
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&input[..nl]);
                self.sse_line(&line, on_event);
                line.clear();
                self.line = line;
            }
            input = &input[nl + 1..];
        }
        self.line.extend_from_slice(input);
    }

    fn sse_line(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8])) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                on_event(&self.data);
            }
            self.data.clear();
            self.has_data = false;
            return;
        }
        let Some(value) = line.strip_prefix(b"data") else {
            return; // a comment (`:...`) or another field
        };
        let value = match value.split_first() {
            None => value,
            Some((b':', v)) => v.strip_prefix(b" ").unwrap_or(v),
            Some(_) => return, // a field whose name starts with "data"
        };
        if self.has_data {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
        self.has_data = true;
    }
}

/// Counts of the emulation requests, over every session of the generator.
#[derive(Default)]
pub struct EmulationStats {
    /// Requests answered 204.
    pub ok: Cell<u64>,
    pub failed: Cell<u64>,
    pub first_error: RefCell<Option<String>>,
}

struct Job {
    body: Bytes,
    done: Option<oneshot::Sender<Result<()>>>,
}

/// The emulation requests of every session, through `connections`
/// keep-alive connections (one request at a time on each).
#[derive(Clone)]
pub struct Emulator {
    tx: mpsc::UnboundedSender<Job>,
    pub stats: Rc<EmulationStats>,
}

impl Emulator {
    /// Starts the pool's tasks (on the current `LocalSet`); they end when
    /// the last `Emulator` clone is dropped.
    pub fn start(target: &HttpTarget, connections: usize) -> Emulator {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let rx = Rc::new(tokio::sync::Mutex::new(rx));
        let stats = Rc::new(EmulationStats::default());
        let request_head = Rc::new(format!(
            "POST {EMULATION_PATH} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n",
            target.host_header
        ));
        for _ in 0..connections.max(1) {
            let (rx, stats, head) = (rx.clone(), stats.clone(), request_head.clone());
            let addr = target.addr;
            tokio::task::spawn_local(async move {
                let mut conn = None;
                loop {
                    let job = rx.lock().await.recv().await;
                    let Some(job) = job else { return };
                    let r = post(addr, &head, &mut conn, &job.body).await;
                    match &r {
                        Ok(()) => stats.ok.set(stats.ok.get() + 1),
                        Err(e) => {
                            stats.failed.set(stats.failed.get() + 1);
                            stats
                                .first_error
                                .borrow_mut()
                                .get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                    if let Some(done) = job.done {
                        let _ = done.send(r);
                    }
                }
            });
        }
        Emulator { tx, stats }
    }

    /// Sends an emulation request and waits for its 204.
    pub async fn send(&self, body: Bytes) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Job {
                body,
                done: Some(done),
            })
            .map_err(|_| anyhow!("the emulation pool has stopped"))?;
        // Queueing behind other sessions' requests counts too: at most two
        // request timeouts (a retry on a fresh connection) plus a margin.
        match timeout(3 * TIMEOUT, answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => bail!("the emulation pool dropped the request"),
            Err(_) => bail!("emulation request not answered within {:?}", 3 * TIMEOUT),
        }
    }

    /// Queues an emulation request without waiting (a ping's answer);
    /// failures are counted in [`Emulator::stats`].
    pub fn send_nowait(&self, body: Bytes) {
        let _ = self.tx.send(Job { body, done: None });
    }
}

/// One emulation request on the worker's keep-alive connection (opened, or
/// opened again, as needed). A request on a reused connection that fails
/// before any answer is retried once on a fresh one (the server may have
/// closed the idle connection meanwhile).
async fn post(
    addr: SocketAddr,
    head: &str,
    conn: &mut Option<(TcpStream, Vec<u8>)>,
    body: &[u8],
) -> Result<()> {
    let mut request = Vec::with_capacity(head.len() + body.len() + 32);
    request.extend_from_slice(head.as_bytes());
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    for attempt in 0..2 {
        let reused = conn.is_some();
        let (stream, buf) = match conn {
            Some(c) => c,
            None => {
                let s = timeout(TIMEOUT, raw::connect_from(addr, None))
                    .await
                    .map_err(|_| anyhow!("emulation: connect timed out"))??;
                conn.insert((s, Vec::with_capacity(512)))
            }
        };
        let exchanged = timeout(TIMEOUT, exchange(stream, buf, &request)).await;
        match exchanged {
            Ok(Ok((status, keep, text))) => {
                if !keep {
                    *conn = None;
                }
                if status == 204 {
                    return Ok(());
                }
                bail!("emulation: HTTP {status}: {}", text.trim());
            }
            Ok(Err(_)) if reused && attempt == 0 => *conn = None,
            Ok(Err(e)) => {
                *conn = None;
                return Err(e.context("emulation"));
            }
            Err(_) => {
                *conn = None;
                bail!("emulation: no answer within {TIMEOUT:?}");
            }
        }
    }
    bail!("emulation: the connection failed twice")
}

/// Writes `request` and reads the answer: status, whether the connection
/// stays usable, the body (as text, for error messages).
async fn exchange(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: &[u8],
) -> Result<(u16, bool, String)> {
    stream.write_all(request).await?;
    buf.clear();
    let head = read_head(stream, buf).await?;
    let mut keep = !head.close;
    let body = match head.content_length {
        Some(n) => {
            while buf.len() < n {
                if stream.read_buf(buf).await? == 0 {
                    bail!("connection closed in a response body");
                }
            }
            let body = String::from_utf8_lossy(&buf[..n]).into_owned();
            buf.drain(..n);
            body
        }
        None if head.status == 204 && !head.chunked => String::new(),
        // A body of unknown length: not read; the connection is not reused.
        None => {
            keep = false;
            String::new()
        }
    };
    Ok((head.status, keep, body))
}

/// What opens SSE sessions: the endpoint and the shared emulation pool.
pub struct SseClient {
    target: HttpTarget,
    pub emulator: Emulator,
    /// The request line and headers of the opening GET.
    request: String,
}

impl SseClient {
    /// For the SSE endpoint `url` (`http://host:port/connection/sse`), with
    /// `emulation_connections` keep-alive connections for the commands.
    pub fn new(url: &str, emulation_connections: usize) -> Result<SseClient> {
        let target = HttpTarget::parse(url)?;
        let emulator = Emulator::start(&target, emulation_connections);
        let connect: String =
            url::form_urlencoded::byte_serialize(br#"{"id":1,"connect":{"name":"wshub-bench"}}"#)
                .collect();
        let request = format!(
            "GET {}?cf_connect={connect} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            target.path, target.host_header
        );
        Ok(SseClient {
            target,
            emulator,
            request,
        })
    }

    pub fn target(&self) -> &HttpTarget {
        &self.target
    }

    /// Opens a session (from `source` when given) and, with `channel`,
    /// subscribes it there; returns once the subscribe reply came.
    pub async fn open(
        &self,
        source: Option<IpAddr>,
        channel: Option<&str>,
        scratch: &Scratch,
    ) -> Result<SseSession> {
        let mut stream = timeout(TIMEOUT, raw::connect_from(self.target.addr, source))
            .await
            .map_err(|_| anyhow!("connect timed out"))??;
        stream.write_all(self.request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(512);
        let head = timeout(TIMEOUT, read_head(&mut stream, &mut buf))
            .await
            .map_err(|_| anyhow!("no response head within {TIMEOUT:?}"))??;
        if head.status != 200 {
            bail!("GET {}: HTTP {}", self.target.path, head.status);
        }
        let mut s = SseSession {
            stream,
            decoder: Decoder::new(head.chunked),
            emulator: self.emulator.clone(),
            pong: Bytes::new(),
            pings: Rc::new(Cell::new(0)),
        };
        let mut early = Vec::new();
        s.decoder.feed(&buf, &mut |ev| early.push(ev.to_vec()))?;
        let reply = s.reply(1, early, scratch).await.context("connect")?;
        let v: serde_json::Value = serde_json::from_str(&reply).context("connect reply")?;
        let field = |k: &str| v["connect"][k].as_str().map(str::to_owned);
        let (Some(session), Some(node)) = (field("session"), field("node")) else {
            bail!("the connect reply names no session and node: {reply}");
        };
        let emulation = |data: &str| -> Bytes {
            serde_json::json!({"session": session, "node": node, "data": data})
                .to_string()
                .into()
        };
        s.pong = emulation("{}");
        if let Some(ch) = channel {
            let sub = serde_json::json!({"id": 2, "subscribe": {"channel": ch}}).to_string();
            self.emulator
                .send(emulation(&sub))
                .await
                .context("subscribe")?;
            s.reply(2, Vec::new(), scratch).await.context("subscribe")?;
        }
        Ok(s)
    }
}

/// An open SSE session.
pub struct SseSession {
    stream: TcpStream,
    decoder: Decoder,
    emulator: Emulator,
    /// The emulation request that answers a ping.
    pong: Bytes,
    /// Pings answered.
    pub pings: Rc<Cell<u64>>,
}

impl SseSession {
    /// Waits (up to [`TIMEOUT`]) for the reply with `id`, looking first at
    /// the events in `early`; other events before it are dropped (pings
    /// answered). An error reply or a disconnect is an error.
    async fn reply(&mut self, id: u32, early: Vec<Vec<u8>>, scratch: &Scratch) -> Result<String> {
        let needle = format!("\"id\":{id}");
        let mut events = early;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            for ev in events.drain(..) {
                let text = String::from_utf8_lossy(&ev);
                if text == "{}" {
                    self.pong();
                } else if text.contains(&needle) {
                    if text.contains("\"error\"") {
                        bail!("command {id} failed: {text}");
                    }
                    return Ok(text.into_owned());
                } else if text.contains("\"disconnect\"") {
                    bail!("disconnected: {text}");
                }
            }
            let mut collect = |ev: &[u8]| events.push(ev.to_vec());
            tokio::time::timeout_at(deadline, self.read_raw(scratch, &mut collect))
                .await
                .map_err(|_| anyhow!("no reply {id} within {TIMEOUT:?}"))??;
        }
    }

    /// Reads once from the stream (waiting until there is something) and
    /// hands each event to `on_event`; answers pings itself. `Err`: the
    /// stream ended or broke.
    pub async fn read_events(
        &mut self,
        scratch: &Scratch,
        mut on_event: impl FnMut(&[u8]),
    ) -> Result<()> {
        let mut pinged = 0;
        let r = self
            .read_raw(scratch, &mut |ev| {
                if ev == b"{}" {
                    pinged += 1;
                } else {
                    on_event(ev);
                }
            })
            .await;
        for _ in 0..pinged {
            self.pong();
        }
        r
    }

    fn pong(&self) {
        self.pings.set(self.pings.get() + 1);
        self.emulator.send_nowait(self.pong.clone());
    }

    async fn read_raw(
        &mut self,
        scratch: &Scratch,
        on_event: &mut impl FnMut(&[u8]),
    ) -> Result<()> {
        let Self {
            stream, decoder, ..
        } = self;
        scratch
            .read_with(&*stream, |data| decoder.feed(data, on_event))
            .await
            .context("stream")??;
        if decoder.ended() {
            bail!("the stream ended");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
            i += 1;
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    #[test]
    fn events_out_of_chunks_across_any_split() {
        let body =
            b"data: {\"id\":1}\n\n: a comment\ndata: {}\n\ndata: {\"a\":\ndata: 1}\n\nretry: 5\n\n";
        let want: Vec<&[u8]> = vec![b"{\"id\":1}", b"{}", b"{\"a\":\n1}"];
        for sizes in [&[1][..], &[3, 7], &[1000]] {
            let wire = chunked(body, sizes);
            for cut in [1, 2, 5, 13, 4096] {
                let mut d = Decoder::new(true);
                let mut got = Vec::new();
                for piece in wire.chunks(cut) {
                    d.feed(piece, &mut |ev| got.push(ev.to_vec())).unwrap();
                }
                assert_eq!(got, want, "sizes {sizes:?} cut {cut}");
                assert!(d.ended());
            }
        }
    }

    #[test]
    fn a_body_without_chunks_and_bad_framing() {
        let mut d = Decoder::new(false);
        let mut n = 0;
        d.feed(b"data: {}\r\n\r\ndata:x\n\n", &mut |_| n += 1)
            .unwrap();
        assert_eq!(n, 2);
        assert!(Decoder::new(true).feed(b"zz\r\n", &mut |_| {}).is_err());
        assert!(Decoder::new(true).feed(b"2\r\nabX", &mut |_| {}).is_err());
    }

    #[test]
    fn response_heads() {
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream",
        )
        .unwrap();
        assert!(h.status == 200 && h.chunked && !h.close);
        let h = parse_head(b"HTTP/1.1 404 Not Found\r\ncontent-length: 18\r\nConnection: close")
            .unwrap();
        assert_eq!((h.status, h.content_length, h.close), (404, Some(18), true));
        assert!(parse_head(b"garbage").is_err());
    }
}
