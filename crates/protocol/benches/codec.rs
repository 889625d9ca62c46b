//! Micro-benchmarks of the gateway's JSON (and protobuf) codec, to catch
//! regressions: decoding a frame of client commands, encoding replies, and
//! the once-per-publication push encoding shared by every subscriber.
//!
//! `cargo bench -p wshub-protocol` (add `-- <filter>` to run a subset).

#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wshub_protocol::{
    decode_commands, encode_push_reply, encode_replies, Encoding, Publication, Push, Reply,
};

fn data(size: usize) -> Bytes {
    // A JSON object padded to about `size` bytes.
    let pad = "x".repeat(size.saturating_sub(40));
    Bytes::from(format!(r#"{{"user":"u42","text":"{pad}","n":7}}"#))
}

fn commands_frame(n: usize) -> Vec<u8> {
    let mut frame = String::new();
    for i in 0..n {
        if i > 0 {
            frame.push('\n');
        }
        match i % 3 {
            0 => frame.push_str(&format!(
                r#"{{"id":{},"publish":{{"channel":"chat:room{i}","data":{{"text":"hello","n":{i}}}}}}}"#,
                i + 1
            )),
            1 => frame.push_str(&format!(
                r#"{{"id":{},"subscribe":{{"channel":"news:{i}","recover":true,"offset":5,"epoch":"abc"}}}}"#,
                i + 1
            )),
            _ => frame.push_str("{}"),
        }
    }
    frame.into_bytes()
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("json_decode_commands");
    for n in [1, 16] {
        let frame = commands_frame(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &frame, |b, f| {
            b.iter(|| black_box(decode_commands(Encoding::Json, f).unwrap()))
        });
    }
    g.finish();
}

fn publication(size: usize) -> Push {
    Push::publication(
        "chat:room1",
        Publication {
            data: data(size),
            offset: 12345,
            ..Default::default()
        },
    )
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_push");
    for size in [100, 4096] {
        let push = publication(size);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("json", size), &push, |b, p| {
            b.iter(|| black_box(encode_push_reply(Encoding::Json, p).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("protobuf", size), &push, |b, p| {
            b.iter(|| black_box(encode_push_reply(Encoding::Protobuf, p).unwrap()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("json_encode_replies");
    let replies: Vec<Reply> = (0..16)
        .map(|i| Reply {
            id: i + 1,
            push: (i % 2 == 0).then(|| publication(100)),
            ..Default::default()
        })
        .collect();
    g.throughput(Throughput::Elements(replies.len() as u64));
    g.bench_function("16", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            encode_replies(Encoding::Json, &replies, &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
