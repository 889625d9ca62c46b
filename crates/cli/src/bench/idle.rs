//! `wshub bench idle`: opens N WebSocket connections and holds them, so the
//! server's memory per idle connection can be read (RSS delta / N). The
//! connections are spread over several loopback source addresses (bind
//! before connect), each of which has its own ephemeral port range.
//! With `--transport sse` they are SSE sessions of the gateway instead
//! (subscribed through the emulation endpoint, pings answered there); with
//! `--protocol pusher`, Pusher protocol 7 connections of the gateway (each
//! waits for `pusher:connection_established`, then subscribes to the public
//! channel `--subscribe`, and answers with `pusher:pong`).

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;
use wshub_proto::frame::OpCode;

use super::pusher::{self, PusherArgs};
use super::raw::{self, Controls, Scanner, Scratch, Target};
use super::sse::{SseClient, SseSession};
use super::{Protocol, Transport};

/// `wshub bench idle` flags.
#[derive(clap::Args)]
pub struct IdleArgs {
    /// The server (with `--transport sse`: the gateway's SSE endpoint,
    /// e.g. `http://127.0.0.1:8000/connection/sse`).
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// `sse`: each connection is an SSE session of the gateway (`--url`
    /// its SSE endpoint), subscribed to `--subscribe` through `/emulation`
    /// on the same host, the server's pings answered there.
    #[arg(long, value_enum, default_value_t = Transport::Websocket)]
    transport: Transport,
    /// `--transport sse`: keep-alive connections to `/emulation` shared by
    /// all sessions (for the subscribes and the answers to pings).
    #[arg(long, default_value_t = 8)]
    emulation_connections: usize,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Source addresses, round-robin: a range (`127.0.0.2-127.0.0.9`) or a
    /// comma-separated list. Default: the system's choice.
    #[arg(long)]
    source_ips: Option<String>,
    /// Seconds to hold the connections once all are open (default: until
    /// Ctrl-C; Ctrl-C also ends a hold early, with the summary).
    #[arg(long)]
    hold: Option<f64>,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Gateway mode: after the handshake each connection sends the
    /// Centrifugo `connect` and `subscribe` commands for this channel
    /// (anonymous, JSON) and answers the server's pings, so the gateway's
    /// memory per connection *with one subscription* can be read.
    #[arg(long, value_name = "CHANNEL")]
    subscribe: Option<String>,
    /// `pusher`: each connection is a Pusher protocol 7 connection of the
    /// gateway (`/app/{key}?protocol=7` on `--url`'s host and port, unless
    /// `--url` names such a path): it waits for
    /// `pusher:connection_established`, then (with `--subscribe`)
    /// subscribes to that public channel, and answers every message with
    /// `pusher:pong` (only `--pusher-key` matters here).
    #[arg(long, value_enum, default_value_t = Protocol::Centrifugo)]
    protocol: Protocol,
    #[command(flatten)]
    pusher: PusherArgs,
}

#[derive(Default)]
struct Shared {
    open: Cell<usize>,
    /// Connections lost while holding.
    dropped: Cell<u64>,
    /// Connections that could not be opened.
    failed: Cell<u64>,
    first_error: std::cell::RefCell<Option<String>>,
}

/// Where the connections go.
enum Dial {
    WebSocket(Target),
    Sse(SseClient),
}

