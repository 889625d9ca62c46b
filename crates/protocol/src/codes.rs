//! Error, disconnect and unsubscribe codes of the protocol.
//!
//! The numbers, default messages and client reactions match the Centrifuge
//! library (`errors.go`, `disconnect.go`, `unsubscribe.go`) and the reactions
//! of the `centrifuge` JS SDK, which the other SDKs follow.

use std::fmt;

use crate::messages::{Disconnect, Error, Unsubscribe};

/// The code of an [`Error`] in a reply to a command.
///
/// What the SDKs do with an error: a *temporary* error (and
/// [`TOKEN_EXPIRED`](Self::TOKEN_EXPIRED), after fetching a new token) is
/// retried with backoff; any other error is final for that operation (a
/// failed connect stops the client, a failed subscribe leaves the
/// subscription unsubscribed). Applications may use their own codes from 400
/// to 1999 (Centrifugo proxies pass them through).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// 100 "internal server error", temporary: something failed on the
    /// server; the client is not at fault and retries.
    pub const INTERNAL: Self = Self(100);
    /// 101 "unauthorized": the request needs credentials it did not have.
    pub const UNAUTHORIZED: Self = Self(101);
    /// 102 "unknown channel": the channel (namespace) does not exist.
    pub const UNKNOWN_CHANNEL: Self = Self(102);
    /// 103 "permission denied": access to the resource is not allowed.
    pub const PERMISSION_DENIED: Self = Self(103);
    /// 104 "method not found": the command's method does not exist.
    pub const METHOD_NOT_FOUND: Self = Self(104);
    /// 105 "already subscribed": the connection is already subscribed to the channel.
    pub const ALREADY_SUBSCRIBED: Self = Self(105);
    /// 106 "limit exceeded": some limit was exceeded (see the server log);
    /// rate limits use [`TOO_MANY_REQUESTS`](Self::TOO_MANY_REQUESTS).
    pub const LIMIT_EXCEEDED: Self = Self(106);
    /// 107 "bad request": the request is malformed; retrying makes no sense.
    pub const BAD_REQUEST: Self = Self(107);
    /// 108 "not available": the feature or resource is not enabled.
    pub const NOT_AVAILABLE: Self = Self(108);
    /// 109 "token expired": the connection or subscription token expired;
    /// the client drops it, fetches a new one and retries.
    pub const TOKEN_EXPIRED: Self = Self(109);
    /// 110 "expired": the connection expired (no token involved).
    pub const EXPIRED: Self = Self(110);
    /// 111 "too many requests", temporary: rejected by rate limiting; the
    /// client retries later.
    pub const TOO_MANY_REQUESTS: Self = Self(111);
    /// 112 "unrecoverable position": the stream no longer holds the requested
    /// range (expired, trimmed or wrong epoch).
    pub const UNRECOVERABLE_POSITION: Self = Self(112);
    /// 113 "concurrent pagination", temporary: a pagination request for the
    /// same channel is still in progress.
    pub const CONCURRENT_PAGINATION: Self = Self(113);

    const KNOWN: [(Self, &'static str, bool); 14] = [
        (Self::INTERNAL, "internal server error", true),
        (Self::UNAUTHORIZED, "unauthorized", false),
        (Self::UNKNOWN_CHANNEL, "unknown channel", false),
        (Self::PERMISSION_DENIED, "permission denied", false),
        (Self::METHOD_NOT_FOUND, "method not found", false),
        (Self::ALREADY_SUBSCRIBED, "already subscribed", false),
        (Self::LIMIT_EXCEEDED, "limit exceeded", false),
        (Self::BAD_REQUEST, "bad request", false),
        (Self::NOT_AVAILABLE, "not available", false),
        (Self::TOKEN_EXPIRED, "token expired", false),
        (Self::EXPIRED, "expired", false),
        (Self::TOO_MANY_REQUESTS, "too many requests", true),
        (
            Self::UNRECOVERABLE_POSITION,
            "unrecoverable position",
            false,
        ),
        (Self::CONCURRENT_PAGINATION, "concurrent pagination", true),
    ];

    fn known(self) -> Option<(&'static str, bool)> {
        Self::KNOWN
            .iter()
            .find(|(code, _, _)| *code == self)
            .map(|&(_, message, temporary)| (message, temporary))
    }

    /// The standard message for a built-in code, `None` for other codes.
    pub fn message(self) -> Option<&'static str> {
        self.known().map(|(message, _)| message)
    }

    /// Whether errors with this code are sent with `temporary: true`.
    pub fn is_temporary(self) -> bool {
        self.known().is_some_and(|(_, temporary)| temporary)
    }

    /// This code as an [`Error`] with the standard message and temporary flag.
    pub fn to_error(self) -> Error {
        let (message, temporary) = self.known().unwrap_or(("", false));
        Error {
            code: self.0,
            message: message.to_owned(),
            temporary,
        }
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.message() {
            Some(message) => write!(f, "ErrorCode({} {message:?})", self.0),
            None => write!(f, "ErrorCode({})", self.0),
        }
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Self {
        code.to_error()
    }
}

