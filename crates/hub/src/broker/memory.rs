//! The single-node broker: everything in process memory.

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    Broker, BrokerError, BrokerEventHandler, ClientInfo, HistoryFilter, HistoryOptions,
    HistoryResult, NodeInfo, Presence, PresenceStats, Publication, PublishOptions, StreamPosition,
};

/// Settings of a [`MemoryBroker`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MemoryBrokerConfig {
    /// Shards of channel state (history, presence, idempotency keys), each
    /// behind its own mutex (default 64).
    pub shards: usize,
    /// Stripes of the per-channel publish lock (default 1024). Channels that
    /// share a stripe publish one after the other.
    pub publish_locks: usize,
    /// Default time a stream position is kept after the last publish or
    /// history call (default 720 h, Centrifugo's `history_meta_ttl`).
    pub history_meta_ttl: Duration,
    /// Default time an idempotency key is remembered (default 5 min).
    pub idempotency_ttl: Duration,
    /// How often expired data is swept from memory (default 1 s). Expiry is
    /// also checked on every access, so this only bounds memory, not
    /// correctness.
    pub sweep_interval: Duration,
}

impl Default for MemoryBrokerConfig {
    fn default() -> Self {
        MemoryBrokerConfig {
            shards: 64,
            publish_locks: 1024,
            history_meta_ttl: Duration::from_secs(720 * 3600),
            idempotency_ttl: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(1),
        }
    }
}

impl MemoryBrokerConfig {
    /// Sets [`MemoryBrokerConfig::shards`] (at least 1).
    pub fn shards(mut self, v: usize) -> Self {
        self.shards = v.max(1);
        self
    }
    /// Sets [`MemoryBrokerConfig::publish_locks`] (at least 1).
    pub fn publish_locks(mut self, v: usize) -> Self {
        self.publish_locks = v.max(1);
        self
    }
    /// Sets [`MemoryBrokerConfig::history_meta_ttl`].
    pub fn history_meta_ttl(mut self, v: Duration) -> Self {
        self.history_meta_ttl = v;
        self
    }
    /// Sets [`MemoryBrokerConfig::idempotency_ttl`].
    pub fn idempotency_ttl(mut self, v: Duration) -> Self {
        self.idempotency_ttl = v;
        self
    }
    /// Sets [`MemoryBrokerConfig::sweep_interval`].
    pub fn sweep_interval(mut self, v: Duration) -> Self {
        self.sweep_interval = v;
        self
    }
}

/// What a [`MemoryBroker`] holds right now (for metrics and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Channel streams (positions), with or without publications.
    pub streams: usize,
    /// Publications kept in all histories.
    pub publications: usize,
    /// Presence entries in all channels.
    pub presence_entries: usize,
    /// Remembered idempotency keys.
    pub idempotency_keys: usize,
    /// Pending expiry timers.
    pub timers: usize,
}

/// The embedded single-node broker (see the [module docs](super) for the
/// design).
///
/// Cloning gives another handle to the same broker.
#[derive(Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("config", &self.inner.config)
            .field("started", &self.inner.handler.get().is_some())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

struct Inner {
    config: MemoryBrokerConfig,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    publish_locks: Box<[tokio::sync::Mutex<()>]>,
    handler: OnceLock<Arc<dyn BrokerEventHandler>>,
    closed: AtomicBool,
    nodes: Mutex<HashMap<String, (NodeInfo, Instant)>>,
    stop: watch::Sender<bool>,
}

type Timers = BinaryHeap<Reverse<Timer>>;

/// Channel state of one shard.
#[derive(Default)]
struct Shard {
    streams: HashMap<String, Stream>,
    presence: HashMap<String, HashMap<String, Lease>>,
    idempotency: HashMap<String, HashMap<String, Remembered>>,
    subscribed: HashSet<String>,
    /// Expiry deadlines, earliest first. An entry may be stale (its object
    /// got a later deadline or was replaced); the sweep checks and
    /// reschedules. Every object with a deadline has an entry at or before
    /// it (`timer` below records the earliest one).
    timers: Timers,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    key: TimerKey,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Stream(String),
    Presence(String, String),
    Idempotency(String, String),
}

struct Stream {
    epoch: String,
    top: u64,
    /// Offsets `top - len + 1 ..= top`, oldest first.
    pubs: VecDeque<Arc<Publication>>,
    last_publish: Option<Instant>,
    pubs_expire_at: Option<Instant>,
    meta_expire_at: Instant,
    timer: Option<Instant>,
}

