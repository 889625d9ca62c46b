//! The [`Hub`]: which local client is subscribed to which channel, sharded
//! by channel hash so that the publish path never takes a global lock, each
//! channel's subscribers a copy-on-write set of fixed-size chunks.
//!
//! Lock order: a hub shard, then a client handle's queue; never the other
//! way round.

use std::collections::hash_map::DefaultHasher;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::outbound::{ClientHandle, Control, Drained};

/// Number of shards of the channel map.
pub const HUB_SHARDS: usize = 64;

/// Subscribers per [`Chunk`] of a channel's subscriber set. Subscribe and
/// unsubscribe copy at most one chunk (when a fan-out still holds it), so
/// they cost O(CHUNK) whatever the channel's and the node's size; a fan-out
/// job delivers one chunk.
pub const CHUNK: usize = 128;

/// One local subscriber of a channel.
#[derive(Clone, Debug)]
pub struct Subscriber {
    /// The client.
    pub handle: Arc<ClientHandle>,
    /// Whether it gets join/leave pushes.
    pub join_leave: bool,
}

/// A subscriber in its chunk, with a flag shared by every copy of the
/// chunk: cleared when it unsubscribes, so that jobs still holding an older
/// copy of the chunk skip it (a subscriber that left and subscribed again
/// gets nothing from before through its old entry).
#[derive(Clone, Debug)]
struct Slot {
    sub: Subscriber,
    live: Arc<AtomicBool>,
}

/// At most [`CHUNK`] subscribers of one channel. Shared (immutable) by the
/// snapshots and fan-out jobs that hold it; a change copies it only while
/// one of them does (copy-on-write through `Arc::make_mut`). A subscriber
/// stays in its chunk, at its slot, for as long as it is subscribed:
/// removal leaves a hole that a later add fills.
#[derive(Clone, Debug, Default)]
pub struct Chunk {
    slots: Vec<Option<Slot>>,
    len: usize,
    join_leave: usize,
}

impl Chunk {
    /// The subscribers in this chunk (still subscribed: an older copy of
    /// the chunk skips those that left since).
    pub fn subscribers(&self) -> impl Iterator<Item = &Subscriber> {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.live.load(Ordering::Acquire))
            .map(|s| &s.sub)
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the chunk has no subscriber (its slots were all freed).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of subscribers that get join/leave pushes.
    pub fn join_leave(&self) -> usize {
        self.join_leave
    }

    /// Slots allocated (subscribers plus holes), for tests and sizing.
    pub fn capacity_used(&self) -> usize {
        self.slots.len()
    }
}

/// The subscribers of a channel at one moment: taken under the shard lock
/// (an `Arc` clone when nothing changed since the last one), used without
/// it. Later subscribes and unsubscribes do not change it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    chunks: Arc<[Arc<Chunk>]>,
    len: usize,
    /// Subscribers by encoding: `[json, binary]`.
    encodings: [usize; 2],
}

impl Snapshot {
    /// The chunks, chunk 0 first (empty chunks included).
    pub fn chunks(&self) -> &[Arc<Chunk>] {
        &self.chunks
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no subscriber.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether some subscriber speaks a binary (`true`) or a text (`false`)
    /// encoding.
    pub fn uses(&self, binary: bool) -> bool {
        let [json, bin] = self.encodings;
        if binary {
            bin > 0
        } else {
            json > 0
        }
    }

    /// Every subscriber.
    pub fn subscribers(&self) -> impl Iterator<Item = &Subscriber> {
        self.chunks.iter().flat_map(|c| c.subscribers())
    }
}

/// What the node does with a join or leave event of a channel
/// ([`Hub::join_leave`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum JoinLeave {
    /// Nobody here wants join/leave pushes.
    Nobody,
    /// Push to these subscribers (those with `join_leave`). `resumed`: the
    /// channel just came back under the limit.
    Deliver {
        /// The subscribers.
        snapshot: Snapshot,
        /// True on the first event after the channel went back under the
        /// limit.
        resumed: bool,
    },
    /// The channel has more local subscribers than the limit: no push.
    /// `crossed`: the first event since it went over.
    Muted {
        /// Local subscribers of the channel.
        subscribers: usize,
        /// True on the first event since the channel went over the limit.
        crossed: bool,
    },
}

