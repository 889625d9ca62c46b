//! [`RedisBroker`]: the [`Broker`] methods over the command connection and
//! the scripts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, Value};
use tokio::sync::watch;
use wshub_hub::broker::wire::{self, ChannelEvent};
use wshub_hub::broker::{
    new_epoch, Broker, BrokerError, BrokerEventHandler, ClientInfo, HistoryFilter, HistoryOptions,
    HistoryResult, NodeInfo, Presence, PresenceStats, Publication, PublishOptions, StreamPosition,
};

use crate::config::RedisBrokerConfig;
use crate::delivery::{timed, Delivery, Task};
use crate::names::Names;
use crate::scripts::Scripts;

/// A [`Broker`] on one Redis server (see the [crate docs](crate)).
///
/// Cloning gives another handle to the same broker; the background task
/// stops when the last handle is dropped or on [`Broker::close`].
#[derive(Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: RedisBrokerConfig,
    client: redis::Client,
    node_id: String,
    names: Arc<Names>,
    scripts: Scripts,
    conn: OnceLock<ConnectionManager>,
    handler: OnceLock<Arc<dyn BrokerEventHandler>>,
    starting: AtomicBool,
    closed: AtomicBool,
    delivery: Arc<Delivery>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("config", &self.inner.cfg)
            .field("node_id", &self.inner.node_id)
            .field("started", &self.inner.handler.get().is_some())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .field("interrupted", &self.inner.delivery.interrupted())
            .finish()
    }
}

fn invalid(msg: impl Into<String>) -> BrokerError {
    BrokerError::InvalidOptions(msg.into())
}

fn malformed(what: &str) -> BrokerError {
    BrokerError::Backend(format!("malformed {what} from redis").into())
}

/// Longest TTL sent to Redis (about 35,000 years): fits `PEXPIRE` and is
/// exact as a Lua number.
const MAX_MS: u64 = 1 << 50;

/// Whole milliseconds, at least 1 (a TTL of 0 would delete the key), at
/// most [`MAX_MS`].
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(MAX_MS)
        .clamp(1, MAX_MS)
}

/// A size or count as Redis takes it (a signed 64-bit integer), capped far
/// above anything real.
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(MAX_MS).min(MAX_MS)
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn require_ttl(ttl: Duration, what: &str) -> Result<(), BrokerError> {
    if ttl.is_zero() {
        return Err(invalid(format!("{what} must not be zero")));
    }
    Ok(())
}

/// Parses the `"<offset> <epoch>"` a publish script returns.
fn parse_position(s: &str) -> Result<StreamPosition, BrokerError> {
    let (offset, epoch) = s.split_once(' ').ok_or_else(|| malformed("position"))?;
    let offset = offset.parse().map_err(|_| malformed("position"))?;
    Ok(StreamPosition::new(offset, epoch))
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// `{member, value, ...}` from a lease listing.
fn pairs(v: Vec<Value>) -> Result<Vec<(String, Vec<u8>)>, BrokerError> {
    if !v.len().is_multiple_of(2) {
        return Err(malformed("lease list"));
    }
    let mut out = Vec::with_capacity(v.len() / 2);
    let mut it = v.into_iter();
    while let (Some(k), Some(val)) = (it.next(), it.next()) {
        let k = as_bytes(&k)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| malformed("lease member"))?
            .to_owned();
        let val = as_bytes(&val)
            .ok_or_else(|| malformed("lease value"))?
            .to_vec();
        out.push((k, val));
    }
    Ok(out)
}

