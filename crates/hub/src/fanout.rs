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
        /// What kind of push, for the metrics.
        kind: crate::metrics::PushKind,
        /// The publication's broker time (Unix ms; 0: none), for the
        /// delivery latency observed when the last job is done.
        time_ms: u64,
        /// A client that does not get it (a front's publisher that must
        /// not get its own event back, see [`crate::node::FrontPush`]).
        exclude: Option<Box<str>>,
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
    /// Chunk 0 of its channel: the priority queue, and its pushes go
    /// straight to the sockets of idle subscribers
    /// ([`ClientHandle::push_channel_now`](crate::outbound::ClientHandle::push_channel_now)),
    /// so a small channel's subscriber is not woken behind a big channel's
    /// thousands. Later chunks queue for the connections' tasks, which
    /// write several publications per wakeup when they fall behind.
    priority: bool,
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

    fn fits(&self, job: &Job, max_jobs: usize) -> bool {
        self.is_empty() || (self.len() < max_jobs && self.bytes + job.bytes <= MAX_QUEUED_BYTES)
    }

    fn push(&mut self, job: Job) {
        self.bytes += job.bytes;
        if job.priority {
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
    /// Jobs queued per worker before the caller delivers
    /// ([`MAX_QUEUED_JOBS`]).
    max_jobs: usize,
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
            max_jobs: MAX_QUEUED_JOBS,
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
                priority: i == 0,
            };
            // Reduce before adding: no overflow whatever the hash.
            let w = ((hash % n as u64) as usize + i % n) % n;
            self.enqueue(node, w, job);
        }
    }

    /// Queues `job` on `worker` if it fits (and wakes the worker); gives it
    /// back otherwise. The queue's lock is held only for that.
    fn try_queue(&self, worker: &Worker, job: Job) -> Result<(), Job> {
        let mut q = lock(&worker.queues);
        if !q.fits(&job, self.max_jobs) {
            return Err(job);
        }
        q.push(job);
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        drop(q);
        worker.ready.notify_one();
        Ok(())
    }

    fn enqueue(&self, node: &Node, w: usize, job: Job) {
        let Some(worker) = self.shared.workers.get(w) else {
            return run(node, job, false);
        };
        if self.inline.load(Ordering::Acquire) {
            // In order all the same: under the worker's run lock.
            let _run = lock(&worker.run);
            return run(node, job, false);
        }
        let Err(mut job) = self.try_queue(worker, job) else {
            return;
        };
        // Full: run this worker's oldest jobs here until ours fits.
        let _run = lock(&worker.run);
        loop {
            job = match self.try_queue(worker, job) {
                Ok(()) => return,
                Err(job) => job,
            };
            let old = lock(&worker.queues).pop();
            let Some(old) = old else {
                // `fits` is true on an empty queue: not reached.
                return run(node, job, false);
            };
            self.caller_jobs.fetch_add(1, Ordering::Relaxed);
            run(node, old, false);
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
            let direct = job.priority;
            run(&node, job, direct);
            shared.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Delivers one job: its work for every subscriber of its chunk; with
/// `direct`, straight to the sockets of idle subscribers.
fn run(node: &Node, job: Job, direct: bool) {
    let d = &*job.delivery;
    match &d.work {
        Work::Push {
            frames,
            offset,
            join_leave,
            kind,
            exclude,
            ..
        } => {
            let [json, binary] = frames;
            let (mut delivered, mut bytes) = (0u64, 0u64);
            for s in job.chunk.subscribers() {
                if *join_leave && !s.join_leave {
                    continue;
                }
                if exclude.as_deref().is_some_and(|x| x == s.handle.id()) {
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
                let ok = if direct {
                    s.handle.push_channel_now(&d.channel, *offset, f.clone())
                } else {
                    s.handle.push_channel(&d.channel, *offset, f.clone())
                };
                if ok {
                    delivered += 1;
                    bytes += f.len() as u64;
                } else {
                    // Counted in `wshub_client_slow_disconnects_total` when
                    // the session closes with 3008.
                    tracing::info!(client = %s.handle.id(), "slow consumer: queue overflow");
                }
            }
            let m = node.metrics();
            m.count_pushes(*kind, delivered, bytes);
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
                node.metrics().observe_delivery(Duration::from_micros(took));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{MemoryBroker, MemoryBrokerConfig};
    use crate::hub::{ClientHandle, Subscriber};
    use wshub_config::Config;
    use wshub_protocol::{decode_replies, Encoding, Push};

    async fn node() -> Arc<Node> {
        let broker = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
        Node::start(Config::development_default(), broker)
            .await
            .unwrap()
    }

    fn subscribe(node: &Node, channel: &str, n: usize, enc: Encoding) -> Vec<Arc<ClientHandle>> {
        (0..n)
            .map(|i| {
                let h = Arc::new(ClientHandle::new(format!("{channel}-{i}"), enc, 0));
                node.hub().add(
                    channel,
                    Subscriber {
                        handle: h.clone(),
                        join_leave: true,
                    },
                );
                h
            })
            .collect()
    }

    fn publication(channel: &str, offset: u64) -> Push {
        Push::publication(
            channel,
            wshub_protocol::Publication {
                data: Bytes::from(format!("{{\"n\":{offset}}}")),
                offset,
                ..Default::default()
            },
        )
    }

    /// The publication offsets queued to `h`, in order.
    fn offsets(h: &ClientHandle) -> Vec<u64> {
        h.drain()
            .frames
            .iter()
            .flat_map(|f| decode_replies(h.encoding(), f).unwrap())
            .filter_map(|r| r.push?.publication.map(|p| p.offset))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_subscriber_gets_every_publication_in_order_across_workers() {
        let node = node().await;
        assert!(node.fanout().workers() >= 1);
        // Several chunks (so several workers) plus both encodings.
        let mut subs = subscribe(&node, "big", 3 * crate::hub::CHUNK + 7, Encoding::Json);
        subs.extend(subscribe(&node, "big-bin", 5, Encoding::Protobuf));
        for h in subs.iter().skip(3 * crate::hub::CHUNK) {
            node.hub().add(
                "big",
                Subscriber {
                    handle: h.clone(),
                    join_leave: false,
                },
            );
        }
        let small = subscribe(&node, "small", 1, Encoding::Json);
        const N: u64 = 300;
        for offset in 1..=N {
            node.fan_out("big", &publication("big", offset), offset, false);
            node.fan_out("small", &publication("small", offset), offset, false);
        }
        assert!(node.fanout().wait_idle(Duration::from_secs(20)));
        assert_eq!(node.fanout().queued_jobs(), 0);
        let want: Vec<u64> = (1..=N).collect();
        for h in subs.iter().chain(&small) {
            assert_eq!(offsets(h), want, "{}", h.id());
        }
        let expected = N * (subs.len() as u64 + 1);
        assert_eq!(node.metrics().deliveries(), expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_subscriber_gets_a_burst_of_publications_in_order() {
        let node = node().await;
        let subs = subscribe(&node, "c", 1, Encoding::Json);
        // More jobs than a worker queues, as fast as the caller can.
        let n = 3 * MAX_QUEUED_JOBS as u64;
        let push = |o: u64| publication("c", o);
        let pushes: Vec<Push> = (1..=n).map(push).collect();
        for (i, p) in pushes.iter().enumerate() {
            node.fan_out("c", p, i as u64 + 1, false);
        }
        assert!(node.fanout().wait_idle(Duration::from_secs(60)));
        assert_eq!(offsets(&subs[0]), (1..=n).collect::<Vec<_>>());
        eprintln!("jobs run by the caller: {}", node.fanout().caller_jobs());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gap_reports_come_after_the_pushes_already_queued() {
        let node = node().await;
        let subs = subscribe(&node, "g", 2 * crate::hub::CHUNK, Encoding::Json);
        for offset in 1..=20 {
            node.fan_out("g", &publication("g", offset), offset, false);
        }
        node.report_gap("g", &crate::broker::StreamPosition::new(30, "e"), "test");
        assert!(node.fanout().wait_idle(Duration::from_secs(20)));
        for h in &subs {
            let d = h.drain();
            assert_eq!(d.frames.len(), 20);
            assert_eq!(d.controls, [Control::InsufficientState("g".into())]);
        }
    }

    #[tokio::test]
    async fn callers_over_the_bound_deliver_the_oldest_jobs_first() {
        let node = node().await;
        let subs = subscribe(&node, "c", crate::hub::CHUNK + 1, Encoding::Json);
        let snapshot = node.hub().snapshot("c").unwrap();
        // Queues of 3 jobs, no worker running yet: every dispatch past the
        // bound makes the caller deliver the oldest jobs.
        let mut fanout = Fanout::new(2);
        fanout.max_jobs = 3;
        fanout.inline.store(false, Ordering::Release);
        let n = 50u64;
        for offset in 1..=n {
            let frame =
                wshub_protocol::encode_push_reply(Encoding::Json, &publication("c", offset))
                    .unwrap();
            let work = Work::Push {
                frames: [Some(frame), None],
                offset,
                join_leave: false,
                kind: crate::metrics::PushKind::Publication,
                time_ms: 0,
                exclude: None,
            };
            fanout.dispatch(&node, "c", 7, &snapshot, work);
        }
        assert!(fanout.caller_jobs() > 0);
        assert!(fanout.queued_jobs() <= 2 * 3);
        // The workers take what is left.
        fanout.start(Arc::downgrade(&node));
        assert!(fanout.wait_idle(Duration::from_secs(10)));
        for h in &subs {
            assert_eq!(offsets(h), (1..=n).collect::<Vec<_>>(), "{}", h.id());
        }
    }

    #[tokio::test]
    async fn a_job_from_before_an_unsubscribe_does_not_reach_the_new_subscription() {
        let node = node().await;
        let subs = subscribe(&node, "r", 2, Encoding::Json);
        let before = node.hub().snapshot("r").unwrap();
        // Client 0 leaves and subscribes again (a new entry).
        node.hub().remove("r", subs[0].id());
        node.hub().add(
            "r",
            Subscriber {
                handle: subs[0].clone(),
                join_leave: true,
            },
        );
        // A job that took its snapshot before the unsubscribe runs late.
        let frame =
            wshub_protocol::encode_push_reply(Encoding::Json, &publication("r", 1)).unwrap();
        let work = Work::Push {
            frames: [Some(frame), None],
            offset: 1,
            join_leave: false,
            kind: crate::metrics::PushKind::Publication,
            time_ms: 0,
            exclude: None,
        };
        node.fanout().dispatch(&node, "r", 1, &before, work);
        node.fan_out("r", &publication("r", 2), 2, false);
        assert!(node.fanout().wait_idle(Duration::from_secs(5)));
        assert_eq!(offsets(&subs[0]), [2]);
        assert_eq!(offsets(&subs[1]), [1, 2]);
    }

    #[test]
    fn join_leave_max_subscribers_is_a_namespace_option_defaulting_to_1000() {
        use wshub_config::{channel_options, Format, JoinLeaveLimit, Loader};
        let text = r#"{"channel": {
            "without_namespace": {"join_leave": true},
            "namespaces": [{"name": "big", "join_leave_max_subscribers": 0},
                           {"name": "room", "join_leave_max_subscribers": 50}]
        }}"#;
        let loaded = Loader::new().load_str(text, Format::Json).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let limit = |ch: &str| {
            channel_options(&loaded.config, ch)
                .unwrap()
                .options
                .join_leave_max_subscribers
        };
        assert_eq!(limit("x"), JoinLeaveLimit(1000));
        assert_eq!(limit("big:x"), JoinLeaveLimit(0));
        assert_eq!(limit("room:x"), JoinLeaveLimit(50));
        assert_eq!(
            Config::development_default()
                .channel
                .without_namespace
                .join_leave_max_subscribers,
            JoinLeaveLimit::DEFAULT
        );
    }

    #[tokio::test]
    async fn join_leave_pushes_stop_above_the_limit() {
        let mut cfg = Config::development_default();
        cfg.channel.without_namespace.join_leave_max_subscribers = wshub_config::JoinLeaveLimit(3);
        let broker = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
        let node = Node::start(cfg, broker).await.unwrap();
        let info = crate::broker::ClientInfo::default;
        let broker = node.broker().clone();
        broker.subscribe("j").await.unwrap();
        let subs = subscribe(&node, "j", 3, Encoding::Json);
        broker.publish_join("j", info()).await.unwrap();
        let more = subscribe(&node, "j2", 1, Encoding::Json);
        node.hub().add(
            "j",
            Subscriber {
                handle: more[0].clone(),
                join_leave: true,
            },
        );
        broker.publish_join("j", info()).await.unwrap();
        broker.publish_leave("j", info()).await.unwrap();
        assert_eq!(node.fanout().join_leave_muted(), 2);
        node.hub().remove("j", more[0].id());
        broker.publish_leave("j", info()).await.unwrap();
        assert!(node.fanout().wait_idle(Duration::from_secs(5)));
        for h in &subs {
            // The first join and the last leave.
            assert_eq!(h.drain().frames.len(), 2, "{}", h.id());
        }
        assert!(node
            .metrics_text()
            .contains("wshub_node_join_leave_muted_total 2"));
    }
}
