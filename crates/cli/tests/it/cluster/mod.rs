//! Several `wshub serve` nodes sharing a broker on one machine: a private
//! Redis or NATS server per test (so a test may kill, pause and restart
//! it), nodes as real processes, nginx (Debian's package) in front of them
//! with the shipped example configuration `deploy/nginx/wshub.conf`, and
//! clients (`wshub-client`) that record everything they see.
//!
//! Every process is killed when its guard drops; every wait is bounded.

mod api;
mod emulation;
mod failures;
mod multi_node;
mod pusher;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wshub_client::{Client, ClientConfig, ClientEvent, SubscriptionConfig, SubscriptionEvent};

use crate::support::{http_response, repo_root, wshub, Proc, STARTUP};

/// HMAC secret of the connection tokens.
pub const SECRET: &str = "cluster-secret";
/// The namespace the tests use: history, recovery, presence, join/leave.
pub const NS: &str = "room";

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A new empty directory under the system temp dir.
pub fn temp_dir(what: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "wshub-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Sends `sig` (`STOP`, `CONT`, `KILL`) to a process.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Waits until `addr` accepts TCP connections.
fn wait_listening(what: &str, addr: &str) {
    let deadline = Instant::now() + STARTUP;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} does not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The shared backend of a cluster.
pub enum Backend {
    /// A private `redis-server` without persistence.
    Redis { proc: Option<Proc>, port: u16 },
    /// A private `nats-server` with JetStream storage in `store`.
    Nats {
        proc: Option<Proc>,
        port: u16,
        store: PathBuf,
    },
}

impl Backend {
    pub fn redis() -> Backend {
        let port = free_port();
        let mut b = Backend::Redis { proc: None, port };
        b.start();
        b
    }

    pub fn nats() -> Backend {
        let port = free_port();
        let mut b = Backend::Nats {
            proc: None,
            port,
            store: temp_dir("nats-store"),
        };
        b.start();
        b
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Redis { .. } => "redis",
            Backend::Nats { .. } => "nats",
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Backend::Redis { port, .. } | Backend::Nats { port, .. } => *port,
        }
    }

    /// Starts the server (again) on its port; a restarted Redis is empty, a
    /// restarted NATS keeps its JetStream store.
    pub fn start(&mut self) {
        match self {
            Backend::Redis { proc, port } => {
                let mut cmd = Command::new("redis-server");
                cmd.args(["--bind", "127.0.0.1", "--port"])
                    .arg(port.to_string())
                    .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"]);
                let mut p = Proc::spawn("redis-server", cmd);
                p.wait_for_line("the ready line", STARTUP, |l| {
                    l.contains("Ready to accept connections")
                });
                *proc = Some(p);
            }
            Backend::Nats { proc, port, store } => {
                let mut cmd = Command::new("nats-server");
                cmd.args(["-a", "127.0.0.1", "-p"])
                    .arg(port.to_string())
                    .args(["-js", "-sd"])
                    .arg(&*store);
                let p = Proc::spawn("nats-server", cmd);
                wait_listening("nats-server", &format!("127.0.0.1:{port}"));
                *proc = Some(p);
            }
        }
    }

    fn proc(&self) -> &Proc {
        match self {
            Backend::Redis { proc, .. } | Backend::Nats { proc, .. } => {
                proc.as_ref().expect("backend running")
            }
        }
    }

    /// kill -9, as a crash would.
    pub fn kill(&mut self) {
        signal(self.proc().pid(), "KILL");
        match self {
            Backend::Redis { proc, .. } | Backend::Nats { proc, .. } => {
                if let Some(p) = proc.take() {
                    p.wait(Duration::from_secs(5));
                }
            }
        }
    }

    /// Freezes the server: connections stay open, nothing is answered.
    pub fn pause(&self) {
        signal(self.proc().pid(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.proc().pid(), "CONT");
    }

    /// The `engine`/`broker` part of a node configuration, with a key or
    /// subject prefix unique to this test.
    fn config(&self, prefix: &str) -> Value {
        match self {
            Backend::Redis { port, .. } => json!({
                "engine": { "type": "redis", "redis": {
                    "address": format!("redis://127.0.0.1:{port}"),
                    "prefix": prefix,
                    "io_timeout": "1s",
                }}
            }),
            Backend::Nats { port, .. } => json!({
                "broker": { "enabled": true, "type": "nats", "nats": {
                    "url": format!("nats://127.0.0.1:{port}"),
                    "prefix": prefix,
                }}
            }),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::Nats { store, .. } = self {
            let store = store.clone();
            // The process guard is dropped after this; remove the store then.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                let _ = std::fs::remove_dir_all(store);
            });
        }
    }
}

