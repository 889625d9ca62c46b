//! The raw client side of the load generators: TCP connect (optionally
//! bound to a source address), the opening handshake through the protocol
//! core, pre-built masked frames, and a scanner that counts the server's
//! messages without decoding their payloads. After the handshake the
//! generator writes frame bytes straight to the socket, so its CPU goes to
//! I/O rather than to framing.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use wshub_proto::frame::{write_frame, FrameHeader, OpCode};
use wshub_proto::handshake::{self, ClientHandshake};
use wshub_proto::{Config, Connection, DeflateConfig, DeflateParams, Limits, Role};

/// The address a plain (port 80 by default) URL's host resolves to, and
/// its `Host` header value.
pub fn resolve(u: &url::Url, url: &str) -> Result<(SocketAddr, String)> {
    let host = u.host_str().ok_or_else(|| anyhow!("{url:?} has no host"))?;
    let port = u.port().unwrap_or(80);
    let addr = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host} resolves to nothing"))?;
    let host_header = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    Ok((addr, host_header))
}

/// Where a `ws://` URL points.
pub struct Target {
    pub addr: SocketAddr,
    host_header: String,
    path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target> {
        let u = url::Url::parse(url).with_context(|| format!("bad URL {url:?}"))?;
        if u.scheme() != "ws" {
            bail!(
                "the load generators speak plain ws:// only, not {}",
                u.scheme()
            );
        }
        let (addr, host_header) = resolve(&u, url)?;
        let mut path = u.path().to_owned();
        if path.is_empty() {
            path.push('/');
        }
        if let Some(q) = u.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Target {
            addr,
            host_header,
            path,
        })
    }
}

/// An open connection after the handshake.
pub struct Opened {
    pub stream: TcpStream,
    /// The negotiated permessage-deflate parameters, if any.
    pub deflate: Option<DeflateParams>,
    /// The frame scanner, already fed whatever arrived right behind the
    /// handshake response.
    pub scanner: Scanner,
    /// Data messages that ended in what arrived behind the handshake
    /// response (already counted by `scanner`).
    pub early_messages: u64,
}

/// Connects (from `source` when given: bind before connect, so several
/// loopback source addresses multiply the ephemeral ports available) and
/// runs the opening handshake, offering `deflate` when given.
pub async fn open(
    target: &Target,
    source: Option<IpAddr>,
    deflate: Option<DeflateConfig>,
) -> Result<Opened> {
    let stream = connect_from(target.addr, source).await?;
    handshake_on(stream, target, deflate).await
}

/// A TCP connection to `addr`, from `source` when given (bind before
/// connect), with Nagle off.
pub async fn connect_from(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream> {
    let stream = match source {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let sock = if ip.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            sock.bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("bind {ip}"))?;
            sock.connect(addr).await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn handshake_on(
    mut stream: TcpStream,
    target: &Target,
    deflate: Option<DeflateConfig>,
) -> Result<Opened> {
    let opts = handshake::ClientOptions::default().deflate(deflate);
    let hs = ClientHandshake::try_new(&target.host_header, &target.path, opts)?;
    stream.write_all(hs.request()).await?;
    let limits = Limits::default();
    let mut buf = BytesMut::with_capacity(512);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("connection closed during the opening handshake");
        }
        if let Some((accepted, used)) = hs.receive_response(&buf, &limits)? {
            let mut scanner = Scanner::default();
            let early_messages = scanner.feed(&buf[used..], &mut Controls::default());
            return Ok(Opened {
                stream,
                deflate: accepted.deflate,
                scanner,
                early_messages,
            });
        }
    }
}

/// A deterministic text-like payload of `size` ASCII bytes: words drawn
/// from a small vocabulary, so it is valid UTF-8 and compresses about as
/// well as chat text or JSON (deflate runs are neither flattered by a run of
/// one byte nor penalized by noise).
pub fn payload(size: usize) -> Vec<u8> {
    const WORDS: [&str; 32] = [
        "the", "channel", "message", "user", "online", "data", "hello", "world", "event", "update",
        "price", "status", "ok", "id", "time", "value", "room", "join", "leave", "text", "from",
        "to", "and", "of", "is", "in", "a", "new", "last", "seen", "typing", "read",
    ];
    let mut x: u32 = 0x2545_f491;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.extend_from_slice(WORDS[(x % 32) as usize].as_bytes());
        out.push(b' ');
    }
    out.truncate(size);
    out
}

