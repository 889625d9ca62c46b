//! Micro-benchmarks of the protocol core's hot paths, to catch regressions:
//! frame decode (header, unmasking, UTF-8 check, message assembly), frame
//! encode, masking, UTF-8 validation, and permessage-deflate both ways.
//!
//! `cargo bench -p wshub-proto` (add `-- <filter>` to run a subset).

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wshub_proto::mask::apply_mask;
use wshub_proto::{utf8, Config, Connection, DeflateParams, Event, Role};

/// Text-like ASCII (words and spaces), about as compressible as chat text.
fn text(size: usize) -> String {
    const WORDS: [&str; 16] = [
        "channel", "message", "user", "online", "data", "hello", "world", "event", "update",
        "price", "status", "ok", "time", "value", "room", "typing",
    ];
    let mut s = String::with_capacity(size + 8);
    let mut x: u32 = 0x9e37_79b9;
    while s.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.push_str(WORDS[(x % 16) as usize]);
        s.push(' ');
    }
    s.truncate(size);
    s
}

/// Multi-byte UTF-8 of about `size` bytes (2-, 3- and 4-byte characters).
fn multibyte(size: usize) -> String {
    let mut s = String::with_capacity(size + 4);
    let chars = ['é', 'ж', '中', '€', '😀', 'a'];
    let mut i = 0;
    while s.len() < size {
        s.push(chars[i % chars.len()]);
        i += 1;
    }
    s
}

/// `n` masked client frames carrying `payload`, as a server receives them.
fn client_wire(payload: &str, n: usize, deflate: Option<DeflateParams>) -> Vec<u8> {
    let mut client = Connection::new(Role::Client, Config::default(), deflate);
    let mut wire = Vec::new();
    for _ in 0..n {
        client.send_text(payload).unwrap();
        client.drain_transmit(&mut wire);
    }
    wire
}

const SIZES: [usize; 3] = [20, 1024, 16 * 1024];
const BATCH: usize = 64;

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for size in SIZES {
        let wire = client_wire(&text(size), BATCH, None);
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(BenchmarkId::new("text", size), &wire, |b, wire| {
            let mut server = Connection::new(Role::Server, Config::default(), None);
            b.iter(|| {
                server.receive_data(wire);
                let mut n = 0;
                while let Some(ev) = server.poll_event().unwrap() {
                    if let Event::Message(m) = ev {
                        n += m.len();
                    }
                }
                black_box(n)
            });
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for size in SIZES {
        let payload = text(size);
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(BenchmarkId::new("server_text", size), &payload, |b, p| {
            let mut server = Connection::new(Role::Server, Config::default(), None);
            b.iter(|| {
                for _ in 0..BATCH {
                    server.send_text(p).unwrap();
                }
                let mut bytes = 0;
                while server.wants_write() {
                    let n = server.transmit_chunk().len();
                    bytes += n;
                    server.advance_transmit(n);
                }
                black_box(bytes)
            });
        });
        g.bench_with_input(BenchmarkId::new("client_text", size), &payload, |b, p| {
            let mut client = Connection::new(Role::Client, Config::default(), None);
            b.iter(|| {
                for _ in 0..BATCH {
                    client.send_text(p).unwrap();
                }
                let mut bytes = 0;
                while client.wants_write() {
                    let n = client.transmit_chunk().len();
                    bytes += n;
                    client.advance_transmit(n);
                }
                black_box(bytes)
            });
        });
        g.bench_with_input(BenchmarkId::new("encode_frame", size), &payload, |b, p| {
            b.iter(|| {
                black_box(wshub_proto::encode_frame(
                    wshub_proto::OpCode::Text,
                    p.as_bytes(),
                ))
            })
        });
    }
    g.finish();
}

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in [20, 125, 1024, 16 * 1024, 1 << 20] {
        let mut buf = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), [1, 2, 3, 4], 1))
        });
    }
    g.finish();
}

fn utf8_validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for size in [20, 1024, 16 * 1024] {
        let ascii = text(size);
        let multi = multibyte(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("ascii", size), |b| {
            b.iter(|| utf8::validate(black_box(ascii.as_bytes())).unwrap())
        });
        g.bench_function(BenchmarkId::new("multibyte", size), |b| {
            b.iter(|| utf8::validate(black_box(multi.as_bytes())).unwrap())
        });
        // Streamed in 1,000-byte pieces, as fragments or partial reads
        // arrive (pieces end inside characters).
        g.bench_function(BenchmarkId::new("multibyte_streamed", size), |b| {
            b.iter(|| {
                let mut v = utf8::Utf8Validator::new();
                for piece in multi.as_bytes().chunks(1000) {
                    v.feed(black_box(piece)).unwrap();
                }
                v.finish().unwrap()
            })
        });
    }
    g.finish();
}

fn deflate(c: &mut Criterion) {
    let params = DeflateParams::default();
    let mut g = c.benchmark_group("deflate");
    for size in [1024, 16 * 1024] {
        let payload = text(size);
        g.throughput(Throughput::Bytes(size as u64));
        // Compress: a server with context takeover sending one message.
        g.bench_with_input(BenchmarkId::new("compress", size), &payload, |b, p| {
            let mut server = Connection::new(Role::Server, Config::default(), Some(params));
            b.iter(|| {
                server.send_text(p).unwrap();
                let mut bytes = 0;
                while server.wants_write() {
                    let n = server.transmit_chunk().len();
                    bytes += n;
                    server.advance_transmit(n);
                }
                black_box(bytes)
            });
        });
        // Decompress: a server receiving messages a client compressed, each
        // from a fresh context (so the same bytes can be fed repeatedly).
        let wire = client_wire(&payload, 1, Some(params));
        g.bench_with_input(BenchmarkId::new("decompress", size), &wire, |b, wire| {
            let mut server = Connection::new(Role::Server, Config::default(), Some(params));
            b.iter(|| {
                server.receive_data(wire);
                match server.poll_event().unwrap() {
                    Some(Event::Message(m)) => black_box(m.len()),
                    other => panic!("{other:?}"),
                }
            });
        });
    }
    g.finish();
}

criterion_group!(benches, decode, encode, masking, utf8_validation, deflate);
criterion_main!(benches);
