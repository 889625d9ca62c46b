//! Delivery workers: the fan-out of publications, join/leave events and
//! gap reports to local subscribers, off the broker's delivery task.
//!
//! The broker task checks the position, encodes a push once per encoding
//! the channel's subscribers use, and queues one job per [`Chunk`] of the
//! channel's [`Snapshot`]; one std thread per core (`wshub-fanout-N`)
//! takes the jobs and queues the bytes to each session. A job goes to
//! worker `(hash(channel) + chunk index) % workers`, so the chunks of a big
//! channel spread over every worker while each chunk, and so each
//! subscriber of the channel, always goes through the same FIFO: a
//! subscriber sees a channel's pushes in the order the broker delivered
//! them. Each worker has two queues and takes from the first while it has
//! something: chunk 0 of every channel (all of a small channel) and the
//! further chunks of big channels, so a small channel never waits behind a
//! big one's bulk.
//!
//! The queues are bounded ([`MAX_QUEUED_JOBS`], [`MAX_QUEUED_BYTES`] per
//! worker). Over the bound, the caller delivers jobs from the front of the
//! full worker's queues itself until its own job fits: backpressure onto
//! the broker task, as when everything was delivered inline, and the order
//! is kept because a worker's jobs run one at a time, in queue order,
//! whoever runs them.
//!
//! No lock is held while a job runs but the worker's run lock (never taken
//! by anything else than a worker and a caller over the bound); jobs hold
//! snapshots, never a hub shard.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::hub::{Chunk, Control, Snapshot};
use crate::node::Node;

/// Jobs a worker holds queued before callers deliver themselves.
pub const MAX_QUEUED_JOBS: usize = 4096;
/// Bytes of pushes (counted once per job) a worker holds queued before
/// callers deliver themselves.
pub const MAX_QUEUED_BYTES: usize = 32 << 20;

/// What one delivery (one event, all its jobs) does for each subscriber.
#[derive(Debug)]
pub(crate) enum Work {
    /// Queue a push: the bytes per encoding (`[json, binary]`, `None` when
    /// no subscriber uses it), with its offset (0: none).
    Push {
        frames: [Option<Bytes>; 2],
        offset: u64,
        /// Only to subscribers that asked for join/leave pushes.
        join_leave: bool,
        /// Index into `PUSH_KINDS`.
        kind: usize,
        /// The publication's broker time (Unix ms; 0: none), for the
        /// delivery latency observed when the last job is done.
        time_ms: u64,
    },
    /// Tell the subscribers they missed publications (2500).
    Gap,
}

/// One event fanned out to one channel's subscribers.
#[derive(Debug)]
pub(crate) struct Delivery {
    channel: String,
    work: Work,
    /// Jobs not done yet.
    remaining: AtomicUsize,
}

impl Delivery {
    fn bytes(&self) -> usize {
        match &self.work {
            Work::Push { frames, .. } => frames.iter().flatten().map(Bytes::len).sum(),
            Work::Gap => self.channel.len(),
        }
    }
}

struct Job {
    delivery: Arc<Delivery>,
    chunk: Arc<Chunk>,
    bytes: usize,
}

#[derive(Default)]
struct Queues {
    /// Chunk 0 of every channel.
    priority: VecDeque<Job>,
    /// Chunks 1 and up.
    bulk: VecDeque<Job>,
    bytes: usize,
}

impl Queues {
    fn len(&self) -> usize {
        self.priority.len() + self.bulk.len()
    }

    fn is_empty(&self) -> bool {
        self.priority.is_empty() && self.bulk.is_empty()
    }

    fn fits(&self, job: &Job) -> bool {
        self.is_empty()
            || (self.len() < MAX_QUEUED_JOBS && self.bytes + job.bytes <= MAX_QUEUED_BYTES)
    }

    fn push(&mut self, job: Job, priority: bool) {
        self.bytes += job.bytes;
        if priority {
            self.priority.push_back(job);
        } else {
            self.bulk.push_back(job);
        }
    }

    fn pop(&mut self) -> Option<Job> {
        let job = self
            .priority
            .pop_front()
            .or_else(|| self.bulk.pop_front())?;
        self.bytes = self.bytes.saturating_sub(job.bytes);
        Some(job)
    }
}

