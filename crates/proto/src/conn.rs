//! The connection state machine: frames in, events out, commands to bytes.

use std::fmt;
use std::io::IoSlice;
use std::ops::Deref;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::close::CloseCode;
use crate::deflate::{DeflateConfig, DeflateParams, Deflater, InflateError, Inflater, TAIL};
use crate::error::{Error, SendError};
use crate::frame::{write_frame, write_header, FrameHeader, OpCode};
use crate::limits::Limits;
use crate::mask::apply_mask;
use crate::out::{OutQueue, COPY_LIMIT};
use crate::utf8::Utf8Validator;

/// Which end of the connection we are: servers expect masked frames and send
/// unmasked ones, clients the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The accepting side.
    Server,
    /// The connecting side.
    Client,
}

/// Where the connection is in its life (after the opening handshake, which
/// [`crate::handshake`] handles: that phase is "Connecting").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// The closing handshake is over, or the connection failed: flush the
    /// queued bytes and close the transport. A server closes TCP first; a
    /// client waits for the server to close, up to the close timeout.
    Closed,
}

/// Ping the peer every `interval`; if nothing at all arrives within
/// `timeout` of a ping, fail the connection with close 1011.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Time between pings.
    pub interval: Duration,
    /// How long to wait for a pong (or any frame) after a ping.
    pub timeout: Duration,
}

/// Connection settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Limits on untrusted input.
    pub limits: Limits,
    /// Send pings and fail silent peers (off by default).
    pub keepalive: Option<KeepAlive>,
    /// Answer pings automatically (default on).
    pub auto_pong: bool,
    /// Split outgoing messages into frames of at most this many payload
    /// bytes (default: one frame per message).
    pub fragment_size: Option<usize>,
    /// Compression level and size threshold used when permessage-deflate
    /// was negotiated (the negotiation itself is in the handshake).
    pub deflate: DeflateConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            keepalive: None,
            auto_pong: true,
            fragment_size: None,
            deflate: DeflateConfig::default(),
        }
    }
}

impl Config {
    /// Sets [`Config::limits`].
    pub fn limits(mut self, v: Limits) -> Self {
        self.limits = v;
        self
    }
    /// Sets [`Config::keepalive`].
    pub fn keepalive(mut self, v: Option<KeepAlive>) -> Self {
        self.keepalive = v;
        self
    }
    /// Sets [`Config::auto_pong`].
    pub fn auto_pong(mut self, v: bool) -> Self {
        self.auto_pong = v;
        self
    }
    /// Sets [`Config::fragment_size`] (0 is treated as 1).
    pub fn fragment_size(mut self, v: Option<usize>) -> Self {
        self.fragment_size = v.map(|n| n.max(1));
        self
    }
    /// Sets [`Config::deflate`].
    pub fn deflate(mut self, v: DeflateConfig) -> Self {
        self.deflate = v;
        self
    }
}

/// Bytes known to be valid UTF-8: the payload of a text message, borrowed
/// from the receive buffer without a copy.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Validates `b` and wraps it.
    pub fn try_from_bytes(b: Bytes) -> Result<Self, crate::utf8::Invalid> {
        crate::utf8::validate(&b)?;
        Ok(Utf8Bytes(b))
    }
    /// The text.
    pub fn as_str(&self) -> &str {
        // The bytes were validated on construction; this second pass keeps
        // the crate free of `unsafe` (simdutf8 runs at memory speed).
        // Every constructor validates, so the empty fallback is never taken.
        simdutf8::basic::from_utf8(&self.0).unwrap_or_default()
    }
    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
    /// Unwraps the bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&'static str> for Utf8Bytes {
    fn from(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A complete data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }
    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the peer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message arrived.
    Message(Message),
    /// A ping arrived (already answered when `auto_pong` is on).
    Ping(Bytes),
    /// A pong arrived.
    Pong(Bytes),
    /// The peer sent a close frame. If we had not sent one, the echo is
    /// already queued. Either way the state is now [`State::Closed`].
    Close {
        /// The code the peer sent, if any.
        code: Option<CloseCode>,
        /// The reason the peer gave (may be empty).
        reason: String,
    },
}

