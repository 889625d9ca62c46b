//! Claims of connection and subscription tokens: the wire form (serde) and
//! the verified result.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::AuthError;

/// What a verified connection token grants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ConnectClaims {
    /// `sub` (or the `user_id_claim`): the user id; empty = anonymous.
    pub user: String,
    /// When the connection expires (Unix seconds): `expire_at` when present
    /// (`0` = never), else `exp`. `None` = never.
    pub exp: Option<u64>,
    /// `info` (raw JSON) or the decoded `b64info` (raw bytes): shown to other
    /// clients in presence and join/leave.
    pub info: Option<Bytes>,
    /// `channels`: server-side subscriptions.
    pub channels: Vec<String>,
    /// `subs`: server-side subscriptions with options. When not empty,
    /// `channels` is ignored (as in Centrifugo); see
    /// [`ConnectClaims::server_side_subscriptions`].
    pub subs: BTreeMap<String, SubscribeOptions>,
    /// `meta` (raw JSON): server-side only, never sent to clients.
    pub meta: Option<Bytes>,
    /// `iat`, if present.
    pub iat: Option<i64>,
    /// `jti`, if present.
    pub jti: Option<String>,
}

impl ConnectClaims {
    /// The channels to subscribe on connect: the `subs` entries with their
    /// options, or else the `channels` with none.
    pub fn server_side_subscriptions(
        &self,
    ) -> Box<dyn Iterator<Item = (&str, Option<&SubscribeOptions>)> + '_> {
        if self.subs.is_empty() {
            Box::new(self.channels.iter().map(|c| (c.as_str(), None)))
        } else {
            Box::new(self.subs.iter().map(|(c, o)| (c.as_str(), Some(o))))
        }
    }
}

/// Per-subscription options from a `subs` entry or a subscription token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// `info` (raw JSON) or decoded `b64info`: channel-specific connection info.
    pub info: Option<Bytes>,
    /// `data` (raw JSON) or decoded `b64data`: sent to the client in the
    /// subscribe reply.
    pub data: Option<Bytes>,
    /// `override`: per-subscriber channel option overrides.
    pub overrides: SubscribeOverride,
}

/// The `override` object: `None` keeps the namespace's option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscribeOverride {
    /// `presence`.
    pub presence: Option<bool>,
    /// `join_leave`.
    pub join_leave: Option<bool>,
    /// `force_push_join_leave`.
    pub force_push_join_leave: Option<bool>,
    /// `force_recovery`.
    pub force_recovery: Option<bool>,
    /// `force_positioning`.
    pub force_positioning: Option<bool>,
}

/// What a verified subscription token grants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SubscribeClaims {
    /// `sub`: must equal the connection's user (checked).
    pub user: String,
    /// `channel`: must equal the channel subscribed (checked).
    pub channel: String,
    /// `client`: when set, the token is valid for that client id only (checked).
    pub client: Option<String>,
    /// When the subscription expires (Unix seconds): `expire_at` when present
    /// (`0` = never), else `exp`. `None` = never.
    pub exp: Option<u64>,
    /// `info`, `data`, `override`.
    pub options: SubscribeOptions,
    /// `iat`, if present.
    pub iat: Option<i64>,
    /// `jti`, if present.
    pub jti: Option<String>,
}

// ---- wire form ----

/// Every claim of both token kinds (no `#[serde(flatten)]`: raw JSON values
/// do not survive it). Connection tokens ignore `client`, `data`, `b64data`
/// and `override`; subscription tokens ignore `channels`, `subs` and `meta`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct RawClaims {
    pub sub: Option<String>,
    pub exp: Option<NumericDate>,
    pub nbf: Option<NumericDate>,
    pub iat: Option<NumericDate>,
    pub jti: Option<String>,
    pub aud: Option<Audience>,
    pub iss: Option<String>,
    pub expire_at: Option<NumericDate>,
    pub channel: Option<String>,
    pub client: Option<String>,
    pub info: Option<Box<RawValue>>,
    pub b64info: Option<String>,
    pub data: Option<Box<RawValue>>,
    pub b64data: Option<String>,
    #[serde(rename = "override")]
    pub overrides: Option<RawOverride>,
    pub channels: Option<Vec<String>>,
    pub subs: Option<BTreeMap<String, RawSubscribeOptions>>,
    pub meta: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct RawSubscribeOptions {
    pub info: Option<Box<RawValue>>,
    pub b64info: Option<String>,
    pub data: Option<Box<RawValue>>,
    pub b64data: Option<String>,
    #[serde(rename = "override")]
    pub overrides: Option<RawOverride>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct RawOverride {
    presence: Option<BoolValue>,
    join_leave: Option<BoolValue>,
    force_push_join_leave: Option<BoolValue>,
    force_recovery: Option<BoolValue>,
    force_positioning: Option<BoolValue>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct BoolValue {
    value: bool,
}

impl RawSubscribeOptions {
    pub(crate) fn into_options(self) -> Result<SubscribeOptions, AuthError> {
        let o = self.overrides.unwrap_or_default();
        let v = |b: Option<BoolValue>| b.map(|b| b.value);
        Ok(SubscribeOptions {
            info: raw_or_b64(self.info, self.b64info, "b64info")?,
            data: raw_or_b64(self.data, self.b64data, "b64data")?,
            overrides: SubscribeOverride {
                presence: v(o.presence),
                join_leave: v(o.join_leave),
                force_push_join_leave: v(o.force_push_join_leave),
                force_recovery: v(o.force_recovery),
                force_positioning: v(o.force_positioning),
            },
        })
    }
}

/// `b64*` wins over the raw JSON field when non-empty (as in Centrifugo).
pub(crate) fn raw_or_b64(
    raw: Option<Box<RawValue>>,
    b64: Option<String>,
    name: &str,
) -> Result<Option<Bytes>, AuthError> {
    match b64.filter(|s| !s.is_empty()) {
        Some(s) => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(|b| Some(Bytes::from(b)))
            .map_err(|e| AuthError::invalid(format!("{name} is not base64: {e}"))),
        None => Ok(raw.map(|r| Bytes::copy_from_slice(r.get().as_bytes()))),
    }
}

/// `exp` semantics shared by both token kinds: `expire_at` when present
/// (`<= 0` = never), else `exp`.
pub(crate) fn effective_expiry(reg: &RawClaims) -> Option<u64> {
    match reg.expire_at {
        Some(NumericDate(at)) => u64::try_from(at).ok().filter(|&t| t > 0),
        None => reg.exp.and_then(|NumericDate(t)| u64::try_from(t).ok()),
    }
}

/// A JWT NumericDate: seconds, integer or fractional (truncated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NumericDate(pub i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                Ok(NumericDate(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if v.is_finite() {
                    // Saturating float-to-int conversion, fraction dropped.
                    Ok(NumericDate(v as i64))
                } else {
                    Err(E::custom("not a finite number"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `aud`: one string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Audience(pub Vec<String>);

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => Audience(vec![s]),
            OneOrMany::Many(v) => Audience(v),
        })
    }
}
