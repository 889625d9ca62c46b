//! The WebSocket messages of the Pusher Channels protocol 7.
//!
//! Every message is a JSON text frame holding an object
//! `{"event": string, "channel"?: string, "data"?: any}`. [`parse`] reads what
//! a client sends: the `pusher:` events (`ping`, `pong`, `subscribe`,
//! `unsubscribe`, `signin`) and `client-` events, which carry a top-level
//! `channel` and any `data`. The encoders write what the server sends. Where
//! Pusher sends `data` as a string holding JSON (`connection_established`,
//! `subscription_succeeded`, `member_added`, `member_removed`) so do they;
//! elsewhere `data` is an object, or for events exactly the JSON given.
//!
//! Parsing never recurses into `data`: values kept raw are checked as JSON
//! by serde_json without recursion, so nesting depth costs no stack.

use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// The longest presence `user_id`, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;

/// A message from a client.
#[derive(Debug)]
pub enum Incoming {
    /// `pusher:ping`: answer with [`pong`].
    Ping,
    /// `pusher:pong`, the answer to our [`ping`].
    Pong,
    /// `pusher:subscribe`.
    Subscribe {
        /// The channel to join.
        channel: String,
        /// `key:signature`, for private, encrypted and presence channels.
        auth: Option<String>,
        /// For presence channels: the signed JSON text of
        /// `{"user_id": …, "user_info": …}` (see [`parse_channel_data`]).
        channel_data: Option<String>,
    },
    /// `pusher:unsubscribe`.
    Unsubscribe {
        /// The channel to leave.
        channel: String,
    },
    /// `pusher:signin`, user authentication.
    Signin {
        /// `key:signature` over the socket id and `user_data`.
        auth: String,
        /// The signed JSON text describing the user.
        user_data: String,
    },
    /// A `client-` event, to relay to the channel's other subscribers.
    ClientEvent {
        /// The event name, starting with `client-`.
        event: String,
        /// The channel to publish on.
        channel: String,
        /// The data as sent (`null` when absent).
        data: Box<RawValue>,
    },
    /// Another `pusher:` event, which the caller ignores.
    Other {
        /// The event name.
        event: String,
    },
}

/// Why a client's frame is not a message this protocol accepts.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The frame is not UTF-8.
    #[error("the frame is not UTF-8 text")]
    NotUtf8,
    /// The frame is not JSON (or has a key twice).
    #[error("invalid JSON: {0}")]
    NotJson(serde_json::Error),
    /// The frame is JSON but not an object.
    #[error("the message is not a JSON object")]
    NotObject,
    /// The object has no `event`.
    #[error("the message has no \"event\"")]
    MissingEvent,
    /// A field the message needs is absent or null.
    #[error("{within} needs \"{field}\"")]
    MissingField {
        /// What needs it, such as `pusher:subscribe`.
        within: &'static str,
        /// The field, such as `data.channel`.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("\"{field}\" must be {expected}")]
    WrongType {
        /// The field, such as `channel` or `data.auth`.
        field: &'static str,
        /// What it must be, such as `a string`.
        expected: &'static str,
    },
    /// The event is neither a `pusher:` nor a `client-` event.
    #[error("event {0:?} is neither a pusher: event nor a client- event")]
    UnknownEvent(String),
    /// A presence `user_id` is empty or too long (its length in bytes).
    #[error("user_id must be 1 to {MAX_USER_ID_LEN} bytes long, not {0}")]
    UserIdLength(usize),
}

/// The top-level fields, kept raw until the event says what they must be.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    channel: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// The fields of the `pusher:` events' `data` objects.
#[derive(Deserialize)]
struct DataFields<'a> {
    #[serde(borrow)]
    channel: Option<&'a RawValue>,
    #[serde(borrow)]
    auth: Option<&'a RawValue>,
    #[serde(borrow)]
    channel_data: Option<&'a RawValue>,
    #[serde(borrow)]
    user_data: Option<&'a RawValue>,
}

/// `text` as the object `T`, refusing other JSON values (which serde would
/// otherwise take as a struct's fields in order).
fn object<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, WireError> {
    if !text.trim_start().starts_with('{') {
        return Err(WireError::NotObject);
    }
    serde_json::from_str(text).map_err(WireError::NotJson)
}

fn first_byte(raw: &RawValue) -> Option<u8> {
    raw.get().bytes().next()
}

