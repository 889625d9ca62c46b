//! The PUB/SUB side: one dedicated connection, the set of channels this node
//! wants, the reader that pushes events into the node, the probe, and
//! reconnection.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use redis::{Msg, RedisResult};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use wshub_backoff::Backoff;
use wshub_hub::broker::wire::{self, ChannelEvent};
use wshub_hub::broker::{BrokerError, BrokerEventHandler};

use crate::names::Names;

/// Runs `fut` for at most `limit`: a Redis error or [`BrokerError::Timeout`].
pub(crate) async fn timed<T>(
    limit: Duration,
    fut: impl Future<Output = RedisResult<T>>,
) -> Result<T, BrokerError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(redis_error(e)),
        Err(_) => Err(BrokerError::Timeout),
    }
}

/// Maps a Redis error: timeouts to [`BrokerError::Timeout`], the rest to
/// [`BrokerError::Backend`].
fn redis_error(e: redis::RedisError) -> BrokerError {
    if e.is_timeout() {
        BrokerError::Timeout
    } else {
        BrokerError::Backend(Box::new(e))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the broker methods and the reader task share.
#[derive(Default)]
pub(crate) struct Delivery {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Gateway channels this node subscribed to (kept across reconnects).
    wanted: HashSet<String>,
    /// The current PUB/SUB connection's command side; `None` while down.
    sink: Option<PubSubSink>,
    /// Why delivery is interrupted; `None` while it works.
    interrupted: Option<String>,
}

impl Delivery {
    /// Why delivery is interrupted, if it is.
    pub(crate) fn interrupted(&self) -> Option<String> {
        lock(&self.state).interrupted.clone()
    }

    fn wants(&self, channel: &str) -> bool {
        lock(&self.state).wanted.contains(channel)
    }

    /// Adds `channel` to the wanted set and subscribes the connection;
    /// returns once Redis confirmed. On failure the channel is not kept
    /// (unless it was wanted already).
    pub(crate) async fn subscribe(
        &self,
        names: &Names,
        channel: &str,
        io_timeout: Duration,
    ) -> Result<(), BrokerError> {
        let (sink, inserted, interrupted) = {
            let mut s = lock(&self.state);
            let inserted = s.wanted.insert(channel.to_owned());
            (s.sink.clone(), inserted, s.interrupted.clone())
        };
        let result = match sink {
            Some(mut sink) => timed(io_timeout, sink.subscribe(names.pubsub(channel))).await,
            None => Err(BrokerError::Backend(
                format!(
                    "redis delivery interrupted: {}",
                    interrupted.as_deref().unwrap_or("not connected")
                )
                .into(),
            )),
        };
        if result.is_err() && inserted {
            lock(&self.state).wanted.remove(channel);
        }
        result
    }

    /// Removes `channel` from the wanted set (nothing of it is delivered
    /// from now on) and unsubscribes the connection, if there is one.
    pub(crate) async fn unsubscribe(
        &self,
        names: &Names,
        channel: &str,
        io_timeout: Duration,
    ) -> Result<(), BrokerError> {
        let sink = {
            let mut s = lock(&self.state);
            if !s.wanted.remove(channel) {
                return Ok(());
            }
            s.sink.clone()
        };
        match sink {
            Some(mut sink) => timed(io_timeout, sink.unsubscribe(names.pubsub(channel))).await,
            None => Ok(()),
        }
    }

    /// Forgets the connection (on close).
    pub(crate) fn disconnect(&self) {
        lock(&self.state).sink = None;
    }
}

/// The reader task and everything it needs; holds no reference to the
/// broker, so dropping the broker (its `stop` sender) ends the task.
pub(crate) struct Task {
    pub(crate) client: redis::Client,
    pub(crate) conn: ConnectionManager,
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) handler: Arc<dyn BrokerEventHandler>,
    pub(crate) names: Arc<Names>,
    pub(crate) connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    pub(crate) probe_interval: Duration,
    pub(crate) min_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) stop: watch::Receiver<bool>,
    /// The last probe token sent; grows across reconnects so a late probe
    /// from an earlier connection never answers a newer one.
    pub(crate) probe_token: u64,
}

/// Most channels per SUBSCRIBE when subscribing again after a reconnect.
const RESUBSCRIBE_BATCH: usize = 512;

impl Task {
    /// Opens a PUB/SUB connection, subscribes the control and probe
    /// channels and every wanted channel, and checks that the command
    /// connection answers. Installs the connection for
    /// [`Delivery::subscribe`] before subscribing the wanted set, so a
    /// channel added meanwhile is not missed.
    pub(crate) async fn connect(&self) -> Result<PubSubStream, String> {
        let pubsub = match tokio::time::timeout(
            self.connect_timeout + self.io_timeout,
            self.client.get_async_pubsub(),
        )
        .await
        {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(format!("connecting the PUB/SUB connection: {e}")),
            Err(_) => return Err("connecting the PUB/SUB connection timed out".into()),
        };
        let (mut sink, stream) = pubsub.split();
        timed(
            self.io_timeout,
            sink.subscribe(&[&self.names.control, &self.names.probe]),
        )
        .await
        .map_err(|e| format!("subscribing the control channel: {e}"))?;
        let wanted: Vec<String> = {
            let mut s = lock(&self.delivery.state);
            s.sink = Some(sink.clone());
            s.wanted.iter().map(|c| self.names.pubsub(c)).collect()
        };
        let resubscribed = async {
            for batch in wanted.chunks(RESUBSCRIBE_BATCH) {
                timed(self.io_timeout, sink.subscribe(batch))
                    .await
                    .map_err(|e| format!("subscribing again: {e}"))?;
            }
            self.check_commands().await
        };
        if let Err(e) = resubscribed.await {
            lock(&self.delivery.state).sink = None;
            return Err(e);
        }
        Ok(stream)
    }

