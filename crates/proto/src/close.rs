//! Close codes (RFC 6455 §7.4).

use std::fmt;

/// A WebSocket close status code (RFC 6455 §7.4).
///
/// A newtype over `u16` with the registered codes as named constants, so
/// application codes (3000–4999) fit without an enum variant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: endpoint going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: unsupported data type.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no status received (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: abnormal closure, no close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: invalid payload data (bad UTF-8 in a text message).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: message too big.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: a required extension was not negotiated (client only).
    pub const EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: internal server error.
    pub const INTERNAL: CloseCode = CloseCode(1011);
    /// 1012: service restart.
    pub const RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: bad gateway.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: TLS handshake failure (never sent on the wire).
    pub const TLS: CloseCode = CloseCode(1015);

    /// Whether this code may appear in a close frame on the wire.
    ///
    /// Valid: 1000–1003, 1007–1014 and 3000–4999. Everything else
    /// (0–999, 1004–1006, 1015, other unassigned 1xxx/2xxx, 5000+) is not.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(v: u16) -> Self {
        CloseCode(v)
    }
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> u16 {
        c.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_ranges() {
        for c in 0..=6000u16 {
            let expect = matches!(c, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode(c).is_sendable(), expect, "code {c}");
        }
    }
}
