//! Data types shared by every broker: publications, stream positions,
//! options, results and errors. They are independent of the wire encoding;
//! the gateway converts them to and from the client protocol.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// Information about a client connection, attached to publications,
/// presence entries and join/leave events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The authenticated user id; empty for an anonymous user.
    pub user: String,
    /// The client (connection) id, unique per connection.
    pub client: String,
    /// Connection info from the connection token or proxy, as raw bytes.
    pub conn_info: Option<Bytes>,
    /// Channel info from the subscription token or proxy, as raw bytes.
    pub chan_info: Option<Bytes>,
}

impl ClientInfo {
    /// A client info with a user and client id and no extra info.
    pub fn new(user: impl Into<String>, client: impl Into<String>) -> Self {
        ClientInfo {
            user: user.into(),
            client: client.into(),
            conn_info: None,
            chan_info: None,
        }
    }
}

/// A message published into a channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Publication {
    /// Position in the channel's history stream, assigned by the broker:
    /// 1, 2, 3, ... per stream; 0 when the channel keeps no history.
    /// Whatever the publisher puts here is overwritten.
    pub offset: u64,
    /// The payload exactly as the publisher sent it.
    pub data: Bytes,
    /// The publishing client, if a client published.
    pub info: Option<ClientInfo>,
    /// Free-form tags delivered with the publication.
    pub tags: BTreeMap<String, String>,
    /// Publish time in Unix milliseconds; a broker sets it when it is 0.
    pub time: u64,
}

impl Publication {
    /// A publication carrying `data` and nothing else.
    pub fn new(data: impl Into<Bytes>) -> Self {
        Publication {
            data: data.into(),
            ..Publication::default()
        }
    }
}

/// A position in a channel's history stream.
///
/// `offset` is the offset of the last publication (0 before the first one);
/// `epoch` names the stream: it changes whenever the broker loses the stream,
/// so a position from an older stream never matches the current one. The
/// zero value (`offset` 0, empty `epoch`) means "no stream": a publish into a
/// channel without history returns it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct StreamPosition {
    /// Offset of the last publication, 0 for an empty stream.
    pub offset: u64,
    /// The stream's epoch, an opaque string.
    pub epoch: String,
}

impl StreamPosition {
    /// A position from its parts.
    pub fn new(offset: u64, epoch: impl Into<String>) -> Self {
        StreamPosition {
            offset,
            epoch: epoch.into(),
        }
    }
}

/// How to publish: history settings of the channel and idempotency.
///
/// History is kept only when both `history_size` and `history_ttl` are
/// non-zero (as in Centrifugo); setting one without the other is rejected
/// with [`BrokerError::InvalidOptions`] rather than silently dropping history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishOptions {
    /// Most publications kept in the channel's history (0 = no history).
    pub history_size: usize,
    /// How long the history window is kept after the *last* publication into
    /// the channel (0 = no history). When it passes, every publication of the
    /// channel is dropped at once, but the stream position (offset and epoch)
    /// survives until `history_meta_ttl`.
    pub history_ttl: Duration,
    /// How long the stream position (offset and epoch) is kept after the last
    /// publish or history call; `None` uses the broker's default (30 days
    /// for the memory broker, like Centrifugo's `history_meta_ttl`).
    pub history_meta_ttl: Option<Duration>,
    /// Publishing again with the same key into the same channel, while the
    /// key is remembered, returns the first result and neither stores nor
    /// delivers the publication again.
    pub idempotency_key: Option<String>,
    /// How long an idempotency key is remembered; `None` uses the broker's
    /// default (5 minutes, as in Centrifugo).
    pub idempotency_ttl: Option<Duration>,
}

