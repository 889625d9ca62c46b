//! `wshub connect` in a pipe against the Python echo server.

use std::net::TcpListener;
use std::time::Duration;

use crate::support::{node_echo_server, python_echo_server, wshub, Finished, Proc};

const LIMIT: Duration = Duration::from_secs(20);

/// Lines on stdin go out as text; echoes come back on stdout, unprefixed
/// (stdin is a pipe); end of stdin closes with 1000 and exits 0 once the
/// server answered.
///
/// The echoes are awaited before stdin is closed: Python `websockets`
/// answers a close frame at once and drops echoes that its handler had not
/// sent yet (RFC 6455 allows that), so closing stdin right away would race.
/// `connect_pipe_to_end_of_input_against_node_server` covers the
/// all-at-once pipe.
#[test]
fn connect_pipes_lines_through_python_echo_server() {
    let (mut server, url) = python_echo_server(&["--no-deflate"]);
    let mut cmd = wshub();
    cmd.args(["connect", &url]);
    let mut client = Proc::spawn("wshub connect", cmd);
    client.write_stdin("hello\nwörld\n".as_bytes());
    assert_eq!(client.next_line(LIMIT), "hello");
    assert_eq!(client.next_line(LIMIT), "wörld");
    client.close_stdin();
    let out = client.wait(LIMIT);
    assert_same_output(&out, "hello\nwörld\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "exit status (stderr: {})",
        out.stderr
    );
    server.wait_for_line("`closed code=1000`", Duration::from_secs(10), |l| {
        l.starts_with("closed code=1000")
    });
}

/// The whole input at once, then end of file: every echo is printed before
/// the close completes, exit 0. (Node `ws` echoes a message before it
/// answers a close frame that came after it.)
#[test]
fn connect_pipe_to_end_of_input_against_node_server() {
    let (mut server, url) = node_echo_server(&["--no-deflate"]);
    let mut cmd = wshub();
    cmd.args(["connect", &url]);
    let mut client = Proc::spawn("wshub connect", cmd);
    let long = "ünïcødé ".repeat(3000);
    let input = format!("hello\nwörld\n{long}\nlast line\n");
    client.write_stdin(input.as_bytes());
    client.close_stdin();
    let out = client.wait(LIMIT);
    assert_same_output(&out, &input);
    assert_eq!(
        out.status.code(),
        Some(0),
        "exit status (stderr: {})",
        out.stderr
    );
    server.wait_for_line("`closed code=1000`", Duration::from_secs(10), |l| {
        l.starts_with("closed code=1000")
    });
}

/// `--deflate` and `--subprotocol` reach the server.
#[test]
fn connect_negotiates_deflate_and_subprotocol() {
    let (mut server, url) = python_echo_server(&["--deflate"]);
    let mut cmd = wshub();
    cmd.args(["connect", &url, "--deflate", "--subprotocol", "chat.v1"]);
    let mut client = Proc::spawn("wshub connect", cmd);
    let long = "ünïcødé ".repeat(3000);
    client.write_stdin(format!("hello\n{long}\n").as_bytes());
    assert_eq!(client.next_line(LIMIT), "hello");
    let echoed = client.next_line(LIMIT);
    assert!(echoed == long, "long line echoed as {} bytes", echoed.len());
    client.close_stdin();
    let out = client.wait(LIMIT);
    assert_same_output(&out, &format!("hello\n{long}\n"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "exit status (stderr: {})",
        out.stderr
    );
    let open = server.wait_for_line("its open line", Duration::from_secs(10), |l| {
        l.starts_with("open ")
    });
    assert!(
        open.contains("subprotocol=chat.v1") && open.contains("extensions=permessage-deflate"),
        "server negotiated: {open}"
    );
}

/// A server that closes with 4001 makes `wshub connect` exit 2, even while
/// stdin is still open (a user at a terminal has not pressed Enter).
#[test]
fn connect_exits_2_when_the_server_closes_with_4001() {
    let (_server, url) = python_echo_server(&["--no-deflate", "--close-code", "4001"]);
    let mut cmd = wshub();
    cmd.args(["connect", &url]);
    let mut client = Proc::spawn("wshub connect", cmd);
    client.write_stdin(b"hello\n");
    // stdin stays open: the server's close alone must end the session.
    let out = client.wait(Duration::from_secs(10));
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit status after a 4001 close (stdout: {:?}, stderr: {})",
        out.stdout_str(),
        out.stderr
    );
    assert!(
        out.stderr.contains("4001"),
        "stderr does not show the close code: {}",
        out.stderr
    );
}

/// Nothing listening: exit 1 with an error on stderr.
#[test]
fn connect_exits_1_when_nothing_listens() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cmd = wshub();
    cmd.args(["connect", &format!("ws://127.0.0.1:{port}/")]);
    let mut client = Proc::spawn("wshub connect", cmd);
    client.close_stdin();
    let out = client.wait(LIMIT);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status (stderr: {})",
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "unexpected stdout: {:?}",
        out.stdout_str()
    );
    assert!(!out.stderr.trim().is_empty(), "no error message on stderr");
}

/// Asserts that the client printed exactly `expected` on stdout; on a
/// mismatch shows where it differs rather than megabytes of text.
fn assert_same_output(out: &Finished, expected: &str) {
    let got = out.stdout_str();
    if got == expected {
        return;
    }
    let got_lines: Vec<&str> = got.lines().collect();
    let want_lines: Vec<&str> = expected.lines().collect();
    let first = got_lines
        .iter()
        .zip(&want_lines)
        .position(|(a, b)| a != b)
        .unwrap_or(got_lines.len().min(want_lines.len()));
    let show = |l: Option<&&str>| match l {
        None => "<none>".to_owned(),
        Some(l) if l.len() > 80 => format!("{:?}... ({} bytes)", prefix(l, 80), l.len()),
        Some(l) => format!("{l:?}"),
    };
    panic!(
        "stdout of `wshub connect` differs: expected {} lines ({} bytes), got {} lines ({} bytes); \
         first difference at line {}: expected {}, got {}\nstderr: {}",
        want_lines.len(),
        expected.len(),
        got_lines.len(),
        got.len(),
        first + 1,
        show(want_lines.get(first)),
        show(got_lines.get(first)),
        out.stderr
    );
}

/// At most `n` bytes of `s`, cut at a character boundary.
fn prefix(s: &str, n: usize) -> &str {
    let mut k = n.min(s.len());
    while !s.is_char_boundary(k) {
        k -= 1;
    }
    &s[..k]
}