struct Lease {
    info: ClientInfo,
    expire_at: Instant,
    timer: Option<Instant>,
}

struct Remembered {
    position: StreamPosition,
    expire_at: Instant,
}

impl Stream {
    fn new(now: Instant, meta_ttl: Duration) -> Self {
        Stream {
            epoch: new_epoch(),
            top: 0,
            pubs: VecDeque::new(),
            last_publish: None,
            pubs_expire_at: None,
            meta_expire_at: now + meta_ttl,
            timer: None,
        }
    }

    fn expire_pubs(&mut self, now: Instant) {
        if self.pubs_expire_at.is_some_and(|t| t <= now) {
            self.pubs = VecDeque::new();
            self.pubs_expire_at = None;
        }
    }

    fn clear_pubs(&mut self) {
        self.pubs = VecDeque::new();
        self.pubs_expire_at = None;
    }

    fn next_deadline(&self) -> Instant {
        match self.pubs_expire_at {
            Some(p) => p.min(self.meta_expire_at),
            None => self.meta_expire_at,
        }
    }

    fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.top,
            epoch: self.epoch.clone(),
        }
    }
}

/// Makes sure an object whose deadline is `at` has a timer at or before it.
fn schedule(
    timers: &mut Timers,
    slot: &mut Option<Instant>,
    at: Instant,
    key: impl FnOnce() -> TimerKey,
) {
    if slot.is_none_or(|s| at < s) {
        timers.push(Reverse(Timer { at, key: key() }));
        *slot = Some(at);
    }
}

/// The stream of `channel` if it is alive, after dropping expired
/// publications; a stream whose position expired is removed.
fn live_stream<'a>(
    streams: &'a mut HashMap<String, Stream>,
    channel: &str,
    now: Instant,
) -> Option<&'a mut Stream> {
    let meta_expired = streams.get(channel)?.meta_expire_at <= now;
    if meta_expired {
        streams.remove(channel);
        return None;
    }
    let stream = streams.get_mut(channel)?;
    stream.expire_pubs(now);
    Some(stream)
}

/// The live stream of `channel`, created if needed, its position kept for at
/// least `meta_ttl` from now.
fn stream_for<'a>(
    streams: &'a mut HashMap<String, Stream>,
    timers: &mut Timers,
    channel: &str,
    now: Instant,
    meta_ttl: Duration,
) -> &'a mut Stream {
    if live_stream(streams, channel, now).is_none() {
        streams.insert(channel.to_owned(), Stream::new(now, meta_ttl));
    }
    // Cannot fire: the stream is alive (`live_stream` found it) or was just
    // inserted. The entry API would allocate the key on every publish, and a
    // `get_mut` fallback returning `'a` is refused by today's borrow checker.
    #[allow(clippy::expect_used)]
    let stream = streams
        .get_mut(channel)
        .expect("the stream is alive or was just inserted");
    stream.meta_expire_at = stream.meta_expire_at.max(now + meta_ttl);
    let next = stream.next_deadline();
    schedule(timers, &mut stream.timer, next, || {
        TimerKey::Stream(channel.to_owned())
    });
    stream
}

impl Shard {
    /// Frees everything whose deadline passed.
    fn sweep(&mut self, now: Instant) {
        while self.timers.peek().is_some_and(|t| t.0.at <= now) {
            let Some(Reverse(Timer { at, key })) = self.timers.pop() else {
                break;
            };
            match key {
                TimerKey::Stream(channel) => {
                    let Some(stream) = self.streams.get_mut(&channel) else {
                        continue;
                    };
                    if stream.timer != Some(at) {
                        continue; // stale: a later or earlier timer owns it
                    }
                    stream.timer = None;
                    if stream.meta_expire_at <= now {
                        self.streams.remove(&channel);
                        continue;
                    }
                    stream.expire_pubs(now);
                    let next = stream.next_deadline();
                    schedule(&mut self.timers, &mut stream.timer, next, || {
                        TimerKey::Stream(channel)
                    });
                }
                TimerKey::Presence(channel, client) => {
                    let Some(leases) = self.presence.get_mut(&channel) else {
                        continue;
                    };
                    let Some(lease) = leases.get_mut(&client) else {
                        continue;
                    };
                    if lease.timer != Some(at) {
                        continue;
                    }
                    lease.timer = None;
                    if lease.expire_at <= now {
                        leases.remove(&client);
                        if leases.is_empty() {
                            self.presence.remove(&channel);
                        }
                        continue;
                    }
                    let next = lease.expire_at;
                    schedule(&mut self.timers, &mut lease.timer, next, || {
                        TimerKey::Presence(channel, client)
                    });
                }
                TimerKey::Idempotency(channel, key) => {
                    let Some(keys) = self.idempotency.get_mut(&channel) else {
                        continue;
                    };
                    if keys.get(&key).is_some_and(|r| r.expire_at <= now) {
                        keys.remove(&key);
                        if keys.is_empty() {
                            self.idempotency.remove(&channel);
                        }
                    }
                }
            }
        }
    }

