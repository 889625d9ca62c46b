//! The outgoing byte queue: small frames are coalesced into one buffer,
//! large or shared payloads are queued as their own chunks, and the whole
//! queue is handed to one vectored write.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads at least this large are queued by reference, not copied.
pub(crate) const COPY_LIMIT: usize = 1024;

#[derive(Default)]
pub(crate) struct OutQueue {
    /// Frozen chunks, oldest first.
    chunks: VecDeque<Bytes>,
    /// Bytes being appended after the last chunk.
    pub(crate) tail: BytesMut,
    len: usize,
}

impl OutQueue {
    /// Appends a chunk by reference, keeping order with the tail.
    pub(crate) fn push_bytes(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.seal_tail();
        self.len += b.len();
        self.chunks.push_back(b);
    }

    /// Call after writing into `tail` to account for the new bytes.
    pub(crate) fn tail_grew(&mut self, before: usize) {
        self.len += self.tail.len() - before;
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            let t = self.tail.split().freeze();
            self.chunks.push_back(t);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `dst` with the queued bytes in order; returns how many slices
    /// were written.
    pub(crate) fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let tail = (!self.tail.is_empty()).then_some(&*self.tail);
        let queued = self.chunks.iter().map(|c| &**c).chain(tail);
        let mut n = 0;
        for (slot, bytes) in dst.iter_mut().zip(queued) {
            *slot = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// How many slices hold the queued bytes.
    pub(crate) fn chunk_count(&self) -> usize {
        self.chunks.len() + usize::from(!self.tail.is_empty())
    }

    /// The first contiguous run of queued bytes.
    pub(crate) fn first_chunk(&self) -> &[u8] {
        match self.chunks.front() {
            Some(c) => c,
            None => &self.tail,
        }
    }

    /// Drops `n` bytes from the front (after a write).
    pub(crate) fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len, "advance past the end of the queue");
        self.len -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(c) => {
                    if n >= c.len() {
                        n -= c.len();
                        self.chunks.pop_front();
                    } else {
                        c.advance(n);
                        return;
                    }
                }
                None => {
                    self.tail.advance(n);
                    return;
                }
            }
        }
        if self.len == 0 {
            // Keep a small tail allocation for the next frames; give back a
            // large one so idle connections stay cheap.
            if self.tail.capacity() > 16 * 1024 {
                self.tail = BytesMut::new();
            } else {
                self.tail.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_kept_across_tail_and_chunks() {
        let mut q = OutQueue::default();
        let b = q.tail.len();
        q.tail.extend_from_slice(b"ab");
        q.tail_grew(b);
        q.push_bytes(Bytes::from_static(b"cd"));
        let b = q.tail.len();
        q.tail.extend_from_slice(b"ef");
        q.tail_grew(b);
        let mut v = [IoSlice::new(&[]); 8];
        let n = q.chunks_vectored(&mut v);
        let all: Vec<u8> = v[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(all, b"abcdef");
        q.advance(3);
        assert_eq!(q.len(), 3);
        assert_eq!(q.first_chunk(), b"d");
        q.advance(3);
        assert!(q.is_empty());
    }
}
