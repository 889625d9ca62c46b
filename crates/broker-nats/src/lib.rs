//! The wshub [`Broker`] on NATS: core NATS subjects carry publications,
//! join/leave events and control messages between gateway nodes; JetStream
//! key-value buckets keep history, idempotency keys, presence and the node
//! registry. It has the semantics of the `Broker` trait and passes the
//! conformance suite of `wshub-hub` (offsets, epochs, TTLs, recovery rules).
//!
//! It owns its NATS connection, its subjects and its buckets; it knows
//! nothing of clients, sessions or the client protocol. Every byte it puts on
//! the wire between nodes is [`wshub_hub::broker::wire`].
//!
//! # Subjects (core NATS, at most once)
//!
//! With `prefix` (default `centrifugo`):
//!
//! - `{prefix}.ch.{token}`: events of one channel ([`wire::encode_event`]).
//!   `{token}` is `c` + base64url (no padding) of the channel name, so a
//!   name with `.`, `*`, `>`, spaces or anything else is one literal token,
//!   never a wildcard. A node subscribes to the subjects of the channels it
//!   is subscribed to.
//! - `{prefix}.control`: control messages, to every node (raw bytes).
//! - `{prefix}.probe.{node}`: the node's own delivery probe (see below).
//!
//! # Buckets (JetStream key-value, file storage, one revision per key)
//!
//! `{bucket}` is the prefix with every character other than letters, digits,
//! `-` and `_` turned into `_`. They are ordinary key-value buckets (streams
//! `KV_{bucket}_*`, readable with the `nats kv` tools), created by the first
//! node that needs them; reads go through the stream API rather than direct
//! get, so a bucket that is gone is noticed at once instead of timing out.
//!
//! - `{bucket}_history`: key `{token}`, one value per channel: the stream's
//!   epoch, top offset, last-publish time, deadlines and the kept window of
//!   encoded publications. Every publish and every history call that must
//!   create the stream or extend its meta TTL replaces the value with
//!   compare-and-set (expected last revision of the key) and retries on a
//!   conflict, so offsets are gapless and unique with any number of
//!   publishers on any number of nodes. A publish from this node into one
//!   channel also waits for the previous one from this node (a striped local
//!   lock), which saves conflicts and keeps this node's publications in
//!   order on the wire.
//! - `{bucket}_idempotency`: key `{token}.{key token}`: a publisher first
//!   claims the key with compare-and-set (pending, for twice the operation
//!   timeout), publishes, then stores the result; a second publisher with the
//!   same key waits for the result and returns it. A claim whose publisher
//!   died lapses and can be taken over.
//! - `{bucket}_presence`: key `{token}`: the channel's leases (client id,
//!   expiry, [`wire::encode_client_info`]), compare-and-set.
//! - `{bucket}_nodes`: key `nodes`: the node leases
//!   ([`wire::encode_node_info`]), compare-and-set.
//!
//! nats-server 2.9 has no per-message TTL: every deadline is stored in the
//! value (Unix milliseconds of the writer's clock, so node clocks should be
//! synchronized) and checked on every read. The buckets' `max_age` only
//! collects garbage of idle keys: history after
//! [`NatsBrokerConfig::history_meta_ttl`], the others after a day. A bucket
//! that disappeared (JetStream data lost, a new server with an empty store)
//! is created again on the next operation, and its channels start new
//! streams with **new epochs**, so clients holding old positions are told
//! they cannot recover.
//!
//! Limits of this layout: a channel's whole history window is one value,
//! so a publish rewrites it, and it must fit in one message (the server's
//! `max_payload`, 1 MiB by default): when it would not, the oldest
//! publications leave the window early (recovery then reports them as
//! lost), and a publication too big to fit alone is refused. Every write
//! is checked against `max_payload` before it is sent, because the server
//! closes a connection that exceeds it. A channel's presence is one value
//! too (fine for thousands of clients per channel, not for millions).
//!
//! # Order
//!
//! Offsets are taken in JetStream and the publication is then sent on core
//! NATS, so two publishers may reach the server in the opposite order of
//! their offsets. Each subscribed channel's reader keeps the next offset it
//! expects and holds a publication that arrives early for up to
//! [`NatsBrokerConfig::reorder_window`] until the missing ones arrive. If
//! they do not (a publisher died between the compare-and-set and its core
//! publish) it delivers what it holds, in order, with the gap; the gateway
//! sees the gap in the offsets and tells its clients; one that arrives
//! after its successors were given up on is dropped rather than delivered
//! out of order. The first publication after a subscribe, a new epoch or a
//! resumed delivery sets the expected offset. Publications without history
//! (offset 0) and join/leave events are not held.
//!
//! # Failures
//!
//! async-nats reconnects by itself, forever, with exponential backoff and
//! full jitter (at once the first time, then a random delay below a ceiling
//! of 50 ms doubling to [`NatsBrokerConfig::reconnect_max_delay`],
//! [`wshub_backoff`]), and subscribes again to every
//! subject. The broker watches delivery with the connection events and a
//! probe: every [`NatsBrokerConfig::probe_interval`] it publishes to its
//! probe subject and expects the message back within
//! [`NatsBrokerConfig::op_timeout`], which also catches a server that keeps
//! the connection open but delivers nothing (stopped, overloaded). On a lost
//! connection, a failed probe or a slow-consumer drop it calls
//! [`BrokerEventHandler::on_delivery_interrupted`] once, logs a warning and
//! fails [`Broker::health`]; when the connection is back and a probe passed
//! (so the subscriptions are in place again) it calls
//! [`BrokerEventHandler::on_delivery_resumed`] once and logs it. Every call
//! has the operation timeout ([`BrokerError::Timeout`]), none hangs.
//!
//! The first connection is made by [`Broker::start`]: when the server cannot
//! be reached within [`NatsBrokerConfig::dial_timeout`] it fails, so a
//! misconfigured node stops at boot with a clear error instead of serving
//! without a broker.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use wshub_broker_nats::{NatsBroker, NatsBrokerConfig};
//! use wshub_hub::broker::*;
//!
//! struct Node;
//! impl BrokerEventHandler for Node {
//!     fn on_publication(&self, channel: &str, p: Arc<Publication>, _: &StreamPosition) {
//!         println!("{channel}: #{} {:?}", p.offset, p.data);
//!     }
//!     fn on_join(&self, _: &str, _: &ClientInfo) {}
//!     fn on_leave(&self, _: &str, _: &ClientInfo) {}
//!     fn on_control(&self, _: Bytes) {}
//!     fn on_delivery_interrupted(&self, reason: &str) {
//!         eprintln!("broker delivery interrupted: {reason}");
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), BrokerError> {
//! let config = NatsBrokerConfig::default()
//!     .url("nats://127.0.0.1:4222")
//!     .prefix("myapp");
//! let broker = NatsBroker::new(config);
//! broker.start(Arc::new(Node)).await?;
//! broker.subscribe("news").await?;
//! let opts = PublishOptions::default().history(100, Duration::from_secs(300));
//! let position = broker.publish("news", Publication::new("hi"), opts).await?;
//! println!("published at {} in epoch {}", position.offset, position.epoch);
//! # Ok(())
//! # }
//! ```
// No panic reachable from input: the release profile aborts on panic. Each
// remaining exception is a tiny `#[allow]` with a comment proving it cannot fire.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::connection::State;
use async_nats::jetstream;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::kv::{self, EntryErrorKind, Operation, UpdateErrorKind};
use async_nats::{Client, ConnectOptions, Event, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wshub_hub::broker::wire::{self, ChannelEvent};
use wshub_hub::broker::{
    new_epoch, Broker, BrokerError, BrokerEventHandler, ClientInfo, HistoryFilter, HistoryOptions,
    HistoryResult, NodeInfo, Presence, PresenceStats, Publication, PublishOptions, StreamPosition,
};

mod reorder;
mod store;

use reorder::Reorder;
use store::{token, StoredLeases, StoredResult, StoredStream};

/// Settings of a [`NatsBroker`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NatsBrokerConfig {
    /// Server URL(s), comma separated (default `nats://127.0.0.1:4222`).
    pub url: String,
    /// First tokens of every subject and the base of the bucket names
    /// (default `centrifugo`). Nodes of one cluster share it.
    pub prefix: String,
    /// How long [`Broker::start`] tries to connect (default 1 s).
    pub dial_timeout: Duration,
    /// How long any one call may take, and how long the probe waits for its
    /// echo (default 2 s).
    pub op_timeout: Duration,
    /// How often the delivery path is probed (default 1 s).
    pub probe_interval: Duration,
    /// How long a publication that arrived ahead of its predecessors is
    /// held for them (default 1 s).
    pub reorder_window: Duration,
    /// Ceiling of the (randomly jittered) wait between two reconnection
    /// attempts (default 2 s).
    pub reconnect_max_delay: Duration,
    /// Default time a stream position is kept after the last publish or
    /// history call (default 720 h, Centrifugo's `history_meta_ttl`); also
    /// the `max_age` of the history bucket.
    pub history_meta_ttl: Duration,
    /// Default time an idempotency key is remembered (default 5 min).
    pub idempotency_ttl: Duration,
    /// Stripes of the local per-channel publish lock (default 1024).
    pub publish_locks: usize,
}

impl Default for NatsBrokerConfig {
    fn default() -> Self {
        NatsBrokerConfig {
            url: "nats://127.0.0.1:4222".into(),
            prefix: "centrifugo".into(),
            dial_timeout: Duration::from_secs(1),
            op_timeout: Duration::from_secs(2),
            probe_interval: Duration::from_secs(1),
            reorder_window: Duration::from_secs(1),
            reconnect_max_delay: Duration::from_secs(2),
            history_meta_ttl: Duration::from_secs(720 * 3600),
            idempotency_ttl: Duration::from_secs(300),
            publish_locks: 1024,
        }
    }
}

impl NatsBrokerConfig {
    /// The settings of the gateway's `broker.nats` section: `url`, `prefix`,
    /// `dial_timeout`, and `write_timeout` as the operation timeout (when not
    /// zero). TLS settings are not applied yet; use a `tls://` URL for a
    /// server that requires TLS with public certificates.
    pub fn from_config(c: &wshub_config::NatsConfig) -> Self {
        let mut cfg = NatsBrokerConfig::default()
            .url(c.url.clone())
            .prefix(c.prefix.clone());
        let dial: Duration = c.dial_timeout.into();
        let write: Duration = c.write_timeout.into();
        if !dial.is_zero() {
            cfg.dial_timeout = dial;
        }
        if !write.is_zero() {
            cfg.op_timeout = write;
        }
        cfg
    }
    /// Sets [`NatsBrokerConfig::url`].
    pub fn url(mut self, v: impl Into<String>) -> Self {
        self.url = v.into();
        self
    }
    /// Sets [`NatsBrokerConfig::prefix`].
    pub fn prefix(mut self, v: impl Into<String>) -> Self {
        self.prefix = v.into();
        self
    }
    /// Sets [`NatsBrokerConfig::dial_timeout`].
    pub fn dial_timeout(mut self, v: Duration) -> Self {
        self.dial_timeout = v;
        self
    }
    /// Sets [`NatsBrokerConfig::op_timeout`].
    pub fn op_timeout(mut self, v: Duration) -> Self {
        self.op_timeout = v;
        self
    }
    /// Sets [`NatsBrokerConfig::probe_interval`].
    pub fn probe_interval(mut self, v: Duration) -> Self {
        self.probe_interval = v;
        self
    }
    /// Sets [`NatsBrokerConfig::reorder_window`].
    pub fn reorder_window(mut self, v: Duration) -> Self {
        self.reorder_window = v;
        self
    }
    /// Sets [`NatsBrokerConfig::reconnect_max_delay`].
    pub fn reconnect_max_delay(mut self, v: Duration) -> Self {
        self.reconnect_max_delay = v;
        self
    }
    /// Sets [`NatsBrokerConfig::history_meta_ttl`].
    pub fn history_meta_ttl(mut self, v: Duration) -> Self {
        self.history_meta_ttl = v;
        self
    }
    /// Sets [`NatsBrokerConfig::idempotency_ttl`].
    pub fn idempotency_ttl(mut self, v: Duration) -> Self {
        self.idempotency_ttl = v;
        self
    }
    /// Sets [`NatsBrokerConfig::publish_locks`] (at least 1).
    pub fn publish_locks(mut self, v: usize) -> Self {
        self.publish_locks = v.max(1);
        self
    }

    /// The names of the JetStream key-value buckets this configuration uses
    /// (history, idempotency, presence, nodes), e.g. to delete them.
    pub fn bucket_names(&self) -> [String; 4] {
        let base = store::bucket_part(&self.prefix);
        BUCKETS.map(|(suffix, _)| format!("{base}_{suffix}"))
    }
}

/// Bucket suffixes and whether the bucket's `max_age` is the meta TTL.
const BUCKETS: [(&str, bool); 4] = [
    ("history", true),
    ("idempotency", false),
    ("presence", false),
    ("nodes", false),
];
const HISTORY: usize = 0;
const IDEMPOTENCY: usize = 1;
const PRESENCE: usize = 2;
const NODES: usize = 3;
/// Room left in a JetStream message for its subject and headers.
const MESSAGE_OVERHEAD: usize = 4096;
/// Garbage collection age of the idempotency, presence and nodes buckets.
const GC_AGE: Duration = Duration::from_secs(24 * 3600);
/// Stands in for a publish lock if the table were ever empty (it is not:
/// `start` makes at least one).
static PUBLISH_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The wshub broker on NATS (see the [crate docs](crate)).
///
/// Cloning gives another handle to the same broker.
#[derive(Clone)]
pub struct NatsBroker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBroker")
            .field("config", &self.inner.config)
            .field("started", &self.inner.started.get().is_some())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

struct Inner {
    config: NatsBrokerConfig,
    starting: AtomicBool,
    closed: AtomicBool,
    started: OnceLock<Started>,
}

/// Everything that exists once the broker is started.
struct Started {
    client: Client,
    js: jetstream::Context,
    handler: Arc<dyn BrokerEventHandler>,
    buckets: [Bucket; 4],
    subs: tokio::sync::Mutex<HashMap<String, JoinHandle<()>>>,
    publish_locks: Box<[tokio::sync::Mutex<()>]>,
    hasher: RandomState,
    health: Arc<Health>,
    /// Dropped or set on close: every background task ends.
    stop: watch::Sender<bool>,
}

struct Bucket {
    name: String,
    max_age: Duration,
    store: Mutex<Option<kv::Store>>,
}

/// Delivery state shared with the monitor.
struct Health {
    /// `Some(reason)` while delivery is interrupted.
    down: Mutex<Option<String>>,
    /// Bumped on every resume: channel readers forget expected offsets.
    generation: watch::Sender<u64>,
}

impl Health {
    fn interrupt(&self, handler: &dyn BrokerEventHandler, reason: &str) {
        {
            let mut down = lock(&self.down);
            if down.is_some() {
                return;
            }
            *down = Some(reason.to_owned());
        }
        tracing::warn!(reason, "NATS broker: delivery interrupted");
        handler.on_delivery_interrupted(reason);
    }

    fn resume(&self, handler: &dyn BrokerEventHandler) {
        let Some(reason) = lock(&self.down).take() else {
            return;
        };
        self.generation.send_modify(|g| *g += 1);
        tracing::info!(after = %reason, "NATS broker: delivery resumed");
        handler.on_delivery_resumed();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> BrokerError {
    BrokerError::Backend(Box::new(e))
}

fn backend_msg(msg: impl Into<String>) -> BrokerError {
    BrokerError::Backend(msg.into().into())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn require_ttl(ttl: Duration, what: &str) -> Result<(), BrokerError> {
    if ttl.is_zero() {
        return Err(BrokerError::InvalidOptions(format!(
            "{what} must not be zero"
        )));
    }
    Ok(())
}

/// A short random pause after a compare-and-set conflict: full jitter
/// under 1 ms doubling to 32 ms.
async fn conflict_pause(attempt: u32) {
    let d =
        wshub_backoff::full_jitter(attempt, Duration::from_millis(1), Duration::from_millis(32));
    tokio::time::sleep(d).await;
}

/// The delay before async-nats' reconnect attempt `attempts` (1 for the
/// first): none for the first, then full jitter under 50 ms doubling to
/// `max` ([`wshub_backoff::full_jitter`]), so nodes that lost one server
/// do not come back in lockstep.
fn reconnect_delay(attempts: usize, max: Duration) -> Duration {
    match attempts.checked_sub(1) {
        None | Some(0) => Duration::ZERO,
        Some(n) => {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            wshub_backoff::full_jitter(n, Duration::from_millis(25), max)
        }
    }
}

/// What a compare-and-set update does with the current value.
enum Change<T> {
    /// Write these bytes (if the key did not change meanwhile), then return.
    Write(Bytes, T),
    /// Write nothing, return.
    Keep(T),
}

impl NatsBroker {
    /// A broker with `config`; call [`Broker::start`] before use.
    pub fn new(config: NatsBrokerConfig) -> Self {
        NatsBroker {
            inner: Arc::new(Inner {
                config,
                starting: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                started: OnceLock::new(),
            }),
        }
    }

    fn started(&self) -> Result<&Started, BrokerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        self.inner.started.get().ok_or(BrokerError::NotStarted)
    }

    /// Runs `f` with the operation timeout.
    async fn timed<T>(
        &self,
        f: impl Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        tokio::time::timeout(self.inner.config.op_timeout, f)
            .await
            .unwrap_or(Err(BrokerError::Timeout))
    }

    fn subject(&self, channel: &str) -> String {
        format!("{}.ch.{}", self.inner.config.prefix, token(channel))
    }

    fn control_subject(&self) -> String {
        format!("{}.control", self.inner.config.prefix)
    }

    async fn connect(&self, events: mpsc::UnboundedSender<Event>) -> Result<Client, BrokerError> {
        let c = &self.inner.config;
        let max_delay = c.reconnect_max_delay.max(Duration::from_millis(10));
        let options = ConnectOptions::new()
            .name("wshub")
            .connection_timeout(c.dial_timeout)
            .request_timeout(Some(c.op_timeout))
            .ping_interval((c.probe_interval * 5).max(Duration::from_secs(5)))
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| reconnect_delay(attempts, max_delay))
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    let _ = events.send(event);
                }
            });
        let addrs = c
            .url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BrokerError::InvalidOptions(format!("NATS url {:?}: {e}", c.url)))?;
        if addrs.is_empty() {
            return Err(BrokerError::InvalidOptions("NATS url is empty".into()));
        }
        match tokio::time::timeout(
            c.dial_timeout + Duration::from_millis(500),
            options.connect(addrs),
        )
        .await
        {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(backend(e)),
            Err(_) => Err(BrokerError::Timeout),
        }
    }
}

