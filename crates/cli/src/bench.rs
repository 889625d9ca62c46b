//! `wshub bench`: load generators. Single-threaded by default so the
//! generator can be pinned to one core (`taskset -c 1`) while the server
//! under test runs on the other; progress every second on stderr, one JSON
//! summary line on stdout.
//!
//! `fanout`, `isolation`, `commands` and `api-batch` drive the gateway; `echo`, `latency` and `idle`
//! drive any WebSocket echo server (`wshub echo`, and the peers in
//! `bench/peers/`). `idle --subscribe` and `fanout` also run their
//! connections over SSE (`--transport sse`, the gateway's HTTP fallback).

use anyhow::{bail, Result};
use wshub_proto::Message;
use wshub_ws::{connect, ClientOptions, MaybeTlsStream, WebSocket};

mod api_batch;
mod echo;
mod gateway;
mod idle;
mod latency;
mod multiplex;
mod pusher;
mod raw;
mod sse;

/// How the load generators' client connections reach the gateway.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Transport {
    /// WebSocket (`ws://.../connection/websocket`).
    #[default]
    Websocket,
    /// Server-Sent Events (`http://.../connection/sse`), commands after
    /// the connect through the emulation endpoint (`/emulation`).
    Sse,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Websocket => "websocket",
            Transport::Sse => "sse",
        }
    }
}

/// The protocol the gateway load generators' clients speak.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Centrifugo's JSON protocol (`/connection/websocket`).
    #[default]
    Centrifugo,
    /// Pusher Channels protocol 7 (`/app/{key}?protocol=7`), events
    /// triggered through the signed HTTP API (`/apps/{app_id}/events`).
    Pusher,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Centrifugo => "centrifugo",
            Protocol::Pusher => "pusher",
        }
    }
}

/// `wshub bench` subcommands.
#[derive(clap::Subcommand)]
pub enum Bench {
    /// Gateway fan-out: N subscribers on one channel, one publisher at a
    /// fixed rate; deliveries per second and publish-to-deliver latency.
    /// With `--sweep`, the highest rate that every subscriber keeps up with.
    Fanout(gateway::FanoutArgs),
    /// Small-channel isolation: a 1-subscriber channel beside an
    /// N-subscriber channel; publish-to-deliver latency of both.
    Isolation(gateway::IsolationArgs),
    /// Command path: `publish` and `presence` round trips on one
    /// connection, optionally beside a `/metrics` scraper.
    Commands(gateway::CommandsArgs),
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
    /// N WebSockets as streams of one HTTP/2 connection or as N HTTP/1.1
    /// connections: the echo server's memory per WebSocket and closed-loop
    /// echo throughput.
    Multiplex(multiplex::MultiplexArgs),
}

pub fn run(b: Bench) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    match b {
        Bench::Fanout(a) => rt.block_on(local.run_until(gateway::fanout(a))),
        Bench::Isolation(a) => rt.block_on(local.run_until(gateway::isolation(a))),
        Bench::Commands(a) => rt.block_on(local.run_until(gateway::commands(a))),
        Bench::Echo(a) => rt.block_on(local.run_until(echo::run(a))),
        Bench::Latency(a) => rt.block_on(local.run_until(latency::run(a))),
        Bench::Idle(a) => rt.block_on(local.run_until(idle::run(a))),
        Bench::ApiBatch(a) => rt.block_on(local.run_until(api_batch::run(a))),
        Bench::Multiplex(a) => rt.block_on(local.run_until(multiplex::run(a))),
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

/// Publish time in microseconds since `base`, from `"t":<digits>`, or
/// from `\"t\":<digits>` inside a JSON string (a Pusher event's data).
fn stamp(line: &str) -> Option<u64> {
    number_after(line, "\"t\":").or_else(|| number_after(line, "\\\"t\\\":"))
}