/// What the node does with a publication after checking its offset
/// against the last one it delivered in the channel ([`Hub::advance`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// The next offset (or a channel without a known position): deliver.
    Deliver,
    /// At or below the recorded position: a subscriber was given a newer
    /// position by its subscribe reply before this publication arrived
    /// live. Deliver it (each subscriber's subscribe filter drops what it
    /// already has); the recorded position does not move back.
    Stale,
    /// Offsets were skipped or the epoch changed: publications were lost on
    /// the way to this node. Do not deliver; tell the subscribers.
    Gap,
}

/// The local subscribers of one channel: chunks, where each client sits,
/// and a cached snapshot.
#[derive(Default)]
struct Channel {
    chunks: Vec<Arc<Chunk>>,
    /// client id → (chunk, slot).
    index: HashMap<String, (u32, u32)>,
    /// Chunks with a free slot (fewer than CHUNK subscribers); adds take
    /// the last one, so holes are filled before a chunk is added.
    open: Vec<u32>,
    encodings: [usize; 2],
    join_leave: usize,
    /// The snapshot handed out since the last change, if any.
    snapshot: Option<Snapshot>,
    /// Join/leave pushes stopped: more subscribers than the limit.
    muted: bool,
}

fn encoding_slot(sub: &Subscriber) -> usize {
    usize::from(sub.handle.encoding().is_binary())
}

impl Channel {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn count(&mut self, sub: &Subscriber, up: bool) {
        let jl = usize::from(sub.join_leave);
        if let Some(n) = self.encodings.get_mut(encoding_slot(sub)) {
            *n = if up { *n + 1 } else { n.saturating_sub(1) };
        }
        self.join_leave = if up {
            self.join_leave + jl
        } else {
            self.join_leave.saturating_sub(jl)
        };
    }

    /// Adds or replaces (same client id: same slot) a subscriber.
    fn add(&mut self, sub: Subscriber) {
        // Drop the cached snapshot first: if no job holds the chunk, the
        // change below is made in place.
        self.snapshot = None;
        if let Some(&(c, s)) = self.index.get(sub.handle.id()) {
            let new = sub.clone();
            let old = self
                .chunks
                .get_mut(c as usize)
                .map(Arc::make_mut)
                .and_then(|chunk| {
                    // The same entry (and liveness) with the new settings.
                    let slot = chunk.slots.get_mut(s as usize)?.as_mut()?;
                    let old = Some(std::mem::replace(&mut slot.sub, sub));
                    if let Some(o) = &old {
                        chunk.join_leave =
                            chunk.join_leave.saturating_sub(usize::from(o.join_leave));
                    }
                    chunk.join_leave += usize::from(new.join_leave);
                    old
                });
            if let Some(o) = old {
                self.count(&o, false);
            }
            self.count(&new, true);
            return;
        }
        let c = match self.open.last() {
            Some(&c) => c,
            None => {
                let c = u32::try_from(self.chunks.len()).unwrap_or(u32::MAX);
                self.chunks.push(Arc::new(Chunk::default()));
                self.open.push(c);
                c
            }
        };
        if self.chunks.get(c as usize).is_none() {
            return;
        }
        self.count(&sub, true);
        let Some(chunk) = self.chunks.get_mut(c as usize).map(Arc::make_mut) else {
            return;
        };
        let s = match chunk.slots.iter().position(Option::is_none) {
            Some(s) => s,
            None => {
                chunk.slots.push(None);
                chunk.slots.len() - 1
            }
        };
        chunk.len += 1;
        chunk.join_leave += usize::from(sub.join_leave);
        let id = sub.handle.id().to_owned();
        if let Some(slot) = chunk.slots.get_mut(s) {
            *slot = Some(Slot {
                sub,
                live: Arc::new(AtomicBool::new(true)),
            });
        }
        if chunk.len >= CHUNK {
            self.open.pop();
        }
        self.index
            .insert(id, (c, u32::try_from(s).unwrap_or(u32::MAX)));
    }

