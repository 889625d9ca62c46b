//! The [`Node`]: one gateway process. It owns the configuration, the
//! broker, the [`Hub`] of local subscribers, the token verifiers and the
//! metrics, and fans broker events out to local clients: each publication
//! is encoded once per encoding in use and the same bytes are queued for
//! every subscriber.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wshub_protocol::{encode_push_reply, Encoding, Push};

use crate::auth::{VerifierError, Verifiers};
use crate::broker::{
    self, Broker, BrokerError, BrokerEventHandler, HistoryFilter, HistoryOptions, NodeInfo,
    StreamPosition,
};
use crate::cluster::{
    ControlMessage, EmulationAnswer, EmulationForward, SurveyOp, SurveyReply, SurveyRequest,
    UserControl,
};
use crate::emulation::{self, Outcome};
use crate::fanout::{Fanout, Work};
use crate::hub::{Advance, Control, Hub, JoinLeave, Snapshot};
use crate::metrics::{MeteredBroker, NodeCounts, PushKind, SurveyKind};
use wshub_config::Config;

pub use crate::metrics::Metrics;

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
    fanout: Fanout,
    verifiers: Verifiers,
    metrics: Metrics,
    id: String,
    started: Instant,
    name: Mutex<String>,
    /// Surveys this node asked and waits for: id → where answers go.
    surveys: Mutex<HashMap<String, tokio::sync::mpsc::Sender<SurveyReply>>>,
    /// Survey answers being computed and sent.
    survey_answers: AtomicUsize,
    /// Bytes of API request bodies held (`http_api.max_in_flight_body_size`).
    api_body_budget: Arc<tokio::sync::Semaphore>,
    /// Emulation sessions (HTTP-streaming, SSE) and forwarded requests.
    emulation: Arc<emulation::Registry>,
    /// The ids of the nodes in the broker's registry, as last read (every
    /// `NODE_INFO_INTERVAL`, and on demand: see [`Node::knows_node`]).
    peers: Mutex<HashSet<String>>,
    /// When an emulation request for a node not in `peers` last made this
    /// node read the registry again.
    peers_reread: Mutex<Option<Instant>>,
    /// Fronts that speak another client protocol, by the channel prefix
    /// they own ([`Node::register_front`]).
    fronts: std::sync::RwLock<Vec<(String, Arc<dyn FrontCodec>)>>,
}

/// A front that speaks another client protocol than Centrifugo's (the
/// Pusher front) owns the node's channels under a prefix. Their
/// publications and join/leave events go through the same fan-out, but
/// encoded by the front, once per event, for its own subscribers (who
/// take them as text). The codec is called on the broker's delivery task:
/// it must be quick and must not block.
pub trait FrontCodec: Send + Sync + 'static {
    /// The push of a publication in `channel`; `None` drops it (not one of
    /// the front's events).
    fn publication(&self, channel: &str, publication: &broker::Publication) -> Option<FrontPush>;
    /// The push of a join, for the subscribers that asked for join/leave.
    fn join(&self, channel: &str, info: &broker::ClientInfo) -> Option<Bytes>;
    /// The push of a leave, for the subscribers that asked for join/leave.
    fn leave(&self, channel: &str, info: &broker::ClientInfo) -> Option<Bytes>;
}

/// A front's encoded publication.
#[derive(Debug, Clone)]
pub struct FrontPush {
    /// What every subscriber gets, as the front's transport sends it.
    pub frame: Bytes,
    /// The client (handle id) that does not get it: Pusher's `socket_id`
    /// exclusion, and a client event's sender.
    pub exclude: Option<String>,
}

/// How often a node refreshes its registration (`/api/info`).
const NODE_INFO_INTERVAL: Duration = Duration::from_secs(3);
/// How often, at most, an emulation request that names a node this node
/// does not know makes it read the registry again (a node that started
/// since the last periodic read); further unknown ids within it are
/// refused without asking the broker.
const PEERS_REREAD_MIN: Duration = Duration::from_millis(250);
/// How long a registration lives without a refresh.
const NODE_INFO_TTL: Duration = Duration::from_secs(10);
/// How often every tracked channel's position is compared with the broker.
const POSITION_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// How long a position check waits for publications still on their way
/// before it calls a channel behind.
const POSITION_GRACE: Duration = Duration::from_millis(500);

