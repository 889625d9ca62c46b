//! `wshub bench echo`: closed-loop echo load with the semantics of
//! uWebSockets' `load_test`: every connection keeps `--pipeline` messages in
//! flight and sends one more for each echo it gets back. Frames are built
//! once (masked, and compressed when deflate was negotiated) and the same
//! bytes are written again and again.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wshub_proto::frame::OpCode;
use wshub_proto::DeflateConfig;

use super::raw::{self, Controls, Scanner, Scratch, Target};

/// `wshub bench echo` flags.
#[derive(clap::Args)]
pub struct EchoArgs {
    /// The echo server.
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// Connections.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Message payload size in bytes.
    #[arg(long, default_value_t = 20)]
    size: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Seconds of measurement (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Send binary messages (default: text).
    #[arg(long)]
    binary: bool,
    /// Offer permessage-deflate; when the server accepts, messages are
    /// sent compressed (as a deflating client would send them).
    #[arg(long)]
    deflate: bool,
    /// The server's process id: its CPU time (utime + stime from
    /// /proc/PID/stat) over the measured window goes into the summary, with
    /// messages per server CPU-second.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Default)]
struct Shared {
    /// Echoes received, since the start.
    messages: Cell<u64>,
    /// Connections that failed before the end.
    errors: Cell<u64>,
    /// Connections still running.
    live: Cell<usize>,
    stop: Cell<bool>,
}

pub async fn run(a: EchoArgs) -> Result<()> {
    let target = Target::parse(&a.url)?;
    let pipeline = a.pipeline.max(1);
    let offer = a
        .deflate
        .then(|| DeflateConfig::default().client_no_context_takeover(true));
    eprintln!(
        "echo: {} connections x {} B, {} in flight each, to {}",
        a.connections, a.size, pipeline, a.url
    );
    let mut conns = Vec::with_capacity(a.connections);
    let mut negotiated = None;
    for i in 0..a.connections {
        let o = raw::open(&target, None, offer.clone())
            .await
            .with_context(|| format!("connection {i}"))?;
        negotiated = o.deflate;
        conns.push((o.stream, o.scanner));
    }
    if a.deflate && negotiated.is_none() {
        eprintln!("warning: the server declined permessage-deflate");
    }
    let payload = raw::payload(a.size);
    let frame = raw::client_frame(&payload, a.binary, negotiated);
    let flen = frame.len();
    let mut train = Vec::with_capacity(flen * pipeline);
    for _ in 0..pipeline {
        train.extend_from_slice(&frame);
    }
    let train = Bytes::from(train);
    let shared = Rc::new(Shared::default());
    let scratch = Scratch::new();
    for (stream, scanner) in conns {
        let (shared, scratch, train) = (shared.clone(), scratch.clone(), train.clone());
        shared.live.set(shared.live.get() + 1);
        tokio::task::spawn_local(async move {
            if connection(stream, scanner, &train, flen, &shared, &scratch)
                .await
                .is_err()
                && !shared.stop.get()
            {
                shared.errors.set(shared.errors.get() + 1);
            }
            shared.live.set(shared.live.get() - 1);
        });
    }

    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;
    let m0 = shared.messages.get();
    let cpu0 = raw::own_cpu_seconds();
    let server0 = a.server_pid.and_then(raw::pid_cpu_seconds);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(a.duration);
    let mut last = (t0, m0);
    while Instant::now() < end {
        let next = (last.0 + Duration::from_secs(1)).min(end);
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        let m = shared.messages.get();
        eprintln!(
            "{:>5.1}s  messages/s {:>10.0}  errors {}",
            now.duration_since(t0).as_secs_f64(),
            (m - last.1) as f64 / now.duration_since(last.0).as_secs_f64(),
            shared.errors.get()
        );
        last = (now, m);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let messages = shared.messages.get() - m0;
    let cpu = cpu0.zip(raw::own_cpu_seconds()).map(|(a, b)| b - a);
    let server_cpu = server0
        .zip(a.server_pid.and_then(raw::pid_cpu_seconds))
        .map(|(a, b)| b - a);
    shared.stop.set(true);
    // Let the connections see the stop flag and send their close frames.
    let settle = Instant::now() + Duration::from_secs(1);
    while shared.live.get() > 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let summary = serde_json::json!({
        "bench": "echo",
        "url": a.url,
        "connections": a.connections,
        "size": a.size,
        "pipeline": pipeline,
        "binary": a.binary,
        "deflate": negotiated.is_some(),
        "frame_bytes": flen,
        "duration_s": (elapsed * 1000.0).round() / 1000.0,
        "messages": messages,
        "messages_per_s": (messages as f64 / elapsed).round(),
        "errors": shared.errors.get(),
        "generator_cpu_s": cpu.map(|c| (c * 100.0).round() / 100.0),
        "generator_cpu_pct": cpu.map(|c| (c / elapsed * 1000.0).round() / 10.0),
        "server_cpu_s": server_cpu.map(|c| (c * 100.0).round() / 100.0),
        "server_cpu_pct": server_cpu.map(|c| (c / elapsed * 1000.0).round() / 10.0),
        "messages_per_server_cpu_s": server_cpu
            .filter(|c| *c > 0.0)
            .map(|c| (messages as f64 / c).round()),
        "total_s": (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    });
    println!("{summary}");
    Ok(())
}

/// One connection's closed loop: write the whole train (`pipeline` frames)
/// once, then one frame back for every echo.
async fn connection(
    mut stream: TcpStream,
    mut scanner: Scanner,
    train: &[u8],
    flen: usize,
    shared: &Shared,
    scratch: &Scratch,
) -> Result<()> {
    let mut ctl = Controls::default();
    write(&mut stream, train).await?;
    let mut in_flight = train.len() / flen;
    loop {
        let n = scratch
            .read_messages(&stream, &mut scanner, &mut ctl)
            .await?;
        shared.messages.set(shared.messages.get() + n);
        in_flight -= (n as usize).min(in_flight);
        for ping in ctl.pings.drain(..) {
            write(&mut stream, &raw::control_frame(OpCode::Pong, &ping)).await?;
        }
        if ctl.closed {
            anyhow::bail!("the server closed the connection");
        }
        if shared.stop.get() {
            let close = raw::control_frame(OpCode::Close, &1000u16.to_be_bytes());
            let _ = write(&mut stream, &close).await;
            return Ok(());
        }
        let refill = (train.len() / flen - in_flight) * flen;
        if refill > 0 {
            write(&mut stream, &train[..refill]).await?;
            in_flight = train.len() / flen;
        }
    }
}

/// Writes without a syscall through the async machinery when the socket
/// takes it all at once (the common case), else waits for room.
async fn write(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    match stream.try_write(bytes) {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(n) => stream.write_all(&bytes[n..]).await,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stream.write_all(bytes).await,
        Err(e) => Err(e),
    }
}
