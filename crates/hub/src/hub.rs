//! The [`Hub`]: which local client is subscribed to which channel, sharded
//! by channel hash so that the publish path never takes a global lock.
//!
//! Lock order: a hub shard, then a client handle's queue; never the other
//! way round.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use crate::outbound::{ClientHandle, Control, Drained};

/// Number of shards of the channel map.
pub const HUB_SHARDS: usize = 64;

/// One local subscriber of a channel.
#[derive(Clone, Debug)]
pub struct Subscriber {
    /// The client.
    pub handle: Arc<ClientHandle>,
    /// Whether it gets join/leave pushes.
    pub join_leave: bool,
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

#[derive(Default)]
struct Shard {
    channels: HashMap<String, HashMap<String, Subscriber>>,
    /// The stream position of the last publication delivered (or the
    /// position a first subscriber saw), per channel with subscribers.
    positions: HashMap<String, crate::broker::StreamPosition>,
}

/// Channel → local subscribers, in [`HUB_SHARDS`] shards; plus user →
/// connections, for the server API.
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

    fn index(channel: &str) -> usize {
        let mut h = DefaultHasher::new();
        channel.hash(&mut h);
        (h.finish() as usize) % HUB_SHARDS
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

    /// Adds a subscriber; true when it is the channel's first one.
    pub fn add(&self, channel: &str, sub: Subscriber) -> bool {
        let mut shard = self.shard(channel);
        let subs = shard.channels.entry(channel.to_owned()).or_default();
        let first = subs.is_empty();
        subs.insert(sub.handle.id().to_owned(), sub);
        first
    }

    /// Removes a subscriber; true when the channel has no subscriber left.
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

    /// Calls `f` for every local subscriber of `channel`, under the shard
    /// lock (keep `f` quick).
    pub fn for_each_subscriber(&self, channel: &str, mut f: impl FnMut(&Subscriber)) {
        let shard = self.shard(channel);
        if let Some(subs) = shard.channels.get(channel) {
            subs.values().for_each(&mut f);
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
            subs += s.channels.values().map(HashMap::len).sum::<usize>();
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
}
