//! What the broker keeps in JetStream key-value buckets, and the pure rules
//! that turn one stored value into the next (no I/O here, so the rules are
//! unit-tested without a server).
//!
//! Every value is a small protobuf envelope whose payloads are the bytes of
//! [`wshub_hub::broker::wire`] (publications, client infos, node infos): the
//! envelope adds only what a store needs on top of the wire format, the
//! deadlines (Unix milliseconds, checked on every read because nats-server
//! 2.9 has no per-message TTL) and the stream's counters.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use prost::Message;
use wshub_hub::broker::{
    new_epoch, wire, BrokerError, HistoryFilter, HistoryOptions, Publication, StreamPosition,
};

/// A channel's history stream: one value per channel in the history bucket,
/// replaced with compare-and-set on every publish.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct StoredStream {
    /// The stream's epoch.
    #[prost(string, tag = "1")]
    pub epoch: String,
    /// Offset of the newest publication ever published into the stream.
    #[prost(uint64, tag = "2")]
    pub top: u64,
    /// The kept window, oldest first, each [`wire::encode_publication`];
    /// offsets `top - len + 1 ..= top`.
    #[prost(bytes = "bytes", repeated, tag = "3")]
    pub pubs: Vec<Bytes>,
    /// Time of the last publish (0: never).
    #[prost(uint64, tag = "4")]
    pub last_publish_ms: u64,
    /// When the window is dropped (`history_ttl` after the last publish; 0:
    /// no window).
    #[prost(uint64, tag = "5")]
    pub pubs_expire_ms: u64,
    /// When the position itself is forgotten (meta TTL).
    #[prost(uint64, tag = "6")]
    pub meta_expire_ms: u64,
}

/// One lease (presence entry or node info) with its deadline.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct StoredLease {
    /// Client id or node id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Expiry, Unix ms.
    #[prost(uint64, tag = "2")]
    pub expire_ms: u64,
    /// [`wire::encode_client_info`] or [`wire::encode_node_info`].
    #[prost(bytes = "bytes", tag = "3")]
    pub payload: Bytes,
}

/// A set of leases: one value per channel in the presence bucket, one value
/// in the nodes bucket.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct StoredLeases {
    /// The leases (expired ones are dropped on every write).
    #[prost(message, repeated, tag = "1")]
    pub leases: Vec<StoredLease>,
}

/// An idempotency key: claimed by a publisher (pending) or done with the
/// first result.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct StoredResult {
    /// Whether the publish finished; `offset`/`epoch` are its result.
    #[prost(bool, tag = "1")]
    pub done: bool,
    /// Result offset.
    #[prost(uint64, tag = "2")]
    pub offset: u64,
    /// Result epoch.
    #[prost(string, tag = "3")]
    pub epoch: String,
    /// Done: when the key is forgotten. Pending: when the claim is given up
    /// (the claimer died or timed out) and another publisher may take it.
    #[prost(uint64, tag = "4")]
    pub expire_ms: u64,
}

pub(crate) fn decode<M: Message + Default>(what: &str, b: &[u8]) -> Result<M, BrokerError> {
    M::decode(b)
        .map_err(|e| BrokerError::Backend(format!("malformed {what} in JetStream: {e}").into()))
}

/// A safe subject token / KV key token for an arbitrary string: `c` +
/// base64url without padding (letters, digits, `-`, `_`; never empty, never
/// a wildcard, never a `.`).
pub(crate) fn token(s: &str) -> String {
    let mut t = String::with_capacity(1 + s.len().div_ceil(3) * 4);
    t.push('c');
    URL_SAFE_NO_PAD.encode_string(s.as_bytes(), &mut t);
    t
}

/// A JetStream bucket name part derived from the subject prefix: letters,
/// digits, `-` and `_` kept, anything else becomes `_`.
pub(crate) fn bucket_part(prefix: &str) -> String {
    prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether `prefix` is usable as the first tokens of a subject.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty()
                && !t
                    .chars()
                    .any(|c| c.is_whitespace() || c == '*' || c == '>' || c.is_control())
        })
}

impl StoredStream {
    fn fresh(now_ms: u64) -> Self {
        StoredStream {
            epoch: new_epoch(),
            top: 0,
            pubs: Vec::new(),
            last_publish_ms: 0,
            pubs_expire_ms: 0,
            meta_expire_ms: now_ms,
        }
    }

    /// The live stream: `None` when the position expired; the window is
    /// dropped when it expired.
    pub fn live(stored: Option<StoredStream>, now_ms: u64) -> Option<StoredStream> {
        let mut s = stored?;
        if s.meta_expire_ms <= now_ms {
            return None;
        }
        if s.pubs_expire_ms != 0 && s.pubs_expire_ms <= now_ms {
            s.pubs.clear();
            s.pubs_expire_ms = 0;
        }
        Some(s)
    }

