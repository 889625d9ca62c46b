//! Layering a broker: a wrapper that changes some calls and forwards the
//! rest ([`BrokerLayer`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    Broker, BrokerError, BrokerEventHandler, ClientInfo, HistoryFilter, HistoryOptions,
    HistoryResult, NodeInfo, Presence, PresenceStats, Publication, PublishOptions, StreamPosition,
};

/// The methods of [`Broker`] (but `name`), as [`BrokerLayer::observe`]
/// sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokerOp {
    /// [`Broker::start`].
    Start,
    /// [`Broker::close`].
    Close,
    /// [`Broker::health`].
    Health,
    /// [`Broker::publish`].
    Publish,
    /// [`Broker::publish_join`].
    PublishJoin,
    /// [`Broker::publish_leave`].
    PublishLeave,
    /// [`Broker::publish_control`].
    PublishControl,
    /// [`Broker::subscribe`].
    Subscribe,
    /// [`Broker::unsubscribe`].
    Unsubscribe,
    /// [`Broker::history`].
    History,
    /// [`Broker::remove_history`].
    RemoveHistory,
    /// [`Broker::add_presence`].
    AddPresence,
    /// [`Broker::remove_presence`].
    RemovePresence,
    /// [`Broker::presence`].
    Presence,
    /// [`Broker::presence_stats`].
    PresenceStats,
    /// [`Broker::register_node`].
    RegisterNode,
    /// [`Broker::unregister_node`].
    UnregisterNode,
    /// [`Broker::nodes`].
    Nodes,
}

impl BrokerOp {
    /// Every operation, in the order of [`BrokerOp::index`].
    pub const ALL: [BrokerOp; 18] = [
        BrokerOp::Start,
        BrokerOp::Close,
        BrokerOp::Health,
        BrokerOp::Publish,
        BrokerOp::PublishJoin,
        BrokerOp::PublishLeave,
        BrokerOp::PublishControl,
        BrokerOp::Subscribe,
        BrokerOp::Unsubscribe,
        BrokerOp::History,
        BrokerOp::RemoveHistory,
        BrokerOp::AddPresence,
        BrokerOp::RemovePresence,
        BrokerOp::Presence,
        BrokerOp::PresenceStats,
        BrokerOp::RegisterNode,
        BrokerOp::UnregisterNode,
        BrokerOp::Nodes,
    ];

    /// The position in [`BrokerOp::ALL`] (for a table of counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The method's name (`"publish_join"`, ...), as in metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            BrokerOp::Start => "start",
            BrokerOp::Close => "close",
            BrokerOp::Health => "health",
            BrokerOp::Publish => "publish",
            BrokerOp::PublishJoin => "publish_join",
            BrokerOp::PublishLeave => "publish_leave",
            BrokerOp::PublishControl => "publish_control",
            BrokerOp::Subscribe => "subscribe",
            BrokerOp::Unsubscribe => "unsubscribe",
            BrokerOp::History => "history",
            BrokerOp::RemoveHistory => "remove_history",
            BrokerOp::AddPresence => "add_presence",
            BrokerOp::RemovePresence => "remove_presence",
            BrokerOp::Presence => "presence",
            BrokerOp::PresenceStats => "presence_stats",
            BrokerOp::RegisterNode => "register_node",
            BrokerOp::UnregisterNode => "unregister_node",
            BrokerOp::Nodes => "nodes",
        }
    }
}

