//! `wshub autobahn-client`: runs every case of an Autobahn|Testsuite
//! fuzzingserver with our client, echoing each message back.

use anyhow::{bail, Context, Result};
use wshub_proto::handshake::ClientOptions as HandshakeOptions;
use wshub_proto::DeflateConfig;
use wshub_ws::{connect, ClientOptions, Options};

/// `wshub autobahn-client` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Base URL of the fuzzingserver.
    #[arg(long, default_value = "ws://127.0.0.1:9002")]
    url: String,
    /// Agent name the reports are filed under.
    #[arg(long, default_value = "wshub")]
    agent: String,
    /// Offer permessage-deflate.
    #[arg(long)]
    deflate: bool,
    /// Run only these case numbers (1-based), e.g. `--case 1 --case 7`.
    #[arg(long)]
    case: Vec<u32>,
}

pub fn run(args: Args) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(drive(args))
}

fn options(deflate: bool) -> ClientOptions {
    let mut hs = HandshakeOptions::default();
    if deflate {
        hs = hs.deflate(Some(DeflateConfig::default()));
    }
    ClientOptions::default()
        .ws(Options::default())
        .handshake(hs)
}

async fn drive(args: Args) -> Result<()> {
    let base = args.url.trim_end_matches('/');
    let plain = options(false);
    let mut ws = connect(&format!("{base}/getCaseCount"), &plain)
        .await
        .context("cannot reach the fuzzingserver")?;
    let count: u32 = match ws.recv().await {
        Some(Ok(m)) => std::str::from_utf8(m.as_bytes())?.trim().parse()?,
        other => bail!("no case count: {other:?}"),
    };
    while ws.recv().await.is_some() {}
    let cases: Vec<u32> = if args.case.is_empty() {
        (1..=count).collect()
    } else {
        args.case.clone()
    };
    let opts = options(args.deflate);
    for case in cases {
        let url = format!("{base}/runCase?case={case}&agent={}", args.agent);
        eprintln!("case {case}/{count}");
        match connect(&url, &opts).await {
            Ok(mut ws) => {
                while let Some(msg) = ws.recv().await {
                    match msg {
                        Ok(m) => {
                            if ws.send(m).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::info!(case, error = %e, "case ended with an error");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(case, error = %e, "connect failed"),
        }
    }
    let mut ws = connect(
        &format!("{base}/updateReports?agent={}", args.agent),
        &plain,
    )
    .await?;
    while ws.recv().await.is_some() {}
    eprintln!("reports updated for agent {}", args.agent);
    Ok(())
}