impl Started {
    fn publish_lock(&self, channel: &str) -> &tokio::sync::Mutex<()> {
        let h = self.hasher.hash_one(channel) as usize;
        // `start` makes at least one lock, so the remainder is an index.
        let locks = &self.publish_locks;
        match locks.get(h % locks.len().max(1)) {
            Some(lock) => lock,
            None => &PUBLISH_LOCK,
        }
    }

    /// Largest value a bucket write may carry: the server's `max_payload`
    /// less room for the subject and headers.
    fn max_value(&self) -> usize {
        self.client
            .server_info()
            .max_payload
            .saturating_sub(MESSAGE_OVERHEAD)
    }

    /// The stream behind a key-value bucket, as the JetStream key-value
    /// convention defines it (created directly rather than through
    /// `create_key_value`, whose account query does not parse the answer of
    /// nats-server 2.9).
    fn stream_config(b: &Bucket) -> jetstream::stream::Config {
        jetstream::stream::Config {
            name: format!("KV_{}", b.name),
            description: Some("wshub broker state".into()),
            subjects: vec![format!("$KV.{}.>", b.name)],
            max_messages_per_subject: 1,
            max_age: b.max_age,
            storage: jetstream::stream::StorageType::File,
            num_replicas: 1,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            // Reads go through the stream API, which answers "stream not
            // found" when the bucket is gone; a direct get would time out.
            allow_direct: false,
            discard: jetstream::stream::DiscardPolicy::New,
            ..jetstream::stream::Config::default()
        }
    }

