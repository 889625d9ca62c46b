//! Payload bytes that travel as embedded JSON on JSON connections.
//!
//! Every `bytes` field of the protocol (publication `data`, `conn_info`, RPC
//! `data`, ...) is an opaque application payload. On a protobuf connection it
//! travels as protobuf `bytes`. On a JSON connection it is not base64 and not a
//! string: the payload *is* a JSON value, written verbatim into the message,
//! so `{"data":{"text":"hi"}}` carries the payload bytes `{"text":"hi"}`.
//!
//! The protocol structs keep these payloads as [`bytes::Bytes`] (cheap to
//! clone and share between subscribers) and route their serde impls through
//! this module with `#[serde(with = "raw_json")]`. The field type cannot be a
//! newtype because prost only accepts `Bytes` or `Vec<u8>` for `bytes` fields;
//! [`RawJson`] is the same behaviour as a standalone type for structs outside
//! this crate, such as the HTTP API's request bodies.
//!
//! Rules:
//!
//! - **Reading** takes any JSON value (object, array, string, number, `true`,
//!   `false`, `null`) and keeps its exact bytes, inner whitespace included.
//!   Only the whitespace around the value is dropped. An explicit `null` is
//!   kept as the four bytes `null`; an absent field is empty.
//! - **Writing** copies the bytes into the output after checking that they
//!   are one valid JSON value: bytes that are not (binary data published by a
//!   protobuf client, for example) fail the encode instead of corrupting the
//!   frame. Raw `\n` bytes (legal in JSON only as whitespace between tokens)
//!   are removed, since `\n` separates messages inside a JSON frame.
//!   Surrounding whitespace is dropped as on reading.
//!
//! Both directions need the `serde_json` (de)serializer: other serde formats
//! get an error or a serde_json-specific representation.

use std::fmt;

use bytes::Bytes;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// Serializes `bytes` as the JSON value they hold, verbatim (see the module
/// doc). Fails when the bytes are not exactly one valid JSON value.
///
/// Empty bytes serialize as `null`; the protocol structs skip empty fields, so
/// that case only arises when this function is called directly.
pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
    if bytes.is_empty() {
        return serializer.serialize_unit();
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| S::Error::custom("payload is not UTF-8, so it is not JSON"))?;
    if !text.as_bytes().contains(&b'\n') {
        let raw: &RawValue = serde_json::from_str(text).map_err(|e| invalid::<S>(&e))?;
        return raw.serialize(serializer);
    }
    // Newlines outside strings are whitespace in valid JSON and never occur
    // inside strings (those must be escaped), so dropping them keeps the value.
    let joined: String = text.chars().filter(|&c| c != '\n').collect();
    let raw: &RawValue = serde_json::from_str(&joined).map_err(|e| invalid::<S>(&e))?;
    raw.serialize(serializer)
}

fn invalid<S: Serializer>(err: &serde_json::Error) -> S::Error {
    S::Error::custom(format_args!("payload is not a single JSON value: {err}"))
}

/// Deserializes any JSON value into its exact bytes (see the module doc).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    let raw = Box::<RawValue>::deserialize(deserializer)
        .map_err(|e| D::Error::custom(format_args!("payload: {e}")))?;
    let text: Box<str> = raw.into();
    Ok(Bytes::from(text.into_string().into_bytes()))
}

/// Checks that `bytes` hold exactly one JSON value, as a JSON connection
/// needs for every payload. Lets the gateway reject a publish at the door
/// instead of failing later when the publication is encoded for JSON
/// subscribers.
pub fn validate(bytes: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<&RawValue>(bytes).map(|_| ())
}

/// An application payload that is embedded as raw JSON, for use in serde
/// structs outside the protocol types (the protocol types use [`Bytes`]
/// fields with this module's functions).
///
/// ```
/// use wshub_protocol::raw_json::RawJson;
///
/// #[derive(serde::Deserialize)]
/// struct PublishBody {
///     channel: String,
///     data: RawJson,
/// }
///
/// let body: PublishBody =
///     serde_json::from_str(r#"{"channel":"news","data":{"text":"hi"}}"#).unwrap();
/// assert_eq!(body.channel, "news");
/// assert_eq!(&body.data.0[..], br#"{"text":"hi"}"#);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct RawJson(pub Bytes);

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) => write!(f, "RawJson({text})"),
            Err(_) => write!(f, "RawJson({:?})", self.0),
        }
    }
}

impl From<Bytes> for RawJson {
    fn from(bytes: Bytes) -> Self {
        Self(bytes)
    }
}

impl From<RawJson> for Bytes {
    fn from(raw: RawJson) -> Self {
        raw.0
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(json: &str) -> String {
        let raw: RawJson = serde_json::from_str(json).unwrap();
        serde_json::to_string(&raw).unwrap()
    }

    #[test]
    fn every_kind_of_value_is_kept_verbatim() {
        for v in [
            r#"{"a":[1,2,{"b":null}]}"#,
            "[1, 2 ,3]",
            r#""a \"quoted\" \n string""#,
            "-12.5e3",
            "0",
            "null",
            "true",
            "false",
            "{ \"spaced\" : 1 }",
        ] {
            assert_eq!(round(v), v);
        }
    }

    #[test]
    fn surrounding_whitespace_is_dropped_inner_kept() {
        let raw: RawJson = serde_json::from_str(" \t{ \"a\" : 1 } ").unwrap();
        assert_eq!(&raw.0[..], b"{ \"a\" : 1 }");
    }

    #[test]
    fn writing_strips_raw_newlines() {
        let raw = RawJson(Bytes::from_static(b"{\n  \"a\": \"x\\ny\"\n}\n"));
        assert_eq!(serde_json::to_string(&raw).unwrap(), "{  \"a\": \"x\\ny\"}");
    }

    #[test]
    fn writing_rejects_bytes_that_are_not_one_json_value() {
        for bad in [&b"\xff\x00binary"[..], b"{", b"1 2", b"{\"a\":1}x", b"abc"] {
            let raw = RawJson(Bytes::copy_from_slice(bad));
            assert!(serde_json::to_string(&raw).is_err(), "{bad:?}");
            assert!(validate(bad).is_err());
        }
        assert!(validate(b" {\"a\":1} ").is_ok());
    }

    #[test]
    fn deeply_nested_payload_does_not_overflow_the_stack() {
        // serde_json skips raw values without recursion, so depth costs one
        // byte of heap per level, not a stack frame.
        let deep = "[".repeat(200_000) + &"]".repeat(200_000);
        let raw: RawJson = serde_json::from_str(&deep).unwrap();
        assert_eq!(raw.0.len(), deep.len());
        assert_eq!(serde_json::to_string(&raw).unwrap(), deep);
        let unclosed = "[".repeat(200_000);
        assert!(serde_json::from_str::<RawJson>(&unclosed).is_err());
    }
}
