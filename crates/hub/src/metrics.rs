//! A node's metrics on [`prometheus_client`]: one [`Registry`] per node
//! ([`Metrics`]), typed label sets, and every handle for a fixed label
//! value resolved once when the node starts and kept in an array, so that
//! counting a command, a delivery or a frame is one relaxed atomic add —
//! no lock, no map lookup, no allocation. The only label that is not known
//! at start is the disconnect code (custom codes come from the server
//! API); it goes through a [`Family`] once per closed connection, never
//! per message.
//!
//! Latency histograms are this module's [`Histogram`] (atomic buckets,
//! [`LATENCY_BUCKETS`]), not `prometheus_client`'s, whose `observe` takes a
//! mutex. [`MeteredBroker`] is a [`Broker`] layer ([`BrokerLayer`]) that counts
//! failed calls by operation.
//!
//! Rendering (a `/metrics` scrape, [`Metrics::render`]) writes the
//! Prometheus text format 0.0.4 ([`CONTENT_TYPE`]; not OpenMetrics, so no
//! `# EOF`, and counter families keep their `_total` name in `# HELP` and
//! `# TYPE`) under a lock of the registry that only scrapes and
//! registrations take: a scrape never blocks a command. Bucket bounds are
//! written as Prometheus' Go client writes them (`le="5e-05"`, `le="1"`).
//!
//! ```
//! use std::time::Duration;
//! use wshub_hub::metrics::{Histogram, NodeCounts, Metrics};
//!
//! let h = Histogram::default();
//! h.observe(Duration::from_micros(300));
//! let m = Metrics::new();
//! m.register(|r| r.register("demo_seconds", "A demo", h.clone()));
//! let text = m.render(NodeCounts::default());
//! assert!(text.contains("demo_seconds_bucket{le=\"0.0005\"} 1"));
//! assert!(text.contains("demo_seconds_count 1"));
//! ```

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use prometheus_client;
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use wshub_protocol::{Encoding, Method};

use crate::broker::{Broker, BrokerError, BrokerLayer, BrokerOp, Layered};

/// The `Content-Type` of [`Metrics::render`]'s text (Prometheus text
/// format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the latency buckets: 50 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

#[derive(Debug, Default)]
struct HistogramCells {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A latency histogram with the fixed [`LATENCY_BUCKETS`] (+Inf last);
/// `observe` is two relaxed atomic adds. Clones share the same cells (one
/// is registered, the others record).
#[derive(Debug, Clone, Default)]
pub struct Histogram(Arc<HistogramCells>);

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // The first bucket whose bound is >= secs; `len` is +Inf.
        let i = LATENCY_BUCKETS.partition_point(|b| *b < secs);
        // `buckets` has one more slot than `LATENCY_BUCKETS` (+Inf).
        if let Some(b) = self.0.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        // One load per bucket; the count is their sum, so `_count` always
        // equals the +Inf bucket even while observations come in.
        let mut buckets = [(f64::INFINITY, 0u64); LATENCY_BUCKETS.len() + 1];
        let mut count = 0u64;
        for (i, (slot, cell)) in buckets.iter_mut().zip(&self.0.buckets).enumerate() {
            let n = cell.load(Ordering::Relaxed);
            count = count.saturating_add(n);
            *slot = (LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n);
        }
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A metric that can tell whether anything was recorded (see
/// [`Fixed::hide_unused_from`]).
pub trait Recorded {
    /// Whether a value was recorded.
    fn recorded(&self) -> bool;
}

impl Recorded for Counter {
    fn recorded(&self) -> bool {
        self.get() > 0
    }
}

impl Recorded for Histogram {
    fn recorded(&self) -> bool {
        self.count() > 0
    }
}

/// A metric family whose label sets are all known when it is built: the
/// series are rendered in the order given, and each one's handle is
/// resolved once (see [`fixed`]), so recording needs no lookup and no
/// lock (unlike [`Family`], whose `get_or_create` takes a read lock and
/// hashes the labels).
#[derive(Debug)]
pub struct Fixed<L, M> {
    series: Vec<(L, M)>,
    hide_unused_from: usize,
}

impl<L, M> Fixed<L, M> {
    /// Leaves out of the rendering the series from index `i` on while
    /// nothing was recorded in them (a catch-all slot such as
    /// `method="other"` that should appear only when used).
    pub fn hide_unused_from(mut self, i: usize) -> Self {
        self.hide_unused_from = i;
        self
    }
}

impl<L, M> EncodeMetric for Fixed<L, M>
where
    L: EncodeLabelSet,
    M: EncodeMetric + TypedMetric + Recorded,
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        for (i, (labels, metric)) in self.series.iter().enumerate() {
            if i >= self.hide_unused_from && !metric.recorded() {
                continue;
            }
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// One handle per label value of `values` (same order) and the [`Fixed`]
/// family that renders them, the label set of each built by `labels`.
pub fn fixed<V: Copy, L, M: Default + Clone, const N: usize>(
    values: [V; N],
    labels: impl Fn(V) -> L,
) -> ([M; N], Fixed<L, M>) {
    let handles: [M; N] = std::array::from_fn(|_| M::default());
    let series = values
        .iter()
        .zip(&handles)
        .map(|(v, m)| (labels(*v), m.clone()))
        .collect();
    (
        handles,
        Fixed {
            series,
            hide_unused_from: N,
        },
    )
}

/// The registry name of a counter exposed as `full` (`prometheus_client`
/// appends `_total` to counters itself).
pub fn counter_name(full: &'static str) -> &'static str {
    full.strip_suffix("_total").unwrap_or(full)
}

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vm])* $var),+
        }

        impl $name {
            /// How many values there are.
            pub const COUNT: usize = [$(Self::$var),+].len();
            /// Every value, in the order of their slots.
            pub const ALL: [Self; Self::COUNT] = [$(Self::$var),+];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$var => $s),+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// Kinds of pushes fanned out to subscribers, the `type` label.
    PushKind {
        /// A publication.
        Publication => "publication",
        /// A join.
        Join => "join",
        /// A leave.
        Leave => "leave",
        /// Anything else.
        Other => "other",
    }
}

