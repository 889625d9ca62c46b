//! `wshub bench latency`: open-loop echo latency. Messages go out at a
//! fixed total rate, round-robin over the connections, whatever the server
//! does; each echo's latency is measured from the time its message was
//! *scheduled*, so a stall shows up in full instead of being hidden by the
//! sender waiting (no coordinated omission).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use wshub_proto::frame::OpCode;

use super::raw::{self, Controls, Scanner, Scratch, Target};

/// `wshub bench latency` flags.
#[derive(clap::Args)]
pub struct LatencyArgs {
    /// The echo server.
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// Connections (messages are spread over them round-robin).
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Total messages per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u32,
    /// Message payload size in bytes.
    #[arg(long, default_value_t = 20)]
    size: usize,
    /// Seconds of measurement (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Send binary messages (default: text).
    #[arg(long)]
    binary: bool,
}

struct Conn {
    /// Scheduled send times (ns since the start) of the messages in flight;
    /// `None` for warm-up messages, which are not recorded.
    sent: RefCell<VecDeque<Option<u64>>>,
}

struct Shared {
    hist: RefCell<Histogram<u64>>,
    received: Cell<u64>,
    errors: Cell<u64>,
    stop: Cell<bool>,
}

/// Within this much of a send time the sender stops sleeping (the timer has
/// millisecond resolution) and yields to the other tasks until it is due.
const SPIN: Duration = Duration::from_micros(1500);

pub async fn run(a: LatencyArgs) -> Result<()> {
    let target = Target::parse(&a.url)?;
    let n = a.connections.max(1);
    eprintln!(
        "latency: {} msg/s over {n} connections, {} B, to {}",
        a.rate, a.size, a.url
    );
    let frame = raw::client_frame(&raw::payload(a.size), a.binary, None);
    let shared = Rc::new(Shared {
        hist: RefCell::new(Histogram::new_with_bounds(1, 60_000_000_000, 3).context("histogram")?),
        received: Cell::new(0),
        errors: Cell::new(0),
        stop: Cell::new(false),
    });
    let scratch = Scratch::new();
    let base = Instant::now();
    let mut writers: Vec<(OwnedWriteHalf, Rc<Conn>)> = Vec::with_capacity(n);
    for i in 0..n {
        let o = raw::open(&target, None, None)
            .await
            .with_context(|| format!("connection {i}"))?;
        let (rd, wr) = o.stream.into_split();
        let scanner = o.scanner;
        let conn = Rc::new(Conn {
            sent: RefCell::new(VecDeque::new()),
        });
        writers.push((wr, conn.clone()));
        let (shared, scratch) = (shared.clone(), scratch.clone());
        tokio::task::spawn_local(async move {
            if reader(rd, scanner, &conn, &shared, &scratch, base)
                .await
                .is_err()
                && !shared.stop.get()
            {
                shared.errors.set(shared.errors.get() + 1);
            }
        });
    }

    let interval = 1e9 / f64::from(a.rate.max(1));
    let start = Instant::now();
    let start_ns = start.duration_since(base).as_nanos() as u64;
    let warm_ns = (a.warmup * 1e9) as u64;
    let total_ns = warm_ns + (a.duration * 1e9) as u64;
    let mut j: u64 = 0;
    let mut sent_measured = 0u64;
    // The first report time only takes the count at the end of the warm-up.
    let mut next_report = start + Duration::from_secs_f64(a.warmup);
    let mut last_received: Option<u64> = None;
    let write_errors = Cell::new(0u64);
    loop {
        let due_rel = (j as f64 * interval) as u64;
        if due_rel >= total_ns {
            break;
        }
        let due = start + Duration::from_nanos(due_rel);
        let now = Instant::now();
        if now >= next_report {
            let r = shared.received.get();
            if let Some(last) = last_received {
                eprintln!(
                    "{:>5.1}s  echoes/s {:>8}  p99 {:>8.1} us  errors {}",
                    now.duration_since(start).as_secs_f64() - a.warmup,
                    r - last,
                    shared.hist.borrow().value_at_quantile(0.99) as f64 / 1e3,
                    shared.errors.get() + write_errors.get()
                );
            }
            last_received = Some(r);
            next_report += Duration::from_secs(1);
        }
        if due > now {
            if due - now > SPIN * 2 {
                tokio::time::sleep_until((due - SPIN).into()).await;
            } else {
                tokio::task::yield_now().await;
            }
            continue;
        }
        let (wr, conn) = &mut writers[(j % n as u64) as usize];
        let measured = due_rel >= warm_ns;
        conn.sent
            .borrow_mut()
            .push_back(measured.then_some(start_ns + due_rel));
        if measured {
            sent_measured += 1;
        }
        if write(wr, &frame).await.is_err() {
            write_errors.set(write_errors.get() + 1);
        }
        j += 1;
        // When behind schedule, still let the readers run now and then.
        if j.is_multiple_of(32) {
            tokio::task::yield_now().await;
        }
    }
    // Wait for the last echoes.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle && writers.iter().any(|(_, c)| !c.sent.borrow().is_empty()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shared.stop.set(true);
    let lost: usize = writers.iter().map(|(_, c)| c.sent.borrow().len()).sum();
    for (wr, _) in &mut writers {
        let _ = write(
            wr,
            &raw::control_frame(OpCode::Close, &1000u16.to_be_bytes()),
        )
        .await;
    }
    let h = shared.hist.borrow();
    let us = |q: f64| (h.value_at_quantile(q) as f64 / 100.0).round() / 10.0;
    let summary = serde_json::json!({
        "bench": "latency",
        "url": a.url,
        "connections": n,
        "rate": a.rate,
        "size": a.size,
        "duration_s": a.duration,
        "sent": sent_measured,
        "received": h.len(),
        "messages": h.len(),
        "lost": lost,
        "errors": shared.errors.get() + write_errors.get(),
        "latency_us": {
            "p50": us(0.50),
            "p90": us(0.90),
            "p99": us(0.99),
            "p999": us(0.999),
            "max": (h.max() as f64 / 100.0).round() / 10.0,
            "mean": (h.mean() / 100.0).round() / 10.0,
        },
    });
    println!("{summary}");
    Ok(())
}

async fn reader(
    rd: OwnedReadHalf,
    mut scanner: Scanner,
    conn: &Conn,
    shared: &Shared,
    scratch: &Scratch,
    base: Instant,
) -> Result<()> {
    let mut ctl = Controls::default();
    loop {
        let n = scratch.read_messages(&rd, &mut scanner, &mut ctl).await?;
        if n > 0 {
            let now = base.elapsed().as_nanos() as u64;
            let mut sent = conn.sent.borrow_mut();
            let mut hist = shared.hist.borrow_mut();
            for _ in 0..n {
                if let Some(Some(t)) = sent.pop_front() {
                    let _ = hist.record(now.saturating_sub(t).max(1));
                }
            }
            shared.received.set(shared.received.get() + n);
        }
        // The echo server does not ping unless configured to; a ping here
        // is left unanswered (the writer half belongs to the sender).
        ctl.pings.clear();
        if ctl.closed {
            anyhow::bail!("the server closed the connection");
        }
    }
}

async fn write(wr: &mut OwnedWriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    match wr.try_write(bytes) {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(n) => wr.write_all(&bytes[n..]).await,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wr.write_all(bytes).await,
        Err(e) => Err(e),
    }
}
