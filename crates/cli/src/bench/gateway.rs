//! The gateway load generators: `fanout` (one big channel, with a rate
//! sweep), `isolation` (a small channel beside a big one) and `commands`
//! (command round trips on one connection, optionally with a `/metrics`
//! scraper beside them).
//!
//! Every publication carries its publish time (`"t"`, µs since the
//! generator's start); a subscriber records publish-to-deliver latency for
//! the publications stamped inside the measured window only, so a late
//! delivery of a warm-up (or of the previous sweep step's) publication never
//! counts.
//!
//! `fanout --transport sse` runs the subscribers over SSE (see
//! [`super::sse`]); the publisher stays on WebSocket.
//!
//! `fanout --protocol pusher` runs the subscribers as Pusher protocol 7
//! connections and publishes through the Pusher HTTP API (see
//! [`super::pusher`]); the figures are the same.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use wshub_proto::Message;

use super::pusher::{self, PusherArgs, Trigger};
use super::raw::{self, Scratch};
use super::sse::{SseClient, SseSession};
use super::{number_after, session, stamp, Protocol, Transport, Ws};

/// Publish-to-deliver latencies and counts over one measured window.
pub struct Recorder {
    base: Instant,
    hist: RefCell<Histogram<u64>>,
    deliveries: Cell<u64>,
    /// Subscriber connections that ended (closed by the server, e.g. as slow
    /// consumers, or failed).
    ended: Cell<u64>,
    /// Publications stamped in `[from, until)` (µs since `base`) count.
    from: Cell<u64>,
    until: Cell<u64>,
    /// The server whose CPU time the window reports (`--server-pid`).
    server_pid: Cell<Option<u32>>,
    /// At the window's start: when, the generator's and the server's CPU
    /// seconds so far.
    cpu_from: Cell<(Instant, Option<f64>, Option<f64>)>,
    /// Over the window: wall seconds, generator and server CPU seconds.
    cpu: Cell<(f64, Option<f64>, Option<f64>)>,
    /// The length of one delivered message (the first stamped one seen).
    delivery_bytes: Cell<usize>,
}

