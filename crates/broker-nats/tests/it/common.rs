//! Shared helpers: the conformance harness on the system server, private
//! servers, a handler that records delivery interruptions.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;
use wshub_broker_nats::{NatsBroker, NatsBrokerConfig};
use wshub_hub::broker::conformance::{Harness, Recorder};
use wshub_hub::broker::{
    new_epoch, Broker, BrokerEventHandler, ClientInfo, Publication, StreamPosition,
};

/// The NATS server every CI machine of the project runs.
pub const SYSTEM_URL: &str = "nats://127.0.0.1:4222";
const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("wshub_it_{}", new_epoch())
}

/// Deletes the buckets of `prefix` on the server at `url` (best effort,
/// bounded). Runs on its own thread and runtime so that it works from
/// `Drop` inside a test's runtime.
pub fn delete_buckets(url: &str, prefix: &str, also_stale: bool) {
    let url = url.to_owned();
    let names = NatsBrokerConfig::default().prefix(prefix).bucket_names();
    let thread = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let work = async {
                let client = async_nats::connect(url).await.ok()?;
                let js = async_nats::jetstream::new(client.clone());
                for name in &names {
                    let _ = js.delete_key_value(name).await;
                }
                if also_stale {
                    delete_stale(&js).await;
                }
                client.flush().await.ok()
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), work).await;
        });
    });
    let _ = thread.join();
}

/// Buckets of earlier test runs that died before cleaning up (older than
/// ten minutes), so that the shared server's storage does not grow.
async fn delete_stale(js: &async_nats::jetstream::Context) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut streams = js.streams();
    let mut stale = Vec::new();
    while let Some(Ok(info)) = streams.next().await {
        let name = &info.config.name;
        if name.starts_with("KV_wshub_it_") && info.created.unix_timestamp() < now - 600 {
            stale.push(name.clone());
        }
    }
    for name in stale {
        let _ = js.delete_stream(&name).await;
    }
}

/// Conformance harness: nodes on the system server under a prefix of their
/// own; the buckets are deleted when the harness is dropped.
pub struct NatsHarness {
    prefix: String,
}

impl NatsHarness {
    /// A harness with a fresh prefix.
    pub fn new() -> Self {
        NatsHarness {
            prefix: unique_prefix(),
        }
    }
}

static STALE_SWEPT: AtomicBool = AtomicBool::new(false);

impl Drop for NatsHarness {
    fn drop(&mut self) {
        let sweep = !STALE_SWEPT.swap(true, Ordering::Relaxed);
        delete_buckets(SYSTEM_URL, &self.prefix, sweep);
    }
}

#[async_trait]
impl Harness for NatsHarness {
    async fn node(&self, handler: Arc<dyn BrokerEventHandler>) -> Arc<dyn Broker> {
        let config = NatsBrokerConfig::default()
            .url(SYSTEM_URL)
            .prefix(self.prefix.clone());
        let broker = NatsBroker::new(config);
        broker.start(handler).await.expect("start the NATS broker");
        Arc::new(broker)
    }
    async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
    fn shared_backend(&self) -> bool {
        true
    }
    async fn lose_data(&self) -> bool {
        let client = async_nats::connect(SYSTEM_URL).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        for name in NatsBrokerConfig::default()
            .prefix(self.prefix.clone())
            .bucket_names()
        {
            js.delete_key_value(&name).await.expect("delete bucket");
        }
        true
    }
}

/// A handler that records events and counts delivery interruptions.
#[derive(Default)]
pub struct Watcher {
    pub rec: Arc<Recorder>,
    pub interrupted: AtomicUsize,
    pub resumed: AtomicUsize,
    pub reasons: Mutex<Vec<String>>,
}

impl Watcher {
    pub fn new() -> Arc<Self> {
        Arc::new(Watcher {
            rec: Recorder::new(),
            ..Watcher::default()
        })
    }

    /// Waits until `f` holds, polling, at most `limit`; returns the time it
    /// took.
    pub async fn wait(&self, what: &str, limit: Duration, f: impl Fn(&Self) -> bool) -> Duration {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}; interrupted {}, resumed {}, reasons {:?}",
                self.interrupted.load(Ordering::SeqCst),
                self.resumed.load(Ordering::SeqCst),
                self.reasons.lock().unwrap(),
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        start.elapsed()
    }
}

impl BrokerEventHandler for Watcher {
    fn on_publication(&self, channel: &str, p: Arc<Publication>, pos: &StreamPosition) {
        self.rec.on_publication(channel, p, pos);
    }
    fn on_join(&self, channel: &str, info: &ClientInfo) {
        self.rec.on_join(channel, info);
    }
    fn on_leave(&self, channel: &str, info: &ClientInfo) {
        self.rec.on_leave(channel, info);
    }
    fn on_control(&self, data: Bytes) {
        self.rec.on_control(data);
    }
    fn on_delivery_interrupted(&self, reason: &str) {
        self.reasons.lock().unwrap().push(reason.to_owned());
        self.interrupted.fetch_add(1, Ordering::SeqCst);
    }
    fn on_delivery_resumed(&self) {
        self.resumed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A private nats-server with JetStream, killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    dirs: Vec<PathBuf>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn fresh_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wshub-nats-it-{}", new_epoch()));
    std::fs::create_dir_all(&dir).expect("create store dir");
    dir
}

impl Server {
    /// Starts a server on a free port with an empty store.
    pub async fn start() -> Self {
        let mut s = Server {
            child: None,
            port: free_port(),
            dirs: Vec::new(),
        };
        s.restart_empty().await;
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port with a new, empty store.
    pub async fn restart_empty(&mut self) {
        assert!(self.child.is_none(), "server still running");
        let dir = fresh_dir();
        let child = Command::new(NATS_SERVER)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.dirs.push(dir);
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(c) = async_nats::connect(self.url()).await {
                if c.request("$JS.API.INFO", Bytes::new()).await.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "nats-server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Freezes the server: connections stay open, nothing is answered.
    pub fn stop(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server run again.
    pub fn cont(&self) {
        self.signal("-CONT");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
        }
        self.kill();
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
