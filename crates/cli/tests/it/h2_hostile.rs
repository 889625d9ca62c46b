//! Hostile HTTP/2 clients (Python `h2`, `tests/interop/py_h2_hostile.py`)
//! against `wshub echo`: rapid reset, CONTINUATION and SETTINGS floods,
//! connections that never finish their preface or headers, too many
//! streams, flow-control stalls and overflows, malformed extended
//! CONNECTs; and the same attacks, where they do not need an echo, against
//! `wshub serve` (its HTTP/2 front is hyper's, configured by the gateway),
//! whose WebSockets are probed with a connect command instead.
//!
//! Each test has a server of its own. Before the attack a well-behaved
//! client (an HTTP/2 WebSocket and an HTTP/1.1 one, `roundtrip`) warms it
//! up and the server's open descriptors and memory are noted; after it the
//! same client must still work, and the descriptors and resident memory
//! must come back near that baseline. The peak (`VmHWM`) bounds what the
//! attack made the server hold.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    proc_status, python, python_script, run_client_ok, wshub_echo, wshub_serve_dev, Proc,
};

const MIB: u64 = 1 << 20;
/// How far resident memory may stay above the baseline once an attack is
/// over (freed memory that the allocator keeps counts).
const RSS_SLACK: u64 = 32 * MIB;
/// `Options::high_water_mark` default: queued output a WebSocket may hold.
const HIGH_WATER_MARK: u64 = 4 * MIB;
/// `Http2Options` defaults of the server.
const STREAM_WINDOW: u64 = 256 << 10;
const MAX_STREAMS: u64 = 128;

/// Fails (never skips) unless the interpreter has the `h2` package.
fn require_h2() {
    let mut cmd = std::process::Command::new(python());
    cmd.args(["-c", "import h2, hpack; print(h2.__version__)"]);
    let mut p = Proc::spawn("python -c 'import h2'", cmd);
    p.close_stdin();
    let out = p.wait(Duration::from_secs(30));
    assert!(
        out.status.success(),
        "the Python `h2` package is missing ({}): {}\nInstall it with:\n    \
         .venv/bin/pip install -r tests/interop/requirements.txt",
        out.status,
        out.stderr.trim()
    );
}

/// A server's open descriptors and memory, from /proc.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub fds: usize,
    pub rss: u64,
    pub hwm: u64,
}

struct Target {
    server: Proc,
    addr: String,
    base: Usage,
    /// `wshub serve` (the script's `--gateway`), not `wshub echo`.
    gateway: bool,
}

pub fn usage(pid: u32) -> Usage {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("cannot list /proc/{pid}/fd: {e}"));
    Usage {
        fds,
        rss: proc_status(pid, "VmRSS"),
        hwm: proc_status(pid, "VmHWM"),
    }
}

pub fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / MIB as f64)
}

impl Target {
    /// A fresh `wshub echo`, warmed up by one round trip, with its
    /// baseline taken once its descriptor count is steady.
    fn start() -> Target {
        require_h2();
        let (server, url) = wshub_echo(&[]);
        let addr = url
            .strip_prefix("ws://")
            .expect("ws:// URL")
            .trim_end_matches('/')
            .to_owned();
        Target::warmed(server, addr, false)
    }

    /// A fresh `wshub serve` with its development defaults (cleartext
    /// HTTP/2 by prior knowledge on its port), warmed up likewise.
    fn start_gateway() -> Target {
        require_h2();
        let (server, url) = wshub_serve_dev();
        let addr = url
            .strip_prefix("http://")
            .expect("http:// URL")
            .trim_end_matches('/')
            .to_owned();
        Target::warmed(server, addr, true)
    }

    fn warmed(server: Proc, addr: String, gateway: bool) -> Target {
        let mut t = Target {
            server,
            addr,
            base: Usage {
                fds: 0,
                rss: 0,
                hwm: 0,
            },
            gateway,
        };
        t.roundtrip();
        let pid = t.server.pid();
        let mut last = usage(pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            thread::sleep(Duration::from_millis(100));
            let now = usage(pid);
            if now.fds == last.fds || Instant::now() >= deadline {
                last = now;
                break;
            }
            last = now;
        }
        t.base = last;
        t
    }