/// The code of a server-initiated disconnect.
///
/// Ranges (the SDKs decide from the code alone):
///
/// | codes | meaning | client reconnects |
/// |---|---|---|
/// | < 3000 | transport-level (WebSocket close codes) | yes, except 1009 (message too big) |
/// | 3000..=3499 | built-in, temporary | yes |
/// | 3500..=3999 | built-in, terminal | no |
/// | 4000..=4499 | application, temporary | yes |
/// | 4500..=4999 | application, terminal | no |
/// | >= 5000 | reserved | yes |
///
/// On WebSocket a disconnect travels as the close frame's code and reason,
/// see [`Disconnect::close_frame`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DisconnectCode(pub u32);

impl DisconnectCode {
    /// 3000 "connection closed", reconnect: the connection closed without a
    /// server advice (clean close or network loss). Describes a close for
    /// logs and metrics; Centrifuge never sends it in a close frame.
    pub const CONNECTION_CLOSED: Self = Self(3000);
    /// 3001 "shutdown", reconnect: the node is shutting down.
    pub const SHUTDOWN: Self = Self(3001);
    /// 3004 "internal server error", reconnect.
    pub const SERVER_ERROR: Self = Self(3004);
    /// 3005 "connection expired", reconnect: the connection's credentials expired.
    pub const EXPIRED: Self = Self(3005);
    /// 3006 "subscription expired", reconnect: a subscription's credentials expired.
    pub const SUBSCRIPTION_EXPIRED: Self = Self(3006);
    /// 3008 "slow", reconnect: the client does not read fast enough (its
    /// queue overflowed).
    pub const SLOW: Self = Self(3008);
    /// 3009 "write error", reconnect: writing to the connection failed.
    pub const WRITE_ERROR: Self = Self(3009);
    /// 3010 "insufficient state", reconnect: the server saw a gap in a
    /// channel's stream for this client; reconnecting recovers the missed
    /// publications.
    pub const INSUFFICIENT_STATE: Self = Self(3010);
    /// 3011 "force reconnect", reconnect: the server asked the client to reconnect.
    pub const FORCE_RECONNECT: Self = Self(3011);
    /// 3012 "no pong", reconnect: no pong arrived in time after a server ping.
    pub const NO_PONG: Self = Self(3012);
    /// 3013 "too many requests", reconnect: the client sent too many commands.
    pub const TOO_MANY_REQUESTS: Self = Self(3013);
    /// 3014 "state invalidated", reconnect: the client's cached token and
    /// state are no longer valid; the SDK drops its token and subscription
    /// state, then reconnects.
    pub const STATE_INVALIDATED: Self = Self(3014);
    /// 3500 "invalid token", no reconnect.
    pub const INVALID_TOKEN: Self = Self(3500);
    /// 3501 "bad request", no reconnect: malformed protocol frames or
    /// commands in the wrong order.
    pub const BAD_REQUEST: Self = Self(3501);
    /// 3502 "stale", no reconnect: the connection did not authenticate in
    /// time after dialing.
    pub const STALE: Self = Self(3502);
    /// 3503 "force disconnect", no reconnect: the server disconnected the
    /// client and asks it not to come back.
    pub const FORCE_NO_RECONNECT: Self = Self(3503);
    /// 3504 "connection limit", no reconnect: a connection limit (per user
    /// or other rule) was exceeded.
    pub const CONNECTION_LIMIT: Self = Self(3504);
    /// 3505 "channel limit", no reconnect: the connection's channel limit was exceeded.
    pub const CHANNEL_LIMIT: Self = Self(3505);
    /// 3506 "inappropriate protocol", no reconnect: the connection's encoding
    /// cannot carry the data, e.g. binary data for a JSON client.
    pub const INAPPROPRIATE_PROTOCOL: Self = Self(3506);
    /// 3507 "permission denied", no reconnect.
    pub const PERMISSION_DENIED: Self = Self(3507);
    /// 3508 "not available", no reconnect: e.g. an asynchronous message when
    /// the server handles none.
    pub const NOT_AVAILABLE: Self = Self(3508);
    /// 3509 "too many errors", no reconnect: the client caused too many errors.
    pub const TOO_MANY_ERRORS: Self = Self(3509);

