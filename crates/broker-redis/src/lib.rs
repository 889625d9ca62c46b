//! The wshub [`Broker`](wshub_hub::broker::Broker) on Redis: several gateway
//! nodes share publications, history, presence and the node registry
//! through one Redis server.
//!
//! # What it owns
//!
//! [`RedisBroker`] implements the semantics documented on the `Broker`
//! trait and checked by the conformance suite of `wshub-hub` (gapless
//! offsets from 1, epochs, history size and TTL, meta TTL, idempotency,
//! presence leases, control messages, delivery in offset order). It knows
//! Redis and the wire format of [`wshub_hub::broker::wire`]; it does not
//! know clients, sessions or the client protocol.
//!
//! Two connections per broker: a multiplexed command connection
//! ([`redis::aio::ConnectionManager`], which replaces itself after the
//! server went away) for every command and script, and one dedicated PUB/SUB
//! connection read by a background task that pushes events into the node's
//! [`BrokerEventHandler`](wshub_hub::broker::BrokerEventHandler).
//! Concurrent calls share the command connection, which pipelines them;
//! after a reconnect the wanted channels are subscribed again in batches of
//! 512 per `SUBSCRIBE`. Needs Redis 5 or newer (streams, and scripts that
//! read the server clock before writing).
//!
//! # Key layout
//!
//! `P` is the configured prefix (default `centrifugo`), `C` a gateway
//! channel. Every key of one channel carries the hash tag `{C}`, so in a
//! Redis Cluster they would all land in one slot, as scripts require.
//!
//! | Key | Type | Content |
//! |-----|------|---------|
//! | `P.history.{C}` | stream | publications; entry id `<offset>-0`, field `d` = [`wire::encode_publication`](wshub_hub::broker::wire::encode_publication) bytes. Expires `history_ttl` after the last publish (the whole window at once); trimmed to `history_size` with an exact `MAXLEN`. |
//! | `P.history.meta.{C}` | hash | the position: `e` epoch, `o` top offset, `t` last publish (Unix ms, server clock). Expires `history_meta_ttl` after the last publish or history call (extended, never shortened). |
//! | `P.idempotency.{C}.K` | string | `"<offset> <epoch>"` returned by the first publish with key `K`; expires after the idempotency TTL. |
//! | `P.presence.data.{C}` | hash | client id → [`wire::encode_client_info`](wshub_hub::broker::wire::encode_client_info) |
//! | `P.presence.expire.{C}` | sorted set | client id → lease expiry (Unix ms) |
//! | `P.presence.user.{C}` | hash | client id → user id (for the distinct-user count) |
//! | `P.nodes.data.{nodes}` | hash | node id → [`wire::encode_node_info`](wshub_hub::broker::wire::encode_node_info) |
//! | `P.nodes.expire.{nodes}` | sorted set | node id → lease expiry (Unix ms) |
//!
//! Leases (presence, nodes) expire by score: every script that touches a
//! lease set first drops the members whose expiry passed, and the keys
//! themselves expire with the longest lease, so an abandoned channel leaves
//! nothing behind.
//!
//! PUB/SUB channels: `P.client.C` (publications, join and leave of `C`, as
//! [`wire::encode_event`](wshub_hub::broker::wire::encode_event) bytes),
//! `P.control` (control messages, raw), `P.probe.N` (the probe of the node
//! with broker id `N`).
//!
//! History is a Redis **Stream** rather than a list: entry ids are the
//! offsets, so "after offset X", "before offset X", a limit and newest-first
//! are plain `XRANGE`/`XREVRANGE` calls with `COUNT`, with no index
//! arithmetic that could drift from the position; `XADD ... MAXLEN n` trims
//! exactly; and every entry names its own offset.
//!
//! # The publish script
//!
//! A publish is one Lua script (`EVALSHA`, loaded on `NOSCRIPT`, through
//! [`redis::Script`]), so it is atomic and the `PUBLISH` inside it makes
//! nodes receive a channel's publications in offset order:
//!
//! 1. With an idempotency key: if the key exists, return the position it
//!    holds; nothing else happens.
//! 2. Without history: `PUBLISH` the encoded event, go to 7.
//! 3. Read the epoch from the meta hash; if there is none, the stream is
//!    new (or was lost): take the epoch drawn by the caller
//!    ([`new_epoch`](wshub_hub::broker::new_epoch)), drop any stale stream
//!    and start at offset 0.
//! 4. The next offset is the top + 1. The caller sent the publication
//!    encoded without offset and epoch (protobuf leaves zero fields out);
//!    the script appends field 1 (offset) and field 6 (epoch), which gives
//!    exactly what `encode_publication` produces for them, field order
//!    aside.
//! 5. `XADD P.history.{C} MAXLEN size <offset>-0 d <entry>`, `PEXPIRE`
//!    the stream by `history_ttl`, store the top offset and the publish time
//!    in the meta hash and extend its TTL to at least `history_meta_ttl`.
//! 6. `PUBLISH P.client.C` the entry wrapped as the event's field 1, which
//!    decodes with `wire::decode_event` to the publication and its position.
//! 7. With an idempotency key: `SET` it to the position, `PX` its TTL.
//!    Return the position.
//!
//! A publish without history and without idempotency key is a plain
//! `PUBLISH`. History calls are a script too: they create the stream
//! (offset 0, new epoch) when it does not exist, extend the meta TTL, and
//! apply the caller's current size and TTL caps.
//!
//! # Delivery and failures
//!
//! Delivery uses `SUBSCRIBE` on a dedicated RESP2 connection. `SSUBSCRIBE`
//! (sharded PUB/SUB) only makes a difference in a Redis Cluster, which this
//! crate does not support, and the redis crate offers it only on
//! cluster connections; plain `SUBSCRIBE` works with every Redis version.
//! [`subscribe`](wshub_hub::broker::Broker::subscribe) returns when Redis
//! confirmed; the broker keeps the set of wanted channels and delivers
//! only those.
//!
//! Every command is bounded by `io_timeout`: a server that does not answer
//! gives [`BrokerError::Timeout`](wshub_hub::broker::BrokerError::Timeout),
//! never a hang. Delivery is watched two ways: the PUB/SUB connection
//! closing, and a probe every `probe_interval` that publishes to the node's
//! own probe channel and must come back on the PUB/SUB connection within
//! `io_timeout` (this catches a server that keeps the connection open but
//! delivers nothing, e.g. a stopped process). On either, the broker calls
//! `on_delivery_interrupted(reason)` once, logs a warning,
//! [`health`](wshub_hub::broker::Broker::health) fails until delivery is
//! back, and it reconnects with exponential backoff and full jitter
//! (a random delay below a ceiling of `reconnect_min_delay` doubling to
//! `reconnect_max_delay`, [`wshub_backoff`]). After
//! reconnecting it subscribes again to every wanted channel, checks that
//! the command connection answers, then calls `on_delivery_resumed()` once
//! and logs it. Publications made meanwhile were not delivered to this
//! node; the node compares stream positions to tell its clients. A Redis
//! that restarted without persistence has lost the streams: the next
//! history call or publish creates them with a new epoch, so clients cannot
//! recover across the loss and are told so.
//!
//! Not supported: several addresses (client-side sharding), Redis Cluster,
//! Sentinel and TLS (`rediss://`).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use wshub_hub::broker::*;
//! use wshub_broker_redis::{RedisBroker, RedisBrokerConfig};
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
//!         eprintln!("redis delivery interrupted: {reason}");
//!     }
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), BrokerError> {
//! let config = RedisBrokerConfig::default()
//!     .address("redis://127.0.0.1:6379")
//!     .prefix("myapp")
//!     .io_timeout(Duration::from_secs(2));
//! let broker = RedisBroker::new(config)?;
//! broker.start(Arc::new(Node)).await?;
//! broker.subscribe("news").await?;
//! let opts = PublishOptions::default().history(100, Duration::from_secs(300));
//! let position = broker.publish("news", Publication::new("hi"), opts).await?;
//! let missed = recover(&broker, "news", &position, &RecoverOptions::default()).await?;
//! assert!(missed.recovered);
//! broker.health().await?;
//! # Ok(())
//! # }
//! ```
// No panic reachable from input: the release profile aborts on panic. Each
// remaining exception is a tiny `#[allow]` with a comment proving it cannot fire.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod broker;
mod config;
mod delivery;
mod names;
mod scripts;

pub use broker::RedisBroker;
pub use config::RedisBrokerConfig;