    /// Runs `py_h2_hostile.py COMMAND ADDR ARGS...` (it must exit 0) and
    /// returns its JSON line.
    fn script(&self, command: &str, args: &[&str], limit: Duration) -> Value {
        let mut cmd = python_script("py_h2_hostile.py");
        cmd.args([command, self.addr.as_str()]).args(args);
        if self.gateway {
            cmd.arg("--gateway");
        }
        let out = run_client_ok(
            &format!("py_h2_hostile.py {command}"),
            cmd,
            limit,
            &self.server,
        );
        let v = json_line(&out.stdout_str());
        assert!(
            v.get("error").is_none(),
            "{command} could not run its attack: {v}"
        );
        v
    }

    /// A well-behaved HTTP/2 WebSocket and an HTTP/1.1 one both echo.
    fn roundtrip(&self) {
        let v = self.script("roundtrip", &[], Duration::from_secs(30));
        assert_eq!(v["ok"], true, "round trip failed: {v}");
    }

    /// After an attack: a new client still works, the descriptors are back
    /// to the baseline and resident memory near it (bounded wait). Returns
    /// the usage seen, with the peak the attack caused.
    fn recovered(&self, what: &str) -> Usage {
        self.roundtrip();
        let pid = self.server.pid();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut now = usage(pid);
        while (now.fds > self.base.fds || now.rss > self.base.rss + RSS_SLACK)
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(100));
            now = usage(pid);
        }
        eprintln!(
            "{what}: server fds {} -> {}, VmRSS {} -> {}, VmHWM {} -> {}",
            self.base.fds,
            now.fds,
            mib(self.base.rss),
            mib(now.rss),
            mib(self.base.hwm),
            mib(now.hwm)
        );
        assert!(
            now.fds <= self.base.fds,
            "{what}: the server holds {} descriptors, {} before the attack",
            now.fds,
            self.base.fds
        );
        assert!(
            now.rss <= self.base.rss + RSS_SLACK,
            "{what}: server VmRSS {} after the attack, {} before",
            mib(now.rss),
            mib(self.base.rss)
        );
        now
    }

    /// The attack made the server's peak resident memory grow by at most
    /// `limit`.
    fn assert_peak_growth(&self, now: Usage, limit: u64, what: &str) {
        let grew = now.hwm.saturating_sub(self.base.hwm);
        assert!(
            grew <= limit,
            "{what}: the server's peak memory grew by {} (VmHWM {} -> {}), more than {}",
            mib(grew),
            mib(self.base.hwm),
            mib(now.hwm),
            mib(limit)
        );
    }
}