    const KNOWN: [(Self, &'static str); 22] = [
        (Self::CONNECTION_CLOSED, "connection closed"),
        (Self::SHUTDOWN, "shutdown"),
        (Self::SERVER_ERROR, "internal server error"),
        (Self::EXPIRED, "connection expired"),
        (Self::SUBSCRIPTION_EXPIRED, "subscription expired"),
        (Self::SLOW, "slow"),
        (Self::WRITE_ERROR, "write error"),
        (Self::INSUFFICIENT_STATE, "insufficient state"),
        (Self::FORCE_RECONNECT, "force reconnect"),
        (Self::NO_PONG, "no pong"),
        (Self::TOO_MANY_REQUESTS, "too many requests"),
        (Self::STATE_INVALIDATED, "state invalidated"),
        (Self::INVALID_TOKEN, "invalid token"),
        (Self::BAD_REQUEST, "bad request"),
        (Self::STALE, "stale"),
        (Self::FORCE_NO_RECONNECT, "force disconnect"),
        (Self::CONNECTION_LIMIT, "connection limit"),
        (Self::CHANNEL_LIMIT, "channel limit"),
        (Self::INAPPROPRIATE_PROTOCOL, "inappropriate protocol"),
        (Self::PERMISSION_DENIED, "permission denied"),
        (Self::NOT_AVAILABLE, "not available"),
        (Self::TOO_MANY_ERRORS, "too many errors"),
    ];

    /// The standard reason for a built-in code, `None` for other codes.
    pub fn reason(self) -> Option<&'static str> {
        Self::KNOWN
            .iter()
            .find(|(code, _)| *code == self)
            .map(|&(_, reason)| reason)
    }

    /// Whether a client reconnects after this code (see the range table).
    pub const fn reconnect(self) -> bool {
        // 1009 (message too big) is the one transport code the JS SDK
        // treats as final.
        !matches!(self.0, 1009 | 3500..=3999 | 4500..=4999)
    }

    /// This code as a [`Disconnect`] with the standard reason (empty for
    /// unknown codes) and the reconnect flag of its range.
    pub fn to_disconnect(self) -> Disconnect {
        Disconnect::new(self, self.reason().unwrap_or(""))
    }
}

impl fmt::Debug for DisconnectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(reason) => write!(f, "DisconnectCode({} {reason:?})", self.0),
            None => write!(f, "DisconnectCode({})", self.0),
        }
    }
}

impl From<DisconnectCode> for Disconnect {
    fn from(code: DisconnectCode) -> Self {
        code.to_disconnect()
    }
}

/// The longest close reason a WebSocket close frame holds: 125 payload bytes
/// minus the 2-byte code.
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

impl Disconnect {
    /// A disconnect with `code` and `reason`; `reconnect` follows the code's
    /// range ([`DisconnectCode::reconnect`]), as the SDKs decide it.
    pub fn new(code: DisconnectCode, reason: impl Into<String>) -> Self {
        Self {
            code: code.0,
            reason: reason.into(),
            reconnect: code.reconnect(),
        }
    }

    /// The code as a [`DisconnectCode`].
    pub fn code(&self) -> DisconnectCode {
        DisconnectCode(self.code)
    }

    /// The WebSocket close code and reason that deliver this disconnect, as
    /// Centrifuge sends them: the disconnect code itself and the reason as
    /// plain text, cut at a character boundary to
    /// [`MAX_CLOSE_REASON_BYTES`].
    ///
    /// A WebSocket close code must lie in 3000..=4999 to carry an
    /// application meaning. Other codes are replaced by one that keeps the
    /// client's reaction: 1011 (internal error; the SDKs reconnect) when
    /// `reconnect` is set, else [`DisconnectCode::FORCE_NO_RECONNECT`].
    ///
    /// The JS SDK first tries to parse the reason as JSON (a protocol v1
    /// leftover), so a reason that is itself a JSON text (`"true"`, `"42"`)
    /// loses its reconnect meaning there; plain words are safe.
    pub fn close_frame(&self) -> (u16, &str) {
        let code = match u16::try_from(self.code) {
            Ok(code @ 3000..=4999) => code,
            _ if self.reconnect => 1011,
            _ => 3503,
        };
        (code, truncate_utf8(&self.reason, MAX_CLOSE_REASON_BYTES))
    }
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The code of an [`Unsubscribe`] push.
///
/// Codes below 2500 unsubscribe for good; codes from 2500 make the SDK
/// resubscribe. Applications use 2100..=2499 (final) and 2600..=2999
/// (resubscribe); the rest of 2000..=2999 is reserved.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnsubscribeCode(pub u32);

impl UnsubscribeCode {
    /// 2000 "server unsubscribe", final: the server unsubscribed the client.
    pub const SERVER: Self = Self(2000);
    /// 2500 "insufficient state", resubscribe: the server saw a gap in the
    /// stream; resubscribing recovers from the last known position.
    pub const INSUFFICIENT_STATE: Self = Self(2500);
    /// 2501 "subscription expired", resubscribe.
    pub const EXPIRED: Self = Self(2501);
    /// 2502 "state invalidated", resubscribe: the SDK drops the subscription
    /// token and cached state, then resubscribes.
    pub const STATE_INVALIDATED: Self = Self(2502);