fn string(raw: &RawValue, field: &'static str) -> Result<String, WireError> {
    serde_json::from_str(raw.get()).map_err(|_| WireError::WrongType {
        field,
        expected: "a string",
    })
}

fn required(
    raw: Option<&RawValue>,
    within: &'static str,
    field: &'static str,
) -> Result<String, WireError> {
    string(raw.ok_or(WireError::MissingField { within, field })?, field)
}

fn optional(raw: Option<&RawValue>, field: &'static str) -> Result<Option<String>, WireError> {
    raw.map(|raw| string(raw, field)).transpose()
}

/// Runs `f` on `data`'s fields. `data` is an object, or leniently a string
/// holding the JSON text of one.
fn with_data<T>(
    within: &'static str,
    data: Option<&RawValue>,
    f: impl FnOnce(&DataFields<'_>) -> Result<T, WireError>,
) -> Result<T, WireError> {
    let data = data.ok_or(WireError::MissingField {
        within,
        field: "data",
    })?;
    let wrong = || WireError::WrongType {
        field: "data",
        expected: "an object, or a string holding one",
    };
    match first_byte(data) {
        Some(b'{') => f(&object(data.get())?),
        Some(b'"') => {
            let text = string(data, "data")?;
            let fields = object(&text).map_err(|e| match e {
                WireError::NotObject => wrong(),
                e => e,
            })?;
            f(&fields)
        }
        _ => Err(wrong()),
    }
}

/// Reads one frame from a client.
pub fn parse(frame: &[u8]) -> Result<Incoming, WireError> {
    let text = std::str::from_utf8(frame).map_err(|_| WireError::NotUtf8)?;
    let envelope: Envelope<'_> = object(text)?;
    let event = string(envelope.event.ok_or(WireError::MissingEvent)?, "event")?;
    match event.as_str() {
        "pusher:ping" => Ok(Incoming::Ping),
        "pusher:pong" => Ok(Incoming::Pong),
        "pusher:subscribe" => with_data("pusher:subscribe", envelope.data, |d| {
            Ok(Incoming::Subscribe {
                channel: required(d.channel, "pusher:subscribe", "data.channel")?,
                auth: optional(d.auth, "data.auth")?,
                channel_data: d
                    .channel_data
                    .map(|raw| string_or_object(raw, "data.channel_data"))
                    .transpose()?,
            })
        }),
        "pusher:unsubscribe" => with_data("pusher:unsubscribe", envelope.data, |d| {
            Ok(Incoming::Unsubscribe {
                channel: required(d.channel, "pusher:unsubscribe", "data.channel")?,
            })
        }),
        "pusher:signin" => with_data("pusher:signin", envelope.data, |d| {
            Ok(Incoming::Signin {
                auth: required(d.auth, "pusher:signin", "data.auth")?,
                user_data: required(d.user_data, "pusher:signin", "data.user_data")?,
            })
        }),
        name if name.starts_with("pusher:") => Ok(Incoming::Other { event }),
        name if name.starts_with("client-") => Ok(Incoming::ClientEvent {
            channel: required(envelope.channel, "a client event", "channel")?,
            data: envelope.data.unwrap_or(RawValue::NULL).to_owned(),
            event,
        }),
        _ => Err(WireError::UnknownEvent(event)),
    }
}

/// A string's value, or an object's JSON text as sent.
fn string_or_object(raw: &RawValue, field: &'static str) -> Result<String, WireError> {
    match first_byte(raw) {
        Some(b'"') => string(raw, field),
        Some(b'{') => Ok(raw.get().to_owned()),
        _ => Err(WireError::WrongType {
            field,
            expected: "a string or an object",
        }),
    }
}

/// A presence member as its `channel_data` describes it.
#[derive(Debug)]
pub struct ChannelData {
    /// The user's id (a number given is kept as its JSON text).
    pub user_id: String,
    /// What the app says about the user, as sent (`None` when absent or null).
    pub user_info: Option<Box<RawValue>>,
}

/// Reads presence `channel_data`: `{"user_id": string or number,
/// "user_info"?: any}`, with a `user_id` of 1 to [`MAX_USER_ID_LEN`] bytes.
pub fn parse_channel_data(s: &str) -> Result<ChannelData, WireError> {
    #[derive(Deserialize)]
    struct Fields<'a> {
        #[serde(borrow)]
        user_id: Option<&'a RawValue>,
        #[serde(borrow)]
        user_info: Option<&'a RawValue>,
    }
    let fields: Fields<'_> = object(s).map_err(|e| match e {
        WireError::NotObject => WireError::WrongType {
            field: "channel_data",
            expected: "an object",
        },
        e => e,
    })?;
    let raw = fields.user_id.ok_or(WireError::MissingField {
        within: "channel_data",
        field: "user_id",
    })?;
    let user_id = match first_byte(raw) {
        Some(b'"') => string(raw, "user_id")?,
        Some(b'-' | b'0'..=b'9') => raw.get().to_owned(),
        _ => {
            return Err(WireError::WrongType {
                field: "user_id",
                expected: "a string or a number",
            })
        }
    };
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN {
        return Err(WireError::UserIdLength(user_id.len()));
    }
    Ok(ChannelData {
        user_id,
        user_info: fields.user_info.map(ToOwned::to_owned),
    })
}

