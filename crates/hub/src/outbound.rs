//! [`ClientHandle`]: the outbound side of one session, the queue that its
//! replies and the fan-out's pushes go into and that its transport drains;
//! and [`Control`], an action the node asks a session to take.
//!
//! What is queued are encoded protocol messages (one reply or push each, in
//! the session's encoding), never transport frames: the transport adapter
//! frames them (WebSocket messages, SSE events, length-prefixed HTTP-stream
//! chunks).
//!
//! Lock order: a hub shard, then a client handle's queue; never the other
//! way round. The queue's lock is held only to move `Bytes` in or out,
//! never across an await or a socket write.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;
use wshub_protocol::{Disconnect, DisconnectCode, Encoding};

/// An action another part of the node asks a session to take (server API
/// `disconnect`, `unsubscribe`, `subscribe`, ...). The session applies it
/// in its own task.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Control {
    /// Close the connection with this disconnect.
    Disconnect(Disconnect),
    /// Unsubscribe the client from a channel (server-side unsubscribe).
    Unsubscribe(String),
    /// Subscribe the client to a channel (server-side subscribe, server API
    /// `subscribe`).
    Subscribe {
        /// The channel.
        channel: String,
        /// Channel info for presence and publications (raw JSON).
        info: Option<Bytes>,
        /// Data for the subscribe push (raw JSON).
        data: Option<Bytes>,
        /// Recover publications after this position; they follow the
        /// subscribe push as publication pushes.
        recover_since: Option<crate::broker::StreamPosition>,
    },
    /// The node saw a gap in `channel`'s stream (a lost publication, a new
    /// epoch): unsubscribe with 2500 "insufficient state" so the client
    /// resubscribes and recovers from its last position, or learns that it
    /// cannot.
    InsufficientState(String),
    /// Server API `refresh`: move the connection's expiry to `expire_at`
    /// (Unix seconds) and/or replace its connection info.
    Refresh {
        /// New expiry, if given.
        expire_at: Option<u64>,
        /// New connection info (raw JSON), if given.
        info: Option<Bytes>,
    },
}

/// A transport's way to write one message now, from whichever thread
/// holds it, without blocking and without waking the session's task: one
/// non-blocking write attempt. The fan-out uses it for a client whose
/// queue is empty and whose socket has taken everything so far, so a
/// publication reaches an idle client without waiting for its task to be
/// scheduled behind thousands of others.
pub trait DirectWrite: Send + Sync {
    /// Frames `message` (an encoded protocol message, as queued) and tries
    /// to write it. `Ok(n)`: `n` bytes of it (or of earlier writes) are
    /// still held by the transport, and its task must flush them (the
    /// handle wakes it). `Err(())`: the transport is closing; the message
    /// is dropped with the connection.
    #[allow(clippy::result_unit_err)]
    fn try_write(&self, message: Bytes) -> Result<usize, ()>;

    /// Whether `message` may be written directly at all; `false` queues it
    /// for the session (a front's internal record that the session turns
    /// into messages first). Every message by default.
    fn accepts(&self, message: &[u8]) -> bool {
        let _ = message;
        true
    }
}

/// Pushes held back per channel while it is being subscribed: (offset, frame).
type Pending = HashMap<String, Vec<(u64, Bytes)>>;

#[derive(Default)]
struct Outbound {
    frames: VecDeque<Bytes>,
    /// Bytes counted against the limit: the frames queued, the pushes held
    /// back in `pending`, and the controls waiting for the session.
    queued: usize,
    /// Bytes the transport took (drained) that the socket has not accepted
    /// yet; see [`ClientHandle::set_in_flight`].
    in_flight: usize,
    /// Channels being subscribed: their pushes wait here until the
    /// subscribe reply is queued (offset, frame). Boxed, like
    /// `disconnect`: rare, and every idle connection carries the room.
    pending: Option<Box<Pending>>,
    controls: Vec<Control>,
    disconnect: Option<Box<Disconnect>>,
    /// The transport's direct writer, while the connection is open.
    direct: Option<std::sync::Arc<dyn DirectWrite>>,
    /// A direct write is under way (outside the lock): others queue.
    writing: bool,
}

fn is_pending(out: &Outbound, channel: &str) -> bool {
    out.pending
        .as_ref()
        .is_some_and(|p| p.contains_key(channel))
}