    /// Removes a subscriber (no-op when absent).
    fn remove(&mut self, client: &str) {
        let Some((c, s)) = self.index.remove(client) else {
            return;
        };
        self.snapshot = None;
        let Some(chunk) = self.chunks.get_mut(c as usize).map(Arc::make_mut) else {
            return;
        };
        let Some(Slot { sub: old, live }) = chunk.slots.get_mut(s as usize).and_then(Option::take)
        else {
            return;
        };
        live.store(false, Ordering::Release);
        let was_full = chunk.len >= CHUNK;
        chunk.len = chunk.len.saturating_sub(1);
        chunk.join_leave = chunk.join_leave.saturating_sub(usize::from(old.join_leave));
        // Keep the slots dense at the end: a free slot is found by a scan
        // of at most CHUNK entries.
        while matches!(chunk.slots.last(), Some(None)) {
            chunk.slots.pop();
        }
        if chunk.is_empty() {
            chunk.slots = Vec::new();
        }
        if was_full {
            self.open.push(c);
        }
        self.count(&old, false);
    }

    fn snapshot(&mut self) -> Snapshot {
        if let Some(s) = &self.snapshot {
            return s.clone();
        }
        let s = Snapshot {
            chunks: self.chunks.iter().cloned().collect(),
            len: self.len(),
            encodings: self.encodings,
        };
        self.snapshot = Some(s.clone());
        s
    }
}

#[derive(Default)]
struct Shard {
    channels: HashMap<String, Channel>,
    /// The stream position of the last publication delivered (or the
    /// position a first subscriber saw), per channel with subscribers.
    positions: HashMap<String, crate::broker::StreamPosition>,
}

/// Channel → local subscribers, in [`HUB_SHARDS`] shards; plus user →
/// connections, for the server API.
///
/// A channel's subscribers are a copy-on-write set of [`Chunk`]s: the
/// fan-out takes a [`Snapshot`] under the shard lock and queues to the
/// sessions after releasing it, so no lock that another channel needs is
/// held while pushing.
pub struct Hub {
    shards: Vec<Mutex<Shard>>,
    /// Serializes broker subscribe/unsubscribe per shard so that a channel
    /// emptied and refilled at once stays subscribed at the broker.
    sub_locks: Vec<tokio::sync::Mutex<()>>,
    users: Mutex<HashMap<String, HashMap<String, Arc<ClientHandle>>>>,
    /// Connections registered in `users` (changed under its lock), so that
    /// counting them costs O(1) on every connect.
    clients: AtomicUsize,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Hub {
            shards: (0..HUB_SHARDS).map(|_| Mutex::default()).collect(),
            sub_locks: (0..HUB_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            users: Mutex::default(),
            clients: AtomicUsize::new(0),
        }
    }

    /// The hash of a channel name that picks its shard (and, in the
    /// fan-out, its workers).
    pub fn channel_hash(channel: &str) -> u64 {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        h.finish()
    }

    fn index(channel: &str) -> usize {
        (Self::channel_hash(channel) as usize) % HUB_SHARDS
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        // `index` is a hash modulo HUB_SHARDS, and `shards` holds exactly
        // HUB_SHARDS locks (built in `new`, never resized).
        #[allow(clippy::indexing_slicing)]
        self.shards[Self::index(channel)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The lock that orders broker subscribe/unsubscribe calls for
    /// `channel`'s shard; hold it across "change the hub, call the broker".
    pub async fn sub_lock(&self, channel: &str) -> tokio::sync::MutexGuard<'_, ()> {
        // As in `shard`: `sub_locks` holds HUB_SHARDS locks.
        #[allow(clippy::indexing_slicing)]
        self.sub_locks[Self::index(channel)].lock().await
    }

    /// Adds a subscriber; true when it is the channel's first one. O(CHUNK)
    /// at most, whatever the number of subscribers.
    pub fn add(&self, channel: &str, sub: Subscriber) -> bool {
        let mut shard = self.shard(channel);
        let subs = match shard.channels.entry(channel.to_owned()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Channel::default()),
        };
        let first = subs.is_empty();
        subs.add(sub);
        first
    }