    /// The bucket's store, opened or created on first use.
    async fn store(&self, b: &Bucket) -> Result<kv::Store, BrokerError> {
        if let Some(s) = lock(&b.store).clone() {
            return Ok(s);
        }
        let s = match self.js.get_key_value(b.name.clone()).await {
            Ok(s) => s,
            Err(_) => match self.js.create_stream(Self::stream_config(b)).await {
                Ok(_) => self
                    .js
                    .get_key_value(b.name.clone())
                    .await
                    .map_err(backend)?,
                // Another node may have created it meanwhile.
                Err(e) => self
                    .js
                    .get_key_value(b.name.clone())
                    .await
                    .map_err(|_| backend(e))?,
            },
        };
        *lock(&b.store) = Some(s.clone());
        Ok(s)
    }

    /// After a failed operation: if the bucket is gone (JetStream lost its
    /// data) it is created again.
    async fn repair(&self, b: &Bucket) -> Result<(), BrokerError> {
        match self.js.get_stream(format!("KV_{}", b.name)).await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    tracing::warn!(
                        bucket = %b.name,
                        "NATS broker: JetStream bucket is gone, creating it again (streams get new epochs)"
                    );
                    *lock(&b.store) = None;
                    self.store(b).await.map(drop)
                }
                _ => Err(backend(e)),
            },
        }
    }

    /// The current value of `key` (`None` if absent or deleted) and the
    /// revision to compare against (0 if the key never existed).
    async fn get(&self, b: &Bucket, key: &str) -> Result<(Option<Bytes>, u64), BrokerError> {
        let mut repaired = false;
        loop {
            let store = self.store(b).await?;
            match store.entry(key).await {
                Ok(None) => return Ok((None, 0)),
                Ok(Some(e)) => {
                    let value = (e.operation == Operation::Put).then_some(e.value);
                    return Ok((value, e.revision));
                }
                Err(e) if e.kind() == EntryErrorKind::TimedOut => return Err(BrokerError::Timeout),
                Err(e) => {
                    if repaired {
                        return Err(backend(e));
                    }
                    // Once more, after creating the bucket again if it is
                    // gone (or finding that another node just did).
                    self.repair(b).await?;
                    repaired = true;
                }
            }
        }
    }

    /// Writes `value` if `key` is still at `revision`: `Some(new revision)`,
    /// or `None` on a conflict.
    async fn cas(
        &self,
        b: &Bucket,
        key: &str,
        value: Bytes,
        revision: u64,
    ) -> Result<Option<u64>, BrokerError> {
        if value.len() > self.max_value() {
            // The server would close the connection over it.
            return Err(backend_msg(format!(
                "value of {} bytes for bucket {} exceeds the server's max_payload",
                value.len(),
                b.name
            )));
        }
        let store = self.store(b).await?;
        match store.update(key, value, revision).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) if e.kind() == UpdateErrorKind::TimedOut => Err(BrokerError::Timeout),
            Err(e) => Err(backend(e)),
        }
    }

    /// [`Started::cas`] in a read-change-write loop: the first failure other
    /// than a timeout (a bucket that is gone, or was just created again by
    /// another node) repairs the bucket and counts as a conflict, so the
    /// loop reads again; a second one is returned.
    async fn cas_in_loop(
        &self,
        b: &Bucket,
        key: &str,
        value: Bytes,
        revision: u64,
        failed_once: &mut bool,
    ) -> Result<Option<u64>, BrokerError> {
        match self.cas(b, key, value, revision).await {
            Err(e) if !*failed_once && !matches!(e, BrokerError::Timeout) => {
                *failed_once = true;
                self.repair(b).await?;
                Ok(None)
            }
            r => r,
        }
    }

    /// Read, change, compare-and-set, retried until no one else wrote in
    /// between.
    async fn update<T>(
        &self,
        b: &Bucket,
        key: &str,
        mut change: impl FnMut(Option<Bytes>) -> Result<Change<T>, BrokerError>,
    ) -> Result<T, BrokerError> {
        let (mut attempt, mut failed_once) = (0u32, false);
        loop {
            let (current, revision) = self.get(b, key).await?;
            match change(current)? {
                Change::Keep(t) => return Ok(t),
                Change::Write(bytes, t) => {
                    let written = self
                        .cas_in_loop(b, key, bytes, revision, &mut failed_once)
                        .await?;
                    if written.is_some() {
                        return Ok(t);
                    }
                }
            }
            attempt += 1;
            conflict_pause(attempt).await;
        }
    }

    fn decode_leases(current: Option<Bytes>) -> Result<StoredLeases, BrokerError> {
        current.map_or(Ok(StoredLeases::default()), |b| {
            store::decode("lease set", &b)
        })
    }

    async fn live_leases(&self, b: &Bucket, key: &str) -> Result<StoredLeases, BrokerError> {
        let (current, _) = self.get(b, key).await?;
        let mut set = Self::decode_leases(current)?;
        set.prune(unix_ms());
        Ok(set)
    }

    async fn upsert_lease(
        &self,
        b: &Bucket,
        key: &str,
        id: &str,
        payload: Bytes,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        self.update(b, key, |current| {
            let now = unix_ms();
            let mut set = Self::decode_leases(current)?;
            set.prune(now);
            set.upsert(id, payload.clone(), now.saturating_add(ms(ttl)));
            Ok(Change::Write(Bytes::from(set.encode_to_vec()), ()))
        })
        .await
    }

    async fn remove_lease(&self, b: &Bucket, key: &str, id: &str) -> Result<(), BrokerError> {
        self.update(b, key, |current| {
            let Some(current) = current else {
                return Ok(Change::Keep(()));
            };
            let mut set: StoredLeases = store::decode("lease set", &current)?;
            if !set.remove(id) {
                return Ok(Change::Keep(()));
            }
            set.prune(unix_ms());
            Ok(Change::Write(Bytes::from(set.encode_to_vec()), ()))
        })
        .await
    }

    /// Claims an idempotency key: the first result if it is known, or the
    /// revision of our claim.
    async fn claim(&self, key: &str, pending: Duration) -> Result<Claim, BrokerError> {
        let b = &self.buckets[IDEMPOTENCY];
        let (mut attempt, mut failed_once) = (0u32, false);
        loop {
            let now = unix_ms();
            let (current, revision) = self.get(b, key).await?;
            let current: Option<StoredResult> = current
                .map(|v| store::decode("idempotency result", &v))
                .transpose()?;
            match current {
                Some(r) if r.expire_ms > now && r.done => {
                    return Ok(Claim::Done(StreamPosition::new(r.offset, r.epoch)));
                }
                Some(r) if r.expire_ms > now => {
                    // Another publisher holds the key: wait for its result.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                _ => {
                    let claim = StoredResult {
                        done: false,
                        offset: 0,
                        epoch: String::new(),
                        expire_ms: now.saturating_add(ms(pending)),
                    };
                    let bytes = Bytes::from(claim.encode_to_vec());
                    let claimed = self
                        .cas_in_loop(b, key, bytes, revision, &mut failed_once)
                        .await?;
                    if let Some(rev) = claimed {
                        return Ok(Claim::Claimed(rev));
                    }
                }
            }
            attempt += 1;
            conflict_pause(attempt).await;
        }
    }

    /// Takes the offset in JetStream (with history) and sends the
    /// publication on core NATS.
    async fn publish_locked(
        &self,
        subject: String,
        channel_key: &str,
        publication: Publication,
        opts: &PublishOptions,
        meta_ttl: Duration,
    ) -> Result<StreamPosition, BrokerError> {
        let (publication, position) = if opts.keeps_history() {
            let b = &self.buckets[HISTORY];
            self.update(b, channel_key, |current| {
                let stored: Option<StoredStream> = current
                    .map(|v| store::decode("history stream", &v))
                    .transpose()?;
                let mut p = publication.clone();
                let (next, position) = StoredStream::publish(
                    stored,
                    &mut p,
                    (opts.history_size, self.max_value()),
                    ms(opts.history_ttl),
                    ms(meta_ttl),
                    unix_ms(),
                )?;
                Ok(Change::Write(
                    Bytes::from(next.encode_to_vec()),
                    (p, position),
                ))
            })
            .await?
        } else {
            let mut p = publication;
            p.offset = 0;
            (p, StreamPosition::default())
        };
        let event = wire::encode_event(&ChannelEvent::Publication(publication, position.clone()));
        self.client
            .publish(subject, Bytes::from(event))
            .await
            .map_err(backend)?;
        Ok(position)
    }
}

