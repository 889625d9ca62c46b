//! `wshub`: the command-line tool of the wshub WebSocket system.
//!
//! Subcommands: `echo` (a conformance and benchmark echo server),
//! `connect` (an interactive client like wscat), `autobahn-client` (drives
//! the Autobahn|Testsuite fuzzingserver with our client).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod autobahn;
mod connect;
mod echo;

#[derive(Parser)]
#[command(
    name = "wshub",
    version,
    about = "wshub: real-time WebSocket engine and tools"
)]
struct Cli {
    /// Log filter (tracing syntax, e.g. `info`, `wshub_ws=debug`); the
    /// `RUST_LOG` environment variable wins when set.
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Echo every message back: for conformance tests and benchmarks.
    Echo(echo::Args),
    /// Connect to a WebSocket server: stdin lines are sent as text, received
    /// messages are printed. `/ping [data]` and `/close [code] [reason]`.
    Connect(connect::Args),
    /// Run the client side of the Autobahn|Testsuite against its
    /// fuzzingserver.
    AutobahnClient(autobahn::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.cmd {
        Cmd::Echo(a) => echo::run(a).map(|()| ExitCode::SUCCESS),
        Cmd::Connect(a) => connect::run(a),
        Cmd::AutobahnClient(a) => autobahn::run(a).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wshub: {e:#}");
            ExitCode::FAILURE
        }
    }
}