/// One masked client frame carrying `payload`, as a client would send it:
/// compressed when `deflate` was negotiated (each message compressed from
/// a fresh context, so the same bytes can be sent again and again).
pub fn client_frame(payload: &[u8], binary: bool, deflate: Option<DeflateParams>) -> Bytes {
    let mut conn = Connection::new(Role::Client, Config::default(), deflate);
    if binary {
        conn.send_binary(payload).expect("open connection");
    } else {
        let text = std::str::from_utf8(payload).expect("ASCII payload");
        conn.send_text(text).expect("open connection");
    }
    let mut out = Vec::new();
    conn.drain_transmit(&mut out);
    Bytes::from(out)
}

/// A masked control frame (pong, close).
pub fn control_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    write_frame(&mut out, true, false, opcode, Some(*b"wshb"), payload);
    out.freeze()
}

/// Counts the data messages in the server's byte stream, skipping their
/// payloads; control frames are handed out whole.
#[derive(Default)]
pub struct Scanner {
    /// Payload bytes of the current data frame still to skip.
    skip: u64,
    /// An incomplete header or control frame carried over between reads.
    pending: Vec<u8>,
}

/// What the server sent besides data.
#[derive(Default)]
pub struct Controls {
    /// Ping payloads to answer.
    pub pings: Vec<Vec<u8>>,
    /// The server sent a close frame.
    pub closed: bool,
}

impl Scanner {
    /// Feeds bytes read from the socket; returns how many whole data
    /// messages ended in them.
    pub fn feed(&mut self, mut data: &[u8], ctl: &mut Controls) -> u64 {
        let mut messages = 0;
        while !data.is_empty() {
            if self.pending.is_empty() {
                let used = self.scan(data, &mut messages, ctl);
                data = &data[used..];
                if !data.is_empty() {
                    // An incomplete header or control frame.
                    self.pending.extend_from_slice(data);
                    return messages;
                }
            } else {
                // Complete the carried-over bytes a little at a time, so a
                // large payload behind a split header is not copied.
                let take = data.len().min(256);
                self.pending.extend_from_slice(&data[..take]);
                data = &data[take..];
                let buf = std::mem::take(&mut self.pending);
                let used = self.scan(&buf, &mut messages, ctl);
                self.pending.extend_from_slice(&buf[used..]);
            }
        }
        messages
    }

    /// Consumes whole frames (and data payload bytes) from `data`; returns
    /// the bytes used.
    fn scan(&mut self, data: &[u8], messages: &mut u64, ctl: &mut Controls) -> usize {
        let mut at = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min((data.len() - at) as u64);
                self.skip -= n;
                at += n as usize;
                if self.skip > 0 {
                    return at;
                }
            }
            let Some(h) = FrameHeader::parse(&data[at..]) else {
                return at;
            };
            if h.opcode & 0x8 == 0 {
                at += h.header_len;
                self.skip = h.len;
                if h.fin {
                    *messages += 1;
                }
                continue;
            }
            let end = at + h.header_len + h.len as usize;
            if end > data.len() {
                return at;
            }
            match h.opcode {
                0x9 => ctl.pings.push(data[at + h.header_len..end].to_vec()),
                0x8 => ctl.closed = true,
                _ => {}
            }
            at = end;
        }
    }
}

/// One shared read buffer for every connection of a single-threaded
/// generator: reads happen synchronously after readiness, never across an
/// await, so a 64 KiB buffer serves them all.
#[derive(Clone)]
pub struct Scratch(Rc<RefCell<Box<[u8]>>>);

impl Scratch {
    pub fn new() -> Self {
        Scratch(Rc::new(RefCell::new(
            vec![0u8; 64 * 1024].into_boxed_slice(),
        )))
    }

    /// Waits until `stream` is readable, reads what is there and scans it.
    /// Returns the number of data messages that ended; errors on EOF.
    pub async fn read_messages<R: Readable>(
        &self,
        stream: &R,
        scanner: &mut Scanner,
        ctl: &mut Controls,
    ) -> io::Result<u64> {
        self.read_with(stream, |data| scanner.feed(data, ctl)).await
    }