enum Claim {
    Done(StreamPosition),
    Claimed(u64),
}

/// Reads one channel's subject: reorders publications, forwards events.
async fn channel_reader(
    channel: String,
    mut sub: Subscriber,
    handler: Arc<dyn BrokerEventHandler>,
    window: Duration,
    mut generation: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut reorder = Reorder::new(window);
    let mut out = Vec::new();
    loop {
        let deadline = reorder
            .deadline()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let held = reorder.deadline().is_some();
        tokio::select! {
            m = sub.next() => {
                let Some(m) = m else { break };
                match wire::decode_event(&m.payload) {
                    Ok(ChannelEvent::Publication(p, pos)) => {
                        reorder.push(p, pos, Instant::now(), &mut out);
                    }
                    Ok(ChannelEvent::Join(info)) => handler.on_join(&channel, &info),
                    Ok(ChannelEvent::Leave(info)) => handler.on_leave(&channel, &info),
                    Err(e) => tracing::warn!(%channel, error = %e, "NATS broker: undecodable event skipped"),
                }
            }
            _ = tokio::time::sleep_until(deadline), if held => {
                reorder.expire(Instant::now(), &mut out);
            }
            changed = generation.changed() => {
                if changed.is_err() {
                    break;
                }
                reorder.reset(&mut out);
            }
            _ = stop.changed() => break,
        }
        for (p, pos) in out.drain(..) {
            handler.on_publication(&channel, Arc::new(p), &pos);
        }
    }
}

