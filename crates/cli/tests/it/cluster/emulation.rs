//! The HTTP fallback transports in a cluster: two nodes on one broker
//! (Redis, NATS) behind nginx, round-robin without stickiness. A client
//! opens an `http_stream` or `sse` session through nginx, so one node holds
//! it; each further command goes as its own `POST /emulation` through
//! nginx, so every other one lands on the node that does not hold the
//! session, which forwards it through the broker's control channel. Every
//! request must be answered 204 and every command's reply (by id) must come
//! down the stream within a bounded time; publications made through the API
//! (on either node) reach the stream; both nodes count delivered emulation
//! requests; a forged session id is 404 on either node; and once the
//! stream is gone the session is 404 everywhere.
//!
//! nginx runs the shipped `deploy/nginx/wshub.conf` (round-robin, HTTP/1.1
//! to the nodes, `proxy_buffering off`, long read timeout). Two sessions
//! are opened one after the other, so round-robin puts one on each node and
//! requests are forwarded both ways, including to the node that started
//! last, right after the start (a node must not call a node unknown that
//! the registry, and so `/api/info`, already lists).
//!
//! The clients are raw HTTP/1.1 over `std::net::TcpStream`: the stream is
//! read by a thread that decodes the chunked body nginx sends and records
//! every message.

use std::io::{BufRead, BufReader, Read};
use std::thread::JoinHandle;

use super::*;

const WAIT: Duration = Duration::from_secs(10);
/// Emulation requests sent one after the other.
const SEQUENTIAL: usize = 20;
/// Emulation requests sent at once afterwards.
const BURST: usize = 10;
/// Publications made through the API (through nginx).
const API_PUBLICATIONS: u64 = 6;

const DELIVERED: &str = "wshub_emulation_requests_total{outcome=\"delivered\"}";
const UNKNOWN_SESSION: &str = "wshub_emulation_requests_total{outcome=\"unknown_session\"}";
const UNKNOWN_NODE: &str = "wshub_emulation_requests_total{outcome=\"unknown_node\"}";
const BUSY: &str = "wshub_emulation_requests_total{outcome=\"busy\"}";
const NO_ANSWER: &str = "wshub_emulation_requests_total{outcome=\"no_answer\"}";