    const KNOWN: [(Self, &'static str); 4] = [
        (Self::SERVER, "server unsubscribe"),
        (Self::INSUFFICIENT_STATE, "insufficient state"),
        (Self::EXPIRED, "subscription expired"),
        (Self::STATE_INVALIDATED, "state invalidated"),
    ];

    /// The standard reason for a built-in code, `None` for other codes.
    pub fn reason(self) -> Option<&'static str> {
        Self::KNOWN
            .iter()
            .find(|(code, _)| *code == self)
            .map(|&(_, reason)| reason)
    }

    /// Whether the SDK resubscribes after this code.
    pub const fn resubscribe(self) -> bool {
        self.0 >= 2500
    }

    /// This code as an [`Unsubscribe`] push body with the standard reason.
    pub fn to_unsubscribe(self) -> Unsubscribe {
        Unsubscribe {
            code: self.0,
            reason: self.reason().unwrap_or("").to_owned(),
        }
    }
}

impl fmt::Debug for UnsubscribeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(reason) => write!(f, "UnsubscribeCode({} {reason:?})", self.0),
            None => write!(f, "UnsubscribeCode({})", self.0),
        }
    }
}

impl From<UnsubscribeCode> for Unsubscribe {
    fn from(code: UnsubscribeCode) -> Self {
        code.to_unsubscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_follows_the_ranges() {
        for (code, reconnect) in [
            (1000, true),
            (1009, false),
            (3000, true),
            (3012, true),
            (3499, true),
            (3500, false),
            (3999, false),
            (4000, true),
            (4499, true),
            (4500, false),
            (4999, false),
            (5000, true),
        ] {
            assert_eq!(DisconnectCode(code).reconnect(), reconnect, "{code}");
        }
    }

    #[test]
    fn close_frame_keeps_in_range_codes_and_maps_the_rest() {
        let d = Disconnect::from(DisconnectCode::SHUTDOWN);
        assert_eq!(d.close_frame(), (3001, "shutdown"));
        assert!(d.reconnect);
        let d = Disconnect::from(DisconnectCode::INVALID_TOKEN);
        assert_eq!(d.close_frame(), (3500, "invalid token"));
        assert!(!d.reconnect);
        let d = Disconnect::new(DisconnectCode(4501), "banned");
        assert_eq!(d.close_frame(), (4501, "banned"));
        assert_eq!(
            Disconnect::new(DisconnectCode(5001), "x").close_frame().0,
            1011
        );
        assert_eq!(
            Disconnect::new(DisconnectCode(1009), "x").close_frame().0,
            3503
        );
        assert_eq!(
            Disconnect::new(DisconnectCode(u32::MAX), "x")
                .close_frame()
                .0,
            1011
        );
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let d = Disconnect::new(DisconnectCode::FORCE_RECONNECT, reason);
        let (_, cut) = d.close_frame();
        assert_eq!(cut.len(), 122);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn built_in_errors_carry_message_and_temporary_flag() {
        let e = Error::from(ErrorCode::TOO_MANY_REQUESTS);
        assert_eq!(
            (e.code, e.message.as_str(), e.temporary),
            (111, "too many requests", true)
        );
        let e = Error::from(ErrorCode::BAD_REQUEST);
        assert_eq!(
            (e.code, e.message.as_str(), e.temporary),
            (107, "bad request", false)
        );
        assert_eq!(ErrorCode(4000).message(), None);
        assert!(!ErrorCode(4000).is_temporary());
    }

    #[test]
    fn unsubscribe_codes() {
        assert!(!UnsubscribeCode::SERVER.resubscribe());
        assert!(UnsubscribeCode::INSUFFICIENT_STATE.resubscribe());
        let u = Unsubscribe::from(UnsubscribeCode::EXPIRED);
        assert_eq!((u.code, u.reason.as_str()), (2501, "subscription expired"));
    }
}