    /// Removes a subscriber; true when the channel has no subscriber left.
    /// O(CHUNK) at most.
    pub fn remove(&self, channel: &str, client: &str) -> bool {
        let mut shard = self.shard(channel);
        let Some(subs) = shard.channels.get_mut(channel) else {
            return true;
        };
        subs.remove(client);
        if subs.is_empty() {
            shard.channels.remove(channel);
            shard.positions.remove(channel);
            true
        } else {
            false
        }
    }

    /// Whether `channel` has local subscribers.
    pub fn has_subscribers(&self, channel: &str) -> bool {
        self.shard(channel).channels.contains_key(channel)
    }

    /// The subscribers of `channel` now (`None` without any). The shard
    /// lock is held only to clone the cached snapshot (or to build it after
    /// a change: one `Arc` clone per chunk).
    pub fn snapshot(&self, channel: &str) -> Option<Snapshot> {
        self.shard(channel)
            .channels
            .get_mut(channel)
            .map(Channel::snapshot)
    }

    /// Decides about a join or leave event of `channel`: above `max` local
    /// subscribers (0 = no limit) join/leave pushes stop until the channel
    /// is back at or below it (see [`JoinLeave`]).
    pub fn join_leave(&self, channel: &str, max: usize) -> JoinLeave {
        let mut shard = self.shard(channel);
        let Some(ch) = shard.channels.get_mut(channel) else {
            return JoinLeave::Nobody;
        };
        let n = ch.len();
        if max > 0 && n > max {
            let crossed = !ch.muted;
            ch.muted = true;
            return JoinLeave::Muted {
                subscribers: n,
                crossed,
            };
        }
        let resumed = ch.muted;
        ch.muted = false;
        if ch.join_leave == 0 {
            return JoinLeave::Nobody;
        }
        JoinLeave::Deliver {
            snapshot: ch.snapshot(),
            resumed,
        }
    }

    /// Calls `f` for every local subscriber of `channel`, on a snapshot
    /// (no lock held while `f` runs).
    pub fn for_each_subscriber(&self, channel: &str, f: impl FnMut(&Subscriber)) {
        if let Some(s) = self.snapshot(channel) {
            s.subscribers().for_each(f);
        }
    }

    /// Checks a publication's position against the last one delivered in
    /// `channel` and records it (see [`Advance`]). Publications without a
    /// stream (offset 0) are always delivered. Call in the order the broker
    /// delivers.
    pub fn advance(&self, channel: &str, pos: &crate::broker::StreamPosition) -> Advance {
        if pos.offset == 0 {
            return Advance::Deliver;
        }
        let mut shard = self.shard(channel);
        if !shard.channels.contains_key(channel) {
            return Advance::Deliver;
        }
        let verdict = match shard.positions.get(channel) {
            None => Advance::Deliver,
            Some(last) if last.epoch != pos.epoch => Advance::Gap,
            Some(last) if pos.offset <= last.offset => return Advance::Stale,
            Some(last) if pos.offset == last.offset + 1 => Advance::Deliver,
            Some(_) => Advance::Gap,
        };
        shard.positions.insert(channel.to_owned(), pos.clone());
        verdict
    }

    /// Records the stream position a subscriber of `channel` was given,
    /// unless the channel already has one (the live stream knows better).
    pub fn note_position(&self, channel: &str, pos: &crate::broker::StreamPosition) {
        if pos.epoch.is_empty() {
            return;
        }
        let mut shard = self.shard(channel);
        if shard.channels.contains_key(channel) && !shard.positions.contains_key(channel) {
            shard.positions.insert(channel.to_owned(), pos.clone());
        }
    }

    /// The recorded position of `channel`, if any.
    pub fn position(&self, channel: &str) -> Option<crate::broker::StreamPosition> {
        self.shard(channel).positions.get(channel).cloned()
    }