label_enum! {
    /// Message encodings on the wire, the `encoding` label.
    EncodingLabel {
        /// JSON (text frames).
        Json => "json",
        /// Protobuf (binary frames).
        Protobuf => "protobuf",
    }
}

impl From<Encoding> for EncodingLabel {
    fn from(e: Encoding) -> Self {
        if e.is_binary() {
            EncodingLabel::Protobuf
        } else {
            EncodingLabel::Json
        }
    }
}

label_enum! {
    /// The `limit` label of `wshub_client_limit_exceeded_total`
    /// ([`LIMIT_EXCEEDED`](crate::limits::LIMIT_EXCEEDED)).
    ClientLimit {
        /// `limits.commands_per_second`: a command refused (111).
        CommandsPerSecond => "commands_per_second",
        /// `limits.command_flood_disconnect`: a client disconnected (3013).
        CommandFlood => "command_flood",
        /// `websocket.message_size_limit`: a connection closed (1009).
        MessageSize => "message_size",
        /// `limits.connections_per_ip`: an upgrade refused (429).
        ConnectionsPerIp => "connections_per_ip",
        /// `limits.connect_rate_per_ip`: an upgrade refused (429).
        ConnectRatePerIp => "connect_rate_per_ip",
        /// `client.connection_rate_limit` (whole node): an upgrade refused (429).
        ConnectionRate => "connection_rate",
        /// `client.channel_limit`: a Pusher subscribe refused (403; the
        /// Centrifugo protocol answers 106 and counts nothing here).
        ChannelLimit => "channel_limit",
        /// `pusher.apps[].max_connections`: a Pusher connection closed (4004).
        PusherAppConnections => "pusher_app_connections",
        /// `pusher.apps[].max_client_events_per_second`: a client event
        /// refused (4301).
        PusherClientEvents => "pusher_client_events",
        /// `pusher.apps[].max_event_size`: an event refused.
        PusherEventSize => "pusher_event_size",
        /// `pusher.apps[].max_presence_members`: a presence subscribe refused.
        PusherPresenceMembers => "pusher_presence_members",
    }
}

label_enum! {
    /// The `limit` label of `wshub_api_limit_exceeded_total`
    /// ([`Node::API_LIMIT_EXCEEDED`](crate::node::Node::API_LIMIT_EXCEEDED)).
    ApiLimit {
        /// `http_api.max_in_flight_body_size`: a request answered busy.
        MaxInFlightBodySize => "max_in_flight_body_size",
        /// `http_api.max_request_body_size`: a request answered 413.
        BodySize => "body_size",
        /// `http_api.request_body_timeout`: a request answered 408.
        RequestBodyTimeout => "request_body_timeout",
        /// `http_api.max_batch_commands`: a batch refused.
        MaxBatchCommands => "max_batch_commands",
        /// `http_api.response_write_timeout`: a batch cut short.
        ResponseWriteTimeout => "response_write_timeout",
        /// `http_api.max_broadcast_channels`: a broadcast refused.
        MaxBroadcastChannels => "max_broadcast_channels",
        /// A Pusher API request with a bad, stale or missing signature (401).
        PusherAuth => "pusher_auth",
    }
}

label_enum! {
    /// What became of an emulation request, the `outcome` label of
    /// `wshub_emulation_requests_total` (see [`crate::emulation::Outcome`]).
    EmulationLabel {
        /// Run by the session.
        Delivered => "delivered",
        /// No such node in the registry.
        UnknownNode => "unknown_node",
        /// No such session on its node.
        UnknownSession => "unknown_session",
        /// The session's queue was full.
        Busy => "busy",
        /// The owning node did not answer in time.
        NoAnswer => "no_answer",
        /// The session's transport does not take the request.
        Refused => "refused",
    }
}

label_enum! {
    /// Survey operations, the `op` label of
    /// `wshub_api_survey_timeouts_total`.
    SurveyKind {
        /// The `channels` API method.
        Channels => "channels",
    }
}

/// Every client protocol method, in the order of [`method_index`].
pub const METHODS: [Method; 12] = [
    Method::Connect,
    Method::Subscribe,
    Method::Unsubscribe,
    Method::Publish,
    Method::Presence,
    Method::PresenceStats,
    Method::History,
    Method::Ping,
    Method::Send,
    Method::Rpc,
    Method::Refresh,
    Method::SubRefresh,
];

/// The slot of `m` in per-method arrays (`METHODS.len()` for a method added
/// later and not listed yet).
pub fn method_index(m: Method) -> usize {
    METHODS
        .iter()
        .position(|x| *x == m)
        .unwrap_or(METHODS.len())
}

/// A client protocol method as a label value (`None`: `other`, a method
/// not listed in [`METHODS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodName(pub Option<Method>);

impl EncodeLabelValue for MethodName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        encoder.write_str(self.0.map_or("other", Method::as_str))
    }
}

/// Broker operations, the `op` label of broker errors.
pub const BROKER_OPS: [&str; 18] = [
    "start",
    "close",
    "health",
    "publish",
    "publish_join",
    "publish_leave",
    "publish_control",
    "subscribe",
    "unsubscribe",
    "history",
    "remove_history",
    "add_presence",
    "remove_presence",
    "presence",
    "presence_stats",
    "register_node",
    "unregister_node",
    "nodes",
];

