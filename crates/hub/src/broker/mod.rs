//! The [`Broker`]: how a gateway node publishes, keeps history and presence,
//! and talks to the other nodes.
//!
//! One node runs on the embedded [`MemoryBroker`]; several nodes scale out
//! over a broker backed by Redis or NATS (separate crates) that implements
//! the same trait and passes the same conformance suite
//! (`broker::conformance`, built with the `conformance` feature). The
//! semantics follow Centrifugo and its Go library centrifuge (`Broker` and
//! `PresenceManager`), so that Centrifugo clients see the behaviour they
//! expect; where a choice had to be made it is written down here.
//!
//! # Delivery
//!
//! [`Broker::start`] hands the broker an [`BrokerEventHandler`]; the broker
//! pushes into the node through it (publications, join/leave, control
//! messages). A node declares its interest in a channel with
//! [`Broker::subscribe`] (a set, not a count: the node counts its own
//! subscribers) and gets publications and join/leave events of the channels
//! it is subscribed to, at most once, in offset order per channel.
//! [`Broker::publish_control`] reaches every node, this one included.
//!
//! # History and recovery
//!
//! A channel published with [`PublishOptions::history`] has a *stream*:
//! offsets start at 1 and grow by exactly 1 per publication; the stream has
//! an *epoch*, a random string drawn when the stream is created. The stream
//! keeps the last `history_size` publications; `history_ttl` after the
//! *last* publication the whole window is dropped (Centrifugo: "to get rid of
//! old history data for unused channels"). The position (top offset and
//! epoch) is metadata that outlives the publications: it is kept
//! `history_meta_ttl` (Centrifugo's default, 720 h) after the last publish or
//! history call. Only when the metadata is lost (meta TTL, a restart of a
//! memory broker, a backend that lost data) is the stream created anew with
//! offset 0 and a **new epoch**, so a client holding an old position can
//! tell. [`Broker::remove_history`] drops the publications and, like
//! Centrifugo's `history_remove`, keeps the position so subscribers are not
//! disconnected for insufficient state.
//!
//! [`recover`] is the one rule the gateway applies on resubscribe: same epoch
//! and every publication after the client's offset still in history (and at
//! most `max_publications` of them) → all of them, in order, `recovered =
//! true`; anything else → none of them, `recovered = false`. A client told
//! "you missed messages" is better than a silent gap.
//!
//! Two more rules. History is kept only when both `history_size` and
//! `history_ttl` are set; one without the other is
//! [`BrokerError::InvalidOptions`], not silently no history. A history call
//! compares offsets only: for a client's `history(since: ...)` the gateway
//! compares `since.epoch` with the returned position itself and answers
//! Centrifugo's "unrecoverable position" (112) when they differ. Which
//! publications a history call returns is one rule,
//! [`HistoryFilter::select`], used by every broker that keeps its window
//! itself.
//!
//! # Failures of a networked backend
//!
//! Delivery over Redis PUB/SUB or NATS core is at most once: while the
//! connection is down, publications for this node are lost. A networked
//! broker therefore watches its delivery path (connection errors and a
//! periodic probe that must come back through it, which also catches a
//! backend that stays connected but delivers nothing), reports
//! [`BrokerEventHandler::on_delivery_interrupted`], fails
//! [`Broker::health`] meanwhile, reconnects with backoff, resubscribes
//! every channel and reports [`BrokerEventHandler::on_delivery_resumed`].
//! The node then compares each channel's stream position with the last
//! offset it delivered and tells subscribers that are behind, so history
//! recovery fills the gap or the client learns it cannot. Wire formats
//! between nodes are in [`wire`].
//!
//! # Presence and nodes
//!
//! Presence entries are leases: [`Broker::add_presence`] sets or refreshes an
//! entry for `ttl`; the node refreshes its clients periodically and removes
//! them on unsubscribe. Node infos for `/api/info` are leases too
//! ([`Broker::register_node`]).
//!
//! # Layers
//!
//! A wrapper that changes a few calls of a broker (counting failures,
//! dropping events in a test, routing a shared backend) is a
//! [`BrokerLayer`]: it overrides only what it changes, every other call is
//! forwarded, and [`BrokerLayer::over`] makes it a [`Broker`] again.
//!
//! # The memory broker
//!
//! [`MemoryBroker`] keeps everything in process memory, sharded by channel
//! hash (N shards of `Mutex<HashMap>`, no global lock on the publish path).
//! Publishes into one channel are serialized by a striped async lock held
//! across "append to history, deliver to the handler", so the handler sees a
//! channel's publications in offset order even with many concurrent
//! publishers; readers take only the shard lock. Expiry is checked on every
//! access (so answers never include expired data) and a sweeper task drives
//! per-shard timer heaps to free memory of idle channels. Time is
//! `tokio::time`, so tests run with paused time.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
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
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BrokerError> {
//! let broker = MemoryBroker::new(MemoryBrokerConfig::default());
//! broker.start(Arc::new(Node)).await?;
//! broker.subscribe("news").await?;
//! let opts = PublishOptions::default().history(10, Duration::from_secs(60));
//! let seen = broker.publish("news", Publication::new("hi"), opts.clone()).await?;
//! broker.publish("news", Publication::new("again"), opts).await?;
//!
//! // A client that saw the first publication reconnects:
//! let r = recover(&broker, "news", &seen, &RecoverOptions::default()).await?;
//! assert!(r.recovered);
//! assert_eq!(r.publications.len(), 1);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

mod layer;
mod memory;
mod recovery;
mod types;
pub mod wire;

#[cfg(any(test, feature = "conformance"))]
// A test suite (built only for tests and for broker crates' tests): its
// assertions are meant to panic.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
pub mod conformance;

pub use layer::{BrokerLayer, BrokerOp, Layered};
pub use memory::{new_epoch, MemoryBroker, MemoryBrokerConfig, MemoryStats};
pub use recovery::{evaluate_recovery, recover, RecoverOptions, Recovery};
pub use types::{
    BrokerError, ClientInfo, HistoryFilter, HistoryOptions, HistoryResult, HistorySelection,
    NodeInfo, Presence, PresenceStats, Publication, PublishOptions, StreamPosition,
};

/// How a broker pushes into the node.
///
/// Methods are called synchronously from the broker (inside `publish` for
/// the memory broker, from a reader task for networked brokers) and must be
/// quick and must not block: hand the event to the node's fan-out and
/// return. They must not call back into the broker synchronously (spawn a
/// task instead): the memory broker holds the channel's publish lock while
/// calling [`BrokerEventHandler::on_publication`].
pub trait BrokerEventHandler: Send + Sync + 'static {
    /// A publication in a channel this node is subscribed to. `position` is
    /// the stream position after it (zero value when the channel keeps no
    /// history); calls for one channel come in offset order.
    fn on_publication(
        &self,
        channel: &str,
        publication: Arc<Publication>,
        position: &StreamPosition,
    );
    /// A client joined a channel this node is subscribed to.
    fn on_join(&self, channel: &str, info: &ClientInfo);
    /// A client left a channel this node is subscribed to.
    fn on_leave(&self, channel: &str, info: &ClientInfo);
    /// A node-to-node control message (from any node, this one included).
    fn on_control(&self, data: Bytes);
    /// Delivery from the backend stopped: the connection was lost or the
    /// periodic probe got no answer. Publications made until
    /// [`BrokerEventHandler::on_delivery_resumed`] may never reach this node.
    /// The default does nothing.
    fn on_delivery_interrupted(&self, reason: &str) {
        let _ = reason;
    }
    /// Delivery is back after an interruption: the broker reconnected and
    /// subscribed again to every channel this node had asked for. The node
    /// must assume publications were lost in between and check the stream
    /// positions of its channels (clients behind get told). The default does
    /// nothing.
    fn on_delivery_resumed(&self) {}
}

