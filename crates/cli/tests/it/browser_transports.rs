//! The browser client's transports (`/wshub.js`: websocket, http_stream,
//! sse, long_poll, and "auto" over them) in Debian's headless Chromium,
//! driven by `playwright-core` (`tests/interop/browser/transports.mjs`)
//! against `wshub serve`: the demo chat over each forced transport; "auto"
//! with WebSocket blocked in the page; "auto" behind an nginx that buffers
//! streamed answers, which ends on long_poll and gets every one of a steady
//! stream of API publications once and in order (the latency is printed);
//! and a plain `EventSource` following a channel over `uni_sse`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::browser::{browser_dir, require_browser, CHROMIUM};
use crate::sdk_interop::wshub_serve;
use crate::support::{run_client_ok, wshub_serve_dev, Finished, Proc, STARTUP};

const SECRET: &str = "browser-transports-secret";

/// Runs `node transports.mjs ARGS...` to completion (at most `limit`),
/// asserts it succeeded, prints and returns its output.
fn scenario(args: &[&str], limit: Duration, server: &Proc) -> String {
    require_browser();
    let mut node = Command::new("node");
    node.current_dir(browser_dir())
        .arg("transports.mjs")
        .args(args)
        .env("CHROMIUM", CHROMIUM);
    let t = Instant::now();
    let out: Finished = run_client_ok(
        &format!("chromium transports {}", args[0]),
        node,
        limit,
        server,
    );
    let stdout = out.stdout_str();
    eprintln!("{} ({:.1?}):\n{stdout}", args[0], t.elapsed());
    stdout
}

fn assert_lines(stdout: &str, prefixes: &[&str]) {
    for p in prefixes {
        assert!(
            stdout.lines().any(|l| l.starts_with(p)),
            "no line starting with {p:?} in:\n{stdout}"
        );
    }
}

/// The demo chat over each transport forced with `?transport=`: the page
/// shows it, receives API publications, publishes, presence lists it, and
/// after the server disconnected it (a reconnect code) it reconnects over
/// the same transport and recovers what was published meanwhile, in order
/// and once; on long_poll, with every other poll answer lost on the way,
/// every publication still arrives once and in order.
#[test]
fn demo_chat_works_over_each_forced_transport() {
    let (server, base) = wshub_serve_dev();
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-transports");
    let out = scenario(
        &["forced", &base, &out_dir.to_string_lossy()],
        Duration::from_secs(150),
        &server,
    );
    assert_lines(
        &out,
        &[
            "ok websocket:",
            "ok http_stream:",
            "ok sse:",
            "ok long_poll: chat",
            "ok long_poll: ",
        ],
    );
    assert!(
        out.contains("answers with messages lost"),
        "the lost-answer run did not report:\n{out}"
    );
    for t in ["websocket", "http_stream", "sse", "long_poll"] {
        let p = out_dir.join(format!("transport-{t}.png"));
        let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {} missing or empty", p.display());
    }
}

/// With WebSocket blocked in the page (refused at once, or never opening),
/// "auto" ends up on http_stream (after the stall timeout for the hanging
/// one), and remembers it: a reconnect and a reload go straight to it.
#[test]
fn auto_falls_back_to_http_stream_when_websocket_is_blocked() {
    let (server, base) = wshub_serve_dev();
    let out = scenario(&["blocked", &base], Duration::from_secs(90), &server);
    assert_lines(
        &out,
        &[
            "ok auto with websocket refused: http_stream",
            "ok auto with websocket hangs: http_stream",
        ],
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// nginx in front of `upstream` as a proxy that buffers streamed answers
/// (`proxy_buffering on`, the server's `X-Accel-Buffering: no` ignored,
/// gzip on as in many fronts: nginx 1.22 passes small chunks of a buffered
/// answer on at once, but with compression it holds them until its buffers
/// fill or the answer ends) and does not proxy WebSocket upgrades (no
/// `Upgrade` header is passed on: the handshake fails). Every answer that
/// ends gets through.
struct BufferingNginx {
    _proc: Proc,
    addr: SocketAddr,
    dir: PathBuf,
}

impl BufferingNginx {
    fn start(upstream: &str) -> BufferingNginx {
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| Command::new(p).arg("-v").output().is_ok())
            .expect("nginx is not installed (apt-get install nginx-light)");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "buffering-nginx-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("nginx dir");
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             gzip on;\n  gzip_proxied any;\n  gzip_min_length 0;\n  \
             gzip_types application/json text/event-stream text/plain;\n  \
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      \
             proxy_pass http://{upstream};\n      proxy_http_version 1.1;\n      \
             proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n      \
             proxy_buffering on;\n      proxy_ignore_headers X-Accel-Buffering;\n      \
             proxy_read_timeout 60s;\n    }}\n  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        // One process (no master/worker split): killing the guard's process
        // leaves no worker holding the port.
        let mut cmd = Command::new(nginx);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"));
        let p = Proc::spawn("nginx", cmd);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + STARTUP;
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx does not listen on {addr}\n{}",
                p.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        BufferingNginx {
            _proc: p,
            addr,
            dir,
        }
    }
}