impl RedisBroker {
    /// A broker with `cfg`; nothing is connected until [`Broker::start`].
    ///
    /// Fails with [`BrokerError::InvalidOptions`] on an address that does
    /// not parse, on more than one address (sharding is not supported), or
    /// on zero timeouts.
    pub fn new(cfg: RedisBrokerConfig) -> Result<RedisBroker, BrokerError> {
        let address = match cfg.addresses.as_slice() {
            [one] => one.as_str(),
            [] => return Err(invalid("no redis address")),
            _ => {
                return Err(invalid(
                    "several redis addresses (client-side sharding) are not supported",
                ))
            }
        };
        require_ttl(cfg.io_timeout, "redis io_timeout")?;
        require_ttl(cfg.connect_timeout, "redis connect_timeout")?;
        require_ttl(cfg.history_meta_ttl, "history_meta_ttl")?;
        require_ttl(cfg.idempotency_ttl, "idempotency_ttl")?;
        let info = address
            .into_connection_info()
            .map_err(|e| invalid(format!("redis address {address:?}: {e}")))?;
        let mut settings = info.redis_settings().clone();
        if cfg.db != 0 {
            settings = settings.set_db(i64::from(cfg.db));
        }
        if !cfg.user.is_empty() {
            settings = settings.set_username(&cfg.user);
        }
        if !cfg.password.is_empty() {
            settings = settings.set_password(&cfg.password);
        }
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| invalid(format!("redis address {address:?}: {e}")))?;
        let node_id = new_epoch();
        let (stop, _) = watch::channel(false);
        Ok(RedisBroker {
            inner: Arc::new(Inner {
                names: Arc::new(Names::new(&cfg.prefix, &node_id)),
                node_id,
                client,
                scripts: Scripts::new(),
                conn: OnceLock::new(),
                handler: OnceLock::new(),
                starting: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                delivery: Arc::new(Delivery::default()),
                stop,
                cfg,
            }),
        })
    }

    /// This broker's random id (names its probe channel).
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The command connection, if the broker is started and not closed.
    fn conn(&self) -> Result<ConnectionManager, BrokerError> {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        if inner.handler.get().is_none() {
            return Err(BrokerError::NotStarted);
        }
        inner.conn.get().cloned().ok_or(BrokerError::NotStarted)
    }

    fn io_timeout(&self) -> Duration {
        self.inner.cfg.io_timeout
    }

    async fn start_inner(&self, handler: Arc<dyn BrokerEventHandler>) -> Result<(), BrokerError> {
        let inner = &*self.inner;
        let cfg = &inner.cfg;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_response_timeout(Some(cfg.io_timeout))
            .set_number_of_retries(2)
            .set_min_delay(cfg.reconnect_min_delay)
            .set_max_delay(cfg.reconnect_max_delay);
        let conn = timed(
            cfg.connect_timeout + cfg.io_timeout,
            ConnectionManager::new_with_config(inner.client.clone(), manager),
        )
        .await?;
        let task = Task {
            client: inner.client.clone(),
            conn: conn.clone(),
            delivery: inner.delivery.clone(),
            handler: handler.clone(),
            names: inner.names.clone(),
            connect_timeout: cfg.connect_timeout,
            io_timeout: cfg.io_timeout,
            probe_interval: cfg.probe_interval,
            min_delay: cfg.reconnect_min_delay,
            max_delay: cfg.reconnect_max_delay,
            stop: inner.stop.subscribe(),
            probe_token: 0,
        };
        let stream = task
            .connect()
            .await
            .map_err(|e| BrokerError::Backend(e.into()))?;
        // Only one start gets here (`starting`).
        let _ = inner.conn.set(conn);
        let _ = inner.handler.set(handler);
        tokio::spawn(task.run(stream));
        Ok(())
    }

    async fn publish_raw(&self, channel: String, payload: Vec<u8>) -> Result<(), BrokerError> {
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        let publish = cmd.query_async::<i64>(&mut conn);
        timed(self.io_timeout(), publish).await.map(|_| ())
    }
}

#[async_trait]
impl Broker for RedisBroker {
    fn name(&self) -> &str {
        "redis"
    }

    /// Connects the command and PUB/SUB connections (failing if Redis
    /// cannot be reached within `connect_timeout + io_timeout`) and starts
    /// the delivery task.
    async fn start(&self, handler: Arc<dyn BrokerEventHandler>) -> Result<(), BrokerError> {
        let inner = &*self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        if inner.starting.swap(true, Ordering::AcqRel) {
            return Err(BrokerError::AlreadyStarted);
        }
        let result = self.start_inner(handler).await;
        if result.is_err() {
            inner.starting.store(false, Ordering::Release);
        }
        result
    }

