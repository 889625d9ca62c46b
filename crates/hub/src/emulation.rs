//! Bidirectional emulation: the client-to-server half of the transports
//! that only stream one way (HTTP-streaming, SSE). The stream carries the
//! replies and pushes; each further command batch arrives as its own HTTP
//! request naming the session (a secret id the connect reply carried) and
//! the node that holds it. That request may land on any node behind a
//! load balancer without stickiness: a node that does not hold the session
//! forwards the commands through the broker's control channel to the node
//! that does, and waits for its answer (delivered, or no such session).
//!
//! The registry maps a session id to a bounded queue read by the stream's
//! task, which feeds each batch to `Session::handle_data` in order and then
//! reports it done: a request is answered once its commands have run (their
//! replies go down the stream, as Centrifugo does), so a client that waits
//! for the answer also gets backpressure. Everything is bounded by
//! [`TIMEOUT`]: a full queue that does not drain in time is `Busy`, a batch
//! not run in time `NoAnswer`. The
//! session id is not the client id: client ids are shown to other clients
//! (presence, join/leave), so a session id has to be a separate secret, or
//! anyone could send commands as anyone they can see.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// How many command batches may wait for one session's task; past it a
/// request is refused as busy (the client retries), so one session cannot
/// hold unbounded memory.
pub const SESSION_QUEUE: usize = 32;

/// How long an emulation request may take from its arrival to its commands
/// having run, forwarding included (Centrifugo's survey timeout).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What a request asks of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Run these encoded commands.
    Commands(Bytes),
    /// A long-poll: what the session has after message `ack` (the last the
    /// client got), held until there is some or the poll times out.
    Poll {
        /// The last message sequence number the client processed.
        ack: u64,
    },
}

/// What the session's task answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// The commands ran.
    Ran,
    /// The poll's answer body.
    Poll(Bytes),
    /// This session's transport does not take that request (a poll for a
    /// stream, or an `ack` ahead of what was sent).
    Refused,
}

/// One request for the session's task. Answer it with [`Batch::answer`]
/// (or [`Batch::done`] for commands); a batch dropped unanswered reads as
/// an unknown session (the session ended first).
#[derive(Debug)]
pub struct Batch {
    /// The request.
    pub request: Request,
    answer: oneshot::Sender<Answer>,
}

impl Batch {
    /// A request and where its answer arrives (for a transport that asks
    /// its own session, as a long-poll's first request does).
    pub fn new(request: Request) -> (Batch, oneshot::Receiver<Answer>) {
        let (answer, rx) = oneshot::channel();
        (Batch { request, answer }, rx)
    }

    /// Resolves when the requester stops waiting (a held poll whose client
    /// went away).
    ///
    /// Cancel safety: cancel safe.
    pub async fn abandoned(&mut self) {
        self.answer.closed().await
    }

    /// The commands have been handled (their replies are queued).
    pub fn done(self) {
        self.answer(Answer::Ran);
    }

    /// Answers the request.
    pub fn answer(self, answer: Answer) {
        let _ = self.answer.send(answer);
    }

    /// Whether the requester stopped waiting (a held poll whose client went).
    pub fn is_abandoned(&self) -> bool {
        self.answer.is_closed()
    }
}

/// What became of an emulation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The session has run the commands.
    Delivered,
    /// No node with that id is registered.
    UnknownNode,
    /// No session with that id on that node (never was, or ended).
    UnknownSession,
    /// The session's queue stayed full ([`SESSION_QUEUE`] batches) for
    /// [`TIMEOUT`]: retry.
    Busy,
    /// The owning node did not answer in time (gone, or the broker is
    /// slow); the commands may or may not have arrived.
    NoAnswer,
    /// The session's transport does not take this request.
    Refused,
}