/// Polls `f` until it gives a value; panics with `what` after `limit`.
fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn node_ids(addr: SocketAddr) -> Vec<String> {
    http(addr, "POST", "/api/info", "{}")
        .ok()
        .and_then(|(_, t)| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| {
            v["result"]["nodes"].as_array().map(|a| {
                a.iter()
                    .filter_map(|n| n["uid"].as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    HttpStream,
    Sse,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::HttpStream => "http_stream",
            Transport::Sse => "sse",
        }
    }
}

/// What the stream brought.
#[derive(Debug, Default)]
struct Received {
    /// Every message but pings, with when it arrived.
    messages: Vec<(Instant, Value)>,
    pings: usize,
    /// The body ended (or could not be read).
    ended: bool,
}

/// An open http_stream or sse response, read by a thread.
struct Stream {
    received: Arc<Mutex<Received>>,
    sock: TcpStream,
    reader: Option<JoinHandle<()>>,
}

/// The body of a response: chunked, or up to the end of the connection.
struct BodyReader {
    r: BufReader<TcpStream>,
    chunked: bool,
}

impl BodyReader {
    /// The next piece of the body; `None` at its end.
    fn next(&mut self) -> Option<Vec<u8>> {
        if !self.chunked {
            let mut b = vec![0; 4096];
            return match self.r.read(&mut b) {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    b.truncate(n);
                    Some(b)
                }
            };
        }
        let mut size = String::new();
        if self.r.read_line(&mut size).ok()? == 0 {
            return None;
        }
        let hex = size.trim().split(';').next().unwrap_or("");
        let n = usize::from_str_radix(hex, 16).ok()?;
        if n == 0 {
            return None;
        }
        let mut b = vec![0; n + 2];
        self.r.read_exact(&mut b).ok()?;
        assert_eq!(&b[n..], b"\r\n", "chunk not followed by CRLF");
        b.truncate(n);
        Some(b)
    }
}

impl Stream {
    /// Opens a session through `addr` with the connect command `connect`.
    fn open(addr: SocketAddr, transport: Transport, connect: &Value) -> Stream {
        let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
        // A backstop only: the guard shuts the socket down when dropped.
        sock.set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let body = connect.to_string();
        let req = match transport {
            Transport::HttpStream => format!(
                "POST /connection/http_stream HTTP/1.1\r\nHost: {addr}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            Transport::Sse => {
                let q: String = url::form_urlencoded::byte_serialize(body.as_bytes()).collect();
                format!(
                    "GET /connection/sse?cf_connect={q} HTTP/1.1\r\nHost: {addr}\r\n\
                     Accept: text/event-stream\r\n\r\n"
                )
            }
        };
        (&sock).write_all(req.as_bytes()).expect("send the request");
        let mut r = BufReader::new(sock.try_clone().unwrap());
        let mut status_line = String::new();
        r.read_line(&mut status_line).expect("status line");
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).expect("header") == 0 || l == "\r\n" {
                break;
            }
            if let Some((k, v)) = l.trim_end().split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str())
                .to_owned()
        };
        assert!(
            status_line.starts_with("HTTP/1.1 200"),
            "{}: {status_line:?} {headers:?}",
            transport.name()
        );
        let want_type = match transport {
            Transport::HttpStream => "application/json",
            Transport::Sse => "text/event-stream",
        };
        assert!(header("content-type").starts_with(want_type), "{headers:?}");
        let chunked = header("transfer-encoding").contains("chunked");
        let received = Arc::new(Mutex::new(Received::default()));
        let rec = received.clone();
        let reader = std::thread::spawn(move || {
            let mut body = BodyReader { r, chunked };
            let mut pending = Vec::new();
            let mut event: Vec<String> = Vec::new();
            let record = |text: &str| {
                let v: Value = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("not JSON on the stream ({e}): {text:?}"));
                let mut rec = rec.lock().unwrap();
                if v == json!({}) {
                    rec.pings += 1;
                } else {
                    rec.messages.push((Instant::now(), v));
                }
            };
            while let Some(piece) = body.next() {
                pending.extend_from_slice(&piece);
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let raw: Vec<u8> = pending.drain(..=i).collect();
                    let line = String::from_utf8_lossy(&raw[..i]);
                    let line = line.strip_suffix('\r').unwrap_or(&line);
                    match transport {
                        Transport::HttpStream if !line.is_empty() => record(line),
                        Transport::HttpStream => {}
                        Transport::Sse if line.is_empty() => {
                            if !event.is_empty() {
                                record(&event.join("\n"));
                                event.clear();
                            }
                        }
                        Transport::Sse => {
                            if let Some(d) = line.strip_prefix("data:") {
                                event.push(d.strip_prefix(' ').unwrap_or(d).to_owned());
                            }
                        }
                    }
                }
            }
            rec.lock().unwrap().ended = true;
        });
        Stream {
            received,
            sock,
            reader: Some(reader),
        }
    }

    /// The first message that `pick` maps to something.
    fn find<T>(&self, mut pick: impl FnMut(&Value) -> Option<T>) -> Option<T> {
        self.received
            .lock()
            .unwrap()
            .messages
            .iter()
            .find_map(|(_, m)| pick(m))
    }

    /// The reply to command `id` and when it arrived, within `WAIT`.
    fn reply(&self, id: u64) -> (Instant, Value) {
        wait_until(&format!("the reply to command {id}"), WAIT, || {
            let rec = self.received.lock().unwrap();
            if let Some(m) = rec.messages.iter().find(|(_, m)| m["id"] == id) {
                return Some(m.clone());
            }
            assert!(!rec.ended, "the stream ended: {:?}", rec.messages);
            None
        })
    }

    /// The publications pushed on `channel`, in arrival order.
    fn publications(&self, channel: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .messages
            .iter()
            .filter(|(_, m)| m["push"]["channel"] == channel && m["push"].get("pub").is_some())
            .map(|(_, m)| m["push"]["pub"].clone())
            .collect()
    }

    fn disconnects(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .messages
            .iter()
            .filter(|(_, m)| m["push"].get("disconnect").is_some())
            .map(|(_, m)| m.clone())
            .collect()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// `POST /emulation` of `commands` (one per line in the `data` string).
fn emulate(addr: SocketAddr, session: &str, node: &str, commands: &[Value]) -> (u16, String) {
    let data = commands
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let body = json!({ "session": session, "node": node, "data": data }).to_string();
    http(addr, "POST", "/emulation", &body)
        .unwrap_or_else(|e| panic!("emulation request through {addr}: {e}"))
}

/// A session's commands through one address, with ids counted up.
struct Commands<'a> {
    addr: SocketAddr,
    stream: &'a Stream,
    session: String,
    node: String,
    next_id: u64,
    /// Requests answered 204.
    delivered: u64,
    /// The longest wait from a 204 to the last reply of its commands.
    slowest_reply: Duration,
}

