//! The HTTP fallback transports of `wshub serve` from outside, with raw
//! HTTP/1.1 clients and `curl`: unidirectional streams following a channel,
//! the emulation endpoint's answers, and hostile input on every endpoint
//! (garbage, forged and stolen session ids, oversized and stalled bodies,
//! origins, methods, and 10,000 streams left half-open).

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::sdk_interop::wshub_serve;
use crate::support::{proc_status, python_script, require_python, Proc};

const SECRET: &str = "fallback-secret";
const ALLOWED: &str = "http://allowed.example";
const WAIT: Duration = Duration::from_secs(10);

fn config() -> String {
    serde_json::json!({
        "client": {
            "token": { "hmac_secret_key": SECRET },
            "allowed_origins": [ALLOWED],
            "allow_anonymous_connect_without_token": true
        },
        "http_api": { "insecure": true },
        "http_server": { "read_header_timeout": "2s" },
        "prometheus": { "enabled": true },
        "http_stream": { "enabled": true },
        "sse": { "enabled": true },
        "uni_http_stream": { "enabled": true },
        "uni_sse": { "enabled": true },
        "long_poll": { "enabled": true, "poll_timeout": "2s", "session_timeout": "3s" },
        "uni_websocket": { "enabled": true },
        "channel": {
            "without_namespace": {
                "presence": true,
                "history_size": 10,
                "history_ttl": "60s",
                "allow_subscribe_for_client": true,
                "allow_publish_for_client": true,
                "allow_presence_for_subscriber": true,
                "allow_history_for_subscriber": true
            }
        }
    })
    .to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn token(user: &str, channels: &[&str]) -> String {
    let channels: Vec<String> = channels.iter().map(|c| (*c).to_owned()).collect();
    wshub_hub::auth::generate_connection_token(SECRET, user, None, None, &channels).unwrap()
}

/// A response read from a raw socket: status, headers (lower-case names)
/// and the body as it comes (chunked transfer decoded).
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    r: BufReader<TcpStream>,
    chunked: bool,
    left: usize,
    buf: Vec<u8>,
    done: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// More body bytes; false at the end.
    async fn fill(&mut self) -> bool {
        if self.done {
            return false;
        }
        if !self.chunked {
            let mut b = [0u8; 4096];
            match self.r.read(&mut b).await {
                Ok(0) | Err(_) => {
                    self.done = true;
                    return false;
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&b[..n]);
                    return true;
                }
            }
        }
        if self.left == 0 {
            let mut line = String::new();
            if self.r.read_line(&mut line).await.unwrap_or(0) == 0 {
                self.done = true;
                return false;
            }
            if line.trim().is_empty() {
                // The CRLF after a chunk.
                line.clear();
                if self.r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    self.done = true;
                    return false;
                }
            }
            self.left = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if self.left == 0 {
                self.done = true;
                return false;
            }
        }
        let mut b = vec![0u8; self.left.min(65536)];
        match self.r.read(&mut b).await {
            Ok(0) | Err(_) => {
                self.done = true;
                false
            }
            Ok(n) => {
                self.left -= n;
                self.buf.extend_from_slice(&b[..n]);
                true
            }
        }
    }

    /// The next line of the body (without `\n`), within `WAIT`.
    async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                    let l: Vec<u8> = self.buf.drain(..=i).collect();
                    return Some(String::from_utf8_lossy(&l[..i]).into_owned());
                }
                if !self.fill().await {
                    return None;
                }
            }
        })
        .await
        .expect("no line within the wait")
    }

    /// The next JSON line, or the data of the next SSE event.
    async fn message(&mut self) -> Option<serde_json::Value> {
        loop {
            let l = self.line().await?;
            if l.is_empty() {
                continue;
            }
            let text = l.strip_prefix("data: ").unwrap_or(&l);
            return Some(serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}")));
        }
    }

    /// The next message that is not a ping (`{}`).
    async fn next(&mut self) -> Option<serde_json::Value> {
        loop {
            let m = self.message().await?;
            if m != serde_json::json!({}) {
                return Some(m);
            }
        }
    }

    /// The whole rest of the body as text.
    async fn rest(mut self) -> String {
        tokio::time::timeout(WAIT, async { while self.fill().await {} })
            .await
            .expect("the body did not end");
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// Sends a request and reads the response head.
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let s = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut s = s;
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    read_head(BufReader::new(s)).await
}