impl Drop for BufferingNginx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Behind the buffering nginx, "auto" gives up on websocket (refused),
/// http_stream and sse (nothing within the stall timeout) and ends on
/// long_poll, in the demo chat and in a page with its own client; that
/// client gets 200 publications made through the API at 50/s, every one
/// once and in order; the publish-to-receive latency measured in the page
/// is printed.
#[test]
fn auto_falls_back_to_long_poll_behind_a_buffering_nginx() {
    let (server, base) = wshub_serve_dev();
    let upstream = base.trim_start_matches("http://").to_owned();
    let nginx = BufferingNginx::start(&upstream);
    let proxy = format!("http://{}", nginx.addr);
    let out = scenario(
        &["buffered", &proxy, &base, "200"],
        Duration::from_secs(150),
        &server,
    );
    assert_lines(
        &out,
        &[
            "ok chat behind the proxy: websocket -> http_stream -> sse -> long_poll",
            "ok long_poll behind the buffering proxy: 200 publications",
            "latency long_poll via nginx",
        ],
    );
}

/// Against a server that pings every second and waits 800 ms for the pong,
/// a client on each transport stays connected for 6 s: every ping is
/// answered (through `/emulation` on the HTTP transports), and a
/// publication at the end reaches all four.
#[test]
fn every_transport_answers_the_server_pings() {
    let config = serde_json::json!({
        "client": {
            "allow_anonymous_connect_without_token": true,
            "allowed_origins": ["*"],
            "ping_interval": "1s",
            "pong_timeout": "800ms"
        },
        "http_api": { "insecure": true },
        "demo": { "enabled": true },
        "http_stream": { "enabled": true },
        "sse": { "enabled": true },
        "long_poll": { "enabled": true },
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_anonymous": true,
                "allow_subscribe_for_client": true
            }
        }
    })
    .to_string();
    let (server, base) = wshub_serve(&config);
    let out = scenario(&["pings", &base, "6"], Duration::from_secs(60), &server);
    assert_lines(&out, &["ok pings: websocket"]);
}

/// A plain browser `EventSource` on `/connection/uni_sse?cf_connect=...`
/// with a token whose `channels` claim names the channel: the connect push
/// lists it and the API's publications follow, in order.
#[test]
fn plain_eventsource_follows_a_channel_over_uni_sse() {
    let config = serde_json::json!({
        "client": {
            "token": { "hmac_secret_key": SECRET },
            "allowed_origins": ["*"]
        },
        "http_api": { "insecure": true },
        "demo": { "enabled": true },
        "uni_sse": { "enabled": true }
    })
    .to_string();
    let (server, base) = wshub_serve(&config);
    let token =
        wshub_hub::auth::generate_connection_token(SECRET, "eve", None, None, &["news".to_owned()])
            .expect("token");
    let out = scenario(
        &["uni-sse", &base, &token, "news"],
        Duration::from_secs(60),
        &server,
    );
    assert_lines(&out, &["ok uni_sse: a plain EventSource followed news"]);
}