/// PUB/SUB, history, presence and node-to-node messages for the gateway.
///
/// Implementations: [`MemoryBroker`] (one node), Redis and NATS brokers
/// (many nodes). Each must pass the conformance suite. Unless stated
/// otherwise, every method is cancel safe in the sense that dropping its
/// future either leaves the operation undone or done, never half done.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// A short name of the implementation ("memory", "redis", ...).
    fn name(&self) -> &str;

    /// Starts the broker: from now on it pushes events into `handler`.
    /// Call once, before anything else.
    async fn start(&self, handler: Arc<dyn BrokerEventHandler>) -> Result<(), BrokerError>;

    /// Stops background work and refuses further calls with
    /// [`BrokerError::Closed`].
    async fn close(&self) -> Result<(), BrokerError>;

    /// Whether the broker can serve (for `/ready`).
    async fn health(&self) -> Result<(), BrokerError>;

    /// Publishes into `channel`: assigns the next offset and appends to
    /// history when `opts` keep history, and delivers to every node
    /// subscribed to the channel. Returns the stream position of the
    /// publication (zero value without history). With an idempotency key
    /// seen before (and not yet forgotten), returns the first result and
    /// does nothing else.
    ///
    /// Publishes into one channel must be atomic and ordered: offsets are
    /// gapless, and nodes receive them in offset order.
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        opts: PublishOptions,
    ) -> Result<StreamPosition, BrokerError>;

    /// Tells the nodes subscribed to `channel` that a client joined it.
    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError>;

    /// Tells the nodes subscribed to `channel` that a client left it.
    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError>;

    /// Sends a control message to every node, this one included.
    async fn publish_control(&self, data: Bytes) -> Result<(), BrokerError>;

    /// This node wants the publications and join/leave events of `channel`.
    /// Idempotent. Returns once delivery is in place.
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError>;

    /// This node no longer wants `channel`. Idempotent. An event already in
    /// flight may still arrive.
    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError>;

    /// Reads history (see [`HistoryFilter`]) and the stream's current
    /// position. On a channel without a stream it creates one (offset 0,
    /// new epoch), so the position returned stays valid.
    async fn history(
        &self,
        channel: &str,
        filter: HistoryFilter,
        opts: HistoryOptions,
    ) -> Result<HistoryResult, BrokerError>;

    /// Drops the publications kept for `channel`; its position (offset and
    /// epoch) stays, so later publications continue the offsets and a client
    /// behind the position is told it cannot recover.
    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError>;

    /// Sets or refreshes the presence of `client_id` in `channel` for `ttl`.
    async fn add_presence(
        &self,
        channel: &str,
        client_id: &str,
        info: ClientInfo,
        ttl: Duration,
    ) -> Result<(), BrokerError>;

    /// Removes the presence of `client_id` in `channel`.
    async fn remove_presence(&self, channel: &str, client_id: &str) -> Result<(), BrokerError>;

    /// The clients present in `channel` (unexpired leases).
    async fn presence(&self, channel: &str) -> Result<Presence, BrokerError>;

    /// Counts of clients and distinct users present in `channel`.
    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError>;

    /// Registers or refreshes a node's info for `ttl`.
    async fn register_node(&self, info: NodeInfo, ttl: Duration) -> Result<(), BrokerError>;

    /// Removes a node's info (on graceful shutdown).
    async fn unregister_node(&self, node_id: &str) -> Result<(), BrokerError>;

    /// Every node with an unexpired registration.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError>;
}