/// The members of a presence channel, as `subscription_succeeded` lists
/// them: `(user_id, user_info)`, one per user, in a stable order.
#[derive(Debug, Clone, Default)]
pub struct Presence {
    /// `(user_id, user_info)` of each member.
    pub members: Vec<(String, Option<Box<RawValue>>)>,
}

/// An outbound message; absent fields are left out.
#[derive(Serialize)]
struct Frame<'a, D> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

/// `value` as compact JSON. Serializing strings, numbers, raw JSON and the
/// plain structs here cannot fail (serde_json fails only on maps with
/// non-string keys and on custom impls that report errors).
fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn frame<D: Serialize>(
    event: &str,
    channel: Option<&str>,
    data: Option<D>,
    user_id: Option<&str>,
) -> Bytes {
    Bytes::from(to_json(&Frame {
        event,
        channel,
        data,
        user_id,
    }))
}

/// `pusher:connection_established`, the first message on a connection; its
/// `data` is a string holding `{"socket_id":…,"activity_timeout":…}`.
pub fn connection_established(socket_id: &str, activity_timeout_secs: u64) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        socket_id: &'a str,
        activity_timeout: u64,
    }
    let data = to_json(&Data {
        socket_id,
        activity_timeout: activity_timeout_secs,
    });
    frame("pusher:connection_established", None, Some(data), None)
}

/// `pusher:error` with a close code (such as 4001) or none.
pub fn error(code: Option<u16>, message: &str) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        code: Option<u16>,
        message: &'a str,
    }
    frame("pusher:error", None, Some(Data { code, message }), None)
}

/// `pusher:ping`.
pub fn ping() -> Bytes {
    Bytes::from_static(br#"{"event":"pusher:ping","data":{}}"#)
}

/// `pusher:pong`.
pub fn pong() -> Bytes {
    Bytes::from_static(br#"{"event":"pusher:pong","data":{}}"#)
}

/// `pusher_internal:subscription_succeeded`; on a presence channel its
/// data string lists the members.
pub fn subscription_succeeded(channel: &str, presence: Option<&Presence>) -> Bytes {
    struct Ids<'a>(&'a [(String, Option<Box<RawValue>>)]);
    impl Serialize for Ids<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().map(|(id, _)| id))
        }
    }
    struct Hash<'a>(&'a [(String, Option<Box<RawValue>>)]);
    impl Serialize for Hash<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(id, info)| (id, info)))
        }
    }
    #[derive(Serialize)]
    struct Members<'a> {
        ids: Ids<'a>,
        hash: Hash<'a>,
        count: usize,
    }
    #[derive(Serialize)]
    struct Data<'a> {
        presence: Members<'a>,
    }
    let data = match presence {
        None => "{}".to_owned(),
        Some(p) => to_json(&Data {
            presence: Members {
                ids: Ids(&p.members),
                hash: Hash(&p.members),
                count: p.members.len(),
            },
        }),
    };
    frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        Some(data),
        None,
    )
}

/// `pusher:subscription_error`, such as kind `AuthError` with status 401.
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        error: &'a str,
        status: u16,
    }
    frame(
        "pusher:subscription_error",
        Some(channel),
        Some(Data {
            kind,
            error,
            status,
        }),
        None,
    )
}

/// `pusher_internal:member_added`; its data string carries the user's id
/// and info (`null` when none).
pub fn member_added(channel: &str, user_id: &str, user_info: Option<&RawValue>) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        user_id: &'a str,
        user_info: Option<&'a RawValue>,
    }
    let data = to_json(&Data { user_id, user_info });
    frame(
        "pusher_internal:member_added",
        Some(channel),
        Some(data),
        None,
    )
}