/// What a wrapper around a [`Broker`] changes.
///
/// A [`BrokerLayer`] has one method per [`Broker`] method, each given the
/// broker underneath; every default forwards the call unchanged, so a layer
/// overrides only what it changes. [`BrokerLayer::observe`] sees the outcome
/// of every call (for counting, logging, tracing) without overriding any.
/// [`BrokerLayer::over`] puts a layer over a broker: a [`Layered`], itself
/// a [`Broker`], so layers stack and the node, the conformance suite and
/// the tests take them like any broker.
///
/// ```
/// # use std::sync::Arc;
/// # use async_trait::async_trait;
/// use wshub_hub::broker::*;
///
/// /// Refuses publications into channels starting with `readonly:`.
/// struct ReadOnly;
///
/// #[async_trait]
/// impl BrokerLayer for ReadOnly {
///     async fn publish(
///         &self,
///         inner: &dyn Broker,
///         channel: &str,
///         publication: Publication,
///         opts: PublishOptions,
///     ) -> Result<StreamPosition, BrokerError> {
///         if channel.starts_with("readonly:") {
///             return Err(BrokerError::InvalidOptions("read-only channel".into()));
///         }
///         inner.publish(channel, publication, opts).await
///     }
/// }
///
/// let memory: Arc<dyn Broker> = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
/// let broker: Arc<dyn Broker> = Arc::new(ReadOnly.over(memory));
/// assert_eq!(broker.name(), "memory");
/// ```
///
/// Each method gets `inner`, the broker underneath, and by default forwards
/// to it unchanged, keeping its contract (and its cancel safety). An
/// override must keep the [`Broker`] contract too, which the conformance
/// suite checks when run over the layered broker.
#[async_trait]
#[allow(missing_docs)] // Each method is the Broker method of that name.
pub trait BrokerLayer: Send + Sync + 'static {
    /// Called with the outcome of every call but `name`, after it (once
    /// per call, whether the layer overrides the method or not). The
    /// default does nothing.
    fn observe(&self, op: BrokerOp, result: Result<(), &BrokerError>) {
        let _ = (op, result);
    }

    /// This layer over `inner`: a [`Broker`].
    fn over(self, inner: Arc<dyn Broker>) -> Layered<Self>
    where
        Self: Sized,
    {
        Layered { inner, layer: self }
    }

    fn name<'a>(&'a self, inner: &'a dyn Broker) -> &'a str {
        inner.name()
    }
    async fn start(
        &self,
        inner: &dyn Broker,
        handler: Arc<dyn BrokerEventHandler>,
    ) -> Result<(), BrokerError> {
        inner.start(handler).await
    }
    async fn close(&self, inner: &dyn Broker) -> Result<(), BrokerError> {
        inner.close().await
    }
    async fn health(&self, inner: &dyn Broker) -> Result<(), BrokerError> {
        inner.health().await
    }
    async fn publish(
        &self,
        inner: &dyn Broker,
        channel: &str,
        publication: Publication,
        opts: PublishOptions,
    ) -> Result<StreamPosition, BrokerError> {
        inner.publish(channel, publication, opts).await
    }
    async fn publish_join(
        &self,
        inner: &dyn Broker,
        channel: &str,
        info: ClientInfo,
    ) -> Result<(), BrokerError> {
        inner.publish_join(channel, info).await
    }
    async fn publish_leave(
        &self,
        inner: &dyn Broker,
        channel: &str,
        info: ClientInfo,
    ) -> Result<(), BrokerError> {
        inner.publish_leave(channel, info).await
    }
    async fn publish_control(&self, inner: &dyn Broker, data: Bytes) -> Result<(), BrokerError> {
        inner.publish_control(data).await
    }
    async fn subscribe(&self, inner: &dyn Broker, channel: &str) -> Result<(), BrokerError> {
        inner.subscribe(channel).await
    }
    async fn unsubscribe(&self, inner: &dyn Broker, channel: &str) -> Result<(), BrokerError> {
        inner.unsubscribe(channel).await
    }
    async fn history(
        &self,
        inner: &dyn Broker,
        channel: &str,
        filter: HistoryFilter,
        opts: HistoryOptions,
    ) -> Result<HistoryResult, BrokerError> {
        inner.history(channel, filter, opts).await
    }
    async fn remove_history(&self, inner: &dyn Broker, channel: &str) -> Result<(), BrokerError> {
        inner.remove_history(channel).await
    }
    async fn add_presence(
        &self,
        inner: &dyn Broker,
        channel: &str,
        client_id: &str,
        info: ClientInfo,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        inner.add_presence(channel, client_id, info, ttl).await
    }
    async fn remove_presence(
        &self,
        inner: &dyn Broker,
        channel: &str,
        client_id: &str,
    ) -> Result<(), BrokerError> {
        inner.remove_presence(channel, client_id).await
    }
    async fn presence(&self, inner: &dyn Broker, channel: &str) -> Result<Presence, BrokerError> {
        inner.presence(channel).await
    }
    async fn presence_stats(
        &self,
        inner: &dyn Broker,
        channel: &str,
    ) -> Result<PresenceStats, BrokerError> {
        inner.presence_stats(channel).await
    }
    async fn register_node(
        &self,
        inner: &dyn Broker,
        info: NodeInfo,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        inner.register_node(info, ttl).await
    }
    async fn unregister_node(&self, inner: &dyn Broker, node_id: &str) -> Result<(), BrokerError> {
        inner.unregister_node(node_id).await
    }
    async fn nodes(&self, inner: &dyn Broker) -> Result<Vec<NodeInfo>, BrokerError> {
        inner.nodes().await
    }
}

