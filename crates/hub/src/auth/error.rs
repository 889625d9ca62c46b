//! Errors of token verification, verifier construction and token generation.

/// Why a token was refused.
///
/// How the gateway answers (Centrifugo v6 semantics; codes from
/// `centrifugal.dev/docs/server/codes`):
///
/// | variant | connect | subscribe | sub refresh |
/// |---|---|---|---|
/// | [`Expired`](AuthError::Expired) | error 109 token expired | error 109 | reply `expired: true` |
/// | [`InvalidToken`](AuthError::InvalidToken), [`BadAlgorithm`](AuthError::BadAlgorithm), [`UnknownKey`](AuthError::UnknownKey) | disconnect 3500 invalid token | error 103 permission denied | disconnect 3500 |
/// | [`ChannelMismatch`](AuthError::ChannelMismatch), [`UserMismatch`](AuthError::UserMismatch), [`ClientMismatch`](AuthError::ClientMismatch) | — | disconnect 3500 | disconnect 3500 |
/// | [`KeysUnavailable`](AuthError::KeysUnavailable) | error 100 internal (the client retries) | error 100 | error 100 |
///
/// `KeysUnavailable` (the JWKS endpoint could not be reached) is a wshub
/// choice: Centrifugo folds it into "invalid token", which makes SDKs give up
/// on a server-side outage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Malformed, badly signed, wrong audience or issuer, bad claims.
    #[error("invalid token: {reason}")]
    InvalidToken {
        /// Details for the server log (never sent to the client).
        reason: String,
    },
    /// `exp` is in the past (or `nbf` in the future).
    #[error("token expired")]
    Expired,
    /// The `alg` header is `none`, unsupported, or has no key configured
    /// for its family (an HS256 token when only an RSA key is set).
    #[error("invalid token: algorithm {alg:?} not accepted: {reason}")]
    BadAlgorithm {
        /// The `alg` header.
        alg: String,
        /// Why.
        reason: &'static str,
    },
    /// The JWKS has no key with the token's `kid`.
    #[error("invalid token: no key with kid {kid:?} in the JWKS")]
    UnknownKey {
        /// The `kid` header.
        kid: String,
    },
    /// The JWKS could not be fetched and no cached key matches.
    #[error("token keys unavailable: {reason}")]
    KeysUnavailable {
        /// Why the fetch failed.
        reason: String,
    },
    /// A subscription token for another channel.
    #[error("subscription token is for channel {token_channel:?}, not {channel:?}")]
    ChannelMismatch {
        /// The `channel` claim.
        token_channel: String,
        /// The channel subscribed.
        channel: String,
    },
    /// A subscription token for another user than the connection's.
    #[error("subscription token is for user {token_user:?}, not {user:?}")]
    UserMismatch {
        /// The token's user.
        token_user: String,
        /// The connection's user.
        user: String,
    },
    /// A subscription token bound (`client` claim) to another connection.
    #[error("subscription token is bound to another client")]
    ClientMismatch,
}

impl AuthError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        AuthError::InvalidToken {
            reason: reason.into(),
        }
    }

    /// True for [`AuthError::Expired`]: the client should get a fresh token.
    pub fn is_expired(&self) -> bool {
        matches!(self, AuthError::Expired)
    }

    /// True when the server, not the token, is at fault and a retry may work.
    pub fn is_temporary(&self) -> bool {
        matches!(self, AuthError::KeysUnavailable { .. })
    }
}

/// A `client.token` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client.token.{key}: {message}")]
pub struct VerifierError {
    /// The key under `client.token` (or `client.subscription_token`).
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

/// A token could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot generate token: {0}")]
pub struct GenerateError(pub(crate) String);