/// `{method="..."}` of client commands.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct MethodLabels {
    /// The method.
    pub method: MethodName,
}

/// `{method="..."}` of server API calls (a name from [`crate::api::METHODS`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ApiMethodLabels {
    /// The method.
    pub method: &'static str,
}

/// `{type="..."}` of pushes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PushLabels {
    /// The kind of push.
    pub r#type: PushKind,
}

/// `{encoding="..."}` of transport traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct EncodingLabels {
    /// The encoding.
    pub encoding: EncodingLabel,
}

/// `{limit="..."}` of client limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ClientLimitLabels {
    /// The limit.
    pub limit: ClientLimit,
}

/// `{limit="..."}` of API limits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ApiLimitLabels {
    /// The limit.
    pub limit: ApiLimit,
}

/// `{outcome="..."}` of emulation requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct EmulationLabels {
    /// The outcome.
    pub outcome: EmulationLabel,
}

/// `{op="..."}` of surveys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SurveyLabels {
    /// The survey.
    pub op: SurveyKind,
}

/// `{op="..."}` of broker calls (a name from [`BROKER_OPS`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct BrokerOpLabels {
    /// The operation.
    pub op: &'static str,
}

/// `{code="..."}` of disconnects and unsubscribes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CodeLabels {
    /// The code.
    pub code: u32,
}

/// Failed broker calls by operation (index into [`BROKER_OPS`]).
#[derive(Debug, Default)]
pub struct BrokerErrors([Counter; BROKER_OPS.len()]);

impl BrokerErrors {
    /// Counts one failed call of operation `op` (index into [`BROKER_OPS`]).
    pub fn inc(&self, op: usize) {
        if let Some(c) = self.0.get(op) {
            c.inc();
        }
    }

    /// Failed calls of `op` so far (0 for an unknown op).
    pub fn get(&self, op: &str) -> u64 {
        BROKER_OPS
            .iter()
            .position(|o| *o == op)
            .and_then(|i| self.0.get(i))
            .map_or(0, Counter::get)
    }

    fn family(&self) -> Fixed<BrokerOpLabels, Counter> {
        Fixed {
            series: BROKER_OPS
                .iter()
                .zip(&self.0)
                .map(|(op, c)| (BrokerOpLabels { op }, c.clone()))
                .collect(),
            hide_unused_from: BROKER_OPS.len(),
        }
    }
}

/// The node-wide gauges that are read from the hub when rendering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounts {
    /// Client connections open.
    pub clients: usize,
    /// Distinct users connected.
    pub users: usize,
    /// Channels with local subscribers.
    pub channels: usize,
    /// Client subscriptions.
    pub subscriptions: usize,
    /// Fan-out jobs queued to the delivery workers now.
    pub fanout_queued_jobs: usize,
    /// Fan-out jobs run by the broker's delivery task because the workers'
    /// queues were full (total).
    pub fanout_caller_jobs: u64,
    /// Join/leave events not pushed because the channel had more local
    /// subscribers than its `join_leave_max_subscribers` (total).
    pub join_leave_muted: u64,
}

