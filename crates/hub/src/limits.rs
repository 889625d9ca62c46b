//! Limits on untrusted clients: a [`TokenBucket`] (commands per connection,
//! connects per IP and per node) and the [`IpLimiter`] table of open
//! connections and connect rates per IP.
//!
//! Time is passed in (`now: Instant`) so the arithmetic is tested without
//! sleeping. A hand-written bucket rather than `governor`: the per-IP table
//! must also count open connections and forget idle addresses (bounded
//! memory), which a keyed rate limiter alone does not do, and a
//! per-connection bucket is three numbers that need no shared state.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use wshub_hub::limits::TokenBucket;
//!
//! let t0 = Instant::now();
//! let mut b = TokenBucket::new(10, 2, t0); // 10/s, burst 2
//! assert!(b.try_take(t0) && b.try_take(t0));
//! assert!(!b.try_take(t0));
//! assert!(b.try_take(t0 + Duration::from_millis(100)));
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::metrics::ClientLimit;
use wshub_config::Config;

/// Counter of refused or disconnected clients, labeled `limit="..."`.
pub const LIMIT_EXCEEDED: &str = "wshub_client_limit_exceeded_total";
/// Counter of subscriptions ended because their token expired (2501).
pub const SUBSCRIPTIONS_EXPIRED: &str = "wshub_client_subscriptions_expired_total";

/// A token bucket: `rate` tokens per second up to `burst`; starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilled at `rate_per_sec`, holding at most `burst`
    /// (at least 1) tokens.
    pub fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate_per_sec),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now.max(self.last);
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket is full again (nothing to remember).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// Why [`IpLimiter::acquire`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// `limits.connections_per_ip` connections are open from this IP.
    ConnectionsPerIp,
    /// `limits.connect_rate_per_ip` exceeded.
    ConnectRatePerIp,
    /// `client.connection_rate_limit` (whole node) exceeded.
    ConnectionRate,
}

impl Refusal {
    /// The `limit` label of [`LIMIT_EXCEEDED`].
    pub fn limit(self) -> ClientLimit {
        match self {
            Refusal::ConnectionsPerIp => ClientLimit::ConnectionsPerIp,
            Refusal::ConnectRatePerIp => ClientLimit::ConnectRatePerIp,
            Refusal::ConnectionRate => ClientLimit::ConnectionRate,
        }
    }
}

#[derive(Debug)]
struct Entry {
    open: u32,
    bucket: Option<TokenBucket>,
}

#[derive(Debug)]
struct Table {
    ips: HashMap<IpAddr, Entry>,
    node: Option<TokenBucket>,
    sweep_at: usize,
}

/// Open connections and connect rates per IP, plus the node-wide connect
/// rate. Memory is bounded by the addresses that are connected or that
/// connected within the last `burst / rate` seconds.
#[derive(Debug)]
pub struct IpLimiter {
    per_ip: u32,
    rate: u32,
    burst: u32,
    table: Mutex<Table>,
}

/// One admitted connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct IpPermit {
    limiter: Arc<IpLimiter>,
    key: IpAddr,
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        self.limiter.release(self.key);
    }
}

/// The key an address is counted under: IPv4 (also IPv4-mapped IPv6) as
/// is, IPv6 by its /64 (one subscriber usually holds a whole /64).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

const MIN_SWEEP: usize = 1024;

/// Forgets addresses with no open connection and a full bucket.
fn sweep(t: &mut Table, now: Instant) {
    t.ips
        .retain(|_, e| e.open > 0 || e.bucket.as_mut().is_some_and(|b| !b.is_full(now)));
    t.sweep_at = (t.ips.len() * 2).max(MIN_SWEEP);
}