impl Outcome {
    /// The wire name, in cluster messages and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::UnknownNode => "unknown_node",
            Outcome::UnknownSession => "unknown_session",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no_answer",
            Outcome::Refused => "refused",
        }
    }

    /// The outcome a wire name stands for (an unknown one reads as no
    /// answer: the caller cannot tell what happened).
    pub fn from_wire(s: &str) -> Self {
        match s {
            "delivered" => Outcome::Delivered,
            "unknown_node" => Outcome::UnknownNode,
            "unknown_session" => Outcome::UnknownSession,
            "busy" => Outcome::Busy,
            "refused" => Outcome::Refused,
            _ => Outcome::NoAnswer,
        }
    }
}

/// A forwarded request's outcome, and a poll's answer body.
pub type Forwarded = (Outcome, Option<Bytes>);

/// The node's emulation sessions and the forwarded requests it waits on.
#[derive(Debug, Default)]
pub struct Registry {
    /// The queues hold boxes: tokio's channel allocates its first block of
    /// 32 slots when it is made, and an idle session should not pay 32
    /// whole batches for it.
    sessions: Mutex<HashMap<Box<str>, mpsc::Sender<Box<Batch>>>>,
    /// Requests this node forwarded: request id → who waits for the answer.
    waiting: Mutex<HashMap<u64, oneshot::Sender<Forwarded>>>,
    next_request: AtomicU64,
}

/// One emulation session's end of the registry: the stream's task reads the
/// command batches from it. Dropping it removes the session.
#[derive(Debug)]
pub struct Inbox {
    id: String,
    rx: mpsc::Receiver<Box<Batch>>,
    registry: Weak<Registry>,
}

impl Inbox {
    /// The session id to give the client (in the connect reply).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next command batch, in arrival order.
    ///
    /// Cancel safety: cancel safe.
    pub async fn recv(&mut self) -> Option<Batch> {
        self.rx.recv().await.map(|b| *b)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        if let Some(r) = self.registry.upgrade() {
            r.lock_sessions().remove(self.id.as_str());
        }
    }
}

impl Registry {
    fn lock_sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Box<str>, mpsc::Sender<Box<Batch>>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Forwarded>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session with a fresh random id.
    pub fn open(self: &Arc<Self>) -> Inbox {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let id = crate::node::random_id();
        self.lock_sessions().insert(id.clone().into(), tx);
        Inbox {
            id,
            rx,
            registry: Arc::downgrade(self),
        }
    }

    /// Hands `request` to a session of this node and waits for its answer,
    /// at most until `deadline`: the outcome, and a poll's answer body.
    ///
    /// Cancel safety: cancel safe (the commands may still run).
    pub async fn deliver(
        &self,
        session: &str,
        request: Request,
        deadline: tokio::time::Instant,
    ) -> (Outcome, Option<Bytes>) {
        let tx = match self.lock_sessions().get(session) {
            Some(tx) => tx.clone(),
            None => return (Outcome::UnknownSession, None),
        };
        let (answer, answered) = oneshot::channel();
        match tokio::time::timeout_at(deadline, tx.send(Box::new(Batch { request, answer }))).await
        {
            Err(_) => return (Outcome::Busy, None),
            Ok(Err(_)) => return (Outcome::UnknownSession, None),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(Ok(Answer::Ran)) => (Outcome::Delivered, None),
            Ok(Ok(Answer::Poll(body))) => (Outcome::Delivered, Some(body)),
            Ok(Ok(Answer::Refused)) => (Outcome::Refused, None),
            Ok(Err(_)) => (Outcome::UnknownSession, None),
            Err(_) => (Outcome::NoAnswer, None),
        }
    }

    /// The number of sessions open.
    pub fn len(&self) -> usize {
        self.lock_sessions().len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts waiting for the answer to a forwarded request: its id, and
    /// where the answer arrives. The entry goes when the answer arrives or
    /// the [`Waiting`] is dropped.
    pub(crate) fn wait(self: &Arc<Self>) -> Waiting {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock_waiting().insert(id, tx);
        Waiting {
            id,
            rx,
            registry: self.clone(),
        }
    }

    /// An answer from the node that holds a session this node forwarded to.
    pub(crate) fn answered(&self, request: u64, outcome: Outcome, body: Option<Bytes>) {
        if let Some(tx) = self.lock_waiting().remove(&request) {
            let _ = tx.send((outcome, body));
        }
    }
}

/// A forwarded request's wait for its answer (see [`Registry::wait`]).
pub(crate) struct Waiting {
    pub id: u64,
    pub rx: oneshot::Receiver<Forwarded>,
    registry: Arc<Registry>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.registry.lock_waiting().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(200)
    }