impl PublishOptions {
    /// Keeps the last `size` publications for `ttl` after the last publish.
    pub fn history(mut self, size: usize, ttl: Duration) -> Self {
        self.history_size = size;
        self.history_ttl = ttl;
        self
    }
    /// Sets [`PublishOptions::history_meta_ttl`].
    pub fn history_meta_ttl(mut self, v: Duration) -> Self {
        self.history_meta_ttl = Some(v);
        self
    }
    /// Sets [`PublishOptions::idempotency_key`].
    pub fn idempotency_key(mut self, v: impl Into<String>) -> Self {
        self.idempotency_key = Some(v.into());
        self
    }
    /// Sets [`PublishOptions::idempotency_ttl`].
    pub fn idempotency_ttl(mut self, v: Duration) -> Self {
        self.idempotency_ttl = Some(v);
        self
    }
    /// Whether these options ask for history.
    pub fn keeps_history(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }
    /// Checks the options: history needs both a size and a TTL, and TTLs
    /// that are given must not be zero. Broker implementations call this
    /// first so that every backend rejects the same options.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let (has_size, has_ttl) = (self.history_size > 0, !self.history_ttl.is_zero());
        if has_size != has_ttl {
            return Err(BrokerError::InvalidOptions(
                "history needs both history_size and history_ttl (or neither)".into(),
            ));
        }
        if self.history_meta_ttl.is_some_and(|d| d.is_zero()) {
            return Err(BrokerError::InvalidOptions(
                "history_meta_ttl must not be zero".into(),
            ));
        }
        if self.idempotency_ttl.is_some_and(|d| d.is_zero()) {
            return Err(BrokerError::InvalidOptions(
                "idempotency_ttl must not be zero".into(),
            ));
        }
        Ok(())
    }
}

/// Which publications a history call returns.
///
/// Offsets only are compared: the broker does not check `since.epoch`
/// against the stream's epoch, the caller does (compare with
/// [`HistoryResult::position`]; [`super::recover`] does it for recovery).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Forward: publications after `since.offset`; reverse: publications
    /// before it. `None`: from the oldest (forward) or newest (reverse).
    pub since: Option<StreamPosition>,
    /// Most publications to return; `None` = all, `Some(0)` = only the
    /// current stream position.
    pub limit: Option<usize>,
    /// Newest first.
    pub reverse: bool,
}

impl HistoryFilter {
    /// Only the current stream position, no publications.
    pub fn position_only() -> Self {
        HistoryFilter {
            since: None,
            limit: Some(0),
            reverse: false,
        }
    }
    /// Every publication in history, oldest first.
    pub fn all() -> Self {
        HistoryFilter::default()
    }
    /// Up to `limit` publications after `since`, oldest first.
    pub fn since(since: StreamPosition, limit: Option<usize>) -> Self {
        HistoryFilter {
            since: Some(since),
            limit,
            reverse: false,
        }
    }
}

impl HistoryFilter {
    /// Which of a stream's kept publications a history call returns, as
    /// indexes into them, in the order asked for: the one selection rule of
    /// every broker that keeps its window itself (memory, NATS; the Redis
    /// broker runs the same rule in its Lua script, next to the data).
    ///
    /// The window is `len` publications with contiguous offsets from
    /// `first`, oldest first; `newest_age` is how long ago the newest
    /// publication of the stream was made (`None` if never). Under the
    /// channel's current settings `opts`, only the newest `opts.size` count
    /// (when non-zero), and none once `opts.ttl` (when non-zero) has passed
    /// since the newest. Of those, forward selects offsets above
    /// `since.offset`, reverse those below it, newest first; at most
    /// `limit` of them.
    pub fn select(
        &self,
        first: u64,
        len: usize,
        newest_age: Option<Duration>,
        opts: &HistoryOptions,
    ) -> HistorySelection {
        let empty = HistorySelection {
            range: 0..0,
            reverse: self.reverse,
        };
        let expired = !opts.ttl.is_zero() && newest_age.is_some_and(|age| age >= opts.ttl);
        let limit = self.limit.unwrap_or(usize::MAX);
        if expired || limit == 0 || len == 0 {
            return empty;
        }
        // The first index that counts under the current size cap.
        let lo = if opts.size > 0 {
            len.saturating_sub(opts.size)
        } else {
            0
        };
        // Index of the first publication with an offset above `x`.
        let after = |x: u64| -> usize {
            if x < first {
                0
            } else {
                usize::try_from(x - first + 1).map_or(len, |i| i.min(len))
            }
        };
        let range = if self.reverse {
            let end = match &self.since {
                None => len,
                Some(sp) if sp.offset == 0 => 0,
                Some(sp) => after(sp.offset - 1),
            };
            if end <= lo {
                return empty;
            }
            end.saturating_sub(limit).max(lo)..end
        } else {
            let start = self
                .since
                .as_ref()
                .map_or(lo, |sp| after(sp.offset).max(lo));
            start..start.saturating_add(limit).min(len).max(start)
        };
        HistorySelection {
            range,
            reverse: self.reverse,
        }
    }
}