/// The host name, for node infos.
fn default_node_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wshub".into())
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
        position: &StreamPosition,
    ) {
        let Some(node) = self.0.upgrade() else {
            return;
        };
        if node.hub.advance(channel, position) == Advance::Gap {
            node.report_gap(channel, position, "offset gap in the live stream");
            return;
        }
        let offset = publication.offset;
        let Some(snapshot) = node.hub.snapshot(channel) else {
            return;
        };
        if let Some(front) = node.front(channel) {
            if let Some(p) = front.publication(channel, &publication) {
                let work = Work::Push {
                    frames: [Some(p.frame), None],
                    offset,
                    join_leave: false,
                    kind: PushKind::Publication,
                    time_ms: publication.time,
                    exclude: p.exclude.map(String::into_boxed_str),
                };
                let hash = Hub::channel_hash(channel);
                node.fanout.dispatch(&node, channel, hash, &snapshot, work);
            }
            return;
        }
        let push = Push::publication(channel, to_proto_publication(&publication));
        node.fan_out_to(channel, &snapshot, &push, offset, false, publication.time);
    }

    fn on_join(&self, channel: &str, info: &broker::ClientInfo) {
        if let Some(node) = self.0.upgrade() {
            if let Some(front) = node.front(channel) {
                if let Some(frame) = front.join(channel, info) {
                    node.front_join_leave(channel, frame, PushKind::Join);
                }
                return;
            }
            node.join_leave(channel, || Push::join(channel, to_proto_info(info)));
        }
    }

    fn on_leave(&self, channel: &str, info: &broker::ClientInfo) {
        if let Some(node) = self.0.upgrade() {
            if let Some(front) = node.front(channel) {
                if let Some(frame) = front.leave(channel, info) {
                    node.front_join_leave(channel, frame, PushKind::Leave);
                }
                return;
            }
            node.join_leave(channel, || Push::leave(channel, to_proto_info(info)));
        }
    }

    fn on_control(&self, data: Bytes) {
        let Some(node) = self.0.upgrade() else {
            return;
        };
        match ControlMessage::decode(&data) {
            Some(ControlMessage::User(c)) => {
                let clients = node.hub.user_clients(&c.user, &c.client);
                let control = c.control();
                for h in clients {
                    h.control(control.clone());
                }
            }
            Some(ControlMessage::Survey(req)) if req.from != node.id => node.answer_survey(req),
            Some(ControlMessage::SurveyReply(r)) if r.to == node.id => {
                let surveys = node.surveys.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(tx) = surveys.get(&r.survey_reply) {
                    // Full: the asker is not reading (it gave up); drop.
                    let _ = tx.try_send(r);
                }
            }
            Some(ControlMessage::Emulation(e)) if e.to == node.id => node.answer_emulation(e),
            Some(ControlMessage::EmulationAnswer(a)) if a.to == node.id => {
                use base64::Engine as _;
                let body = a.body.as_deref().and_then(|b| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b.as_bytes())
                        .ok()
                        .map(Bytes::from)
                });
                node.emulation
                    .answered(a.emulation_answer, Outcome::from_wire(&a.outcome), body);
            }
            Some(_) => {}
            None => tracing::warn!(len = data.len(), "ignoring an unknown control message"),
        }
    }

    fn on_delivery_interrupted(&self, reason: &str) {
        if let Some(node) = self.0.upgrade() {
            tracing::warn!(
                broker = node.broker.name(),
                reason,
                "broker delivery interrupted"
            );
            node.metrics.broker_interrupted();
        }
    }

    fn on_delivery_resumed(&self) {
        if let Some(node) = self.0.upgrade() {
            tracing::info!(
                broker = node.broker.name(),
                "broker delivery resumed; checking channel positions"
            );
            node.metrics.broker_resumed();
            let weak = self.0.clone();
            tokio::spawn(async move {
                if let Some(node) = weak.upgrade() {
                    node.check_positions().await;
                }
            });
        }
    }
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
    uuid::Uuid::new_v4().to_string()
}

