//! Process plumbing for the interop tests: finding the peers, spawning them
//! with a kill-on-drop guard, bounded waits for their output.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest wait for a peer to print its "listening on" line.
pub const STARTUP: Duration = Duration::from_secs(30);

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// `tests/interop` at the repository root.
pub fn interop_dir() -> PathBuf {
    repo_root().join("tests/interop")
}

/// `tests/interop/node`, where `ws` is installed.
pub fn node_dir() -> PathBuf {
    interop_dir().join("node")
}

/// The Python interpreter: `$WSHUB_PYTHON`, else `.venv/bin/python` at the
/// repository root when it exists, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("WSHUB_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = repo_root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

const PYTHON_HELP: &str = "Install the Python peer with:\n    \
     python3 -m venv .venv && .venv/bin/pip install -r tests/interop/requirements.txt\n\
     (from the repository root), or set WSHUB_PYTHON to an interpreter that has \
     the `websockets` version pinned in tests/interop/requirements.txt.";

const NODE_HELP: &str = "Install the Node peer with:\n    \
     cd tests/interop/node && npm ci\n\
     (Node.js and npm must be on PATH).";

/// Fails the test (never skips) unless the Python `websockets` package can
/// be imported; returns the interpreter to use.
pub fn require_python() -> PathBuf {
    static CHECK: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let checked = CHECK.get_or_init(|| {
        let py = python();
        let mut cmd = Command::new(&py);
        cmd.args([
            "-c",
            "import websockets, websockets.asyncio.client, websockets.asyncio.server; \
             print(websockets.__version__)",
        ]);
        match output_within(cmd, Duration::from_secs(30)) {
            Ok(out) if out.status.success() => Ok(py),
            Ok(out) => Err(format!(
                "`{} -c 'import websockets'` failed ({}): {}",
                py.display(),
                out.status,
                out.stderr.trim()
            )),
            Err(e) => Err(format!("cannot run `{}`: {e}", py.display())),
        }
    });
    match checked {
        Ok(py) => py.clone(),
        Err(e) => panic!("Python interop peer missing: {e}\n{PYTHON_HELP}"),
    }
}

/// Fails the test (never skips) unless `node` runs and `require('ws')`
/// resolves from `tests/interop/node`.
pub fn require_node() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECK.get_or_init(|| {
        let mut cmd = node_command();
        cmd.args([
            "-e",
            "require('ws'); console.log(require('ws/package.json').version)",
        ]);
        match output_within(cmd, Duration::from_secs(30)) {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "`node -e \"require('ws')\"` in {} failed ({}): {}",
                node_dir().display(),
                out.status,
                out.stderr.trim()
            )),
            Err(e) => Err(format!("cannot run `node`: {e}")),
        }
    });
    if let Err(e) = checked {
        panic!("Node interop peer missing: {e}\n{NODE_HELP}");
    }
}

/// `python SCRIPT` for a script in `tests/interop`.
pub fn python_script(script: &str) -> Command {
    let mut cmd = Command::new(require_python());
    cmd.arg(interop_dir().join(script))
        .current_dir(interop_dir())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

fn node_command() -> Command {
    let mut cmd = Command::new("node");
    cmd.current_dir(node_dir())
        .env("NODE_PATH", node_dir().join("node_modules"));
    cmd
}

/// `node SCRIPT` for a script in `tests/interop/node`.
pub fn node_script(script: &str) -> Command {
    require_node();
    let mut cmd = node_command();
    cmd.arg(node_dir().join(script));
    cmd
}

/// The `wshub` binary under test.
pub fn wshub() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wshub"))
}

/// What a finished process left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Finished {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `cmd` with no stdin and waits at most `limit` (killing it then).
fn output_within(cmd: Command, limit: Duration) -> std::io::Result<Finished> {
    let mut p = Proc::try_spawn("check", cmd)?;
    p.close_stdin();
    Ok(p.wait(limit))
}

