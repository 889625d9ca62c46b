//! `wshub bench multiplex`: N WebSockets as streams of one HTTP/2
//! connection (RFC 8441) or as N HTTP/1.1 connections, against an echo
//! server (`wshub echo`): the server's memory per WebSocket (VmRSS before
//! and after opening them, `--server-pid`) and closed-loop echo throughput
//! (every socket keeps one message in flight) with round-trip percentiles.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncWrite};
use wshub_proto::Message;
use wshub_ws::{connect, ClientOptions, Http2Connection, WebSocket};

/// `wshub bench multiplex` flags.
#[derive(clap::Args)]
pub struct MultiplexArgs {
    /// The echo server (`ws://HOST:PORT/`; HTTP/2 with prior knowledge).
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// `h2`: every WebSocket is a stream of one HTTP/2 connection; `h1`:
    /// one TCP connection each.
    #[arg(long, value_enum, default_value_t = Mode::H2)]
    mode: Mode,
    /// WebSockets to open.
    #[arg(long, default_value_t = 1000)]
    sockets: usize,
    /// Message size in bytes (binary).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Seconds of echo after they are open.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// The server's process id: its VmRSS before and after opening.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    H1,
    H2,
}

struct Stats {
    hist: Histogram<u64>,
    messages: u64,
    errors: u64,
}

pub async fn run(a: MultiplexArgs) -> Result<()> {
    if a.sockets == 0 {
        bail!("--sockets must be at least 1");
    }
    let rss = |pid: Option<u32>| {
        pid.and_then(|p| super::api_batch::memory(p).ok())
            .map(|m| m.0)
    };
    let before = rss(a.server_pid);
    let opts = ClientOptions::default();
    let opened_at = Instant::now();
    let stats = Rc::new(RefCell::new(Stats {
        hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        messages: 0,
        errors: 0,
    }));
    let stop = Rc::new(std::cell::Cell::new(false));
    let payload: bytes::Bytes = vec![0x5a; a.size].into();
    let mut tasks = Vec::with_capacity(a.sockets);
    let gate = Rc::new(tokio::sync::Semaphore::new(0));
    match a.mode {
        Mode::H2 => {
            let conn = Http2Connection::connect(&a.url, &opts)
                .await
                .context("HTTP/2 connection")?;
            for i in 0..a.sockets {
                let ws = conn
                    .websocket("/", &opts)
                    .await
                    .with_context(|| format!("stream {i}"))?;
                tasks.push(spawn(ws, &stats, &stop, &gate, payload.clone()));
            }
        }
        Mode::H1 => {
            for i in 0..a.sockets {
                let ws = connect(&a.url, &opts)
                    .await
                    .with_context(|| format!("connection {i}"))?;
                tasks.push(spawn(ws, &stats, &stop, &gate, payload.clone()));
            }
        }
    }
    let open_s = opened_at.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss(a.server_pid);
    eprintln!(
        "{} WebSockets open over {:?} in {open_s:.2}s; echoing for {}s",
        a.sockets, a.mode, a.duration
    );
    let cpu0 = a.server_pid.and_then(super::raw::pid_cpu_seconds);
    let started = Instant::now();
    gate.add_permits(a.sockets);
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    stop.set(true);
    let wall = started.elapsed().as_secs_f64();
    let cpu1 = a.server_pid.and_then(super::raw::pid_cpu_seconds);
    let messages = stats.borrow().messages;
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let s = stats.borrow();
    let q = |p: f64| s.hist.value_at_quantile(p) as f64 / 1000.0;
    let per_socket = match (before, after) {
        (Some(b), Some(a2)) => Some(((a2.saturating_sub(b)) * 1024) / a.sockets as u64),
        _ => None,
    };
    println!(
        "{}",
        serde_json::json!({
            "bench": "multiplex",
            "mode": format!("{:?}", a.mode).to_lowercase(),
            "sockets": a.sockets,
            "size": a.size,
            "open_s": (open_s * 1000.0).round() / 1000.0,
            "server_rss_before_kib": before,
            "server_rss_after_kib": after,
            "server_bytes_per_socket": per_socket,
            "messages_per_s": (messages as f64 / wall).round(),
            "rtt_p50_ms": q(0.5),
            "rtt_p99_ms": q(0.99),
            "errors": s.errors,
            "server_cpu_pct": cpu0.zip(cpu1).map(|(x, y)| ((y - x) / wall * 1000.0).round() / 10.0),
        })
    );
    Ok(())
}

fn spawn<S>(
    mut ws: WebSocket<S>,
    stats: &Rc<RefCell<Stats>>,
    stop: &Rc<std::cell::Cell<bool>>,
    gate: &Rc<tokio::sync::Semaphore>,
    payload: bytes::Bytes,
) -> tokio::task::JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (stats, stop, gate) = (stats.clone(), stop.clone(), gate.clone());
    tokio::task::spawn_local(async move {
        let Ok(_go) = gate.acquire().await else {
            return;
        };
        while !stop.get() {
            let t = Instant::now();
            if ws.send(Message::Binary(payload.clone())).await.is_err() {
                stats.borrow_mut().errors += 1;
                return;
            }
            match ws.recv().await {
                Some(Ok(Message::Binary(_))) => {
                    let mut s = stats.borrow_mut();
                    s.messages += 1;
                    let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let _ = s.hist.record(us.max(1));
                }
                _ => {
                    stats.borrow_mut().errors += 1;
                    return;
                }
            }
        }
        let _ = ws.close(wshub_proto::CloseCode::NORMAL, "").await;
    })
}