impl Node {
    /// Starts a node on `broker` (which must not be started yet).
    pub async fn start(config: Config, broker: Arc<dyn Broker>) -> Result<Arc<Node>, NodeError> {
        Self::start_with_jwks(config, broker, None).await
    }

    /// [`Node::start`], with `jwks` fetching the key sets of
    /// `jwks_public_endpoint`s (the hub makes no HTTP call itself). Without
    /// one, a configured endpoint fails the start.
    pub async fn start_with_jwks(
        config: Config,
        broker: Arc<dyn Broker>,
        jwks: Option<Arc<dyn crate::auth::JwksFetcher>>,
    ) -> Result<Arc<Node>, NodeError> {
        let verifiers = Verifiers::from_config_with(&config, jwks)?;
        let metrics = Metrics::default();
        let api_budget = usize::try_from(config.http_api.max_in_flight_body_size)
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        // Every broker call goes through the wrapper, which counts failures.
        let broker: Arc<dyn Broker> =
            Arc::new(MeteredBroker::new(broker, metrics.broker_errors().clone()));
        let node = Arc::new(Node {
            config: Arc::new(config),
            broker,
            hub: Hub::new(),
            fanout: Fanout::new(Fanout::default_workers()),
            verifiers,
            metrics,
            id: random_id(),
            started: Instant::now(),
            name: Mutex::new(default_node_name()),
            surveys: Mutex::new(HashMap::new()),
            survey_answers: AtomicUsize::new(0),
            api_body_budget: Arc::new(tokio::sync::Semaphore::new(api_budget)),
            emulation: Arc::default(),
            peers: Mutex::default(),
            peers_reread: Mutex::default(),
            fronts: std::sync::RwLock::default(),
        });
        node.fanout.start(Arc::downgrade(&node));
        node.broker
            .start(Arc::new(Handler(Arc::downgrade(&node))))
            .await?;
        Node::spawn_background(&node);
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

    /// Sets the name other nodes see in `/api/info` (default: the host name).
    pub fn set_name(&self, name: impl Into<String>) {
        *self.name.lock().unwrap_or_else(|e| e.into_inner()) = name.into();
    }

    /// The node's name.
    pub fn name(&self) -> String {
        self.name.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// This node's info for the registry and `/api/info`.
    pub fn info(&self) -> NodeInfo {
        let (channels, subs) = self.hub.counts();
        let (clients, users) = self.hub.client_counts();
        let mut i = NodeInfo::new(self.id.clone(), self.name());
        i.version = env!("CARGO_PKG_VERSION").into();
        i.num_clients = clients as u64;
        i.num_users = users as u64;
        i.num_channels = channels as u64;
        i.num_subs = subs as u64;
        i.uptime_secs = self.uptime_secs();
        i
    }

    /// Every live node of the cluster (this one first), from the broker's
    /// registry. If the broker cannot answer, only this node.
    pub async fn nodes(&self) -> Vec<NodeInfo> {
        let mut all = match self.broker.nodes().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list nodes");
                Vec::new()
            }
        };
        all.retain(|n| n.id != self.id);
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        all.insert(0, self.info());
        all
    }

    /// The budget of API request body bytes the node holds at once
    /// (`http_api.max_in_flight_body_size`, one permit per byte): a
    /// transport takes permits for a body before it reads it and keeps
    /// them until the answer is written.
    pub fn api_body_budget(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.api_body_budget
    }