/// One `wshub serve` node.
pub struct Node {
    pub proc: Option<Proc>,
    pub addr: SocketAddr,
}

impl Node {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    pub fn kill(&mut self) {
        if let Some(p) = self.proc.take() {
            signal(p.pid(), "KILL");
            p.wait(Duration::from_secs(5));
        }
    }
}

/// A cluster: the backend and `n` nodes configured for it.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub backend: Backend,
}

/// The node configuration (Centrifugo v6 format).
fn node_config(backend: &Backend, prefix: &str) -> Value {
    let mut c = json!({
        "client": {
            "token": { "hmac_secret_key": SECRET },
            "allow_anonymous_connect_without_token": true,
            "allowed_origins": ["*"],
        },
        "http_api": { "insecure": true },
        "health": { "enabled": true },
        "prometheus": { "enabled": true },
        "channel": {
            "namespaces": [{
                "name": NS,
                "presence": true,
                "join_leave": true,
                "force_push_join_leave": true,
                "history_size": 1000,
                "history_ttl": "300s",
                "force_recovery": true,
                "allow_subscribe_for_client": true,
                "allow_subscribe_for_anonymous": true,
                "allow_publish_for_client": true,
                "allow_publish_for_anonymous": true,
                "allow_presence_for_subscriber": true,
                "allow_history_for_subscriber": true,
            }]
        },
        "limits": { "connections_per_ip": 0, "connect_rate_per_ip": 0, "commands_per_second": 0 },
        "shutdown": { "timeout": "1s" },
    });
    let b = backend.config(prefix);
    for (k, v) in b.as_object().expect("object") {
        c[k] = v.clone();
    }
    c
}

impl Cluster {
    /// Starts `n` nodes on `backend`.
    pub fn start(backend: Backend, n: usize) -> Cluster {
        Cluster::start_with(backend, n, json!({}))
    }

    /// Starts `n` nodes on `backend` with `extra` merged into the node
    /// configuration (section by section: `{"http_api": {...}}` adds keys to
    /// the section).
    pub fn start_with(backend: Backend, n: usize, extra: Value) -> Cluster {
        let prefix = format!("wshubtest{}x{}", std::process::id(), free_port());
        let mut config = node_config(&backend, &prefix);
        for (section, v) in extra.as_object().expect("object") {
            match (config.get_mut(section), v.as_object()) {
                (Some(Value::Object(have)), Some(add)) => {
                    have.extend(add.iter().map(|(k, v)| (k.clone(), v.clone())))
                }
                _ => config[section] = v.clone(),
            }
        }
        let config = config.to_string();
        let dir = temp_dir("cluster-config");
        let path = dir.join("node.json");
        std::fs::write(&path, &config).expect("write config");
        let mut nodes = Vec::new();
        for i in 0..n {
            let mut cmd = wshub();
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
                .arg(&path)
                .env(
                    "RUST_LOG",
                    "wshub_hub=info,wshub_broker_redis=info,wshub_broker_nats=info",
                );
            let mut p = Proc::spawn(&format!("node {i} ({})", backend.name()), cmd);
            let addr = p.listening_addr();
            nodes.push(Node {
                proc: Some(p),
                addr,
            });
        }
        let _ = std::fs::remove_dir_all(dir);
        Cluster { nodes, backend }
    }