async fn read_head(mut r: BufReader<TcpStream>) -> Resp {
    tokio::time::timeout(WAIT, async {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut headers = Vec::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.trim_end().split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        Resp {
            status,
            headers,
            r,
            chunked,
            left: 0,
            buf: Vec::new(),
            done: false,
        }
    })
    .await
    .expect("no response head within the wait")
}

fn host(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Opens an http_stream session; returns the stream, its session and node.
async fn http_stream(addr: &str, connect: serde_json::Value) -> (Resp, String, String, String) {
    let body = serde_json::json!({"id": 1, "connect": connect}).to_string();
    let mut r = request(
        addr,
        "POST",
        "/connection/http_stream",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    let reply = r.next().await.expect("connect reply");
    let c = &reply["connect"];
    let s = |k: &str| {
        c[k].as_str()
            .unwrap_or_else(|| panic!("no {k} in {reply}"))
            .to_owned()
    };
    let (client, session, node) = (s("client"), s("session"), s("node"));
    (r, client, session, node)
}

async fn emulate(addr: &str, session: &str, node: &str, commands: &str) -> (u16, String) {
    let body = serde_json::json!({"session": session, "node": node, "data": commands}).to_string();
    let r = request(
        addr,
        "POST",
        "/emulation",
        &[
            ("Content-Type", "application/json"),
            ("Connection", "close"),
        ],
        body.as_bytes(),
    )
    .await;
    let status = r.status;
    (status, r.rest().await)
}

async fn api(addr: &str, method: &str, body: serde_json::Value) -> serde_json::Value {
    let r = request(
        addr,
        "POST",
        &format!("/api/{method}"),
        &[
            ("Content-Type", "application/json"),
            ("Connection", "close"),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    serde_json::from_str(&r.rest().await).unwrap()
}

async fn metric(addr: &str, sample: &str) -> u64 {
    let r = request(addr, "GET", "/metrics", &[("Connection", "close")], b"").await;
    let text = r.rest().await;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in /metrics"))
}

/// `curl -N` and a plain EventSource-style GET follow a channel over
/// `uni_http_stream` and `uni_sse`: the connect push, then each publication
/// made through the API, as bare pushes; a bad connect request is 400.
#[test]
fn curl_follows_a_channel_over_the_unidirectional_streams() {
    let (_server, url) = wshub_serve(&config());
    let addr = host(&url);
    let tok = token("carol", &["news"]);
    let connect = serde_json::json!({ "token": tok }).to_string();
    // curl, as a user would run it (it stops by itself after 8 s).
    let curl = |args: Vec<String>| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sN", "--max-time", "8"]).args(args);
        Proc::spawn("curl", cmd)
    };
    let mut stream = curl(vec![
        "-X".into(),
        "POST".into(),
        "-d".into(),
        connect.clone(),
        format!("{url}/connection/uni_http_stream"),
    ]);
    let mut sse = curl(vec![
        "-G".into(),
        "--data-urlencode".into(),
        format!("cf_connect={connect}"),
        format!("{url}/connection/uni_sse"),
    ]);
    let first = stream.next_line(WAIT);
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(v["connect"]["client"].is_string(), "{first}");
    assert!(v["connect"]["subs"]["news"].is_object(), "{first}");
    assert!(
        v["connect"].get("node").is_none(),
        "uni pushes carry no node: {first}"
    );
    let ev = sse.next_line(WAIT);
    assert!(ev.starts_with("data: {\"connect\":{"), "{ev}");
    let rt = runtime();
    rt.block_on(async {
        for i in 1..=3 {
            api(
                &addr,
                "publish",
                serde_json::json!({"channel": "news", "data": {"n": i}}),
            )
            .await;
        }
    });
    for i in 1..=3 {
        let line = stream.next_line(WAIT);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["channel"], "news", "{line}");
        assert_eq!(v["pub"]["data"]["n"], i, "{line}");
        // SSE: a blank line ends each event.
        let mut ev = sse.next_line(WAIT);
        while ev.is_empty() {
            ev = sse.next_line(WAIT);
        }
        let v: serde_json::Value =
            serde_json::from_str(ev.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(v["pub"]["data"]["n"], i, "{ev}");
    }
    rt.block_on(async {
        // Garbage as the connect request: a clear 400, no stream.
        let r = request(&addr, "POST", "/connection/uni_http_stream", &[], b"{nope").await;
        assert_eq!(r.status, 400);
        // An invalid token: the stream says so with a disconnect push (3500)
        // and ends.
        let r = request(
            &addr,
            "POST",
            "/connection/uni_http_stream",
            &[],
            br#"{"token":"a.b.c"}"#,
        )
        .await;
        assert_eq!(r.status, 200);
        let rest = r.rest().await;
        assert!(rest.contains("\"disconnect\":{\"code\":3500"), "{rest}");
    });
}

async fn post_json(addr: &str, path: &str, body: serde_json::Value) -> (u16, String) {
    let r = request(
        addr,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Connection", "close"),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    let status = r.status;
    (status, r.rest().await)
}

/// A long-poll answer: its `seq` and messages.
fn answer(status: u16, body: &str) -> (u64, Vec<serde_json::Value>) {
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    (
        v["seq"].as_u64().unwrap(),
        v["messages"].as_array().unwrap().clone(),
    )
}

/// Long-poll: the opening request answers with the connect reply; polls
/// are held until there is something (or the poll timeout), hand out every
/// publication once and in order, give the same messages again to a poll
/// that repeats its `ack` (a lost answer), and refuse an `ack` ahead of
/// what was sent, garbage and forged sessions. A session nobody polls is
/// closed after the session timeout.
#[test]
fn long_poll_delivers_every_message_once_in_order_and_survives_lost_answers() {
    let (_server, url) = wshub_serve(&config());
    let addr = host(&url);
    runtime().block_on(async {
        let (st, body) = post_json(
            &addr,
            "/connection/long_poll",
            serde_json::json!({"id": 1, "connect": {"token": token("lp", &[])}}),
        )
        .await;
        let (mut seq, msgs) = answer(st, &body);
        let c = &msgs[0]["connect"];
        let (session, node) = (
            c["session"].as_str().unwrap().to_owned(),
            c["node"].as_str().unwrap().to_owned(),
        );
        let sub = serde_json::json!({"id": 2, "subscribe": {"channel": "lp"}}).to_string();
        assert_eq!(emulate(&addr, &session, &node, &sub).await.0, 204);
        let poll = |ack: u64| {
            let (addr, session, node) = (addr.clone(), session.clone(), node.clone());
            async move {
                post_json(
                    &addr,
                    "/connection/long_poll/poll",
                    serde_json::json!({"session": session, "node": node, "ack": ack}),
                )
                .await
            }
        };
        let (st, body) = poll(seq).await;
        let (s2, msgs) = answer(st, &body);
        assert_eq!(msgs[0]["id"], 2, "{body}");
        assert!(msgs[0]["subscribe"].is_object(), "{body}");
        seq = s2;
        // Nothing to send: held for the poll timeout, then empty.
        let t = Instant::now();
        let (st, body) = poll(seq).await;
        assert_eq!(answer(st, &body), (seq, vec![]));
        assert!(
            t.elapsed() >= Duration::from_millis(1900),
            "{:?}",
            t.elapsed()
        );
        // Publications while polling: each once, in order, across polls,
        // with every other answer "lost" (the same ack polled again).
        let publisher = {
            let addr = addr.clone();
            tokio::spawn(async move {
                for n in 1..=30 {
                    api(
                        &addr,
                        "publish",
                        serde_json::json!({"channel": "lp", "data": {"n": n}}),
                    )
                    .await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let mut got = Vec::new();
        let mut lose = true;
        let deadline = Instant::now() + WAIT;
        while got.len() < 30 {
            assert!(Instant::now() < deadline, "got only {got:?}");
            let (st, body) = poll(seq).await;
            let (next, msgs) = answer(st, &body);
            if lose && !msgs.is_empty() {
                lose = false;
                continue; // this answer never reached the client
            }
            lose = true;
            for m in msgs {
                if let Some(n) = m["push"]["pub"]["data"]["n"].as_u64() {
                    got.push(n);
                }
            }
            seq = next;
        }
        publisher.await.unwrap();
        assert_eq!(got, (1..=30).collect::<Vec<u64>>());
        let (st, _) = poll(seq + 5).await;
        assert_eq!(st, 400, "an ack ahead of what was sent");
        for bad in [
            serde_json::json!({"session": session}),
            serde_json::json!("x"),
        ] {
            assert_eq!(
                post_json(&addr, "/connection/long_poll/poll", bad).await.0,
                400
            );
        }
        let forged = serde_json::json!({"session": "forged", "node": node, "ack": 0});
        assert_eq!(
            post_json(&addr, "/connection/long_poll/poll", forged)
                .await
                .0,
            404
        );
        // Nobody polls: the session is closed after the session timeout.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(poll(seq).await.0, 404);
        assert_eq!(metric(&addr, "wshub_node_num_clients").await, 0);
    });
}

/// A plain WebSocket client (Python `websockets`) follows a channel over
/// `uni_websocket`, with the connect request as its first message or in
/// `cf_connect`: a connect push, each publication as a bare push in a text
/// frame, and on a server-side disconnect a disconnect push and the same
/// code in the close frame. A connect message that is not one closes 3501.
#[test]
fn a_plain_websocket_client_follows_a_channel_over_uni_websocket() {
    require_python();
    let (server, url) = wshub_serve(&config());
    let addr = host(&url);
    let ws_url = format!("ws://{addr}/connection/uni_websocket");
    let connect = serde_json::json!({ "token": token("dave", &["ticker"]) }).to_string();
    let spawn = |args: Vec<String>| {
        let mut cmd = python_script("py_uni_websocket.py");
        cmd.args(args);
        Proc::spawn("py_uni_websocket.py", cmd)
    };
    let mut first_msg = spawn(vec![ws_url.clone(), connect.clone()]);
    let mut in_url = spawn(vec![format!(
        "{ws_url}?cf_connect={}",
        url_escape(&connect)
    )]);
    let mut bad = spawn(vec![ws_url.clone(), "{not json".into()]);
    for p in [&mut first_msg, &mut in_url] {
        let line = p.next_line(WAIT);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v["connect"]["subs"]["ticker"].is_object(), "{line}");
    }
    assert_eq!(
        bad.next_line(WAIT),
        r#"{"disconnect":{"code":3501,"reason":"bad request"}}"#
    );
    assert_eq!(bad.next_line(WAIT), "closed 3501 bad request");
    let rt = runtime();
    rt.block_on(async {
        for n in 1..=3 {
            api(
                &addr,
                "publish",
                serde_json::json!({"channel": "ticker", "data": {"n": n}}),
            )
            .await;
        }
    });
    for p in [&mut first_msg, &mut in_url] {
        for n in 1..=3 {
            let line = p.next_line(WAIT);
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["channel"], "ticker", "{line}");
            assert_eq!(v["pub"]["data"]["n"], n, "{line}");
        }
    }
    rt.block_on(async {
        let d = serde_json::json!({"user": "dave", "disconnect": {"code": 4001, "reason": "bye"}});
        api(&addr, "disconnect", d).await;
    });
    for p in [&mut first_msg, &mut in_url] {
        let line = p.next_line(WAIT);
        assert!(line.starts_with("{\"disconnect\":{\"code\":4001"), "{line}");
        assert_eq!(p.next_line(WAIT), "closed 4001 bye");
    }
    drop(server);
}

/// The limits a WebSocket client has hold over the HTTP transports too: the
/// channel limit (106), the command rate (111, then 3013 for a flood), the
/// per-user connection limit (3504), and the queue bound: a stream whose
/// client stops reading while publications pile up is a slow consumer
/// (3008) and its session ends.
#[test]
fn websocket_limits_hold_on_the_http_transports() {
    let mut cfg: serde_json::Value = serde_json::from_str(&config()).unwrap();
    cfg["client"]["channel_limit"] = 2.into();
    cfg["client"]["user_connection_limit"] = 2.into();
    cfg["client"]["queue_max_size"] = 262_144.into();
    cfg["limits"] = serde_json::json!({"commands_per_second": 2, "commands_burst": 4, "command_flood_disconnect": 6});
    let (_server, url) = wshub_serve(&cfg.to_string());
    let addr = host(&url);
    runtime().block_on(async {
        let tok = token("erin", &[]);
        let (mut a, _, session, node) = http_stream(&addr, serde_json::json!({"token": tok})).await;
        // Channel limit: the third subscribe is refused.
        let subs = (0..3)
            .map(|i| {
                format!(
                    "{{\"id\":{},\"subscribe\":{{\"channel\":\"c{i}\"}}}}",
                    i + 2
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(emulate(&addr, &session, &node, &subs).await.0, 204);
        let mut codes = Vec::new();
        for _ in 0..3 {
            let r = a.next().await.unwrap();
            codes.push(r["error"]["code"].as_u64().unwrap_or(0));
        }
        assert_eq!(codes, [0, 0, 106], "channel limit");
        // Command rate: the burst is spent; further commands get 111, and a
        // flood ends the session with 3013.
        let mut refused = 0;
        let mut closed = None;
        for id in 10..30 {
            let cmd = format!("{{\"id\":{id},\"presence_stats\":{{\"channel\":\"c0\"}}}}");
            let (st, _) = emulate(&addr, &session, &node, &cmd).await;
            if st == 404 {
                break;
            }
            let r = a.next().await.unwrap();
            if r["error"]["code"] == 111 {
                refused += 1;
            }
            if let Some(code) = r["push"]["disconnect"]["code"].as_u64() {
                closed = Some(code);
                break;
            }
        }
        if closed.is_none() {
            while let Some(r) = a.message().await {
                if let Some(code) = r["push"]["disconnect"]["code"].as_u64() {
                    closed = Some(code);
                    break;
                }
            }
        }
        assert!(refused >= 1, "no command refused by the rate");
        assert_eq!(closed, Some(3013), "a command flood ends the session");
        // Per-user connections: a third one for erin is refused with 3504.
        let (_b, _, _, _) = http_stream(&addr, serde_json::json!({"token": tok})).await;
        let (_c, _, _, _) = http_stream(&addr, serde_json::json!({"token": tok})).await;
        let body = serde_json::json!({"id": 1, "connect": {"token": tok}}).to_string();
        let r = request(
            &addr,
            "POST",
            "/connection/http_stream",
            &[],
            body.as_bytes(),
        )
        .await;
        let rest = r.rest().await;
        assert!(rest.contains("\"code\":3504"), "{rest}");
        // Queue bound: frank subscribes over SSE and never reads; once the
        // socket buffers are full, publications pile up past the 256 KiB
        // bound and the session is gone as a slow consumer, while grace,
        // who reads, keeps up.
        let frank = token("frank", &["big"]);
        let q = url_escape(&serde_json::json!({"id": 1, "connect": {"token": frank}}).to_string());
        let mut f = request(
            &addr,
            "GET",
            &format!("/connection/sse?cf_connect={q}"),
            &[],
            b"",
        )
        .await;
        assert!(f.next().await.unwrap()["connect"]["subs"]["big"].is_object());
        let slow_before = metric(&addr, "wshub_client_slow_disconnects_total").await;
        let grace = token("grace", &["big"]);
        let q = url_escape(&serde_json::json!({"id": 1, "connect": {"token": grace}}).to_string());
        let mut g = request(
            &addr,
            "GET",
            &format!("/connection/sse?cf_connect={q}"),
            &[],
            b"",
        )
        .await;
        assert!(g.next().await.unwrap()["connect"]["subs"]["big"].is_object());
        let reader = tokio::spawn(async move {
            let mut got = 0u64;
            while let Some(m) = g.message().await {
                if m["push"]["pub"].is_object() {
                    got += 1;
                }
                if let Some(code) = m["push"]["disconnect"]["code"].as_u64() {
                    return (got, Some(code));
                }
            }
            (got, None)
        });
        let blob = "x".repeat(32 * 1024);
        let t = Instant::now();
        let mut n = 0u64;
        while metric(&addr, "wshub_client_slow_disconnects_total").await == slow_before {
            assert!(
                t.elapsed() < WAIT,
                "not disconnected after {n} publications of 32 KiB"
            );
            api(
                &addr,
                "publish",
                serde_json::json!({"channel": "big", "data": {"blob": blob}}),
            )
            .await;
            n += 1;
        }
        eprintln!(
            "the client that does not read was a slow consumer after {n} publications of 32 KiB"
        );
        assert_eq!(
            metric(&addr, "wshub_client_slow_disconnects_total").await,
            slow_before + 1
        );
        drop(f);
        // Grace, who reads, got every publication and is still there.
        api(
            &addr,
            "disconnect",
            serde_json::json!({"user": "grace", "disconnect": {"code": 4000, "reason": "done"}}),
        )
        .await;
        let (got, code) = reader.await.unwrap();
        assert_eq!(code, Some(4000));
        assert_eq!(got, n, "the reading client got every publication");
    });
}

/// The emulation endpoint runs an http_stream session's commands and
/// answers each 204 once they ran, while forged, stolen and malformed
/// requests get clear errors and leave the session alone.
#[test]
fn emulation_runs_commands_and_refuses_forged_stolen_and_malformed_requests() {
    let (_server, url) = wshub_serve(&config());
    let addr = host(&url);
    runtime().block_on(async {
        let (mut alice, alice_client, session, node) =
            http_stream(&addr, serde_json::json!({"token": token("alice", &[])})).await;
        assert_ne!(alice_client, session, "the session id must not be the public client id");
        let (st, _) = emulate(
            &addr,
            &session,
            &node,
            "{\"id\":2,\"subscribe\":{\"channel\":\"room\"}}\n{\"id\":3,\"presence\":{\"channel\":\"room\"}}",
        )
        .await;
        assert_eq!(st, 204);
        let sub = alice.next().await.unwrap();
        assert_eq!(sub["id"], 2, "{sub}");
        assert!(sub["subscribe"].is_object(), "{sub}");
        let pres = alice.next().await.unwrap();
        assert_eq!(pres["id"], 3);
        assert!(pres["presence"]["presence"][&alice_client].is_object(), "{pres}");

        // Mallory, another user, knows alice's client id (presence shows
        // it) and tries it as a session id: 404, nothing runs.
        let (_mallory, _, m_session, _) =
            http_stream(&addr, serde_json::json!({"token": token("mallory", &[])})).await;
        let steal = "{\"id\":9,\"publish\":{\"channel\":\"room\",\"data\":{\"from\":\"mallory\"}}}";
        assert_eq!(emulate(&addr, &alice_client, &node, steal).await.0, 404);
        assert_eq!(emulate(&addr, "forged-session", &node, steal).await.0, 404);
        assert_eq!(emulate(&addr, &m_session, "no-such-node", steal).await.0, 404);
        for bad in [&b"garbage"[..], b"{}", b"{\"session\":1}", b"{\"session\":\"s\",\"node\":\"n\"}"] {
            let r = request(&addr, "POST", "/emulation", &[("Connection", "close")], bad).await;
            assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
        }
        let huge = serde_json::json!({"session": session, "node": node, "data": "x".repeat(70_000)});
        let r = request(&addr, "POST", "/emulation", &[], huge.to_string().as_bytes()).await;
        assert_eq!(r.status, 413);
        let r = request(&addr, "GET", "/emulation", &[("Connection", "close")], b"").await;
        assert_eq!(r.status, 405);
        // Commands that are not commands end the session (3501), on its
        // stream, like a bad frame on WebSocket.
        let (mut bob, _, b_session, b_node) = http_stream(&addr, serde_json::json!({})).await;
        assert_eq!(emulate(&addr, &b_session, &b_node, "not json").await.0, 204);
        let d = bob.next().await.unwrap();
        assert_eq!(d["push"]["disconnect"]["code"], 3501, "{d}");
        assert!(bob.message().await.is_none(), "the stream ends after the disconnect");
        assert_eq!(emulate(&addr, &b_session, &b_node, "{}").await.0, 404);

        // Alice's session is untouched: a publication reaches her, and
        // nothing of mallory's was published.
        api(&addr, "publish", serde_json::json!({"channel": "room", "data": {"from": "api"}})).await;
        let p = alice.next().await.unwrap();
        assert_eq!(p["push"]["pub"]["data"]["from"], "api", "{p}");
        let h = api(&addr, "history", serde_json::json!({"channel": "room", "limit": 10})).await;
        assert_eq!(h["result"]["publications"].as_array().unwrap().len(), 1, "{h}");
        assert!(metric(&addr, "wshub_emulation_requests_total{outcome=\"unknown_session\"}").await >= 3);
        assert_eq!(metric(&addr, "wshub_emulation_requests_total{outcome=\"unknown_node\"}").await, 1);
    });
}

/// Every fallback endpoint checks the origin (403 for one not in
/// `client.allowed_origins`, CORS headers naming an allowed one, nothing
/// needed without `Origin`), answers preflights, refuses other methods,
/// oversized and stalled bodies, and garbage connect commands.
#[test]
fn origins_methods_and_bodies_are_checked_on_every_fallback_endpoint() {
    let (_server, url) = wshub_serve(&config());
    let addr = host(&url);
    runtime().block_on(async {
        let connect = br#"{"id":1,"connect":{}}"#;
        for path in [
            "/connection/http_stream",
            "/connection/uni_http_stream",
            "/connection/sse",
            "/connection/uni_sse",
            "/emulation",
        ] {
            let r = request(
                &addr,
                "POST",
                path,
                &[("Origin", "http://evil.example"), ("Connection", "close")],
                connect,
            )
            .await;
            assert_eq!(r.status, 403, "{path}");
            let r = request(
                &addr,
                "OPTIONS",
                path,
                &[
                    ("Origin", ALLOWED),
                    ("Access-Control-Request-Method", "POST"),
                    ("Access-Control-Request-Headers", "content-type"),
                    ("Connection", "close"),
                ],
                b"",
            )
            .await;
            assert_eq!(r.status, 204, "{path}");
            assert_eq!(r.header("access-control-allow-origin"), Some(ALLOWED), "{path}");
            assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
            assert!(r.header("access-control-allow-methods").unwrap().contains("POST"));
            let r = request(&addr, "PUT", path, &[("Connection", "close")], b"").await;
            assert_eq!(r.status, 405, "{path}");
        }
        // An allowed origin streams, with CORS headers.
        let mut r = request(
            &addr,
            "POST",
            "/connection/http_stream",
            &[("Origin", ALLOWED)],
            connect,
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("access-control-allow-origin"), Some(ALLOWED));
        assert_eq!(r.header("x-accel-buffering"), Some("no"));
        assert!(r.next().await.unwrap()["connect"]["session"].is_string());
        // SSE from a browser: GET with cf_connect.
        let q = url_escape(r#"{"id":1,"connect":{}}"#);
        let mut r = request(
            &addr,
            "GET",
            &format!("/connection/sse?cf_connect={q}"),
            &[("Origin", ALLOWED), ("Accept", "text/event-stream")],
            b"",
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
        assert!(r.next().await.unwrap()["connect"]["pong"] == true);
        let r = request(&addr, "GET", "/connection/sse", &[("Connection", "close")], b"").await;
        assert_eq!(r.status, 400, "no cf_connect");
        // Oversized and stalled bodies.
        let big = vec![b' '; 70_000];
        for path in ["/connection/http_stream", "/connection/uni_http_stream"] {
            let r = request(&addr, "POST", path, &[("Connection", "close")], &big).await;
            assert_eq!(r.status, 413, "{path}");
        }
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /connection/http_stream HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"id\":1")
            .await
            .unwrap();
        let t = Instant::now();
        let r = read_head(BufReader::new(s)).await;
        assert_eq!(r.status, 408);
        assert!(t.elapsed() >= Duration::from_millis(1900), "{:?}", t.elapsed());
        // A garbage connect command: the stream says 3501 and ends.
        let r = request(&addr, "POST", "/connection/http_stream", &[], b"\x00\xffgarbage").await;
        assert_eq!(r.status, 200);
        let rest = r.rest().await;
        assert!(rest.contains("\"disconnect\":{\"code\":3501"), "{rest}");
    });
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// One round of [`ten_thousand_half_open_streams_leave_nothing_behind`]:
/// opens `n` streams, keeps every other pair open and unread, stalls 1,000
/// bodies, waits for every session to end, closes everything; returns the
/// server's peak RSS.
async fn half_open_round(addr: &str, pid: u32, n: usize, fds_before: usize) -> u64 {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
    let sse_path = format!(
        "/connection/sse?cf_connect={}",
        url_escape(r#"{"id":1,"connect":{}}"#)
    );
    for i in 0..n {
        let addr = addr.to_owned();
        let sse_path = sse_path.clone();
        let permit = sem.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let _permit = permit;
            let mut r = if i % 2 == 0 {
                request(
                    &addr,
                    "POST",
                    "/connection/http_stream",
                    &[],
                    br#"{"id":1,"connect":{}}"#,
                )
                .await
            } else {
                request(&addr, "GET", &sse_path, &[], b"").await
            };
            assert_eq!(r.status, 200);
            assert!(r.next().await.is_some(), "no connect reply");
            // Half vanish at once; the rest stay open and are never read.
            (i % 4 < 2).then_some(r)
        });
    }
    let mut held = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(r) = r.unwrap() {
            held.push(r);
        }
    }
    let opened = started.elapsed();
    let mut stalled = Vec::new();
    for _ in 0..1000 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /connection/http_stream HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{",
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    let peak = proc_status(pid, "VmRSS");
    eprintln!(
        "opened {n} streams in {opened:?}; {} held half-open, 1000 stalled bodies; server fds {} (before {fds_before}), RSS {} KiB",
        held.len(),
        open_fds(pid),
        peak / 1024
    );
    // The held ones answer no ping: dead streams, found by the pong timeout.
    let t = Instant::now();
    loop {
        let clients = metric(addr, "wshub_node_num_clients").await;
        if clients == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{clients} sessions still open after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "every session ended {:?} after the last opened",
        t.elapsed()
    );
    drop(held);
    drop(stalled);
    let t = Instant::now();
    while open_fds(pid) > fds_before + 16 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "server fds {} after the clients went (before: {fds_before})",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    peak
}

/// 10,000 streams (HTTP-streaming and SSE) whose clients connect and then
/// vanish, half of them without closing (sockets kept open, never read),
/// and 1,000 bodies that never finish, three times: every session ends,
/// every socket is closed (fds back to where they were), RSS does not grow
/// from round to round, and the server still serves.
#[test]
fn ten_thousand_half_open_streams_leave_nothing_behind() {
    const STREAMS: usize = 10_000;
    let mut cfg: serde_json::Value = serde_json::from_str(&config()).unwrap();
    // Dead streams are found by the ping (every 3 s) and the pong timeout
    // (2 s), or by a write that fails; stalled bodies by the 2 s deadline.
    cfg["client"]["ping_interval"] = "3s".into();
    cfg["client"]["pong_timeout"] = "2s".into();
    // One IP opens them all: no per-IP bounds here (they apply to streams
    // as to WebSockets: 429 past them).
    cfg["limits"] = serde_json::json!({"connections_per_ip": 0, "connect_rate_per_ip": 0});
    let (server, url) = wshub_serve(&cfg.to_string());
    let addr = host(&url);
    let pid = server.pid();
    let fds_before = open_fds(pid);
    runtime().block_on(async {
        // RSS is not the heap: the allocator keeps freed pages, so after a
        // round it stays well above where it started (about 85% of the
        // round's peak), and where it settles after a round moves with the
        // allocator's arenas and the timing (measured: +1 MB to +15 MB a
        // round, with the peaks flat or falling). What a leak would show is
        // the peaks rising: a session left behind costs some 28 KB, 10,000
        // of them 280 MB a round. The third round's peak must stay within
        // 5% of the first round's peak of the second's (a leak of more than
        // about 1 KB per session).
        let mut peaks = Vec::new();
        let mut afters = Vec::new();
        for _ in 0..3 {
            peaks.push(half_open_round(&addr, pid, STREAMS, fds_before).await);
            afters.push(proc_status(pid, "VmRSS"));
        }
        let kib = |v: &[u64]| v.iter().map(|b| b / 1024).collect::<Vec<_>>();
        eprintln!(
            "RSS KiB: peaks {:?}, after each round {:?}",
            kib(&peaks),
            kib(&afters)
        );
        assert!(
            peaks[2] <= peaks[1] + peaks[0] / 20,
            "RSS grew from round to round: peaks {peaks:?}, afters {afters:?}"
        );
        assert_eq!(metric(&addr, "wshub_node_num_clients").await, 0);
        // Still serving.
        let (mut s, _, session, node) = http_stream(&addr, serde_json::json!({})).await;
        let (st, _) = emulate(
            &addr,
            &session,
            &node,
            "{\"id\":2,\"presence_stats\":{\"channel\":\"x\"}}",
        )
        .await;
        assert_eq!(st, 204);
        assert_eq!(s.next().await.unwrap()["id"], 2);
    });
}