pub async fn run(a: IdleArgs) -> Result<()> {
    let dial = Rc::new(match (a.transport, a.protocol) {
        (Transport::Websocket, Protocol::Centrifugo) => Dial::WebSocket(Target::parse(&a.url)?),
        (Transport::Websocket, Protocol::Pusher) => Dial::WebSocket(Target::parse(
            &pusher::client_url(&a.url, &a.pusher.pusher_key)?,
        )?),
        (Transport::Sse, Protocol::Centrifugo) => {
            Dial::Sse(SseClient::new(&a.url, a.emulation_connections)?)
        }
        (Transport::Sse, Protocol::Pusher) => {
            anyhow::bail!("--protocol pusher runs over WebSocket only (no --transport sse)")
        }
    });
    let pusher_mode = a.protocol == Protocol::Pusher;
    let sources: Vec<Option<IpAddr>> = match &a.source_ips {
        Some(s) => raw::parse_ips(s)?.into_iter().map(Some).collect(),
        None => vec![None],
    };
    eprintln!(
        "idle: opening {} {} {} connections to {} from {} source address(es)",
        a.connections,
        a.protocol.name(),
        a.transport.name(),
        a.url,
        sources.len()
    );
    let shared = Rc::new(Shared::default());
    let scratch = Scratch::new();
    let started = Instant::now();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let mut last_print = Instant::now();
    for i in 0..a.connections {
        let permit = slots.clone().acquire_owned().await?;
        let (dial, task_shared, scratch) = (dial.clone(), shared.clone(), scratch.clone());
        let channel = a.subscribe.clone();
        let source = sources[i % sources.len()];
        tokio::task::spawn_local(async move {
            let shared = task_shared;
            let held = match &*dial {
                Dial::WebSocket(target) if pusher_mode => {
                    let opened = raw::open(target, source, None).await;
                    drop(permit);
                    match opened {
                        Ok(o) => match pusher_hello(o, channel.as_deref(), &scratch).await {
                            Ok((stream, scanner)) => {
                                shared.open.set(shared.open.get() + 1);
                                let pong = raw::client_frame(pusher::PONG.as_bytes(), false, None);
                                hold(stream, scanner, &scratch, Some(pong)).await;
                                Ok(())
                            }
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    }
                }
                Dial::WebSocket(target) => {
                    let hello = gateway_hello(channel.as_deref());
                    let opened = raw::open(target, source, None).await;
                    drop(permit);
                    match opened {
                        Ok(mut o) => {
                            if let Some(h) = &hello {
                                if o.stream.write_all(h).await.is_err() {
                                    shared.failed.set(shared.failed.get() + 1);
                                    return;
                                }
                            }
                            shared.open.set(shared.open.get() + 1);
                            let pong = hello
                                .is_some()
                                .then(|| raw::client_frame(b"{}", false, None));
                            hold(o.stream, o.scanner, &scratch, pong).await;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Dial::Sse(client) => {
                    let opened = client.open(source, channel.as_deref(), &scratch).await;
                    drop(permit);
                    match opened {
                        Ok(s) => {
                            shared.open.set(shared.open.get() + 1);
                            hold_sse(s, &scratch).await;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match held {
                Ok(()) => {
                    shared.open.set(shared.open.get() - 1);
                    shared.dropped.set(shared.dropped.get() + 1);
                }
                Err(e) => {
                    shared.failed.set(shared.failed.get() + 1);
                    shared
                        .first_error
                        .borrow_mut()
                        .get_or_insert_with(|| format!("{e:#}"));
                }
            }
        });
        if last_print.elapsed() >= Duration::from_secs(1) {
            eprintln!("opened {}/{}", shared.open.get(), a.connections);
            last_print = Instant::now();
        }
    }
    // Wait for the handshakes still in flight.
    let _all = slots
        .acquire_many(a.concurrency.max(1) as u32)
        .await
        .context("semaphore")?;
    let open_s = started.elapsed().as_secs_f64();
    let opened = shared.open.get();
    if let Some(e) = shared.first_error.borrow().as_ref() {
        eprintln!(
            "warning: {} connections failed, the first with: {e}",
            shared.failed.get()
        );
    }
    eprintln!("all {opened} connections open after {open_s:.1}s; holding");
    let held_from = Instant::now();
    match a.hold {
        Some(s) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(s)) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    let mut summary = serde_json::json!({
        "bench": "idle",
        "protocol": a.protocol.name(),
        "transport": a.transport.name(),
        "url": a.url,
        "connections": a.connections,
        "opened": opened,
        "failed": shared.failed.get(),
        "dropped": shared.dropped.get(),
        "errors": shared.failed.get() + shared.dropped.get(),
        "still_open": shared.open.get(),
        "source_ips": sources.len(),
        "open_s": (open_s * 1000.0).round() / 1000.0,
        "held_s": (held_from.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    if let Dial::Sse(client) = &*dial {
        let st = &client.emulator.stats;
        summary["emulation_ok"] = st.ok.get().into();
        summary["emulation_failed"] = st.failed.get().into();
        if let Some(e) = st.first_error.borrow().as_ref() {
            eprintln!(
                "warning: {} emulation requests failed, the first with: {e}",
                st.failed.get()
            );
        }
    }
    println!("{summary}");
    Ok(())
}

/// The first frame of a gateway-mode connection: `connect`, then
/// `subscribe` to `channel` (two JSON commands, one per line).
fn gateway_hello(channel: Option<&str>) -> Option<bytes::Bytes> {
    let channel = serde_json::to_string(channel?).ok()?;
    let commands = format!(
        "{{\"id\":1,\"connect\":{{}}}}\n{{\"id\":2,\"subscribe\":{{\"channel\":{channel}}}}}"
    );
    Some(raw::client_frame(commands.as_bytes(), false, None))
}

/// A Pusher connection's setup after the handshake: waits for its first
/// message (`pusher:connection_established`; the scanner counts messages
/// without reading them), then sends `pusher:subscribe` for `channel`.
async fn pusher_hello(
    o: raw::Opened,
    channel: Option<&str>,
    scratch: &Scratch,
) -> Result<(tokio::net::TcpStream, Scanner)> {
    let (mut stream, mut scanner) = (o.stream, o.scanner);
    let mut seen = o.early_messages;
    let mut ctl = Controls::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, scratch.read_messages(&stream, &mut scanner, &mut ctl))
            .await
        {
            Ok(Ok(n)) => seen += n,
            Ok(Err(e)) => return Err(e).context("waiting for pusher:connection_established"),
            Err(_) => anyhow::bail!("no pusher:connection_established within 10 s"),
        }
        if ctl.closed {
            anyhow::bail!("the server closed the connection before connection_established");
        }
    }
    if let Some(ch) = channel {
        let sub = pusher::subscribe_message(ch);
        stream
            .write_all(&raw::client_frame(sub.as_bytes(), false, None))
            .await?;
    }
    Ok((stream, scanner))
}

/// Holds a connection: answers WebSocket pings, and in gateway mode every
/// data message (the replies, then the server's pings) with `pong`
/// (Centrifugo's `{}`, `pusher:pong`).
async fn hold(
    mut stream: tokio::net::TcpStream,
    mut scanner: Scanner,
    scratch: &Scratch,
    pong: Option<bytes::Bytes>,
) {
    let mut ctl = Controls::default();
    loop {
        let Ok(messages) = scratch.read_messages(&stream, &mut scanner, &mut ctl).await else {
            return;
        };
        if let Some(pong) = &pong {
            for _ in 0..messages {
                if stream.write_all(pong).await.is_err() {
                    return;
                }
            }
        }
        for p in ctl.pings.drain(..) {
            if stream
                .write_all(&raw::control_frame(OpCode::Pong, &p))
                .await
                .is_err()
            {
                return;
            }
        }
        if ctl.closed {
            return;
        }
    }
}

/// Holds an SSE session until its stream ends (pings are answered by the
/// session, through the emulation pool).
async fn hold_sse(mut s: SseSession, scratch: &Scratch) {
    while s.read_events(scratch, |_| {}).await.is_ok() {}
}