    pub fn position(&self) -> StreamPosition {
        StreamPosition::new(self.top, self.epoch.clone())
    }

    /// Appends `p` (its offset set here) to the live stream or to a new one,
    /// keeping at most `size` publications and `max_bytes` of encoded value
    /// (the oldest go first; they are then not recoverable, which recovery
    /// reports). Returns the new value and the publication's position, or
    /// an error when the publication alone does not fit.
    pub fn publish(
        stored: Option<StoredStream>,
        p: &mut Publication,
        limits: (usize, usize),
        ttl_ms: u64,
        meta_ttl_ms: u64,
        now_ms: u64,
    ) -> Result<(StoredStream, StreamPosition), BrokerError> {
        let (size, max_bytes) = limits;
        let mut s = Self::live(stored, now_ms).unwrap_or_else(|| Self::fresh(now_ms));
        s.top += 1;
        p.offset = s.top;
        let position = s.position();
        s.pubs
            .push(Bytes::from(wire::encode_publication(p, &position)));
        if s.pubs.len() > size {
            let drop = s.pubs.len() - size;
            s.pubs.drain(..drop);
        }
        let mut len = s.encoded_len();
        let mut drop = 0;
        // Oldest first, always keeping the newest.
        let older = s.pubs.len().saturating_sub(1);
        for n in s.pubs.iter().take(older).map(Bytes::len) {
            if len <= max_bytes {
                break;
            }
            len -= 1 + prost::encoding::encoded_len_varint(n as u64) + n;
            drop += 1;
        }
        s.pubs.drain(..drop);
        if len > max_bytes {
            return Err(BrokerError::Backend(
                format!(
                    "publication of {} bytes does not fit in a JetStream message of {max_bytes} bytes",
                    p.data.len()
                )
                .into(),
            ));
        }
        s.last_publish_ms = now_ms;
        s.pubs_expire_ms = now_ms.saturating_add(ttl_ms);
        s.meta_expire_ms = s.meta_expire_ms.max(now_ms.saturating_add(meta_ttl_ms));
        Ok((s, position))
    }

    /// The live stream for a history call, created when missing, and whether
    /// it must be written back (created, or its position would expire sooner
    /// than `meta_ttl` from now by more than a tenth of `meta_ttl`, so that
    /// reads of a busy channel do not each write).
    pub fn for_read(
        stored: Option<StoredStream>,
        meta_ttl_ms: u64,
        now_ms: u64,
    ) -> (StoredStream, bool) {
        let (mut s, created) = match Self::live(stored, now_ms) {
            Some(s) => (s, false),
            None => (Self::fresh(now_ms), true),
        };
        let want = now_ms.saturating_add(meta_ttl_ms);
        let extend = s.meta_expire_ms < want.saturating_sub(meta_ttl_ms / 10);
        if created || extend {
            s.meta_expire_ms = s.meta_expire_ms.max(want);
        }
        (s, created || extend)
    }

    /// The publications a history call returns, decoded.
    pub fn select(
        &self,
        filter: &HistoryFilter,
        opts: &HistoryOptions,
        now_ms: u64,
    ) -> Result<Vec<Arc<Publication>>, BrokerError> {
        let len = self.pubs.len();
        let newest_age = (self.last_publish_ms != 0)
            .then(|| Duration::from_millis(now_ms.saturating_sub(self.last_publish_ms)));
        let first = self.top + 1 - len as u64;
        filter
            .select(first, len, newest_age, opts)
            .filter_map(|i| self.pubs.get(i).map(|encoded| (i, encoded)))
            .map(|(i, encoded)| {
                wire::decode_publication(encoded).map(|(mut p, _)| {
                    // The offset is fixed by the position in the window.
                    p.offset = first + i as u64;
                    Arc::new(p)
                })
            })
            .collect()
    }
}

impl StoredLeases {
    /// Drops expired leases.
    pub fn prune(&mut self, now_ms: u64) {
        self.leases.retain(|l| l.expire_ms > now_ms);
    }

    /// Sets or replaces the lease `id`.
    pub fn upsert(&mut self, id: &str, payload: Bytes, expire_ms: u64) {
        match self.leases.iter_mut().find(|l| l.id == id) {
            Some(l) => {
                l.payload = payload;
                l.expire_ms = expire_ms;
            }
            None => self.leases.push(StoredLease {
                id: id.to_owned(),
                expire_ms,
                payload,
            }),
        }
    }

