//! `wshub bench`: load generators. Single-threaded by default so the
//! generator can be pinned to one core (`taskset -c 1`) while the server
//! under test runs on the other; progress every second on stderr, one JSON
//! summary line on stdout.
//!
//! `fanout` and `api-batch` drive the gateway; `echo`, `latency` and `idle`
//! drive any WebSocket echo server (`wshub echo`, and the peers in
//! `bench/peers/`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use wshub_proto::Message;
use wshub_ws::{connect, ClientOptions, MaybeTlsStream, WebSocket};

mod api_batch;
mod echo;
mod idle;
mod latency;
mod raw;

/// `wshub bench` subcommands.
#[derive(clap::Subcommand)]
pub enum Bench {
    /// Gateway fan-out: N subscribers on one channel, one publisher at a
    /// fixed rate; deliveries per second and publish-to-deliver latency.
    Fanout(FanoutArgs),
    /// Echo throughput, closed loop: every connection keeps `--pipeline`
    /// pre-built masked messages in flight; messages/s and the generator's
    /// own CPU%.
    Echo(echo::EchoArgs),
    /// Echo latency, open loop at a fixed rate, measured from each
    /// message's scheduled send time; HDR percentiles.
    Latency(latency::LatencyArgs),
    /// Open N connections (over several source addresses) and hold them,
    /// to read the server's memory per idle connection.
    Idle(idle::IdleArgs),
    /// Server API batches: N publish commands in one `POST /api/batch`,
    /// and the gateway's peak memory growth while it runs them
    /// (`/proc/PID/status`).
    ApiBatch(api_batch::ApiBatchArgs),
}

/// `wshub bench fanout` flags.
#[derive(clap::Args)]
pub struct FanoutArgs {
    /// The gateway's client endpoint. Several (comma-separated or the flag
    /// repeated) spread the subscribers round-robin over the nodes of a
    /// cluster.
    #[arg(
        long,
        value_delimiter = ',',
        num_args = 1..,
        default_value = "ws://127.0.0.1:8000/connection/websocket"
    )]
    url: Vec<String>,
    /// Where the publisher connects (default: the last `--url`), e.g. a node
    /// that holds none of the subscribers, to measure across nodes.
    #[arg(long)]
    publish_url: Option<String>,
    /// Subscriber connections.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Publications per second (open loop: the schedule does not wait for
    /// deliveries).
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Publication payload size in bytes (JSON, padded).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Channel (must allow anonymous subscribe and publish, as the
    /// development defaults do).
    #[arg(long, default_value = "bench")]
    channel: String,
}

pub fn run(b: Bench) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    match b {
        Bench::Fanout(a) => rt.block_on(local.run_until(fanout(a))),
        Bench::Echo(a) => rt.block_on(local.run_until(echo::run(a))),
        Bench::Latency(a) => rt.block_on(local.run_until(latency::run(a))),
        Bench::Idle(a) => rt.block_on(local.run_until(idle::run(a))),
        Bench::ApiBatch(a) => rt.block_on(local.run_until(api_batch::run(a))),
    }
}

type Ws = WebSocket<MaybeTlsStream>;

