//! The HTTP front of `wshub serve` under connection attacks, as processes:
//! sockets that never finish a request, never send a byte, stay idle after
//! a response or stall the TLS handshake are all closed by their timeouts
//! while normal WebSocket clients keep connecting fast; and a node whose
//! open-file limit is low answers every connection over its capacity with
//! a quick 503 instead of leaving it in the accept queue.
//!
//! Each test spawns its own `wshub serve` (the capacity tests under
//! `ulimit -n 2000`); the tests of this module run one at a time (they
//! hold thousands of sockets and measure latencies).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use wshub_ws::{ClientOptions, MaybeTlsStream, WebSocket, WsError};

use crate::support::{http_response, Proc, STARTUP};

/// One test of this module at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wshub-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `wshub serve` on 127.0.0.1:0 with `args`, under `ulimit -n` when given;
/// returns the process and its `host:port`.
fn serve(name: &str, nofile: Option<u32>, args: &[&str]) -> (Proc, String) {
    let bin = env!("CARGO_BIN_EXE_wshub");
    let mut script = String::new();
    if let Some(n) = nofile {
        script.push_str(&format!("ulimit -n {n} && "));
    }
    script.push_str(&format!("exec '{bin}' serve --listen 127.0.0.1:0"));
    for a in args {
        script.push_str(&format!(" '{a}'"));
    }
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    let mut p = Proc::spawn(name, cmd);
    let line = p.wait_for_line("its listening line", STARTUP, |l| {
        l.starts_with("listening on ")
    });
    let addr = line
        .split_once("://")
        .map(|(_, a)| a.to_owned())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    (p, addr)
}

/// `GET path` with `Connection: close`: the status and the body.
async fn get(addr: &str, path: &str) -> (u16, String) {
    tokio::time::timeout(Duration::from_secs(10), async {
        let s = TcpStream::connect(addr).await.expect("connect");
        get_on(s, addr, path).await
    })
    .await
    .expect("GET timed out")
}

/// `GET path` over TLS (trusting `ca`), `Connection: close`.
async fn get_tls(
    addr: &str,
    path: &str,
    ca: rustls::pki_types::CertificateDer<'static>,
) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    tokio::time::timeout(Duration::from_secs(10), async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let s = connector.connect(name, tcp).await.expect("TLS handshake");
        get_on(s, addr, path).await
    })
    .await
    .expect("GET over TLS timed out")
}

/// Sends `GET path` with `Connection: close` on `s` and reads the answer
/// to the end: the status and the body.
async fn get_on<S>(mut s: S, addr: &str, path: &str) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    http_response(&out)
}

/// The value of the sample `name` (with its labels, as printed) in
/// `/metrics`.
async fn metric(addr: &str, sample: &str) -> u64 {
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "/metrics: {body}");
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in /metrics"))
}

/// Connects, sends connect and subscribe in one frame, waits for the
/// subscribe reply.
async fn subscribe(url: &str, opts: &ClientOptions) -> Result<WebSocket<MaybeTlsStream>, WsError> {
    subscribe_staged(url, opts, &std::sync::atomic::AtomicU8::new(0)).await
}

/// [`subscribe`], telling how far it got: 0 opening handshake, 1 replies.
async fn subscribe_staged(
    url: &str,
    opts: &ClientOptions,
    stage: &std::sync::atomic::AtomicU8,
) -> Result<WebSocket<MaybeTlsStream>, WsError> {
    let mut ws = wshub_ws::connect(url, opts).await?;
    stage.store(1, std::sync::atomic::Ordering::Relaxed);
    // A channel of its own: with join/leave on (the development defaults)
    // a shared one would push every newcomer to all the held clients.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ws.send_text(&format!(
        "{{\"id\":1,\"connect\":{{}}}}\n{{\"id\":2,\"subscribe\":{{\"channel\":\"hold{n}\"}}}}"
    ))
    .await?;
    loop {
        let msg = match ws.recv().await {
            Some(m) => m?,
            None => return Err(WsError::Closed),
        };
        let text = String::from_utf8_lossy(msg.as_bytes()).into_owned();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            if v["id"] == 2 {
                assert!(v["subscribe"].is_object(), "subscribe failed: {line}");
                return Ok(ws);
            }
            assert!(v["error"].is_null(), "command failed: {line}");
        }
    }
}