    /// Diagnostics of every node, for failure messages.
    pub fn diagnostics(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| n.proc.as_ref().map(Proc::diagnostics))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A blocking HTTP/1.1 request; returns (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(http_response(&out))
}

/// The value of the unlabeled metric `name` in the node's `/metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, m) = http(addr, "GET", "/metrics", "").expect("metrics");
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in metrics"))
}

/// Calls the server API of the node at `addr`; panics unless it answers
/// 200 with a JSON result.
pub fn api(addr: SocketAddr, method: &str, body: Value) -> Value {
    let (status, text) = http(addr, "POST", &format!("/api/{method}"), &body.to_string())
        .unwrap_or_else(|e| panic!("api {method} on {addr}: {e}"));
    assert_eq!(status, 200, "api {method} on {addr}: {text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert!(v.get("error").is_none(), "api {method} on {addr}: {v}");
    v
}

/// Publishes `{"seq": seq}` through the API at `addr`; the position on
/// success, `None` on any failure (not acknowledged).
pub fn try_publish(addr: SocketAddr, channel: &str, seq: u64) -> Option<(u64, String)> {
    let body = json!({ "channel": channel, "data": { "seq": seq } }).to_string();
    let (status, text) = http(addr, "POST", "/api/publish", &body).ok()?;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&text).ok()?;
    if v.get("error").is_some() {
        return None;
    }
    Some((
        v["result"]["offset"].as_u64()?,
        v["result"]["epoch"].as_str()?.to_owned(),
    ))
}

/// Waits until `f` holds, polling; panics with `what` after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A connection token for `user`.
pub fn token(user: &str) -> String {
    wshub_hub::auth::generate_connection_token(SECRET, user, None, None, &[]).expect("token")
}

/// What a recording subscriber saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// `seq` values in arrival order.
    pub seqs: Vec<u64>,
    /// When each `Unrecovered` event came (the explicit "you lost some").
    pub unrecovered: Vec<Instant>,
    /// `(was_recovering, recovered)` of every `Subscribed` event.
    pub subscribed: Vec<(bool, bool)>,
    /// Unsubscribe/resubscribe codes seen (`Subscribing`).
    pub resubscribe_codes: Vec<u32>,
    /// Client connects seen.
    pub connects: usize,
    /// Final disconnects.
    pub disconnected: Vec<u32>,
}

/// A client with one subscription that records what it sees.
pub struct Recorder {
    pub client: Client,
    pub seen: Arc<Mutex<Seen>>,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Recorder {
    /// Connects to `url` as `user` and subscribes to `channel` (recoverable).
    pub async fn start(url: &str, user: &str, channel: &str) -> Recorder {
        let cfg = ClientConfig::default()
            .token(token(user))
            .min_reconnect_delay(Duration::from_millis(100))
            .max_reconnect_delay(Duration::from_millis(500))
            .timeout(Duration::from_secs(3));
        let (client, mut events) = Client::new(url, cfg);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (sub, mut sub_events) = client
            .new_subscription(channel, SubscriptionConfig::default().recoverable(true))
            .expect("subscription");
        client.connect().expect("connect");
        sub.subscribe().expect("subscribe");
        let s = seen.clone();
        let t1 = tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                let mut s = s.lock().unwrap();
                match e {
                    ClientEvent::Connected { .. } => s.connects += 1,
                    ClientEvent::Disconnected { code, .. } => s.disconnected.push(code),
                    _ => {}
                }
            }
        });
        let s = seen.clone();
        let t2 = tokio::spawn(async move {
            while let Some(e) = sub_events.recv().await {
                let mut s = s.lock().unwrap();
                match e {
                    SubscriptionEvent::Publication(p) => {
                        let v: Value = serde_json::from_slice(&p.data).unwrap_or(Value::Null);
                        if let Some(n) = v["seq"].as_u64() {
                            s.seqs.push(n);
                        }
                    }
                    SubscriptionEvent::Subscribed {
                        was_recovering,
                        recovered,
                        ..
                    } => s.subscribed.push((was_recovering, recovered)),
                    SubscriptionEvent::Subscribing { code, .. } => s.resubscribe_codes.push(code),
                    SubscriptionEvent::Unrecovered { .. } => s.unrecovered.push(Instant::now()),
                    _ => {}
                }
            }
        });
        let r = Recorder {
            client,
            seen,
            _tasks: vec![t1, t2],
        };
        let s = r.seen.clone();
        eventually("subscribed", Duration::from_secs(10), || {
            !s.lock().unwrap().subscribed.is_empty()
        })
        .await;
        r
    }

    pub fn seqs(&self) -> Vec<u64> {
        self.seen.lock().unwrap().seqs.clone()
    }
}

