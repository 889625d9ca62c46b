//! Shared test helpers: timeouts, servers, payloads, and a raw peer driven
//! by a sans-I/O `Connection` so tests can misbehave on purpose.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use wshub_ws::proto::handshake::{self, ClientHandshake};
use wshub_ws::proto::{Connection, Event, Role};
use wshub_ws::{accept, Config, ServerOptions};

/// Bound on every await in the tests.
pub const T: Duration = Duration::from_secs(5);

/// Awaits `f`, failing the test if it takes longer than [`T`].
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timed out")
}

pub async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A listener whose accepted sockets have small kernel buffers (Linux
/// copies them from the listening socket), so backpressure shows quickly.
pub fn small_buffer_listener() -> (TcpListener, SocketAddr) {
    let s = TcpSocket::new_v4().unwrap();
    s.set_send_buffer_size(8 * 1024).unwrap();
    s.set_recv_buffer_size(8 * 1024).unwrap();
    s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = s.listen(16).unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A TCP connection with a small receive buffer.
pub async fn small_buffer_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(8 * 1024).unwrap();
    s.set_send_buffer_size(8 * 1024).unwrap();
    s.connect(addr).await.unwrap()
}

/// An echo server with our `accept`; returns its address.
pub async fn echo_server(opts: ServerOptions) -> SocketAddr {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tcp.set_nodelay(true).unwrap();
            let opts = opts.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = accept(tcp, &opts).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.recv().await {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Deterministic pseudo-random bytes.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// About `len` bytes of text with multi-byte code points.
pub fn text(len: usize) -> String {
    let unit = "héllo wörld ✓ 🦀 ";
    let mut s = String::with_capacity(len + unit.len());
    while s.len() < len {
        s.push_str(unit);
    }
    s
}

/// A peer built from the sans-I/O core directly, over a raw TCP stream.
pub struct Raw {
    pub tcp: TcpStream,
    pub conn: Connection,
}

impl Raw {
    /// A raw client: does the opening handshake, then leaves everything to
    /// the test. `auto_pong` off unless `config` says otherwise.
    pub async fn client(addr: SocketAddr, config: Config) -> Raw {
        let tcp = TcpStream::connect(addr).await.unwrap();
        Raw::client_on(tcp, config).await
    }

    pub async fn client_on(mut tcp: TcpStream, config: Config) -> Raw {
        let hs = ClientHandshake::new("localhost", "/", handshake::ClientOptions::default());
        tcp.write_all(hs.request()).await.unwrap();
        let mut buf = BytesMut::new();
        let (acc, used) = loop {
            assert_ne!(tcp.read_buf(&mut buf).await.unwrap(), 0, "EOF in handshake");
            if let Some(r) = hs.receive_response(&buf, &Default::default()).unwrap() {
                break r;
            }
        };
        let mut conn = Connection::new(Role::Client, config, acc.deflate);
        conn.receive_data(&buf[used..]);
        Raw { tcp, conn }
    }

    /// A raw server on an accepted stream.
    pub async fn server(mut tcp: TcpStream, config: Config) -> Raw {
        let mut buf = BytesMut::new();
        loop {
            assert_ne!(tcp.read_buf(&mut buf).await.unwrap(), 0, "EOF in handshake");
            if let Some((head, used)) = handshake::parse_request(&buf, &Default::default()).unwrap()
            {
                let acc = handshake::accept(&head, &Default::default()).unwrap();
                tcp.write_all(&acc.response).await.unwrap();
                let mut conn = Connection::new(Role::Server, config, None);
                conn.receive_data(&buf[used..]);
                return Raw { tcp, conn };
            }
        }
    }

    /// Writes everything the core queued.
    pub async fn flush(&mut self) {
        let mut out = Vec::new();
        self.conn.drain_transmit(&mut out);
        self.tcp.write_all(&out).await.unwrap();
    }

    /// The next event; `None` at EOF (or a read error).
    pub async fn next_event(&mut self) -> Option<Result<Event, wshub_ws::proto::Error>> {
        loop {
            match self.conn.poll_event() {
                Ok(Some(ev)) => return Some(Ok(ev)),
                Err(e) => return Some(Err(e)),
                Ok(None) => {}
            }
            let mut buf = [0u8; 16 * 1024];
            match self.tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.conn.receive_data(&buf[..n]),
            }
        }
    }

    /// Reads until EOF, returning the events seen.
    pub async fn events_until_eof(&mut self) -> Vec<Event> {
        let mut evs = Vec::new();
        while let Some(Ok(ev)) = self.next_event().await {
            evs.push(ev);
        }
        evs
    }
}

/// A client-role config that does not answer pings.
pub fn no_pong() -> Config {
    Config::default().auto_pong(false)
}