/// Moves `c` up to `total`, a count kept elsewhere (under the registry
/// lock: one scrape at a time).
fn sync_counter(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A node's metrics: the handles that the hot paths record into (resolved
/// once, in [`Metrics::new`]) and the registry that renders them. Other
/// crates add their families with [`Metrics::register`] (the HTTP front
/// does).
#[derive(Debug)]
pub struct Metrics {
    /// Locked by scrapes and registrations only; nothing that records
    /// takes it.
    registry: Mutex<Registry>,
    num_clients: Gauge,
    num_users: Gauge,
    num_channels: Gauge,
    num_subscriptions: Gauge,
    fanout_queued_jobs: Gauge,
    fanout_caller_jobs: Counter,
    join_leave_muted: Counter,
    connections_accepted: Counter,
    slow_disconnects: Counter,
    deliveries: Counter,
    heartbeat_failures: Counter,
    broker_up: Gauge,
    broker_interruptions: Counter,
    broker_resumptions: Counter,
    stream_gaps: Counter,
    pushes_sent: [Counter; PushKind::COUNT],
    push_bytes_sent: [Counter; PushKind::COUNT],
    messages_received: [Counter; EncodingLabel::COUNT],
    bytes_received: [Counter; EncodingLabel::COUNT],
    messages_sent: [Counter; EncodingLabel::COUNT],
    bytes_sent: [Counter; EncodingLabel::COUNT],
    broker_errors: Arc<BrokerErrors>,
    command_latency: [Histogram; METHODS.len() + 1],
    delivery_latency: Histogram,
    commands: [Counter; METHODS.len() + 1],
    disconnects: Family<CodeLabels, Counter>,
    limit_exceeded: [Counter; ClientLimit::COUNT],
    subscriptions_expired: Counter,
    api_calls: Box<[Counter]>,
    api_limit_exceeded: [Counter; ApiLimit::COUNT],
    survey_timeouts: [Counter; SurveyKind::COUNT],
    emulation_requests: [Counter; EmulationLabel::COUNT],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Every client method slot, "other" last.
fn method_slots() -> [MethodName; METHODS.len() + 1] {
    std::array::from_fn(|i| MethodName(METHODS.get(i).copied()))
}

impl Metrics {
    /// A registry with every family of the node, all series of fixed
    /// labels at zero.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let counter = |r: &mut Registry, name: &'static str, help: &str| {
            let c = Counter::default();
            r.register(counter_name(name), help, c.clone());
            c
        };
        let num_clients = gauge(&mut r, "wshub_node_num_clients", "Client connections open");
        let num_users = gauge(&mut r, "wshub_node_num_users", "Distinct users connected");
        let num_channels = gauge(
            &mut r,
            "wshub_node_num_channels",
            "Channels with local subscribers",
        );
        let num_subscriptions = gauge(
            &mut r,
            "wshub_node_num_subscriptions",
            "Client subscriptions",
        );
        let fanout_queued_jobs = gauge(
            &mut r,
            "wshub_node_fanout_queued_jobs",
            "Fan-out jobs (one chunk of a channel's subscribers each) queued to the delivery workers",
        );
        let fanout_caller_jobs = counter(
            &mut r,
            "wshub_node_fanout_caller_jobs_total",
            "Fan-out jobs run by the broker's delivery task because the workers' queues were full",
        );
        let join_leave_muted = counter(
            &mut r,
            "wshub_node_join_leave_muted_total",
            "Join/leave events not pushed because the channel had more local subscribers than \
             join_leave_max_subscribers",
        );
        let connections_accepted = counter(
            &mut r,
            "wshub_client_connections_accepted_total",
            "Connections accepted",
        );
        let slow_disconnects = counter(
            &mut r,
            "wshub_client_slow_disconnects_total",
            "Clients disconnected as slow consumers (3008)",
        );
        let deliveries = counter(
            &mut r,
            "wshub_node_deliveries_total",
            "Pushes queued to local clients",
        );
        let heartbeat_failures = counter(
            &mut r,
            "wshub_client_heartbeat_failures_total",
            "Connections closed because no pong came within client.pong_timeout (3012)",
        );
        let broker_up = gauge(
            &mut r,
            "wshub_broker_up",
            "1 while the broker delivers, 0 while its delivery is interrupted",
        );
        broker_up.set(1);
        let broker_interruptions = counter(
            &mut r,
            "wshub_broker_interruptions_total",
            "Times the broker's delivery stopped (connection lost or probe unanswered)",
        );
        let broker_resumptions = counter(
            &mut r,
            "wshub_broker_resumptions_total",
            "Times the broker's delivery came back (reconnected and resubscribed)",
        );
        let stream_gaps = counter(
            &mut r,
            "wshub_node_stream_gaps_total",
            "Channel stream gaps seen; the channel's subscribers were told to recover (2500)",
        );

        let push = |r: &mut Registry, name: &'static str, help: &str| {
            let (h, f) = fixed(PushKind::ALL, |kind| PushLabels { r#type: kind });
            r.register(counter_name(name), help, f);
            h
        };
        let pushes_sent = push(
            &mut r,
            crate::node::Node::MESSAGES_SENT,
            "Pushes queued to subscribers by type",
        );
        let push_bytes_sent = push(
            &mut r,
            "wshub_node_push_bytes_sent_total",
            "Bytes of the pushes queued to subscribers by type (one frame per subscriber)",
        );
        let by_encoding = |r: &mut Registry, name: &'static str, help: &str| {
            let (h, f) = fixed(EncodingLabel::ALL, |encoding| EncodingLabels { encoding });
            r.register(counter_name(name), help, f);
            h
        };
        let messages_received = by_encoding(
            &mut r,
            "wshub_transport_messages_received_total",
            "WebSocket messages received from clients by encoding",
        );
        let bytes_received = by_encoding(
            &mut r,
            "wshub_transport_bytes_received_total",
            "Payload bytes of the WebSocket messages received from clients by encoding",
        );
        let messages_sent = by_encoding(
            &mut r,
            "wshub_transport_messages_sent_total",
            "Frames written to clients (replies, pushes, pings) by encoding",
        );
        let bytes_sent = by_encoding(
            &mut r,
            "wshub_transport_bytes_sent_total",
            "Bytes of the frames written to clients by encoding",
        );
        let broker_errors = Arc::new(BrokerErrors::default());
        r.register(
            counter_name("wshub_broker_errors_total"),
            "Failed broker calls by operation",
            broker_errors.family(),
        );
        let (command_latency, f) = fixed(method_slots(), |method| MethodLabels { method });
        r.register(
            "wshub_client_command_duration_seconds",
            "Time to handle a client command, by method",
            f.hide_unused_from(METHODS.len()),
        );
        let delivery_latency = Histogram::default();
        r.register(
            "wshub_node_publication_delivery_latency_seconds",
            "Time from the broker's publish to the publication being queued for the last local \
             subscriber (1 ms resolution)",
            delivery_latency.clone(),
        );
        let (commands, f) = fixed(method_slots(), |method| MethodLabels { method });
        r.register(
            counter_name(crate::node::Node::COMMANDS),
            "Client commands received, by method",
            f.hide_unused_from(METHODS.len()),
        );
        let disconnects = Family::<CodeLabels, Counter>::default();
        r.register(
            counter_name(crate::node::Node::DISCONNECTS),
            "Client connections closed, by disconnect code (3000: closed without a server advice)",
            disconnects.clone(),
        );
        let (limit_exceeded, f) = fixed(ClientLimit::ALL, |limit| ClientLimitLabels { limit });
        r.register(
            counter_name(crate::limits::LIMIT_EXCEEDED),
            "Clients refused or disconnected by a limit, by limit",
            f,
        );
        let ([subscriptions_expired], f) = fixed([2501], |code| CodeLabels { code });
        r.register(
            counter_name(crate::limits::SUBSCRIPTIONS_EXPIRED),
            "Subscriptions ended because their token expired, by unsubscribe code",
            f,
        );
        let api_calls: Box<[Counter]> = crate::api::METHODS
            .iter()
            .map(|_| Counter::default())
            .collect();
        r.register(
            counter_name(crate::node::Node::API_CALLS),
            "Server API calls, by method",
            Fixed {
                series: crate::api::METHODS
                    .iter()
                    .zip(api_calls.iter())
                    .map(|(method, c)| (ApiMethodLabels { method }, c.clone()))
                    .collect(),
                hide_unused_from: crate::api::METHODS.len(),
            },
        );
        let (api_limit_exceeded, f) = fixed(ApiLimit::ALL, |limit| ApiLimitLabels { limit });
        r.register(
            counter_name(crate::node::Node::API_LIMIT_EXCEEDED),
            "Server API requests refused or cut short by a limit, by limit",
            f,
        );
        let (survey_timeouts, f) = fixed(SurveyKind::ALL, |op| SurveyLabels { op });
        r.register(
            counter_name(crate::node::Node::SURVEY_TIMEOUTS),
            "Nodes that did not answer a survey in time, by operation",
            f,
        );
        let (emulation_requests, f) =
            fixed(EmulationLabel::ALL, |outcome| EmulationLabels { outcome });
        r.register(
            "wshub_emulation_requests",
            "Emulation requests (commands of HTTP-streaming and SSE clients), by outcome",
            f,
        );
        Metrics {
            registry: Mutex::new(r),
            num_clients,
            num_users,
            num_channels,
            num_subscriptions,
            fanout_queued_jobs,
            fanout_caller_jobs,
            join_leave_muted,
            connections_accepted,
            slow_disconnects,
            deliveries,
            heartbeat_failures,
            broker_up,
            broker_interruptions,
            broker_resumptions,
            stream_gaps,
            pushes_sent,
            push_bytes_sent,
            messages_received,
            bytes_received,
            messages_sent,
            bytes_sent,
            broker_errors,
            command_latency,
            delivery_latency,
            commands,
            disconnects,
            limit_exceeded,
            subscriptions_expired,
            api_calls,
            api_limit_exceeded,
            survey_timeouts,
            emulation_requests,
        }
    }

    /// Adds families to the registry (at start-up: it takes the lock that
    /// scrapes take). Record through handles kept outside the registry.
    /// Help texts go without their final period: the registry adds it.
    pub fn register<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        f(&mut self.registry.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The Prometheus text (format 0.0.4, [`CONTENT_TYPE`]) of every
    /// family, with the node gauges set to `counts`.
    pub fn render(&self, counts: NodeCounts) -> String {
        self.num_clients.set(gauge_value(counts.clients));
        self.num_users.set(gauge_value(counts.users));
        self.num_channels.set(gauge_value(counts.channels));
        self.num_subscriptions
            .set(gauge_value(counts.subscriptions));
        self.fanout_queued_jobs
            .set(gauge_value(counts.fanout_queued_jobs));
        let mut out = String::with_capacity(16 * 1024);
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        sync_counter(&self.fanout_caller_jobs, counts.fanout_caller_jobs);
        sync_counter(&self.join_leave_muted, counts.join_leave_muted);
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            tracing::warn!(error = %e, "cannot render the metrics");
        }
        out
    }

    /// Counts one accepted connection.
    pub fn connection_accepted(&self) {
        self.connections_accepted.inc();
    }

    /// Counts one client disconnected as a slow consumer (3008).
    pub fn slow_disconnect(&self) {
        self.slow_disconnects.inc();
    }

    /// Pushes queued to local clients so far.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.get()
    }

    /// Clients disconnected as slow consumers so far.
    pub fn slow_disconnects(&self) -> u64 {
        self.slow_disconnects.get()
    }

    /// Counts one connection closed because no pong came (3012).
    pub fn heartbeat_failure(&self) {
        self.heartbeat_failures.inc();
    }

    /// The broker reported that its delivery stopped.
    pub fn broker_interrupted(&self) {
        self.broker_interruptions.inc();
        self.broker_up.set(0);
    }

    /// The broker reported that its delivery is back.
    pub fn broker_resumed(&self) {
        self.broker_resumptions.inc();
        self.broker_up.set(1);
    }

    /// Counts one gap in a channel stream.
    pub fn stream_gap(&self) {
        self.stream_gaps.inc();
    }

    /// The failed broker calls (shared with the node's [`MeteredBroker`]).
    pub fn broker_errors(&self) -> &Arc<BrokerErrors> {
        &self.broker_errors
    }

    /// Counts one fan-out of a push of `kind`: `delivered` subscribers
    /// got it queued, `bytes` in all.
    pub fn count_pushes(&self, kind: PushKind, delivered: u64, bytes: u64) {
        if delivered == 0 {
            return;
        }
        self.deliveries.inc_by(delivered);
        if let (Some(n), Some(b)) = (
            self.pushes_sent.get(kind as usize),
            self.push_bytes_sent.get(kind as usize),
        ) {
            n.inc_by(delivered);
            b.inc_by(bytes);
        }
    }

    /// Records the time from a publication's broker publish to its fan-out.
    pub fn observe_delivery(&self, took: Duration) {
        self.delivery_latency.observe(took);
    }

    /// Counts one client command received.
    pub fn command(&self, method: Method) {
        if let Some(c) = self.commands.get(method_index(method)) {
            c.inc();
        }
    }

    /// Records the handling time of one command.
    pub fn observe_command(&self, method: Method, took: Duration) {
        if let Some(h) = self.command_latency.get(method_index(method)) {
            h.observe(took);
        }
    }

    /// Counts one received WebSocket message of `len` bytes.
    pub fn count_received(&self, encoding: Encoding, len: usize) {
        let i = EncodingLabel::from(encoding) as usize;
        if let (Some(n), Some(b)) = (self.messages_received.get(i), self.bytes_received.get(i)) {
            n.inc();
            b.inc_by(len as u64);
        }
    }

    /// Counts `frames` written frames totalling `bytes`.
    pub fn count_sent(&self, encoding: Encoding, frames: u64, bytes: u64) {
        if frames == 0 {
            return;
        }
        let i = EncodingLabel::from(encoding) as usize;
        if let (Some(n), Some(b)) = (self.messages_sent.get(i), self.bytes_sent.get(i)) {
            n.inc_by(frames);
            b.inc_by(bytes);
        }
    }

    /// Counts one closed client connection with disconnect `code` (3000
    /// when it closed without a server advice). Once per connection: the
    /// code is the one dynamic label (custom codes from the server API).
    pub fn disconnect(&self, code: u32) {
        self.disconnects.get_or_create(&CodeLabels { code }).inc();
    }

    /// Connections closed with `code` so far.
    pub fn disconnects(&self, code: u32) -> u64 {
        self.disconnects
            .get(&CodeLabels { code })
            .map_or(0, |c| c.get())
    }

    /// Counts one client refused or disconnected by `limit`.
    pub fn limit_exceeded(&self, limit: ClientLimit) {
        if let Some(c) = self.limit_exceeded.get(limit as usize) {
            c.inc();
        }
    }

    /// Times `limit` was exceeded so far.
    pub fn limit_exceeded_count(&self, limit: ClientLimit) -> u64 {
        self.limit_exceeded
            .get(limit as usize)
            .map_or(0, Counter::get)
    }

    /// Counts one subscription ended because its token expired (2501).
    pub fn subscription_expired(&self) {
        self.subscriptions_expired.inc();
    }

    /// Counts one server API call of `method` (a name of
    /// [`crate::api::METHODS`]; others are not counted).
    pub fn api_call(&self, method: &str) {
        if let Some(c) = crate::api::METHODS
            .iter()
            .position(|m| *m == method)
            .and_then(|i| self.api_calls.get(i))
        {
            c.inc();
        }
    }

    /// Counts one server API request refused or cut short by `limit`.
    pub fn api_limit_exceeded(&self, limit: ApiLimit) {
        if let Some(c) = self.api_limit_exceeded.get(limit as usize) {
            c.inc();
        }
    }

    /// Counts one emulation request by what became of it.
    pub fn emulation_request(&self, outcome: crate::emulation::Outcome) {
        use crate::emulation::Outcome;
        let label = match outcome {
            Outcome::Delivered => EmulationLabel::Delivered,
            Outcome::UnknownNode => EmulationLabel::UnknownNode,
            Outcome::UnknownSession => EmulationLabel::UnknownSession,
            Outcome::Busy => EmulationLabel::Busy,
            Outcome::Refused => EmulationLabel::Refused,
            _ => EmulationLabel::NoAnswer,
        };
        if let Some(c) = self.emulation_requests.get(label as usize) {
            c.inc();
        }
    }

    /// Counts `nodes` nodes that did not answer a survey `op` in time.
    pub fn survey_timeouts(&self, op: SurveyKind, nodes: u64) {
        if let Some(c) = self.survey_timeouts.get(op as usize) {
            c.inc_by(nodes);
        }
    }
}

