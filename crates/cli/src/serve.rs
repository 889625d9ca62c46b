//! `wshub serve`, `wshub check-config`, `wshub gen-token`, `wshub publish`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wshub_config::{BrokerKind, Config, Loader};
use wshub_hub::broker::{Broker, MemoryBroker, MemoryBrokerConfig};

/// `wshub serve` flags.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Configuration file (Centrifugo v6 format: JSON, YAML or TOML). Without
    /// one, development defaults are used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides `http_server.address`/`port`).
    #[arg(long)]
    listen: Option<String>,
    /// Serve https:// and wss:// with this PEM certificate chain (leaf
    /// first); overrides `http_server.tls`. Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also serve HTTP/3 (QUIC, UDP on the same port number): WebSockets by
    /// RFC 9220 and, with --webtransport, WebTransport. Sets
    /// `http_server.http3.enabled`; needs TLS (--tls-cert or
    /// `http_server.tls`).
    #[arg(long)]
    http3: bool,
    /// Serve the WebTransport transport at `webtransport.handler_prefix`
    /// (sets `webtransport.enabled`; implies --http3).
    #[arg(long)]
    webtransport: bool,
}

/// `wshub check-config` arguments.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The configuration file.
    file: PathBuf,
}

/// `wshub gen-token` flags.
#[derive(clap::Args)]
pub struct TokenArgs {
    /// The user id (`sub` claim); empty for an anonymous token.
    #[arg(long, default_value = "")]
    user: String,
    /// Lifetime in seconds (0 = no expiry).
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// HMAC secret (else `client.token.hmac_secret_key` of `--config`).
    #[arg(long)]
    secret: Option<String>,
    /// Configuration file to take the HMAC secret from.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// A channel to subscribe the connection to on the server side (the
    /// `channels` claim; what a unidirectional client follows). Repeatable.
    #[arg(long = "channel")]
    channels: Vec<String>,
}

/// `wshub publish` arguments.
#[derive(clap::Args)]
pub struct PublishArgs {
    /// The channel.
    channel: String,
    /// The data, a JSON text (`'{"text":"hi"}'`).
    data: String,
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    api: String,
    /// API key (`http_api.key`).
    #[arg(long, env = "WSHUB_API_KEY")]
    api_key: Option<String>,
}

fn load(path: &PathBuf) -> Result<Config> {
    let loaded = Loader::new()
        .token_key_check(wshub_hub::auth::check_token_keys)
        .process_env()
        .load_file(path)
        .with_context(|| format!("cannot load {}", path.display()))?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
        eprintln!("warning: {w}");
    }
    Ok(loaded.config)
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(p) => load(p)?,
        None => {
            eprintln!(
                "wshub: no --config given: using DEVELOPMENT defaults (anonymous clients, \
                 API without key, any origin); do not expose this server"
            );
            Config::development_default()
        }
    };
    if config.http_server.address.is_empty() {
        config.http_server.address = "0.0.0.0".into();
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let tls = &mut config.http_server.tls;
        tls.enabled = true;
        tls.cert_pem = read_pem(cert, "--tls-cert")?;
        tls.key_pem = read_pem(key, "--tls-key")?;
    }
    if args.http3 || args.webtransport {
        config.http_server.http3.enabled = true;
    }
    if args.webtransport {
        config.webtransport.enabled = true;
    }
    if config.http_server.http3.enabled && !config.http_server.tls.enabled {
        anyhow::bail!(
            "HTTP/3 runs over QUIC, which requires TLS: give --tls-cert and --tls-key \
             (`wshub gen-cert` makes a development pair) or set http_server.tls"
        );
    }
    let addr = match args.listen {
        Some(a) => a,
        None => format!("{}:{}", config.http_server.address, config.http_server.port),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let fd = raise_fd_limit();
    rt.block_on(async move {
        eprintln!("wshub: {}", config.describe());
        let connection_limit = config.client.connection_limit;
        let configured_max = config.http_server.max_connections;
        let broker = make_broker(&config).await?;
        let server = wshub_server::Server::bind(config, broker, &addr).await?;
        log_capacity(&server, fd, connection_limit, configured_max);
        println!("listening on {}://{}", server.scheme(), server.local_addr());
        if let Some(a) = server.http3_addr() {
            println!("listening on udp/{a} (HTTP/3)");
        }
        server.run(shutdown_signal()).await;
        eprintln!("wshub: stopped");
        Ok(())
    })
}

/// Raises the soft open-file limit to the hard one: the limit in force and
/// the one before, when it was raised.
fn raise_fd_limit() -> (Option<u64>, Option<u64>) {
    match wshub_server::capacity::raise_fd_limit() {
        Ok(l) => (Some(l.soft), l.raised_from),
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit: {e}");
            (wshub_server::capacity::fd_limit(), None)
        }
    }
}