/// Sends `frame` and waits for the reply whose id is `id`, answering pings.
async fn command(ws: &mut Ws, frame: String, id: u32) -> Result<String> {
    ws.send_text(&frame).await?;
    let needle = format!("\"id\":{id}");
    loop {
        match ws.recv().await {
            Some(Ok(Message::Text(t))) => {
                for line in t.lines() {
                    if line.contains(&needle) {
                        if line.contains("\"error\"") {
                            bail!("command {id} failed: {line}");
                        }
                        return Ok(line.to_owned());
                    }
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection closed during setup"),
        }
    }
}

async fn session(url: &str, channel: Option<&str>) -> Result<Ws> {
    let mut ws = connect(url, &ClientOptions::default()).await?;
    command(
        &mut ws,
        r#"{"id":1,"connect":{"name":"wshub-bench"}}"#.into(),
        1,
    )
    .await?;
    if let Some(ch) = channel {
        let sub = serde_json::json!({"id": 2, "subscribe": {"channel": ch}}).to_string();
        command(&mut ws, sub, 2).await?;
    }
    Ok(ws)
}

/// The number after the first `key` (e.g. `"t":`) in a JSON line, read
/// without parsing the whole JSON.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let at = line.find(key)? + key.len();
    let digits = line[at..].split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

/// Publish time in microseconds since `base`, from `"t":<digits>`.
fn stamp(line: &str) -> Option<u64> {
    number_after(line, "\"t\":")
}

#[derive(Default)]
struct Totals {
    deliveries: u64,
    errors: u64,
}

/// Counts the publisher's replies to measured publications (id at or above
/// `from_id`): acknowledged ones and errors (e.g. 111 when the server's
/// per-connection command rate limit is lower than `--rate`).
fn count_reply_lines(text: &str, from_id: u32, acked: &mut u64, refused: &mut u64) {
    for line in text.lines() {
        let Some(id) = number_after(line, "\"id\":") else {
            continue;
        };
        if id < u64::from(from_id) {
            continue;
        }
        if line.contains("\"error\"") {
            *refused += 1;
        } else {
            *acked += 1;
        }
    }
}

async fn fanout(a: FanoutArgs) -> Result<()> {
    let base = Instant::now();
    let hist = Rc::new(RefCell::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?,
    ));
    let totals = Rc::new(RefCell::new(Totals::default()));
    let measuring = Rc::new(std::cell::Cell::new(false));
    // Publications stamped at or after this time (µs since `base`) are
    // measured, so one published during warm-up never counts as delivered.
    let measure_from = Rc::new(std::cell::Cell::new(u64::MAX));
    eprintln!(
        "opening {} subscribers to {}",
        a.subscribers,
        a.url.join(", ")
    );
    for i in 0..a.subscribers {
        let mut ws = session(&a.url[i % a.url.len()], Some(&a.channel))
            .await
            .with_context(|| format!("subscriber {i}"))?;
        let (hist, totals, measuring, from) = (
            hist.clone(),
            totals.clone(),
            measuring.clone(),
            measure_from.clone(),
        );
        tokio::task::spawn_local(async move {
            while let Some(msg) = ws.recv().await {
                let Ok(Message::Text(t)) = msg else {
                    totals.borrow_mut().errors += 1;
                    break;
                };
                for line in t.lines() {
                    if line == "{}" {
                        // Server ping: answer with an empty command.
                        let _ = ws.feed(Message::Text("{}".to_owned().into()));
                        continue;
                    }
                    if let Some(sent) = stamp(line) {
                        if measuring.get() && sent >= from.get() {
                            let now = base.elapsed().as_micros() as u64;
                            let _ = hist.borrow_mut().record(now.saturating_sub(sent).max(1));
                            totals.borrow_mut().deliveries += 1;
                        }
                    }
                }
                let _ = ws.flush().await;
            }
        });
    }
    let publish_url = a
        .publish_url
        .as_ref()
        .or(a.url.last())
        .context("no --url")?;
    let mut publisher = session(publish_url, None).await.context("publisher")?;
    let pad = "x".repeat(a.size.saturating_sub(40));
    let interval = Duration::from_secs_f64(1.0 / f64::from(a.rate.max(1)));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Warm up for one second, then measure.
    let warmup = Instant::now() + Duration::from_secs(1);
    let end = warmup + Duration::from_secs(a.duration);
    let mut published = 0u64;
    let (mut acked, mut refused) = (0u64, 0u64);
    let mut first_measured_id = u32::MAX;
    let mut id = 10u32;
    let mut last_report = Instant::now();
    let mut last_count = 0u64;
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= warmup && !measuring.get() {
            measure_from.set(base.elapsed().as_micros() as u64);
            measuring.set(true);
            last_report = now;
        }
        id = id.wrapping_add(1);
        let t = base.elapsed().as_micros();
        let cmd = format!(
            r#"{{"id":{id},"publish":{{"channel":"{}","data":{{"t":{t},"p":"{pad}"}}}}}}"#,
            a.channel
        );
        publisher.feed(Message::Text(cmd.into()))?;
        publisher.flush().await?;
        if measuring.get() {
            published += 1;
            first_measured_id = first_measured_id.min(id);
        }
        while let Some(m) = publisher.try_recv() {
            if let Message::Text(t) = m? {
                count_reply_lines(&t, first_measured_id, &mut acked, &mut refused);
            }
        }
        if now.duration_since(last_report) >= Duration::from_secs(1) && measuring.get() {
            let d = totals.borrow().deliveries;
            eprintln!(
                "{:>4}s  deliveries/s {:>10}",
                now.duration_since(warmup).as_secs(),
                d - last_count
            );
            last_count = d;
            last_report = now;
        }
    }
    // Let in-flight deliveries and replies land.
    let settle = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle {
        if let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(50), publisher.recv()).await
        {
            count_reply_lines(&t, first_measured_id, &mut acked, &mut refused);
        }
    }
    measuring.set(false);
    if refused > 0 {
        eprintln!(
            "warning: the server refused {refused} publications (rate limit? raise \
             limits.commands_per_second for the publisher)"
        );
    }
    let t = totals.borrow();
    let h = hist.borrow();
    let secs = a.duration as f64;
    let summary = serde_json::json!({
        "bench": "fanout",
        "subscribers": a.subscribers,
        "rate": a.rate,
        "size": a.size,
        "duration_s": a.duration,
        "published": published,
        "acknowledged": acked,
        "refused": refused,
        "expected_deliveries": acked * a.subscribers as u64,
        "deliveries": t.deliveries,
        "deliveries_per_s": (t.deliveries as f64 / secs).round(),
        "errors": t.errors,
        "latency_us": {
            "p50": h.value_at_quantile(0.50),
            "p90": h.value_at_quantile(0.90),
            "p99": h.value_at_quantile(0.99),
            "p999": h.value_at_quantile(0.999),
            "max": h.max(),
        },
    });
    println!("{summary}");
    Ok(())
}
