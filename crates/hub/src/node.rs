//! The [`Node`]: one gateway process. It owns the configuration, the
//! broker, the [`Hub`] of local subscribers, the token verifiers and the
//! metrics, and fans broker events out to local clients: each publication
//! is encoded once per encoding in use and the same bytes are queued for
//! every subscriber.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use bytes::Bytes;
use wshub_protocol::{encode_push_reply, Encoding, Push};

use crate::auth::{VerifierError, Verifiers};
use crate::broker::{self, Broker, BrokerError, BrokerEventHandler, StreamPosition};
use crate::config::Config;
use crate::hub::Hub;

/// Turns an encoded protocol message into what the transport queues
/// (for WebSocket: a complete frame, so that one broadcast frame is built
/// once and shared). The default keeps the bytes as they are.
pub type Framer = fn(Encoding, Bytes) -> Bytes;

fn identity_framer(_: Encoding, b: Bytes) -> Bytes {
    b
}

/// Counters and gauges of a node, rendered in the Prometheus text format.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections accepted (total).
    pub connections_accepted: AtomicU64,
    /// Slow-consumer disconnects (total).
    pub slow_disconnects: AtomicU64,
    /// Publications fanned out to local clients (total deliveries).
    pub deliveries: AtomicU64,
    labeled: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Metrics {
    /// Adds 1 to a labeled counter (`name{label}`).
    pub fn inc(&self, name: &'static str, label: impl Into<String>) {
        let mut m = self.labeled.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((name, label.into())).or_default() += 1;
    }

    /// Adds `n` to a labeled counter.
    pub fn add(&self, name: &'static str, label: impl Into<String>, n: u64) {
        if n == 0 {
            return;
        }
        let mut m = self.labeled.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((name, label.into())).or_default() += n;
    }

    /// A labeled counter's value (0 when never incremented).
    pub fn get(&self, name: &'static str, label: &str) -> u64 {
        let m = self.labeled.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&(name, label.to_owned())).copied().unwrap_or(0)
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The token settings are unusable.
    #[error(transparent)]
    Verifier(#[from] VerifierError),
    /// The broker failed to start.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// One gateway node.
pub struct Node {
    config: Arc<Config>,
    broker: Arc<dyn Broker>,
    hub: Hub,
    verifiers: Verifiers,
    metrics: Metrics,
    id: String,
    started: Instant,
    framer: Framer,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

struct Handler(Weak<Node>);

impl BrokerEventHandler for Handler {
    fn on_publication(
        &self,
        channel: &str,
        publication: Arc<broker::Publication>,
        _position: &StreamPosition,
    ) {
        if let Some(node) = self.0.upgrade() {
            let offset = publication.offset;
            let push = Push::publication(channel, to_proto_publication(&publication));
            node.fan_out(channel, &push, offset, false);
        }
    }

    fn on_join(&self, channel: &str, info: &broker::ClientInfo) {
        if let Some(node) = self.0.upgrade() {
            let push = Push::join(channel, to_proto_info(info));
            node.fan_out(channel, &push, 0, true);
        }
    }

    fn on_leave(&self, channel: &str, info: &broker::ClientInfo) {
        if let Some(node) = self.0.upgrade() {
            let push = Push::leave(channel, to_proto_info(info));
            node.fan_out(channel, &push, 0, true);
        }
    }

    fn on_control(&self, _data: Bytes) {}
}

/// A broker client info as a protocol one.
pub fn to_proto_info(i: &broker::ClientInfo) -> wshub_protocol::ClientInfo {
    wshub_protocol::ClientInfo {
        user: i.user.clone(),
        client: i.client.clone(),
        conn_info: i.conn_info.clone().unwrap_or_default(),
        chan_info: i.chan_info.clone().unwrap_or_default(),
    }
}

/// A broker publication as a protocol one.
pub fn to_proto_publication(p: &broker::Publication) -> wshub_protocol::Publication {
    wshub_protocol::Publication {
        data: p.data.clone(),
        info: p.info.as_ref().map(to_proto_info),
        offset: p.offset,
        tags: p.tags.clone(),
        ..Default::default()
    }
}

/// A random id in the UUID v4 text form.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to time and a counter (unique, not secret).
        static N: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b[..8].copy_from_slice(&t.to_le_bytes());
        b[8..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Node {
    /// Starts a node on `broker` (which must not be started yet).
    pub async fn start(config: Config, broker: Arc<dyn Broker>) -> Result<Arc<Node>, NodeError> {
        Self::start_with_framer(config, broker, identity_framer).await
    }

    /// [`Node::start`] with the transport's [`Framer`].
    pub async fn start_with_framer(
        config: Config,
        broker: Arc<dyn Broker>,
        framer: Framer,
    ) -> Result<Arc<Node>, NodeError> {
        let verifiers = Verifiers::from_config(&config)?;
        let node = Arc::new(Node {
            config: Arc::new(config),
            broker,
            hub: Hub::new(),
            verifiers,
            metrics: Metrics::default(),
            id: random_id(),
            started: Instant::now(),
            framer,
        });
        node.broker
            .start(Arc::new(Handler(Arc::downgrade(&node))))
            .await?;
        Ok(node)
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }
    /// The broker.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }
    /// The hub of local subscribers.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
    /// The token verifiers.
    pub fn verifiers(&self) -> &Verifiers {
        &self.verifiers
    }
    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Seconds since start.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Encodes a protocol message for the transport.
    pub fn frame(&self, encoding: Encoding, payload: Bytes) -> Bytes {
        (self.framer)(encoding, payload)
    }

    /// Queues `push` for every local subscriber of `channel` (only those
    /// that asked for join/leave when `join_leave`), encoding it at most
    /// once per encoding.
    pub fn fan_out(&self, channel: &str, push: &Push, offset: u64, join_leave: bool) {
        let mut frames: [Option<Bytes>; 2] = [None, None];
        let mut delivered = 0u64;
        let mut slow = Vec::new();
        self.hub.for_each_subscriber(channel, |s| {
            if join_leave && !s.join_leave {
                return;
            }
            let enc = s.handle.encoding();
            let slot = &mut frames[usize::from(enc.is_binary())];
            if slot.is_none() {
                match encode_push_reply(enc, push) {
                    Ok(b) => *slot = Some(self.frame(enc, b)),
                    Err(e) => {
                        tracing::warn!(channel, error = %e, "cannot encode push");
                        return;
                    }
                }
            }
            if let Some(f) = slot {
                if s.handle.push_channel(channel, offset, f.clone()) {
                    delivered += 1;
                } else {
                    slow.push(s.handle.id().to_owned());
                }
            }
        });
        self.metrics
            .deliveries
            .fetch_add(delivered, Ordering::Relaxed);
        let kind = if push.publication.is_some() {
            "publication"
        } else if push.join.is_some() {
            "join"
        } else if push.leave.is_some() {
            "leave"
        } else {
            "other"
        };
        self.metrics
            .add(Node::MESSAGES_SENT, format!("type=\"{kind}\""), delivered);
        for c in slow {
            tracing::info!(client = %c, "slow consumer disconnected");
            self.metrics
                .slow_disconnects
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text exposition of the node's metrics.
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write;
        let m = &self.metrics;
        let (channels, subs) = self.hub.counts();
        let (clients, users) = self.hub.client_counts();
        let mut s = String::new();
        let gauge = |s: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        gauge(
            &mut s,
            "wshub_node_num_clients",
            "Client connections open.",
            "gauge",
            clients as u64,
        );
        gauge(
            &mut s,
            "wshub_node_num_users",
            "Distinct users connected.",
            "gauge",
            users as u64,
        );
        gauge(
            &mut s,
            "wshub_node_num_channels",
            "Channels with local subscribers.",
            "gauge",
            channels as u64,
        );
        gauge(
            &mut s,
            "wshub_node_num_subscriptions",
            "Client subscriptions.",
            "gauge",
            subs as u64,
        );
        gauge(
            &mut s,
            "wshub_client_connections_accepted_total",
            "Connections accepted.",
            "counter",
            m.connections_accepted.load(Ordering::Relaxed),
        );
        gauge(
            &mut s,
            "wshub_client_slow_disconnects_total",
            "Clients disconnected as slow consumers (3008).",
            "counter",
            m.slow_disconnects.load(Ordering::Relaxed),
        );
        gauge(
            &mut s,
            "wshub_node_deliveries_total",
            "Pushes queued to local clients.",
            "counter",
            m.deliveries.load(Ordering::Relaxed),
        );
        let labeled = m.labeled.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = "";
        for ((name, label), v) in labeled.iter() {
            if *name != last {
                let _ = writeln!(s, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(s, "{name}{{{label}}} {v}");
        }
        s
    }

    /// Metric names used with [`Metrics::inc`].
    pub const COMMANDS: &'static str = "wshub_client_commands_total";
    /// Disconnects by code.
    pub const DISCONNECTS: &'static str = "wshub_client_disconnects_total";
    /// Messages sent by type.
    pub const MESSAGES_SENT: &'static str = "wshub_node_messages_sent_total";
    /// API calls by method.
    pub const API_CALLS: &'static str = "wshub_api_calls_total";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_look_like_uuid_v4() {
        let a = random_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, random_id());
    }
}
