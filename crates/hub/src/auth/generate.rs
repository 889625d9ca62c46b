//! Token generation (HS256), for `wshub gen-token` and tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::GenerateError;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    channels: &'a [String],
}

fn sign(secret: &str, claims: &Claims<'_>) -> Result<String, GenerateError> {
    if secret.is_empty() {
        return Err(GenerateError("empty HMAC secret".into()));
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| GenerateError(e.to_string()))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An HS256 connection token for `user` (`""` = anonymous), expiring after
/// `ttl` (`None` = never), with optional `info` and server-side `channels`.
///
/// ```
/// let t = wshub_hub::auth::generate_connection_token(
///     "secret", "42", Some(std::time::Duration::from_secs(3600)), None, &[]).unwrap();
/// assert_eq!(t.split('.').count(), 3);
/// ```
pub fn generate_connection_token(
    secret: &str,
    user: &str,
    ttl: Option<Duration>,
    info: Option<&serde_json::Value>,
    channels: &[String],
) -> Result<String, GenerateError> {
    let iat = now();
    sign(
        secret,
        &Claims {
            sub: user,
            exp: ttl.map(|t| iat.saturating_add(t.as_secs())),
            iat,
            channel: None,
            info,
            channels,
        },
    )
}

/// An HS256 subscription token for `user` and `channel`, expiring after
/// `ttl` (`None` = never), with optional channel `info`.
pub fn generate_subscription_token(
    secret: &str,
    user: &str,
    channel: &str,
    ttl: Option<Duration>,
    info: Option<&serde_json::Value>,
) -> Result<String, GenerateError> {
    if channel.is_empty() {
        return Err(GenerateError("empty channel".into()));
    }
    let iat = now();
    sign(
        secret,
        &Claims {
            sub: user,
            exp: ttl.map(|t| iat.saturating_add(t.as_secs())),
            iat,
            channel: Some(channel),
            info,
            channels: &[],
        },
    )
}