/// A spawned process that is killed when dropped. Its stdout is collected
/// (and handed out line by line), its stderr collected for diagnostics.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    /// Spawns `cmd` with piped stdin, stdout and stderr; panics if it cannot.
    pub fn spawn(name: &str, cmd: Command) -> Proc {
        let program = format!("{:?}", cmd.get_program());
        Proc::try_spawn(name, cmd)
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({program}): {e}"))
    }

    fn try_spawn(name: &str, mut cmd: Command) -> std::io::Result<Proc> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        let sink = stdout.clone();
        let out_reader = std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        sink.lock().unwrap().extend_from_slice(&line);
                        let text = String::from_utf8_lossy(&line);
                        let _ = tx.send(text.trim_end_matches(['\n', '\r']).to_owned());
                    }
                }
            }
        });
        let sink = stderr.clone();
        let err_reader = std::thread::spawn(move || {
            let mut r = err;
            let mut buf = [0u8; 8192];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        });
        Ok(Proc {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes to the process's stdin (which stays open).
    pub fn write_stdin(&mut self, data: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        stdin
            .write_all(data)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to {}'s stdin: {e}", self.name));
    }

    /// Closes the process's stdin (end of file for it).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Everything it printed to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Everything it printed to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// A report of its output, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}\n---",
            self.name,
            tail(&self.stdout_so_far()),
            self.name,
            tail(&self.stderr_so_far())
        )
    }

    /// The next stdout line, waiting at most `limit`.
    pub fn next_line(&mut self, limit: Duration) -> String {
        match self.lines.recv_timeout(limit) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!(
                "{} printed no line within {limit:?}\n{}",
                self.name,
                self.diagnostics()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "{} closed its stdout (exit status {status:?}) before printing the expected line\n{}",
                    self.name,
                    self.diagnostics()
                )
            }
        }
    }

    /// Skips stdout lines until one satisfies `pred`; waits at most `limit`
    /// in total.
    pub fn wait_for_line(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "{} did not print {what} within {limit:?}; lines seen while waiting: {seen:?}\n{}",
                    self.name,
                    self.diagnostics()
                ),
            }
        }
    }

    /// Reads the first stdout line, which must be `listening on ws://ADDR`,
    /// and returns the URL.
    pub fn listening_url(&mut self) -> String {
        let line = self.next_line(STARTUP);
        match line.strip_prefix("listening on ") {
            Some(url) if url.starts_with("ws://") => url.to_owned(),
            _ => panic!(
                "{}: expected `listening on ws://ADDR` as the first line, got {line:?}\n{}",
                self.name,
                self.diagnostics()
            ),
        }
    }

    /// Reads the first stdout line, which must be `listening on
    /// http://ADDR` (`wshub serve`), and returns the address.
    pub fn listening_addr(&mut self) -> std::net::SocketAddr {
        let line = self.next_line(STARTUP);
        match line
            .strip_prefix("listening on http://")
            .and_then(|a| a.parse().ok())
        {
            Some(addr) => addr,
            None => panic!(
                "{}: expected `listening on http://ADDR` as the first line, got {line:?}\n{}",
                self.name,
                self.diagnostics()
            ),
        }
    }

    /// Waits at most `limit` for the process to exit (killing it and
    /// panicking if it does not), then returns everything it printed.
    pub fn wait(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.join_readers();
                    panic!(
                        "{} did not exit within {limit:?} (killed)\n{}",
                        self.name,
                        self.diagnostics()
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for {}: {e}", self.name),
            }
        };
        self.join_readers();
        Finished {
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr_so_far(),
        }
    }

    /// Waits (bounded) for the reader threads to see end of file, so the
    /// collected output is complete.
    fn join_readers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for h in std::mem::take(&mut self.readers) {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The last part of a long output.
fn tail(s: &str) -> &str {
    const MAX: usize = 4000;
    if s.len() <= MAX {
        return s;
    }
    let mut start = s.len() - MAX;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Checks what an echo-client peer script printed (`tests/interop/
/// py_echo_client.py`, `node/echo_client.js`): the negotiated extensions
/// match `deflate`, and every size up to 16 MiB, the ping and the clean
/// close were confirmed.
pub fn check_echo_client_output(stdout: &str, deflate: bool) {
    let ext = stdout
        .lines()
        .find_map(|l| l.strip_prefix("extensions: "))
        .unwrap_or_else(|| panic!("no extensions line in {stdout:?}"));
    if deflate {
        assert!(
            ext.starts_with("permessage-deflate"),
            "permessage-deflate was not negotiated: {ext:?}"
        );
    } else {
        assert_eq!(
            ext, "none",
            "extensions negotiated although the server has no --deflate"
        );
    }
    for needed in [
        "ok text 16777216",
        "ok binary 16777216",
        "ok ping",
        "ok close 1000",
        "all ok",
    ] {
        assert!(
            stdout.lines().any(|l| l == needed),
            "missing {needed:?} in client output:\n{stdout}"
        );
    }
}

/// Splits a whole HTTP/1.1 response (read to the end of a `Connection:
/// close` exchange) into its status (0 if there is none) and its body.
pub fn http_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned();
    (status, body)
}

/// Starts `wshub serve --listen 127.0.0.1:0` with its development
/// defaults; returns the guard and its `http://ADDR` base URL.
pub fn wshub_serve_dev() -> (Proc, String) {
    let mut cmd = wshub();
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG");
    let mut server = Proc::spawn("wshub serve", cmd);
    let line = server.next_line(STARTUP);
    match line.strip_prefix("listening on ") {
        Some(url) if url.starts_with("http://") => {
            let url = url.to_owned();
            (server, url)
        }
        _ => panic!("unexpected first line {line:?}\n{}", server.diagnostics()),
    }
}

/// Starts `wshub echo --listen 127.0.0.1:0 EXTRA...`; returns the guard and
/// its `ws://` URL.
pub fn wshub_echo(extra: &[&str]) -> (Proc, String) {
    let mut cmd = wshub();
    cmd.args(["echo", "--listen", "127.0.0.1:0"]).args(extra);
    let mut p = Proc::spawn("wshub echo", cmd);
    let url = p.listening_url();
    (p, url)
}

/// Starts `tests/interop/py_echo_server.py ARGS...`; returns the guard and
/// its URL.
pub fn python_echo_server(args: &[&str]) -> (Proc, String) {
    let mut cmd = python_script("py_echo_server.py");
    cmd.args(args);
    let mut p = Proc::spawn("py_echo_server.py", cmd);
    let url = p.listening_url();
    (p, url)
}

/// Starts `tests/interop/node/echo_server.js ARGS...`; returns the guard and
/// its URL.
pub fn node_echo_server(args: &[&str]) -> (Proc, String) {
    let mut cmd = node_script("echo_server.js");
    cmd.args(args);
    let mut p = Proc::spawn("node echo_server.js", cmd);
    let url = p.listening_url();
    (p, url)
}

/// Runs a peer client to completion (at most `limit`) and asserts it exited
/// 0, showing both its output and the server's on failure.
pub fn run_client_ok(name: &str, cmd: Command, limit: Duration, server: &Proc) -> Finished {
    let mut p = Proc::spawn(name, cmd);
    p.close_stdin();
    let out = p.wait(limit);
    assert!(
        out.status.success(),
        "{name} failed ({}):\n--- {name} stdout ---\n{}\n--- {name} stderr ---\n{}\n{}",
        out.status,
        tail(&out.stdout_str()),
        tail(&out.stderr),
        server.diagnostics()
    );
    out
}

/// `VmRSS` or `VmHWM` of a process, in bytes.
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| {
            let kb: u64 = l
                .strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()?;
            Some(kb * 1024)
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// `text` as one masked client text frame (for raw test clients).
pub fn masked_text_frame(text: &str) -> Vec<u8> {
    let p = text.as_bytes();
    let mut f = vec![0x81u8];
    match p.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 65536 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x12u8, 0x34, 0x56, 0x78];
    f.extend_from_slice(&key);
    f.extend(p.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}