#[derive(Default)]
struct Worker {
    queues: Mutex<Queues>,
    ready: Condvar,
    /// Held while a job of this worker runs: its jobs run one at a time,
    /// in queue order, on the worker thread or on a caller over the bound.
    run: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Shared {
    workers: Vec<Worker>,
    shutdown: AtomicBool,
    /// Jobs queued or running.
    pending: AtomicUsize,
}

/// The fan-out workers of a node, and their counters.
pub struct Fanout {
    shared: Arc<Shared>,
    /// Deliver on the caller (no worker thread could be started).
    inline: AtomicBool,
    /// Jobs a caller ran itself because a worker's queues were full.
    caller_jobs: AtomicU64,
    /// Join/leave events not pushed: the channel had more local
    /// subscribers than `join_leave_max_subscribers`.
    join_leave_muted: AtomicU64,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("workers", &self.shared.workers.len())
            .field("queued_jobs", &self.queued_jobs())
            .finish_non_exhaustive()
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for w in &self.shared.workers {
            // Under the queue lock, so that a worker between its check and
            // its wait does not miss the wakeup.
            let _q = lock(&w.queues);
            w.ready.notify_all();
        }
    }
}

impl Fanout {
    /// The default number of workers: one per core.
    pub fn default_workers() -> usize {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    }

    /// `workers` workers (at least 1), not started yet: until
    /// [`Fanout::start`], jobs run on the caller.
    pub fn new(workers: usize) -> Fanout {
        Fanout {
            shared: Arc::new(Shared {
                workers: (0..workers.max(1)).map(|_| Worker::default()).collect(),
                ..Shared::default()
            }),
            inline: AtomicBool::new(true),
            caller_jobs: AtomicU64::new(0),
            join_leave_muted: AtomicU64::new(0),
        }
    }