    /// Channels with subscribers on this node matching `pattern`, with
    /// their subscriber counts.
    fn local_channels(&self, pattern: &str) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .hub
            .channels()
            .into_iter()
            .filter(|(c, _)| crate::api::glob(pattern, c))
            .map(|(c, n)| (c, n as u64))
            .collect();
        all.sort();
        all
    }

    /// Channels with subscribers on any node of the cluster matching
    /// `pattern` (`*` wildcards; empty: all), with subscriber counts summed
    /// over the nodes. The other nodes are asked with a survey over the
    /// control channel; the nodes of the registry that have not answered
    /// within `http_api.cluster_request_timeout` are left out (and counted
    /// in `wshub_api_survey_timeouts_total`), so a dead node that is still
    /// registered delays the answer by at most the timeout.
    ///
    /// Cancel safety: cancel safe (nothing is left behind but a survey
    /// whose late answers are dropped).
    pub async fn cluster_channels(&self, pattern: &str) -> BTreeMap<String, u64> {
        let mut merged: BTreeMap<String, u64> = self.local_channels(pattern).into_iter().collect();
        let timeout = self.config.http_api.cluster_request_timeout.as_std();
        let deadline = tokio::time::Instant::now() + timeout;
        let others: HashSet<String> = match tokio::time::timeout_at(deadline, self.broker.nodes())
            .await
        {
            Ok(Ok(v)) => v
                .into_iter()
                .map(|n| n.id)
                .filter(|id| *id != self.id)
                .collect(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "channels: cannot list nodes; answering for this node");
                return merged;
            }
            Err(_) => {
                tracing::warn!("channels: node list timed out; answering for this node");
                return merged;
            }
        };
        if others.is_empty() {
            return merged;
        }
        let id = random_id();
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        self.surveys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), tx);
        struct Forget<'a>(&'a Node, &'a str);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0
                    .surveys
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(self.1);
            }
        }
        let _forget = Forget(self, &id);
        let req = SurveyRequest {
            v: 1,
            survey: id.clone(),
            from: self.id.clone(),
            op: SurveyOp::Channels {
                pattern: pattern.to_owned(),
            },
        };
        let sent = tokio::time::timeout_at(
            deadline,
            self.broker
                .publish_control(ControlMessage::Survey(req).encode()),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::warn!("channels: cannot ask the other nodes; answering for this node");
            self.metrics
                .survey_timeouts(SurveyKind::Channels, others.len() as u64);
            return merged;
        }
        // Per node: parts received and the number of parts (known from the last).
        let mut progress: HashMap<String, (u32, Option<u32>)> = HashMap::new();
        let mut waiting = others;
        while !waiting.is_empty() {
            let r = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => r,
                Ok(None) | Err(_) => break,
            };
            for (c, n) in r.channels {
                let e = merged.entry(c).or_default();
                *e = e.saturating_add(n);
            }
            let p = progress.entry(r.from.clone()).or_default();
            p.0 += 1;
            if r.last {
                p.1 = Some(r.part.saturating_add(1));
            }
            if p.1 == Some(p.0) {
                waiting.remove(&r.from);
            }
        }
        if !waiting.is_empty() {
            tracing::warn!(
                nodes = ?waiting,
                "channels: nodes did not answer in time; left out"
            );
            self.metrics
                .survey_timeouts(SurveyKind::Channels, waiting.len() as u64);
        }
        merged
    }

    /// The emulation sessions of this node (see [`crate::emulation`]).
    pub fn emulation(&self) -> &Arc<emulation::Registry> {
        &self.emulation
    }

    /// Hands the command batch `data` to emulation session `session` of
    /// node `node_id` and waits until the session has run it (at most
    /// [`emulation::TIMEOUT`]): directly when that is this node, else
    /// through the broker's control channel. A node id that is not in the
    /// registry (as read every few seconds) is [`Outcome::UnknownNode`].
    ///
    /// Cancel safety: cancel safe (a forwarded request may still arrive).
    pub async fn emulate(&self, node_id: &str, session: &str, data: Bytes) -> Outcome {
        let deadline = tokio::time::Instant::now() + emulation::TIMEOUT;
        self.forward(
            node_id,
            session,
            emulation::Request::Commands(data),
            deadline,
        )
        .await
        .0
    }

    /// A long-poll of session `session` of node `node_id`: the answer body
    /// once the session has messages after `ack`, or after `wait` with
    /// none. Forwarded like [`Node::emulate`].
    ///
    /// Cancel safety: cancel safe.
    pub async fn poll(
        &self,
        node_id: &str,
        session: &str,
        ack: u64,
        wait: Duration,
    ) -> Result<Bytes, Outcome> {
        // The session answers an empty poll at `wait`; the rest is slack
        // for the broker round trip.
        let deadline = tokio::time::Instant::now() + wait + emulation::TIMEOUT / 2;
        match self
            .forward(node_id, session, emulation::Request::Poll { ack }, deadline)
            .await
        {
            (Outcome::Delivered, Some(body)) => Ok(body),
            (Outcome::Delivered, None) => Err(Outcome::Refused),
            (o, _) => Err(o),
        }
    }

    /// Whether `node_id` is in the registry: as last read, or, for an id
    /// not seen yet (a node that started since), as read again now, at most
    /// once per [`PEERS_REREAD_MIN`] so that forged ids cannot make every
    /// request a broker call.
    async fn knows_node(&self, node_id: &str) -> bool {
        let known = |n: &Node| {
            n.peers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(node_id)
        };
        if known(self) {
            return true;
        }
        {
            let mut last = self.peers_reread.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < PEERS_REREAD_MIN) {
                return false;
            }
            *last = Some(Instant::now());
        }
        if let Ok(nodes) = self.broker.nodes().await {
            *self.peers.lock().unwrap_or_else(|e| e.into_inner()) =
                nodes.into_iter().map(|n| n.id).collect();
        }
        known(self)
    }

    async fn forward(
        &self,
        node_id: &str,
        session: &str,
        request: emulation::Request,
        deadline: tokio::time::Instant,
    ) -> (Outcome, Option<Bytes>) {
        if node_id == self.id {
            return self.emulation.deliver(session, request, deadline).await;
        }
        if !self.knows_node(node_id).await {
            return (Outcome::UnknownNode, None);
        }
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let mut waiting = self.emulation.wait();
        let (data, poll) = match request {
            emulation::Request::Commands(d) => (b64.encode(&d), None),
            emulation::Request::Poll { ack } => (String::new(), Some(ack)),
        };
        let wait_ms = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .as_millis() as u64;
        let msg = ControlMessage::Emulation(EmulationForward {
            v: 1,
            emulation: waiting.id,
            from: self.id.clone(),
            to: node_id.to_owned(),
            session: session.to_owned(),
            data,
            poll,
            wait_ms: Some(wait_ms),
        });
        let sent =
            tokio::time::timeout_at(deadline, self.broker.publish_control(msg.encode())).await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!(
                node = node_id,
                "emulation: cannot forward through the broker"
            );
            return (Outcome::NoAnswer, None);
        }
        match tokio::time::timeout_at(deadline, &mut waiting.rx).await {
            Ok(Ok(answer)) => answer,
            _ => (Outcome::NoAnswer, None),
        }
    }

    /// Runs a request another node forwarded and answers it, in a task (the
    /// broker's delivery must not wait). The owner gives up a little before
    /// the forwarder does, so that its answer can still arrive.
    fn answer_emulation(self: &Arc<Self>, e: EmulationForward) {
        use base64::Engine as _;
        let node = self.clone();
        tokio::spawn(async move {
            let b64 = &base64::engine::general_purpose::STANDARD;
            let wait = e
                .wait_ms
                .map_or(emulation::TIMEOUT, Duration::from_millis)
                .min(Duration::from_secs(120));
            let deadline = tokio::time::Instant::now() + wait * 9 / 10;
            let request = match (e.poll, b64.decode(e.data.as_bytes())) {
                (Some(ack), _) => Some(emulation::Request::Poll { ack }),
                (None, Ok(data)) => Some(emulation::Request::Commands(Bytes::from(data))),
                // Only a node sends these; a broken one gets no delivery.
                (None, Err(_)) => None,
            };
            let (outcome, body) = match request {
                Some(r) => node.emulation.deliver(&e.session, r, deadline).await,
                None => (Outcome::Refused, None),
            };
            let answer = ControlMessage::EmulationAnswer(EmulationAnswer {
                v: 1,
                emulation_answer: e.emulation,
                to: e.from,
                outcome: outcome.as_str().to_owned(),
                body: body.map(|b| b64.encode(&b)),
            });
            if let Err(err) = node.broker.publish_control(answer.encode()).await {
                tracing::warn!(error = %err, "cannot answer a forwarded emulation request");
            }
        });
    }

    /// Answers another node's survey (in a task; at most a few at once,
    /// the others are dropped and the asker times out).
    fn answer_survey(self: &Arc<Self>, req: SurveyRequest) {
        const MAX_ANSWERS: usize = 4;
        if self.survey_answers.fetch_add(1, Ordering::AcqRel) >= MAX_ANSWERS {
            self.survey_answers.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(survey = %req.survey, "too many surveys at once; not answering");
            return;
        }
        let node = self.clone();
        tokio::spawn(async move {
            let channels = match &req.op {
                SurveyOp::Channels { pattern } => node.local_channels(pattern),
            };
            for part in SurveyReply::parts(&req, &node.id, channels) {
                let msg = ControlMessage::SurveyReply(part).encode();
                if let Err(e) = node.broker.publish_control(msg).await {
                    tracing::warn!(error = %e, "cannot answer a survey");
                    break;
                }
            }
            node.survey_answers.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Applies `control` to the connections of `user` (only `client` when
    /// not empty) on every node of the cluster, this one included, through
    /// the broker's control channel.
    pub async fn control_user(
        &self,
        user: &str,
        client: &str,
        control: &Control,
    ) -> Result<(), BrokerError> {
        match UserControl::new(user, client, control) {
            Some(c) => self.broker.publish_control(c.encode()).await,
            None => {
                for h in self.hub.user_clients(user, client) {
                    h.control(control.clone());
                }
                Ok(())
            }
        }
    }

    /// Tells the local subscribers of `channel` that they missed
    /// publications (unsubscribe 2500, they resubscribe and recover) and
    /// takes `position` as the channel's new position.
    pub fn report_gap(&self, channel: &str, position: &StreamPosition, why: &str) {
        self.hub.reset_position(channel, position);
        // Through the fan-out workers, behind the pushes already queued to
        // the same subscribers: the gap comes after what was delivered.
        let n = match self.hub.snapshot(channel) {
            Some(snapshot) => {
                let hash = Hub::channel_hash(channel);
                self.fanout
                    .dispatch(self, channel, hash, &snapshot, Work::Gap);
                snapshot.len()
            }
            None => 0,
        };
        self.metrics.stream_gap();
        tracing::info!(
            channel,
            offset = position.offset,
            epoch = %position.epoch,
            subscribers = n,
            why,
            "stream gap: subscribers told to recover"
        );
    }

    /// Compares the stream position of every channel this node delivers
    /// with the broker's, and reports a gap where the node is behind (after
    /// a short grace for publications still on their way) or the epoch
    /// changed. Runs after the broker's delivery resumed and periodically.
    pub async fn check_positions(&self) {
        let mut behind = Vec::new();
        for (channel, known) in self.hub.positions() {
            let Ok(resolved) = wshub_config::channel_options(&self.config, &channel) else {
                continue;
            };
            let o = resolved.options;
            if !o.history_enabled() {
                continue;
            }
            let hist = HistoryOptions::new(o.history_size as usize, o.history_ttl.as_std());
            match self
                .broker
                .history(&channel, HistoryFilter::position_only(), hist)
                .await
            {
                Ok(h) if h.position.epoch != known.epoch || h.position.offset > known.offset => {
                    behind.push((channel, h.position));
                }
                Ok(_) => {}
                Err(e) => {
                    // Down again: the next resume runs the check again.
                    tracing::warn!(error = %e, "position check stopped: broker error");
                    return;
                }
            }
        }
        if behind.is_empty() {
            return;
        }
        tokio::time::sleep(POSITION_GRACE).await;
        for (channel, top) in behind {
            match self.hub.position(&channel) {
                Some(now) if now.epoch == top.epoch && now.offset >= top.offset => {}
                Some(_) => self.report_gap(&channel, &top, "position check: node behind"),
                None => {}
            }
        }
    }

    /// Removes this node from the registry (graceful shutdown).
    pub async fn shutdown(&self) {
        if let Err(e) = self.broker.unregister_node(&self.id).await {
            tracing::warn!(error = %e, "cannot unregister node");
        }
    }

    /// Registers the node, then keeps its registration fresh and checks
    /// channel positions periodically, until the node is dropped.
    fn spawn_background(node: &Arc<Node>) {
        let weak = Arc::downgrade(node);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(NODE_INFO_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_check = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let Some(node) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = node.broker.register_node(node.info(), NODE_INFO_TTL).await {
                    tracing::debug!(error = %e, "node registration failed");
                }
                if let Ok(nodes) = node.broker.nodes().await {
                    *node.peers.lock().unwrap_or_else(|e| e.into_inner()) =
                        nodes.into_iter().map(|n| n.id).collect();
                }
                if last_check.elapsed() >= POSITION_CHECK_INTERVAL {
                    last_check = tokio::time::Instant::now();
                    let n = node.clone();
                    tokio::spawn(async move { n.check_positions().await });
                }
            }
        });
    }

    /// Queues `push` for every local subscriber of `channel` (only those
    /// that asked for join/leave when `join_leave`), encoding it at most
    /// once per encoding, through the fan-out workers.
    pub fn fan_out(&self, channel: &str, push: &Push, offset: u64, join_leave: bool) {
        if let Some(snapshot) = self.hub.snapshot(channel) {
            self.fan_out_to(channel, &snapshot, push, offset, join_leave, 0);
        }
    }

    /// The fan-out workers.
    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    /// [`Node::fan_out`] to `snapshot`; `time_ms` is the publication's
    /// broker time (0: none) for the delivery latency. On the caller: the
    /// encoding (once per encoding the subscribers use) and one job per
    /// chunk; the pushes happen on the workers.
    fn fan_out_to(
        &self,
        channel: &str,
        snapshot: &Snapshot,
        push: &Push,
        offset: u64,
        join_leave: bool,
        time_ms: u64,
    ) {
        let mut frames: [Option<Bytes>; 2] = [None, None];
        for (slot, enc) in frames.iter_mut().zip([Encoding::Json, Encoding::Protobuf]) {
            if !snapshot.uses(enc.is_binary()) {
                continue;
            }
            match encode_push_reply(enc, push) {
                Ok(b) => *slot = Some(b),
                Err(e) => tracing::warn!(channel, error = %e, "cannot encode push"),
            }
        }
        if frames.iter().all(Option::is_none) {
            return;
        }
        let kind = if push.publication.is_some() {
            PushKind::Publication
        } else if push.join.is_some() {
            PushKind::Join
        } else if push.leave.is_some() {
            PushKind::Leave
        } else {
            PushKind::Other
        };
        let work = Work::Push {
            frames,
            offset,
            join_leave,
            kind,
            time_ms,
            exclude: None,
        };
        let hash = Hub::channel_hash(channel);
        self.fanout.dispatch(self, channel, hash, snapshot, work);
    }

    /// Gives the channels that start with `prefix` to a front: their pushes
    /// are encoded by `codec` ([`FrontCodec`]). Channels of the Centrifugo
    /// protocol must not start with it (see
    /// [`wshub_config::FRONT_CHANNEL_PREFIX`]).
    pub fn register_front(&self, prefix: impl Into<String>, codec: Arc<dyn FrontCodec>) {
        self.fronts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push((prefix.into(), codec));
    }

    /// The front that owns `channel`, if any.
    fn front(&self, channel: &str) -> Option<Arc<dyn FrontCodec>> {
        let fronts = self.fronts.read().unwrap_or_else(|e| e.into_inner());
        fronts
            .iter()
            .find(|(p, _)| channel.starts_with(p.as_str()))
            .map(|(_, c)| c.clone())
    }

    /// A front's join or leave push, to the local subscribers that asked
    /// for join/leave. A front bounds its own channels (Pusher's presence
    /// member limit), so `join_leave_max_subscribers` does not apply.
    fn front_join_leave(&self, channel: &str, frame: Bytes, kind: PushKind) {
        let Some(snapshot) = self.hub.snapshot(channel) else {
            return;
        };
        let work = Work::Push {
            frames: [Some(frame), None],
            offset: 0,
            join_leave: true,
            kind,
            time_ms: 0,
            exclude: None,
        };
        let hash = Hub::channel_hash(channel);
        self.fanout.dispatch(self, channel, hash, &snapshot, work);
    }

    /// A join or leave event of `channel`: pushed to the subscribers that
    /// want it unless the channel has more local subscribers than its
    /// `join_leave_max_subscribers`.
    fn join_leave(&self, channel: &str, push: impl FnOnce() -> Push) {
        let max = wshub_config::channel_options(&self.config, channel)
            .map_or(wshub_config::JoinLeaveLimit::DEFAULT, |r| {
                r.options.join_leave_max_subscribers
            });
        match self.hub.join_leave(channel, max.0 as usize) {
            JoinLeave::Deliver { snapshot, resumed } => {
                if resumed {
                    tracing::info!(
                        channel,
                        subscribers = snapshot.len(),
                        max = max.0,
                        "join/leave pushes resumed: at or below join_leave_max_subscribers"
                    );
                }
                self.fan_out_to(channel, &snapshot, &push(), 0, true, 0);
            }
            JoinLeave::Muted {
                subscribers,
                crossed,
            } => {
                self.fanout.count_muted();
                if crossed {
                    tracing::info!(
                        channel,
                        subscribers,
                        max = max.0,
                        "join/leave pushes stopped: more local subscribers than \
                         join_leave_max_subscribers"
                    );
                }
            }
            JoinLeave::Nobody => {}
        }
    }

    /// Prometheus text exposition of the node's metrics (format 0.0.4,
    /// [`crate::metrics::CONTENT_TYPE`]), with what other crates added
    /// through [`Metrics::register`].
    pub fn metrics_text(&self) -> String {
        let (channels, subscriptions) = self.hub.counts();
        let (clients, users) = self.hub.client_counts();
        self.metrics.render(NodeCounts {
            clients,
            users,
            channels,
            subscriptions,
            fanout_queued_jobs: self.fanout.queued_jobs(),
            fanout_caller_jobs: self.fanout.caller_jobs(),
            join_leave_muted: self.fanout.join_leave_muted(),
        })
    }

    /// Client commands by method (the names of the node's metrics).
    pub const COMMANDS: &'static str = "wshub_client_commands_total";
    /// Disconnects by code.
    pub const DISCONNECTS: &'static str = "wshub_client_disconnects_total";
    /// Messages sent by type.
    pub const MESSAGES_SENT: &'static str = "wshub_node_messages_sent_total";
    /// API calls by method.
    pub const API_CALLS: &'static str = "wshub_api_calls_total";
    /// Nodes that did not answer a survey in time, by operation.
    pub const SURVEY_TIMEOUTS: &'static str = "wshub_api_survey_timeouts_total";
    /// API requests refused or cut short by a limit, by limit.
    pub const API_LIMIT_EXCEEDED: &'static str = "wshub_api_limit_exceeded_total";
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
        let dashes: Vec<usize> = a.match_indices('-').map(|(i, _)| i).collect();
        assert_eq!(dashes, [8, 13, 18, 23]);
        assert!(a
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)));
        // RFC 9562 variant: the first digit of the fourth group is 8, 9, a or b.
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
