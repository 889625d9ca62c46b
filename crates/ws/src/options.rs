//! Transport settings shared by servers and clients.

use std::time::Duration;

use wshub_proto::{Config, KeepAlive, Limits};

/// Settings for one WebSocket connection on top of the protocol core's
/// [`Config`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// The protocol core's settings: limits on untrusted input (including
    /// `limits.close_timeout` and the handshake size limits), keepalive
    /// (`config.keepalive`: ping every interval, fail a silent peer with
    /// close 1011), automatic pongs, fragmentation, compression level.
    pub config: Config,
    /// Most bytes queued for the socket before the connection pushes back
    /// (default 4 MiB). Over the mark, `recv` stops reading from the socket
    /// until the queue drains (so a peer that floods pings but never reads
    /// cannot grow our memory), and `feed` fails or `send` waits (see
    /// [`fail_fast_when_full`](Self::fail_fast_when_full)).
    pub high_water_mark: usize,
    /// Over the high-water mark, `feed`/`send` fail with
    /// [`WsError::QueueFull`](crate::WsError::QueueFull) instead of waiting
    /// (default `false`). Useful for fan-out, where one slow consumer must
    /// not stall the sender.
    pub fail_fast_when_full: bool,
    /// Longest time the opening handshake may take, from the first byte
    /// read (or written, for a client) to the 101 response (default 10 s).
    pub handshake_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: Config::default(),
            high_water_mark: 4 << 20,
            fail_fast_when_full: false,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl Options {
    /// Sets [`Options::config`].
    pub fn config(mut self, v: Config) -> Self {
        self.config = v;
        self
    }
    /// Sets [`Options::high_water_mark`].
    pub fn high_water_mark(mut self, v: usize) -> Self {
        self.high_water_mark = v;
        self
    }
    /// Sets [`Options::fail_fast_when_full`].
    pub fn fail_fast_when_full(mut self, v: bool) -> Self {
        self.fail_fast_when_full = v;
        self
    }
    /// Sets [`Options::handshake_timeout`].
    pub fn handshake_timeout(mut self, v: Duration) -> Self {
        self.handshake_timeout = v;
        self
    }
    /// Sets the keepalive in [`Options::config`].
    pub fn keepalive(mut self, v: Option<KeepAlive>) -> Self {
        self.config = self.config.keepalive(v);
        self
    }
    /// Sets the limits in [`Options::config`].
    pub fn limits(mut self, v: Limits) -> Self {
        self.config = self.config.limits(v);
        self
    }
}
