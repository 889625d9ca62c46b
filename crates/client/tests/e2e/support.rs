//! The real gateway started in-process, a raw HTTP client for its server
//! API, and bounded waits on the client's event streams.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wshub_client::{Client, ClientConfig, ClientEvent, SubscriptionEvent};
use wshub_config::{ChannelNamespace, ChannelOptions, Config};
use wshub_hub::broker::{MemoryBroker, MemoryBrokerConfig};

/// Bound on every wait.
pub const T: Duration = Duration::from_secs(5);

/// The HMAC secret of connection tokens.
pub const SECRET: &str = "e2e-secret";

/// Development defaults (anonymous connects, everything allowed in
/// channels without namespace, history 100, forced recovery), plus:
/// HS256 tokens signed with [`SECRET`], a short shutdown drain, and
/// namespaces `ro` (subscribe only: no publish) and `short` (history of
/// 2 publications, forced recovery).
pub fn config() -> Config {
    let mut c = Config::development_default();
    c.client.token.hmac_secret_key = SECRET.into();
    c.shutdown.timeout = Duration::from_millis(400).into();
    let base = c.channel.without_namespace.clone();
    let mut ro: ChannelOptions = base.clone();
    ro.allow_publish_for_client = false;
    ro.allow_publish_for_anonymous = false;
    ro.allow_publish_for_subscriber = false;
    c.channel
        .namespaces
        .push(ChannelNamespace::new("ro").with_options(ro));
    let mut short = base;
    short.history_size = 2;
    c.channel
        .namespaces
        .push(ChannelNamespace::new("short").with_options(short));
    c
}

/// A connection token for `user` signed with [`SECRET`].
pub fn token(user: &str) -> String {
    wshub_hub::auth::generate_connection_token(SECRET, user, None, None, &[]).expect("token")
}

/// Client settings for tests: fast reconnects and a short command timeout.
pub fn client_config() -> ClientConfig {
    ClientConfig::default()
        .min_reconnect_delay(Duration::from_millis(50))
        .max_reconnect_delay(Duration::from_millis(300))
        .timeout(Duration::from_secs(3))
}

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

pub async fn start(config: Config) -> TestServer {
    start_at(config, "127.0.0.1:0").await
}

/// Starts a server on `addr` (a fresh node and broker: a new epoch).
pub async fn start_at(config: Config, addr: &str) -> TestServer {
    let broker = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
    start_with(config, broker, addr).await
}

/// Starts a server on `broker` (not started yet).
pub async fn start_with(
    config: Config,
    broker: Arc<dyn wshub_hub::broker::Broker>,
    addr: &str,
) -> TestServer {
    let server = tokio::time::timeout(T, wshub_server::Server::bind(config, broker, addr))
        .await
        .expect("bind timed out")
        .expect("bind");
    let addr = server.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    TestServer {
        addr,
        stop: Some(tx),
        task: Some(task),
    }
}