impl Commands<'_> {
    /// `(method, params)` pairs with ids assigned, as commands.
    fn number(&mut self, commands: &[(&str, Value)]) -> (Vec<u64>, Vec<Value>) {
        commands
            .iter()
            .map(|(method, params)| {
                self.next_id += 1;
                let id = self.next_id;
                (id, json!({ "id": id, *method: params }))
            })
            .unzip()
    }

    /// Waits for the replies to `ids`; each must carry a result, no error.
    fn replies(&mut self, ids: &[u64], answered: Instant) -> Vec<Value> {
        ids.iter()
            .map(|id| {
                let (at, r) = self.stream.reply(*id);
                assert!(r.get("error").is_none(), "command {id}: {r}");
                self.slowest_reply = self
                    .slowest_reply
                    .max(at.saturating_duration_since(answered));
                r
            })
            .collect()
    }

    /// Sends the commands as one emulation request; it must be answered
    /// 204, and their replies come down the stream. Returns the replies.
    fn run(&mut self, commands: &[(&str, Value)]) -> Vec<Value> {
        let (ids, cmds) = self.number(commands);
        let (status, body) = emulate(self.addr, &self.session, &self.node, &cmds);
        assert_eq!(status, 204, "emulation of {cmds:?}: {body}");
        self.delivered += 1;
        self.replies(&ids, Instant::now())
    }

    /// `n` requests of one command each, all sent at once.
    fn burst(&mut self, commands: Vec<(&str, Value)>) -> Vec<Value> {
        let numbered: Vec<(u64, Value)> = commands
            .iter()
            .map(|c| {
                let (ids, cmds) = self.number(std::slice::from_ref(c));
                (ids[0], cmds[0].clone())
            })
            .collect();
        let (addr, session, node) = (self.addr, self.session.as_str(), self.node.as_str());
        let statuses: Vec<(u16, String)> = std::thread::scope(|s| {
            let sent: Vec<_> = numbered
                .iter()
                .map(|(_, cmd)| {
                    s.spawn(move || emulate(addr, session, node, std::slice::from_ref(cmd)))
                })
                .collect();
            sent.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let answered = Instant::now();
        for (status, body) in &statuses {
            assert_eq!(*status, 204, "a request of the burst: {body}");
        }
        self.delivered += statuses.len() as u64;
        let ids: Vec<u64> = numbered.iter().map(|(id, _)| *id).collect();
        self.replies(&ids, answered)
    }
}

fn presence_clients(reply: &Value) -> Vec<(String, String)> {
    reply["presence"]["presence"]
        .as_object()
        .unwrap_or_else(|| panic!("no presence map: {reply}"))
        .values()
        .map(|i| {
            (
                i["client"].as_str().unwrap_or_default().to_owned(),
                i["user"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// An http_stream or sse session opened through nginx.
struct Session {
    stream: Stream,
    session: String,
    node: String,
    client: String,
    /// The index of the node that holds it.
    owner: usize,
}

impl Session {
    /// Connects as `user` through `addr`; `ids` are the nodes' ids, by node.
    fn open(addr: SocketAddr, transport: Transport, user: &str, ids: &[String]) -> Session {
        let stream = Stream::open(
            addr,
            transport,
            &json!({ "id": 1, "connect": { "token": token(user) } }),
        );
        let (_, connect) = stream.reply(1);
        assert!(connect.get("error").is_none(), "{connect}");
        let text = |k: &str| {
            connect["connect"][k]
                .as_str()
                .unwrap_or_else(|| panic!("no {k} in {connect}"))
                .to_owned()
        };
        let (client, session, node) = (text("client"), text("session"), text("node"));
        assert_ne!(session, client, "the session id is not the client id");
        let owner = ids
            .iter()
            .position(|i| *i == node)
            .unwrap_or_else(|| panic!("{node} is none of {ids:?}"));
        Session {
            stream,
            session,
            node,
            client,
            owner,
        }
    }

    fn commands(&self, addr: SocketAddr) -> Commands<'_> {
        Commands {
            addr,
            stream: &self.stream,
            session: self.session.clone(),
            node: self.node.clone(),
            next_id: 1,
            delivered: 0,
            slowest_reply: Duration::ZERO,
        }
    }
}

fn delivered(c: &Cluster) -> Vec<u64> {
    c.nodes.iter().map(|n| metric(n.addr, DELIVERED)).collect()
}

/// What one session's run showed.
struct Flow {
    /// The node that holds the session.
    owner: usize,
    requests: u64,
    /// Delivered emulation requests counted by each node during the run.
    per_node: Vec<u64>,
    publications: usize,
    slowest_reply: Duration,
}

/// One session's commands, all through nginx: subscribe, publish (one or
/// several per request), presence, presence stats, history, one after the
/// other and then at once; publications through the API as well. Every
/// request is answered 204, every command's reply arrives, every
/// publication arrives once and in offset order, and both nodes received
/// requests of this session.
fn exercise(c: &Cluster, nginx: &Nginx, s: &Session, ch: &str) -> Flow {
    let before = delivered(c);
    let mut cmds = s.commands(nginx.addr);
    // What has been published, by its `n`.
    let mut published: Vec<u64> = Vec::new();
    let mut n = 0;
    let mut publish = |published: &mut Vec<u64>| {
        n += 1;
        published.push(n);
        ("publish", json!({ "channel": ch, "data": { "n": n } }))
    };
    for k in 0..SEQUENTIAL {
        match k {
            0 => {
                let r = cmds.run(&[("subscribe", json!({ "channel": ch, "recover": true }))]);
                assert!(r[0].get("subscribe").is_some(), "{r:?}");
            }
            12 => {
                let r = cmds.run(&[("presence", json!({ "channel": ch }))]);
                assert_eq!(
                    presence_clients(&r[0]),
                    [(s.client.clone(), user_of(ch).to_owned())]
                );
            }
            13 => {
                let r = cmds.run(&[("presence_stats", json!({ "channel": ch }))]);
                assert_eq!(r[0]["presence_stats"]["num_clients"], 1, "{r:?}");
                assert_eq!(r[0]["presence_stats"]["num_users"], 1, "{r:?}");
            }
            14 => {
                let r = cmds.run(&[("history", json!({ "channel": ch, "limit": -1 }))]);
                let pubs = r[0]["history"]["publications"].as_array().cloned();
                assert_eq!(pubs.map_or(0, |p| p.len()), published.len(), "{r:?}");
            }
            // Several commands in one request, one per line.
            5 | 9 | 15 => {
                let a = publish(&mut published);
                let b = publish(&mut published);
                let r = cmds.run(&[a, b, ("presence_stats", json!({ "channel": ch }))]);
                assert!(r[0].get("publish").is_some() && r[1].get("publish").is_some());
                assert_eq!(r[2]["presence_stats"]["num_clients"], 1, "{r:?}");
            }
            _ => {
                let r = cmds.run(&[publish(&mut published)]);
                assert!(r[0].get("publish").is_some(), "{r:?}");
            }
        }
    }
    // Requests at once: they land on both nodes and may overtake each
    // other; each is answered and so is each command.
    let burst: Vec<(&str, Value)> = (0..BURST).map(|_| publish(&mut published)).collect();
    for r in cmds.burst(burst) {
        assert!(r.get("publish").is_some(), "{r}");
    }
    // Publications through the API, through nginx, so on both nodes.
    for _ in 0..API_PUBLICATIONS {
        n += 1;
        published.push(n);
        api(
            nginx.addr,
            "publish",
            json!({ "channel": ch, "data": { "n": n, "from": "api" } }),
        );
    }
    let total = published.len();
    let pubs = wait_until("every publication arrives on the stream", WAIT, || {
        let p = s.stream.publications(ch);
        (p.len() >= total).then_some(p)
    });
    let got: Vec<u64> = pubs
        .iter()
        .filter_map(|p| p["data"]["n"].as_u64())
        .collect();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, published, "each publication once: {got:?}");
    let offsets: Vec<u64> = pubs.iter().filter_map(|p| p["offset"].as_u64()).collect();
    assert_eq!(
        offsets,
        (1..=total as u64).collect::<Vec<_>>(),
        "in offset order, no gap: {pubs:?}"
    );
    let r = cmds.run(&[("history", json!({ "channel": ch, "limit": -1 }))]);
    let h = &r[0]["history"];
    assert_eq!(
        h["publications"].as_array().map_or(0, Vec::len),
        total,
        "{h}"
    );
    assert_eq!(h["offset"], total as u64, "{h}");

    // Both nodes received requests of this session and delivered them (the
    // one that does not hold it through the broker).
    let per_node: Vec<u64> = delivered(c)
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert!(
        per_node.iter().all(|d| *d > 0),
        "both nodes must receive emulation requests of the session on node {}: {per_node:?}",
        s.owner
    );
    assert_eq!(per_node.iter().sum::<u64>(), cmds.delivered, "{per_node:?}");
    Flow {
        owner: s.owner,
        requests: cmds.delivered,
        per_node,
        publications: total,
        slowest_reply: cmds.slowest_reply,
    }
}

/// The channel of a user: `room:emulation-<transport>-<user>`.
fn channel(transport: Transport, user: &str) -> String {
    format!("{NS}:emulation-{}-{user}", transport.name())
}

fn user_of(ch: &str) -> &str {
    ch.rsplit('-').next().unwrap_or_default()
}

fn emulation_behind_nginx(backend: Backend, transport: Transport) {
    let started = Instant::now();
    let c = Cluster::start_with(
        backend,
        2,
        json!({ "http_stream": { "enabled": true }, "sse": { "enabled": true } }),
    );
    let backend = c.backend.name();
    // Each node lists itself first.
    let ids: Vec<String> = wait_until("/api/info on both nodes lists both nodes", WAIT, || {
        let ids: Vec<Vec<String>> = c.nodes.iter().map(|n| node_ids(n.addr)).collect();
        ids.iter()
            .all(|i| i.len() == 2)
            .then(|| ids.iter().map(|i| i[0].clone()).collect())
    });
    assert_ne!(ids[0], ids[1]);
    let nginx = Nginx::start(&c.nodes);
    let ready = started.elapsed();

    // Opened one after the other, round-robin puts them on the two nodes:
    // requests are forwarded both ways.
    let users = ["erin", "frank"];
    let sessions: Vec<Session> = users
        .iter()
        .map(|u| Session::open(nginx.addr, transport, u, &ids))
        .collect();
    assert_ne!(
        sessions[0].owner, sessions[1].owner,
        "nginx does not alternate"
    );
    let flows: Vec<Flow> = sessions
        .iter()
        .zip(users)
        .map(|(s, u)| exercise(&c, &nginx, s, &channel(transport, u)))
        .collect();

    // A forged session id is 404 on either node: through nginx, which
    // alternates, so each node gets two.
    let forged = "00000000-0000-4000-8000-000000000000";
    let probe = [json!({ "id": 99, "presence_stats": { "channel": "x" } })];
    for s in &sessions {
        for _ in 0..2 {
            let (status, body) = emulate(nginx.addr, forged, &s.node, &probe);
            assert_eq!(status, 404, "{body}");
            assert!(body.contains("session not found"), "{body}");
        }
    }
    let unknown: Vec<u64> = c
        .nodes
        .iter()
        .map(|n| metric(n.addr, UNKNOWN_SESSION))
        .collect();
    assert_eq!(unknown, [2, 2], "a forged session on either node");
    // Sent to each node directly, naming either node: 404, never "node not
    // found" (each node knows the other, however recently it started).
    for n in &c.nodes {
        for id in &ids {
            let (status, body) = emulate(n.addr, forged, id, &probe);
            assert_eq!(
                status, 404,
                "forged session on {id} through {}: {body}",
                n.addr
            );
            assert!(
                body.contains("session not found"),
                "forged session on {id} through {}: {body}",
                n.addr
            );
        }
    }
    // A node nobody knows, and garbage.
    for _ in 0..2 {
        let (status, body) = emulate(nginx.addr, &sessions[0].session, "no-such-node", &probe);
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("node not found"), "{body}");
        let (status, body) = http(nginx.addr, "POST", "/emulation", "{not json").unwrap();
        assert_eq!(status, 400, "{body}");
    }
    // A session named with the other node's id is not found there.
    for s in &sessions {
        let other = &ids[1 - s.owner];
        let (status, body) = emulate(nginx.addr, &s.session, other, &probe);
        assert_eq!(status, 404, "{body}");
    }
    let unknown_node: Vec<u64> = c
        .nodes
        .iter()
        .map(|n| metric(n.addr, UNKNOWN_NODE))
        .collect();
    assert_eq!(unknown_node.iter().sum::<u64>(), 2, "{unknown_node:?}");
    for n in &c.nodes {
        assert_eq!(metric(n.addr, BUSY), 0);
        assert_eq!(metric(n.addr, NO_ANSWER), 0);
    }
    // None of that reached or hurt the sessions.
    for (s, u) in sessions.iter().zip(users) {
        let mut cmds = s.commands(nginx.addr);
        cmds.next_id = 1000;
        let r = cmds.run(&[(
            "presence_stats",
            json!({ "channel": channel(transport, u) }),
        )]);
        assert_eq!(r[0]["presence_stats"]["num_clients"], 1, "{r:?}");
        assert!(s.stream.find(|m| (m["id"] == 99).then_some(())).is_none());
        assert!(
            s.stream.disconnects().is_empty(),
            "{:?}",
            s.stream.disconnects()
        );
    }
    let pings: usize = sessions
        .iter()
        .map(|s| s.stream.received.lock().unwrap().pings)
        .sum();

    // The clients go away: their sessions are gone on every node.
    let gone: Vec<(String, String)> = sessions
        .iter()
        .map(|s| (s.session.clone(), s.node.clone()))
        .collect();
    drop(sessions);
    wait_until(
        "the closed sessions are unknown on both nodes",
        WAIT,
        || {
            gone.iter()
                .all(|(session, node)| {
                    c.nodes
                        .iter()
                        .all(|n| emulate(n.addr, session, node, &probe).0 == 404)
                })
                .then_some(())
        },
    );
    for (i, f) in flows.iter().enumerate() {
        eprintln!(
            "{backend} {}: session {i} on node {}: {} emulation requests through nginx, \
             delivered {:?} by receiving node; {} publications received in order; slowest \
             reply after its 204: {:?}",
            transport.name(),
            f.owner,
            f.requests,
            f.per_node,
            f.publications,
            f.slowest_reply
        );
    }
    eprintln!(
        "{backend} {}: {pings} pings; cluster ready in {ready:?}, all in {:?}",
        transport.name(),
        started.elapsed()
    );
}

#[test]
fn redis_http_stream_emulation_lands_on_both_nodes_behind_nginx() {
    emulation_behind_nginx(Backend::redis(), Transport::HttpStream);
}

#[test]
fn nats_http_stream_emulation_lands_on_both_nodes_behind_nginx() {
    emulation_behind_nginx(Backend::nats(), Transport::HttpStream);
}

#[test]
fn redis_sse_emulation_lands_on_both_nodes_behind_nginx() {
    emulation_behind_nginx(Backend::redis(), Transport::Sse);
}

#[test]
fn nats_sse_emulation_lands_on_both_nodes_behind_nginx() {
    emulation_behind_nginx(Backend::nats(), Transport::Sse);
}
