//! `wshub echo`: an echo server on the engine, one task per connection.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use wshub_proto::handshake::ServerOptions as HandshakeOptions;
use wshub_proto::DeflateConfig;
use wshub_ws::{accept, Options, ServerOptions, WebSocket, WsError};

/// `wshub echo` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Accept permessage-deflate offers.
    #[arg(long)]
    deflate: bool,
    /// Worker threads; 1 runs a single current-thread runtime (pin it to a
    /// core with taskset for benchmarks). Default: all cores.
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: Args) -> Result<()> {
    let rt = match args.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut handshake = HandshakeOptions::default();
    if args.deflate {
        handshake = handshake.deflate(Some(DeflateConfig::default()));
    }
    let opts = ServerOptions::default()
        .ws(Options::default())
        .handshake(handshake);
    let opts = std::sync::Arc::new(opts);
    println!("listening on ws://{addr}");
    tracing::info!(%addr, deflate = args.deflate, "echo server listening");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: keep serving the others.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let opts = opts.clone();
        tokio::spawn(async move {
            match accept(stream, &opts).await {
                Ok(ws) => {
                    if let Err(e) = echo(ws).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = %e, "handshake failed"),
            }
        });
    }
}

/// Echoes until the connection is over. Everything already received in one
/// wakeup is queued, then written with a single flush. When the peer breaks
/// the protocol mid-batch, the echoes queued before the offending frame
/// still go out, followed by the close frame (the order Autobahn's strict
/// mode checks), and `recv` then finishes the closing handshake.
async fn echo<S>(mut ws: WebSocket<S>) -> Result<(), WsError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let mut first_error = None;
    while let Some(msg) = ws.recv().await {
        let mut next = Some(msg);
        while let Some(msg) = next {
            if let Err(e) = msg.and_then(|m| ws.feed(m)) {
                first_error.get_or_insert(e);
                break;
            }
            next = ws.try_recv();
        }
        if let Err(e) = ws.flush().await {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
