//! `wshub connect`: an interactive client, also usable in a pipe.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;
use wshub_proto::handshake::ClientOptions as HandshakeOptions;
use wshub_proto::{CloseCode, DeflateConfig, Message};
use wshub_ws::{connect, ClientOptions, Options, TlsOptions, WsError};

/// `wshub connect` flags.
#[derive(clap::Args)]
pub struct Args {
    /// `ws://` or `wss://` URL.
    url: String,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Subprotocol to offer (repeatable, in order of preference).
    #[arg(long = "subprotocol")]
    subprotocols: Vec<String>,
    /// Offer permessage-deflate.
    #[arg(long)]
    deflate: bool,
    /// Skip TLS certificate verification (testing only).
    #[arg(long)]
    insecure: bool,
    /// Extra CA certificate (PEM) to trust for wss://.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// Origin header to send.
    #[arg(long)]
    origin: Option<String>,
    /// Seconds to wait for the connection.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
}

/// Exit status: 0 after a normal close (1000, 1001 or no code, or any code
/// we chose with `/close`), 2 when the server closed with another code, 1 on errors (connect failure, protocol
/// error, connection lost without a close).
pub fn run(args: Args) -> Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(session(args))
}

fn options(args: &Args) -> Result<ClientOptions> {
    let mut hs = HandshakeOptions::default().subprotocols(args.subprotocols.clone());
    if args.deflate {
        hs = hs.deflate(Some(DeflateConfig::default()));
    }
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("header {h:?} is not `Name: value`");
        };
        hs = hs.header(name.trim(), value.trim());
    }
    if let Some(o) = &args.origin {
        hs = hs.origin(o.clone());
    }
    let mut tls = TlsOptions::default().insecure_skip_verify(args.insecure);
    if let Some(path) = &args.ca {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        tls = tls.extra_ca_pem(pem);
    }
    Ok(ClientOptions::default()
        .ws(Options::default())
        .handshake(hs)
        .tls(tls)
        .connect_timeout(Duration::from_secs(args.connect_timeout)))
}

async fn session(args: Args) -> Result<ExitCode> {
    let opts = options(&args)?;
    let mut ws = connect(&args.url, &opts)
        .await
        .with_context(|| format!("cannot connect to {}", args.url))?;
    let interactive = std::io::stdin().is_terminal();
    eprintln!(
        "connected to {}{}{}",
        args.url,
        ws.protocol()
            .map(|p| format!(" (subprotocol {p})"))
            .unwrap_or_default(),
        if ws.deflate().is_some() {
            " (permessage-deflate)"
        } else {
            ""
        }
    );
    let mut lines = stdin_lines();
    let mut stdin_open = true;
    // Whether the close handshake was ours: the peer's frame is then just
    // the echo of our code.
    let mut we_closed = false;
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            line = lines.recv(), if stdin_open => {
                match line.transpose()? {
                    Some(line) => we_closed |= command(&mut ws, &line).await?,
                    None => {
                        we_closed = true;
                        // End of input: close normally, then keep printing
                        // what arrives until the server answers.
                        stdin_open = false;
                        ws.start_close(CloseCode::NORMAL, "")?;
                        ws.flush().await?;
                    }
                }
            }
            msg = ws.recv() => match msg {
                Some(Ok(m)) => print_message(&mut stdout, &m, interactive)?,
                Some(Err(e)) => return Ok(ended_with_error(e)),
                None => return Ok(ended_cleanly(ws.close_info(), we_closed)),
            },
        }
    }
}

/// Reads stdin on a plain thread: a blocking read cannot be cancelled, and
/// tokio's stdin would keep the runtime (and the process) alive after the
/// server closed while the user had not typed anything.
fn stdin_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let stop = line.is_err();
            if tx.blocking_send(line).is_err() || stop {
                return;
            }
        }
    });
    rx
}

/// Runs one input line; returns whether it started the closing handshake.
async fn command<S>(ws: &mut wshub_ws::WebSocket<S>, line: &str) -> Result<bool>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    if let Some(rest) = line.strip_prefix("/ping") {
        ws.ping(rest.trim().as_bytes()).await?;
    } else if let Some(rest) = line.strip_prefix("/close") {
        let mut parts = rest.trim().splitn(2, ' ');
        let code = match parts.next().filter(|s| !s.is_empty()) {
            Some(c) => CloseCode(c.parse().context("close code must be a number")?),
            None => CloseCode::NORMAL,
        };
        let reason = parts.next().unwrap_or("");
        ws.start_close(code, reason)?;
        ws.flush().await?;
        return Ok(true);
    } else {
        ws.send_text(line).await?;
    }
    Ok(false)
}

fn print_message(out: &mut std::io::Stdout, m: &Message, interactive: bool) -> Result<()> {
    let prefix = if interactive { "< " } else { "" };
    match m {
        Message::Text(t) => writeln!(out, "{prefix}{}", t.as_str())?,
        Message::Binary(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            writeln!(out, "{prefix}[binary {} bytes] {hex}", b.len())?
        }
    }
    out.flush()?;
    Ok(())
}

fn ended_cleanly(info: Option<(Option<CloseCode>, String)>, we_closed: bool) -> ExitCode {
    match info {
        Some((Some(code), reason))
            if !we_closed && code != CloseCode::NORMAL && code != CloseCode::GOING_AWAY =>
        {
            eprintln!("closed by server: {code} {reason}");
            ExitCode::from(2)
        }
        Some((code, reason)) => {
            eprintln!(
                "closed: {} {reason}",
                code.map(|c| c.to_string())
                    .unwrap_or_else(|| "no code".into())
            );
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("closed");
            ExitCode::SUCCESS
        }
    }
}

fn ended_with_error(e: WsError) -> ExitCode {
    eprintln!("connection failed: {e}");
    ExitCode::FAILURE
}
