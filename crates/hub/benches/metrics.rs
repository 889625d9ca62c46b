//! The metric cost of one client command, before and after the move to
//! prometheus-client with handles resolved at start: what the session and
//! the WebSocket adapter record per command (the command counter, its
//! latency, one message in, one frame out), alone, with two threads doing
//! it at once, and while another thread scrapes `/metrics` in a loop.
//!
//! "before" is the previous mechanism, kept here as a baseline: the label
//! string built with `format!` and a global `Mutex<BTreeMap>` per labeled
//! increment, which a scrape also locks to render the labeled series.
//!
//! `cargo bench -p wshub-hub --bench metrics`

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use wshub_hub::metrics::{Histogram, Metrics, NodeCounts};
use wshub_protocol::{Encoding, Method};

/// The previous stringly labeled counters, with the atomics that did not
/// change.
#[derive(Default)]
struct Before {
    labeled: Mutex<BTreeMap<(&'static str, String), u64>>,
    latency: Histogram,
    received: [AtomicU64; 2],
    sent: [AtomicU64; 2],
}

impl Before {
    fn inc(&self, name: &'static str, label: impl Into<String>) {
        let mut m = self.labeled.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((name, label.into())).or_default() += 1;
    }

    fn command(&self, m: Method, took: Duration) {
        self.inc(
            "wshub_client_commands_total",
            format!("method=\"{}\"", m.as_str()),
        );
        self.latency.observe(took);
        self.received[0].fetch_add(1, Ordering::Relaxed);
        self.received[1].fetch_add(100, Ordering::Relaxed);
        self.sent[0].fetch_add(1, Ordering::Relaxed);
        self.sent[1].fetch_add(120, Ordering::Relaxed);
    }

    fn scrape(&self) -> String {
        let mut s = String::new();
        let m = self.labeled.lock().unwrap_or_else(|e| e.into_inner());
        for ((name, label), v) in m.iter() {
            let _ = writeln!(s, "{name}{{{label}}} {v}");
        }
        s
    }
}

fn now_command(m: &Metrics, method: Method, took: Duration) {
    m.command(method);
    m.observe_command(method, took);
    m.count_received(Encoding::Json, 100);
    m.count_sent(Encoding::Json, 1, 120);
}

const TOOK: Duration = Duration::from_micros(80);

/// Runs `iters` commands split over `threads` threads; the wall time.
fn spread(threads: u64, iters: u64, f: &(dyn Fn() + Sync)) -> Duration {
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..iters / threads {
                    f();
                }
            });
        }
    });
    t0.elapsed()
}

/// Runs `iters` commands on this thread while another scrapes in a loop.
fn while_scraping(iters: u64, f: &(dyn Fn() + Sync), scrape: &(dyn Fn() + Sync)) -> Duration {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                scrape();
            }
        });
        let t0 = Instant::now();
        for _ in 0..iters {
            f();
        }
        let took = t0.elapsed();
        stop.store(true, Ordering::Relaxed);
        took
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("command_metrics");
    let before = Arc::new(Before::default());
    let now = Arc::new(Metrics::new());
    // Some series in place, as on a node that has run for a while.
    for m in [Method::Connect, Method::Subscribe, Method::Publish] {
        before.command(m, TOOK);
        now_command(&now, m, TOOK);
    }
    g.bench_function("before/1_thread", |b| {
        b.iter(|| before.command(black_box(Method::Publish), TOOK))
    });
    g.bench_function("now/1_thread", |b| {
        b.iter(|| now_command(&now, black_box(Method::Publish), TOOK))
    });
    g.bench_function("before/2_threads", |b| {
        b.iter_custom(|iters| spread(2, iters, &|| before.command(Method::Publish, TOOK)))
    });
    g.bench_function("now/2_threads", |b| {
        b.iter_custom(|iters| spread(2, iters, &|| now_command(&now, Method::Publish, TOOK)))
    });
    g.bench_function("before/while_scraping", |b| {
        b.iter_custom(|iters| {
            while_scraping(iters, &|| before.command(Method::Publish, TOOK), &|| {
                black_box(before.scrape());
            })
        })
    });
    g.bench_function("now/while_scraping", |b| {
        b.iter_custom(|iters| {
            while_scraping(iters, &|| now_command(&now, Method::Publish, TOOK), &|| {
                black_box(now.render(NodeCounts::default()));
            })
        })
    });
    g.finish();
    c.bench_function("scrape/render", |b| {
        b.iter(|| black_box(now.render(NodeCounts::default())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