impl TestServer {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    /// Signals shutdown and waits for the drain to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(T, t)
                .await
                .expect("shutdown timed out")
                .expect("server task panicked");
        }
    }

    /// Calls a server API method (the dev config needs no key) and returns
    /// the parsed answer; panics on an HTTP status other than 200 or an
    /// API error.
    pub async fn api(&self, method: &str, body: &str) -> serde_json::Value {
        let v = self.api_raw(method, body).await;
        assert!(v.get("error").is_none(), "{method} {body}: {v}");
        v
    }

    /// As [`api`](Self::api) but returns an API error instead of panicking.
    pub async fn api_raw(&self, method: &str, body: &str) -> serde_json::Value {
        let addr = self.addr;
        let (status, text) = tokio::time::timeout(T, async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let req = format!(
                "POST /api/{method} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.expect("read");
            let text = String::from_utf8_lossy(&out).into_owned();
            let status: u16 = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("status line");
            let body = text
                .split_once("\r\n\r\n")
                .map(|x| x.1.to_owned())
                .unwrap_or_default();
            (status, body)
        })
        .await
        .expect("HTTP API request timed out");
        assert_eq!(status, 200, "{method}: {text}");
        serde_json::from_str(&text).expect("JSON answer")
    }

    /// GETs `path` (e.g. `/metrics`) and returns the body; panics unless 200.
    pub async fn api_text(&self, path: &str) -> String {
        let addr = self.addr;
        let text = tokio::time::timeout(T, async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.expect("read");
            String::from_utf8_lossy(&out).into_owned()
        })
        .await
        .expect("HTTP request timed out");
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
        text.split_once("\r\n\r\n")
            .map(|x| x.1.to_owned())
            .unwrap_or_default()
    }

    /// Publishes `data` (JSON) into `channel` through the API; returns the offset.
    pub async fn publish(&self, channel: &str, data: &str) -> u64 {
        let v = self
            .api(
                "publish",
                &format!(r#"{{"channel":"{channel}","data":{data}}}"#),
            )
            .await;
        v["result"]["offset"].as_u64().unwrap_or(0)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Creates a client, connects it and waits for `Connected`; returns it,
/// its event stream and its client id.
pub async fn connected(
    url: &str,
    config: ClientConfig,
) -> (Client, mpsc::UnboundedReceiver<ClientEvent>, String) {
    let (client, mut events) = Client::new(url, config);
    client.connect().expect("connect");
    let id = wait_for(&mut events, |e| match e {
        ClientEvent::Connected { client_id, .. } => Some(client_id.clone()),
        _ => None,
    })
    .await;
    (client, events, id)
}

/// The next event, at most [`T`] away.
pub async fn next<E: Debug>(rx: &mut mpsc::UnboundedReceiver<E>) -> E {
    tokio::time::timeout(T, rx.recv())
        .await
        .expect("no event within the timeout")
        .expect("event stream closed")
}

/// Skips events until `f` picks one, at most [`T`] in all; the skipped
/// events are printed on failure.
pub async fn wait_for<E: Debug, R>(
    rx: &mut mpsc::UnboundedReceiver<E>,
    mut f: impl FnMut(&E) -> Option<R>,
) -> R {
    let mut skipped = Vec::new();
    let found = tokio::time::timeout(T, async {
        while let Some(e) = rx.recv().await {
            if let Some(r) = f(&e) {
                return Some(r);
            }
            skipped.push(e);
        }
        None
    })
    .await;
    match found {
        Ok(Some(r)) => r,
        Ok(None) => panic!("event stream closed; skipped {skipped:?}"),
        Err(_) => panic!("no matching event within {T:?}; skipped {skipped:?}"),
    }
}

/// Asserts that no event arrives for `d`.
pub async fn assert_quiet<E: Debug>(rx: &mut mpsc::UnboundedReceiver<E>, d: Duration) {
    if let Ok(Some(e)) = tokio::time::timeout(d, rx.recv()).await {
        panic!("unexpected event: {e:?}");
    }
}

/// Waits for the subscription's `Subscribed` event; returns its
/// `(recoverable, was_recovering, recovered, epoch, offset)`.
pub async fn subscribed(
    rx: &mut mpsc::UnboundedReceiver<SubscriptionEvent>,
) -> (bool, bool, bool, String, u64) {
    wait_for(rx, |e| match e {
        SubscriptionEvent::Subscribed {
            recoverable,
            was_recovering,
            recovered,
            epoch,
            offset,
            ..
        } => Some((
            *recoverable,
            *was_recovering,
            *recovered,
            epoch.clone(),
            *offset,
        )),
        SubscriptionEvent::Unsubscribed { code, reason } => {
            panic!("unsubscribed ({code} {reason}) instead of subscribed")
        }
        _ => None,
    })
    .await
}

/// The next publication event: `(offset, data as text)`; fails on any
/// other event except join/leave.
pub async fn publication(rx: &mut mpsc::UnboundedReceiver<SubscriptionEvent>) -> (u64, String) {
    loop {
        match next(rx).await {
            SubscriptionEvent::Publication(p) => {
                return (p.offset, String::from_utf8_lossy(&p.data).into_owned())
            }
            SubscriptionEvent::Join(_) | SubscriptionEvent::Leave(_) => {}
            other => panic!("expected a publication, got {other:?}"),
        }
    }
}

/// Asserts that no subscription event other than join/leave (the
/// client's own join after a resubscribe, with `force_push_join_leave`)
/// arrives for `d`.
pub async fn assert_no_publications(
    rx: &mut mpsc::UnboundedReceiver<SubscriptionEvent>,
    d: Duration,
) {
    let deadline = tokio::time::Instant::now() + d;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match e {
            SubscriptionEvent::Join(_) | SubscriptionEvent::Leave(_) => {}
            other => panic!("unexpected event: {other:?}"),
        }
    }
}