/// What a queued [`Control`] counts against the queue limit: its variable
/// parts plus a fixed overhead for the value itself.
fn control_cost(c: &Control) -> usize {
    const FIXED: usize = 64;
    FIXED
        + match c {
            Control::Disconnect(d) => d.reason.len(),
            Control::Unsubscribe(ch) | Control::InsufficientState(ch) => ch.len(),
            Control::Subscribe {
                channel,
                info,
                data,
                recover_since,
            } => {
                channel.len()
                    + info.as_ref().map_or(0, Bytes::len)
                    + data.as_ref().map_or(0, Bytes::len)
                    + recover_since.as_ref().map_or(0, |p| p.epoch.len())
            }
            Control::Refresh { info, .. } => info.as_ref().map_or(0, Bytes::len),
        }
}

/// The outbound side of one client connection: a queue of encoded frames
/// with byte accounting, and a wakeup for the connection's writer.
///
/// Every byte on its way to the client counts against one limit
/// (`client.queue_max_size`): frames queued (replies, pushes, pings), the
/// pushes held back while a channel is being subscribed, actions waiting
/// for the session, and the bytes the transport took but the socket has
/// not accepted yet ([`ClientHandle::set_in_flight`]). When a push would
/// exceed the limit the queue is dropped and the client marked for
/// disconnect with 3008 slow.
pub struct ClientHandle {
    id: String,
    encoding: Encoding,
    max_bytes: usize,
    out: Mutex<Outbound>,
    notify: Notify,
    closing: Notify,
    slow: AtomicBool,
}

impl std::fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandle")
            .field("id", &self.id)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

/// What [`ClientHandle::drain`] took out of the queue.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Drained {
    /// Encoded protocol messages to write, in order.
    pub frames: Vec<Bytes>,
    /// Total length of `frames`; counted as in flight until the transport
    /// reports them written ([`ClientHandle::set_in_flight`]).
    pub bytes: usize,
    /// Actions for the session.
    pub controls: Vec<Control>,
    /// Close the connection with this, after writing `frames`.
    pub disconnect: Option<Disconnect>,
}