/// Forwards control messages.
async fn control_reader(
    mut sub: Subscriber,
    handler: Arc<dyn BrokerEventHandler>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            m = sub.next() => match m {
                Some(m) => handler.on_control(m.payload),
                None => break,
            },
            _ = stop.changed() => break,
        }
    }
}

struct Monitor {
    client: Client,
    handler: Arc<dyn BrokerEventHandler>,
    health: Arc<Health>,
    probe_subject: String,
    probe_interval: Duration,
    timeout: Duration,
}

impl Monitor {
    /// Watches connection events and probes the delivery path.
    async fn run(
        self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut probe: Subscriber,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut seq = 0u64;
        let mut next_probe = Instant::now() + self.probe_interval;
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                event = events.recv() => match event {
                    None => return,
                    Some(Event::Disconnected) => {
                        self.health.interrupt(&*self.handler, "connection to NATS lost");
                    }
                    Some(Event::Closed) => {
                        self.health.interrupt(&*self.handler, "connection to NATS closed");
                    }
                    Some(Event::SlowConsumer(_)) => {
                        self.health.interrupt(
                            &*self.handler,
                            "NATS client dropped messages for a slow subscription",
                        );
                    }
                    Some(Event::Connected) => {
                        tracing::debug!("NATS broker: connected");
                        next_probe = Instant::now();
                    }
                    Some(e @ (Event::ServerError(_) | Event::ClientError(_))) => {
                        tracing::warn!(event = %e, "NATS broker: connection error");
                    }
                    Some(other) => tracing::debug!(event = %other, "NATS broker: connection event"),
                },
                _ = tokio::time::sleep_until(next_probe) => {
                    seq += 1;
                    let ok = self.probe(&mut probe, seq).await;
                    next_probe = Instant::now() + self.probe_interval;
                    if ok {
                        if self.client.connection_state() == State::Connected {
                            self.health.resume(&*self.handler);
                        }
                    } else {
                        self.health.interrupt(
                            &*self.handler,
                            "delivery probe through NATS got no answer in time",
                        );
                    }
                }
            }
        }
    }

    async fn probe(&self, sub: &mut Subscriber, seq: u64) -> bool {
        let payload = Bytes::from(seq.to_string());
        let round_trip = async {
            if self
                .client
                .publish(self.probe_subject.clone(), payload.clone())
                .await
                .is_err()
            {
                return false;
            }
            while let Some(m) = sub.next().await {
                if m.payload == payload {
                    return true;
                }
            }
            false
        };
        tokio::time::timeout(self.timeout, round_trip)
            .await
            .unwrap_or(false)
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn name(&self) -> &str {
        "nats"
    }

    /// Connects, opens (or creates) the buckets and subscribes to the
    /// control and probe subjects. Fails if the server cannot be reached
    /// within the dial timeout.
    async fn start(&self, handler: Arc<dyn BrokerEventHandler>) -> Result<(), BrokerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        if self.inner.starting.swap(true, Ordering::AcqRel) {
            return Err(BrokerError::AlreadyStarted);
        }
        let result = self.start_inner(handler).await;
        if result.is_err() {
            self.inner.starting.store(false, Ordering::Release);
        }
        result
    }

    async fn close(&self) -> Result<(), BrokerError> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let Some(s) = self.inner.started.get() else {
            return Ok(());
        };
        s.stop.send_replace(true);
        for (_, task) in s.subs.lock().await.drain() {
            task.abort();
        }
        let _ = tokio::time::timeout(self.inner.config.op_timeout, s.client.drain()).await;
        Ok(())
    }

    async fn health(&self) -> Result<(), BrokerError> {
        let s = self.started()?;
        if let Some(reason) = lock(&s.health.down).clone() {
            return Err(backend_msg(format!("NATS delivery interrupted: {reason}")));
        }
        if s.client.connection_state() != State::Connected {
            return Err(backend_msg("not connected to NATS"));
        }
        Ok(())
    }

    /// Cancel safety: dropped before the compare-and-set, nothing happened;
    /// dropped after it, the publication is in history but maybe not sent
    /// (subscribed nodes see the gap), and a claimed idempotency key lapses
    /// after twice the operation timeout.
    async fn publish(
        &self,
        channel: &str,
        mut publication: Publication,
        opts: PublishOptions,
    ) -> Result<StreamPosition, BrokerError> {
        let s = self.started()?;
        opts.validate()?;
        let c = &self.inner.config;
        let meta_ttl = opts.history_meta_ttl.unwrap_or(c.history_meta_ttl);
        require_ttl(meta_ttl, "history_meta_ttl")?;
        if publication.time == 0 {
            publication.time = unix_ms();
        }
        let channel_key = token(channel);
        let subject = self.subject(channel);
        self.timed(async {
            let claim = match &opts.idempotency_key {
                Some(key) => {
                    let idem_key = format!("{channel_key}.{}", token(key));
                    match s.claim(&idem_key, c.op_timeout * 2).await? {
                        Claim::Done(first) => return Ok(first),
                        Claim::Claimed(rev) => Some((idem_key, rev)),
                    }
                }
                None => None,
            };
            let result = {
                let _ordered = s.publish_lock(channel).lock().await;
                s.publish_locked(subject, &channel_key, publication, &opts, meta_ttl)
                    .await
            };
            if let Some((idem_key, rev)) = claim {
                let b = &s.buckets[IDEMPOTENCY];
                match &result {
                    Ok(position) => {
                        let ttl = opts.idempotency_ttl.unwrap_or(c.idempotency_ttl);
                        let done = StoredResult {
                            done: true,
                            offset: position.offset,
                            epoch: position.epoch.clone(),
                            expire_ms: unix_ms().saturating_add(ms(ttl)),
                        };
                        let bytes = Bytes::from(done.encode_to_vec());
                        // The publication is out: report it even if its
                        // result cannot be remembered (a retry then
                        // publishes again once the claim lapses).
                        match s.cas(b, &idem_key, bytes, rev).await {
                            Ok(Some(_)) => {}
                            Ok(None) => tracing::warn!(
                                %channel,
                                "NATS broker: idempotency claim was taken over"
                            ),
                            Err(e) => tracing::warn!(
                                %channel,
                                error = %e,
                                "NATS broker: idempotency result not stored"
                            ),
                        }
                    }
                    Err(_) => {
                        // Release the claim so that a retry can publish.
                        if let Ok(store) = s.store(b).await {
                            let _ = store.delete_expect_revision(&idem_key, Some(rev)).await;
                        }
                    }
                }
            }
            result
        })
        .await
    }

    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let s = self.started()?;
        let event = wire::encode_event(&ChannelEvent::Join(info));
        self.timed(async {
            s.client
                .publish(self.subject(channel), Bytes::from(event))
                .await
                .map_err(backend)
        })
        .await
    }

    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let s = self.started()?;
        let event = wire::encode_event(&ChannelEvent::Leave(info));
        self.timed(async {
            s.client
                .publish(self.subject(channel), Bytes::from(event))
                .await
                .map_err(backend)
        })
        .await
    }

    async fn publish_control(&self, data: Bytes) -> Result<(), BrokerError> {
        let s = self.started()?;
        self.timed(async {
            s.client
                .publish(self.control_subject(), data)
                .await
                .map_err(backend)
        })
        .await
    }

    /// Returns once the server has the subscription (a flush round trip).
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let s = self.started()?;
        self.timed(async {
            let mut subs = s.subs.lock().await;
            if subs.contains_key(channel) {
                return Ok(());
            }
            let sub = s
                .client
                .subscribe(self.subject(channel))
                .await
                .map_err(backend)?;
            let task = tokio::spawn(channel_reader(
                channel.to_owned(),
                sub,
                s.handler.clone(),
                self.inner.config.reorder_window,
                s.health.generation.subscribe(),
                s.stop.subscribe(),
            ));
            subs.insert(channel.to_owned(), task);
            if let Err(e) = s.client.flush().await {
                if let Some(task) = subs.remove(channel) {
                    task.abort();
                }
                return Err(backend(e));
            }
            Ok(())
        })
        .await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let s = self.started()?;
        self.timed(async {
            if let Some(task) = s.subs.lock().await.remove(channel) {
                // Dropping the subscriber inside the task unsubscribes.
                task.abort();
            }
            Ok(())
        })
        .await
    }

    async fn history(
        &self,
        channel: &str,
        filter: HistoryFilter,
        opts: HistoryOptions,
    ) -> Result<HistoryResult, BrokerError> {
        let s = self.started()?;
        let meta_ttl = opts.meta_ttl.unwrap_or(self.inner.config.history_meta_ttl);
        require_ttl(meta_ttl, "meta_ttl")?;
        let key = token(channel);
        self.timed(async {
            let b = &s.buckets[HISTORY];
            let stream = s
                .update(b, &key, |current| {
                    let stored: Option<StoredStream> = current
                        .map(|v| store::decode("history stream", &v))
                        .transpose()?;
                    let (stream, write) = StoredStream::for_read(stored, ms(meta_ttl), unix_ms());
                    Ok(if write {
                        Change::Write(Bytes::from(stream.encode_to_vec()), stream)
                    } else {
                        Change::Keep(stream)
                    })
                })
                .await?;
            Ok(HistoryResult {
                publications: stream.select(&filter, &opts, unix_ms())?,
                position: stream.position(),
            })
        })
        .await
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        let s = self.started()?;
        let key = token(channel);
        self.timed(async {
            s.update(&s.buckets[HISTORY], &key, |current| {
                let stored: Option<StoredStream> = current
                    .map(|v| store::decode("history stream", &v))
                    .transpose()?;
                match StoredStream::live(stored, unix_ms()) {
                    Some(mut stream) if !stream.pubs.is_empty() => {
                        stream.pubs.clear();
                        stream.pubs_expire_ms = 0;
                        Ok(Change::Write(Bytes::from(stream.encode_to_vec()), ()))
                    }
                    _ => Ok(Change::Keep(())),
                }
            })
            .await
        })
        .await
    }

    async fn add_presence(
        &self,
        channel: &str,
        client_id: &str,
        info: ClientInfo,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let s = self.started()?;
        require_ttl(ttl, "presence ttl")?;
        let payload = Bytes::from(wire::encode_client_info(&info));
        self.timed(s.upsert_lease(
            &s.buckets[PRESENCE],
            &token(channel),
            client_id,
            payload,
            ttl,
        ))
        .await
    }

    async fn remove_presence(&self, channel: &str, client_id: &str) -> Result<(), BrokerError> {
        let s = self.started()?;
        self.timed(s.remove_lease(&s.buckets[PRESENCE], &token(channel), client_id))
            .await
    }

    async fn presence(&self, channel: &str) -> Result<Presence, BrokerError> {
        let s = self.started()?;
        let set = self
            .timed(s.live_leases(&s.buckets[PRESENCE], &token(channel)))
            .await?;
        set.leases
            .into_iter()
            .map(|l| wire::decode_client_info(&l.payload).map(|info| (l.id, info)))
            .collect()
    }

    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError> {
        let presence = self.presence(channel).await?;
        let users: std::collections::HashSet<&str> =
            presence.values().map(|i| i.user.as_str()).collect();
        Ok(PresenceStats {
            num_clients: presence.len(),
            num_users: users.len(),
        })
    }

    async fn register_node(&self, info: NodeInfo, ttl: Duration) -> Result<(), BrokerError> {
        let s = self.started()?;
        require_ttl(ttl, "node ttl")?;
        let payload = Bytes::from(wire::encode_node_info(&info));
        self.timed(s.upsert_lease(&s.buckets[NODES], "nodes", &info.id, payload, ttl))
            .await
    }

    async fn unregister_node(&self, node_id: &str) -> Result<(), BrokerError> {
        let s = self.started()?;
        self.timed(s.remove_lease(&s.buckets[NODES], "nodes", node_id))
            .await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError> {
        let s = self.started()?;
        let set = self
            .timed(s.live_leases(&s.buckets[NODES], "nodes"))
            .await?;
        let mut list = set
            .leases
            .iter()
            .map(|l| wire::decode_node_info(&l.payload))
            .collect::<Result<Vec<_>, _>>()?;
        list.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(list)
    }
}