    fn remembered(&self, channel: &str, key: &str, now: Instant) -> Option<StreamPosition> {
        let r = self.idempotency.get(channel)?.get(key)?;
        (r.expire_at > now).then(|| r.position.clone())
    }

    fn remember(&mut self, channel: &str, key: &str, position: StreamPosition, expire_at: Instant) {
        let keys = match self.idempotency.get_mut(channel) {
            Some(keys) => keys,
            None => self.idempotency.entry(channel.to_owned()).or_default(),
        };
        keys.insert(
            key.to_owned(),
            Remembered {
                position,
                expire_at,
            },
        );
        self.timers.push(Reverse(Timer {
            at: expire_at,
            key: TimerKey::Idempotency(channel.to_owned(), key.to_owned()),
        }));
    }

    /// Unexpired leases of `channel` (expired ones are dropped).
    fn live_leases(&mut self, channel: &str, now: Instant) -> Option<&HashMap<String, Lease>> {
        let leases = self.presence.get_mut(channel)?;
        leases.retain(|_, l| l.expire_at > now);
        if leases.is_empty() {
            self.presence.remove(channel);
            return None;
        }
        self.presence.get(channel)
    }
}

/// A fresh epoch: 64 bits from a randomly keyed SipHash of the time, the
/// process id and a counter. Epochs need to differ between incarnations of
/// a stream, not to be secret.
/// A new random stream epoch (16 hex digits).
pub fn new_epoch() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let h = RandomState::new().hash_one((t, n, std::process::id()));
    format!("{h:016x}")
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Our critical sections do not panic halfway through an update, and the
    // handler is never called under these locks; keep serving after a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryBroker {
    /// A broker with `config`; call [`Broker::start`] before use.
    pub fn new(config: MemoryBrokerConfig) -> Self {
        let shards = config.shards.max(1);
        let locks = config.publish_locks.max(1);
        let (stop, _) = watch::channel(false);
        MemoryBroker {
            inner: Arc::new(Inner {
                hasher: RandomState::new(),
                shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
                publish_locks: (0..locks).map(|_| tokio::sync::Mutex::new(())).collect(),
                handler: OnceLock::new(),
                closed: AtomicBool::new(false),
                nodes: Mutex::new(HashMap::new()),
                stop,
                config,
            }),
        }
    }

    /// What the broker holds right now.
    pub fn stats(&self) -> MemoryStats {
        let mut s = MemoryStats::default();
        for shard in self.inner.shards.iter() {
            let shard = lock(shard);
            s.streams += shard.streams.len();
            s.publications += shard
                .streams
                .values()
                .map(|st| st.pubs.len())
                .sum::<usize>();
            s.presence_entries += shard.presence.values().map(HashMap::len).sum::<usize>();
            s.idempotency_keys += shard.idempotency.values().map(HashMap::len).sum::<usize>();
            s.timers += shard.timers.len();
        }
        s
    }

    /// Frees expired data now (the sweeper task does it every
    /// `sweep_interval`).
    pub fn sweep(&self) {
        self.inner.sweep(Instant::now());
    }
}

impl Inner {
    fn hash(&self, channel: &str) -> usize {
        // Truncation is fine: only the low bits pick a shard.
        self.hasher.hash_one(channel) as usize
    }