    /// Replaces the recorded position of `channel` (after a gap was
    /// reported) if the channel still has subscribers.
    pub fn reset_position(&self, channel: &str, pos: &crate::broker::StreamPosition) {
        let mut shard = self.shard(channel);
        if shard.channels.contains_key(channel) {
            shard.positions.insert(channel.to_owned(), pos.clone());
        }
    }

    /// Every channel with a recorded position.
    pub fn positions(&self) -> Vec<(String, crate::broker::StreamPosition)> {
        let mut all = Vec::new();
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(s.positions.iter().map(|(c, p)| (c.clone(), p.clone())));
        }
        all
    }

    /// The subscriber count of every channel with local subscribers.
    pub fn channels(&self) -> Vec<(String, usize)> {
        let mut all = Vec::new();
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(s.channels.iter().map(|(c, subs)| (c.clone(), subs.len())));
        }
        all
    }

    /// Number of channels and of subscriptions.
    pub fn counts(&self) -> (usize, usize) {
        let (mut channels, mut subs) = (0, 0);
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            channels += s.channels.len();
            subs += s.channels.values().map(Channel::len).sum::<usize>();
        }
        (channels, subs)
    }

    /// Registers a connection of `user`.
    pub fn add_user(&self, user: &str, handle: Arc<ClientHandle>) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let old = users
            .entry(user.to_owned())
            .or_default()
            .insert(handle.id().to_owned(), handle);
        if old.is_none() {
            self.clients.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Unregisters a connection of `user`.
    pub fn remove_user(&self, user: &str, client: &str) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = users.get_mut(user) {
            if m.remove(client).is_some() {
                self.clients.fetch_sub(1, Ordering::Relaxed);
            }
            if m.is_empty() {
                users.remove(user);
            }
        }
    }

    /// The connections of `user` (all of them when `client` is empty, else
    /// only that one).
    pub fn user_clients(&self, user: &str, client: &str) -> Vec<Arc<ClientHandle>> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .get(user)
            .map(|m| {
                m.values()
                    .filter(|h| client.is_empty() || h.id() == client)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many connections `user` has (O(1)).
    pub fn user_client_count(&self, user: &str) -> usize {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users.get(user).map_or(0, HashMap::len)
    }

    /// Every connection.
    pub fn all_clients(&self) -> Vec<Arc<ClientHandle>> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users.values().flat_map(|m| m.values().cloned()).collect()
    }

    /// Number of connections and of distinct users (O(1): no scan of the
    /// users table, which every connect would otherwise pay for).
    pub fn client_counts(&self) -> (usize, usize) {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        (self.clients.load(Ordering::Relaxed), users.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wshub_protocol::Encoding;

    #[test]
    fn client_counts_follow_adds_and_removes() {
        let hub = Hub::new();
        let h = |id: &str| Arc::new(ClientHandle::new(id, Encoding::Json, 0));
        hub.add_user("u1", h("a"));
        hub.add_user("u1", h("b"));
        hub.add_user("u2", h("c"));
        hub.add_user("", h("d"));
        hub.add_user("u1", h("a")); // the same connection again
        assert_eq!(hub.client_counts(), (4, 3));
        assert_eq!(hub.user_client_count("u1"), 2);
        hub.remove_user("u1", "a");
        hub.remove_user("u1", "a"); // twice: counted once
        hub.remove_user("u9", "zz"); // unknown
        assert_eq!(hub.client_counts(), (3, 3));
        hub.remove_user("u1", "b");
        assert_eq!(hub.client_counts(), (2, 2));
        assert_eq!(hub.user_client_count("u1"), 0);
    }

    #[test]
    fn hub_add_remove_reports_first_and_last() {
        let hub = Hub::new();
        let a = Arc::new(ClientHandle::new("a", Encoding::Json, 0));
        let b = Arc::new(ClientHandle::new("b", Encoding::Json, 0));
        assert!(hub.add(
            "x",
            Subscriber {
                handle: a,
                join_leave: false
            }
        ));
        assert!(!hub.add(
            "x",
            Subscriber {
                handle: b,
                join_leave: false
            }
        ));
        assert_eq!(hub.counts(), (1, 2));
        assert!(!hub.remove("x", "a"));
        assert!(hub.remove("x", "b"));
        assert!(!hub.has_subscribers("x"));
    }

    #[test]
    fn advance_tells_next_stale_and_gaps_and_forgets_empty_channels() {
        use crate::broker::StreamPosition as P;
        let hub = Hub::new();
        // No subscribers: nothing is tracked.
        assert_eq!(hub.advance("x", &P::new(5, "e")), Advance::Deliver);
        assert_eq!(hub.position("x"), None);
        let a = Arc::new(ClientHandle::new("a", Encoding::Json, 0));
        hub.add(
            "x",
            Subscriber {
                handle: a,
                join_leave: false,
            },
        );
        // Without a stream (offset 0) always deliver, never track.
        assert_eq!(hub.advance("x", &P::default()), Advance::Deliver);
        assert_eq!(hub.position("x"), None);
        hub.note_position("x", &P::new(3, "e"));
        hub.note_position("x", &P::new(9, "e")); // the first one stays
        assert_eq!(hub.advance("x", &P::new(4, "e")), Advance::Deliver);
        assert_eq!(hub.advance("x", &P::new(4, "e")), Advance::Stale);
        assert_eq!(hub.advance("x", &P::new(2, "e")), Advance::Stale);
        assert_eq!(hub.position("x"), Some(P::new(4, "e")));
        assert_eq!(hub.advance("x", &P::new(7, "e")), Advance::Gap);
        assert_eq!(hub.advance("x", &P::new(8, "e")), Advance::Deliver);
        // A new epoch is a gap even at offset 1.
        assert_eq!(hub.advance("x", &P::new(1, "f")), Advance::Gap);
        assert_eq!(hub.positions(), vec![("x".to_owned(), P::new(1, "f"))]);
        assert!(hub.remove("x", "a"));
        assert_eq!(hub.position("x"), None);
    }

    fn sub(id: &str, join_leave: bool) -> Subscriber {
        Subscriber {
            handle: Arc::new(ClientHandle::new(id, Encoding::Json, 0)),
            join_leave,
        }
    }

    fn chunk_lens(s: &Snapshot) -> Vec<usize> {
        s.chunks().iter().map(|c| c.len()).collect()
    }

    fn ids(s: &Snapshot) -> Vec<String> {
        let mut v: Vec<String> = s.subscribers().map(|s| s.handle.id().to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn chunked_set_fills_chunks_then_holes_and_never_moves_a_subscriber() {
        let hub = Hub::new();
        for i in 0..300 {
            hub.add("x", sub(&format!("c{i}"), false));
        }
        let s = hub.snapshot("x").unwrap();
        assert_eq!(chunk_lens(&s), [CHUNK, CHUNK, 300 - 2 * CHUNK]);
        assert_eq!(s.len(), 300);
        assert_eq!(hub.counts(), (1, 300));
        // Where each client sits.
        let place = |s: &Snapshot, id: &str| {
            s.chunks()
                .iter()
                .enumerate()
                .find_map(|(c, ch)| {
                    ch.slots
                        .iter()
                        .position(|x| x.as_ref().is_some_and(|x| x.sub.handle.id() == id))
                        .map(|slot| (c, slot))
                })
                .unwrap()
        };
        let before = place(&s, "c200");
        // Holes in chunk 0 and 1; later adds fill them before the last
        // chunk grows, and nobody moves.
        hub.remove("x", "c5");
        hub.remove("x", "c130");
        let s = hub.snapshot("x").unwrap();
        assert_eq!(chunk_lens(&s), [CHUNK - 1, CHUNK - 1, 300 - 2 * CHUNK]);
        assert_eq!(place(&s, "c200"), before);
        hub.add("x", sub("n1", false));
        hub.add("x", sub("n2", false));
        let s = hub.snapshot("x").unwrap();
        assert_eq!(chunk_lens(&s), [CHUNK, CHUNK, 300 - 2 * CHUNK]);
        assert_eq!(place(&s, "n1"), (1, 2));
        assert_eq!(place(&s, "n2"), (0, 5));
        assert_eq!(place(&s, "c200"), before);
        // The same client again replaces its entry in place.
        hub.add("x", sub("c200", true));
        let s = hub.snapshot("x").unwrap();
        assert_eq!(s.len(), 300);
        assert_eq!(place(&s, "c200"), before);
        assert_eq!(s.chunks()[1].join_leave(), 1);
        // Removing everybody forgets the channel.
        let all = ids(&s);
        for (n, id) in all.iter().enumerate() {
            assert_eq!(hub.remove("x", id), n == all.len() - 1);
        }
        assert!(hub.snapshot("x").is_none());
        assert_eq!(hub.counts(), (0, 0));
    }

    #[test]
    fn snapshots_do_not_change_and_a_change_copies_one_chunk() {
        let hub = Hub::new();
        for i in 0..1000 {
            hub.add("x", sub(&format!("c{i}"), false));
        }
        let old = hub.snapshot("x").unwrap();
        // Unchanged: the same snapshot, not a rebuild.
        let again = hub.snapshot("x").unwrap();
        assert!(Arc::ptr_eq(&old.chunks, &again.chunks));
        hub.remove("x", "c3");
        hub.add("x", sub("late", false));
        hub.remove("x", "c999");
        // The old snapshot still has exactly who was there.
        assert_eq!(old.len(), 1000);
        assert_eq!(old.chunks().iter().map(|c| c.len()).sum::<usize>(), 1000);
        assert!(!old.subscribers().any(|s| s.handle.id() == "late"));
        // Those that left since are skipped by the old snapshot too: a
        // job holding it does not push to them.
        assert_eq!(old.subscribers().count(), 998);
        assert!(!old.subscribers().any(|s| s.handle.id() == "c3"));
        let new = hub.snapshot("x").unwrap();
        assert_eq!(new.len(), 999);
        assert!(new.subscribers().any(|s| s.handle.id() == "late"));
        // Only the chunks that changed were copied (chunk 0 for c3 and
        // late, the last one for c999); every other chunk is shared.
        let copied: Vec<usize> = (0..old.chunks().len())
            .filter(|&i| !Arc::ptr_eq(&old.chunks()[i], &new.chunks()[i]))
            .collect();
        assert_eq!(copied, [0, old.chunks().len() - 1]);
        for c in new.chunks() {
            assert!(c.capacity_used() <= CHUNK);
        }
        // Without a snapshot held, a change copies nothing.
        drop((old, again, new));
        let before = Arc::as_ptr(&hub.snapshot("x").unwrap().chunks()[2]);
        hub.remove("x", "c300");
        assert_eq!(Arc::as_ptr(&hub.snapshot("x").unwrap().chunks()[2]), before);
    }

    #[test]
    fn join_leave_is_muted_above_the_limit_and_resumes_at_it() {
        let hub = Hub::new();
        assert!(matches!(hub.join_leave("x", 2), JoinLeave::Nobody));
        hub.add("x", sub("a", false));
        assert!(matches!(hub.join_leave("x", 2), JoinLeave::Nobody));
        hub.add("x", sub("b", true));
        assert!(matches!(
            hub.join_leave("x", 2),
            JoinLeave::Deliver { resumed: false, .. }
        ));
        hub.add("x", sub("c", true));
        assert!(matches!(
            hub.join_leave("x", 2),
            JoinLeave::Muted {
                subscribers: 3,
                crossed: true
            }
        ));
        assert!(matches!(
            hub.join_leave("x", 2),
            JoinLeave::Muted { crossed: false, .. }
        ));
        // 0: no limit.
        assert!(matches!(hub.join_leave("x", 0), JoinLeave::Deliver { .. }));
        hub.join_leave("x", 2);
        hub.remove("x", "a");
        match hub.join_leave("x", 2) {
            JoinLeave::Deliver { snapshot, resumed } => {
                assert!(resumed);
                assert_eq!(ids(&snapshot), ["b", "c"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