/// Says how many connections the node can hold, and warns when the
/// configured limits expect more than the open-file limit allows.
fn log_capacity(
    server: &wshub_server::Server,
    (fd, raised_from): (Option<u64>, Option<u64>),
    connection_limit: u64,
    configured_max: u32,
) {
    let cap = server.max_connections() as u64;
    let fd_text = match (fd, raised_from) {
        (Some(n), Some(from)) => format!("{n} (raised from {from})"),
        (Some(n), None) => n.to_string(),
        (None, _) => "unknown".to_owned(),
    };
    eprintln!(
        "wshub: capacity: {cap} open connections (http_server.max_connections{}), open-file \
         limit {fd_text}, listen backlog {}",
        if configured_max == 0 {
            " from the open-file limit"
        } else {
            ""
        },
        server.listen_backlog()
    );
    if let Some(fd) = fd {
        let usable = wshub_server::capacity::default_max_connections(fd);
        if cap > usable {
            tracing::warn!(
                "http_server.max_connections {cap} is above what the open-file limit {fd} \
                 allows ({usable} after a reserve for the broker and logs): accept will run \
                 out of descriptors first (raise `ulimit -n`)"
            );
        }
    }
    if connection_limit > cap {
        tracing::warn!(
            "client.connection_limit {connection_limit} is above the {cap} connections the node \
             can hold (raise `ulimit -n` or http_server.max_connections)"
        );
    }
}

/// The broker the configuration selects: memory (one node), Redis
/// (`engine.type: redis`, or `broker.enabled` with `broker.type: redis`) or
/// NATS (`broker.type: nats`).
async fn make_broker(config: &Config) -> Result<Arc<dyn Broker>> {
    Ok(match config.broker_kind() {
        BrokerKind::Redis => {
            let r = config.redis();
            if !r.cluster_address.is_empty() || !r.sentinel_address.is_empty() {
                bail!("redis: Cluster and Sentinel are not supported yet (use one address)");
            }
            if r.tls.enabled {
                bail!("redis: TLS is not supported yet");
            }
            let cfg = wshub_broker_redis::RedisBrokerConfig::from_config(r);
            Arc::new(wshub_broker_redis::RedisBroker::new(cfg).context("redis broker")?)
        }
        BrokerKind::Nats => {
            let cfg = wshub_broker_nats::NatsBrokerConfig::from_config(&config.broker.nats);
            Arc::new(wshub_broker_nats::NatsBroker::new(cfg))
        }
        _ => Arc::new(MemoryBroker::new(MemoryBrokerConfig::default())),
    })
}

/// A PEM file's contents, for `http_server.tls` (which takes raw PEM).
fn read_pem(path: &PathBuf, flag: &str) -> Result<String> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    if !pem.contains("-----BEGIN") {
        bail!("{flag}: {} does not contain PEM data", path.display());
    }
    Ok(pem)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub fn check_config(args: CheckArgs) -> Result<ExitCode> {
    let config = load(&args.file)?;
    println!("{}: ok ({})", args.file.display(), config.describe());
    Ok(ExitCode::SUCCESS)
}

pub fn gen_token(args: TokenArgs) -> Result<()> {
    let secret = match (args.secret, &args.config) {
        (Some(s), _) => s,
        (None, Some(p)) => load(p)?.client.token.hmac_secret_key,
        (None, None) => bail!("give --secret or --config"),
    };
    if secret.is_empty() {
        bail!("no HMAC secret (client.token.hmac_secret_key is empty)");
    }
    let ttl = (args.ttl > 0).then(|| Duration::from_secs(args.ttl));
    let token =
        wshub_hub::auth::generate_connection_token(&secret, &args.user, ttl, None, &args.channels)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{token}");
    Ok(())
}

pub fn publish(args: PublishArgs) -> Result<ExitCode> {
    let data: serde_json::Value =
        serde_json::from_str(&args.data).context("DATA must be a JSON text")?;
    let body = serde_json::json!({ "channel": args.channel, "data": data }).to_string();
    let url = url::Url::parse(&args.api).context("bad --api URL")?;
    if url.scheme() != "http" {
        bail!("--api must be an http:// URL");
    }
    let host = url.host_str().context("--api has no host")?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let path = format!("{}/api/publish", url.path().trim_end_matches('/'));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, resp) = rt.block_on(async {
        let mut s = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .context("connect timed out")??;
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(k) = &args.api_key {
            req.push_str(&format!("X-API-Key: {k}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        s.write_all(req.as_bytes()).await?;
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .context("no answer")??;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_owned();
        anyhow::Ok((status, body))
    })?;
    println!("{}", resp.trim());
    Ok(if status == 200 && !resp.contains("\"error\"") {
        ExitCode::SUCCESS
    } else {
        eprintln!("wshub: publish failed (HTTP {status})");
        ExitCode::FAILURE
    })
}
