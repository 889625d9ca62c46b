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
    /// subscribe reply is queued (offset, frame).
    pending: HashMap<String, Vec<(u64, Bytes)>>,
    controls: Vec<Control>,
    disconnect: Option<Disconnect>,
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
            out.pending.clear();
            out.controls.clear();
            out.queued = 0;
            out.disconnect = Some(DisconnectCode::SLOW.to_disconnect());
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
        if out.pending.contains_key(channel) {
            let len = frame.len();
            if !self.reserve_locked(&mut out, len) {
                return false;
            }
            if let Some(p) = out.pending.get_mut(channel) {
                p.push((offset, frame));
            }
            return true;
        }
        let ok = self.push_locked(&mut out, frame);
        drop(out);
        self.notify.notify_one();
        ok
    }

    /// Holds back pushes of `channel` until [`ClientHandle::end_pending`].
    pub fn begin_pending(&self, channel: &str) {
        let mut out = self.lock();
        if out.disconnect.is_none() {
            out.pending.insert(channel.to_owned(), Vec::new());
        }
    }

    /// Queues `replies` (the subscribe reply or push and the recovered
    /// publications, if any), then the held-back pushes of `channel` whose
    /// offset is above `after` (all of them when `after` is 0 or the push
    /// has no offset), and stops holding back. Returns false on overflow.
    pub fn end_pending(&self, channel: &str, replies: Vec<Bytes>, after: u64) -> bool {
        let mut out = self.lock();
        let held = out.pending.remove(channel).unwrap_or_default();
        if out.pending.is_empty() {
            // Give the table's memory back: most connections subscribe a
            // few times at the start and then idle.
            out.pending = HashMap::new();
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
            out.disconnect = Some(d);
        }
        drop(out);
        self.notify.notify_one();
        self.closing.notify_one();
    }

    /// The disconnect the client is marked for, if any.
    pub fn pending_disconnect(&self) -> Option<Disconnect> {
        self.lock().disconnect.clone()
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
        let frames: Vec<Bytes> = out.frames.drain(..).collect();
        let bytes: usize = frames.iter().map(Bytes::len).sum();
        let controls = std::mem::take(&mut out.controls);
        let control_bytes: usize = controls.iter().map(control_cost).sum();
        out.queued = out.queued.saturating_sub(bytes + control_bytes);
        out.in_flight += bytes;
        Drained {
            frames,
            bytes,
            controls,
            disconnect: out.disconnect.clone(),
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
}