fn is_503(e: &WsError) -> bool {
    matches!(e, WsError::Handshake(h)
        if matches!(**h, wshub_proto::handshake::HandshakeError::UnexpectedStatus(503)))
}

/// Opens `n` TCP connections to `addr` and writes `first` on each, one
/// every 2 ms (500 a second, evenly: the attack is holding sockets, not a
/// connection flood, which the per-IP rate limits are for). Each comes
/// with the instant before its connect.
async fn open_many(addr: &str, n: usize, first: &'static [u8]) -> Vec<(TcpStream, Instant)> {
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut set = JoinSet::new();
    for _ in 0..n {
        tick.tick().await;
        let a = addr.to_owned();
        set.spawn(async move {
            let t = Instant::now();
            let mut s = TcpStream::connect(a).await.expect("connect");
            s.write_all(first).await.expect("write");
            (s, t)
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(s) = set.join_next().await {
        out.push(s.unwrap());
    }
    out
}

/// Waits until the server closes `s` (end of file or reset); when it did.
async fn closed_at(mut s: TcpStream) -> Instant {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return Instant::now(),
            Ok(_) => {}
        }
    }
}

/// Reads one `/health` response (head and a `Content-Length` body).
async fn read_response(s: &mut TcpStream) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = s.read(&mut buf).await.expect("read response");
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            if body.len() >= len {
                return;
            }
        }
    }
}

/// A WebSocket client that connects (TCP, upgrade, connect command and
/// its reply) to each of its URLs in turn, pausing 5 ms after each round,
/// on a thread and runtime of its own (so that the attack tasks of the
/// test's runtime do not delay it), and records how long each connect
/// took, per URL.
struct Probe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<Duration>>>,
}

impl Probe {
    fn start(urls: Vec<String>) -> Probe {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let mut lat = vec![Vec::new(); urls.len()];
                    let opts = ClientOptions::default();
                    while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                        for (url, lat) in urls.iter().zip(&mut lat) {
                            let t0 = Instant::now();
                            let mut ws =
                                wshub_ws::connect(url, &opts).await.expect("probe connect");
                            ws.send_text("{\"id\":1,\"connect\":{}}").await.unwrap();
                            let reply = ws.recv().await.expect("probe reply").expect("probe read");
                            lat.push(t0.elapsed());
                            assert!(
                                String::from_utf8_lossy(reply.as_bytes()).contains("\"connect\""),
                                "probe: no connect reply"
                            );
                            drop(ws);
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    lat
                })
        });
        Probe { stop, thread }
    }

    /// Stops it; the connect times per URL.
    fn finish(self) -> Vec<Vec<Duration>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("probe panicked")
    }
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[(v.len() * 99).div_ceil(100).saturating_sub(1)]
}

// Long enough that all 4,000 sockets, opened at 500 a second (TLS,
// silent, partial, idle), are held at once before the first is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(6);
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
const TLS_TIMEOUT: Duration = Duration::from_secs(8);
/// How late after its timeout a socket may be closed.
const SLACK: Duration = Duration::from_secs(30);
/// How early (timer granularity) it may be closed.
const EARLY: Duration = Duration::from_millis(50);
const ATTACK: usize = 1000;

