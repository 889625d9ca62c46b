//! `wshub echo`: an echo server on the engine, one task per connection.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use wshub_proto::handshake::ServerOptions as HandshakeOptions;
use wshub_proto::DeflateConfig;
use wshub_ws::{accept, serve_http2_with, sniff_http2, Options, ServerOptions, WebSocket, WsError};

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
    /// PEM certificate chain: serve wss:// and WebSockets over HTTP/2 (ALPN
    /// `h2`, RFC 8441) on the same port. Needs `--tls-key`.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// HTTP/2: WebSockets one connection may have open at once
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    #[arg(long, default_value_t = 128)]
    http2_max_streams: u32,
    /// PEM private key for `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
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
    let h2 = std::sync::Arc::new(
        wshub_ws::Http2Options::default().max_concurrent_streams(args.http2_max_streams.max(1)),
    );
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            let cert = std::fs::read(c).with_context(|| format!("cannot read {}", c.display()))?;
            let key = std::fs::read(k).with_context(|| format!("cannot read {}", k.display()))?;
            Some(wshub_ws::tls_acceptor_from_pem_h2(&cert, &key)?)
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    println!("listening on {scheme}://{addr}");
    tracing::info!(%addr, deflate = args.deflate, tls = tls.is_some(), "echo server listening (HTTP/1.1 and HTTP/2)");
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
        let tls = tls.clone();
        let h2 = h2.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + opts.ws.handshake_timeout;
            let r = match tls {
                None => match sniff_http2(&stream, deadline).await {
                    Ok(true) => echo_http2(stream, &opts, &h2).await,
                    Ok(false) => echo_http1(stream, &opts).await,
                    Err(e) => Err(e.into()),
                },
                Some(acceptor) => {
                    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                        Err(_) => Err(WsError::Timeout),
                        Ok(Err(e)) => Err(e.into()),
                        Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                            echo_http2(tls, &opts, &h2).await
                        }
                        Ok(Ok(tls)) => echo_http1(tls, &opts).await,
                    }
                }
            };
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// One HTTP/1.1 connection: the upgrade, then the echo.
async fn echo_http1<S>(stream: S, opts: &ServerOptions) -> Result<(), WsError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    echo(accept(stream, opts).await?).await
}

/// One HTTP/2 connection: every extended CONNECT (any path) is a WebSocket
/// that echoes on its stream.
async fn echo_http2<S>(
    stream: S,
    opts: &ServerOptions,
    h2: &wshub_ws::Http2Options,
) -> Result<(), WsError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    serve_http2_with(
        stream,
        opts,
        h2,
        |_| Ok(()),
        |ws, _req| async move {
            if let Err(e) = echo(ws).await {
                tracing::debug!(error = %e, "HTTP/2 WebSocket ended with an error");
            }
        },
    )
    .await
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
