//! A subscriber that stops reading on a busy channel, against a real
//! `wshub serve` process: it is cut off with 3008 (slow) once everything
//! queued to it reaches `client.queue_max_size`, the node's memory grows by
//! no more than that plus a small constant, and another subscriber of the
//! same channel gets every publication without delay.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cluster::{http, metric, temp_dir};
use crate::support::{masked_text_frame, proc_status, wshub, Proc};

const QUEUE_MAX: u64 = 4 << 20;
/// Publication payload size and rate: 50 KB × 20/s = 1 MB/s.
const PAYLOAD: usize = 50_000;
const PER_SECOND: u64 = 20;
/// Publications after the slow subscriber stopped reading (8 s).
const BUSY: u64 = 160;
/// Publications before it, to warm the node's allocator up.
const WARM: u64 = 20;
/// What the node may grow by beyond `QUEUE_MAX`: a publication in flight,
/// the reading subscriber's queue, allocator slack.
const SLACK: u64 = 2 << 20;

fn start_node() -> (Proc, SocketAddr) {
    let config = json!({
        "client": {
            "allow_anonymous_connect_without_token": true,
            "allowed_origins": ["*"],
            "queue_max_size": QUEUE_MAX,
            "ping_interval": "60s",
        },
        "http_api": { "insecure": true },
        "prometheus": { "enabled": true },
        // A stalled write must not end the connection before the queue
        // limit does (the default is 1 s).
        "websocket": { "write_timeout": "60s" },
        "channel": { "without_namespace": {
            "allow_subscribe_for_client": true,
            "allow_subscribe_for_anonymous": true,
        } },
        "limits": { "connections_per_ip": 0, "connect_rate_per_ip": 0, "commands_per_second": 0 },
    });
    let dir = temp_dir("slow-consumer");
    let path = dir.join("node.json");
    std::fs::write(&path, config.to_string()).expect("write config");
    let mut cmd = wshub();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env("RUST_LOG", "wshub_hub=info,wshub_server=info");
    let mut p = Proc::spawn("wshub serve", cmd);
    let addr = p.listening_addr();
    let _ = std::fs::remove_dir_all(dir);
    (p, addr)
}

/// A raw WebSocket client: the handshake, masked text frames out, frames in.
struct RawWs {
    s: TcpStream,
}

impl RawWs {
    /// Connects with a small receive buffer (so the kernel's buffers fill
    /// fast once it stops reading) and upgrades.
    fn connect(addr: SocketAddr, rcvbuf: Option<u32>) -> RawWs {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let s = rt.block_on(async {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            if let Some(n) = rcvbuf {
                sock.set_recv_buffer_size(n).unwrap();
            }
            sock.connect(addr).await.expect("connect")
        });
        let s = s.into_std().unwrap();
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut ws = RawWs { s };
        let req = format!(
            "GET /connection/websocket HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        ws.s.write_all(req.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            ws.s.read_exact(&mut b).expect("handshake response");
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        ws
    }

    fn send_text(&mut self, text: &str) {
        self.s.write_all(&masked_text_frame(text)).unwrap();
    }

    /// The next frame: (opcode, payload).
    fn next_frame(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h)?;
        let len = match h[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                self.s.read_exact(&mut l)?;
                u64::from(u16::from_be_bytes(l))
            }
            127 => {
                let mut l = [0u8; 8];
                self.s.read_exact(&mut l)?;
                u64::from_be_bytes(l)
            }
            n => u64::from(n),
        };
        let mut p = vec![0u8; len as usize];
        self.s.read_exact(&mut p)?;
        Ok((h[0] & 0x0f, p))
    }

    /// Connects and subscribes to `channel`; returns once the subscribe
    /// reply came.
    fn subscribe(&mut self, channel: &str) {
        self.send_text(r#"{"id":1,"connect":{}}"#);
        self.send_text(&json!({"id": 2, "subscribe": {"channel": channel}}).to_string());
        loop {
            let (op, p) = self.next_frame().expect("subscribe reply");
            assert_eq!(op, 1, "text frames only");
            for line in p.split(|&b| b == b'\n') {
                let v: Value = serde_json::from_slice(line).expect("reply JSON");
                assert!(v.get("error").is_none(), "{v}");
                if v["id"] == 2 {
                    return;
                }
            }
        }
    }
}

/// The `seq` of every publication push in a frame.
fn seqs(payload: &[u8]) -> Vec<u64> {
    payload
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter_map(|v| v["push"]["pub"]["data"]["seq"].as_u64())
        .collect()
}