    /// Pings the command connection; a second try lets the connection
    /// manager replace a connection that died with the server.
    async fn check_commands(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let mut last = None;
        for _ in 0..2 {
            let cmd = redis::cmd("PING");
            let ping = cmd.query_async::<String>(&mut conn);
            match timed(self.io_timeout, ping).await {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(format!(
            "the command connection does not answer: {}",
            last.map_or_else(String::new, |e| e.to_string())
        ))
    }

    /// Delivers until the broker stops, reconnecting after every
    /// interruption.
    pub(crate) async fn run(mut self, first: PubSubStream) {
        let mut next = Some(first);
        let mut backoff = Backoff::new(self.min_delay, self.max_delay);
        let mut down = false;
        loop {
            if self.stopped() {
                break;
            }
            let stream = match next.take() {
                Some(stream) => stream,
                None => match self.connect().await {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "redis broker: reconnect failed");
                        if !self.pause(backoff.next_delay()).await {
                            break;
                        }
                        continue;
                    }
                },
            };
            if down {
                lock(&self.delivery.state).interrupted = None;
                tracing::info!("redis broker: delivery resumed");
                self.handler.on_delivery_resumed();
            }
            backoff.reset();
            let Some(reason) = self.pump(stream).await else {
                break;
            };
            {
                let mut s = lock(&self.delivery.state);
                s.sink = None;
                s.interrupted = Some(reason.clone());
            }
            down = true;
            tracing::warn!(%reason, "redis broker: delivery interrupted");
            self.handler.on_delivery_interrupted(&reason);
            if !self.pause(backoff.next_delay()).await {
                break;
            }
        }
        self.delivery.disconnect();
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    /// Sleeps `d`; false if the broker stopped meanwhile.
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopped(),
            _ = self.stop.changed() => false,
        }
    }

    /// Reads the connection until it fails (returns why) or the broker
    /// stops (returns `None`), probing it every `probe_interval`.
    async fn pump(&mut self, mut stream: PubSubStream) -> Option<String> {
        let probing = !self.probe_interval.is_zero();
        let every = self.probe_interval.max(Duration::from_millis(1));
        let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The probe in flight and when it must have come back.
        let mut waiting: Option<(u64, Instant)> = None;
        loop {
            let deadline = waiting.map(|(_, at)| at);
            tokio::select! {
                biased;
                _ = self.stop.changed() => return None,
                msg = stream.next() => match msg {
                    None => return Some("the PUB/SUB connection was closed".into()),
                    Some(msg) => {
                        let probe = self.dispatch(&msg);
                        if probe.is_some() && probe == waiting.map(|(t, _)| t) {
                            waiting = None;
                        }
                    }
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() =>
                {
                    return Some(format!(
                        "a probe did not come back on the PUB/SUB connection within {:?}",
                        self.io_timeout
                    ));
                }
                _ = ticks.tick(), if probing && waiting.is_none() => {
                    self.probe_token += 1;
                    waiting = Some((self.probe_token, Instant::now() + self.io_timeout));
                    self.send_probe(self.probe_token);
                }
            }
        }
    }

    /// Publishes probe `token` on the command connection, in the background
    /// (the reader must keep reading meanwhile).
    fn send_probe(&self, token: u64) {
        let mut conn = self.conn.clone();
        let channel = self.names.probe.clone();
        let limit = self.io_timeout;
        tokio::spawn(async move {
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(channel).arg(token.to_string());
            let publish = cmd.query_async::<i64>(&mut conn);
            if let Err(e) = timed(limit, publish).await {
                tracing::debug!(error = %e, "redis broker: probe publish failed");
            }
        });
    }

    /// Hands one message to the node; returns the token of a probe.
    fn dispatch(&self, msg: &Msg) -> Option<u64> {
        let name = msg.get_channel_name();
        let payload = msg.get_payload_bytes();
        if name == self.names.probe {
            return std::str::from_utf8(payload).ok()?.parse().ok();
        }
        if name == self.names.control {
            self.handler.on_control(Bytes::copy_from_slice(payload));
            return None;
        }
        let channel = self.names.channel_of(name)?;
        if !self.delivery.wants(channel) {
            return None; // unsubscribed meanwhile
        }
        match wire::decode_event(payload) {
            Ok(ChannelEvent::Publication(p, position)) => {
                self.handler.on_publication(channel, Arc::new(p), &position);
            }
            Ok(ChannelEvent::Join(info)) => self.handler.on_join(channel, &info),
            Ok(ChannelEvent::Leave(info)) => self.handler.on_leave(channel, &info),
            Err(e) => {
                tracing::warn!(channel, error = %e, "redis broker: dropped a malformed event");
            }
        }
        None
    }
}