/// The frame whose payload is arriving.
#[derive(Clone, Copy)]
struct InFrame {
    opcode: OpCode,
    fin: bool,
    mask: Option<[u8; 4]>,
    len: usize,
    /// Payload bytes already unmasked (and validated, for text).
    done: usize,
    validate_utf8: bool,
}

/// The data message being assembled.
struct InMessage {
    text: bool,
    compressed: bool,
    frames: usize,
    buf: Vec<u8>,
}

struct DeflateState {
    params: DeflateParams,
    tx: Option<Deflater>,
    rx: Option<Inflater>,
}

/// CSPRNG masking keys (RFC 6455 §10.3), drawn from the OS 64 at a time.
struct MaskKeys {
    buf: [u8; 256],
    pos: usize,
}

impl MaskKeys {
    fn new() -> Self {
        MaskKeys {
            buf: [0; 256],
            pos: 256,
        }
    }
    fn next(&mut self) -> [u8; 4] {
        let key = match self.buf.get(self.pos..).and_then(<[u8]>::first_chunk::<4>) {
            Some(&key) => key,
            None => {
                // Not reachable from input: only the OS random source can
                // fail here, and a predictable masking key would break RFC
                // 6455 §10.3, so there is no safe value to go on with.
                #[allow(clippy::expect_used)]
                getrandom::fill(&mut self.buf).expect("the OS random source failed");
                self.pos = 0;
                let [a, b, c, d, ..] = self.buf;
                [a, b, c, d]
            }
        };
        self.pos += 4;
        key
    }
}

/// One WebSocket connection after the opening handshake, as a pure state
/// machine.
///
/// Feed it bytes ([`receive_data`](Self::receive_data) or
/// [`recv_buffer`](Self::recv_buffer)), take events out
/// ([`poll_event`](Self::poll_event)), issue commands
/// ([`send_text`](Self::send_text), [`ping`](Self::ping),
/// [`close`](Self::close), ...), and write what it queues
/// ([`transmit_vectored`](Self::transmit_vectored) then
/// [`advance_transmit`](Self::advance_transmit)). Time comes in through
/// [`handle_timeout`](Self::handle_timeout); it never reads the clock.
pub struct Connection {
    role: Role,
    config: Config,
    state: State,
    rx: BytesMut,
    frame: Option<InFrame>,
    msg: Option<InMessage>,
    utf8: Utf8Validator,
    out: OutQueue,
    deflate: Option<Box<DeflateState>>,
    scratch: Vec<u8>,
    /// Client only; boxed so a server connection does not carry it.
    masks: Option<Box<MaskKeys>>,
    close_sent: bool,
    pending_error: Option<Error>,
    // Timers.
    alive: bool,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    close_deadline: Option<Instant>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("buffered_in", &self.rx.len())
            .field("buffered_out", &self.out.len())
            .field("deflate", &self.deflate.as_ref().map(|d| d.params))
            .finish()
    }
}