    async fn run(r: &Registry, session: &str, data: &'static [u8]) -> Outcome {
        r.deliver(session, Request::Commands(Bytes::from_static(data)), soon())
            .await
            .0
    }

    #[tokio::test]
    async fn a_request_is_answered_once_its_session_ran_it_and_in_order() {
        let r = Arc::new(Registry::default());
        let mut inbox = r.open();
        let id = inbox.id().to_owned();
        assert_eq!(id.len(), 36);
        let runner = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let b = inbox.recv().await.unwrap();
                seen.push(b.request.clone());
                b.done();
            }
            let poll = inbox.recv().await.unwrap();
            assert_eq!(poll.request, Request::Poll { ack: 7 });
            poll.answer(Answer::Poll(Bytes::from_static(b"{}")));
            (seen, inbox)
        });
        assert_eq!(run(&r, &id, b"1").await, Outcome::Delivered);
        assert_eq!(run(&r, &id, b"2").await, Outcome::Delivered);
        let polled = r.deliver(&id, Request::Poll { ack: 7 }, soon()).await;
        assert_eq!(
            polled,
            (Outcome::Delivered, Some(Bytes::from_static(b"{}")))
        );
        let (seen, inbox) = runner.await.unwrap();
        assert_eq!(
            seen,
            [
                Request::Commands(Bytes::from_static(b"1")),
                Request::Commands(Bytes::from_static(b"2"))
            ]
        );
        assert_eq!(run(&r, "forged", b"").await, Outcome::UnknownSession);
        drop(inbox);
        assert_eq!(run(&r, &id, b"").await, Outcome::UnknownSession);
        assert!(r.is_empty());
    }

    #[tokio::test]
    async fn a_session_that_does_not_read_makes_requests_busy_not_unbounded() {
        let r = Arc::new(Registry::default());
        let inbox = r.open();
        let id = inbox.id().to_owned();
        // Unread batches fill the queue; those requests wait, then give up.
        let mut waiting = Vec::new();
        for _ in 0..SESSION_QUEUE {
            let r = r.clone();
            let id = id.clone();
            waiting.push(tokio::spawn(async move { run(&r, &id, b"").await }));
        }
        tokio::task::yield_now().await;
        assert_eq!(run(&r, &id, b"").await, Outcome::Busy);
        for w in waiting {
            assert_eq!(w.await.unwrap(), Outcome::NoAnswer);
        }
        // A batch dropped unrun (the session ended) is an unknown session.
        let r2 = r.clone();
        let id2 = id.clone();
        let late = tokio::spawn(async move { run(&r2, &id2, b"").await });
        drop(inbox);
        assert_eq!(late.await.unwrap(), Outcome::UnknownSession);
    }

    #[tokio::test]
    async fn an_answer_reaches_its_waiter_and_a_dropped_wait_leaves_nothing() {
        let r = Arc::new(Registry::default());
        let mut w = r.wait();
        r.answered(w.id, Outcome::Busy, None);
        assert_eq!((&mut w.rx).await.ok(), Some((Outcome::Busy, None)));
        let w = r.wait();
        let id = w.id;
        drop(w);
        assert!(r.lock_waiting().is_empty());
        r.answered(id, Outcome::Delivered, None);
    }

    #[test]
    fn outcomes_round_trip_their_wire_names() {
        for o in [
            Outcome::Delivered,
            Outcome::UnknownNode,
            Outcome::UnknownSession,
            Outcome::Busy,
            Outcome::NoAnswer,
            Outcome::Refused,
        ] {
            assert_eq!(Outcome::from_wire(o.as_str()), o);
        }
        assert_eq!(Outcome::from_wire("later"), Outcome::NoAnswer);
    }
}