#[test]
fn slow_subscriber_is_cut_off_at_queue_max_size_and_others_miss_nothing() {
    let (node, addr) = start_node();
    let pid = node.pid();
    let channel = "busy";
    let pad = "x".repeat(PAYLOAD);
    let publish = |seq: u64| {
        let body = json!({"channel": channel, "data": {"seq": seq, "pad": pad}}).to_string();
        let (status, text) = http(addr, "POST", "/api/publish", &body).expect("publish");
        assert!(
            status == 200 && !text.contains("\"error\""),
            "{status} {text}"
        );
    };

    // The reading subscriber records when each publication arrived.
    let mut reader = RawWs::connect(addr, None);
    reader.subscribe(channel);
    let arrived: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let seen = arrived.clone();
    let reader_thread = std::thread::spawn(move || {
        let total = WARM + BUSY;
        while seen.lock().unwrap().len() < total as usize {
            let (op, p) = reader.next_frame().expect("reader: frame");
            assert_eq!(op, 1, "reader: unexpected opcode {op}");
            let now = Instant::now();
            seen.lock()
                .unwrap()
                .extend(seqs(&p).into_iter().map(|s| (s, now)));
        }
    });
    for seq in 0..WARM {
        publish(seq);
        std::thread::sleep(Duration::from_millis(1000 / PER_SECOND));
    }
    std::thread::sleep(Duration::from_millis(500));
    let baseline = proc_status(pid, "VmRSS");
    // Peak RSS from here on.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");

    // The slow subscriber: subscribed, then never reads again (until it is
    // told it was cut off).
    let mut slow = RawWs::connect(addr, Some(4096));
    slow.subscribe(channel);
    let (cut_tx, cut_rx) = mpsc::channel::<()>();
    let slow_thread = std::thread::spawn(move || {
        cut_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("slow: never told");
        // Everything the node still had for it, then the close frame.
        let mut pushes = 0usize;
        loop {
            match slow.next_frame() {
                Ok((8, p)) => {
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    return (Some(code), pushes);
                }
                Ok((_, p)) => pushes += seqs(&p).len(),
                Err(_) => return (None, pushes),
            }
        }
    });

    let started = Instant::now();
    let mut published_at = Vec::new();
    let mut cut_after = None;
    for (i, seq) in (WARM..WARM + BUSY).enumerate() {
        let due = started + Duration::from_millis(i as u64 * 1000 / PER_SECOND);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        publish(seq);
        published_at.push((seq, Instant::now()));
        if cut_after.is_none() && metric(addr, "wshub_client_slow_disconnects_total") > 0 {
            cut_after = Some(started.elapsed());
            cut_tx.send(()).unwrap();
        }
    }
    let peak = proc_status(pid, "VmHWM");
    let cut_after = cut_after.unwrap_or_else(|| {
        panic!(
            "the slow subscriber was not cut off after {BUSY} publications\n{}",
            node.diagnostics()
        )
    });
    let (close_code, pushes) = slow_thread.join().unwrap();
    reader_thread.join().unwrap();

    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "slow subscriber cut off after {cut_after:?} ({pushes} pushes still delivered to it); \
         RSS baseline {} KiB, peak {} KiB, growth {} KiB (queue_max_size {} KiB)",
        baseline / 1024,
        peak / 1024,
        growth / 1024,
        QUEUE_MAX / 1024
    );
    assert_eq!(close_code, Some(3008), "the slow subscriber's close code");
    assert_eq!(metric(addr, "wshub_client_slow_disconnects_total"), 1);
    assert!(
        growth <= QUEUE_MAX + SLACK,
        "RSS grew by {growth} bytes, more than queue_max_size {QUEUE_MAX} + {SLACK}"
    );

    // The reading subscriber got every publication, in order, each within
    // a second of its publish call returning.
    let arrived = arrived.lock().unwrap();
    let order: Vec<u64> = arrived.iter().map(|(s, _)| *s).collect();
    assert_eq!(order, (0..WARM + BUSY).collect::<Vec<_>>());
    let worst = published_at
        .iter()
        .map(|(seq, at)| {
            let (_, got) = arrived[*seq as usize];
            got.saturating_duration_since(*at)
        })
        .max()
        .unwrap();
    eprintln!("reading subscriber: worst delay after publish {worst:?}");
    assert!(worst < Duration::from_secs(1), "worst delay {worst:?}");
}