/// The indexes [`HistoryFilter::select`] chose, in the order asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistorySelection {
    range: std::ops::Range<usize>,
    reverse: bool,
}

impl Iterator for HistorySelection {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.reverse {
            self.range.next_back()
        } else {
            self.range.next()
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.range.size_hint()
    }
}

impl ExactSizeIterator for HistorySelection {}

/// The channel's current history settings, passed to history calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryOptions {
    /// The channel's current `history_size`. When non-zero, a history call
    /// returns at most the newest `size` publications even if more were
    /// kept under a larger size, so shrinking a namespace takes effect at
    /// once. 0 = no cap from here.
    pub size: usize,
    /// The channel's current `history_ttl`. When non-zero, publications are
    /// treated as expired once `ttl` has passed since the last publish, even
    /// if they were published under a longer TTL. 0 = no cap from here.
    pub ttl: Duration,
    /// How long the stream position is kept after this call; `None` uses the
    /// broker's default. A history call on a channel without a stream
    /// creates the stream (offset 0, a new epoch) so that the position it
    /// returns stays valid for a later recovery.
    pub meta_ttl: Option<Duration>,
}

impl HistoryOptions {
    /// The channel's history settings.
    pub fn new(size: usize, ttl: Duration) -> Self {
        HistoryOptions {
            size,
            ttl,
            meta_ttl: None,
        }
    }
    /// Sets [`HistoryOptions::meta_ttl`].
    pub fn meta_ttl(mut self, v: Duration) -> Self {
        self.meta_ttl = Some(v);
        self
    }
}

/// The answer to a history call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryResult {
    /// The selected publications, in the order asked for.
    pub publications: Vec<Arc<Publication>>,
    /// The stream's current top position (offset of the newest publication
    /// ever published into this stream, kept or not, and the epoch).
    pub position: StreamPosition,
}

/// Presence counters of a channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PresenceStats {
    /// Client connections present.
    pub num_clients: usize,
    /// Distinct user ids among them (the anonymous user counts once).
    pub num_users: usize,
}

/// Presence of a channel: client id to client info.
pub type Presence = HashMap<String, ClientInfo>;

/// What a node tells the others about itself (for `/api/info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// Unique id of the node (a new one per process start).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Software version.
    pub version: String,
    /// Client connections on the node.
    pub num_clients: u64,
    /// Distinct users on the node.
    pub num_users: u64,
    /// Client subscriptions on the node.
    pub num_subs: u64,
    /// Channels with at least one subscriber on the node.
    pub num_channels: u64,
    /// Seconds since the node started.
    pub uptime_secs: u64,
}

impl NodeInfo {
    /// A node info with an id and name; counters start at 0.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        NodeInfo {
            id: id.into(),
            name: name.into(),
            ..NodeInfo::default()
        }
    }
}