/// The last JSON line a script printed.
fn json_line(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn f64_of(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer {key:?} in {v}"))
}

fn goaway_name(v: &Value) -> Option<&str> {
    v["goaway"]["name"].as_str()
}

/// CVE-2023-44487: 1 000 extended CONNECTs, each reset at once. The server
/// must stop it with GOAWAY ENHANCE_YOUR_CALM long before the last stream
/// and close the connection.
#[test]
fn h2_rapid_reset_gets_goaway_enhance_your_calm() {
    let t = Target::start();
    let v = t.script(
        "rapid-reset",
        &["--streams", "1000"],
        Duration::from_secs(30),
    );
    eprintln!("rapid-reset: {v}");
    assert_eq!(goaway_name(&v), Some("ENHANCE_YOUR_CALM"), "{v}");
    let last = v["goaway"]["last_stream_id"].as_u64().unwrap();
    assert!(
        last < 1000,
        "the server went on to stream {last} (of 1..1999) before its GOAWAY: {v}"
    );
    assert!(
        v["closed"].is_string(),
        "connection not closed after the GOAWAY: {v}"
    );
    assert!(f64_of(&v, "closed_after_s") < 5.0, "{v}");
    let now = t.recovered("rapid-reset");
    t.assert_peak_growth(now, 16 * MIB, "rapid-reset");
}

/// CVE-2024-27316 style: a header block that never ends, in 16 KiB
/// CONTINUATION frames (past the 16 KiB header list limit at once; 32 MiB
/// planned) and in empty ones (which carry no bytes, so only a count can
/// stop them; 8 MiB of frame headers planned). Either way the connection is
/// closed with a GOAWAY error long before a quarter of it is written (most
/// of what does get written sits in socket buffers), and the server holds
/// next to nothing.
#[test]
fn h2_continuation_flood_closes_the_connection() {
    let t = Target::start();
    for (size, megabytes, want) in [("16384", 32, None), ("0", 8, Some("ENHANCE_YOUR_CALM"))] {
        let v = t.script(
            "continuation-flood",
            &["--megabytes", &megabytes.to_string(), "--frame-size", size],
            Duration::from_secs(40),
        );
        eprintln!("continuation-flood {size}: {v}");
        let name = goaway_name(&v).unwrap_or_else(|| panic!("no GOAWAY: {v}"));
        assert_ne!(name, "NO_ERROR", "{v}");
        if let Some(want) = want {
            assert_eq!(name, want, "{v}");
        }
        assert!(v["closed"].is_string(), "connection left open: {v}");
        assert!(f64_of(&v, "closed_after_s") < 5.0, "{v}");
        assert_eq!(v["finished_sending"], false, "{v}");
        let written = u64_of(&v, "bytes_written_before_close");
        assert!(
            written < (megabytes << 20) / 4,
            "{} of the {megabytes} MiB flood got out before the server closed: {v}",
            mib(written)
        );
        assert!(v["status"].is_null(), "the request was answered: {v}");
    }
    let now = t.recovered("continuation-flood");
    t.assert_peak_growth(now, 8 * MIB, "continuation-flood");
}

/// A million SETTINGS frames written without reading a single ACK: the
/// server either closes the connection or, having stopped reading while its
/// ACKs could not go out, ACKs every frame once they are read, and the
/// connection (a PING, the WebSocket opened before) still works. In bounded
/// memory either way.
#[test]
fn h2_settings_flood_is_handled_in_bounded_memory() {
    let t = Target::start();
    let v = t.script(
        "settings-flood",
        &["--frames", "1000000", "--seconds", "4"],
        Duration::from_secs(40),
    );
    eprintln!("settings-flood: {v}");
    if v["closed"].is_null() {
        assert_eq!(
            v["acks_received"], v["frames_sent"],
            "not every SETTINGS was acknowledged: {v}"
        );
        assert!(u64_of(&v, "frames_sent") > 0, "{v}");
        assert_eq!(v["ping_ok_after"], true, "{v}");
        assert_eq!(v["echo_ok_after"], true, "{v}");
        assert!(v["goaway"].is_null(), "GOAWAY on a live connection: {v}");
    } else {
        assert!(
            goaway_name(&v).is_some_and(|n| n != "NO_ERROR"),
            "closed without a GOAWAY error: {v}"
        );
    }
    let now = t.recovered("settings-flood");
    t.assert_peak_growth(now, 16 * MIB, "settings-flood");
}

/// Connections that never get to a request: nothing sent, the 24-byte magic
/// only, the whole preface (magic + SETTINGS) only, and a HEADERS frame
/// whose header block never ends. Each is closed by the server within its
/// handshake timeout (10 s), well inside the 15 s we wait.
#[test]
fn h2_connections_without_a_request_are_closed_within_the_handshake_timeout() {
    let t = Target::start();
    // All four at once (each waits for the 10 s timeout).
    let procs: Vec<(&str, Proc)> = ["nothing", "magic", "preface", "partial-headers"]
        .into_iter()
        .map(|what| {
            let mut cmd = python_script("py_h2_hostile.py");
            cmd.args(["idle", t.addr.as_str(), "--send", what, "--wait", "15"]);
            let mut p = Proc::spawn(&format!("py_h2_hostile.py idle --send {what}"), cmd);
            p.close_stdin();
            (what, p)
        })
        .collect();
    let runs: Vec<(&str, Value)> = procs
        .into_iter()
        .map(|(what, p)| {
            let out = p.wait(Duration::from_secs(40));
            assert!(
                out.status.success(),
                "idle {what} failed ({}): {}\n{}\n{}",
                out.status,
                out.stdout_str(),
                out.stderr,
                t.server.diagnostics()
            );
            (what, json_line(&out.stdout_str()))
        })
        .collect();
    for (what, v) in &runs {
        eprintln!("idle {what}: {v}");
        assert!(
            v["closed"].is_string(),
            "{what}: still open after 15 s: {v}"
        );
        let after = f64_of(v, "closed_after_s");
        assert!(
            (5.0..=12.5).contains(&after),
            "{what}: closed after {after} s, want the 10 s handshake timeout: {v}"
        );
        assert!(v["status"].is_null(), "{what}: {v}");
    }
    t.recovered("idle connections");
}

/// 200 extended CONNECTs at once on a server that allows 128: the first 128
/// become WebSockets that echo, the 72 others are refused with
/// REFUSED_STREAM; once one closes, a new one fits. The connection lives on.
#[test]
fn h2_streams_past_the_limit_are_refused_and_the_first_128_work() {
    too_many_streams(200);
}

/// As above with 32 streams over the limit.
#[test]
fn h2_32_streams_past_the_limit_are_refused_and_the_first_128_work() {
    too_many_streams(160);
}

fn too_many_streams(n: u64) {
    let t = Target::start();
    let v = t.script(
        "too-many-streams",
        &["--streams", &n.to_string()],
        Duration::from_secs(40),
    );
    eprintln!("too-many-streams {n}: {v}");
    assert_eq!(v["server_max_concurrent_streams"], MAX_STREAMS, "{v}");
    assert!(v["goaway"].is_null(), "GOAWAY: {v}");
    assert!(v["closed"].is_null(), "connection closed: {v}");
    assert_eq!(v["accepted"], MAX_STREAMS, "{v}");
    assert_eq!(v["last_accepted_index"], MAX_STREAMS - 1, "{v}");
    assert_eq!(v["refused"], n - MAX_STREAMS, "{v}");
    assert_eq!(v["first_refused_index"], MAX_STREAMS, "{v}");
    assert_eq!(v["unanswered"], 0, "{v}");
    assert_eq!(v["echo_ok"], MAX_STREAMS, "{v}");
    let again = &v["after_one_closed"];
    assert_eq!(again["closed_stream_ended"], true, "{v}");
    assert_eq!(
        again["new_status"], 200,
        "no room for a new stream after one closed: {v}"
    );
    let now = t.recovered("too-many-streams");
    t.assert_peak_growth(now, 32 * MIB, "too-many-streams");
}

/// What one stalled stream (a client that never grants WINDOW_UPDATE) can
/// make the server hold: one message being echoed, at most the WebSocket's
/// high-water mark of queued output, and the stream's receive window.
fn stall_bound(message: u64) -> u64 {
    message + HIGH_WATER_MARK + STREAM_WINDOW
}

fn window_stall(streams: u64, message_kib: u64, peak: u64) {
    let t = Target::start();
    let v = t.script(
        "window-stall",
        &[
            "--ws-streams",
            &streams.to_string(),
            "--message-kib",
            &message_kib.to_string(),
            "--megabytes",
            "64",
        ],
        Duration::from_secs(60),
    );
    eprintln!("window-stall {streams}x{message_kib} KiB: {v}");
    assert!(v["closed"].is_null(), "connection closed: {v}");
    assert_eq!(
        v["stalled"], true,
        "the server kept reading a stream whose echoes cannot go out: {v}"
    );
    let echoed = u64_of(&v, "bytes_echoed");
    assert!(
        echoed <= 65535,
        "the server sent {echoed} bytes into a 65 535-byte window: {v}"
    );
    let bound = stall_bound(message_kib << 10);
    for (i, sent) in v["bytes_sent_per_stream"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let sent = sent.as_u64().unwrap();
        assert!(
            sent <= bound,
            "stream {i}: the server took in {} with its echoes stalled, more than {} \
             (message + high-water mark + stream window): {v}",
            mib(sent),
            mib(bound)
        );
    }
    assert_eq!(v["ping_ok_after"], true, "{v}");
    assert_eq!(
        v["another_stream"]["status"], 200,
        "no new WebSocket on the stalled connection: {v}"
    );
    let now = t.recovered("window-stall");
    t.assert_peak_growth(now, peak, "window-stall");
}

/// Four WebSockets send 1 MiB messages as fast as the server's windows let
/// them, and never grant a WINDOW_UPDATE for the echoes: the server stops
/// reading them (bounded intake), stays within our window, and the
/// connection still answers a PING and opens a new WebSocket.
#[test]
fn h2_window_stall_bounds_what_the_server_takes_in() {
    window_stall(4, 1024, 64 * MIB);
}

/// The same with one WebSocket and 8 MiB messages.
#[test]
fn h2_window_stall_with_big_messages_bounds_what_the_server_takes_in() {
    window_stall(1, 8192, 48 * MIB);
}

/// DATA past the server's advertised windows, while the server cannot
/// write (our INITIAL_WINDOW_SIZE is 0) and so stops reading: past the
/// 256 KiB stream window that stream is reset with FLOW_CONTROL_ERROR and
/// the connection lives on; past the 1 MiB connection window the
/// connection gets GOAWAY FLOW_CONTROL_ERROR and is closed.
#[test]
fn h2_data_past_the_window_is_a_flow_control_error() {
    let t = Target::start();
    let v = t.script(
        "window-overflow",
        &["--scope", "stream"],
        Duration::from_secs(30),
    );
    eprintln!("window-overflow stream: {v}");
    assert!(u64_of(&v, "exceeded_window_by") > 0, "{v}");
    assert_eq!(v["stream_rst"][0], "FLOW_CONTROL_ERROR", "{v}");
    assert!(v["goaway"].is_null(), "{v}");
    assert_eq!(
        v["ping_ok_after"], true,
        "connection unusable after a stream error: {v}"
    );

    let v = t.script(
        "window-overflow",
        &["--scope", "connection"],
        Duration::from_secs(30),
    );
    eprintln!("window-overflow connection: {v}");
    assert!(u64_of(&v, "exceeded_window_by") > 0, "{v}");
    assert_eq!(goaway_name(&v), Some("FLOW_CONTROL_ERROR"), "{v}");
    assert!(v["closed"].is_string(), "connection open after GOAWAY: {v}");
    let now = t.recovered("window-overflow");
    t.assert_peak_growth(now, 16 * MIB, "window-overflow");
}

/// Malformed or refused extended CONNECTs, each answered on its own stream
/// while the connection stays good for a real WebSocket.
#[test]
fn h2_bad_extended_connects_are_refused_per_stream() {
    let t = Target::start();
    let v = t.script("bad-requests", &[], Duration::from_secs(30));
    eprintln!("bad-requests: {v}");
    let case = |name: &str| v["cases"][name].clone();
    assert_eq!(case("wrong_protocol")["status"], 400, "{v}");
    let plain = case("plain_connect");
    assert!(
        plain["status"].as_u64().is_some_and(|s| s >= 400) || plain["rst"].is_string(),
        "a CONNECT without :protocol was not refused: {v}"
    );
    assert_ne!(plain["status"], 200, "{v}");
    let get = case("protocol_on_get");
    assert!(get["status"].is_null(), "{v}");
    assert_eq!(get["rst"], "PROTOCOL_ERROR", ":protocol on a GET: {v}");
    for name in ["no_version", "wrong_version"] {
        assert_eq!(case(name)["status"], 426, "{name}: {v}");
        assert_eq!(
            case(name)["headers"]["sec-websocket-version"],
            "13",
            "{name}: {v}"
        );
    }
    assert_eq!(case("get")["status"], 404, "{v}");
    let no_path = case("connect_without_path");
    assert!(no_path["status"].is_null(), "{v}");
    assert_eq!(
        no_path["rst"], "PROTOCOL_ERROR",
        "CONNECT without :path: {v}"
    );
    assert!(v["goaway"].is_null(), "{v}");
    assert_eq!(v["valid_after"]["status"], 200, "{v}");
    assert_eq!(v["valid_after"]["echo_ok"], true, "{v}");
    t.recovered("bad-requests");
}

/// `wshub serve` under the attacks that do not need an echo, one after the
/// other on one server: rapid reset (GOAWAY ENHANCE_YOUR_CALM before stream
/// 1000), a CONTINUATION flood (closed with a GOAWAY error, the request
/// never answered), a SETTINGS flood (bounded memory; the WebSocket opened
/// before it still answers a connect command if the connection lives), and
/// malformed extended CONNECTs (each refused on its stream, the connection
/// still good for a WebSocket at `/connection/websocket`). After each, a
/// well-behaved HTTP/2 and HTTP/1.1 client connects, and the server's
/// descriptors and memory come back near the baseline.
#[test]
fn h2_attacks_on_the_gateway_are_contained() {
    let t = Target::start_gateway();

    let v = t.script(
        "rapid-reset",
        &["--streams", "1000"],
        Duration::from_secs(30),
    );
    eprintln!("gateway rapid-reset: {v}");
    assert_eq!(goaway_name(&v), Some("ENHANCE_YOUR_CALM"), "{v}");
    assert!(
        v["goaway"]["last_stream_id"].as_u64().unwrap() < 1000,
        "{v}"
    );
    assert!(v["closed"].is_string(), "{v}");
    let now = t.recovered("gateway rapid-reset");
    t.assert_peak_growth(now, 16 * MIB, "gateway rapid-reset");

    let v = t.script(
        "continuation-flood",
        &["--megabytes", "32", "--frame-size", "16384"],
        Duration::from_secs(40),
    );
    eprintln!("gateway continuation-flood: {v}");
    assert!(goaway_name(&v).is_some_and(|n| n != "NO_ERROR"), "{v}");
    assert!(v["closed"].is_string(), "{v}");
    assert_eq!(v["finished_sending"], false, "{v}");
    assert!(v["status"].is_null(), "the request was answered: {v}");
    let now = t.recovered("gateway continuation-flood");
    t.assert_peak_growth(now, 16 * MIB, "gateway continuation-flood");

    let v = t.script(
        "settings-flood",
        &["--frames", "1000000", "--seconds", "4"],
        Duration::from_secs(40),
    );
    eprintln!("gateway settings-flood: {v}");
    if v["closed"].is_null() {
        assert_eq!(v["acks_received"], v["frames_sent"], "{v}");
        assert_eq!(v["ping_ok_after"], true, "{v}");
        assert_eq!(v["echo_ok_after"], true, "connect after the flood: {v}");
    } else {
        assert!(goaway_name(&v).is_some_and(|n| n != "NO_ERROR"), "{v}");
    }
    let now = t.recovered("gateway settings-flood");
    t.assert_peak_growth(now, 16 * MIB, "gateway settings-flood");

    let v = t.script("bad-requests", &[], Duration::from_secs(30));
    eprintln!("gateway bad-requests: {v}");
    let case = |name: &str| v["cases"][name].clone();
    assert_eq!(case("wrong_protocol")["status"], 400, "{v}");
    assert_ne!(case("plain_connect")["status"], 200, "{v}");
    assert_eq!(case("protocol_on_get")["rst"], "PROTOCOL_ERROR", "{v}");
    for name in ["no_version", "wrong_version"] {
        assert_eq!(case(name)["status"], 426, "{name}: {v}");
    }
    assert_eq!(case("connect_without_path")["rst"], "PROTOCOL_ERROR", "{v}");
    // GET / is the demo page here: answered, on its own stream.
    assert_eq!(case("get")["status"], 200, "{v}");
    assert!(v["goaway"].is_null(), "{v}");
    assert_eq!(v["valid_after"]["status"], 200, "{v}");
    assert_eq!(v["valid_after"]["echo_ok"], true, "{v}");
    t.recovered("gateway bad-requests");
}