fn timeout_config(dir: &std::path::Path) -> PathBuf {
    let cfg = dir.join("config.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "http_server": {
                "read_header_timeout": "6s",
                "idle_timeout": "2s",
                "tls_handshake_timeout": "8s",
            },
            "client": { "allow_anonymous_connect_without_token": true },
            "channel": { "without_namespace": {
                "allow_subscribe_for_client": true,
                "allow_subscribe_for_anonymous": true,
            }},
            "http_api": { "insecure": true },
            "prometheus": { "enabled": true },
            "health": { "enabled": true },
            "limits": { "connections_per_ip": 0, "connect_rate_per_ip": 0 },
        })
        .to_string(),
    )
    .unwrap();
    cfg
}

/// 1,000 sockets of each kind — silent, half a request head, idle after a
/// response, half a TLS handshake — all held at once, are each closed by
/// its timeout (not before it, at most 30 s after it) and counted by
/// phase in `/metrics`, while a WebSocket client connecting over and over
/// keeps a p99 connect time (TCP, upgrade, connect reply) under 50 ms. On
/// a loaded machine the bound grows by what the machine alone adds: an
/// unattacked control server, probed in turn with the attacked one, tells
/// that (its p99 beyond 10 ms). A WebSocket held past both HTTP timeouts
/// and an API request whose body takes longer than either are not cut.
#[test]
fn timeouts_close_stalled_sockets_while_clients_connect() {
    let _serial = serial();
    let dir = temp_dir("front-timeouts");
    let cfg = timeout_config(&dir);
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let (plain_proc, plain) = serve("wshub-plain", None, &["-c", cfg_s]);
    let (tls_proc, tls) = serve(
        "wshub-tls",
        None,
        &[
            "-c",
            cfg_s,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    // A control: the same server, not attacked, probed in turn with the
    // attacked one, tells how much of the connect time is the machine's.
    let (control_proc, control) = serve("wshub-control", None, &["-c", cfg_s]);
    let rt = runtime();
    rt.block_on(async {
        let url = format!("ws://{plain}/connection/websocket");
        let probe = Probe::start(vec![url, format!("ws://{control}/connection/websocket")]);
        // A WebSocket that will outlive both HTTP timeouts.
        let mut held = subscribe(
            &format!("ws://{plain}/connection/websocket"),
            &ClientOptions::default(),
        )
        .await
        .expect("held websocket");
        // An API call whose body arrives over 7 s (longer than the header
        // and the idle timeout).
        let slow_api = {
            let plain = plain.clone();
            tokio::spawn(async move {
                let body = br#"{"channel":"hold","data":{"x":1}}"#;
                let mut s = TcpStream::connect(&plain).await.unwrap();
                let head = format!(
                    "POST /api/publish HTTP/1.1\r\nHost: {plain}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).await.unwrap();
                for chunk in body.chunks(5) {
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    s.write_all(chunk).await.unwrap();
                }
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out).await;
                String::from_utf8_lossy(&out).into_owned()
            })
        };

        let mut closes: JoinSet<(&'static str, Duration, Duration)> = JoinSet::new();
        // A TLS record header and part of a ClientHello, then nothing.
        const HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03];
        for (s, t) in open_many(&tls, ATTACK, HELLO).await {
            closes.spawn(async move { ("tls", TLS_TIMEOUT, closed_at(s).await - t) });
        }

        // Silent TCP: the header timeout runs from the accept.
        for (s, t) in open_many(&plain, ATTACK, b"").await {
            closes.spawn(async move { ("silent", HEADER_TIMEOUT, closed_at(s).await - t) });
        }
        // Half a request head.
        for (s, t) in open_many(&plain, ATTACK, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await {
            closes.spawn(async move { ("partial", HEADER_TIMEOUT, closed_at(s).await - t) });
        }
        // Idle keep-alive after a response: the idle timeout runs from the
        // end of the response, which is after `t`.
        for (mut s, t) in open_many(&plain, ATTACK, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await {
            closes.spawn(async move {
                read_response(&mut s).await;
                ("idle", IDLE_TIMEOUT, closed_at(s).await - t)
            });
        }
        let mut worst = std::collections::BTreeMap::<&str, (usize, Duration)>::new();
        let all = tokio::time::timeout(TLS_TIMEOUT + SLACK + Duration::from_secs(10), async {
            while let Some(r) = closes.join_next().await {
                let (kind, limit, took) = r.unwrap();
                assert!(
                    took + EARLY >= limit,
                    "a {kind} socket was closed after {took:?}, before its timeout {limit:?}"
                );
                assert!(
                    took <= limit + SLACK,
                    "a {kind} socket was closed only after {took:?} (timeout {limit:?})"
                );
                let e = worst.entry(kind).or_default();
                e.0 += 1;
                e.1 = e.1.max(took);
            }
        })
        .await;
        assert!(all.is_ok(), "sockets still open: {worst:?}");
        let lat = probe.finish();
        for kind in ["silent", "partial", "idle", "tls"] {
            assert_eq!(worst.get(kind).map(|w| w.0), Some(ATTACK), "{kind}: {worst:?}");
        }
        let n = lat[0].len();
        let (p, control_p) = (p99(lat[0].clone()), p99(lat[1].clone()));
        let max = lat[0].iter().max().copied().unwrap_or_default();
        // 50 ms, plus what the machine alone added to the control's p99
        // beyond a quiet machine's 10 ms (other builds and tests sharing
        // the two cores): that part is not the attacked server's doing.
        let machine = control_p.saturating_sub(Duration::from_millis(10));
        let bound = Duration::from_millis(50) + machine;
        eprintln!(
            "closes (count, latest after its timeout's start): {worst:?}; probe connects during \
             the attack: {n}, p99 {p:?}, max {max:?}; control server p99 {control_p:?}; bound \
             {bound:?}"
        );
        assert!(n >= 50, "only {n} probe connects");
        assert!(
            p < bound,
            "probe connect p99 {p:?} during the attack (max {max:?}, n {n}; the control \
             server's p99 {control_p:?})"
        );

        // The WebSocket held all along still works.
        held.send_text("{\"id\":3,\"presence_stats\":{\"channel\":\"hold0\"}}")
            .await
            .expect("held websocket send");
        let reply = tokio::time::timeout(Duration::from_secs(5), held.recv())
            .await
            .expect("held websocket: no reply")
            .expect("held websocket closed")
            .expect("held websocket read");
        assert!(
            String::from_utf8_lossy(reply.as_bytes()).contains("\"id\":3"),
            "held websocket reply: {:?}",
            String::from_utf8_lossy(reply.as_bytes())
        );
        let api = tokio::time::timeout(Duration::from_secs(10), slow_api)
            .await
            .expect("slow API call unanswered")
            .unwrap();
        assert!(api.starts_with("HTTP/1.1 200"), "slow API call: {api}");

        let header = metric(&plain, "wshub_http_timeouts_total{phase=\"header\"}").await;
        let idle = metric(&plain, "wshub_http_timeouts_total{phase=\"idle\"}").await;
        let (status, body) = get_tls(&tls, "/metrics", ck.cert.der().clone()).await;
        assert_eq!(status, 200, "{body}");
        let tls_n: u64 = body
            .lines()
            .find_map(|l| l.strip_prefix("wshub_http_timeouts_total{phase=\"tls\"} ")?.parse().ok())
            .expect("tls timeouts sample");
        assert!(tls_n >= ATTACK as u64, "tls timeouts {tls_n}");
        assert!(header >= 2 * ATTACK as u64, "header timeouts {header}");
        assert!(idle >= ATTACK as u64, "idle timeouts {idle}");
    });
    drop(plain_proc);
    drop(tls_proc);
    drop(control_proc);
    let _ = std::fs::remove_dir_all(&dir);
}

/// What became of one client of the burst.
#[derive(Debug)]
enum Outcome {
    Subscribed(Box<WebSocket<MaybeTlsStream>>),
    Refused,
}

/// `n` clients at once, each bounded by `limit`: every one must end
/// subscribed or refused with 503 in time.
async fn burst(url: &str, n: usize, limit: Duration) -> (Vec<Outcome>, Duration) {
    let mut set = JoinSet::new();
    let t0 = Instant::now();
    for i in 0..n {
        let url = url.to_owned();
        set.spawn(async move {
            let opts = ClientOptions::default().connect_timeout(limit);
            let stage = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
            let r = tokio::time::timeout(limit, subscribe_staged(&url, &opts, &stage)).await;
            let st = stage.load(std::sync::atomic::Ordering::Relaxed);
            (i, r.map_err(|_| st), t0.elapsed())
        });
    }
    let mut out = Vec::with_capacity(n);
    let mut slowest = Duration::ZERO;
    while let Some(r) = set.join_next().await {
        let (i, r, took) = r.unwrap();
        slowest = slowest.max(took);
        match r {
            Ok(Ok(ws)) => out.push(Outcome::Subscribed(Box::new(ws))),
            Ok(Err(e)) if is_503(&e) => out.push(Outcome::Refused),
            Ok(Err(e)) => panic!("client {i} of {n}: neither subscribed nor 503: {e}"),
            Err(stage) => panic!(
                "client {i} of {n}: no answer within {limit:?} ({})",
                ["opening handshake", "connect and subscribe replies"][usize::from(stage.min(1))]
            ),
        }
    }
    (out, slowest)
}

fn split(outcomes: Vec<Outcome>) -> (Vec<WebSocket<MaybeTlsStream>>, usize) {
    let mut subscribed = Vec::new();
    let mut refused = 0;
    for o in outcomes {
        match o {
            Outcome::Subscribed(ws) => subscribed.push(*ws),
            Outcome::Refused => refused += 1,
        }
    }
    (subscribed, refused)
}

/// Holds subscribed clients until the node refuses one (with 503), in
/// bursts of 100; at most `max`.
async fn fill(url: &str, max: usize) -> Vec<WebSocket<MaybeTlsStream>> {
    let mut held = Vec::new();
    while held.len() < max {
        let (out, _) = burst(url, (max - held.len()).min(100), Duration::from_secs(10)).await;
        let (mut subscribed, refused) = split(out);
        held.append(&mut subscribed);
        if refused > 0 {
            break;
        }
    }
    held
}

/// Waits (bounded) until one new client is accepted again.
async fn until_accepted(url: &str) -> WebSocket<MaybeTlsStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match subscribe(url, &ClientOptions::default()).await {
            Ok(ws) => return ws,
            Err(e) if is_503(&e) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no client accepted again after closing some: {e}"),
        }
    }
}

/// Whether the server's stderr shows `needle` within a few seconds: stdout
/// (where the test saw "listening on") and stderr are collected by separate
/// reader threads, so a start-up line on stderr may arrive a moment later.
fn stderr_shows(p: &Proc, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if p.stderr_so_far().contains(needle) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const NOFILE: u32 = 2000;
const BURST: usize = 500;
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Under `ulimit -n 2000` the node caps itself at 1,900 sockets: it holds
/// 1,900 subscribed clients, answers each of 500 more at once with a 503
/// within 5 s, and accepts clients again as soon as held ones close.
#[test]
fn over_capacity_clients_get_503_at_once() {
    let _serial = serial();
    let (p, addr) = serve("wshub-capped", Some(NOFILE), &[]);
    let url = format!("ws://{addr}/connection/websocket");
    let cap = wshub_server::capacity::default_max_connections(u64::from(NOFILE)) as usize;
    assert!(
        stderr_shows(&p, &format!("capacity: {cap} open connections")),
        "{}",
        p.diagnostics()
    );
    let rt = runtime();
    rt.block_on(async {
        let mut held = fill(&url, cap).await;
        assert_eq!(held.len(), cap, "held {} of the cap {cap}", held.len());
        let (out, slowest) = burst(&url, BURST, ANSWER_WITHIN).await;
        let (mut extra, refused) = split(out);
        eprintln!(
            "capped: held {}, burst of {BURST}: {} subscribed, {refused} refused, slowest {slowest:?}",
            held.len(),
            extra.len()
        );
        assert_eq!(refused, BURST, "at the cap every new client is refused");
        held.append(&mut extra);
        // Closing held clients makes room again at once.
        held.truncate(held.len() - 100);
        let first = until_accepted(&url).await;
        let (out, slowest) = burst(&url, 50, ANSWER_WITHIN).await;
        let (again, refused) = split(out);
        assert_eq!(
            (again.len(), refused),
            (50, 0),
            "after closing 100, slowest {slowest:?}"
        );
        drop((first, again));
        drop(held);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n = metric(
            &addr,
            "wshub_http_connections_refused_total{reason=\"max_connections\"}",
        )
        .await;
        assert!(n >= BURST as u64, "refusals counted: {n}");
    });
    drop(p);
}

/// With `http_server.max_connections` set above what `ulimit -n 2000`
/// allows, `accept` itself runs out of descriptors: the spare descriptor
/// still lets the node answer each of 500 clients at once with a 503
/// within 5 s (none waits in the queue), it logs the shedding a few times
/// rather than per connection, and it accepts clients again once held ones
/// close.
#[test]
fn out_of_descriptors_clients_get_503_at_once() {
    let _serial = serial();
    let dir = temp_dir("front-emfile");
    let cfg = dir.join("config.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "http_server": { "max_connections": 5000 },
            "client": { "allow_anonymous_connect_without_token": true },
            "channel": { "without_namespace": {
                "allow_subscribe_for_client": true,
                "allow_subscribe_for_anonymous": true,
            }},
            "prometheus": { "enabled": true },
            "limits": { "connections_per_ip": 0, "connect_rate_per_ip": 0 },
        })
        .to_string(),
    )
    .unwrap();
    let (p, addr) = serve(
        "wshub-emfile",
        Some(NOFILE),
        &["-c", cfg.to_str().unwrap(), "--log", "warn"],
    );
    assert!(
        stderr_shows(&p, "above what the open-file limit"),
        "no warning about max_connections over the descriptor limit\n{}",
        p.diagnostics()
    );
    let url = format!("ws://{addr}/connection/websocket");
    let rt = runtime();
    rt.block_on(async {
        let mut held = fill(&url, NOFILE as usize).await;
        assert!(
            held.len() > NOFILE as usize - 100 && held.len() < NOFILE as usize,
            "held {}",
            held.len()
        );
        let (out, slowest) = burst(&url, BURST, ANSWER_WITHIN).await;
        let (mut extra, refused) = split(out);
        eprintln!(
            "out of descriptors: held {}, burst of {BURST}: {} subscribed, {refused} refused, \
             slowest {slowest:?}",
            held.len(),
            extra.len()
        );
        assert!(refused >= BURST - 5, "{refused} of {BURST} refused");
        held.append(&mut extra);
        held.truncate(held.len() - 100);
        let first = until_accepted(&url).await;
        let (out, _) = burst(&url, 50, ANSWER_WITHIN).await;
        let (again, refused) = split(out);
        assert_eq!((again.len(), refused), (50, 0), "after closing 100");
        drop((first, again));
        let n = metric(
            &addr,
            "wshub_http_connections_refused_total{reason=\"no_descriptors\"}",
        )
        .await;
        assert!(
            n >= refused as u64 + BURST as u64 - 5,
            "refusals counted: {n}"
        );
        drop(held);
    });
    let log = p.stderr_so_far();
    let lines = log.matches("ran out of file descriptors").count();
    assert!(
        (1..=20).contains(&lines),
        "{lines} shedding log lines (want a few, with counts)\n{}",
        p.diagnostics()
    );
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