    /// Removes the lease `id`; whether it was there.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.leases.len();
        self.leases.retain(|l| l.id != id);
        self.leases.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(v: &[Arc<Publication>]) -> Vec<u64> {
        v.iter().map(|p| p.offset).collect()
    }

    #[test]
    fn tokens_are_safe_and_distinct() {
        for s in ["", "a.b", "*", ">", "a b", "news:#1", "ü"] {
            let t = token(s);
            assert!(t.starts_with('c'));
            assert!(t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
        assert_ne!(token("a.b"), token("a_b"));
        assert!(valid_prefix("centrifugo") && valid_prefix("a.b"));
        assert!(
            !valid_prefix("")
                && !valid_prefix("a..b")
                && !valid_prefix("a.*")
                && !valid_prefix("a b")
        );
        assert_eq!(bucket_part("a.b-c_d"), "a_b-c_d");
    }

    #[test]
    fn publish_trims_expires_and_keeps_the_position() {
        let mut s = None;
        let mut pos = StreamPosition::default();
        for i in 1..=5u64 {
            let mut p = Publication::new(format!("{i}"));
            let (next, at) =
                StoredStream::publish(s, &mut p, (3, 1 << 20), 2_000, 10_000, 1_000 * i).unwrap();
            assert_eq!(p.offset, i);
            assert_eq!(at.offset, i);
            s = Some(next);
            pos = at;
        }
        let st = s.clone().unwrap();
        let all = st
            .select(&HistoryFilter::all(), &HistoryOptions::default(), 5_000)
            .unwrap();
        assert_eq!(offsets(&all), vec![3, 4, 5]);
        assert_eq!(all[0].data, Bytes::from_static(b"3"));
        let (read, write) = StoredStream::for_read(s.clone(), 10_000, 5_500);
        assert!(!write, "the position is kept long enough");
        assert_eq!(read.pubs.len(), 3);
        // Window gone 2 s after the last publish; position kept.
        let (read, write) = StoredStream::for_read(s.clone(), 10_000, 7_000);
        assert!(write, "the meta ttl is extended");
        assert!(read.pubs.is_empty());
        assert_eq!(read.position(), pos);
        // Position gone after the meta TTL: a new epoch.
        let (read, write) = StoredStream::for_read(s, 10_000, 16_000);
        assert!(write);
        assert_eq!(read.top, 0);
        assert_ne!(read.epoch, pos.epoch);
    }

    #[test]
    fn the_window_is_trimmed_to_the_byte_limit() {
        let mut s = None;
        for i in 1..=10u64 {
            let mut p = Publication::new(vec![b'x'; 100]);
            let next = StoredStream::publish(s, &mut p, (100, 450), 60_000, 60_000, i).unwrap();
            assert!(next.0.encoded_len() <= 450);
            s = Some(next.0);
        }
        let s = s.unwrap();
        assert_eq!(s.top, 10);
        let kept = s
            .select(&HistoryFilter::all(), &HistoryOptions::default(), 11)
            .unwrap();
        assert!(kept.len() >= 2 && kept.len() < 10, "{}", kept.len());
        assert_eq!(kept.last().unwrap().offset, 10);
        let mut huge = Publication::new(vec![b'x'; 1000]);
        assert!(StoredStream::publish(Some(s), &mut huge, (100, 450), 1, 1, 11).is_err());
    }

    #[test]
    fn select_matches_the_filters() {
        let mut s = None;
        for _ in 0..5 {
            let mut p = Publication::new("x");
            s = Some(
                StoredStream::publish(s, &mut p, (10, 1 << 20), 60_000, 60_000, 1)
                    .unwrap()
                    .0,
            );
        }
        let s = s.unwrap();
        let at = |o| Some(StreamPosition::new(o, s.epoch.clone()));
        let f = |since, limit, reverse| HistoryFilter {
            since,
            limit,
            reverse,
        };
        let o = HistoryOptions::default();
        let cases = [
            (f(at(2), None, false), vec![3, 4, 5]),
            (f(None, Some(2), true), vec![5, 4]),
            (f(at(4), None, true), vec![3, 2, 1]),
            (f(at(1), None, true), vec![]),
            (f(at(6), None, true), vec![5, 4, 3, 2, 1]),
            (f(at(5), None, false), vec![]),
        ];
        for (filter, want) in cases {
            assert_eq!(
                offsets(&s.select(&filter, &o, 2).unwrap()),
                want,
                "{filter:?}"
            );
        }
        let capped = HistoryOptions::new(2, Duration::from_secs(60));
        assert_eq!(
            offsets(&s.select(&HistoryFilter::all(), &capped, 2).unwrap()),
            vec![4, 5]
        );
    }
}