/// The [`BrokerLayer`] that counts the broker calls that fail, by
/// operation, and forwards every call unchanged.
pub struct BrokerErrorCounter {
    errors: Arc<BrokerErrors>,
}

/// A [`Broker`] that forwards every call and counts the ones that fail.
pub type MeteredBroker = Layered<BrokerErrorCounter>;

impl MeteredBroker {
    /// Wraps `inner`, counting into `errors`.
    pub fn new(inner: Arc<dyn Broker>, errors: Arc<BrokerErrors>) -> Self {
        BrokerErrorCounter { errors }.over(inner)
    }
}

impl BrokerLayer for BrokerErrorCounter {
    fn observe(&self, op: BrokerOp, result: Result<(), &BrokerError>) {
        if let Err(e) = result {
            self.errors.inc(op.index());
            tracing::debug!(op = op.name(), error = %e, "broker call failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{
        BrokerEventHandler, ClientInfo, MemoryBroker, MemoryBrokerConfig, Publication,
        PublishOptions, StreamPosition,
    };
    use bytes::Bytes;

    #[test]
    fn broker_error_slots_follow_the_broker_ops() {
        assert_eq!(BROKER_OPS.len(), BrokerOp::ALL.len());
        for op in BrokerOp::ALL {
            assert_eq!(BROKER_OPS[op.index()], op.name());
        }
    }

    /// The lines of `text` that are samples (not comments).
    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    /// Asserts that `text` has the sample line `line` exactly.
    #[track_caller]
    fn has(text: &str, line: &str) {
        assert!(
            samples(text).contains(&line),
            "missing `{line}` in:\n{text}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_sum_and_count() {
        let (h, f) = fixed([MethodName(Some(Method::Publish))], |method| MethodLabels {
            method,
        });
        let [h]: [Histogram; 1] = h;
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut r = Registry::default();
        r.register("x_seconds", "X", f);
        let mut s = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut s, &r).unwrap();
        assert!(s.starts_with("# HELP x_seconds X.\n# TYPE x_seconds histogram\n"));
        // Bounds written the way Go's client writes them (5e-05, 1, 10).
        has(&s, "x_seconds_bucket{method=\"publish\",le=\"5e-05\"} 1");
        has(&s, "x_seconds_bucket{method=\"publish\",le=\"0.0025\"} 1");
        has(&s, "x_seconds_bucket{method=\"publish\",le=\"0.005\"} 2");
        has(&s, "x_seconds_bucket{method=\"publish\",le=\"1\"} 2");
        has(&s, "x_seconds_bucket{method=\"publish\",le=\"10\"} 2");
        has(&s, "x_seconds_bucket{method=\"publish\",le=\"+Inf\"} 3");
        has(&s, "x_seconds_count{method=\"publish\"} 3");
        has(&s, "x_seconds_sum{method=\"publish\"} 60.00301");
        // 16 bounds and +Inf, one line each, in order.
        let les: Vec<&str> = samples(&s)
            .iter()
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(les.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(les.last(), Some(&"+Inf"));
        for (le, b) in les.iter().zip(LATENCY_BUCKETS) {
            assert_eq!(le.parse::<f64>().unwrap(), b);
        }
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn a_bound_is_inclusive() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_secs(11));
        let m = Metrics::new();
        m.register(|r| r.register("b_seconds", "B", h.clone()));
        let text = m.render(NodeCounts::default());
        has(&text, "b_seconds_bucket{le=\"0.0005\"} 0");
        has(&text, "b_seconds_bucket{le=\"0.001\"} 1");
        has(&text, "b_seconds_bucket{le=\"10\"} 1");
        has(&text, "b_seconds_bucket{le=\"+Inf\"} 2");
    }

    #[test]
    fn every_method_has_its_own_slot() {
        for (i, m) in METHODS.iter().enumerate() {
            assert_eq!(method_index(*m), i);
        }
    }

    /// Every family a node exposes, with the names and types of before
    /// the move to prometheus-client (scraped by users and tests).
    #[test]
    fn every_family_is_exposed_under_its_name_and_type() {
        let text = Metrics::new().render(NodeCounts::default());
        let types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(
            types,
            [
                "wshub_node_num_clients gauge",
                "wshub_node_num_users gauge",
                "wshub_node_num_channels gauge",
                "wshub_node_num_subscriptions gauge",
                "wshub_node_fanout_queued_jobs gauge",
                "wshub_node_fanout_caller_jobs_total counter",
                "wshub_node_join_leave_muted_total counter",
                "wshub_client_connections_accepted_total counter",
                "wshub_client_slow_disconnects_total counter",
                "wshub_node_deliveries_total counter",
                "wshub_client_heartbeat_failures_total counter",
                "wshub_broker_up gauge",
                "wshub_broker_interruptions_total counter",
                "wshub_broker_resumptions_total counter",
                "wshub_node_stream_gaps_total counter",
                "wshub_node_messages_sent_total counter",
                "wshub_node_push_bytes_sent_total counter",
                "wshub_transport_messages_received_total counter",
                "wshub_transport_bytes_received_total counter",
                "wshub_transport_messages_sent_total counter",
                "wshub_transport_bytes_sent_total counter",
                "wshub_broker_errors_total counter",
                "wshub_client_command_duration_seconds histogram",
                "wshub_node_publication_delivery_latency_seconds histogram",
                "wshub_client_commands_total counter",
                "wshub_client_limit_exceeded_total counter",
                "wshub_client_subscriptions_expired_total counter",
                "wshub_api_calls_total counter",
                "wshub_api_limit_exceeded_total counter",
                "wshub_api_survey_timeouts_total counter",
                "wshub_emulation_requests_total counter",
            ]
        );
        // Every HELP line names its family as the TYPE line does.
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(helps, types.len());
        assert!(
            !text.contains("..\n"),
            "a help text ends with two periods:\n{text}"
        );
        // Fixed labels are there at zero before anything happened.
        has(&text, "wshub_broker_up 1");
        has(&text, "wshub_node_messages_sent_total{type=\"leave\"} 0");
        has(
            &text,
            "wshub_transport_bytes_sent_total{encoding=\"protobuf\"} 0",
        );
        has(&text, "wshub_broker_errors_total{op=\"nodes\"} 0");
        has(
            &text,
            "wshub_emulation_requests_total{outcome=\"unknown_session\"} 0",
        );
        has(
            &text,
            "wshub_client_commands_total{method=\"sub_refresh\"} 0",
        );
        has(
            &text,
            "wshub_client_command_duration_seconds_count{method=\"presence_stats\"} 0",
        );
        has(
            &text,
            "wshub_node_publication_delivery_latency_seconds_count 0",
        );
        has(&text, "wshub_api_calls_total{method=\"publish\"} 0");
        has(&text, "wshub_api_survey_timeouts_total{op=\"channels\"} 0");
        has(
            &text,
            "wshub_client_subscriptions_expired_total{code=\"2501\"} 0",
        );
        // The catch-all method slot stays out until used.
        assert!(!text.contains("method=\"other\""), "{text}");
    }

    #[test]
    fn each_typed_method_counts_into_its_series() {
        let m = Metrics::new();
        m.connection_accepted();
        m.connection_accepted();
        m.slow_disconnect();
        m.heartbeat_failure();
        m.broker_interrupted();
        m.stream_gap();
        m.count_pushes(PushKind::Publication, 3, 300);
        m.count_pushes(PushKind::Join, 2, 50);
        m.count_received(Encoding::Json, 10);
        m.count_received(Encoding::Protobuf, 7);
        m.count_sent(Encoding::Protobuf, 2, 40);
        m.broker_errors().inc(3);
        m.command(Method::Publish);
        m.observe_command(Method::Publish, Duration::from_micros(70));
        m.observe_delivery(Duration::from_millis(2));
        m.disconnect(3013);
        m.disconnect(3013);
        m.disconnect(4321);
        m.limit_exceeded(ClientLimit::MessageSize);
        m.subscription_expired();
        m.api_call("broadcast");
        m.api_call("no_such_method");
        m.api_limit_exceeded(ApiLimit::BodySize);
        m.survey_timeouts(SurveyKind::Channels, 2);
        let t = m.render(NodeCounts {
            clients: 5,
            users: 4,
            channels: 3,
            subscriptions: 2,
            ..Default::default()
        });
        for line in [
            "wshub_node_num_clients 5",
            "wshub_node_num_users 4",
            "wshub_node_num_channels 3",
            "wshub_node_num_subscriptions 2",
            "wshub_client_connections_accepted_total 2",
            "wshub_client_slow_disconnects_total 1",
            "wshub_node_deliveries_total 5",
            "wshub_client_heartbeat_failures_total 1",
            "wshub_broker_up 0",
            "wshub_broker_interruptions_total 1",
            "wshub_broker_resumptions_total 0",
            "wshub_node_stream_gaps_total 1",
            "wshub_node_messages_sent_total{type=\"publication\"} 3",
            "wshub_node_messages_sent_total{type=\"join\"} 2",
            "wshub_node_push_bytes_sent_total{type=\"publication\"} 300",
            "wshub_node_push_bytes_sent_total{type=\"join\"} 50",
            "wshub_transport_messages_received_total{encoding=\"json\"} 1",
            "wshub_transport_bytes_received_total{encoding=\"json\"} 10",
            "wshub_transport_messages_received_total{encoding=\"protobuf\"} 1",
            "wshub_transport_bytes_received_total{encoding=\"protobuf\"} 7",
            "wshub_transport_messages_sent_total{encoding=\"protobuf\"} 2",
            "wshub_transport_bytes_sent_total{encoding=\"protobuf\"} 40",
            "wshub_transport_messages_sent_total{encoding=\"json\"} 0",
            "wshub_broker_errors_total{op=\"publish\"} 1",
            "wshub_client_commands_total{method=\"publish\"} 1",
            "wshub_client_command_duration_seconds_bucket{method=\"publish\",le=\"0.0001\"} 1",
            "wshub_client_command_duration_seconds_count{method=\"publish\"} 1",
            "wshub_node_publication_delivery_latency_seconds_bucket{le=\"0.0025\"} 1",
            "wshub_client_disconnects_total{code=\"3013\"} 2",
            "wshub_client_disconnects_total{code=\"4321\"} 1",
            "wshub_client_limit_exceeded_total{limit=\"message_size\"} 1",
            "wshub_client_limit_exceeded_total{limit=\"command_flood\"} 0",
            "wshub_client_subscriptions_expired_total{code=\"2501\"} 1",
            "wshub_api_calls_total{method=\"broadcast\"} 1",
            "wshub_api_limit_exceeded_total{limit=\"body_size\"} 1",
            "wshub_api_survey_timeouts_total{op=\"channels\"} 2",
        ] {
            has(&t, line);
        }
        assert!(t.contains("# TYPE wshub_client_disconnects_total counter\n"));
        assert_eq!(m.slow_disconnects(), 1);
        assert_eq!(m.disconnects(3013), 2);
        assert_eq!(m.disconnects(3000), 0);
        assert_eq!(m.limit_exceeded_count(ClientLimit::MessageSize), 1);
        // Reading a count does not create a series.
        assert!(!m.render(NodeCounts::default()).contains("code=\"3000\""));
        m.broker_resumed();
        has(&m.render(NodeCounts::default()), "wshub_broker_up 1");
    }

    #[test]
    fn a_catch_all_slot_appears_once_used() {
        let (c, f): ([Counter; 2], _) = fixed(
            [MethodName(Some(Method::Ping)), MethodName(None)],
            |method| MethodLabels { method },
        );
        let m = Metrics::new();
        m.register(|r| r.register("c", "C", f.hide_unused_from(1)));
        let [ping, other] = c;
        ping.inc();
        let t = m.render(NodeCounts::default());
        has(&t, "c_total{method=\"ping\"} 1");
        assert!(!t.contains("c_total{method=\"other\"}"), "{t}");
        other.inc();
        has(
            &m.render(NodeCounts::default()),
            "c_total{method=\"other\"} 1",
        );
    }

    #[test]
    fn counter_names_lose_the_suffix_that_the_encoder_adds() {
        assert_eq!(counter_name("wshub_x_total"), "wshub_x");
        assert_eq!(counter_name("wshub_up"), "wshub_up");
    }

    #[test]
    fn label_enums_list_every_value_in_slot_order() {
        for (i, v) in ClientLimit::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i);
        }
        for (i, v) in ApiLimit::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i);
        }
        for (i, v) in PushKind::ALL.iter().enumerate() {
            assert_eq!(*v as usize, i);
        }
        assert_eq!(EncodingLabel::from(Encoding::Json), EncodingLabel::Json);
        assert_eq!(
            EncodingLabel::from(Encoding::Protobuf),
            EncodingLabel::Protobuf
        );
    }

    #[tokio::test]
    async fn metered_broker_counts_failed_calls_by_operation() {
        let errors = Arc::new(BrokerErrors::default());
        let inner: Arc<dyn Broker> = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
        let b = MeteredBroker::new(inner, errors.clone());
        assert_eq!(b.name(), "memory");
        // Used before start: every call fails with NotStarted (or succeeds
        // for the memory broker's local ones); close makes the rest fail.
        struct Nop;
        impl BrokerEventHandler for Nop {
            fn on_publication(&self, _: &str, _: Arc<Publication>, _: &StreamPosition) {}
            fn on_join(&self, _: &str, _: &ClientInfo) {}
            fn on_leave(&self, _: &str, _: &ClientInfo) {}
            fn on_control(&self, _: Bytes) {}
        }
        b.start(Arc::new(Nop)).await.unwrap();
        b.publish("ch", Publication::new("1"), PublishOptions::default())
            .await
            .unwrap();
        assert_eq!(errors.get("publish"), 0);
        assert!(b.start(Arc::new(Nop)).await.is_err());
        assert_eq!(errors.get("start"), 1);
        b.close().await.unwrap();
        assert!(b
            .publish("ch", Publication::new("2"), PublishOptions::default())
            .await
            .is_err());
        assert_eq!(errors.get("publish"), 1);
    }
}