/// A [`BrokerLayer`] over a broker: a [`Broker`] that runs every call
/// through the layer.
pub struct Layered<L> {
    inner: Arc<dyn Broker>,
    layer: L,
}

impl<L: BrokerLayer> Layered<L> {
    /// The layer.
    pub fn layer(&self) -> &L {
        &self.layer
    }
    /// The broker underneath.
    pub fn inner(&self) -> &Arc<dyn Broker> {
        &self.inner
    }
    fn seen<T>(&self, op: BrokerOp, r: Result<T, BrokerError>) -> Result<T, BrokerError> {
        self.layer.observe(op, r.as_ref().map(|_| ()));
        r
    }
}

#[async_trait]
impl<L: BrokerLayer> Broker for Layered<L> {
    fn name(&self) -> &str {
        self.layer.name(&*self.inner)
    }
    async fn start(&self, handler: Arc<dyn BrokerEventHandler>) -> Result<(), BrokerError> {
        let r = self.layer.start(&*self.inner, handler).await;
        self.seen(BrokerOp::Start, r)
    }
    async fn close(&self) -> Result<(), BrokerError> {
        let r = self.layer.close(&*self.inner).await;
        self.seen(BrokerOp::Close, r)
    }
    async fn health(&self) -> Result<(), BrokerError> {
        let r = self.layer.health(&*self.inner).await;
        self.seen(BrokerOp::Health, r)
    }
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        opts: PublishOptions,
    ) -> Result<StreamPosition, BrokerError> {
        let r = self
            .layer
            .publish(&*self.inner, channel, publication, opts)
            .await;
        self.seen(BrokerOp::Publish, r)
    }
    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let r = self.layer.publish_join(&*self.inner, channel, info).await;
        self.seen(BrokerOp::PublishJoin, r)
    }
    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let r = self.layer.publish_leave(&*self.inner, channel, info).await;
        self.seen(BrokerOp::PublishLeave, r)
    }
    async fn publish_control(&self, data: Bytes) -> Result<(), BrokerError> {
        let r = self.layer.publish_control(&*self.inner, data).await;
        self.seen(BrokerOp::PublishControl, r)
    }
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let r = self.layer.subscribe(&*self.inner, channel).await;
        self.seen(BrokerOp::Subscribe, r)
    }
    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let r = self.layer.unsubscribe(&*self.inner, channel).await;
        self.seen(BrokerOp::Unsubscribe, r)
    }
    async fn history(
        &self,
        channel: &str,
        filter: HistoryFilter,
        opts: HistoryOptions,
    ) -> Result<HistoryResult, BrokerError> {
        let r = self
            .layer
            .history(&*self.inner, channel, filter, opts)
            .await;
        self.seen(BrokerOp::History, r)
    }
    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        let r = self.layer.remove_history(&*self.inner, channel).await;
        self.seen(BrokerOp::RemoveHistory, r)
    }
    async fn add_presence(
        &self,
        channel: &str,
        client_id: &str,
        info: ClientInfo,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let r = self
            .layer
            .add_presence(&*self.inner, channel, client_id, info, ttl)
            .await;
        self.seen(BrokerOp::AddPresence, r)
    }
    async fn remove_presence(&self, channel: &str, client_id: &str) -> Result<(), BrokerError> {
        let r = self
            .layer
            .remove_presence(&*self.inner, channel, client_id)
            .await;
        self.seen(BrokerOp::RemovePresence, r)
    }
    async fn presence(&self, channel: &str) -> Result<Presence, BrokerError> {
        let r = self.layer.presence(&*self.inner, channel).await;
        self.seen(BrokerOp::Presence, r)
    }
    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError> {
        let r = self.layer.presence_stats(&*self.inner, channel).await;
        self.seen(BrokerOp::PresenceStats, r)
    }
    async fn register_node(&self, info: NodeInfo, ttl: Duration) -> Result<(), BrokerError> {
        let r = self.layer.register_node(&*self.inner, info, ttl).await;
        self.seen(BrokerOp::RegisterNode, r)
    }
    async fn unregister_node(&self, node_id: &str) -> Result<(), BrokerError> {
        let r = self.layer.unregister_node(&*self.inner, node_id).await;
        self.seen(BrokerOp::UnregisterNode, r)
    }
    async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError> {
        let r = self.layer.nodes(&*self.inner).await;
        self.seen(BrokerOp::Nodes, r)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::broker::{MemoryBroker, MemoryBrokerConfig};

    struct Nop;
    impl BrokerEventHandler for Nop {
        fn on_publication(&self, _: &str, _: Arc<Publication>, _: &StreamPosition) {}
        fn on_join(&self, _: &str, _: &ClientInfo) {}
        fn on_leave(&self, _: &str, _: &ClientInfo) {}
        fn on_control(&self, _: Bytes) {}
    }

    /// Overrides one method and observes every call.
    #[derive(Default)]
    struct Probe {
        seen: Mutex<Vec<(BrokerOp, bool)>>,
    }

    #[async_trait]
    impl BrokerLayer for Probe {
        fn observe(&self, op: BrokerOp, result: Result<(), &BrokerError>) {
            self.seen.lock().unwrap().push((op, result.is_ok()));
        }
        async fn presence_stats(
            &self,
            _: &dyn Broker,
            _: &str,
        ) -> Result<PresenceStats, BrokerError> {
            Err(BrokerError::Timeout)
        }
    }

    #[tokio::test]
    async fn a_layer_forwards_what_it_does_not_override_and_observes_every_call() {
        let memory: Arc<dyn Broker> = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
        let b = Probe::default().over(memory.clone());
        assert_eq!(b.name(), "memory");
        b.start(Arc::new(Nop)).await.unwrap();
        let opts = PublishOptions::default().history(10, Duration::from_secs(60));
        let pos = b.publish("ch", Publication::new("x"), opts).await.unwrap();
        assert_eq!(pos.offset, 1);
        // Forwarded: the broker underneath has the publication.
        let h = memory
            .history("ch", HistoryFilter::all(), HistoryOptions::default())
            .await
            .unwrap();
        assert_eq!(h.publications.len(), 1);
        b.add_presence("ch", "c", ClientInfo::new("u", "c"), Duration::from_secs(9))
            .await
            .unwrap();
        assert_eq!(b.presence("ch").await.unwrap().len(), 1);
        // Overridden.
        assert!(matches!(
            b.presence_stats("ch").await,
            Err(BrokerError::Timeout)
        ));
        assert!(b.start(Arc::new(Nop)).await.is_err());
        assert_eq!(
            *b.layer().seen.lock().unwrap(),
            [
                (BrokerOp::Start, true),
                (BrokerOp::Publish, true),
                (BrokerOp::AddPresence, true),
                (BrokerOp::Presence, true),
                (BrokerOp::PresenceStats, false),
                (BrokerOp::Start, false),
            ]
        );
    }

    #[test]
    fn ops_are_listed_once_in_index_order() {
        for (i, op) in BrokerOp::ALL.iter().enumerate() {
            assert_eq!(op.index(), i);
        }
        let mut names: Vec<&str> = BrokerOp::ALL.iter().map(|o| o.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BrokerOp::ALL.len());
    }
}