impl IpLimiter {
    /// A limiter with `config`'s `limits` and `client.connection_rate_limit`.
    pub fn new(config: &Config) -> Arc<Self> {
        let l = &config.limits;
        let node_rate = u32::try_from(config.client.connection_rate_limit).unwrap_or(u32::MAX);
        Arc::new(IpLimiter {
            per_ip: l.connections_per_ip,
            rate: l.connect_rate_per_ip,
            burst: l.connect_burst_per_ip,
            table: Mutex::new(Table {
                ips: HashMap::new(),
                node: (node_rate > 0)
                    .then(|| TokenBucket::new(node_rate, node_rate, Instant::now())),
                sweep_at: MIN_SWEEP,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new connection from `ip`, or says which limit refuses it.
    /// Keep the permit for as long as the connection is open.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<IpPermit, Refusal> {
        let key = ip_key(ip);
        let mut t = self.lock();
        if t.ips.len() >= t.sweep_at {
            sweep(&mut t, now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let e = t.ips.entry(key).or_insert_with(|| Entry {
            open: 0,
            bucket: (rate > 0).then(|| TokenBucket::new(rate, burst, now)),
        });
        if self.per_ip > 0 && e.open >= self.per_ip {
            return Err(Refusal::ConnectionsPerIp);
        }
        if let Some(b) = &mut e.bucket {
            if !b.try_take(now) {
                return Err(Refusal::ConnectRatePerIp);
            }
        }
        e.open += 1;
        if let Some(b) = &mut t.node {
            if !b.try_take(now) {
                if let Some(e) = t.ips.get_mut(&key) {
                    e.open -= 1;
                }
                return Err(Refusal::ConnectionRate);
            }
        }
        Ok(IpPermit {
            limiter: self.clone(),
            key,
        })
    }

    fn release(&self, key: IpAddr) {
        let now = Instant::now();
        let mut t = self.lock();
        if let Some(e) = t.ips.get_mut(&key) {
            e.open = e.open.saturating_sub(1);
            if e.open == 0 && e.bucket.as_mut().is_none_or(|b| b.is_full(now)) {
                t.ips.remove(&key);
            }
        }
    }

    /// Connections open from `ip` (counted under its [`ip_key`]).
    pub fn open(&self, ip: IpAddr) -> u32 {
        self.lock().ips.get(&ip_key(ip)).map_or(0, |e| e.open)
    }

    /// Addresses remembered.
    pub fn tracked(&self) -> usize {
        self.lock().ips.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(per_ip: u32, rate: u32, burst: u32, node: u64) -> Config {
        let mut c = Config::default();
        c.limits.connections_per_ip = per_ip;
        c.limits.connect_rate_per_ip = rate;
        c.limits.connect_burst_per_ip = burst;
        c.client.connection_rate_limit = node;
        c
    }

    #[test]
    fn bucket_refills_at_rate_up_to_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4, 3, t0);
        assert_eq!((0..5).filter(|_| b.try_take(t0)).count(), 3);
        assert!(!b.try_take(t0 + Duration::from_millis(200)));
        assert!(b.try_take(t0 + Duration::from_millis(250)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.try_take(later)).count(), 3);
        assert!(!b.is_full(later));
    }

    #[test]
    fn connections_per_ip_are_counted_until_the_permit_drops() {
        let l = IpLimiter::new(&cfg(2, 0, 0, 0));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let now = Instant::now();
        let p1 = l.acquire(a, now).unwrap();
        let _p2 = l.acquire(a, now).unwrap();
        assert_eq!(l.acquire(a, now).unwrap_err(), Refusal::ConnectionsPerIp);
        let _pb = l.acquire(b, now).unwrap();
        drop(p1);
        assert_eq!(l.open(a), 1);
        let _p3 = l.acquire(a, now).unwrap();
    }

    #[test]
    fn connect_rate_per_ip_and_per_node() {
        let l = IpLimiter::new(&cfg(0, 1, 2, 0));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        let _p = (l.acquire(a, now).unwrap(), l.acquire(a, now).unwrap());
        assert_eq!(l.acquire(a, now).unwrap_err(), Refusal::ConnectRatePerIp);
        assert!(l.acquire(a, now + Duration::from_secs(1)).is_ok());

        let l = IpLimiter::new(&cfg(0, 0, 0, 2));
        let now = Instant::now();
        let _a = l.acquire("10.0.0.1".parse().unwrap(), now).unwrap();
        let _b = l.acquire("10.0.0.2".parse().unwrap(), now).unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(l.acquire(c, now).unwrap_err(), Refusal::ConnectionRate);
        assert_eq!(l.open(c), 0, "a refused connection holds no slot");
    }

    #[test]
    fn ipv6_is_grouped_by_64_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key("2001:db8:1:3::1".parse().unwrap()));
        let m: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ip_key(m), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let l = IpLimiter::new(&cfg(10, 1, 1, 0));
        let t0 = Instant::now();
        for i in 0..3000u32 {
            drop(l.acquire(IpAddr::from(i.to_be_bytes()), t0).unwrap());
        }
        // Remembered while their buckets refill (else a reconnect loop
        // would dodge the rate limit), forgotten once full.
        assert_eq!(l.tracked(), 3000);
        sweep(&mut l.lock(), t0 + Duration::from_secs(2));
        assert_eq!(l.tracked(), 0);
        // Without a rate limit nothing is kept after the last close.
        let l = IpLimiter::new(&cfg(10, 0, 0, 0));
        drop(l.acquire("10.0.0.1".parse().unwrap(), t0).unwrap());
        assert_eq!(l.tracked(), 0);
    }
}