impl ClientHandle {
    /// A handle for client `id` speaking `encoding`, queueing at most
    /// `max_bytes` (0 = unlimited).
    pub fn new(id: impl Into<String>, encoding: Encoding, max_bytes: usize) -> Self {
        ClientHandle {
            id: id.into(),
            encoding,
            max_bytes,
            out: Mutex::new(Outbound::default()),
            notify: Notify::new(),
            closing: Notify::new(),
            slow: AtomicBool::new(false),
        }
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The client's encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    fn lock(&self) -> MutexGuard<'_, Outbound> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the client was cut off as a slow consumer.
    pub fn is_slow(&self) -> bool {
        self.slow.load(Ordering::Relaxed)
    }

    /// Counts `len` more bytes; on overflow drops everything queued, marks
    /// the client slow and returns false.
    fn reserve_locked(&self, out: &mut Outbound, len: usize) -> bool {
        if self.max_bytes > 0 && out.queued + out.in_flight + len > self.max_bytes {
            out.frames.clear();
            out.pending = None;
            out.controls.clear();
            out.queued = 0;
            out.direct = None;
            out.disconnect = Some(Box::new(DisconnectCode::SLOW.to_disconnect()));
            self.slow.store(true, Ordering::Relaxed);
            self.closing.notify_one();
            return false;
        }
        out.queued += len;
        true
    }

    fn push_locked(&self, out: &mut Outbound, frame: Bytes) -> bool {
        if out.disconnect.is_some() {
            return true;
        }
        if !self.reserve_locked(out, frame.len()) {
            return false;
        }
        out.frames.push_back(frame);
        true
    }

    /// Queues a frame and wakes the writer. Returns false when this push
    /// overflowed the queue (the client is now marked slow).
    pub fn push(&self, frame: Bytes) -> bool {
        let ok = self.push_locked(&mut self.lock(), frame);
        self.notify.notify_one();
        ok
    }

    /// Queues a channel push with the publication `offset` (0 when not
    /// positioned). While the channel is being subscribed it is held back
    /// (see [`ClientHandle::begin_pending`]), and counted all the same.
    /// Returns false on overflow.
    pub fn push_channel(&self, channel: &str, offset: u64, frame: Bytes) -> bool {
        let mut out = self.lock();
        if out.disconnect.is_some() {
            return true;
        }
        if is_pending(&out, channel) {
            let len = frame.len();
            if !self.reserve_locked(&mut out, len) {
                return false;
            }
            if let Some(p) = out.pending.as_mut().and_then(|p| p.get_mut(channel)) {
                p.push((offset, frame));
            }
            return true;
        }
        let ok = self.push_locked(&mut out, frame);
        drop(out);
        self.notify.notify_one();
        ok
    }

    /// Like [`ClientHandle::push_channel`], but when nothing is queued or in
    /// flight and the transport registered a [`DirectWrite`], writes the
    /// push at once from the calling thread instead of waking the
    /// session's task. Order is kept: a push only goes direct when
    /// everything before it was written. Returns false on overflow.
    pub fn push_channel_now(&self, channel: &str, offset: u64, frame: Bytes) -> bool {
        let mut out = self.lock();
        let fits = self.max_bytes == 0 || frame.len() <= self.max_bytes;
        let direct = match &out.direct {
            Some(d)
                if fits
                    && d.accepts(&frame)
                    && !out.writing
                    && out.disconnect.is_none()
                    && out.frames.is_empty()
                    && out.controls.is_empty()
                    && out.in_flight == 0
                    && !is_pending(&out, channel) =>
            {
                d.clone()
            }
            _ => {
                drop(out);
                return self.push_channel(channel, offset, frame);
            }
        };
        out.writing = true;
        drop(out);
        let r = direct.try_write(frame);
        let mut out = self.lock();
        out.writing = false;
        let mut wake = !out.frames.is_empty() || !out.controls.is_empty();
        if let Ok(left) = r {
            if left > 0 {
                // The transport holds the rest until its task flushes.
                out.in_flight = out.in_flight.max(left);
                wake = true;
            }
        }
        drop(out);
        if wake {
            self.notify.notify_one();
        }
        true
    }

    /// Registers (or with `None` removes) the transport's direct writer.
    /// Remove it when the connection ends: it keeps the socket alive.
    pub fn set_direct(&self, direct: Option<std::sync::Arc<dyn DirectWrite>>) {
        self.lock().direct = direct;
    }

    /// Holds back pushes of `channel` until [`ClientHandle::end_pending`].
    pub fn begin_pending(&self, channel: &str) {
        let mut out = self.lock();
        if out.disconnect.is_none() {
            out.pending
                .get_or_insert_with(Box::default)
                .insert(channel.to_owned(), Vec::new());
        }
    }

    /// Queues `replies` (the subscribe reply or push and the recovered
    /// publications, if any), then the held-back pushes of `channel` whose
    /// offset is above `after` (all of them when `after` is 0 or the push
    /// has no offset), and stops holding back. Returns false on overflow.
    pub fn end_pending(&self, channel: &str, replies: Vec<Bytes>, after: u64) -> bool {
        let mut out = self.lock();
        let held = out
            .pending
            .as_mut()
            .and_then(|p| p.remove(channel))
            .unwrap_or_default();
        if out.pending.as_ref().is_some_and(|p| p.is_empty()) {
            // Give the table's memory back: most connections subscribe a
            // few times at the start and then idle.
            out.pending = None;
        }
        // The held pushes are counted already: release them here and count
        // again those that are queued, after the reply.
        let held_bytes: usize = held.iter().map(|(_, f)| f.len()).sum();
        out.queued = out.queued.saturating_sub(held_bytes);
        let mut ok = true;
        for r in replies {
            ok &= self.push_locked(&mut out, r);
        }
        for (offset, frame) in held {
            if after == 0 || offset == 0 || offset > after {
                ok &= self.push_locked(&mut out, frame);
            }
        }
        drop(out);
        self.notify.notify_one();
        ok
    }

    /// Asks the session to take an action. The action counts against the
    /// queue limit until the session drains it; over the limit the client
    /// is disconnected as slow instead.
    pub fn control(&self, c: Control) {
        let mut out = self.lock();
        if out.disconnect.is_none() && self.reserve_locked(&mut out, control_cost(&c)) {
            out.controls.push(c);
        }
        drop(out);
        self.notify.notify_one();
    }

    /// Marks the client for disconnect (after the frames already queued).
    pub fn disconnect(&self, d: Disconnect) {
        let mut out = self.lock();
        if out.disconnect.is_none() {
            out.disconnect = Some(Box::new(d));
        }
        drop(out);
        self.notify.notify_one();
        self.closing.notify_one();
    }

    /// The disconnect the client is marked for, if any.
    pub fn pending_disconnect(&self) -> Option<Disconnect> {
        self.lock().disconnect.as_deref().cloned()
    }

    /// Resolves once the client is marked for disconnect (slow consumer or
    /// [`ClientHandle::disconnect`]); lets a writer stuck on a full socket
    /// give up.
    ///
    /// Cancel safety: cancel safe.
    pub async fn closing(&self) {
        self.closing.notified().await
    }

    /// Takes everything queued. The frames' bytes stay counted, as in
    /// flight, until the transport reports with
    /// [`ClientHandle::set_in_flight`] what it still holds; the controls'
    /// are released.
    pub fn drain(&self) -> Drained {
        let mut out = self.lock();
        // Taken whole: an idle connection keeps no queue capacity.
        let frames = Vec::from(std::mem::take(&mut out.frames));
        let bytes: usize = frames.iter().map(Bytes::len).sum();
        let controls = std::mem::take(&mut out.controls);
        let control_bytes: usize = controls.iter().map(control_cost).sum();
        out.queued = out.queued.saturating_sub(bytes + control_bytes);
        out.in_flight += bytes;
        Drained {
            frames,
            bytes,
            controls,
            disconnect: out.disconnect.as_deref().cloned(),
        }
    }

    /// The transport reports how many bytes it holds for this client that
    /// the socket has not accepted yet (its write buffer after a feed, 0
    /// after a completed flush). They count against the queue limit, so a
    /// peer that stops reading is cut off once the queue and the write
    /// buffer together reach `client.queue_max_size`.
    pub fn set_in_flight(&self, bytes: usize) {
        self.lock().in_flight = bytes;
    }

    /// Bytes counted against the limit now: queued (held-back pushes and
    /// waiting actions included) plus in flight.
    pub fn queued_bytes(&self) -> usize {
        let out = self.lock();
        out.queued + out.in_flight
    }

    /// Resolves when something was queued since the last drain (a permit is
    /// kept, so a wakeup between drain and wait is not lost).
    ///
    /// Cancel safety: cancel safe.
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_marks_slow_and_drops_queue() {
        let h = ClientHandle::new("c", Encoding::Json, 10);
        assert!(h.push(Bytes::from_static(b"12345")));
        assert!(h.push(Bytes::from_static(b"12345")));
        assert!(!h.push(Bytes::from_static(b"1")));
        assert!(h.is_slow());
        let d = h.drain();
        assert!(d.frames.is_empty());
        assert_eq!(d.disconnect.unwrap().code, 3008);
    }

    #[test]
    fn held_back_pushes_count_against_the_limit() {
        let h = ClientHandle::new("c", Encoding::Json, 10);
        h.begin_pending("ch");
        assert!(h.push_channel("ch", 1, Bytes::from_static(b"1234")));
        assert!(h.push_channel("ch", 2, Bytes::from_static(b"1234")));
        assert_eq!(h.queued_bytes(), 8);
        // A reply on top of the held pushes does not fit.
        assert!(!h.push(Bytes::from_static(b"123")));
        assert!(h.is_slow());
        assert_eq!(h.drain().disconnect.unwrap().code, 3008);

        // Held pushes the reply covers are released, not queued.
        let h = ClientHandle::new("c", Encoding::Json, 10);
        h.begin_pending("ch");
        h.push_channel("ch", 1, Bytes::from_static(b"1234"));
        h.push_channel("ch", 2, Bytes::from_static(b"1234"));
        assert!(h.end_pending("ch", vec![Bytes::from_static(b"r")], 1));
        assert_eq!(h.queued_bytes(), 5);
        assert_eq!(h.drain().frames, vec!["r", "1234"]);
    }

    #[test]
    fn bytes_in_flight_count_until_the_transport_wrote_them() {
        let h = ClientHandle::new("c", Encoding::Json, 10);
        assert!(h.push(Bytes::from_static(b"123456")));
        let d = h.drain();
        assert_eq!(d.bytes, 6);
        // Drained but not written: still counted.
        assert_eq!(h.queued_bytes(), 6);
        assert!(!h.push(Bytes::from_static(b"12345")));
        assert!(h.is_slow());

        let h = ClientHandle::new("c", Encoding::Json, 10);
        h.push(Bytes::from_static(b"123456"));
        h.drain();
        h.set_in_flight(0);
        assert!(h.push(Bytes::from_static(b"1234567890")));
        assert!(!h.is_slow());
    }

    #[test]
    fn actions_count_until_drained() {
        let h = ClientHandle::new("c", Encoding::Json, 200);
        h.control(Control::Unsubscribe("a".into()));
        assert_eq!(
            h.queued_bytes(),
            control_cost(&Control::Unsubscribe("a".into()))
        );
        assert_eq!(h.drain().controls.len(), 1);
        assert_eq!(h.queued_bytes(), 0);
        for _ in 0..10 {
            h.control(Control::InsufficientState("a".repeat(10)));
        }
        assert!(h.is_slow());
        let d = h.drain();
        assert!(d.controls.is_empty());
        assert_eq!(d.disconnect.unwrap().code, 3008);
    }

    #[test]
    fn pending_pushes_follow_the_reply_and_skip_recovered_offsets() {
        let h = ClientHandle::new("c", Encoding::Json, 0);
        h.begin_pending("ch");
        h.push_channel("ch", 3, Bytes::from_static(b"p3"));
        h.push_channel("ch", 4, Bytes::from_static(b"p4"));
        h.push_channel("other", 1, Bytes::from_static(b"o1"));
        h.end_pending("ch", vec![Bytes::from_static(b"reply")], 3);
        let d = h.drain();
        assert_eq!(d.frames, vec!["o1", "reply", "p4"]);
    }

    /// A transport that records what was written directly and holds back
    /// `left` bytes of each write.
    #[derive(Default)]
    struct Recorder {
        written: Mutex<Vec<Bytes>>,
        left: std::sync::atomic::AtomicUsize,
    }

    impl DirectWrite for Recorder {
        fn try_write(&self, message: Bytes) -> Result<usize, ()> {
            self.written.lock().unwrap().push(message);
            Ok(self.left.load(Ordering::Relaxed))
        }
    }

    /// A transport that takes directly only what does not start with 0.
    struct Picky(Recorder);

    impl DirectWrite for Picky {
        fn try_write(&self, message: Bytes) -> Result<usize, ()> {
            self.0.try_write(message)
        }
        fn accepts(&self, message: &[u8]) -> bool {
            message.first() != Some(&0)
        }
    }

    #[test]
    fn what_the_transport_does_not_accept_directly_is_queued() {
        let h = ClientHandle::new("c", Encoding::Json, 0);
        let picky = std::sync::Arc::new(Picky(Recorder::default()));
        h.set_direct(Some(picky.clone()));
        assert!(h.push_channel_now("ch", 0, Bytes::from_static(b"\0record")));
        assert!(picky.0.written.lock().unwrap().is_empty());
        assert_eq!(h.drain().frames, vec![Bytes::from_static(b"\0record")]);
        h.set_in_flight(0);
        assert!(h.push_channel_now("ch", 0, Bytes::from_static(b"{}")));
        assert_eq!(*picky.0.written.lock().unwrap(), vec!["{}"]);
    }

    #[test]
    fn an_idle_client_gets_pushes_directly_and_order_is_kept_otherwise() {
        let h = ClientHandle::new("c", Encoding::Json, 0);
        let rec = std::sync::Arc::new(Recorder::default());
        h.set_direct(Some(rec.clone()));
        // Idle: written at once, nothing queued or counted.
        assert!(h.push_channel_now("ch", 1, Bytes::from_static(b"p1")));
        assert_eq!(*rec.written.lock().unwrap(), vec!["p1"]);
        assert_eq!(h.queued_bytes(), 0);
        // Something queued (a reply): the push queues behind it.
        h.push(Bytes::from_static(b"reply"));
        assert!(h.push_channel_now("ch", 2, Bytes::from_static(b"p2")));
        assert_eq!(rec.written.lock().unwrap().len(), 1);
        assert_eq!(h.drain().frames, vec!["reply", "p2"]);
        // Drained but not yet written by the transport: still queued.
        assert!(h.push_channel_now("ch", 3, Bytes::from_static(b"p3")));
        assert_eq!(rec.written.lock().unwrap().len(), 1);
        h.drain();
        h.set_in_flight(0);
        // The transport kept part of a direct write: the next push waits
        // for the task's flush.
        rec.left.store(2, Ordering::Relaxed);
        assert!(h.push_channel_now("ch", 4, Bytes::from_static(b"p4")));
        assert_eq!(h.queued_bytes(), 2);
        assert!(h.push_channel_now("ch", 5, Bytes::from_static(b"p5")));
        assert_eq!(rec.written.lock().unwrap().len(), 2);
        assert_eq!(h.drain().frames, vec!["p5"]);
        // A channel being subscribed holds its pushes back.
        h.set_in_flight(0);
        rec.left.store(0, Ordering::Relaxed);
        h.begin_pending("new");
        assert!(h.push_channel_now("new", 1, Bytes::from_static(b"n1")));
        assert_eq!(rec.written.lock().unwrap().len(), 2);
        h.end_pending("new", vec![Bytes::from_static(b"sub")], 0);
        assert_eq!(h.drain().frames, vec!["sub", "n1"]);
        // Removed: the queue again.
        h.set_in_flight(0);
        h.set_direct(None);
        assert!(h.push_channel_now("ch", 6, Bytes::from_static(b"p6")));
        assert_eq!(h.drain().frames, vec!["p6"]);
    }
}