impl Connection {
    /// A connection in the [`State::Open`] state. `deflate` is what the
    /// opening handshake negotiated, if anything.
    pub fn new(role: Role, config: Config, deflate: Option<DeflateParams>) -> Self {
        Connection {
            role,
            state: State::Open,
            rx: BytesMut::new(),
            frame: None,
            msg: None,
            utf8: Utf8Validator::new(),
            out: OutQueue::default(),
            deflate: deflate.map(|params| {
                Box::new(DeflateState {
                    params,
                    tx: None,
                    rx: None,
                })
            }),
            scratch: Vec::new(),
            masks: (role == Role::Client).then(|| Box::new(MaskKeys::new())),
            close_sent: false,
            pending_error: None,
            alive: false,
            next_ping: None,
            pong_deadline: None,
            close_deadline: None,
            config,
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The negotiated permessage-deflate parameters, if any.
    pub fn deflate_params(&self) -> Option<DeflateParams> {
        self.deflate.as_ref().map(|d| d.params)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- input -------------------------------------------------------

    /// Hands bytes read from the transport to the connection. Parse them
    /// with [`poll_event`](Self::poll_event).
    pub fn receive_data(&mut self, data: &[u8]) {
        if self.state != State::Closed {
            self.rx.extend_from_slice(data);
        }
    }

    /// The receive buffer, to read into directly (saves a copy): append
    /// bytes at its end, then call [`poll_event`](Self::poll_event).
    pub fn recv_buffer(&mut self) -> &mut BytesMut {
        &mut self.rx
    }

    /// Bytes received but not yet parsed into events.
    pub fn buffered_in(&self) -> usize {
        self.rx.len()
    }

    /// Releases buffer memory that holds nothing: the receive buffer when
    /// no bytes are pending, the send queue's spare room when it is empty,
    /// so an idle connection holds no buffers.
    pub fn shrink_idle(&mut self) {
        if self.rx.is_empty() && self.frame.is_none() {
            self.rx = BytesMut::new();
        }
        if self.out.is_empty() {
            self.out.tail = BytesMut::new();
        }
        if self.msg.is_none() {
            self.scratch = Vec::new();
        }
    }

    /// The receive buffer, if the connection is idle enough to give it up
    /// (no bytes pending, no frame in progress) and has one: like
    /// [`shrink_idle`](Self::shrink_idle), but the buffer (empty, with its
    /// capacity) goes to the caller, so that a transport can reuse it for
    /// the next read of any connection (a per-thread pool, say) instead of
    /// freeing it and allocating anew.
    pub fn take_idle_recv_buffer(&mut self) -> Option<BytesMut> {
        if self.rx.is_empty() && self.frame.is_none() && self.rx.capacity() > 0 {
            Some(std::mem::take(&mut self.rx))
        } else {
            None
        }
    }

    /// The buffer outgoing frames are encoded into, if nothing is queued
    /// and it has one (see [`take_idle_recv_buffer`](Self::take_idle_recv_buffer)
    /// and [`set_send_buffer`](Self::set_send_buffer)); also frees the
    /// compression scratch space when no message is being received.
    pub fn take_idle_send_buffer(&mut self) -> Option<BytesMut> {
        if self.msg.is_none() && self.scratch.capacity() > 0 {
            self.scratch = Vec::new();
        }
        if self.out.is_empty() && self.out.tail.capacity() > 0 {
            Some(std::mem::take(&mut self.out.tail))
        } else {
            None
        }
    }

    /// Whether the connection has no buffer to encode outgoing frames into
    /// (it was released while idle); see
    /// [`set_send_buffer`](Self::set_send_buffer).
    pub fn needs_send_buffer(&self) -> bool {
        self.out.tail.capacity() == 0
    }

    /// Gives the connection an empty buffer to encode outgoing frames into
    /// (one that [`take_idle_send_buffer`](Self::take_idle_send_buffer) or
    /// [`take_idle_recv_buffer`](Self::take_idle_recv_buffer) released),
    /// so the next send does not allocate. Ignored (the buffer is dropped)
    /// if the connection already has one.
    pub fn set_send_buffer(&mut self, mut buf: BytesMut) {
        if self.needs_send_buffer() && self.out.tail.is_empty() {
            buf.clear();
            self.out.tail = buf;
        }
    }

    /// How many more bytes the frame being received needs (its header or
    /// the rest of its payload), to size the next read; 0 when unknown.
    pub fn bytes_needed(&self) -> usize {
        match &self.frame {
            Some(f) => f.len.saturating_sub(self.rx.len()),
            None => 0,
        }
    }

    /// The transport reached end of stream (the peer closed TCP).
    pub fn receive_eof(&mut self) {
        if self.state != State::Closed {
            self.enter_closed();
            self.pending_error = Some(Error::AbnormalClosure);
        }
    }

    /// The next event, parsed from received bytes.
    ///
    /// `Ok(None)`: more input is needed. `Err(e)`: the connection failed; a
    /// close frame with `e.close_code()` is queued where the RFC wants one,
    /// and the state is [`State::Closed`]. Each error is returned once.
    #[inline]
    pub fn poll_event(&mut self) -> Result<Option<Event>, Error> {
        // Fast path: nothing buffered and nothing to report. A frame in
        // progress cannot complete without bytes (a zero-length frame
        // completes in the call that parsed its header).
        if self.rx.is_empty() && self.pending_error.is_none() {
            return Ok(None);
        }
        self.poll_event_slow()
    }

    fn poll_event_slow(&mut self) -> Result<Option<Event>, Error> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        loop {
            if self.state == State::Closed {
                self.rx.clear();
                return Ok(None);
            }
            let f = match self.frame {
                Some(ref mut f) => f,
                None => {
                    let Some(h) = FrameHeader::parse(&self.rx) else {
                        return Ok(None);
                    };
                    let f = self.accept_header(&h)?;
                    self.rx.advance(h.header_len);
                    self.frame.insert(f)
                }
            };
            let avail = self.rx.len().min(f.len);
            if let Some(new) = self.rx.get_mut(f.done..avail) {
                if !new.is_empty() {
                    if let Some(m) = f.mask {
                        apply_mask(new, m, f.done);
                    }
                    let bad = f.validate_utf8 && self.utf8.feed(new).is_err();
                    f.done = avail;
                    if bad {
                        return self.fail(Error::InvalidUtf8);
                    }
                }
            }
            if avail < f.len {
                return Ok(None);
            }
            let Some(f) = self.frame.take() else {
                return Ok(None);
            };
            self.alive = true;
            // The payload is the first `f.len` bytes of the buffer. Work on
            // the buffer out of `self` (no split: a split turns the buffer
            // into a shared block that cannot be reused); `on_frame`
            // consumes exactly the payload from it.
            let mut rx = std::mem::take(&mut self.rx);
            let r = self.on_frame(f, &mut rx);
            if self.state != State::Closed {
                self.rx = rx;
            }
            if let Some(ev) = r? {
                return Ok(Some(ev));
            }
        }
    }

    /// Validates a header against the RFC and our limits.
    fn accept_header(&mut self, h: &FrameHeader) -> Result<InFrame, Error> {
        if h.rsv2 || h.rsv3 {
            return self.fail(Error::Protocol("reserved bit set"));
        }
        let Some(opcode) = OpCode::from_u8(h.opcode) else {
            return self.fail(Error::Protocol("reserved opcode"));
        };
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return self.fail(Error::Protocol("unmasked client frame")),
            (Role::Client, true) => return self.fail(Error::Protocol("masked server frame")),
            _ => {}
        }
        if h.len >> 63 != 0 {
            return self.fail(Error::Protocol("64-bit length with the high bit set"));
        }
        if opcode.is_control() {
            if !h.fin {
                return self.fail(Error::Protocol("fragmented control frame"));
            }
            if h.len > 125 {
                return self.fail(Error::Protocol("control frame over 125 bytes"));
            }
            if h.rsv1 {
                return self.fail(Error::Protocol("RSV1 on a control frame"));
            }
            return Ok(InFrame {
                opcode,
                fin: true,
                mask: h.mask,
                len: h.len as usize,
                done: 0,
                validate_utf8: false,
            });
        }
        if h.len > self.config.limits.max_frame_size as u64 {
            return self.fail(Error::FrameTooBig);
        }
        let len = h.len as usize;
        match opcode {
            OpCode::Continuation => {
                if h.rsv1 {
                    return self.fail(Error::Protocol("RSV1 on a continuation frame"));
                }
                let Some(m) = &self.msg else {
                    return self.fail(Error::Protocol("continuation frame without a message"));
                };
                if m.frames >= self.config.limits.max_fragments {
                    return self.fail(Error::TooManyFragments);
                }
                if !m.compressed && m.buf.len() + len > self.config.limits.max_message_size {
                    return self.fail(Error::MessageTooBig);
                }
                let validate_utf8 = m.text && !m.compressed;
                Ok(InFrame {
                    opcode,
                    fin: h.fin,
                    mask: h.mask,
                    len,
                    done: 0,
                    validate_utf8,
                })
            }
            _ => {
                if self.msg.is_some() {
                    return self.fail(Error::Protocol("new message inside a fragmented message"));
                }
                if h.rsv1 && self.deflate.is_none() {
                    return self.fail(Error::Protocol("RSV1 set without permessage-deflate"));
                }
                if !h.rsv1 && len > self.config.limits.max_message_size {
                    return self.fail(Error::MessageTooBig);
                }
                let text = opcode == OpCode::Text;
                self.msg = Some(InMessage {
                    text,
                    compressed: h.rsv1,
                    frames: 0,
                    buf: Vec::new(),
                });
                self.utf8.reset();
                Ok(InFrame {
                    opcode,
                    fin: h.fin,
                    mask: h.mask,
                    len,
                    done: 0,
                    validate_utf8: text && !h.rsv1,
                })
            }
        }
    }

    /// Handles a complete frame whose payload is the first `f.len` bytes of
    /// `rx`, and consumes them.
    fn on_frame(&mut self, f: InFrame, rx: &mut BytesMut) -> Result<Option<Event>, Error> {
        let Some(payload) = rx.get(..f.len) else {
            return self.fail(Error::Internal("frame payload not buffered"));
        };
        match f.opcode {
            OpCode::Ping => {
                let payload = Bytes::copy_from_slice(payload);
                rx.advance(f.len);
                if self.config.auto_pong && self.state == State::Open {
                    self.queue_control(OpCode::Pong, &payload);
                }
                Ok(Some(Event::Ping(payload)))
            }
            OpCode::Pong => {
                let payload = Bytes::copy_from_slice(payload);
                rx.advance(f.len);
                Ok(Some(Event::Pong(payload)))
            }
            OpCode::Close => {
                let r = self.on_close(payload).map(Some);
                rx.advance(f.len);
                r
            }
            _ => self.on_data(f, rx),
        }
    }

    fn on_close(&mut self, payload: &[u8]) -> Result<Event, Error> {
        let (code, reason) = match payload.split_first_chunk::<2>() {
            None if payload.is_empty() => (None, String::new()),
            None => return self.fail(Error::Protocol("close frame with a 1-byte payload")),
            Some((&code, reason)) => {
                let code = CloseCode(u16::from_be_bytes(code));
                if !code.is_sendable() {
                    return self.fail(Error::Protocol("invalid close code"));
                }
                match std::str::from_utf8(reason) {
                    Ok(r) => (Some(code), r.to_owned()),
                    Err(_) => return self.fail(Error::InvalidUtf8),
                }
            }
        };
        if !self.close_sent {
            // Echo the status code (RFC 6455 §5.5.1).
            let body = code.map(|c| c.0.to_be_bytes());
            self.queue_control(OpCode::Close, body.as_ref().map_or(&[][..], |b| &b[..]));
            self.close_sent = true;
        }
        self.enter_closed();
        Ok(Event::Close { code, reason })
    }

    /// Handles a data frame whose payload is the first `f.len` bytes of
    /// `rx`, and consumes them.
    fn on_data(&mut self, f: InFrame, rx: &mut BytesMut) -> Result<Option<Event>, Error> {
        // `accept_header` opened the message; `on_frame` checked that the
        // payload is buffered.
        let (Some(m), Some(payload)) = (self.msg.as_mut(), rx.get(..f.len)) else {
            return self.fail(Error::Internal("data frame outside a message"));
        };
        m.frames += 1;
        if f.fin && m.frames == 1 && !m.compressed {
            let text = m.text;
            self.msg = None;
            // A whole message in one frame: small payloads are copied out
            // (the buffer stays reusable), large ones shared with it.
            let data = if f.len < COPY_LIMIT {
                let b = Bytes::copy_from_slice(payload);
                rx.advance(f.len);
                b
            } else {
                rx.split_to(f.len).freeze()
            };
            return self.message(text, data);
        }
        let r = self.on_fragment(f.fin, payload);
        rx.advance(f.len);
        r
    }

    fn message(&mut self, text: bool, data: Bytes) -> Result<Option<Event>, Error> {
        if text {
            if self.utf8.finish().is_err() {
                return self.fail(Error::InvalidUtf8);
            }
            Ok(Some(Event::Message(Message::Text(Utf8Bytes(data)))))
        } else {
            Ok(Some(Event::Message(Message::Binary(data))))
        }
    }

    /// A compressed frame or one fragment of a message.
    fn on_fragment(&mut self, fin: bool, payload: &[u8]) -> Result<Option<Event>, Error> {
        if let Err(e) = self.append_fragment(fin, payload) {
            return self.fail(e);
        }
        if !fin {
            return Ok(None);
        }
        let Some(m) = self.msg.take() else {
            return self.fail(Error::Internal("data frame outside a message"));
        };
        self.message(m.text, Bytes::from(m.buf))
    }

    /// Adds one fragment (inflated, if the message is compressed) to the
    /// message being assembled.
    fn append_fragment(&mut self, fin: bool, payload: &[u8]) -> Result<(), Error> {
        let limit = self.config.limits.max_message_size;
        // `accept_header` opened the message, and accepts RSV1 only with
        // deflate negotiated.
        let Some(m) = self.msg.as_mut() else {
            return Err(Error::Internal("data frame outside a message"));
        };
        if !m.compressed {
            m.buf.extend_from_slice(payload);
            return Ok(());
        }
        let Some(d) = self.deflate.as_mut() else {
            return Err(Error::Internal("compressed frame without deflate"));
        };
        let before = m.buf.len();
        let inflater = d.rx.get_or_insert_with(|| {
            let (bits, nct) = match self.role {
                Role::Server => (
                    d.params.client_max_window_bits,
                    d.params.client_no_context_takeover,
                ),
                Role::Client => (
                    d.params.server_max_window_bits,
                    d.params.server_no_context_takeover,
                ),
            };
            Inflater::new(bits, nct)
        });
        let mut r = inflater.decompress(payload, &mut m.buf, limit);
        if r.is_ok() && fin {
            r = inflater.decompress(&TAIL, &mut m.buf, limit);
            inflater.end_message();
        }
        r.map_err(|e| match e {
            InflateError::TooBig => Error::MessageTooBig,
            InflateError::Corrupt => Error::InvalidCompressedData,
        })?;
        let inflated = m.buf.get(before..).unwrap_or_default();
        if m.text && self.utf8.feed(inflated).is_err() {
            return Err(Error::InvalidUtf8);
        }
        Ok(())
    }

    /// Fails the connection: queue a close frame (if none was sent and the
    /// code may be sent), go to Closed, return the error.
    fn fail<T>(&mut self, err: Error) -> Result<T, Error> {
        if !self.close_sent && err.close_code().is_sendable() {
            let reason = err.to_string();
            let reason = truncate_utf8(&reason, 123);
            let mut body = Vec::with_capacity(2 + reason.len());
            body.extend_from_slice(&err.close_code().0.to_be_bytes());
            body.extend_from_slice(reason.as_bytes());
            self.queue_control(OpCode::Close, &body);
            self.close_sent = true;
        }
        self.enter_closed();
        Err(err)
    }

    fn enter_closed(&mut self) {
        self.state = State::Closed;
        self.rx = BytesMut::new();
        self.frame = None;
        self.msg = None;
        self.next_ping = None;
        self.pong_deadline = None;
        self.close_deadline = None;
    }

    // ----- commands ----------------------------------------------------

    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_data(OpCode::Text, text.as_bytes(), None)
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_data(OpCode::Binary, data, None)
    }