/// `pusher_internal:member_removed`; its data string carries the user's id.
pub fn member_removed(channel: &str, user_id: &str) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        user_id: &'a str,
    }
    let data = to_json(&Data { user_id });
    frame(
        "pusher_internal:member_removed",
        Some(channel),
        Some(data),
        None,
    )
}

/// An app or client event on `channel`, with `data` exactly as given (the
/// HTTP API's data is a JSON string; a client event's any JSON value) and,
/// for client events on presence channels, the sender's `user_id`.
pub fn event(channel: &str, event: &str, data: &RawValue, user_id: Option<&str>) -> Bytes {
    frame(event, Some(channel), Some(data), user_id)
}

/// `pusher:cache_miss`: a cache channel had no event to replay.
pub fn cache_miss(channel: &str) -> Bytes {
    frame::<()>("pusher:cache_miss", Some(channel), None, None)
}

/// `pusher:signin_success`, echoing the signed `user_data`.
pub fn signin_success(user_data: &str) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        user_data: &'a str,
    }
    frame(
        "pusher:signin_success",
        None,
        Some(Data { user_data }),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn value(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    /// The JSON held by a `data` string.
    fn inner(v: &Value) -> Value {
        serde_json::from_str(v["data"].as_str().unwrap()).unwrap()
    }

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn parses_ping_and_pong() {
        for frame in [
            r#"{"event":"pusher:ping","data":{}}"#,
            r#"{"event":"pusher:ping"}"#,
            r#" {"data":"x","event":"pusher:ping","extra":[1,{"a":2}]} "#,
        ] {
            assert!(
                matches!(parse(frame.as_bytes()), Ok(Incoming::Ping)),
                "{frame}"
            );
        }
        assert!(matches!(
            parse(br#"{"event":"pusher:pong","data":null}"#),
            Ok(Incoming::Pong)
        ));
    }

    #[test]
    fn parses_subscribe() {
        // As pusher-js sends it, with data an object.
        let frame = br#"{"event":"pusher:subscribe","data":{"auth":"k:ab","channel_data":"{\"user_id\":\"1\"}","channel":"presence-a"}}"#;
        match parse(frame).unwrap() {
            Incoming::Subscribe {
                channel,
                auth,
                channel_data,
            } => {
                assert_eq!(channel, "presence-a");
                assert_eq!(auth.as_deref(), Some("k:ab"));
                assert_eq!(channel_data.as_deref(), Some(r#"{"user_id":"1"}"#));
            }
            other => panic!("{other:?}"),
        }
        // Public, without auth (absent or null).
        for frame in [
            r#"{"event":"pusher:subscribe","data":{"channel":"my-channel"}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"my-channel","auth":null,"channel_data":null}}"#,
            // data as a string holding the object
            r#"{"event":"pusher:subscribe","data":"{\"channel\":\"my-channel\"}"}"#,
        ] {
            match parse(frame.as_bytes()).unwrap() {
                Incoming::Subscribe {
                    channel,
                    auth: None,
                    channel_data: None,
                } => {
                    assert_eq!(channel, "my-channel")
                }
                other => panic!("{frame}: {other:?}"),
            }
        }
        // channel_data as an object keeps its JSON text.
        let frame = br#"{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:1","channel_data":{"user_id":7, "user_info":{"n":"\u00e9"}}}}"#;
        match parse(frame).unwrap() {
            Incoming::Subscribe {
                channel_data: Some(cd),
                ..
            } => {
                assert_eq!(cd, r#"{"user_id":7, "user_info":{"n":"\u00e9"}}"#)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_unsubscribe_signin_and_others() {
        match parse(br#"{"event":"pusher:unsubscribe","data":{"channel":"a\"b"}}"#).unwrap() {
            Incoming::Unsubscribe { channel } => assert_eq!(channel, "a\"b"),
            other => panic!("{other:?}"),
        }
        let frame =
            br#"{"event":"pusher:signin","data":{"auth":"k:00","user_data":"{\"id\":\"1\"}"}}"#;
        match parse(frame).unwrap() {
            Incoming::Signin { auth, user_data } => {
                assert_eq!(auth, "k:00");
                assert_eq!(user_data, r#"{"id":"1"}"#);
            }
            other => panic!("{other:?}"),
        }
        match parse(br#"{"event":"pusher:future_thing","data":5}"#).unwrap() {
            Incoming::Other { event } => assert_eq!(event, "pusher:future_thing"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_client_events() {
        for (data, want) in [
            (r#","data":{"a":[1, 2]}"#, r#"{"a":[1, 2]}"#),
            (r#","data":"text""#, r#""text""#),
            (r#","data":3.5"#, "3.5"),
            (r#","data":null"#, "null"),
            ("", "null"),
        ] {
            let frame = format!(r#"{{"event":"client-typing","channel":"private-c"{data}}}"#);
            match parse(frame.as_bytes()).unwrap() {
                Incoming::ClientEvent {
                    event,
                    channel,
                    data,
                } => {
                    assert_eq!(event, "client-typing");
                    assert_eq!(channel, "private-c");
                    assert_eq!(data.get(), want);
                }
                other => panic!("{frame}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_malformed_frames() {
        let cases: &[(&[u8], &str)] = &[
            (b"\xff\xfe{}", "NotUtf8"),
            (b"", "NotObject"),
            (b"   ", "NotObject"),
            (b"{", "NotJson"),
            (b"{\"event\":\"pusher:ping\"} x", "NotJson"),
            (b"{\"event\":\"pusher:ping\",}", "NotJson"),
            (b"{\"event\":\"pusher:ping\",\"event\":\"pusher:pong\"}", "NotJson"),
            (b"[\"pusher:ping\"]", "NotObject"),
            (b"\"pusher:ping\"", "NotObject"),
            (b"42", "NotObject"),
            (b"null", "NotObject"),
            (b"{}", "MissingEvent"),
            (b"{\"event\":null}", "MissingEvent"),
            (b"{\"event\":5}", "WrongType"),
            (b"{\"event\":[\"pusher:ping\"]}", "WrongType"),
            (b"{\"event\":\"message\"}", "UnknownEvent"),
            (b"{\"event\":\"\"}", "UnknownEvent"),
            (b"{\"event\":\"pusher_internal:member_added\"}", "UnknownEvent"),
            (b"{\"event\":\"pusher:subscribe\"}", "MissingField"),
            (b"{\"event\":\"pusher:subscribe\",\"data\":{}}", "MissingField"),
            (b"{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":5}}", "WrongType"),
            (b"{\"event\":\"pusher:subscribe\",\"data\":[\"c\"]}", "WrongType"),
            (b"{\"event\":\"pusher:subscribe\",\"data\":\"[1]\"}", "WrongType"),
            (b"{\"event\":\"pusher:subscribe\",\"data\":\"{\"}", "NotJson"),
            (b"{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"c\",\"auth\":1}}", "WrongType"),
            (
                b"{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"c\",\"channel_data\":[]}}",
                "WrongType",
            ),
            (b"{\"event\":\"pusher:unsubscribe\",\"data\":{\"channel\":{}}}", "WrongType"),
            (b"{\"event\":\"pusher:signin\",\"data\":{\"auth\":\"k:1\"}}", "MissingField"),
            (b"{\"event\":\"pusher:signin\",\"data\":{\"user_data\":\"{}\"}}", "MissingField"),
            (b"{\"event\":\"client-x\",\"data\":{}}", "MissingField"),
            (b"{\"event\":\"client-x\",\"channel\":5}", "WrongType"),
            (b"{\"event\":\"client-x\",\"channel\":\"c\",\"data\":}", "NotJson"),
            // A lone surrogate escape is JSON's grammar but no string.
            (b"{\"event\":\"\\ud800\"}", "WrongType"),
            (b"{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"\\udc00\"}}", "WrongType"),
            // ... which raw data keeps as it is, as JSON.parse would.
            (b"{\"event\":\"client-x\",\"channel\":\"c\",\"data\":\"\\ud800\"}", "Ok"),
        ];
        for &(frame, want) in cases {
            let got = parse(frame);
            let name = match &got {
                Err(WireError::NotUtf8) => "NotUtf8",
                Err(WireError::NotJson(_)) => "NotJson",
                Err(WireError::NotObject) => "NotObject",
                Err(WireError::MissingEvent) => "MissingEvent",
                Err(WireError::MissingField { .. }) => "MissingField",
                Err(WireError::WrongType { .. }) => "WrongType",
                Err(WireError::UnknownEvent(_)) => "UnknownEvent",
                Err(WireError::UserIdLength(_)) => "UserIdLength",
                Ok(_) => "Ok",
            };
            assert_eq!(name, want, "{}: {got:?}", String::from_utf8_lossy(frame));
        }
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let msg = |f: &[u8]| parse(f).unwrap_err().to_string();
        assert_eq!(
            msg(br#"{"event":"pusher:subscribe","data":{"channel":5}}"#),
            "\"data.channel\" must be a string"
        );
        assert_eq!(
            msg(br#"{"event":"pusher:subscribe","data":{}}"#),
            "pusher:subscribe needs \"data.channel\""
        );
        assert_eq!(
            msg(br#"{"event":"message"}"#),
            "event \"message\" is neither a pusher: event nor a client- event"
        );
        assert!(msg(br#"{"event":1,"event":2}"#).starts_with("invalid JSON: duplicate field"));
    }

    #[test]
    fn deep_nesting_costs_no_stack() {
        const DEPTH: usize = 100_000;
        let open = "[".repeat(DEPTH);
        let close = "]".repeat(DEPTH);
        assert!(matches!(parse(open.as_bytes()), Err(WireError::NotObject)));
        assert!(matches!(
            parse(format!("{open}{close}").as_bytes()),
            Err(WireError::NotObject)
        ));
        let deep_obj = "{\"a\":".repeat(DEPTH);
        assert!(matches!(
            parse(deep_obj.as_bytes()),
            Err(WireError::NotJson(_))
        ));
        // Unterminated inside data.
        let frame = format!(r#"{{"event":"client-x","channel":"c","data":{open}"#);
        assert!(matches!(
            parse(frame.as_bytes()),
            Err(WireError::NotJson(_))
        ));
        // Balanced: valid JSON, relayed raw, checked without recursion.
        let frame = format!(r#"{{"event":"client-x","channel":"c","data":{open}{close}}}"#);
        match parse(frame.as_bytes()) {
            Ok(Incoming::ClientEvent { data, .. }) => assert_eq!(data.get().len(), 2 * DEPTH),
            other => panic!("{:?}", other.map(|_| ())),
        }
        let frame = format!(r#"{{"x":{open}{close},"event":"pusher:ping"}}"#);
        assert!(matches!(parse(frame.as_bytes()), Ok(Incoming::Ping)));
        let frame =
            format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"c","z":{open}{close}}}}}"#);
        assert!(matches!(
            parse(frame.as_bytes()),
            Ok(Incoming::Subscribe { .. })
        ));
    }

    #[test]
    fn channel_data() {
        let cd =
            parse_channel_data(r#"{"user_id":"10","user_info":{"name":"Mr. Channels"}}"#).unwrap();
        assert_eq!(cd.user_id, "10");
        assert_eq!(cd.user_info.unwrap().get(), r#"{"name":"Mr. Channels"}"#);
        let cd = parse_channel_data(r#"{"user_id":42}"#).unwrap();
        assert_eq!((cd.user_id.as_str(), cd.user_info.is_none()), ("42", true));
        let cd = parse_channel_data(r#"{"user_info":null,"user_id":-1.5e3}"#).unwrap();
        assert_eq!(
            (cd.user_id.as_str(), cd.user_info.is_none()),
            ("-1.5e3", true)
        );
        assert_eq!(
            parse_channel_data(r#"{"user_id":"a\"\n\u00e9"}"#)
                .unwrap()
                .user_id,
            "a\"\n\u{e9}"
        );
        let max = "u".repeat(MAX_USER_ID_LEN);
        assert_eq!(
            parse_channel_data(&json!({ "user_id": max }).to_string())
                .unwrap()
                .user_id,
            max
        );

        let long = json!({ "user_id": "u".repeat(MAX_USER_ID_LEN + 1) }).to_string();
        assert!(matches!(
            parse_channel_data(&long),
            Err(WireError::UserIdLength(129))
        ));
        assert!(matches!(
            parse_channel_data(r#"{"user_id":""}"#),
            Err(WireError::UserIdLength(0))
        ));
        assert_eq!(
            WireError::UserIdLength(0).to_string(),
            "user_id must be 1 to 128 bytes long, not 0"
        );
        for bad in [
            "{}",
            r#"{"user_id":null}"#,
            r#"{"user_id":true}"#,
            r#"{"user_id":["1"]}"#,
            r#"{"user_id":{"id":1}}"#,
            r#"["1"]"#,
            "\"1\"",
            "",
            "{",
            r#"{"user_id":"1","user_id":"2"}"#,
            r#"{"user_id":"1"} trailing"#,
        ] {
            assert!(parse_channel_data(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_channel_data("[]").unwrap_err().to_string(),
            "\"channel_data\" must be an object"
        );
    }

    #[test]
    fn encodes_protocol_examples() {
        let cases = [
            (
                connection_established("123.456", 120),
                r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#,
            ),
            (
                error(Some(4001), "nope"),
                r#"{"event":"pusher:error","data":{"code":4001,"message":"nope"}}"#,
            ),
            (
                error(None, "x"),
                r#"{"event":"pusher:error","data":{"code":null,"message":"x"}}"#,
            ),
            (ping(), r#"{"event":"pusher:ping","data":{}}"#),
            (pong(), r#"{"event":"pusher:pong","data":{}}"#),
            (
                subscription_succeeded("c", None),
                r#"{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}"#,
            ),
            (
                subscription_error("c", "AuthError", "bad auth", 401),
                r#"{"event":"pusher:subscription_error","channel":"c","data":{"type":"AuthError","error":"bad auth","status":401}}"#,
            ),
            (
                member_added("presence-c", "1", Some(&raw(r#"{"name":"a"}"#))),
                r#"{"event":"pusher_internal:member_added","channel":"presence-c","data":"{\"user_id\":\"1\",\"user_info\":{\"name\":\"a\"}}"}"#,
            ),
            (
                member_added("presence-c", "1", None),
                r#"{"event":"pusher_internal:member_added","channel":"presence-c","data":"{\"user_id\":\"1\",\"user_info\":null}"}"#,
            ),
            (
                member_removed("presence-c", "1"),
                r#"{"event":"pusher_internal:member_removed","channel":"presence-c","data":"{\"user_id\":\"1\"}"}"#,
            ),
            (
                event("c", "e", &raw(r#""{\"message\":\"hi\"}""#), None),
                r#"{"event":"e","channel":"c","data":"{\"message\":\"hi\"}"}"#,
            ),
            (
                event(
                    "presence-c",
                    "client-e",
                    &raw(r#"{"a": [1, 2]}"#),
                    Some("u"),
                ),
                r#"{"event":"client-e","channel":"presence-c","data":{"a": [1, 2]},"user_id":"u"}"#,
            ),
            (
                cache_miss("cache-c"),
                r#"{"event":"pusher:cache_miss","channel":"cache-c"}"#,
            ),
            (
                signin_success(r#"{"id":"1"}"#),
                r#"{"event":"pusher:signin_success","data":{"user_data":"{\"id\":\"1\"}"}}"#,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(text(&got), want);
        }
    }

    #[test]
    fn encodes_presence() {
        let presence = Presence {
            members: vec![
                ("2".into(), Some(raw(r#"{"name":"b"}"#))),
                ("1".into(), None),
                ("q\"\n\u{2603}".into(), Some(raw("7"))),
            ],
        };
        let frame = subscription_succeeded("presence-c", Some(&presence));
        let v = value(&frame);
        assert_eq!(v["event"], "pusher_internal:subscription_succeeded");
        assert_eq!(v["channel"], "presence-c");
        assert_eq!(
            inner(&v),
            json!({"presence": {
                "ids": ["2", "1", "q\"\n\u{2603}"],
                "hash": {"2": {"name": "b"}, "1": null, "q\"\n\u{2603}": 7},
                "count": 3,
            }})
        );
        let empty = subscription_succeeded("presence-c", Some(&Presence::default()));
        assert_eq!(
            inner(&value(&empty)),
            json!({"presence": {"ids": [], "hash": {}, "count": 0}})
        );
    }

    /// Checks every encoder writes valid JSON that carries `s` unchanged in
    /// each string field.
    fn check_escaping(s: &str) {
        let v = value(&connection_established(s, 1));
        assert_eq!(inner(&v), json!({"socket_id": s, "activity_timeout": 1}));
        assert_eq!(
            value(&error(Some(1), s)),
            json!({"event": "pusher:error", "data": {"code": 1, "message": s}})
        );
        let v = value(&subscription_succeeded(s, None));
        assert_eq!((&v["channel"], inner(&v)), (&json!(s), json!({})));
        let v = value(&subscription_error(s, s, s, 500));
        assert_eq!(v["channel"], s);
        assert_eq!(v["data"], json!({"type": s, "error": s, "status": 500}));
        let info = raw(&json!({ "name": s }).to_string());
        let v = value(&member_added(s, s, Some(&info)));
        assert_eq!(
            (&v["channel"], inner(&v)),
            (&json!(s), json!({"user_id": s, "user_info": {"name": s}}))
        );
        let v = value(&member_removed(s, s));
        assert_eq!(
            (&v["channel"], inner(&v)),
            (&json!(s), json!({"user_id": s}))
        );
        let data = raw(&json!(s).to_string());
        assert_eq!(
            value(&event(s, s, &data, Some(s))),
            json!({"event": s, "channel": s, "data": s, "user_id": s})
        );
        assert_eq!(
            value(&cache_miss(s)),
            json!({"event": "pusher:cache_miss", "channel": s})
        );
        assert_eq!(
            value(&signin_success(s)),
            json!({"event": "pusher:signin_success", "data": {"user_data": s}})
        );
        let presence = Presence {
            members: vec![(s.to_owned(), Some(data))],
        };
        let v = value(&subscription_succeeded(s, Some(&presence)));
        assert_eq!(
            inner(&v),
            json!({"presence": {"ids": [s], "hash": {s: s}, "count": 1}})
        );
    }

    #[test]
    fn escapes_every_string_field() {
        for s in [
            "",
            "plain",
            "quote\" backslash\\ slash/",
            "new\nline\r\ttab",
            "\0\u{1}\u{1f}\u{7f}",
            "caf\u{e9} \u{2603} \u{1f600} \u{2028}\u{2029}",
            "</script><!--",
            "\"}],\"event\":\"pusher:error",
        ] {
            check_escaping(s);
        }
    }

    #[test]
    fn parse_reads_what_pusher_js_would_send_back() {
        // A frame built with serde_json from hostile strings parses back.
        let s = "a\"b\\c\n\u{e9}\u{1f600}";
        let frame = json!({"event": "pusher:subscribe", "data": {"channel": s, "auth": s, "channel_data": s}});
        match parse(frame.to_string().as_bytes()).unwrap() {
            Incoming::Subscribe {
                channel,
                auth,
                channel_data,
            } => {
                assert_eq!(
                    (channel.as_str(), auth.as_deref(), channel_data.as_deref()),
                    (s, Some(s), Some(s))
                )
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn encoders_escape_any_string(s in any::<String>()) {
            check_escaping(&s);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_near_json(
            event in prop_oneof![
                Just("pusher:subscribe".to_owned()),
                Just("pusher:signin".to_owned()),
                Just("pusher:unsubscribe".to_owned()),
                Just("client-x".to_owned()),
                any::<String>(),
            ],
            data in "[\\[\\]{}\":,0-9a-z\\\\ ]{0,40}",
        ) {
            let frame = format!(r#"{{"event":{},"channel":"c","data":{data}}}"#, json!(event));
            let _ = parse(frame.as_bytes());
            let _ = parse_channel_data(&data);
        }

        #[test]
        fn subscribe_round_trips(channel in any::<String>(), auth in proptest::option::of(any::<String>()),
                                 channel_data in proptest::option::of(any::<String>()), as_string in any::<bool>()) {
            let data = json!({"channel": channel, "auth": auth, "channel_data": channel_data});
            let data = if as_string { json!(data.to_string()) } else { data };
            let frame = json!({"event": "pusher:subscribe", "data": data}).to_string();
            match parse(frame.as_bytes()) {
                Ok(Incoming::Subscribe { channel: c, auth: a, channel_data: d }) => {
                    prop_assert_eq!(c, channel);
                    prop_assert_eq!(a, auth);
                    prop_assert_eq!(d, channel_data);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn client_event_data_round_trips(n in any::<i64>(), s in any::<String>()) {
            let data = json!({"n": n, "s": s, "list": [s, null, true]});
            let frame = json!({"event": "client-e", "channel": "private-c", "data": data}).to_string();
            match parse(frame.as_bytes()) {
                Ok(Incoming::ClientEvent { data: raw, .. }) => {
                    let out = event("private-c", "client-e", &raw, Some("u"));
                    let v: Value = serde_json::from_slice(&out).unwrap();
                    prop_assert_eq!(&v["data"], &data);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