    /// Waits until `stream` is readable, reads what is there and hands it
    /// to `f` (synchronously, so the buffer is free again when it returns).
    /// Errors on EOF.
    pub async fn read_with<R: Readable, T>(
        &self,
        stream: &R,
        mut f: impl FnMut(&[u8]) -> T,
    ) -> io::Result<T> {
        loop {
            stream.readable().await?;
            let mut buf = self.0.borrow_mut();
            match stream.try_read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => return Ok(f(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A socket (or read half) that supports readiness and non-blocking reads.
pub trait Readable {
    async fn readable(&self) -> io::Result<()>;
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Readable for TcpStream {
    async fn readable(&self) -> io::Result<()> {
        TcpStream::readable(self).await
    }
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }
}

impl Readable for tokio::net::tcp::OwnedReadHalf {
    async fn readable(&self) -> io::Result<()> {
        tokio::net::tcp::OwnedReadHalf::readable(self).await
    }
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        tokio::net::tcp::OwnedReadHalf::try_read(self, buf)
    }
}

/// This process's CPU time so far (user + system), in seconds, from
/// `/proc/self/stat`; `None` where that file does not exist.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds("/proc/self/stat")
}

/// Another process's CPU time so far (user + system), in seconds.
pub fn pid_cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds(&format!("/proc/{pid}/stat"))
}

fn cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 here.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture we run on.
    Some(ticks as f64 / 100.0)
}

/// Parses `--source-ips`: `A-B` (an IPv4 range), or a comma-separated
/// list.
pub fn parse_ips(spec: &str) -> Result<Vec<IpAddr>> {
    if let Some((a, b)) = spec.split_once('-') {
        let a: std::net::Ipv4Addr = a.trim().parse().context("range start")?;
        let b: std::net::Ipv4Addr = b.trim().parse().context("range end")?;
        let (a, b) = (u32::from(a), u32::from(b));
        if b < a || b - a > 1024 {
            bail!("bad source range {spec:?}");
        }
        return Ok((a..=b)
            .map(|x| IpAddr::V4(std::net::Ipv4Addr::from(x)))
            .collect());
    }
    spec.split(',')
        .map(|s| {
            s.trim()
                .parse()
                .with_context(|| format!("bad address {s:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frames(n: usize, size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.extend_from_slice(&wshub_proto::encode_frame(OpCode::Text, &payload(size)));
        }
        out
    }

    #[test]
    fn scanner_counts_messages_across_any_split() {
        for size in [0, 20, 125, 126, 1000, 70_000] {
            let wire = server_frames(3, size);
            for cut in [1, 2, 3, 7, 100, 4096] {
                let mut s = Scanner::default();
                let mut ctl = Controls::default();
                let n: u64 = wire.chunks(cut).map(|c| s.feed(c, &mut ctl)).sum();
                assert_eq!(n, 3, "size {size} cut {cut}");
            }
        }
    }

    #[test]
    fn scanner_hands_out_pings_and_close() {
        let mut wire = wshub_proto::encode_frame(OpCode::Ping, b"hi").to_vec();
        wire.extend_from_slice(&server_frames(1, 10));
        wire.extend_from_slice(&wshub_proto::encode_frame(OpCode::Close, b"\x03\xe8"));
        let mut s = Scanner::default();
        let mut ctl = Controls::default();
        let n: u64 = wire.chunks(3).map(|c| s.feed(c, &mut ctl)).sum();
        assert_eq!(n, 1);
        assert_eq!(ctl.pings, vec![b"hi".to_vec()]);
        assert!(ctl.closed);
    }

    #[test]
    fn payload_is_ascii_of_the_size_asked() {
        for n in [0, 1, 20, 1024, 16384] {
            let p = payload(n);
            assert_eq!(p.len(), n);
            assert!(p.is_ascii());
        }
    }

    #[test]
    fn source_ranges() {
        assert_eq!(parse_ips("127.0.0.2-127.0.0.4").unwrap().len(), 3);
        assert_eq!(parse_ips("127.0.0.1,127.0.0.2").unwrap().len(), 2);
        assert!(parse_ips("127.0.0.9-127.0.0.2").is_err());
    }
}
