//! Shared test helpers: the conformance harness on the system Redis, a
//! private `redis-server` process, and an event handler that also records
//! delivery interruptions.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;
use wshub_broker_redis::{RedisBroker, RedisBrokerConfig};
use wshub_hub::broker::conformance::Harness;
use wshub_hub::broker::{
    new_epoch, Broker, BrokerEventHandler, ClientInfo, Publication, StreamPosition,
};

/// The Redis server shared by the tests (never flushed: other tests use it
/// at the same time).
pub const SYSTEM_REDIS: &str = "redis://127.0.0.1:6379";

/// A prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("wshub-test-{}", new_epoch())
}

/// Deletes every key under `prefix` (SCAN + UNLINK), never anything else.
pub fn delete_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
        return;
    };
    let pattern = format!("{prefix}.*");
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, keys)) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query::<(u64, Vec<String>)>(&mut conn)
        else {
            return;
        };
        if !keys.is_empty() {
            let _ = redis::cmd("UNLINK").arg(&keys).query::<i64>(&mut conn);
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// Nodes on the system Redis under one random prefix; the prefix's keys are
/// deleted when the harness is dropped.
pub struct RedisHarness {
    prefix: String,
}

impl RedisHarness {
    pub fn new() -> Self {
        RedisHarness {
            prefix: unique_prefix(),
        }
    }
}

impl Drop for RedisHarness {
    fn drop(&mut self) {
        delete_prefix(SYSTEM_REDIS, &self.prefix);
    }
}

#[async_trait]
impl Harness for RedisHarness {
    async fn node(&self, handler: Arc<dyn BrokerEventHandler>) -> Arc<dyn Broker> {
        let cfg = RedisBrokerConfig::default()
            .address(SYSTEM_REDIS)
            .prefix(&self.prefix);
        let broker = RedisBroker::new(cfg).expect("config");
        broker
            .start(handler)
            .await
            .expect("start on the system redis");
        Arc::new(broker)
    }
    async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
    fn shared_backend(&self) -> bool {
        true
    }
    async fn lose_data(&self) -> bool {
        let prefix = self.prefix.clone();
        tokio::task::spawn_blocking(move || delete_prefix(SYSTEM_REDIS, &prefix))
            .await
            .expect("delete prefix");
        true
    }
}

/// A `redis-server` of our own on a free port, without persistence;
/// killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = RedisServer { child: None, port };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    fn spawn(&mut self) {
        let child = Command::new("/usr/bin/redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--dir", "/tmp"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn /usr/bin/redis-server");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("url");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let ready = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ready.is_ok() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on port {} did not come up",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: the server and all its data are gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh (empty) server on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.pid()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig}");
    }

    /// SIGSTOP: the server keeps its connections open and answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped process.
        self.kill();
    }
}

/// What a [`Watcher`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Publication(String, Arc<Publication>, StreamPosition),
    Interrupted(String),
    Resumed,
    Other,
}

/// A handler that records publications and delivery interruptions.
#[derive(Default)]
pub struct Watcher {
    seen: Mutex<Vec<(Instant, Seen)>>,
    changed: Notify,
}

impl Watcher {
    pub fn new() -> Arc<Self> {
        Arc::new(Watcher::default())
    }

    fn push(&self, s: Seen) {
        self.seen.lock().unwrap().push((Instant::now(), s));
        self.changed.notify_waiters();
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// When the first interruption was reported.
    pub fn interrupted_at(&self) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|(_, s)| matches!(s, Seen::Interrupted(_)))
            .map(|(at, _)| *at)
    }

    pub fn interruptions(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| matches!(s, Seen::Interrupted(_)))
            .count()
    }

    pub fn resumptions(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| matches!(s, Seen::Resumed))
            .count()
    }

    /// Data of the publications received in `channel`, in order.
    pub fn data(&self, channel: &str) -> Vec<Bytes> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Publication(c, p, _) if c == channel => Some(p.data.clone()),
                _ => None,
            })
            .collect()
    }

    /// Waits up to `limit` for `done`; returns how long it took, panics on
    /// timeout.
    pub async fn wait(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Watcher) -> bool,
    ) -> Duration {
        let start = Instant::now();
        let deadline = start + limit;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done(self) {
                return start.elapsed();
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!(
                    "timed out after {limit:?} waiting for {what}; seen: {:?}",
                    self.seen()
                );
            }
        }
    }
}

impl BrokerEventHandler for Watcher {
    fn on_publication(&self, channel: &str, p: Arc<Publication>, pos: &StreamPosition) {
        self.push(Seen::Publication(channel.to_owned(), p, pos.clone()));
    }
    fn on_join(&self, _: &str, _: &ClientInfo) {
        self.push(Seen::Other);
    }
    fn on_leave(&self, _: &str, _: &ClientInfo) {
        self.push(Seen::Other);
    }
    fn on_control(&self, _: Bytes) {
        self.push(Seen::Other);
    }
    fn on_delivery_interrupted(&self, reason: &str) {
        self.push(Seen::Interrupted(reason.to_owned()));
    }
    fn on_delivery_resumed(&self) {
        self.push(Seen::Resumed);
    }
}
