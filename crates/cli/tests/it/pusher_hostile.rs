//! The Pusher front under attack: `tests/interop/sdk/pusher_hostile.js`
//! speaks raw `ws` and raw HTTP to `wshub serve` (every byte its own), signs
//! with the official `pusher` server SDK, and after each attack checks with
//! `pusher-js` that a well-behaved client still connects, subscribes and
//! receives a triggered event.
//!
//! Three servers: `main` (tight Pusher app limits, a second app with
//! `max_connections`, `client.channel_limit` 100, a 256 KiB message limit,
//! pings after 2 s of silence, loose command limits), `limits` (small
//! `limits.commands_*`, the default 64 KiB message limit: the message flood
//! and the size limit as shipped) and `zero` (`limits.commands_per_second`
//! 0, documented as no limit). The command limits are global, so a server
//! with small ones could not also take 10,000 subscribes in a row.
//!
//! Around the script: the servers' open descriptors and memory are noted
//! after a warm-up run; afterwards the limits the attacks hit must be
//! counted in `/metrics`, the descriptors back to the baseline and the
//! resident memory near it. Checks that show a known server bug (the
//! script's `BUG:` lines, and one metric here) are asserted last, so that
//! everything else is verified first.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::h2_hostile::{mib, usage, Usage};
use crate::sdk_interop::{node_sdk_script, wshub_serve};
use crate::support::{http_response, run_client_ok, Proc};

const APP_ID: &str = "app-1";
const KEY: &str = "key-1";
const SECRET: &str = "secret-1";
const QUOTA_KEY: &str = "key-quota";

const CHANNEL_LIMIT: u32 = 100;
const CLIENT_EVENTS: u32 = 5;
const PRESENCE_MAX: u32 = 3;
const MAX_CONNECTIONS: u32 = 5;
const MAIN_SIZE_LIMIT: u32 = 256 << 10;
/// `websocket.message_size_limit` default (the `limits` server keeps it).
const DEFAULT_SIZE_LIMIT: u32 = 65536;
const COMMANDS_BURST: u32 = 10;
const FLOOD: u32 = 20;

const MIB: u64 = 1 << 20;
/// How far resident memory may stay above the baseline afterwards.
const RSS_SLACK: u64 = 32 * MIB;
/// How much the attacks may raise the main server's peak memory (a 16 MiB
/// API body is read whole before it is refused).
const PEAK_GROWTH: u64 = 96 * MIB;
/// How much cases 1-6 (10,000 subscribes on one connection, 256 KiB
/// frames) may raise it.
const SUBSCRIBE_GROWTH: u64 = 32 * MIB;
/// Longest run of the attack script.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

fn app(extra: serde_json::Value) -> serde_json::Value {
    let mut a = serde_json::json!({
        "app_id": APP_ID, "key": KEY, "secret": SECRET, "enable_client_messages": true,
    });
    if let (Some(a), Some(extra)) = (a.as_object_mut(), extra.as_object()) {
        a.extend(extra.clone());
    }
    a
}

fn main_config() -> String {
    serde_json::json!({
        "client": { "allowed_origins": ["*"], "channel_limit": CHANNEL_LIMIT },
        "prometheus": { "enabled": true },
        "limits": {
            "connections_per_ip": 0, "connect_rate_per_ip": 0,
            "commands_per_second": 100_000, "commands_burst": 20_000,
            "command_flood_disconnect": 0
        },
        "websocket": { "message_size_limit": MAIN_SIZE_LIMIT },
        "pusher": {
            "enabled": true,
            "activity_timeout": "2s",
            "pong_timeout": "1s",
            "apps": [
                app(serde_json::json!({
                    "max_client_events_per_second": CLIENT_EVENTS,
                    "max_presence_members": PRESENCE_MAX
                })),
                {
                    "app_id": "quota", "key": QUOTA_KEY, "secret": "secret-quota",
                    "max_connections": MAX_CONNECTIONS
                }
            ]
        }
    })
    .to_string()
}