    // Cannot fire: `new` makes at least one shard and one publish lock, and
    // `h % len < len`.
    #[allow(clippy::indexing_slicing)]
    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        lock(&self.shards[self.hash(channel) % self.shards.len()])
    }

    // Cannot fire: as for `shard`.
    #[allow(clippy::indexing_slicing)]
    fn publish_lock(&self, channel: &str) -> &tokio::sync::Mutex<()> {
        &self.publish_locks[self.hash(channel) % self.publish_locks.len()]
    }

    fn handler(&self) -> Result<&Arc<dyn BrokerEventHandler>, BrokerError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        self.handler.get().ok_or(BrokerError::NotStarted)
    }

    fn sweep(&self, now: Instant) {
        for shard in self.shards.iter() {
            lock(shard).sweep(now);
        }
        lock(&self.nodes).retain(|_, (_, exp)| *exp > now);
    }

    fn meta_ttl(&self, v: Option<Duration>) -> Result<Duration, BrokerError> {
        let ttl = v.unwrap_or(self.config.history_meta_ttl);
        if ttl.is_zero() {
            return Err(BrokerError::InvalidOptions(
                "meta_ttl must not be zero".into(),
            ));
        }
        Ok(ttl)
    }
}

async fn sweep_loop(inner: Weak<Inner>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let interval = interval.max(Duration::from_millis(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.sweep(Instant::now());
    }
}

fn require_ttl(ttl: Duration, what: &str) -> Result<(), BrokerError> {
    if ttl.is_zero() {
        return Err(BrokerError::InvalidOptions(format!(
            "{what} must not be zero"
        )));
    }
    Ok(())
}

#[async_trait]
impl Broker for MemoryBroker {
    fn name(&self) -> &str {
        "memory"
    }

    /// Cancel safety: safe (no await point).
    async fn start(&self, handler: Arc<dyn BrokerEventHandler>) -> Result<(), BrokerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        self.inner
            .handler
            .set(handler)
            .map_err(|_| BrokerError::AlreadyStarted)?;
        tokio::spawn(sweep_loop(
            Arc::downgrade(&self.inner),
            self.inner.config.sweep_interval,
            self.inner.stop.subscribe(),
        ));
        Ok(())
    }

    async fn close(&self) -> Result<(), BrokerError> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.stop.send_replace(true);
        for shard in self.inner.shards.iter() {
            *lock(shard) = Shard::default();
        }
        lock(&self.inner.nodes).clear();
        Ok(())
    }

    async fn health(&self) -> Result<(), BrokerError> {
        self.inner.handler().map(|_| ())
    }

    /// Cancel safety: the only await is taking the channel's publish lock;
    /// dropped there, nothing was published. After it the publish runs to
    /// completion without yielding.
    async fn publish(
        &self,
        channel: &str,
        mut publication: Publication,
        opts: PublishOptions,
    ) -> Result<StreamPosition, BrokerError> {
        let inner = &*self.inner;
        let handler = inner.handler()?;
        opts.validate()?;
        let meta_ttl = inner.meta_ttl(opts.history_meta_ttl)?;
        let _ordered = inner.publish_lock(channel).lock().await;
        let now = Instant::now();
        if publication.time == 0 {
            publication.time = unix_millis();
        }
        let (position, publication, deliver) = {
            let mut shard = inner.shard(channel);
            if let Some(key) = &opts.idempotency_key {
                if let Some(first) = shard.remembered(channel, key, now) {
                    return Ok(first);
                }
            }
            let (position, publication) = if opts.keeps_history() {
                let Shard {
                    streams, timers, ..
                } = &mut *shard;
                let stream = stream_for(streams, timers, channel, now, meta_ttl);
                stream.top += 1;
                publication.offset = stream.top;
                let publication = Arc::new(publication);
                stream.pubs.push_back(Arc::clone(&publication));
                while stream.pubs.len() > opts.history_size {
                    stream.pubs.pop_front();
                }
                stream.last_publish = Some(now);
                stream.pubs_expire_at = Some(now + opts.history_ttl);
                let next = stream.next_deadline();
                schedule(timers, &mut stream.timer, next, || {
                    TimerKey::Stream(channel.to_owned())
                });
                (stream.position(), publication)
            } else {
                publication.offset = 0;
                (StreamPosition::default(), Arc::new(publication))
            };
            if let Some(key) = &opts.idempotency_key {
                let ttl = opts.idempotency_ttl.unwrap_or(inner.config.idempotency_ttl);
                shard.remember(channel, key, position.clone(), now + ttl);
            }
            (position, publication, shard.subscribed.contains(channel))
        };
        if deliver {
            handler.on_publication(channel, publication, &position);
        }
        Ok(position)
    }

    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let handler = self.inner.handler()?;
        if self.inner.shard(channel).subscribed.contains(channel) {
            handler.on_join(channel, &info);
        }
        Ok(())
    }

    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let handler = self.inner.handler()?;
        if self.inner.shard(channel).subscribed.contains(channel) {
            handler.on_leave(channel, &info);
        }
        Ok(())
    }

    async fn publish_control(&self, data: Bytes) -> Result<(), BrokerError> {
        self.inner.handler()?.on_control(data);
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.inner.handler()?;
        let mut shard = self.inner.shard(channel);
        if !shard.subscribed.contains(channel) {
            shard.subscribed.insert(channel.to_owned());
        }
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.inner.handler()?;
        self.inner.shard(channel).subscribed.remove(channel);
        Ok(())
    }

    async fn history(
        &self,
        channel: &str,
        filter: HistoryFilter,
        opts: HistoryOptions,
    ) -> Result<HistoryResult, BrokerError> {
        let inner = &*self.inner;
        inner.handler()?;
        let meta_ttl = inner.meta_ttl(opts.meta_ttl)?;
        let now = Instant::now();
        let mut shard = inner.shard(channel);
        let Shard {
            streams, timers, ..
        } = &mut *shard;
        let stream = stream_for(streams, timers, channel, now, meta_ttl);
        let pubs = &stream.pubs;
        let first = pubs.front().map_or(0, |p| p.offset);
        let newest_age = stream
            .last_publish
            .map(|t| now.saturating_duration_since(t));
        let publications = filter
            .select(first, pubs.len(), newest_age, &opts)
            .filter_map(|i| pubs.get(i).cloned())
            .collect();
        Ok(HistoryResult {
            publications,
            position: stream.position(),
        })
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        self.inner.handler()?;
        let now = Instant::now();
        let mut shard = self.inner.shard(channel);
        if let Some(stream) = live_stream(&mut shard.streams, channel, now) {
            stream.clear_pubs();
        }
        Ok(())
    }

    async fn add_presence(
        &self,
        channel: &str,
        client_id: &str,
        info: ClientInfo,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        self.inner.handler()?;
        require_ttl(ttl, "presence ttl")?;
        let now = Instant::now();
        let expire_at = now + ttl;
        let mut shard = self.inner.shard(channel);
        let Shard {
            presence, timers, ..
        } = &mut *shard;
        let leases = match presence.get_mut(channel) {
            Some(leases) => leases,
            None => presence.entry(channel.to_owned()).or_default(),
        };
        let lease = match leases.get_mut(client_id) {
            Some(lease) => {
                lease.info = info;
                lease.expire_at = expire_at;
                lease
            }
            None => leases.entry(client_id.to_owned()).or_insert(Lease {
                info,
                expire_at,
                timer: None,
            }),
        };
        schedule(timers, &mut lease.timer, expire_at, || {
            TimerKey::Presence(channel.to_owned(), client_id.to_owned())
        });
        Ok(())
    }

    async fn remove_presence(&self, channel: &str, client_id: &str) -> Result<(), BrokerError> {
        self.inner.handler()?;
        let mut shard = self.inner.shard(channel);
        if let Some(leases) = shard.presence.get_mut(channel) {
            leases.remove(client_id);
            if leases.is_empty() {
                shard.presence.remove(channel);
            }
        }
        Ok(())
    }

    async fn presence(&self, channel: &str) -> Result<Presence, BrokerError> {
        self.inner.handler()?;
        let now = Instant::now();
        let mut shard = self.inner.shard(channel);
        Ok(shard
            .live_leases(channel, now)
            .map(|leases| {
                leases
                    .iter()
                    .map(|(id, l)| (id.clone(), l.info.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError> {
        self.inner.handler()?;
        let now = Instant::now();
        let mut shard = self.inner.shard(channel);
        let Some(leases) = shard.live_leases(channel, now) else {
            return Ok(PresenceStats::default());
        };
        let users: HashSet<&str> = leases.values().map(|l| l.info.user.as_str()).collect();
        Ok(PresenceStats {
            num_clients: leases.len(),
            num_users: users.len(),
        })
    }

    async fn register_node(&self, info: NodeInfo, ttl: Duration) -> Result<(), BrokerError> {
        self.inner.handler()?;
        require_ttl(ttl, "node ttl")?;
        let now = Instant::now();
        let mut nodes = lock(&self.inner.nodes);
        nodes.retain(|_, (_, exp)| *exp > now);
        nodes.insert(info.id.clone(), (info, now + ttl));
        Ok(())
    }

    async fn unregister_node(&self, node_id: &str) -> Result<(), BrokerError> {
        self.inner.handler()?;
        lock(&self.inner.nodes).remove(node_id);
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError> {
        self.inner.handler()?;
        let now = Instant::now();
        let mut nodes = lock(&self.inner.nodes);
        nodes.retain(|_, (_, exp)| *exp > now);
        let mut list: Vec<NodeInfo> = nodes.values().map(|(n, _)| n.clone()).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::conformance::{self, Harness, Recorder};
    use crate::broker::{recover, RecoverOptions};

    /// Each node is a fresh memory broker on tokio time.
    struct MemoryHarness;

    #[async_trait]
    impl Harness for MemoryHarness {
        async fn node(&self, handler: Arc<dyn BrokerEventHandler>) -> Arc<dyn Broker> {
            let broker = MemoryBroker::new(MemoryBrokerConfig::default());
            broker.start(handler).await.expect("start");
            Arc::new(broker)
        }
        async fn advance(&self, d: Duration) {
            tokio::time::advance(d).await;
        }
        fn shared_backend(&self) -> bool {
            false
        }
    }

    crate::broker_conformance_tests!(
        attr = tokio::test(start_paused = true),
        harness = MemoryHarness,
    );

    /// Several "nodes" on one memory broker, each with its own handler and
    /// subscriptions: runs the multi-node paths of the suite (fan-out to
    /// subscribed nodes only, control to every node, barriers) the way a
    /// Redis or NATS harness will.
    mod shared_backend {
        use super::*;
        use crate::broker::BrokerLayer;

        type Nodes = Mutex<Vec<(Arc<dyn BrokerEventHandler>, Arc<Mutex<HashSet<String>>>)>>;

        #[derive(Default)]
        struct Router {
            nodes: Nodes,
        }

        impl Router {
            fn each(&self, channel: Option<&str>, f: impl Fn(&dyn BrokerEventHandler)) {
                let nodes: Vec<_> = lock(&self.nodes).clone();
                for (h, subs) in nodes {
                    if channel.is_none_or(|c| lock(&subs).contains(c)) {
                        f(&*h);
                    }
                }
            }
        }

        impl BrokerEventHandler for Router {
            fn on_publication(&self, ch: &str, p: Arc<Publication>, pos: &StreamPosition) {
                self.each(Some(ch), |h| h.on_publication(ch, p.clone(), pos));
            }
            fn on_join(&self, ch: &str, info: &ClientInfo) {
                self.each(Some(ch), |h| h.on_join(ch, info));
            }
            fn on_leave(&self, ch: &str, info: &ClientInfo) {
                self.each(Some(ch), |h| h.on_leave(ch, info));
            }
            fn on_control(&self, data: Bytes) {
                self.each(None, |h| h.on_control(data.clone()));
            }
        }

        pub(super) struct SharedHarness {
            backend: MemoryBroker,
            router: Arc<Router>,
        }

        impl SharedHarness {
            pub(super) fn new() -> Self {
                SharedHarness {
                    backend: MemoryBroker::new(MemoryBrokerConfig::default()),
                    router: Arc::new(Router::default()),
                }
            }
        }

        /// One node's view of the shared backend: it cannot start or close
        /// it, and its subscriptions route the backend's events to it.
        struct Node {
            subs: Arc<Mutex<HashSet<String>>>,
        }

        #[async_trait]
        impl Harness for SharedHarness {
            async fn node(&self, handler: Arc<dyn BrokerEventHandler>) -> Arc<dyn Broker> {
                if self.backend.inner.handler.get().is_none() {
                    self.backend.start(self.router.clone()).await.unwrap();
                }
                let subs = Arc::new(Mutex::new(HashSet::new()));
                lock(&self.router.nodes).push((handler, subs.clone()));
                Arc::new(Node { subs }.over(Arc::new(self.backend.clone())))
            }
            async fn advance(&self, d: Duration) {
                tokio::time::advance(d).await;
            }
            fn shared_backend(&self) -> bool {
                true
            }
        }

        #[async_trait]
        impl BrokerLayer for Node {
            fn name<'a>(&'a self, _: &'a dyn Broker) -> &'a str {
                "memory-shared"
            }
            async fn start(
                &self,
                _: &dyn Broker,
                _: Arc<dyn BrokerEventHandler>,
            ) -> Result<(), BrokerError> {
                Err(BrokerError::AlreadyStarted)
            }
            async fn close(&self, _: &dyn Broker) -> Result<(), BrokerError> {
                Ok(())
            }
            async fn subscribe(&self, backend: &dyn Broker, ch: &str) -> Result<(), BrokerError> {
                lock(&self.subs).insert(ch.to_owned());
                backend.subscribe(ch).await
            }
            async fn unsubscribe(&self, _: &dyn Broker, ch: &str) -> Result<(), BrokerError> {
                lock(&self.subs).remove(ch);
                Ok(())
            }
        }

        crate::broker_conformance_tests!(
            attr = tokio::test(start_paused = true),
            harness = SharedHarness::new(),
        );
    }

    /// The concurrency case again, on real threads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_publishers_on_threads() {
        for _ in 0..5 {
            conformance::concurrent_publishers_get_gapless_offsets(&MemoryHarness).await;
        }
    }

    async fn started(config: MemoryBrokerConfig) -> (MemoryBroker, Arc<Recorder>) {
        let rec = Recorder::new();
        let broker = MemoryBroker::new(config);
        broker.start(rec.clone()).await.unwrap();
        (broker, rec)
    }

    fn hist(size: usize, ttl: u64) -> PublishOptions {
        PublishOptions::default().history(size, Duration::from_secs(ttl))
    }

    #[tokio::test(start_paused = true)]
    async fn sweeper_frees_idle_channels_without_access() {
        let config = MemoryBrokerConfig::default().history_meta_ttl(Duration::from_secs(30));
        let (b, _rec) = started(config).await;
        for i in 0..100 {
            let ch = format!("ch{i}");
            let opts = hist(10, 5)
                .idempotency_key("k")
                .idempotency_ttl(Duration::from_secs(10));
            b.publish(&ch, Publication::new("x"), opts).await.unwrap();
            b.add_presence(&ch, "c", ClientInfo::new("u", "c"), Duration::from_secs(20))
                .await
                .unwrap();
        }
        let s = b.stats();
        assert_eq!((s.streams, s.publications), (100, 100));
        assert_eq!((s.presence_entries, s.idempotency_keys), (100, 100));

        tokio::time::sleep(Duration::from_secs(6)).await;
        let s = b.stats();
        assert_eq!((s.streams, s.publications), (100, 0), "history ttl passed");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(b.stats().idempotency_keys, 0);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(b.stats().presence_entries, 0);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            b.stats(),
            MemoryStats::default(),
            "meta ttl passed: nothing left"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refreshed_presence_keeps_one_timer_per_ttl() {
        let (b, _rec) = started(MemoryBrokerConfig::default().shards(1)).await;
        for _ in 0..1000 {
            b.add_presence(
                "ch",
                "c",
                ClientInfo::new("u", "c"),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        assert_eq!(b.stats().timers, 1, "refreshes push no timers");
        assert_eq!(b.presence_stats("ch").await.unwrap().num_clients, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn many_publishes_into_a_stream_push_few_timers() {
        let (b, _rec) = started(MemoryBrokerConfig::default().shards(1)).await;
        for _ in 0..1000 {
            b.publish("ch", Publication::new("x"), hist(10, 60))
                .await
                .unwrap();
        }
        assert!(b.stats().timers <= 2, "{:?}", b.stats());
        assert_eq!(b.stats().publications, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn history_applies_the_callers_current_size_and_ttl() {
        let (b, _rec) = started(MemoryBrokerConfig::default()).await;
        for _ in 0..10 {
            b.publish("ch", Publication::new("x"), hist(10, 60))
                .await
                .unwrap();
        }
        let smaller = HistoryOptions::new(3, Duration::from_secs(60));
        let r = b
            .history("ch", HistoryFilter::all(), smaller.clone())
            .await
            .unwrap();
        let got: Vec<u64> = r.publications.iter().map(|p| p.offset).collect();
        assert_eq!(got, vec![8, 9, 10]);
        let since = StreamPosition::new(5, r.position.epoch.clone());
        let rec = recover(
            &b,
            "ch",
            &since,
            &RecoverOptions::default().history(smaller),
        )
        .await
        .unwrap();
        assert!(!rec.recovered, "6 and 7 are outside the current size");

        tokio::time::advance(Duration::from_secs(20)).await;
        let shorter = HistoryOptions::new(10, Duration::from_secs(10));
        let r = b
            .history("ch", HistoryFilter::all(), shorter)
            .await
            .unwrap();
        assert!(r.publications.is_empty(), "older than the current ttl");
        assert_eq!(r.position.offset, 10);
        let r = b
            .history("ch", HistoryFilter::all(), HistoryOptions::default())
            .await
            .unwrap();
        assert_eq!(r.publications.len(), 10, "still kept under the publish ttl");
    }

    #[tokio::test]
    async fn lifecycle_errors() {
        let b = MemoryBroker::new(MemoryBrokerConfig::default());
        let r = b
            .publish("ch", Publication::new("x"), PublishOptions::default())
            .await;
        assert!(matches!(r, Err(BrokerError::NotStarted)));
        assert!(matches!(b.health().await, Err(BrokerError::NotStarted)));
        b.start(Recorder::new()).await.unwrap();
        assert!(matches!(
            b.start(Recorder::new()).await,
            Err(BrokerError::AlreadyStarted)
        ));
        b.health().await.unwrap();
        b.close().await.unwrap();
        assert!(matches!(b.health().await, Err(BrokerError::Closed)));
        let r = b
            .history("ch", HistoryFilter::all(), HistoryOptions::default())
            .await;
        assert!(matches!(r, Err(BrokerError::Closed)));
        assert!(matches!(
            b.start(Recorder::new()).await,
            Err(BrokerError::Closed)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn sweeper_stops_when_the_broker_is_dropped() {
        let (b, _rec) = started(MemoryBrokerConfig::default()).await;
        let weak = Arc::downgrade(&b.inner);
        drop(b);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(weak.upgrade().is_none());
    }

    /// A handler that blocks inside `on_publication` until released.
    struct Gate {
        entered: std::sync::mpsc::Sender<()>,
        release: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl BrokerEventHandler for Gate {
        fn on_publication(&self, _: &str, _: Arc<Publication>, _: &StreamPosition) {
            let _ = self.entered.send(());
            let _ = lock(&self.release).recv();
        }
        fn on_join(&self, _: &str, _: &ClientInfo) {}
        fn on_leave(&self, _: &str, _: &ClientInfo) {}
        fn on_control(&self, _: Bytes) {}
    }

    /// Dropping a publish that waits for the channel's publish lock
    /// publishes nothing; readers are not blocked by a slow fan-out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publish_cancelled_while_waiting_publishes_nothing() {
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let b = MemoryBroker::new(MemoryBrokerConfig::default());
        b.start(Arc::new(Gate {
            entered: entered_tx,
            release: Mutex::new(release_rx),
        }))
        .await
        .unwrap();
        b.subscribe("ch").await.unwrap();
        let first = {
            let b = b.clone();
            tokio::spawn(async move {
                b.publish("ch", Publication::new("first"), hist(10, 60))
                    .await
            })
        };
        tokio::task::spawn_blocking(move || entered_rx.recv())
            .await
            .unwrap()
            .unwrap();
        // The first publish is inside the handler, holding the publish lock.
        let second = tokio::time::timeout(
            Duration::from_millis(50),
            b.publish("ch", Publication::new("second"), hist(10, 60)),
        )
        .await;
        assert!(second.is_err(), "waits for the first publish");
        // Readers only take the shard lock.
        let r = b
            .history("ch", HistoryFilter::all(), HistoryOptions::default())
            .await
            .unwrap();
        assert_eq!(r.position.offset, 1);
        release_tx.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap().offset, 1);
        let r = b
            .history("ch", HistoryFilter::all(), HistoryOptions::default())
            .await
            .unwrap();
        assert_eq!(
            r.publications.len(),
            1,
            "the cancelled publish left no trace"
        );
        b.unsubscribe("ch").await.unwrap();
        let third = b
            .publish("ch", Publication::new("third"), hist(10, 60))
            .await
            .unwrap();
        assert_eq!(third.offset, 2);
    }

    #[test]
    fn epochs_differ() {
        let epochs: HashSet<String> = (0..1000).map(|_| new_epoch()).collect();
        assert_eq!(epochs.len(), 1000);
        assert!(epochs.iter().all(|e| e.len() == 16));
    }
}
