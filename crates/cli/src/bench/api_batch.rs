//! `wshub bench api-batch`: one (or a few concurrent) `POST /api/batch`
//! requests of N publish commands against a running gateway, and the
//! server's memory around them read from `/proc/PID/status`: VmRSS and
//! VmHWM before and after, and VmRSS sampled every 5 ms while the requests
//! run. The peak growth is the sampled peak (or the VmHWM after, when it
//! moved) minus VmRSS before. The gateway must allow N commands
//! (`http_api.max_batch_commands`). With `--broadcast-channels N` each
//! request is instead one `POST /api/broadcast` to N channels (the gateway
//! must allow N: `http_api.max_broadcast_channels`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `wshub bench api-batch` flags.
#[derive(clap::Args)]
pub struct ApiBatchArgs {
    /// The gateway's HTTP address (`http://HOST:PORT`).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Publish commands per batch.
    #[arg(long, default_value_t = 100_000)]
    commands: usize,
    /// Batches sent at once (each on its own connection).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Channels the commands cycle over.
    #[arg(long, default_value_t = 100)]
    channels: usize,
    /// Channel name prefix (the channels are `PREFIX0`, `PREFIX1`, ...).
    #[arg(long, default_value = "bench-api-")]
    channel_prefix: String,
    /// Instead of batches: one `broadcast` to this many channels per request.
    #[arg(long)]
    broadcast_channels: Option<usize>,
    /// API key (`X-API-Key`), if the gateway needs one.
    #[arg(long)]
    api_key: Option<String>,
    /// The gateway's process id, for its memory (`/proc/PID/status`).
    #[arg(long)]
    server_pid: u32,
}

/// `(VmRSS, VmHWM)` of `pid` in KiB.
pub fn memory(pid: u32) -> Result<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss), Some(hwm)) => Ok((rss, hwm)),
        _ => bail!("no VmRSS/VmHWM in /proc/{pid}/status"),
    }
}

fn broadcast_body(a: &ApiBatchArgs, n: usize) -> String {
    let channels: Vec<String> = (0..n)
        .map(|i| format!("\"{}{i}\"", a.channel_prefix))
        .collect();
    format!(
        r#"{{"channels":[{}],"data":{{"payload":"{}"}}}}"#,
        channels.join(","),
        "x".repeat(1000)
    )
}

fn batch_body(a: &ApiBatchArgs) -> String {
    let mut s = String::with_capacity(a.commands * 64 + 16);
    s.push_str(r#"{"commands":["#);
    for i in 0..a.commands {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"publish":{{"channel":"{}{}","data":{{"n":{i}}}}}}}"#,
            a.channel_prefix,
            i % a.channels.max(1)
        ));
    }
    s.push_str("]}");
    s
}

/// The payload of a chunked HTTP/1.1 body.
fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            bail!("cut-short chunked body");
        };
        let size = std::str::from_utf8(&b[..eol])?;
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .context("chunk size")?;
        b = &b[eol + 2..];
        if n == 0 {
            return Ok(out);
        }
        if b.len() < n + 2 {
            bail!("cut-short chunk");
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

/// Sends one batch (or broadcast); returns (status, answer bytes on the
/// wire, replies).
async fn one_batch(
    addr: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> Result<(u16, usize, usize)> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(k) = key {
        req.push_str(&format!("X-API-Key: {k}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let Some(split) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no HTTP answer");
    };
    let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let raw = &out[split + 4..];
    let payload = if head.contains("transfer-encoding: chunked") {
        dechunk(raw)?
    } else {
        raw.to_vec()
    };
    if status != 200 {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&payload));
    }
    let v: serde_json::Value = serde_json::from_slice(&payload).context("answer is not JSON")?;
    let replies = v["replies"]
        .as_array()
        .or(v["result"]["responses"].as_array())
        .map_or(0, Vec::len);
    Ok((status, out.len(), replies))
}

pub async fn run(a: ApiBatchArgs) -> Result<()> {
    let addr = a
        .url
        .strip_prefix("http://")
        .context("--url must be http://HOST:PORT")?
        .trim_end_matches('/')
        .to_owned();
    let (path, body, expected) = match a.broadcast_channels {
        Some(n) => ("/api/broadcast", broadcast_body(&a, n), n),
        None => ("/api/batch", batch_body(&a), a.commands),
    };
    let body = Arc::new(body);
    let (rss_before, hwm_before) = memory(a.server_pid)?;
    eprintln!(
        "server before: VmRSS {} KiB, VmHWM {} KiB; sending {} x {path} with {} items ({} bytes each)",
        rss_before,
        hwm_before,
        a.concurrency,
        expected,
        body.len()
    );
    // Sample the server's RSS while the batches run.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (done, peak, pid) = (done.clone(), peak.clone(), a.server_pid);
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok((rss, _)) = memory(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency.max(1) {
        let (addr, key, body) = (addr.clone(), a.api_key.clone(), body.clone());
        tasks.push(tokio::task::spawn_local(async move {
            one_batch(&addr, path, key.as_deref(), &body).await
        }));
    }
    let mut answer_bytes = 0;
    let mut replies = 0;
    let mut errors = 0;
    for t in tasks {
        match t.await? {
            Ok((_, bytes, n)) => {
                answer_bytes += bytes;
                replies += n;
                if n != expected {
                    errors += 1;
                }
            }
            Err(e) => {
                eprintln!("batch failed: {e:#}");
                errors += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let (rss_after, hwm_after) = memory(a.server_pid)?;
    let sampled_peak = peak.load(Ordering::Relaxed);
    let peak_kib = if hwm_after > hwm_before {
        hwm_after.max(sampled_peak)
    } else {
        sampled_peak
    };
    let growth_mib = peak_kib.saturating_sub(rss_before) as f64 / 1024.0;
    eprintln!(
        "server after: VmRSS {rss_after} KiB, VmHWM {hwm_after} KiB, sampled peak VmRSS \
         {sampled_peak} KiB; peak growth {growth_mib:.1} MiB for {} bytes of body; {replies} \
         replies in {secs:.2} s",
        body.len() * a.concurrency.max(1)
    );
    let summary = serde_json::json!({
        "bench": "api-batch",
        "path": path,
        "commands": expected,
        "concurrency": a.concurrency.max(1),
        "body_bytes": body.len(),
        "answer_bytes": answer_bytes,
        "replies": replies,
        "errors": errors,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "commands_per_s": ((replies as f64 / secs) as u64),
        "rss_before_kib": rss_before,
        "hwm_before_kib": hwm_before,
        "rss_after_kib": rss_after,
        "hwm_after_kib": hwm_after,
        "sampled_peak_rss_kib": sampled_peak,
        "peak_growth_mib": (growth_mib * 10.0).round() / 10.0,
    });
    println!("{summary}");
    if errors > 0 {
        bail!("{errors} of {} batches failed", a.concurrency.max(1));
    }
    Ok(())
}
