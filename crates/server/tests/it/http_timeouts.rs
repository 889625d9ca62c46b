//! The phases of a keep-alive HTTP/1.1 connection and their timeouts
//! (`http_server.read_header_timeout`, `http_server.idle_timeout`): which
//! one applies when, over raw TCP against the in-process server.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{dev_config, start, TestServer};

const HEADER: Duration = Duration::from_millis(800);
const IDLE: Duration = Duration::from_millis(2500);

async fn server() -> TestServer {
    let mut c = dev_config();
    c.http_server.read_header_timeout = HEADER.into();
    c.http_server.idle_timeout = IDLE.into();
    start(c).await
}

const GET: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

/// Reads one `/health` answer (a small JSON body with Content-Length).
async fn read_answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("no answer")
            .expect("read");
        assert!(n > 0, "closed instead of answering");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.contains("\r\n\r\n{}") {
            return text;
        }
    }
}

/// How long until the server closes `s` (at most 10 s).
async fn time_to_close(s: &mut TcpStream) -> Duration {
    let t0 = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return t0.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("not closed within 10 s"),
        }
    }
}

async fn timeouts(srv: &TestServer, phase: &str) -> u64 {
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let sample = format!("wshub_http_timeouts_total{{phase=\"{phase}\"}} ");
    out.lines()
        .find_map(|l| l.strip_prefix(&sample)?.parse().ok())
        .expect("timeouts sample")
}

/// After a response the idle timeout applies, not the (shorter) header
/// timeout; a request sent later than the header timeout but within the
/// idle one is answered.
#[tokio::test]
async fn idle_keep_alive_gets_the_idle_timeout() {
    let srv = server().await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    read_answer(&mut s).await;
    tokio::time::sleep(HEADER * 2).await;
    s.write_all(GET).await.unwrap();
    assert!(read_answer(&mut s).await.starts_with("HTTP/1.1 200"));
    let took = time_to_close(&mut s).await;
    assert!(
        took + Duration::from_millis(100) >= IDLE && took < IDLE + Duration::from_secs(2),
        "idle connection closed after {took:?} (idle timeout {IDLE:?})"
    );
    assert_eq!(timeouts(&srv, "idle").await, 1);
    assert_eq!(timeouts(&srv, "header").await, 0);
    srv.shutdown().await;
}

/// The first byte of the next request starts the header timeout: half a
/// head sent on an idle keep-alive connection is cut after the header
/// timeout, long before the idle one would.
#[tokio::test]
async fn next_request_head_gets_the_header_timeout() {
    let srv = server().await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    read_answer(&mut s).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b"GET /health HTTP/1.1\r\nHo").await.unwrap();
    let took = time_to_close(&mut s).await;
    assert!(
        took + Duration::from_millis(100) >= HEADER && took < IDLE,
        "half a head closed after {took:?} (header timeout {HEADER:?})"
    );
    assert_eq!(timeouts(&srv, "header").await, 1);
    assert_eq!(timeouts(&srv, "idle").await, 0);
    srv.shutdown().await;
}

/// A connection that sends nothing is closed after the header timeout.
#[tokio::test]
async fn silent_connection_gets_the_header_timeout() {
    let srv = server().await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let took = time_to_close(&mut s).await;
    assert!(
        took + Duration::from_millis(100) >= HEADER && took < IDLE,
        "silent connection closed after {took:?} (header timeout {HEADER:?})"
    );
    assert_eq!(timeouts(&srv, "header").await, 1);
    srv.shutdown().await;
}