/// Errors of a broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker was used before `start`.
    #[error("broker not started")]
    NotStarted,
    /// `start` was called twice.
    #[error("broker already started")]
    AlreadyStarted,
    /// The broker was closed.
    #[error("broker closed")]
    Closed,
    /// The options of a call are inconsistent.
    #[error("invalid broker options: {0}")]
    InvalidOptions(String),
    /// The backend did not answer in time.
    #[error("broker backend timed out")]
    Timeout,
    /// The backend (Redis, NATS, ...) failed.
    #[error("broker backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule of [`HistoryFilter::select`] written the slow, obvious way
    /// over offsets.
    fn model(
        f: &HistoryFilter,
        first: u64,
        len: usize,
        age: Option<Duration>,
        o: &HistoryOptions,
    ) -> Vec<u64> {
        if !o.ttl.is_zero() && age.is_some_and(|a| a >= o.ttl) {
            return Vec::new();
        }
        let all: Vec<u64> = (first..first + len as u64).collect();
        let kept = if o.size > 0 {
            &all[all.len().saturating_sub(o.size)..]
        } else {
            &all[..]
        };
        let mut picked: Vec<u64> = kept
            .iter()
            .copied()
            .filter(|x| match (&f.since, f.reverse) {
                (None, _) => true,
                (Some(sp), false) => *x > sp.offset,
                (Some(sp), true) => *x < sp.offset,
            })
            .collect();
        if f.reverse {
            picked.reverse();
        }
        picked.truncate(f.limit.unwrap_or(usize::MAX));
        picked
    }

    #[test]
    fn selection_follows_since_limit_reverse_size_and_ttl() {
        let ttl = Duration::from_secs(10);
        let ages = [
            None,
            Some(Duration::ZERO),
            Some(ttl / 2),
            Some(ttl),
            Some(ttl * 2),
        ];
        let sizes = [0, 1, 3, 20];
        let sinces = [
            None,
            Some(0),
            Some(1),
            Some(5),
            Some(7),
            Some(9),
            Some(12),
            Some(40),
        ];
        let limits = [None, Some(0), Some(1), Some(2), Some(100)];
        let mut cases = 0;
        for (first, len) in [(1, 0), (1, 10), (6, 5), (1_000, 3)] {
            for age in ages {
                for size in sizes {
                    for ttl in [Duration::ZERO, ttl] {
                        let o = HistoryOptions::new(size, ttl);
                        for since in sinces {
                            for limit in limits {
                                for reverse in [false, true] {
                                    let f = HistoryFilter {
                                        since: since.map(|o| StreamPosition::new(o, "e")),
                                        limit,
                                        reverse,
                                    };
                                    let sel = f.select(first, len, age, &o);
                                    assert_eq!(sel.len(), sel.clone().count());
                                    let got: Vec<u64> = sel.map(|i| first + i as u64).collect();
                                    let want = model(&f, first, len, age, &o);
                                    assert_eq!(got, want, "{f:?} {first}+{len} {age:?} {o:?}");
                                    cases += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(cases > 10_000);
    }

    #[test]
    fn selection_examples() {
        let at = |o| Some(StreamPosition::new(o, "e"));
        let f = |since, limit, reverse| HistoryFilter {
            since,
            limit,
            reverse,
        };
        let o = HistoryOptions::default();
        let pick = |f: HistoryFilter| f.select(1, 5, None, &o).map(|i| i + 1).collect::<Vec<_>>();
        assert_eq!(pick(f(at(2), None, false)), [3, 4, 5]);
        assert_eq!(pick(f(None, Some(2), true)), [5, 4]);
        assert_eq!(pick(f(at(4), None, true)), [3, 2, 1]);
        assert_eq!(pick(f(at(1), None, true)), [0usize; 0]);
        assert_eq!(pick(HistoryFilter::position_only()), [0usize; 0]);
        assert_eq!(pick(HistoryFilter::all()), [1, 2, 3, 4, 5]);
    }
}