impl Recorder {
    pub fn new(base: Instant) -> Result<Rc<Recorder>> {
        Ok(Rc::new(Recorder {
            base,
            hist: RefCell::new(
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?,
            ),
            deliveries: Cell::new(0),
            ended: Cell::new(0),
            from: Cell::new(u64::MAX),
            until: Cell::new(u64::MAX),
            server_pid: Cell::new(None),
            cpu_from: Cell::new((base, None, None)),
            cpu: Cell::new((0.0, None, None)),
            delivery_bytes: Cell::new(0),
        }))
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Starts a measured window: clears the histogram and the count.
    fn open_window(&self) {
        self.hist.borrow_mut().reset();
        self.deliveries.set(0);
        self.from.set(self.now_us());
        self.until.set(u64::MAX);
        self.cpu_from.set((
            Instant::now(),
            raw::own_cpu_seconds(),
            self.server_pid.get().and_then(raw::pid_cpu_seconds),
        ));
    }

    /// Publications stamped from now on no longer count.
    fn close_window(&self) {
        self.until.set(self.now_us());
        let (at, gen, server) = self.cpu_from.get();
        let delta = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
        self.cpu.set((
            at.elapsed().as_secs_f64(),
            delta(gen, raw::own_cpu_seconds()),
            delta(server, self.server_pid.get().and_then(raw::pid_cpu_seconds)),
        ));
    }

    /// The generator's and (with `--server-pid`) the server's CPU use over
    /// the last window, in % of one core.
    fn cpu_json(&self) -> Value {
        let (wall, gen, server) = self.cpu.get();
        let pct = |c: Option<f64>| c.map(|c| (c / wall.max(0.001) * 1000.0).round() / 10.0);
        json!({"gen_cpu_pct": pct(gen), "server_cpu_pct": pct(server)})
    }

    fn record(&self, sent: u64) {
        if sent >= self.from.get() && sent < self.until.get() {
            let now = self.now_us();
            let _ = self
                .hist
                .borrow_mut()
                .record(now.saturating_sub(sent).max(1));
            self.deliveries.set(self.deliveries.get() + 1);
        }
    }

    fn latency(&self) -> Value {
        latency_json(&self.hist.borrow())
    }

    /// Records a delivered message's stamp (and its size, once).
    fn delivered(&self, message: &str) {
        if let Some(sent) = stamp(message) {
            if self.delivery_bytes.get() == 0 {
                self.delivery_bytes.set(message.len());
            }
            self.record(sent);
        }
    }
}

/// p50/p90/p99/p99.9/max in µs.
fn latency_json(h: &Histogram<u64>) -> Value {
    json!({
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

/// Reads a subscriber's connection until it ends: records stamped
/// publications, answers the server's pings (Centrifugo's `{}`,
/// `pusher:ping`).
fn spawn_subscriber(mut ws: Ws, rec: Rc<Recorder>) {
    tokio::task::spawn_local(async move {
        while let Some(msg) = ws.recv().await {
            let Ok(Message::Text(t)) = msg else {
                break;
            };
            for line in t.lines() {
                if line == "{}" {
                    let _ = ws.feed(Message::Text("{}".to_owned().into()));
                    continue;
                }
                if line.starts_with(pusher::PING_PREFIX) {
                    let _ = ws.feed(Message::Text(pusher::PONG.to_owned().into()));
                    continue;
                }
                rec.delivered(line);
            }
            let _ = ws.flush().await;
        }
        rec.ended.set(rec.ended.get() + 1);
    });
}

/// Reads an SSE subscriber's stream until it ends: records stamped
/// publications (the session answers pings itself).
fn spawn_sse_subscriber(mut s: SseSession, rec: Rc<Recorder>, scratch: Scratch) {
    tokio::task::spawn_local(async move {
        let on_event = |ev: &[u8]| {
            if let Ok(text) = std::str::from_utf8(ev) {
                rec.delivered(text);
            }
        };
        while s.read_events(&scratch, on_event).await.is_ok() {}
        rec.ended.set(rec.ended.get() + 1);
    });
}

/// How subscribers connect, round-robin over the endpoints.
pub enum Dial {
    /// WebSocket URLs (for Pusher, its client endpoints `/app/{key}...`)
    /// and the protocol spoken on them.
    WebSocket(Vec<String>, Protocol),
    /// SSE endpoints, and the read buffer every SSE subscriber shares.
    Sse(Vec<SseClient>, Scratch),
}

impl Dial {
    fn new(
        transport: Transport,
        protocol: Protocol,
        pusher_key: &str,
        urls: &[String],
        emulation_connections: usize,
    ) -> Result<Dial> {
        Ok(match (transport, protocol) {
            (Transport::Websocket, Protocol::Centrifugo) => {
                Dial::WebSocket(urls.to_vec(), protocol)
            }
            (Transport::Websocket, Protocol::Pusher) => Dial::WebSocket(
                urls.iter()
                    .map(|u| pusher::client_url(u, pusher_key))
                    .collect::<Result<_>>()?,
                protocol,
            ),
            (Transport::Sse, Protocol::Pusher) => {
                bail!("--protocol pusher runs over WebSocket only (no --transport sse)")
            }
            (Transport::Sse, Protocol::Centrifugo) => Dial::Sse(
                urls.iter()
                    .map(|u| SseClient::new(u, emulation_connections))
                    .collect::<Result<_>>()?,
                Scratch::new(),
            ),
        })
    }

    /// Opens subscriber `i` of `channel` and starts reading it.
    async fn open_subscriber(&self, i: usize, channel: &str, rec: &Rc<Recorder>) -> Result<()> {
        match self {
            Dial::WebSocket(urls, protocol) => {
                let url = urls.get(i % urls.len().max(1)).context("no --url")?;
                let ws = match protocol {
                    Protocol::Centrifugo => session(url, Some(channel)).await?,
                    Protocol::Pusher => pusher::session(url, Some(channel)).await?,
                };
                spawn_subscriber(ws, rec.clone());
            }
            Dial::Sse(clients, scratch) => {
                let client = clients.get(i % clients.len().max(1)).context("no --url")?;
                let s = client.open(None, Some(channel), scratch).await?;
                spawn_sse_subscriber(s, rec.clone(), scratch.clone());
            }
        }
        Ok(())
    }
}

/// Opens `n` subscribers of `channel`, round-robin over the endpoints of
/// `dial`, printing progress every second; gives up at `deadline` (the
/// subscribers opened so far stay open).
pub async fn open_subscribers(
    dial: &Dial,
    channel: &str,
    n: usize,
    rec: &Rc<Recorder>,
    deadline: Option<Instant>,
) -> Result<usize> {
    let started = Instant::now();
    let mut last_print = Instant::now();
    let give_up = |i: usize| {
        eprintln!(
            "gave up: {i}/{n} subscribers of {channel} open after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(i)
    };
    for i in 0..n {
        let opening = dial.open_subscriber(i, channel, rec);
        match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, opening).await {
                    Ok(r) => r,
                    Err(_) => return give_up(i),
                }
            }
            None => opening.await,
        }
        .with_context(|| format!("subscriber {i}"))?;
        if last_print.elapsed() >= Duration::from_secs(1) {
            eprintln!("opened {}/{n} subscribers of {channel}", i + 1);
            last_print = Instant::now();
        }
    }
    eprintln!(
        "all {n} subscribers of {channel} open after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(n)
}

/// One publisher's schedule and what came of it.
pub struct Phase {
    pub rate: u32,
    pub size: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Longest wait after the schedule for replies and deliveries.
    pub settle: Duration,
}

/// Counts of one measured phase.
#[derive(Default)]
pub struct PhaseOut {
    pub published: u64,
    pub acked: u64,
    pub refused: u64,
}

/// Where a phase's publications go.
pub enum Publisher {
    /// `publish` commands on a Centrifugo client connection (boxed: a
    /// connection is large).
    Centrifugo(Box<Ws>),
    /// Signed `POST /apps/{app_id}/events` requests (Pusher HTTP API).
    Pusher(Trigger),
}

/// The publications of a phase whose answers count: ids `first..=last`.
#[derive(Clone, Copy)]
struct Window {
    first: u32,
    last: u32,
}

impl Window {
    fn holds(self, id: u64) -> bool {
        id >= u64::from(self.first) && id <= u64::from(self.last)
    }
}

/// Counts the Centrifugo replies in `text` to this phase's publications;
/// true when the text holds a server ping (`{}`), which the caller answers
/// (a run longer than ping_interval + pong_timeout would otherwise lose the
/// publisher).
fn count_replies(text: &str, w: Window, out: &mut PhaseOut) -> bool {
    let mut pinged = false;
    for line in text.lines() {
        if line == "{}" {
            pinged = true;
            continue;
        }
        let Some(rid) = number_after(line, "\"id\":") else {
            continue;
        };
        if !w.holds(rid) {
            continue;
        }
        if line.contains("\"error\"") {
            out.refused += 1;
        } else {
            out.acked += 1;
        }
    }
    pinged
}

impl Publisher {
    /// Sends publication `id` stamped `t` into `channel`.
    async fn publish(&mut self, id: u32, channel: &str, t: u64, pad: &str) -> Result<()> {
        match self {
            Publisher::Centrifugo(ws) => {
                let channel = serde_json::to_string(channel)?;
                let cmd = format!(
                    r#"{{"id":{id},"publish":{{"channel":{channel},"data":{{"t":{t},"p":"{pad}"}}}}}}"#
                );
                ws.feed(Message::Text(cmd.into()))?;
                ws.flush().await?;
            }
            Publisher::Pusher(tr) => {
                let data = format!(r#"{{"t":{t},"p":"{pad}"}}"#);
                tr.send(id, channel, &data).await?;
            }
        }
        Ok(())
    }

    /// Counts a Pusher API answer.
    fn count_answer(
        answer: Result<(u32, u16, String)>,
        w: Window,
        out: &mut PhaseOut,
        first_refusal: &mut Option<String>,
    ) -> Result<()> {
        let (id, status, body) = answer?;
        if w.holds(u64::from(id)) {
            if status == 200 {
                out.acked += 1;
            } else {
                out.refused += 1;
                first_refusal.get_or_insert_with(|| format!("HTTP {status}: {body}"));
            }
        }
        Ok(())
    }

    /// Counts the answers that have arrived, without waiting.
    async fn take_answers(
        &mut self,
        w: Window,
        out: &mut PhaseOut,
        first_refusal: &mut Option<String>,
    ) -> Result<()> {
        match self {
            Publisher::Centrifugo(ws) => {
                while let Some(m) = ws.try_recv() {
                    if let Message::Text(t) = m? {
                        if count_replies(&t, w, out) {
                            ws.send_text("{}").await?;
                        }
                    }
                }
            }
            Publisher::Pusher(tr) => {
                while let Some(a) = tr.try_answer() {
                    Self::count_answer(a, w, out, first_refusal)?;
                }
            }
        }
        Ok(())
    }

    /// Waits up to `wait` for an answer and counts it.
    async fn wait_answer(
        &mut self,
        wait: Duration,
        w: Window,
        out: &mut PhaseOut,
        first_refusal: &mut Option<String>,
    ) -> Result<()> {
        match self {
            Publisher::Centrifugo(ws) => match tokio::time::timeout(wait, ws.recv()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    if count_replies(&t, w, out) {
                        ws.send_text("{}").await?;
                    }
                }
                Ok(Some(Ok(_))) | Err(_) => {}
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(None) => bail!("the publisher's connection closed"),
            },
            Publisher::Pusher(tr) => match tokio::time::timeout(wait, tr.answer()).await {
                Ok(Some(a)) => Self::count_answer(a, w, out, first_refusal)?,
                Ok(None) => bail!("the publisher's API connection closed"),
                Err(_) => {}
            },
        }
        Ok(())
    }
}

/// Publishes into `channel` at `p.rate` (open loop), measuring after the
/// warm-up; `expected_per_pub` deliveries of each acknowledged publication
/// are awaited (up to `p.settle`) before returning.
pub async fn publish_phase(
    publisher: &mut Publisher,
    channel: &str,
    p: &Phase,
    rec: &Recorder,
    id: &mut u32,
    expected_per_pub: u64,
) -> Result<PhaseOut> {
    let pad = "x".repeat(p.size.saturating_sub(40));
    let interval = Duration::from_secs_f64(1.0 / f64::from(p.rate.max(1)));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let warm_end = Instant::now() + p.warmup;
    let end = warm_end + p.duration;
    let mut out = PhaseOut::default();
    let mut w = Window {
        first: u32::MAX,
        last: 0,
    };
    let mut first_refusal = None;
    let mut measuring = false;
    let mut last_report = Instant::now();
    let mut last_count = 0u64;
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= warm_end && !measuring {
            rec.open_window();
            measuring = true;
            last_report = now;
        }
        *id = id.wrapping_add(1);
        let t = rec.now_us();
        publisher.publish(*id, channel, t, &pad).await?;
        if measuring {
            out.published += 1;
            w.first = w.first.min(*id);
            w.last = *id;
        }
        publisher
            .take_answers(w, &mut out, &mut first_refusal)
            .await?;
        if measuring && now.duration_since(last_report) >= Duration::from_secs(1) {
            let d = rec.deliveries.get();
            eprintln!(
                "{:>4}s  {channel} rate {}  deliveries/s {:>10}",
                now.duration_since(warm_end).as_secs(),
                p.rate,
                d - last_count
            );
            last_count = d;
            last_report = now;
        }
    }
    rec.close_window();
    let settle = Instant::now() + p.settle;
    while Instant::now() < settle {
        if out.acked + out.refused >= out.published
            && rec.deliveries.get() >= out.acked * expected_per_pub
        {
            break;
        }
        publisher
            .wait_answer(Duration::from_millis(20), w, &mut out, &mut first_refusal)
            .await?;
    }
    if let Some(r) = first_refusal {
        eprintln!(
            "warning: {} publications refused, the first with {r}",
            out.refused
        );
    }
    Ok(out)
}

/// The JSON figures of one phase.
fn phase_json(p: &Phase, out: &PhaseOut, rec: &Recorder, subscribers: usize) -> Value {
    let expected = out.acked * subscribers as u64;
    let d = rec.deliveries.get();
    json!({
        "rate": p.rate,
        "published": out.published,
        "acknowledged": out.acked,
        "refused": out.refused,
        "expected_deliveries": expected,
        "deliveries": d,
        "delivered_ratio": if expected == 0 { 0.0 } else {
            (d as f64 / expected as f64 * 10_000.0).round() / 10_000.0
        },
        "deliveries_per_s": (d as f64 / p.duration.as_secs_f64().max(0.001)).round(),
        "errors": rec.ended.get(),
        "delivery_bytes": rec.delivery_bytes.get(),
        "latency_us": rec.latency(),
        "cpu": rec.cpu_json(),
    })
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
    /// Where the publisher connects (default: the last `--url`; with
    /// `--transport sse`, the WebSocket endpoint on its host and port; with
    /// `--protocol pusher`, `http://` and the last `--url`'s host and port,
    /// where the HTTP API is), e.g. a node that holds none of the
    /// subscribers, to measure across nodes. The Centrifugo publisher
    /// always speaks WebSocket.
    #[arg(long)]
    publish_url: Option<String>,
    /// `pusher`: the subscribers are Pusher protocol 7 connections (on
    /// `/app/{key}?protocol=7` of each `--url`'s host and port, unless the
    /// `--url` names such a path already), subscribed to the public channel
    /// `--channel`; the publisher triggers event `bench` on it through the
    /// signed HTTP API (`POST /apps/{app_id}/events`, one keep-alive
    /// connection, requests pipelined), the data a JSON string holding the
    /// stamp.
    #[arg(long, value_enum, default_value_t = Protocol::Centrifugo)]
    protocol: Protocol,
    #[command(flatten)]
    pusher: PusherArgs,
    /// How the subscribers connect. `sse`: `--url` names SSE endpoints
    /// (`http://127.0.0.1:8000/connection/sse`); each subscriber
    /// subscribes, and answers pings, through `/emulation` on the same host.
    #[arg(long, value_enum, default_value_t = Transport::Websocket)]
    transport: Transport,
    /// `--transport sse`: keep-alive connections to `/emulation` per
    /// `--url`, shared by its subscribers.
    #[arg(long, default_value_t = 8)]
    emulation_connections: usize,
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
    /// Seconds of measurement (per sweep step with `--sweep`).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Channel (must allow anonymous subscribe and publish, as the
    /// development defaults do).
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Sweep mode: publication rates to try in turn (comma-separated, e.g.
    /// `100,200,400`) on the same subscribers, one JSON line per step, then
    /// a summary with the highest rate that passed: every publication
    /// acknowledged and delivered to every subscriber, no subscriber lost,
    /// p99 within `--max-p99-ms`. Stops after `--sweep-failures` failed
    /// steps in a row.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    sweep: Vec<u32>,
    /// The sweep's latency criterion.
    #[arg(long, default_value_t = 250.0)]
    max_p99_ms: f64,
    /// Failed sweep steps in a row that end the sweep.
    #[arg(long, default_value_t = 1)]
    sweep_failures: u32,
    /// Give up opening subscribers after this many seconds (the figures are
    /// then taken with those open, and the summary says how many).
    #[arg(long)]
    open_timeout: Option<f64>,
    /// The server's process id: its CPU use (/proc/PID/stat) over the
    /// measured window goes into the figures, beside the generator's.
    #[arg(long)]
    server_pid: Option<u32>,
}

pub async fn fanout(a: FanoutArgs) -> Result<()> {
    let rec = Recorder::new(Instant::now())?;
    rec.server_pid.set(a.server_pid);
    eprintln!(
        "opening {} {} subscribers to {}",
        a.subscribers,
        a.transport.name(),
        a.url.join(", ")
    );
    let dial = Dial::new(
        a.transport,
        a.protocol,
        &a.pusher.pusher_key,
        &a.url,
        a.emulation_connections,
    )?;
    let opened_at = Instant::now();
    let deadline = a
        .open_timeout
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let opened = open_subscribers(&dial, &a.channel, a.subscribers, &rec, deadline).await?;
    let open_s = opened_at.elapsed().as_secs_f64();
    // The fields every fan-out summary starts with.
    let header = |bench: &str| {
        json!({
            "bench": bench,
            "protocol": a.protocol.name(),
            "transport": a.transport.name(),
            "subscribers": a.subscribers,
            "opened": opened,
            "open_s": (open_s * 10.0).round() / 10.0,
            "size": a.size,
            "duration_s": a.duration,
        })
    };
    let publish_url = match (&a.publish_url, &dial) {
        (Some(u), _) => u.clone(),
        (None, Dial::Sse(clients, _)) => {
            clients.last().context("no --url")?.target().websocket_url()
        }
        (None, Dial::WebSocket(urls, Protocol::Pusher)) => {
            pusher::api_base(urls.last().context("no --url")?)?
        }
        (None, Dial::WebSocket(urls, Protocol::Centrifugo)) => {
            urls.last().context("no --url")?.clone()
        }
    };
    let mut publisher = match a.protocol {
        Protocol::Centrifugo => Publisher::Centrifugo(Box::new(
            session(&publish_url, None).await.context("publisher")?,
        )),
        Protocol::Pusher => Publisher::Pusher(
            Trigger::connect(&publish_url, &a.pusher)
                .await
                .context("publisher")?,
        ),
    };
    let mut id = 10u32;
    let rates = if a.sweep.is_empty() {
        vec![a.rate]
    } else {
        a.sweep.clone()
    };
    let mut steps = Vec::new();
    let mut best: Option<u32> = None;
    let mut failures = 0;
    for (i, &rate) in rates.iter().enumerate() {
        if i > 0 {
            // Let the previous step's backlog drain.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let phase = Phase {
            rate,
            size: a.size,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(a.duration),
            settle: Duration::from_secs(if a.sweep.is_empty() { 1 } else { 3 }),
        };
        let out = publish_phase(
            &mut publisher,
            &a.channel,
            &phase,
            &rec,
            &mut id,
            opened as u64,
        )
        .await?;
        if out.refused > 0 {
            eprintln!(
                "warning: the server refused {} publications (rate limit? raise \
                 limits.commands_per_second for the publisher)",
                out.refused
            );
        }
        let mut step = phase_json(&phase, &out, &rec, opened);
        let p99_ms = rec.hist.borrow().value_at_quantile(0.99) as f64 / 1000.0;
        let pass = out.published > 0
            && out.acked == out.published
            && rec.deliveries.get() == out.acked * opened as u64
            && rec.ended.get() == 0
            && p99_ms <= a.max_p99_ms;
        if a.sweep.is_empty() {
            let mut summary = header("fanout");
            merge(&mut summary, step);
            merge(&mut summary, emulation_json(&dial));
            println!("{summary}");
            return Ok(());
        }
        step["pass"] = json!(pass);
        println!("{}", json!({"bench": "fanout-step", "step": step}));
        eprintln!(
            "rate {rate}: {} (acked {}/{}, delivered {}/{}, p99 {p99_ms:.1} ms, lost {})",
            if pass { "pass" } else { "FAIL" },
            out.acked,
            out.published,
            rec.deliveries.get(),
            out.acked * opened as u64,
            rec.ended.get()
        );
        steps.push(step);
        if pass {
            best = Some(best.map_or(rate, |b| b.max(rate)));
            failures = 0;
        } else {
            failures += 1;
            if failures >= a.sweep_failures {
                break;
            }
        }
    }
    let mut summary = header("fanout-sweep");
    summary["max_p99_ms"] = json!(a.max_p99_ms);
    summary["best_rate"] = json!(best);
    summary["steps"] = json!(steps);
    merge(&mut summary, emulation_json(&dial));
    println!("{summary}");
    Ok(())
}

/// The SSE subscribers' emulation requests (subscribes, answers to pings):
/// answered and failed; nothing for WebSocket.
fn emulation_json(dial: &Dial) -> Value {
    let Dial::Sse(clients, _) = dial else {
        return json!({});
    };
    let (mut ok, mut failed) = (0, 0);
    for c in clients {
        ok += c.emulator.stats.ok.get();
        failed += c.emulator.stats.failed.get();
        if let Some(e) = c.emulator.stats.first_error.borrow().as_ref() {
            eprintln!("warning: emulation requests failed, the first with: {e}");
        }
    }
    json!({"emulation_ok": ok, "emulation_failed": failed})
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

/// `wshub bench isolation` flags.
#[derive(clap::Args)]
pub struct IsolationArgs {
    /// The gateway's client endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:8000/connection/websocket")]
    url: String,
    /// Subscribers of the big channel (0: the small channel alone, the
    /// baseline).
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Publications per second into the big channel.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Publications per second into the small channel (one subscriber).
    #[arg(long, default_value_t = 20)]
    small_rate: u32,
    /// Payload size of every publication, bytes (JSON, padded).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Seconds of measurement (after 1 s of warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// The big channel (history with recovery, anonymous subscribe and
    /// publish: see bench/configs/).
    #[arg(long, default_value = "iso:big")]
    channel: String,
    /// The small channel.
    #[arg(long, default_value = "iso:small")]
    small_channel: String,
}

/// The small channel runs on a thread (and runtime) of its own, so the
/// generator's work for the big channel's 10,000 sockets does not delay
/// its one subscriber's reads.
pub async fn isolation(a: IsolationArgs) -> Result<()> {
    let base = Instant::now();
    let big = Recorder::new(base)?;
    let opened = if a.subscribers > 0 {
        let dial = Dial::WebSocket(vec![a.url.clone()], Protocol::Centrifugo);
        open_subscribers(&dial, &a.channel, a.subscribers, &big, None).await?
    } else {
        0
    };
    let mut big_publisher = if opened > 0 {
        Some(Publisher::Centrifugo(Box::new(
            session(&a.url, None).await.context("big publisher")?,
        )))
    } else {
        None
    };
    let phase = |rate| Phase {
        rate,
        size: a.size,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(a.duration),
        settle: Duration::from_secs(2),
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let go = Arc::new(AtomicBool::new(false));
    let small = {
        let (url, channel, go) = (a.url.clone(), a.small_channel.clone(), go.clone());
        let p = phase(a.small_rate);
        std::thread::Builder::new()
            .name("small-channel".into())
            .spawn(move || -> Result<Value> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let local = tokio::task::LocalSet::new();
                rt.block_on(local.run_until(async move {
                    let rec = Recorder::new(base)?;
                    let sub = session(&url, Some(&channel))
                        .await
                        .context("small subscriber")?;
                    spawn_subscriber(sub, rec.clone());
                    let mut publisher = Publisher::Centrifugo(Box::new(
                        session(&url, None).await.context("small publisher")?,
                    ));
                    let _ = ready_tx.send(());
                    while !go.load(Ordering::Acquire) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let mut id = 10u32;
                    let out = publish_phase(&mut publisher, &channel, &p, &rec, &mut id, 1).await?;
                    Ok(phase_json(&p, &out, &rec, 1))
                }))
            })?
    };
    if ready_rx.recv().is_err() {
        // The thread ended before it was ready: its error says why.
        return match small.join() {
            Ok(Err(e)) => Err(e),
            _ => bail!("the small channel's thread failed to start"),
        };
    }
    go.store(true, Ordering::Release);
    let big_json = match big_publisher.as_mut() {
        Some(p) => {
            let ph = phase(a.rate);
            let mut id = 10u32;
            let out = publish_phase(p, &a.channel, &ph, &big, &mut id, opened as u64).await?;
            phase_json(&ph, &out, &big, opened)
        }
        None => Value::Null,
    };
    let small_json = small
        .join()
        .map_err(|_| anyhow::anyhow!("the small channel's thread panicked"))??;
    println!(
        "{}",
        json!({
            "bench": "isolation",
            "subscribers": a.subscribers,
            "opened": opened,
            "rate": a.rate,
            "small_rate": a.small_rate,
            "size": a.size,
            "duration_s": a.duration,
            "small": small_json,
            "big": big_json,
        })
    );
    Ok(())
}

/// `wshub bench commands` flags.
#[derive(clap::Args)]
pub struct CommandsArgs {
    /// The gateway's client endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:8000/connection/websocket")]
    url: String,
    /// The channel to subscribe to, publish into and read presence of
    /// (presence and anonymous publish allowed: see bench/configs/).
    #[arg(long, default_value = "cmd:rtt")]
    channel: String,
    /// Round trips per second of each command (one `publish`, then one
    /// `presence`, each waiting for its reply, per tick; a slow reply
    /// delays the next tick rather than piling commands up).
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Seconds of measurement (after 1 s of warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Scrape this URL (e.g. `http://127.0.0.1:8000/metrics`) from a thread
    /// of its own while measuring.
    #[arg(long)]
    scrape: Option<String>,
    /// Scrapes per second.
    #[arg(long, default_value_t = 10.0)]
    scrape_rate: f64,
}

pub async fn commands(a: CommandsArgs) -> Result<()> {
    let mut ws = session(&a.url, Some(&a.channel)).await.context("session")?;
    let channel = serde_json::to_string(&a.channel)?;
    let new_hist = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram");
    let (mut h_pub, mut h_pres) = (new_hist()?, new_hist()?);
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = match &a.scrape {
        Some(u) => Some(spawn_scraper(u, a.scrape_rate, stop.clone())?),
        None => None,
    };
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(a.rate.max(1))));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let warm_end = Instant::now() + Duration::from_secs(1);
    let end = warm_end + Duration::from_secs(a.duration);
    let mut id = 10u32;
    let mut errors = 0u64;
    let mut measured = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        let measuring = Instant::now() >= warm_end;
        id = id.wrapping_add(1);
        let publish = format!(
            r#"{{"id":{id},"publish":{{"channel":{channel},"data":{{"n":{id},"p":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}}}}}"#
        );
        let (us, ok) = round_trip(&mut ws, &publish, id).await?;
        if measuring {
            let _ = h_pub.record(us.max(1));
            errors += u64::from(!ok);
        }
        id = id.wrapping_add(1);
        let presence = format!(r#"{{"id":{id},"presence":{{"channel":{channel}}}}}"#);
        let (us, ok) = round_trip(&mut ws, &presence, id).await?;
        if measuring {
            let _ = h_pres.record(us.max(1));
            errors += u64::from(!ok);
            measured += 1;
        }
    }
    stop.store(true, Ordering::Release);
    let scrapes = match scraper {
        Some(t) => t
            .join()
            .map_err(|_| anyhow::anyhow!("the scraper panicked"))??,
        None => Value::Null,
    };
    println!(
        "{}",
        json!({
            "bench": "commands",
            "rate": a.rate,
            "duration_s": a.duration,
            "round_trips": measured,
            "errors": errors,
            "publish_us": latency_json(&h_pub),
            "presence_us": latency_json(&h_pres),
            "scrape": scrapes,
        })
    );
    Ok(())
}

/// Sends one command and waits for the reply with exactly this id
/// (answering pings, skipping pushes); µs and whether it was not an error.
async fn round_trip(ws: &mut Ws, frame: &str, id: u32) -> Result<(u64, bool)> {
    let sent = Instant::now();
    ws.send_text(frame).await?;
    loop {
        match ws.recv().await {
            Some(Ok(Message::Text(t))) => {
                let mut pinged = false;
                for line in t.lines() {
                    if line == "{}" {
                        pinged = true;
                        continue;
                    }
                    if number_after(line, "\"id\":") == Some(u64::from(id)) {
                        let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                        return Ok((us, !line.contains("\"error\"")));
                    }
                }
                if pinged {
                    ws.send_text("{}").await?;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection closed"),
        }
    }
}

/// GETs `url` (plain http://, one connection per scrape) `rate` times a
/// second until `stop`; returns counts and scrape times.
fn spawn_scraper(
    url: &str,
    rate: f64,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<Result<Value>>> {
    let u = url::Url::parse(url).with_context(|| format!("bad URL {url:?}"))?;
    if u.scheme() != "http" {
        bail!("--scrape takes an http:// URL");
    }
    let host = u.host_str().context("no host")?.to_owned();
    let port = u.port().unwrap_or(80);
    let path = u.path().to_owned();
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.01));
    Ok(std::thread::Builder::new()
        .name("scraper".into())
        .spawn(move || -> Result<Value> {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?;
            let (mut n, mut failed, mut bytes) = (0u64, 0u64, 0u64);
            let mut next = Instant::now();
            while !stop.load(Ordering::Acquire) {
                let started = Instant::now();
                let got = (|| -> std::io::Result<usize> {
                    let mut s = std::net::TcpStream::connect((host.as_str(), port))?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    write!(
                        s,
                        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                    )?;
                    let mut body = Vec::new();
                    s.read_to_end(&mut body)?;
                    Ok(body.len())
                })();
                match got {
                    Ok(len) if len > 0 => {
                        n += 1;
                        bytes += len as u64;
                        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        let _ = h.record(us.max(1));
                    }
                    _ => failed += 1,
                }
                next += interval;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Ok(json!({
                "scrapes": n,
                "failed": failed,
                "bytes_per_scrape": bytes.checked_div(n).unwrap_or(0),
                "scrape_us": latency_json(&h),
            }))
        })?)
}
