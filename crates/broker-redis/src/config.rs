//! Settings of a [`RedisBroker`](crate::RedisBroker).

use std::time::Duration;

use wshub_config::RedisConfig;

/// Settings of a [`RedisBroker`](crate::RedisBroker).
///
/// Build one from the gateway configuration with
/// [`RedisBrokerConfig::from_config`] or start from the defaults and use the
/// setters.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisBrokerConfig {
    /// Redis addresses (`redis://host:port[/db]`). Exactly one is supported;
    /// several (client-side sharding) are refused by
    /// [`RedisBroker::new`](crate::RedisBroker::new). Default
    /// `redis://127.0.0.1:6379`.
    pub addresses: Vec<String>,
    /// Prefix of every key and PUB/SUB channel name (default `centrifugo`).
    pub prefix: String,
    /// Database number; when not 0 it overrides the one in the address.
    pub db: u32,
    /// ACL user name; when not empty it overrides the one in the address.
    pub user: String,
    /// Password; when not empty it overrides the one in the address.
    pub password: String,
    /// Limit of one connection attempt (default 1 s).
    pub connect_timeout: Duration,
    /// Limit of every command: a call that gets no answer in this time fails
    /// with [`BrokerError::Timeout`](wshub_hub::broker::BrokerError::Timeout)
    /// (default 4 s). Also how long a delivery probe may take.
    pub io_timeout: Duration,
    /// How often the delivery path is probed with a publication to a
    /// node-private channel that must come back on the PUB/SUB connection
    /// within `io_timeout` (default 1 s). Zero disables the probe (a lost
    /// connection is still detected, a stalled server is not).
    pub probe_interval: Duration,
    /// Ceiling of the first delay before reconnecting the PUB/SUB
    /// connection (default 50 ms); it doubles per failed attempt up to
    /// `reconnect_max_delay`, and each delay is drawn uniformly below it
    /// (full jitter, [`wshub_backoff`]).
    pub reconnect_min_delay: Duration,
    /// Ceiling of the delay between reconnect attempts (default 2 s).
    pub reconnect_max_delay: Duration,
    /// Default time a stream position is kept after the last publish or
    /// history call, when the call does not say (default 720 h, as
    /// Centrifugo's `history_meta_ttl`).
    pub history_meta_ttl: Duration,
    /// Default time an idempotency key is remembered (default 5 min).
    pub idempotency_ttl: Duration,
}

impl std::fmt::Debug for RedisBrokerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBrokerConfig")
            .field("addresses", &self.addresses)
            .field("prefix", &self.prefix)
            .field("db", &self.db)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("probe_interval", &self.probe_interval)
            .field("reconnect_min_delay", &self.reconnect_min_delay)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("history_meta_ttl", &self.history_meta_ttl)
            .field("idempotency_ttl", &self.idempotency_ttl)
            .finish()
    }
}

impl Default for RedisBrokerConfig {
    fn default() -> Self {
        RedisBrokerConfig {
            addresses: vec!["redis://127.0.0.1:6379".into()],
            prefix: "centrifugo".into(),
            db: 0,
            user: String::new(),
            password: String::new(),
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(4),
            probe_interval: Duration::from_secs(1),
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_secs(2),
            history_meta_ttl: Duration::from_secs(720 * 3600),
            idempotency_ttl: Duration::from_secs(300),
        }
    }
}

impl RedisBrokerConfig {
    /// The settings of a `redis` section of the gateway configuration
    /// (addresses, prefix, db, user, password, timeouts); the rest keeps
    /// its default.
    pub fn from_config(c: &RedisConfig) -> Self {
        RedisBrokerConfig {
            addresses: c.address.clone(),
            prefix: c.prefix.clone(),
            db: c.db,
            user: c.user.clone(),
            password: c.password.clone(),
            connect_timeout: c.connect_timeout.into(),
            io_timeout: c.io_timeout.into(),
            ..RedisBrokerConfig::default()
        }
    }

    /// Sets [`RedisBrokerConfig::addresses`] to one address.
    pub fn address(mut self, v: impl Into<String>) -> Self {
        self.addresses = vec![v.into()];
        self
    }
    /// Sets [`RedisBrokerConfig::prefix`].
    pub fn prefix(mut self, v: impl Into<String>) -> Self {
        self.prefix = v.into();
        self
    }
    /// Sets [`RedisBrokerConfig::db`].
    pub fn db(mut self, v: u32) -> Self {
        self.db = v;
        self
    }
    /// Sets [`RedisBrokerConfig::user`].
    pub fn user(mut self, v: impl Into<String>) -> Self {
        self.user = v.into();
        self
    }
    /// Sets [`RedisBrokerConfig::password`].
    pub fn password(mut self, v: impl Into<String>) -> Self {
        self.password = v.into();
        self
    }
    /// Sets [`RedisBrokerConfig::connect_timeout`].
    pub fn connect_timeout(mut self, v: Duration) -> Self {
        self.connect_timeout = v;
        self
    }
    /// Sets [`RedisBrokerConfig::io_timeout`].
    pub fn io_timeout(mut self, v: Duration) -> Self {
        self.io_timeout = v;
        self
    }
    /// Sets [`RedisBrokerConfig::probe_interval`].
    pub fn probe_interval(mut self, v: Duration) -> Self {
        self.probe_interval = v;
        self
    }
    /// Sets the reconnect backoff bounds
    /// ([`RedisBrokerConfig::reconnect_min_delay`],
    /// [`RedisBrokerConfig::reconnect_max_delay`]).
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min_delay = min;
        self.reconnect_max_delay = max;
        self
    }
    /// Sets [`RedisBrokerConfig::history_meta_ttl`].
    pub fn history_meta_ttl(mut self, v: Duration) -> Self {
        self.history_meta_ttl = v;
        self
    }
    /// Sets [`RedisBrokerConfig::idempotency_ttl`].
    pub fn idempotency_ttl(mut self, v: Duration) -> Self {
        self.idempotency_ttl = v;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_config_takes_connection_settings() {
        let mut c = RedisConfig::default();
        c.address = vec!["redis://10.0.0.1:6380".into()];
        c.prefix = "app".into();
        c.db = 3;
        c.password = "secret".into();
        c.io_timeout = Duration::from_millis(700).into();
        let cfg = RedisBrokerConfig::from_config(&c);
        assert_eq!(cfg.addresses, vec!["redis://10.0.0.1:6380".to_owned()]);
        assert_eq!((cfg.prefix.as_str(), cfg.db), ("app", 3));
        assert_eq!(cfg.io_timeout, Duration::from_millis(700));
        assert_eq!(cfg.probe_interval, Duration::from_secs(1));
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("secret"), "{debug}");
    }
}
