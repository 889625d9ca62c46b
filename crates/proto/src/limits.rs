//! Limits on untrusted input.

use std::time::Duration;

/// Limits on what a peer may make us buffer or do. Every field has a safe
/// default; raise them only for trusted peers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Limits {
    /// Largest payload of a single frame, in bytes (default 16 MiB).
    pub max_frame_size: usize,
    /// Largest message, in bytes, counted after inflate (default 64 MiB).
    pub max_message_size: usize,
    /// Most frames one fragmented message may have (default 100 000).
    pub max_fragments: usize,
    /// Largest opening handshake head (request or response line plus
    /// headers), in bytes (default 16 KiB).
    pub max_handshake_bytes: usize,
    /// Most header lines in an opening handshake (default 64).
    pub max_headers: usize,
    /// How long the closing handshake may take before the transport is
    /// closed anyway (default 5 s).
    pub close_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_fragments: 100_000,
            max_handshake_bytes: 16 << 10,
            max_headers: 64,
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_frame_size`].
    pub fn max_frame_size(mut self, v: usize) -> Self {
        self.max_frame_size = v;
        self
    }
    /// Sets [`Limits::max_message_size`].
    pub fn max_message_size(mut self, v: usize) -> Self {
        self.max_message_size = v;
        self
    }
    /// Sets [`Limits::max_fragments`].
    pub fn max_fragments(mut self, v: usize) -> Self {
        self.max_fragments = v;
        self
    }
    /// Sets [`Limits::max_handshake_bytes`].
    pub fn max_handshake_bytes(mut self, v: usize) -> Self {
        self.max_handshake_bytes = v;
        self
    }
    /// Sets [`Limits::max_headers`].
    pub fn max_headers(mut self, v: usize) -> Self {
        self.max_headers = v;
        self
    }
    /// Sets [`Limits::close_timeout`].
    pub fn close_timeout(mut self, v: Duration) -> Self {
        self.close_timeout = v;
        self
    }
}