    async fn close(&self) -> Result<(), BrokerError> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.stop.send_replace(true);
        self.inner.delivery.disconnect();
        Ok(())
    }

    /// Err while delivery is interrupted; otherwise a PING on the command
    /// connection, bounded by `io_timeout`.
    async fn health(&self) -> Result<(), BrokerError> {
        let mut conn = self.conn()?;
        if let Some(reason) = self.inner.delivery.interrupted() {
            return Err(BrokerError::Backend(
                format!("redis delivery interrupted: {reason}").into(),
            ));
        }
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        timed(self.io_timeout(), ping).await.map(|_| ())
    }

    /// Cancel safety: the script runs atomically on the server, so a
    /// dropped call either published or did not (it may have published
    /// without the caller learning the position).
    async fn publish(
        &self,
        channel: &str,
        mut publication: Publication,
        opts: PublishOptions,
    ) -> Result<StreamPosition, BrokerError> {
        let mut conn = self.conn()?;
        opts.validate()?;
        let cfg = &self.inner.cfg;
        let names = &self.inner.names;
        if publication.time == 0 {
            publication.time = unix_millis();
        }
        publication.offset = 0;
        let keeps = opts.keeps_history();
        let zero = StreamPosition::default();
        if !keeps && opts.idempotency_key.is_none() {
            let event = wire::encode_event(&ChannelEvent::Publication(publication, zero.clone()));
            self.publish_raw(names.pubsub(channel), event).await?;
            return Ok(zero);
        }
        // With history the script appends the offset and epoch to the
        // encoded publication; without, it publishes the event as is.
        let payload = if keeps {
            wire::encode_publication(&publication, &zero)
        } else {
            wire::encode_event(&ChannelEvent::Publication(publication, zero))
        };
        let idempotency_ttl = match &opts.idempotency_key {
            Some(_) => ms(opts.idempotency_ttl.unwrap_or(cfg.idempotency_ttl)),
            None => 0,
        };
        let meta_ttl = opts.history_meta_ttl.unwrap_or(cfg.history_meta_ttl);
        let mut call = self.inner.scripts.publish.prepare_invoke();
        call.key(names.stream(channel))
            .key(names.meta(channel))
            .key(names.idempotency(channel, opts.idempotency_key.as_deref().unwrap_or_default()))
            .arg(names.pubsub(channel))
            .arg(payload)
            .arg(if keeps { count(opts.history_size) } else { 0 })
            .arg(ms(opts.history_ttl))
            .arg(ms(meta_ttl))
            .arg(new_epoch())
            .arg(idempotency_ttl);
        let position: String = timed(self.io_timeout(), call.invoke_async(&mut conn)).await?;
        parse_position(&position)
    }

    async fn publish_join(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let event = wire::encode_event(&ChannelEvent::Join(info));
        self.publish_raw(self.inner.names.pubsub(channel), event)
            .await
    }

    async fn publish_leave(&self, channel: &str, info: ClientInfo) -> Result<(), BrokerError> {
        let event = wire::encode_event(&ChannelEvent::Leave(info));
        self.publish_raw(self.inner.names.pubsub(channel), event)
            .await
    }

    async fn publish_control(&self, data: Bytes) -> Result<(), BrokerError> {
        self.publish_raw(self.inner.names.control.clone(), data.to_vec())
            .await
    }

    /// Returns once Redis confirmed the subscription. Fails while delivery
    /// is interrupted (the channel is then not kept).
    ///
    /// Cancel safety: the channel is added and the `SUBSCRIBE` sent in the
    /// first poll; dropped after that, the subscription stands (as if the
    /// call had completed), before it nothing happened.
    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.conn()?;
        let inner = &*self.inner;
        inner
            .delivery
            .subscribe(&inner.names, channel, inner.cfg.io_timeout)
            .await
    }

    /// Nothing of `channel` is delivered once this is called, even if the
    /// `UNSUBSCRIBE` itself fails (the error is still returned).
    ///
    /// Cancel safety: as [`Broker::subscribe`].
    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.conn()?;
        let inner = &*self.inner;
        inner
            .delivery
            .unsubscribe(&inner.names, channel, inner.cfg.io_timeout)
            .await
    }

    async fn history(
        &self,
        channel: &str,
        filter: HistoryFilter,
        opts: HistoryOptions,
    ) -> Result<HistoryResult, BrokerError> {
        let mut conn = self.conn()?;
        let meta_ttl = opts.meta_ttl.unwrap_or(self.inner.cfg.history_meta_ttl);
        require_ttl(meta_ttl, "meta_ttl")?;
        let names = &self.inner.names;
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(count(l)).unwrap_or(i64::MAX));
        let mut call = self.inner.scripts.history.prepare_invoke();
        call.key(names.stream(channel))
            .key(names.meta(channel))
            .arg(ms(meta_ttl))
            .arg(new_epoch())
            .arg(
                filter
                    .since
                    .as_ref()
                    .map_or_else(String::new, |s| s.offset.to_string()),
            )
            .arg(limit)
            .arg(if filter.reverse { "1" } else { "0" })
            .arg(count(opts.size))
            .arg(if opts.ttl.is_zero() { 0 } else { ms(opts.ttl) });
        let values: Vec<Value> = timed(self.io_timeout(), call.invoke_async(&mut conn)).await?;
        let mut it = values.into_iter();
        let top = it
            .next()
            .as_ref()
            .and_then(as_u64)
            .ok_or_else(|| malformed("history offset"))?;
        let epoch = it
            .next()
            .as_ref()
            .and_then(|v| as_bytes(v).map(|b| String::from_utf8_lossy(b).into_owned()))
            .ok_or_else(|| malformed("history epoch"))?;
        let publications = it
            .map(|v| {
                let bytes = as_bytes(&v).ok_or_else(|| malformed("history entry"))?;
                wire::decode_publication(bytes).map(|(p, _)| Arc::new(p))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HistoryResult {
            publications,
            position: StreamPosition::new(top, epoch),
        })
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        let mut conn = self.conn()?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.inner.names.stream(channel));
        let del = cmd.query_async::<i64>(&mut conn);
        timed(self.io_timeout(), del).await.map(|_| ())
    }

    async fn add_presence(
        &self,
        channel: &str,
        client_id: &str,
        info: ClientInfo,
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let mut conn = self.conn()?;
        require_ttl(ttl, "presence ttl")?;
        let mut call = self.inner.scripts.lease_add.prepare_invoke();
        call.key(&self.inner.names.presence(channel)[..])
            .arg(client_id)
            .arg(wire::encode_client_info(&info))
            .arg(ms(ttl))
            .arg(&info.user);
        timed(self.io_timeout(), call.invoke_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    async fn remove_presence(&self, channel: &str, client_id: &str) -> Result<(), BrokerError> {
        let mut conn = self.conn()?;
        let mut call = self.inner.scripts.lease_remove.prepare_invoke();
        call.key(&self.inner.names.presence(channel)[..])
            .arg(client_id);
        timed(self.io_timeout(), call.invoke_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    async fn presence(&self, channel: &str) -> Result<Presence, BrokerError> {
        let mut conn = self.conn()?;
        let mut call = self.inner.scripts.lease_list.prepare_invoke();
        call.key(&self.inner.names.presence(channel)[..]);
        let values: Vec<Value> = timed(self.io_timeout(), call.invoke_async(&mut conn)).await?;
        pairs(values)?
            .into_iter()
            .map(|(client, info)| Ok((client, wire::decode_client_info(&info)?)))
            .collect()
    }

    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError> {
        let mut conn = self.conn()?;
        let mut call = self.inner.scripts.lease_stats.prepare_invoke();
        call.key(&self.inner.names.presence(channel)[..]);
        let (num_clients, num_users): (usize, usize) =
            timed(self.io_timeout(), call.invoke_async(&mut conn)).await?;
        Ok(PresenceStats {
            num_clients,
            num_users,
        })
    }

    async fn register_node(&self, info: NodeInfo, ttl: Duration) -> Result<(), BrokerError> {
        let mut conn = self.conn()?;
        require_ttl(ttl, "node ttl")?;
        let mut call = self.inner.scripts.lease_add.prepare_invoke();
        call.key(&self.inner.names.nodes()[..])
            .arg(&info.id)
            .arg(wire::encode_node_info(&info))
            .arg(ms(ttl));
        timed(self.io_timeout(), call.invoke_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    async fn unregister_node(&self, node_id: &str) -> Result<(), BrokerError> {
        let mut conn = self.conn()?;
        let mut call = self.inner.scripts.lease_remove.prepare_invoke();
        call.key(&self.inner.names.nodes()[..]).arg(node_id);
        timed(self.io_timeout(), call.invoke_async::<i64>(&mut conn))
            .await
            .map(|_| ())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError> {
        let mut conn = self.conn()?;
        let mut call = self.inner.scripts.lease_list.prepare_invoke();
        call.key(&self.inner.names.nodes()[..]);
        let values: Vec<Value> = timed(self.io_timeout(), call.invoke_async(&mut conn)).await?;
        let mut list = pairs(values)?
            .into_iter()
            .map(|(_, info)| wire::decode_node_info(&info))
            .collect::<Result<Vec<_>, _>>()?;
        list.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse() {
        assert_eq!(parse_position("0 ").unwrap(), StreamPosition::default());
        assert_eq!(
            parse_position("42 abc").unwrap(),
            StreamPosition::new(42, "abc")
        );
        assert!(parse_position("x y").is_err());
        assert!(parse_position("12").is_err());
    }

    #[test]
    fn new_refuses_what_it_cannot_serve() {
        let two = RedisBrokerConfig::default().address("redis://a:1");
        let mut two = two;
        two.addresses.push("redis://b:2".into());
        assert!(matches!(
            RedisBroker::new(two),
            Err(BrokerError::InvalidOptions(_))
        ));
        let bad = RedisBrokerConfig::default().address("http://nope");
        assert!(matches!(
            RedisBroker::new(bad),
            Err(BrokerError::InvalidOptions(_))
        ));
        let zero = RedisBrokerConfig::default().io_timeout(Duration::ZERO);
        assert!(matches!(
            RedisBroker::new(zero),
            Err(BrokerError::InvalidOptions(_))
        ));
        assert!(RedisBroker::new(RedisBrokerConfig::default()).is_ok());
    }

    #[tokio::test]
    async fn calls_before_start_are_refused() {
        let b = RedisBroker::new(RedisBrokerConfig::default()).unwrap();
        assert!(matches!(b.health().await, Err(BrokerError::NotStarted)));
        assert!(matches!(
            b.subscribe("ch").await,
            Err(BrokerError::NotStarted)
        ));
        b.close().await.unwrap();
        assert!(matches!(b.health().await, Err(BrokerError::Closed)));
    }
}
