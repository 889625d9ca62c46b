//! How many connections the node can hold: the open-file limit
//! (`RLIMIT_NOFILE`), raising its soft value to the hard one at start-up,
//! and the default cap on open sockets derived from it.
//!
//! ```
//! use wshub_server::capacity;
//!
//! // 5% (at least 64) of the descriptors stay free for the broker, logs,
//! // the listener and the 503 answers to connections over the cap.
//! assert_eq!(capacity::default_max_connections(20_000), 19_000);
//! assert_eq!(capacity::default_max_connections(1_024), 960);
//! assert_eq!(capacity::reserve(1_024), 64);
//! ```

use std::io;

/// The open-file limit of this process, after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FdLimit {
    /// The soft limit in force: the most descriptors the process may open.
    pub soft: u64,
    /// The hard limit (the ceiling for the soft one).
    pub hard: u64,
    /// The soft limit before it was raised, when it was.
    pub raised_from: Option<u64>,
}

/// Descriptors kept free below the limit: max(64, 5%).
pub fn reserve(fd_limit: u64) -> u64 {
    (fd_limit / 20).max(64)
}

/// The default `http_server.max_connections` for an open-file limit:
/// the limit minus [`reserve`] (at least 1).
pub fn default_max_connections(fd_limit: u64) -> u64 {
    fd_limit.saturating_sub(reserve(fd_limit)).max(1)
}

/// The soft open-file limit in force (`None` where it cannot be read).
pub fn fd_limit() -> Option<u64> {
    rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
}

/// Raises the soft open-file limit to the hard limit (or, when the hard
/// limit is unlimited, to the kernel's per-process maximum
/// `fs.nr_open`), so that the node can hold as many connections as the
/// system allows it. Returns the limits in force afterwards.
pub fn raise_fd_limit() -> io::Result<FdLimit> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    let ceiling = if hard == rlimit::INFINITY {
        nr_open().unwrap_or(1 << 20)
    } else {
        hard
    };
    if soft >= ceiling {
        return Ok(FdLimit {
            soft,
            hard,
            raised_from: None,
        });
    }
    rlimit::Resource::NOFILE.set(ceiling, hard)?;
    let (now, hard) = rlimit::Resource::NOFILE.get()?;
    Ok(FdLimit {
        soft: now,
        hard,
        raised_from: (now > soft).then_some(soft),
    })
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The kernel's cap on listen backlogs (`net.core.somaxconn`), where it
/// can be read.
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}