    /// Queues a message; a server sends large uncompressed payloads by
    /// reference, without copying them.
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        match msg {
            Message::Text(t) => {
                let b = t.into_bytes();
                self.send_data(OpCode::Text, &b, Some(&b))
            }
            Message::Binary(b) => self.send_data(OpCode::Binary, &b, Some(&b)),
        }
    }

    /// Queues a frame encoded with [`crate::encode_frame`], sharing its
    /// bytes (broadcast: encode once, send to many). Server role only: a
    /// client must mask every frame with its own key.
    pub fn send_encoded(&mut self, frame: Bytes) -> Result<(), SendError> {
        assert_eq!(self.role, Role::Server, "send_encoded is for servers");
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        self.out.push_bytes(frame);
        Ok(())
    }

    /// Queues a ping with `payload` (at most 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Queues an unsolicited pong (a heartbeat the peer need not answer).
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload)
    }

    /// Starts the closing handshake: queues a close frame with `code` and
    /// `reason` (at most 123 bytes), then waits for the peer's close.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        if self.close_sent || self.state != State::Open {
            return Err(SendError::Closed);
        }
        if !code.is_sendable() {
            return Err(SendError::InvalidCloseCode);
        }
        if reason.len() > 123 {
            return Err(SendError::ControlTooLong);
        }
        let mut body = Vec::with_capacity(2 + reason.len());
        body.extend_from_slice(&code.0.to_be_bytes());
        body.extend_from_slice(reason.as_bytes());
        self.queue_control(OpCode::Close, &body);
        self.close_sent = true;
        self.state = State::Closing;
        self.next_ping = None;
        self.pong_deadline = None;
        Ok(())
    }

    fn send_control(&mut self, op: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        if payload.len() > 125 {
            return Err(SendError::ControlTooLong);
        }
        self.queue_control(op, payload);
        Ok(())
    }

    fn queue_control(&mut self, op: OpCode, payload: &[u8]) {
        let mask = self.masks.as_mut().map(|m| m.next());
        let before = self.out.tail.len();
        write_frame(&mut self.out.tail, true, false, op, mask, payload);
        self.out.tail_grew(before);
    }

    fn send_data(
        &mut self,
        op: OpCode,
        payload: &[u8],
        shared: Option<&Bytes>,
    ) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        let level = self.config.deflate.level;
        let min_size = self.config.deflate.min_size;
        let role = self.role;
        let deflate = self.deflate.as_mut().filter(|_| payload.len() >= min_size);
        let compress = deflate.is_some();
        let mut scratch = std::mem::take(&mut self.scratch);
        let (body, shared) = if let Some(d) = deflate {
            let (bits, nct) = match role {
                Role::Server => (
                    d.params.server_max_window_bits,
                    d.params.server_no_context_takeover,
                ),
                Role::Client => (
                    d.params.client_max_window_bits,
                    d.params.client_no_context_takeover,
                ),
            };
            let deflater = d.tx.get_or_insert_with(|| Deflater::new(level, bits, nct));
            scratch.clear();
            if deflater.compress(payload, &mut scratch).is_err() {
                return Err(SendError::Compression);
            }
            (scratch.as_slice(), None)
        } else {
            (payload, shared.filter(|_| self.masks.is_none()))
        };
        // The field is public, so 0 can get here past the setter; 1 keeps
        // the loop below moving.
        let frag = self.config.fragment_size.unwrap_or(usize::MAX).max(1);
        let mut offset: usize = 0;
        let mut first = true;
        loop {
            let end = body.len().min(offset.saturating_add(frag));
            let fin = end == body.len();
            let opcode = if first { op } else { OpCode::Continuation };
            // offset <= end <= body.len(): end is clamped, offset follows it.
            let chunk = body.get(offset..end).unwrap_or_default();
            let mask = self.masks.as_mut().map(|m| m.next());
            let before = self.out.tail.len();
            match shared {
                Some(b) if chunk.len() >= COPY_LIMIT => {
                    write_header(
                        &mut self.out.tail,
                        fin,
                        first && compress,
                        opcode,
                        None,
                        chunk.len(),
                    );
                    self.out.tail_grew(before);
                    self.out.push_bytes(b.slice(offset..end));
                }
                _ => {
                    write_frame(
                        &mut self.out.tail,
                        fin,
                        first && compress,
                        opcode,
                        mask,
                        chunk,
                    );
                    self.out.tail_grew(before);
                }
            }
            first = false;
            offset = end;
            if fin {
                break;
            }
        }
        if scratch.capacity() <= 64 * 1024 {
            self.scratch = scratch;
        }
        Ok(())
    }

    // ----- output ------------------------------------------------------

    /// Bytes queued for the transport.
    pub fn buffered_out(&self) -> usize {
        self.out.len()
    }

    /// Whether bytes are waiting to be written.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Fills `dst` with slices of the queued bytes, in order, for one
    /// vectored write; returns how many slices it filled. Then call
    /// [`advance_transmit`](Self::advance_transmit) with the bytes written.
    pub fn transmit_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        self.out.chunks_vectored(dst)
    }

    /// How many contiguous runs the queued bytes form (the slices
    /// [`transmit_vectored`](Self::transmit_vectored) would fill, were
    /// there room); 1 means [`transmit_chunk`](Self::transmit_chunk)
    /// holds all of them.
    pub fn transmit_chunks(&self) -> usize {
        self.out.chunk_count()
    }

    /// The first contiguous run of queued bytes.
    pub fn transmit_chunk(&self) -> &[u8] {
        self.out.first_chunk()
    }

    /// Drops `n` written bytes from the front of the queue.
    pub fn advance_transmit(&mut self, n: usize) {
        self.out.advance(n);
    }

    /// Moves every queued byte into `out` (for tests and simple transports).
    pub fn drain_transmit(&mut self, out: &mut Vec<u8>) {
        while self.wants_write() {
            let chunk = self.out.first_chunk();
            out.extend_from_slice(chunk);
            let n = chunk.len();
            self.out.advance(n);
        }
    }

    // ----- time --------------------------------------------------------

    /// Advances timers to `now`: sends keepalive pings, fails a silent
    /// peer, ends a closing handshake the peer never answers. Call it once
    /// per batch of input or commands, and when
    /// [`poll_timeout`](Self::poll_timeout) is reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Open => {
                let Some(ka) = self.config.keepalive else {
                    return;
                };
                if self.alive {
                    self.pong_deadline = None;
                }
                if let Some(d) = self.pong_deadline {
                    if now >= d {
                        let _ = self.fail::<()>(Error::KeepaliveTimeout);
                        self.pending_error = Some(Error::KeepaliveTimeout);
                        return;
                    }
                }
                match self.next_ping {
                    None => self.next_ping = Some(now + ka.interval),
                    Some(t) if now >= t => {
                        if self.pong_deadline.is_none() {
                            self.queue_control(OpCode::Ping, b"");
                            self.pong_deadline = Some(now + ka.timeout);
                            self.alive = false;
                        }
                        self.next_ping = Some(now + ka.interval);
                    }
                    Some(_) => {}
                }
            }
            State::Closing => {
                let d = *self
                    .close_deadline
                    .get_or_insert(now + self.config.limits.close_timeout);
                if now >= d {
                    self.enter_closed();
                    self.pending_error = Some(Error::CloseTimeout);
                }
            }
            State::Closed => {}
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next needs calling, if
    /// a timer is armed.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.next_ping.is_none() && self.pong_deadline.is_none() && self.close_deadline.is_none()
        {
            return None;
        }
        [self.next_ping, self.pong_deadline, self.close_deadline]
            .into_iter()
            .flatten()
            .min()
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
