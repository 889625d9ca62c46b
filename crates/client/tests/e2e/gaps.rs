//! Publications lost between the broker and the node (what Redis PUB/SUB
//! or NATS core do while a connection is down) are never lost silently: the
//! node sees the offset gap, or finds itself behind when the broker reports
//! that delivery resumed, unsubscribes the channel's clients with 2500
//! "insufficient state", and the client recovers every missed publication
//! from history, in order, once.
//!
//! The broker here is the memory broker behind a wrapper that drops chosen
//! publications on their way to the node, so the loss is exact and the
//! test needs no network backend (the Redis and NATS crates test the real
//! interruptions).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use wshub_client::{SubscriptionConfig, SubscriptionEvent};
use wshub_hub::broker::*;

use crate::support::{client_config, config, connected, start_with, token, wait_for};

/// Drops publications whose data contains `"lost"` before they reach the
/// node, and can report "delivery resumed" on demand: a layer over the
/// memory broker that changes only `name` and `start`.
struct Lossy {
    handler: Mutex<Option<Arc<dyn BrokerEventHandler>>>,
}

struct LossyHandler(Arc<dyn BrokerEventHandler>);

impl BrokerEventHandler for LossyHandler {
    fn on_publication(&self, channel: &str, p: Arc<Publication>, pos: &StreamPosition) {
        if !p.data.windows(4).any(|w| w == b"lost") {
            self.0.on_publication(channel, p, pos);
        }
    }
    fn on_join(&self, channel: &str, info: &ClientInfo) {
        self.0.on_join(channel, info);
    }
    fn on_leave(&self, channel: &str, info: &ClientInfo) {
        self.0.on_leave(channel, info);
    }
    fn on_control(&self, data: Bytes) {
        self.0.on_control(data);
    }
}

impl Lossy {
    fn new() -> Arc<Layered<Self>> {
        let memory = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
        let layer = Lossy {
            handler: Mutex::new(None),
        };
        Arc::new(layer.over(memory))
    }

    /// What a networked broker does after reconnecting and resubscribing.
    fn resume(&self) {
        let h = self.handler.lock().unwrap().clone().expect("started");
        h.on_delivery_interrupted("test");
        h.on_delivery_resumed();
    }
}

#[async_trait]
impl BrokerLayer for Lossy {
    fn name<'a>(&'a self, _: &'a dyn Broker) -> &'a str {
        "lossy"
    }
    async fn start(
        &self,
        inner: &dyn Broker,
        handler: Arc<dyn BrokerEventHandler>,
    ) -> Result<(), BrokerError> {
        *self.handler.lock().unwrap() = Some(handler.clone());
        inner.start(Arc::new(LossyHandler(handler))).await
    }
}

/// Collects the subscription's publications (offset → data) until `n`
/// distinct offsets arrived, failing on a duplicate; returns them with the
/// `(code, was_recovering, recovered)` of every resubscription seen.
async fn collect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<SubscriptionEvent>,
    n: usize,
) -> (Vec<(u64, String)>, Vec<u32>, Vec<(bool, bool)>) {
    let mut pubs = Vec::new();
    let mut seen = HashMap::new();
    let mut codes = Vec::new();
    let mut subs = Vec::new();
    while pubs.len() < n {
        wait_for(rx, |e| match e {
            SubscriptionEvent::Publication(p) => {
                let data = String::from_utf8_lossy(&p.data).into_owned();
                assert!(
                    seen.insert(p.offset, ()).is_none(),
                    "offset {} delivered twice",
                    p.offset
                );
                pubs.push((p.offset, data));
                Some(())
            }
            SubscriptionEvent::Subscribing { code, .. } => {
                codes.push(*code);
                None
            }
            SubscriptionEvent::Subscribed {
                was_recovering,
                recovered,
                ..
            } => {
                subs.push((*was_recovering, *recovered));
                None
            }
            SubscriptionEvent::Unrecovered { .. } => panic!("unrecovered"),
            _ => None,
        })
        .await;
    }
    (pubs, codes, subs)
}

fn numbered(pubs: &[(u64, String)]) -> Vec<u64> {
    pubs.iter().map(|(o, _)| *o).collect()
}

#[tokio::test]
async fn an_offset_gap_in_the_live_stream_is_recovered() {
    let broker = Lossy::new();
    let srv = start_with(config(), broker.clone(), "127.0.0.1:0").await;
    let (client, _events, _) = connected(&srv.ws_url(), client_config().token(token("g"))).await;
    let (sub, mut rx) = client
        .new_subscription("gap", SubscriptionConfig::default().recoverable(true))
        .unwrap();
    sub.subscribe().unwrap();
    wait_for(&mut rx, |e| {
        matches!(e, SubscriptionEvent::Subscribed { .. }).then_some(())
    })
    .await;
    assert_eq!(srv.publish("gap", r#"{"n":1}"#).await, 1);
    assert_eq!(srv.publish("gap", r#"{"n":2,"x":"lost"}"#).await, 2);
    assert_eq!(srv.publish("gap", r#"{"n":3,"x":"lost"}"#).await, 3);
    assert_eq!(srv.publish("gap", r#"{"n":4}"#).await, 4);
    let (pubs, codes, subs) = collect(&mut rx, 4).await;
    assert_eq!(numbered(&pubs), [1, 2, 3, 4], "{pubs:?}");
    assert!(pubs[1].1.contains("\"n\":2"));
    assert_eq!(codes, [2500], "told insufficient state once");
    assert_eq!(subs, [(true, true)], "resubscribed and recovered");
    assert_eq!(srv.publish("gap", r#"{"n":5}"#).await, 5);
    let (more, _, _) = collect(&mut rx, 1).await;
    assert_eq!(numbered(&more), [5]);
    let metrics = srv.api_text("/metrics").await;
    assert!(
        metrics.contains("wshub_node_stream_gaps_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_quiet_channel_behind_after_delivery_resumed_is_recovered() {
    let broker = Lossy::new();
    let srv = start_with(config(), broker.clone(), "127.0.0.1:0").await;
    let (client, _events, _) = connected(&srv.ws_url(), client_config().token(token("q"))).await;
    let (sub, mut rx) = client
        .new_subscription("quiet", SubscriptionConfig::default().recoverable(true))
        .unwrap();
    sub.subscribe().unwrap();
    wait_for(&mut rx, |e| {
        matches!(e, SubscriptionEvent::Subscribed { .. }).then_some(())
    })
    .await;
    assert_eq!(srv.publish("quiet", r#"{"n":1}"#).await, 1);
    let (first, _, _) = collect(&mut rx, 1).await;
    assert_eq!(numbered(&first), [1]);
    // Lost, and nothing follows that would reveal the gap.
    assert_eq!(srv.publish("quiet", r#"{"n":2,"x":"lost"}"#).await, 2);
    broker.layer().resume();
    let (pubs, codes, subs) = collect(&mut rx, 1).await;
    assert_eq!(numbered(&pubs), [2]);
    assert_eq!(codes, [2500]);
    assert_eq!(subs, [(true, true)]);
    let metrics = srv.api_text("/metrics").await;
    for line in [
        "wshub_broker_interruptions_total 1",
        "wshub_broker_resumptions_total 1",
        "wshub_broker_up 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}