/// Publications acknowledged by the API: seq → when the publish call
/// returned.
pub type Acked = BTreeMap<u64, Instant>;

/// The rule of the failure tests: a subscriber never misses a publication
/// silently. Every acknowledged publication was received, or the
/// subscriber was told it lost publications (`Unrecovered`) after that
/// publication was made. Nothing is delivered twice.
pub fn check_no_silent_loss(seen: &Seen, acked: &Acked) -> Result<(), String> {
    let mut dup = BTreeSet::new();
    let mut got = BTreeSet::new();
    for s in &seen.seqs {
        if !got.insert(*s) {
            dup.insert(*s);
        }
    }
    if !dup.is_empty() {
        return Err(format!("delivered twice: {dup:?}"));
    }
    let last_told = seen.unrecovered.last().copied();
    let silent: Vec<u64> = acked
        .iter()
        .filter(|(seq, at)| !got.contains(seq) && last_told.is_none_or(|t| **at > t))
        .map(|(seq, _)| *seq)
        .collect();
    if silent.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} acknowledged publications neither received nor reported lost: {:?}\n{seen:?}",
            silent.len(),
            &silent[..silent.len().min(20)]
        ))
    }
}

/// The nginx front: `deploy/nginx/wshub.conf` with its upstream pointed at
/// the nodes and its listen port at a free one.
pub struct Nginx {
    _proc: Proc,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    pub fn start(nodes: &[Node]) -> Nginx {
        let example = std::fs::read_to_string(repo_root().join("deploy/nginx/wshub.conf"))
            .expect("deploy/nginx/wshub.conf");
        let port = free_port();
        let example = example.replace("listen 8000;", &format!("listen 127.0.0.1:{port};"));
        // Line by line: node N takes the line of `127.0.0.1:800N`; the
        // lines of nodes that do not exist go (nginx would try them).
        let mut conf = String::new();
        let mut placed = 0;
        for line in example.lines() {
            match (1..=9).find(|k| line.contains(&format!("127.0.0.1:800{k}"))) {
                Some(k) => {
                    if let Some(n) = nodes.get(k - 1) {
                        conf.push_str(
                            &line.replace(&format!("127.0.0.1:800{k}"), &n.addr.to_string()),
                        );
                        conf.push('\n');
                        placed += 1;
                    }
                }
                None => {
                    conf.push_str(line);
                    conf.push('\n');
                }
            }
        }
        assert_eq!(
            placed,
            nodes.len(),
            "not every node has a server line in the example"
        );
        let dir = temp_dir("nginx");
        std::fs::write(dir.join("wshub.conf"), conf).expect("write");
        let d = dir.display();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/wshub.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).expect("write");
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| Command::new(p).arg("-v").output().is_ok())
            .expect("nginx is not installed (apt-get install nginx-light)");
        // One process (no master/worker split): when the guard kills it,
        // no orphaned worker keeps the port.
        let mut cmd = Command::new(nginx);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"));
        let p = Proc::spawn("nginx", cmd);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_listening("nginx", &addr.to_string());
        Nginx {
            _proc: p,
            addr,
            dir,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