impl NatsBroker {
    async fn start_inner(&self, handler: Arc<dyn BrokerEventHandler>) -> Result<(), BrokerError> {
        let c = &self.inner.config;
        if !store::valid_prefix(&c.prefix) {
            return Err(BrokerError::InvalidOptions(format!(
                "NATS subject prefix {:?} is not a valid subject (empty token, space or wildcard)",
                c.prefix
            )));
        }
        require_ttl(c.op_timeout, "op_timeout")?;
        require_ttl(c.probe_interval, "probe_interval")?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let client = self.connect(events_tx).await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(c.op_timeout);
        let mut meta_ttl = BUCKETS.map(|(_, meta_ttl)| meta_ttl).into_iter();
        let buckets = c.bucket_names().map(|name| Bucket {
            name,
            max_age: if meta_ttl.next().unwrap_or(false) {
                c.history_meta_ttl
            } else {
                GC_AGE
            },
            store: Mutex::new(None),
        });
        let (stop, _) = watch::channel(false);
        let (generation, _) = watch::channel(0u64);
        let started = Started {
            client: client.clone(),
            js,
            handler: handler.clone(),
            buckets,
            subs: tokio::sync::Mutex::new(HashMap::new()),
            publish_locks: (0..c.publish_locks.max(1))
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: RandomState::new(),
            health: Arc::new(Health {
                down: Mutex::new(None),
                generation,
            }),
            stop,
        };
        let setup = async {
            for b in &started.buckets {
                started.store(b).await?;
            }
            let control = client
                .subscribe(self.control_subject())
                .await
                .map_err(backend)?;
            let probe_subject = format!("{}.probe.{}", c.prefix, new_epoch());
            let probe = client
                .subscribe(probe_subject.clone())
                .await
                .map_err(backend)?;
            client.flush().await.map_err(backend)?;
            Ok::<_, BrokerError>((control, probe, probe_subject))
        };
        let (control, probe, probe_subject) = self.timed(setup).await?;
        tokio::spawn(control_reader(
            control,
            handler.clone(),
            started.stop.subscribe(),
        ));
        let monitor = Monitor {
            client,
            handler,
            health: started.health.clone(),
            probe_subject,
            probe_interval: c.probe_interval,
            timeout: c.op_timeout,
        };
        tokio::spawn(monitor.run(events_rx, probe, started.stop.subscribe()));
        if self.inner.started.set(started).is_err() {
            return Err(BrokerError::AlreadyStarted);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_with_full_jitter() {
        let max = Duration::from_secs(2);
        assert_eq!(reconnect_delay(0, max), Duration::ZERO);
        assert_eq!(reconnect_delay(1, max), Duration::ZERO);
        for attempts in 2..200 {
            let exp = u32::try_from(attempts - 1).unwrap().min(20);
            let top = (Duration::from_millis(25) * 2u32.pow(exp)).min(max);
            let draws: Vec<Duration> = (0..200).map(|_| reconnect_delay(attempts, max)).collect();
            assert!(draws.iter().all(|d| *d <= top), "attempt {attempts}");
            // Jittered: not one fixed delay per attempt.
            assert!(draws.iter().any(|d| *d != draws[0]), "attempt {attempts}");
        }
        assert!(reconnect_delay(usize::MAX, max) <= max);
    }
}