fn limits_config() -> String {
    serde_json::json!({
        "client": { "allowed_origins": ["*"] },
        "prometheus": { "enabled": true },
        "limits": {
            "connections_per_ip": 0, "connect_rate_per_ip": 0,
            "commands_per_second": 10, "commands_burst": COMMANDS_BURST,
            "command_flood_disconnect": FLOOD
        },
        "pusher": { "enabled": true, "apps": [app(serde_json::json!({}))] }
    })
    .to_string()
}

fn zero_config() -> String {
    serde_json::json!({
        "client": { "allowed_origins": ["*"] },
        "prometheus": { "enabled": true },
        "limits": { "connections_per_ip": 0, "connect_rate_per_ip": 0, "commands_per_second": 0 },
        "pusher": { "enabled": true, "apps": [app(serde_json::json!({}))] }
    })
    .to_string()
}

/// The usage once the descriptor count holds still (at most 5 s).
fn settled(pid: u32) -> Usage {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = usage(pid);
    loop {
        thread::sleep(Duration::from_millis(150));
        let now = usage(pid);
        if now.fds == last.fds || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// `host:port` of an `http://host:port` URL.
fn addr_of(url: &str) -> &str {
    url.strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/')
}

/// The server's `/metrics` text (blocking, bounded).
fn metrics(url: &str) -> String {
    let addr = addr_of(url);
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send GET /metrics");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let (status, body) = http_response(&out);
    assert_eq!(status, 200, "GET /metrics on {addr}: {body}");
    body
}

/// A sample of `/metrics` (0 when absent: a counter never incremented).
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

fn client_limit(metrics: &str, limit: &str) -> u64 {
    sample(
        metrics,
        &format!("wshub_client_limit_exceeded_total{{limit=\"{limit}\"}}"),
    )
}

fn api_limit(metrics: &str, limit: &str) -> u64 {
    sample(
        metrics,
        &format!("wshub_api_limit_exceeded_total{{limit=\"{limit}\"}}"),
    )
}

fn script(main: &str, limits: &str, zero: &str) -> Command {
    let mut cmd = node_sdk_script("pusher_hostile.js");
    let n = |v: u32| v.to_string();
    cmd.args(["--url", main, "--limits-url", limits, "--zero-url", zero])
        .args(["--app-id", APP_ID, "--key", KEY, "--secret", SECRET])
        .args(["--quota-key", QUOTA_KEY])
        .args(["--channel-limit", &n(CHANNEL_LIMIT)])
        .args(["--client-events", &n(CLIENT_EVENTS)])
        .args(["--presence-max", &n(PRESENCE_MAX)])
        .args(["--max-connections", &n(MAX_CONNECTIONS)])
        .args(["--size-limit", &n(MAIN_SIZE_LIMIT)])
        .args(["--limits-size-limit", &n(DEFAULT_SIZE_LIMIT)])
        .args(["--activity", "2", "--pong", "1"])
        .args(["--commands-burst", &n(COMMANDS_BURST), "--flood", &n(FLOOD)])
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy");
    cmd
}

/// After the attacks: descriptors back to `base`, resident memory within
/// [`RSS_SLACK`] of it (bounded wait). Returns what was seen.
fn recovered(server: &Proc, what: &str, base: Usage) -> Usage {
    let pid = server.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut now = usage(pid);
    while (now.fds > base.fds || now.rss > base.rss + RSS_SLACK) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        now = usage(pid);
    }
    eprintln!(
        "{what}: server fds {} -> {}, VmRSS {} -> {}, VmHWM {} -> {}",
        base.fds,
        now.fds,
        mib(base.rss),
        mib(now.rss),
        mib(base.hwm),
        mib(now.hwm)
    );
    assert!(
        now.fds <= base.fds,
        "{what}: the server holds {} descriptors, {} before the attacks\n{}",
        now.fds,
        base.fds,
        server.diagnostics()
    );
    assert!(
        now.rss <= base.rss + RSS_SLACK,
        "{what}: server VmRSS {} after the attacks, {} before",
        mib(now.rss),
        mib(base.rss)
    );
    now
}

/// What the script must report (line prefixes), in order of the cases.
const EXPECTED: &[&str] = &[
    "ok case 1: unknown app key: pusher:error 4001",
    "ok case 1: no protocol: pusher:error 4008",
    "ok case 1: protocol=abc: pusher:error 4006",
    "ok case 1: protocol=6: pusher:error 4007",
    "ok case 2: not JSON -> pusher:error",
    "ok case 2: a JSON array -> pusher:error",
    "ok case 2: \"event\": 5 -> pusher:error",
    "ok case 2: pusher:subscribe without a channel -> pusher:error",
    "ok case 2: pusher:subscribe with \"channel\": 5 -> pusher:error",
    "ok case 2: an event neither pusher: nor client- -> pusher:error",
    "ok case 2: a non-UTF-8 binary frame -> pusher:error",
    "ok case 2: 100,000-deep nested data in a client event -> pusher:error",
    "ok case 2: 100,000 unclosed brackets as data -> pusher:error",
    "ok case 2: a subscribe whose data holds 100,000-deep nesting is parsed",
    "ok case 2: the connection stayed open through every malformed frame",
    "ok case 2: a text frame with invalid UTF-8 -> close 1007",
    "ok case 3 (main): a 262144-byte message (the limit) is accepted",
    "ok case 3 (main): a 262145-byte message -> close 1009",
    "ok case 3 (limits): a 65536-byte message (the limit) is accepted",
    "ok case 3 (limits): a 65537-byte message -> close 1009",
    "ok case 4: an 11 KB client event -> pusher:error",
    "ok case 4: 50 client events at once (limit 5/s)",
    "ok case 4: the flooding sender is not disconnected for it",
    "ok case 4: a second later the same sender's client event is relayed again",
    "ok case 5: 200 pings at once (burst 10, flood 20)",
    "ok case 6: 10000 subscribes sent in",
    "ok case 6: the same connection still answers a ping",
    "ok case 6: the API lists 100 many-* channels",
    "ok case 6: closing the connection leaves 0 many-* channels",
    "ok case 7: a validly signed 60041-byte channel_data -> subscription_error 413",
    "ok case 7: channel_data not JSON (validly signed) -> subscription_error 400",
    "ok case 7: channel_data a JSON string (validly signed) -> subscription_error 400",
    "ok case 7: channel_data without user_id (validly signed) -> subscription_error 400",
    "ok case 7: a user_id of 129 bytes (validly signed) -> subscription_error 400",
    "ok case 7: a user_id of an object (validly signed) -> subscription_error 400",
    "ok case 7: a presence subscribe without channel_data -> subscription_error",
    "ok case 7: a user_id of exactly 128 bytes is accepted",
    "ok case 7: 3 users join presence-full",
    "ok case 7: user 4 -> subscription_error 403",
    "ok case 7: a second connection of user-1 is accepted (members 3)",
    "ok case 7: once user-3 leaves, user-extra is accepted",
    "ok case 7: a member whose connection is reset is removed",
    "ok case 8: 5 connections to the app with max_connections 5 are accepted",
    "ok case 8: connection 6 -> pusher:error 4004",
    "ok case 8: after one closes, a new connection is accepted",
    "ok case 8: after connections ended by reset",
    "ok case 9: a client that answers the server's pings stays open",
    "ok case 9: connection_established says activity_timeout 2",
    "ok case 9: the server sent pusher:ping after",
    "ok case 9: a client that never answers is closed with 4201",
    "ok case 10: a bad signature -> 401",
    "ok case 10: no auth parameters -> 401",
    "ok case 10: auth_key without timestamp or signature -> 401",
    "ok case 10: a timestamp an hour old -> 401",
    "ok case 10: a timestamp an hour ahead -> 401",
    "ok case 10: a body that does not match its body_md5 -> 401",
    "ok case 10: malformed JSON -> 400",
    "ok case 10: an event naming 101 channels -> 400",
    "ok case 10: a batch of 11 events -> 400",
    "ok case 10: an invalid channel name -> 400",
    "ok case 10: an unknown app id -> 404",
    "ok case 10: GET on /events -> 405",
    "ok case 10: DELETE on /channels -> 405",
    "ok case 10: a declared 1 GiB Content-Length -> 413",
    "ok case 10: a 17 MiB chunked body -> 413",
    "ok case 10: 200 bad signatures in a row",
    "ok case 10: once they are gone, a signed trigger -> 200",
    "ok case 11: two clients subscribe to private-encrypted-secret",
    "ok case 11: a client event on private-encrypted-secret -> pusher:error",
    "ok case 11: a client event on an encrypted channel it did not join -> pusher:error",
    "done",
];

/// The steps after each of which the script proves a well-behaved
/// pusher-js client still works.
const HEALTHY_AFTER: &[&str] = &[
    "case 1",
    "case 2",
    "case 3",
    "case 3 (limits server)",
    "case 4",
    "case 5 (limits server)",
    "case 5 (commands_per_second 0) (zero server)",
    "case 6",
    "case 7",
    "case 8",
    "case 9",
    "case 10",
    "case 11",
];

#[test]
fn pusher_front_survives_hostile_clients() {
    let started = Instant::now();
    let (main, main_url) = wshub_serve(&main_config());
    let (limits, limits_url) = wshub_serve(&limits_config());
    let (zero, zero_url) = wshub_serve(&zero_config());
    let diagnostics = || {
        format!(
            "{}\n{}\n{}",
            main.diagnostics(),
            limits.diagnostics(),
            zero.diagnostics()
        )
    };

    let mut warm = script(&main_url, &limits_url, &zero_url);
    warm.arg("--warmup");
    run_client_ok(
        "pusher_hostile.js --warmup",
        warm,
        Duration::from_secs(30),
        &main,
    );
    let base_main = settled(main.pid());
    let base_limits = settled(limits.pid());

    let t = Instant::now();
    let mut attack = Proc::spawn(
        "pusher_hostile.js",
        script(&main_url, &limits_url, &zero_url),
    );
    attack.close_stdin();
    // Right after the 10,000 subscribes (before the API cases, whose 16 MiB
    // body shows in the peak): what the subscriptions cost.
    attack.wait_for_line("the end of case 6", SCRIPT_LIMIT, |l| {
        l.starts_with("time case 6:") || l.starts_with("FAIL")
    });
    let at_case6 = usage(main.pid());
    let out = attack.wait(SCRIPT_LIMIT);
    assert!(
        out.status.success(),
        "pusher_hostile.js failed ({}):\n{}\n--- stderr ---\n{}\n{}",
        out.status,
        out.stdout_str(),
        out.stderr,
        diagnostics()
    );
    let script_time = t.elapsed();
    let stdout = out.stdout_str();
    eprintln!("--- pusher_hostile.js ({script_time:?}) ---\n{stdout}---");
    let mut wanted: Vec<String> = EXPECTED.iter().map(|s| (*s).to_owned()).collect();
    wanted.extend(HEALTHY_AFTER.iter().map(|s| {
        format!("ok healthy after {s}: pusher-js connects, subscribes, receives a triggered event")
    }));
    for want in &wanted {
        assert!(
            stdout.lines().any(|l| l.starts_with(want.as_str())),
            "pusher_hostile.js did not report {want:?}; its output:\n{stdout}\n{}",
            diagnostics()
        );
    }

    // What the attacks hit is counted.
    let m = metrics(&main_url);
    let l = metrics(&limits_url);
    let counted = [
        // 45 of 50 client events in the flood (at least 40: refills).
        (
            "main",
            "pusher_client_events",
            client_limit(&m, "pusher_client_events"),
            40,
        ),
        // The 11 KB client event and the 60 KB channel_data (the deep
        // client event is refused for its size too).
        (
            "main",
            "pusher_event_size",
            client_limit(&m, "pusher_event_size"),
            2,
        ),
        (
            "main",
            "pusher_presence_members",
            client_limit(&m, "pusher_presence_members"),
            1,
        ),
        (
            "main",
            "pusher_app_connections",
            client_limit(&m, "pusher_app_connections"),
            1,
        ),
        // 262,145 bytes; and the quota connection closed by 1009.
        ("main", "message_size", client_limit(&m, "message_size"), 2),
        (
            "limits",
            "message_size",
            client_limit(&l, "message_size"),
            1,
        ),
        // Each refused ping of the flood, then the disconnect.
        (
            "limits",
            "commands_per_second",
            client_limit(&l, "commands_per_second"),
            FLOOD as u64,
        ),
        (
            "limits",
            "command_flood",
            client_limit(&l, "command_flood"),
            1,
        ),
    ];
    for (server, label, value, least) in counted {
        eprintln!("{server}: wshub_client_limit_exceeded_total{{limit=\"{label}\"}} {value}");
        assert!(
            value >= least,
            "{server}: limit {label:?} counted {value} times, expected at least {least}"
        );
    }
    // 200 in a row, wrong secret, none, bare auth_key, stale, future, body_md5.
    let auth = api_limit(&m, "pusher_auth");
    let body_size = api_limit(&m, "body_size");
    eprintln!("main: wshub_api_limit_exceeded_total pusher_auth {auth}, body_size {body_size}");
    assert!(
        auth >= 206,
        "pusher_auth counted {auth} times, expected at least 206"
    );
    assert!(
        body_size >= 2,
        "body_size counted {body_size} times, expected 2"
    );
    let clients = sample(&m, "wshub_node_num_clients");
    assert_eq!(clients, 0, "main still counts {clients} clients");

    // And nothing is left behind.
    eprintln!(
        "main after cases 1-6 (10,000 subscribes): fds {}, VmRSS {}, VmHWM {} (baseline {} / {})",
        at_case6.fds,
        mib(at_case6.rss),
        mib(at_case6.hwm),
        mib(base_main.rss),
        mib(base_main.hwm)
    );
    let grew6 = at_case6.hwm.saturating_sub(base_main.hwm);
    assert!(
        grew6 <= SUBSCRIBE_GROWTH,
        "main: cases 1-6 raised peak memory by {}, more than {}",
        mib(grew6),
        mib(SUBSCRIBE_GROWTH)
    );
    let after = recovered(&main, "main", base_main);
    let grew = after.hwm.saturating_sub(base_main.hwm);
    assert!(
        grew <= PEAK_GROWTH,
        "main: peak memory grew by {} (VmHWM {} -> {}), more than {}",
        mib(grew),
        mib(base_main.hwm),
        mib(after.hwm),
        mib(PEAK_GROWTH)
    );
    recovered(&limits, "limits", base_limits);

    // Known server bugs, last. (See each message.)
    let mut bugs: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("BUG: "))
        .map(str::to_owned)
        .collect();
    let channel_limit_as_rate = client_limit(&m, "commands_per_second");
    if channel_limit_as_rate != 0 {
        bugs.push(format!(
            "metrics: the 9,900 subscribes refused for client.channel_limit are counted as \
             wshub_client_limit_exceeded_total{{limit=\"commands_per_second\"}} \
             ({channel_limit_as_rate} on a server whose command rate was never exceeded)"
        ));
    }
    eprintln!(
        "pusher_hostile: script {script_time:?}, whole test {:?}",
        started.elapsed()
    );
    assert!(
        bugs.is_empty(),
        "SERVER BUGS found by the Pusher attack test (everything else passed):\n  - {}",
        bugs.join("\n  - ")
    );
}
