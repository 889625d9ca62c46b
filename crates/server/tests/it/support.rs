//! A server started in-process, a hand-driven protocol client, and a raw
//! HTTP client for the server API. Every wait is bounded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wshub_config::Config;
use wshub_hub::broker::{MemoryBroker, MemoryBrokerConfig};
use wshub_hub::node::Node;
use wshub_protocol::{decode_replies, Command, CommandEncoder, Encoding, Push, Reply};
use wshub_ws::{ClientOptions, MaybeTlsStream, WebSocket};

/// Bound on every wait.
pub const T: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub addr: SocketAddr,
    #[allow(dead_code)]
    pub node: Arc<Node>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

pub async fn start(config: Config) -> TestServer {
    let broker = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
    let server = wshub_server::Server::bind(config, broker, "127.0.0.1:0")
        .await
        .expect("bind");
    let addr = server.local_addr();
    let node = server.node().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    TestServer {
        addr,
        node,
        stop: Some(tx),
        task: Some(task),
    }
}

/// Development defaults with short shutdown drain.
pub fn dev_config() -> Config {
    let mut c = Config::development_default();
    c.shutdown.timeout = Duration::from_millis(400).into();
    c
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

    /// POSTs `body` to `path`; returns the status and the body.
    pub async fn post(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
        tokio::time::timeout(T, async {
            let mut s = TcpStream::connect(self.addr).await.expect("connect");
            let mut req = format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n",
                self.addr,
                body.len()
            );
            for (k, v) in headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            req.push_str(body);
            s.write_all(req.as_bytes()).await.expect("write");
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.expect("read");
            let text = String::from_utf8_lossy(&out).into_owned();
            let status = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("status line");
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            let chunked = head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked");
            let body = if chunked {
                dechunk(body)
            } else {
                body.to_owned()
            };
            (status, body)
        })
        .await
        .expect("HTTP request timed out")
    }

    /// Calls an API method (no key) and parses the JSON answer.
    pub async fn api(&self, method: &str, body: &str) -> serde_json::Value {
        let (status, body) = self.post(&format!("/api/{method}"), body, &[]).await;
        assert_eq!(status, 200, "{method}: {body}");
        serde_json::from_str(&body).expect("JSON answer")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

pub struct Client {
    pub ws: WebSocket<MaybeTlsStream>,
    pub encoding: Encoding,
    next_id: u32,
    pushes: VecDeque<Push>,
    replies: VecDeque<Reply>,
}

impl Client {
    pub async fn open(url: &str) -> Client {
        Self::open_with(url, ClientOptions::default(), Encoding::Json).await
    }

    pub async fn open_with(url: &str, opts: ClientOptions, encoding: Encoding) -> Client {
        let ws = tokio::time::timeout(T, wshub_ws::connect(url, &opts))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        Client {
            ws,
            encoding,
            next_id: 0,
            pushes: VecDeque::new(),
            replies: VecDeque::new(),
        }
    }

    /// Opens and connects anonymously; returns the client and its id.
    pub async fn connected(url: &str) -> (Client, String) {
        let mut c = Client::open(url).await;
        let r = c.call(r#""connect":{}"#).await;
        let id = r.connect.expect("connect result").client;
        (c, id)
    }

    pub async fn send_text(&mut self, text: &str) {
        tokio::time::timeout(T, self.ws.send_text(text))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    pub async fn send_commands(&mut self, cmds: &[Command]) {
        let mut enc = CommandEncoder::new(self.encoding);
        for c in cmds {
            enc.push(c).expect("encode");
        }
        let bytes = enc.finish();
        let r = if self.encoding.is_binary() {
            self.ws.send_binary(&bytes).await
        } else {
            self.ws
                .send_text(std::str::from_utf8(&bytes).unwrap())
                .await
        };
        r.expect("send failed");
    }

    /// Reads one frame of replies (pings are answered and skipped).
    /// `None` when the connection closed.
    async fn read_frame(&mut self) -> Option<()> {
        let msg = tokio::time::timeout(T, self.ws.recv())
            .await
            .expect("no message within the timeout")?;
        let msg = msg.ok()?;
        let replies = decode_replies(self.encoding, msg.as_bytes()).expect("decodable replies");
        for r in replies {
            if r.is_ping() {
                continue;
            }
            match r.push {
                Some(p) => self.pushes.push_back(p),
                None => self.replies.push_back(r),
            }
        }
        Some(())
    }

    /// Sends `{"id":N, <body>}` and returns the reply with id N.
    pub async fn call(&mut self, body: &str) -> Reply {
        self.next_id += 1;
        let id = self.next_id;
        self.send_text(&format!("{{\"id\":{id},{body}}}")).await;
        self.reply(id).await
    }

    pub fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    pub async fn reply(&mut self, id: u32) -> Reply {
        loop {
            if let Some(i) = self.replies.iter().position(|r| r.id == id) {
                return self.replies.remove(i).unwrap();
            }
            self.read_frame().await.unwrap_or_else(|| {
                panic!(
                    "closed while waiting for reply {id}: {:?}",
                    self.ws.close_info()
                )
            });
        }
    }

    pub async fn push(&mut self) -> Push {
        loop {
            if let Some(p) = self.pushes.pop_front() {
                return p;
            }
            self.read_frame().await.unwrap_or_else(|| {
                panic!(
                    "closed while waiting for a push: {:?}",
                    self.ws.close_info()
                )
            });
        }
    }

    /// The next push that is not a join or leave.
    pub async fn data_push(&mut self) -> Push {
        loop {
            let p = self.push().await;
            if p.join.is_none() && p.leave.is_none() {
                return p;
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        while self.read_frame().await.is_some() {}
        let (code, reason) = self.ws.close_info().expect("closed with a close frame");
        (code.expect("close code").0, reason)
    }
}

/// The payload of a chunked HTTP/1.1 body (what a complete answer has;
/// a cut-short one gives what arrived).
pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            out.push_str(&rest[..n.min(rest.len())]);
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}
