//! `wshub`: the command-line tool of the wshub WebSocket system.
//!
//! Subcommands: `echo` (a conformance and benchmark echo server),
//! `connect` (an interactive client like wscat), `autobahn-client` (drives
//! the Autobahn|Testsuite fuzzingserver with our client), `serve` (the
//! real-time gateway), `check-config`, `gen-token`, `publish`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod autobahn;
mod bench;
mod cert;
mod connect;
mod echo;
mod serve;

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
    /// Run the real-time gateway (Centrifugo client protocol v2 and server
    /// API) on the embedded memory broker.
    Serve(serve::ServeArgs),
    /// Load and validate a configuration file.
    CheckConfig(serve::CheckArgs),
    /// Print an HS256 connection token.
    #[command(alias = "token")]
    GenToken(serve::TokenArgs),
    /// Publish into a channel through the server HTTP API.
    Publish(serve::PublishArgs),
    /// Write a self-signed development certificate and key (ECDSA P-256)
    /// for `serve`/`echo --tls-cert/--tls-key`; prints the hashes browsers
    /// take to trust it.
    GenCert(cert::Args),
    /// Load generators that print progress and one JSON summary line.
    #[command(subcommand)]
    Bench(bench::Bench),
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
        Cmd::Serve(a) => serve::serve(a).map(|()| ExitCode::SUCCESS),
        Cmd::CheckConfig(a) => serve::check_config(a),
        Cmd::GenToken(a) => serve::gen_token(a).map(|()| ExitCode::SUCCESS),
        Cmd::Publish(a) => serve::publish(a),
        Cmd::GenCert(a) => cert::run(a).map(|()| ExitCode::SUCCESS),
        Cmd::Bench(b) => bench::run(b).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wshub: {e:#}");
            ExitCode::FAILURE
        }
    }
}