    /// Starts the worker threads (`wshub-fanout-N`) for `node`; they end
    /// when the node is dropped. If a thread cannot be started, every job
    /// runs on the caller, as before workers.
    pub(crate) fn start(&self, node: Weak<Node>) {
        for i in 0..self.shared.workers.len() {
            let shared = self.shared.clone();
            let node = node.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("wshub-fanout-{i}"))
                .spawn(move || worker_loop(&shared, i, &node));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start a fan-out worker; delivering inline");
                return;
            }
        }
        self.inline.store(false, Ordering::Release);
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// Jobs queued or running now (the `wshub_node_fanout_queued_jobs` gauge).
    pub fn queued_jobs(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
    }

    /// Jobs that callers ran themselves because a worker was full.
    pub fn caller_jobs(&self) -> u64 {
        self.caller_jobs.load(Ordering::Relaxed)
    }

    /// Join/leave events not pushed because of `join_leave_max_subscribers`.
    pub fn join_leave_muted(&self) -> u64 {
        self.join_leave_muted.load(Ordering::Relaxed)
    }

    pub(crate) fn count_muted(&self) {
        self.join_leave_muted.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits until every job queued so far is done, at most `timeout`;
    /// true when idle. For tests and graceful shutdown.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.queued_jobs() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        true
    }

    /// Fans `work` out to the chunks of `snapshot` (those with a join/leave
    /// subscriber when the work is a join/leave push). `hash` is
    /// [`crate::hub::Hub::channel_hash`] of `channel`.
    pub(crate) fn dispatch(
        &self,
        node: &Node,
        channel: &str,
        hash: u64,
        snapshot: &Snapshot,
        work: Work,
    ) {
        let only_join_leave = matches!(
            work,
            Work::Push {
                join_leave: true,
                ..
            }
        );
        let wanted = |c: &Chunk| {
            if only_join_leave {
                c.join_leave() > 0
            } else {
                !c.is_empty()
            }
        };
        let jobs = snapshot.chunks().iter().filter(|c| wanted(c)).count();
        if jobs == 0 {
            return;
        }
        let delivery = Arc::new(Delivery {
            channel: channel.to_owned(),
            work,
            remaining: AtomicUsize::new(jobs),
        });
        let bytes = delivery.bytes();
        let n = self.shared.workers.len().max(1);
        for (i, chunk) in snapshot.chunks().iter().enumerate() {
            if !wanted(chunk) {
                continue;
            }
            let job = Job {
                delivery: delivery.clone(),
                chunk: chunk.clone(),
                bytes,
            };
            // Reduce before adding: no overflow whatever the hash.
            let w = ((hash % n as u64) as usize + i % n) % n;
            self.enqueue(node, w, i == 0, job);
        }
    }

    fn enqueue(&self, node: &Node, w: usize, priority: bool, job: Job) {
        let Some(worker) = self.shared.workers.get(w) else {
            return run(node, job);
        };
        if self.inline.load(Ordering::Acquire) {
            // In order all the same: under the worker's run lock.
            let _run = lock(&worker.run);
            return run(node, job);
        }
        {
            let mut q = lock(&worker.queues);
            if q.fits(&job) {
                q.push(job, priority);
                self.shared.pending.fetch_add(1, Ordering::AcqRel);
                drop(q);
                worker.ready.notify_one();
                return;
            }
        }
        // Full: run this worker's oldest jobs here until ours fits.
        let _run = lock(&worker.run);
        loop {
            let mut q = lock(&worker.queues);
            if q.fits(&job) {
                q.push(job, priority);
                self.shared.pending.fetch_add(1, Ordering::AcqRel);
                drop(q);
                worker.ready.notify_one();
                return;
            }
            let Some(old) = q.pop() else {
                // `fits` is true on an empty queue: not reached.
                drop(q);
                return run(node, job);
            };
            drop(q);
            self.caller_jobs.fetch_add(1, Ordering::Relaxed);
            run(node, old);
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn worker_loop(shared: &Shared, i: usize, node: &Weak<Node>) {
    let Some(worker) = shared.workers.get(i) else {
        return;
    };
    loop {
        {
            let mut q = lock(&worker.queues);
            while q.is_empty() {
                if shared.shutdown.load(Ordering::Acquire) {
                    return;
                }
                q = worker.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        }
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        let Some(node) = node.upgrade() else {
            return;
        };
        let _run = lock(&worker.run);
        // Popped under the run lock: a caller over the bound cannot run a
        // later job of this worker before this one is done.
        let job = lock(&worker.queues).pop();
        if let Some(job) = job {
            run(&node, job);
            shared.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Delivers one job: its work for every subscriber of its chunk.
fn run(node: &Node, job: Job) {
    let d = &*job.delivery;
    match &d.work {
        Work::Push {
            frames,
            offset,
            join_leave,
            kind,
            ..
        } => {
            let [json, binary] = frames;
            let (mut delivered, mut bytes) = (0u64, 0u64);
            for s in job.chunk.subscribers() {
                if *join_leave && !s.join_leave {
                    continue;
                }
                let frame = if s.handle.encoding().is_binary() {
                    binary
                } else {
                    json
                };
                let Some(f) = frame else {
                    continue;
                };
                if s.handle.push_channel(&d.channel, *offset, f.clone()) {
                    delivered += 1;
                    bytes += f.len() as u64;
                } else {
                    // Counted in `wshub_client_slow_disconnects_total` when
                    // the session closes with 3008.
                    tracing::info!(client = %s.handle.id(), "slow consumer: queue overflow");
                }
            }
            let m = node.metrics();
            m.deliveries.fetch_add(delivered, Ordering::Relaxed);
            if let (Some(n), Some(b)) = (m.pushes_sent.get(*kind), m.push_bytes_sent.get(*kind)) {
                n.fetch_add(delivered, Ordering::Relaxed);
                b.fetch_add(bytes, Ordering::Relaxed);
            }
        }
        Work::Gap => {
            for s in job.chunk.subscribers() {
                s.handle
                    .control(Control::InsufficientState(d.channel.clone()));
            }
        }
    }
    if d.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
        if let Work::Push { time_ms, .. } = d.work {
            if time_ms > 0 {
                // Wall clock against the broker's publish time (ms).
                let now_us = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as u64);
                let took = now_us.saturating_sub(time_ms.saturating_mul(1000));
                node.metrics()
                    .delivery_latency
                    .observe(Duration::from_micros(took));
            }
        }
    }
}
