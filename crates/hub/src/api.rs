//! The server API of Centrifugo v6 (`POST /api/<method>` and the `batch`
//! method), transport-agnostic: a method name and a JSON body in, a JSON
//! value out (`{"result": ...}` or `{"error": {"code", "message"}}` is
//! built by [`reply`]). Authentication of the caller is the transport's job.
//!
//! Decoding is separate from running: [`decode`] and [`decode_batch`] need
//! no [`Node`] (the fuzz target calls them), borrow from the body instead
//! of building JSON trees, and enforce [`ApiLimits`] while they decode, so
//! a body with too many batch commands or broadcast channels is refused
//! before anything is allocated per item. [`run_batch`] then runs a batch
//! in order and streams the answer in chunks through a bounded channel: a
//! batch of any size costs its body plus one chunk, not a tree per command.
//!
//! Every error has an [`ApiErrorKind`] that says how a transport answers it
//! ([`ApiErrorKind::http_status`]).
//!
//! ```
//! use wshub_hub::api::{decode, decode_batch, ApiErrorKind, ApiLimits};
//!
//! let limits = ApiLimits::default().max_batch_commands(2);
//! assert!(decode("publish", br#"{"channel":"a","data":{}}"#, &limits).is_ok());
//! let e = decode("publish", b"{bad", &limits).unwrap_err();
//! assert_eq!(e.kind.http_status(), 400);
//! let three = br#"{"commands":[{"info":{}},{"info":{}},{"info":{}}]}"#;
//! let e = decode_batch(three, &limits).unwrap_err();
//! assert_eq!(e.kind, ApiErrorKind::TooLarge);
//! assert!(e.message.contains("http_api.max_batch_commands"));
//! ```

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use wshub_protocol::{Disconnect, DisconnectCode, ErrorCode};

use crate::broker::{self, ClientInfo, StreamPosition};
use crate::hub::Control;
use crate::node::Node;
use crate::session::{publish_options, run_history};
use wshub_config::{channel_options, HttpApiConfig};

/// How a transport answers an [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// An answer of the method: `{"error": {...}}` in a 200, Centrifugo's
    /// way (unknown channel, not available, missing field, ...).
    Reply,
    /// The body is not a request of the method (not JSON, wrong types).
    Malformed,
    /// The request passes a configured limit ([`ApiLimits`]).
    TooLarge,
    /// The node cannot take the request now (too many bodies in flight).
    Busy,
}

impl ApiErrorKind {
    /// The HTTP status for this kind: 200 for [`Reply`](Self::Reply), 400
    /// for [`Malformed`](Self::Malformed) and [`TooLarge`](Self::TooLarge),
    /// 503 for [`Busy`](Self::Busy).
    pub fn http_status(self) -> u16 {
        match self {
            ApiErrorKind::Reply => 200,
            ApiErrorKind::Malformed | ApiErrorKind::TooLarge => 400,
            ApiErrorKind::Busy => 503,
        }
    }
}

/// An API error: a Centrifugo error code and message, and how a transport
/// answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// The code (100 internal, 102 unknown channel, 107 bad request, ...).
    pub code: u32,
    /// The message.
    pub message: String,
    /// How a transport answers it.
    pub kind: ApiErrorKind,
}

impl ApiError {
    fn new(code: ErrorCode) -> Self {
        ApiError {
            code: code.0,
            message: code.message().unwrap_or("error").to_owned(),
            kind: ApiErrorKind::Reply,
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        ApiError {
            code: ErrorCode::BAD_REQUEST.0,
            message: message.into(),
            kind: ApiErrorKind::Reply,
        }
    }
    fn malformed(e: impl fmt::Display) -> Self {
        ApiError {
            code: ErrorCode::BAD_REQUEST.0,
            message: format!("bad request: {e}"),
            kind: ApiErrorKind::Malformed,
        }
    }
    fn too_large(message: String) -> Self {
        ApiError {
            code: ErrorCode::BAD_REQUEST.0,
            message,
            kind: ApiErrorKind::TooLarge,
        }
    }
    /// A [`ApiErrorKind::Busy`] error with `message`.
    pub fn busy(message: impl Into<String>) -> Self {
        ApiError {
            code: ErrorCode::INTERNAL.0,
            message: message.into(),
            kind: ApiErrorKind::Busy,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

/// Limits on what one API request may ask for, checked while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiLimits {
    /// Most commands of one `batch` (`http_api.max_batch_commands`).
    pub max_batch_commands: usize,
    /// Most channels of one `broadcast` (`http_api.max_broadcast_channels`).
    pub max_broadcast_channels: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits::from_config(&HttpApiConfig::default())
    }
}

impl ApiLimits {
    /// The limits of an `http_api` configuration section.
    pub fn from_config(c: &HttpApiConfig) -> Self {
        ApiLimits {
            max_batch_commands: c.max_batch_commands,
            max_broadcast_channels: c.max_broadcast_channels,
        }
    }
    /// Sets [`max_batch_commands`](Self::max_batch_commands).
    pub fn max_batch_commands(mut self, n: usize) -> Self {
        self.max_batch_commands = n;
        self
    }
    /// Sets [`max_broadcast_channels`](Self::max_broadcast_channels).
    pub fn max_broadcast_channels(mut self, n: usize) -> Self {
        self.max_broadcast_channels = n;
        self
    }
}

/// The methods of the server API (`batch` included).
pub const METHODS: &[&str] = &[
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "refresh",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "batch",
];

fn method_name(method: &str) -> Option<&'static str> {
    METHODS.iter().copied().find(|m| *m == method)
}

/// Whether `method` is a method of the API.
pub fn is_method(method: &str) -> bool {
    method_name(method).is_some()
}

/// The JSON answer for a call's outcome.
pub fn reply(r: Result<Value, ApiError>) -> Value {
    match r {
        Ok(v) => json!({ "result": v }),
        Err(e) => error_value(&e),
    }
}

/// A method's result: a JSON value, or JSON text written as it was built
/// (`broadcast`'s per-channel answers, which as a tree would cost a map
/// per channel).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Answer {
    /// A JSON value.
    Value(Value),
    /// JSON text (valid JSON, built by this module).
    Json(String),
}

impl Answer {
    /// Appends the JSON text of the answer to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            // Writing a Value into a Vec cannot fail.
            Answer::Value(v) => {
                let _ = serde_json::to_writer(&mut *out, v);
            }
            Answer::Json(s) => out.extend_from_slice(s.as_bytes()),
        }
    }
    /// The answer as a JSON value (parses [`Answer::Json`]).
    pub fn to_value(&self) -> Value {
        match self {
            Answer::Value(v) => v.clone(),
            Answer::Json(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        }
    }
}

/// The JSON text of the answer for a call's outcome: `{"result": ...}` or
/// `{"error": {...}}`.
pub fn reply_json(r: &Result<Answer, ApiError>) -> Vec<u8> {
    let mut out = Vec::new();
    match r {
        Ok(a) => {
            out.extend_from_slice(b"{\"result\":");
            a.write_json(&mut out);
            out.push(b'}');
        }
        Err(e) => {
            let _ = serde_json::to_writer(&mut out, &error_value(e));
        }
    }
    out
}

fn error_value(e: &ApiError) -> Value {
    json!({ "error": { "code": e.code, "message": e.message } })
}

/// Decodes a JSON array of at most `max` elements; `what` names the limit
/// in the error past it.
fn bounded_vec<'de, T: Deserialize<'de>>(
    raw: &'de str,
    max: usize,
    what: &str,
    key: &str,
) -> Result<Vec<T>, ApiError> {
    struct Seed<'c, T> {
        max: usize,
        over: &'c Cell<bool>,
        _t: PhantomData<T>,
    }
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Seed<'_, T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(x) = seq.next_element()? {
                if out.len() == self.max {
                    self.over.set(true);
                    return Err(de::Error::custom("too many elements"));
                }
                out.push(x);
            }
            Ok(out)
        }
    }
    impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Seed<'_, T> {
        type Value = Vec<T>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
            d.deserialize_seq(self)
        }
    }
    let over = Cell::new(false);
    let mut d = serde_json::Deserializer::from_str(raw);
    let r = Seed {
        max,
        over: &over,
        _t: PhantomData,
    }
    .deserialize(&mut d)
    .and_then(|v| d.end().map(|()| v));
    r.map_err(|e| {
        if over.get() {
            ApiError::too_large(format!(
                "bad request: too many {what}: more than {max} (limit {key})"
            ))
        } else {
            ApiError::malformed(e)
        }
    })
}

#[derive(Debug, Deserialize)]
struct PublishReq<'a> {
    #[serde(default)]
    channel: String,
    /// `broadcast`: decoded with [`bounded_vec`].
    #[serde(default, borrow)]
    channels: Option<&'a RawValue>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    b64data: String,
    #[serde(default)]
    skip_history: bool,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    idempotency_key: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ChannelReq {
    channel: String,
    limit: Option<i32>,
    since: Option<SinceReq>,
    reverse: bool,
    pattern: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct SinceReq {
    offset: u64,
    epoch: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct UserReq {
    user: String,
    client: String,
    channel: String,
    disconnect: Option<DisconnectReq>,
    expired: bool,
    /// `refresh`: new expiry time, Unix seconds.
    expire_at: Option<u64>,
    /// `refresh`: new connection info; `subscribe`: channel info.
    info: Option<Box<RawValue>>,
    /// `subscribe`: data for the subscribe push.
    data: Option<Box<RawValue>>,
    /// `subscribe`: recover publications after this position.
    recover_since: Option<SincePos>,
}

#[derive(Debug, Deserialize)]
struct SincePos {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    epoch: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct DisconnectReq {
    code: u32,
    reason: String,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(ApiError::malformed)
}

/// Raw publication bytes as a JSON value (the JSON itself when the bytes
/// are JSON, else a string).
fn data_value(data: &Bytes) -> Value {
    serde_json::from_slice(data)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(data).into_owned()))
}

fn info_value(i: &ClientInfo) -> Value {
    let mut v = serde_json::Map::new();
    v.insert("user".into(), json!(i.user));
    v.insert("client".into(), json!(i.client));
    if let Some(c) = &i.conn_info {
        v.insert("conn_info".into(), data_value(c));
    }
    if let Some(c) = &i.chan_info {
        v.insert("chan_info".into(), data_value(c));
    }
    Value::Object(v)
}

/// Centrifugo's channel pattern of the `channels` method: `*` matches any
/// run of characters; an empty pattern matches every channel.
pub(crate) fn glob(pattern: &str, s: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = s;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else if let Some(at) = rest.find(p) {
            rest = &rest[at + p.len()..];
        } else {
            return false;
        }
    }
    true
}

async fn publish_one(
    node: &Node,
    channel: &str,
    data: Bytes,
    req: &PublishReq<'_>,
) -> Result<Value, ApiError> {
    if channel.is_empty() {
        return Err(ApiError::bad("channel required"));
    }
    let cfg = node.config();
    let resolved = channel_options(cfg, channel).map_err(|e| ApiError {
        code: e.code(),
        message: e.to_string(),
        kind: ApiErrorKind::Reply,
    })?;
    let mut po = if req.skip_history {
        broker::PublishOptions::default()
    } else {
        publish_options(cfg, resolved.options)
    };
    if !req.idempotency_key.is_empty() {
        po = po.idempotency_key(req.idempotency_key.clone());
    }
    let publication = broker::Publication {
        data,
        tags: req.tags.clone(),
        ..Default::default()
    };
    let pos = node
        .broker()
        .publish(channel, publication, po)
        .await
        .map_err(|e| {
            tracing::warn!(channel, error = %e, "api publish failed");
            ApiError::new(ErrorCode::INTERNAL)
        })?;
    let mut v = json!({});
    if pos.offset > 0 || !pos.epoch.is_empty() {
        v = json!({ "offset": pos.offset, "epoch": pos.epoch });
    }
    Ok(v)
}

fn publish_data(req: &PublishReq<'_>) -> Result<Bytes, ApiError> {
    if let Some(d) = &req.data {
        return Ok(Bytes::copy_from_slice(d.get().as_bytes()));
    }
    if !req.b64data.is_empty() {
        use base64::Engine;
        return base64::engine::general_purpose::STANDARD
            .decode(&req.b64data)
            .map(Bytes::from)
            .map_err(|_| ApiError::bad("bad b64data"));
    }
    Err(ApiError::bad("data required"))
}

/// A decoded API request of one method, ready to run ([`decode`]).
#[derive(Debug)]
pub struct Request<'a>(Req<'a>);

#[derive(Debug)]
enum Req<'a> {
    Publish {
        req: PublishReq<'a>,
        data: Bytes,
    },
    Broadcast {
        req: PublishReq<'a>,
        channels: Vec<String>,
        data: Bytes,
    },
    Channel {
        method: &'static str,
        req: ChannelReq,
    },
    Channels {
        pattern: String,
    },
    Info,
    User {
        method: &'static str,
        req: UserReq,
    },
}

impl Request<'_> {
    /// The method.
    pub fn method(&self) -> &'static str {
        match &self.0 {
            Req::Publish { .. } => "publish",
            Req::Broadcast { .. } => "broadcast",
            Req::Channel { method, .. } | Req::User { method, .. } => method,
            Req::Channels { .. } => "channels",
            Req::Info => "info",
        }
    }
}

/// Decodes the body of API `method` (not `batch`: see [`decode_batch`])
/// without running it. Errors of kind [`ApiErrorKind::Malformed`] and
/// [`ApiErrorKind::TooLarge`] say the body is unusable; errors of kind
/// [`ApiErrorKind::Reply`] are the method's answer (a field missing).
pub fn decode<'a>(
    method: &str,
    body: &'a [u8],
    limits: &ApiLimits,
) -> Result<Request<'a>, ApiError> {
    let Some(method) = method_name(method) else {
        return Err(ApiError::new(ErrorCode::METHOD_NOT_FOUND));
    };
    let req = match method {
        "publish" => {
            let req: PublishReq = parse(body)?;
            let data = publish_data(&req)?;
            Req::Publish { req, data }
        }
        "broadcast" => {
            let req: PublishReq = parse(body)?;
            let channels = match req.channels {
                Some(raw) => bounded_vec(
                    raw.get(),
                    limits.max_broadcast_channels,
                    "channels in broadcast",
                    "http_api.max_broadcast_channels",
                )?,
                None => Vec::new(),
            };
            let data = publish_data(&req)?;
            if channels.is_empty() {
                return Err(ApiError::bad("channels required"));
            }
            Req::Broadcast {
                req,
                channels,
                data,
            }
        }
        "presence" | "presence_stats" | "history" | "history_remove" => {
            let req: ChannelReq = parse(body)?;
            if req.channel.is_empty() {
                return Err(ApiError::bad("channel required"));
            }
            Req::Channel { method, req }
        }
        "channels" => {
            let req: ChannelReq = parse(body)?;
            Req::Channels {
                pattern: req.pattern,
            }
        }
        "info" => {
            let _: IgnoredAny = parse(body)?;
            Req::Info
        }
        "subscribe" | "unsubscribe" | "disconnect" | "refresh" => {
            let req: UserReq = parse(body)?;
            if req.user.is_empty() && method != "disconnect" {
                return Err(ApiError::bad("user required"));
            }
            if matches!(method, "subscribe" | "unsubscribe") && req.channel.is_empty() {
                return Err(ApiError::bad("channel required"));
            }
            Req::User { method, req }
        }
        // "batch" has its own body and entry point.
        _ => return Err(ApiError::new(ErrorCode::METHOD_NOT_FOUND)),
    };
    Ok(Request(req))
}

/// Calls API `method` with a JSON `body`.
///
/// Cancel safety: not cancel safe (a publish may be done or not).
pub async fn call(node: &Arc<Node>, method: &str, body: &[u8]) -> Result<Answer, ApiError> {
    if let Some(m) = method_name(method) {
        node.metrics().api_call(m);
    }
    let limits = ApiLimits::from_config(&node.config().http_api);
    let req = decode(method, body, &limits)?;
    execute(node, req).await
}

fn channel_error(e: wshub_config::ChannelError) -> ApiError {
    ApiError {
        code: e.code(),
        message: e.to_string(),
        kind: ApiErrorKind::Reply,
    }
}

/// Runs a decoded request.
///
/// Cancel safety: not cancel safe (a publish may be done or not).
pub async fn execute(node: &Arc<Node>, req: Request<'_>) -> Result<Answer, ApiError> {
    match req.0 {
        Req::Broadcast {
            req,
            channels,
            data,
        } => {
            // One publication at a time: the data is shared (`Bytes`), so
            // nothing is copied per channel; each channel's answer is
            // written as text (a few dozen bytes, not a JSON map).
            let mut out = Vec::with_capacity(16 + channels.len() * 48);
            out.extend_from_slice(b"{\"responses\":[");
            for (i, c) in channels.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let r = publish_one(node, c, data.clone(), &req).await;
                out.extend_from_slice(&reply_json(&r.map(Answer::Value)));
            }
            out.extend_from_slice(b"]}");
            // Only JSON text was written.
            Ok(Answer::Json(String::from_utf8(out).unwrap_or_default()))
        }
        other => execute_value(node, other).await.map(Answer::Value),
    }
}

async fn execute_value(node: &Arc<Node>, req: Req<'_>) -> Result<Value, ApiError> {
    match req {
        Req::Publish { req, data } => publish_one(node, &req.channel, data, &req).await,
        Req::Broadcast { .. } => Err(ApiError::new(ErrorCode::INTERNAL)),
        Req::Channel { method, req } => {
            let cfg = node.config();
            let o = channel_options(cfg, &req.channel)
                .map_err(channel_error)?
                .options;
            let b = node.broker();
            let internal = |_| ApiError::new(ErrorCode::INTERNAL);
            match method {
                "presence" => {
                    if !o.presence {
                        return Err(ApiError::new(ErrorCode::NOT_AVAILABLE));
                    }
                    let p = b.presence(&req.channel).await.map_err(internal)?;
                    let m: serde_json::Map<String, Value> =
                        p.iter().map(|(k, v)| (k.clone(), info_value(v))).collect();
                    Ok(json!({ "presence": m }))
                }
                "presence_stats" => {
                    if !o.presence {
                        return Err(ApiError::new(ErrorCode::NOT_AVAILABLE));
                    }
                    let s = b.presence_stats(&req.channel).await.map_err(internal)?;
                    Ok(json!({ "num_clients": s.num_clients, "num_users": s.num_users }))
                }
                "history" => {
                    if !o.history_enabled() {
                        return Err(ApiError::new(ErrorCode::NOT_AVAILABLE));
                    }
                    let since = req.since.map(|s| StreamPosition::new(s.offset, s.epoch));
                    let r = run_history(
                        node,
                        &req.channel,
                        o,
                        req.limit.unwrap_or(0),
                        since,
                        req.reverse,
                        0,
                    )
                    .await
                    .map_err(ApiError::new)?;
                    let pubs: Vec<Value> = r
                        .publications
                        .iter()
                        .map(|p| {
                            let mut v = serde_json::Map::new();
                            v.insert("data".into(), data_value(&p.data));
                            v.insert("offset".into(), json!(p.offset));
                            if !p.tags.is_empty() {
                                v.insert("tags".into(), json!(p.tags));
                            }
                            if let Some(i) = &p.info {
                                let info = info_value(&ClientInfo {
                                    user: i.user.clone(),
                                    client: i.client.clone(),
                                    conn_info: (!i.conn_info.is_empty())
                                        .then(|| i.conn_info.clone()),
                                    chan_info: (!i.chan_info.is_empty())
                                        .then(|| i.chan_info.clone()),
                                });
                                v.insert("info".into(), info);
                            }
                            Value::Object(v)
                        })
                        .collect();
                    Ok(json!({ "publications": pubs, "offset": r.offset, "epoch": r.epoch }))
                }
                _ => {
                    b.remove_history(&req.channel).await.map_err(internal)?;
                    Ok(json!({}))
                }
            }
        }
        Req::Channels { pattern } => {
            let all = node.cluster_channels(&pattern).await;
            let m: serde_json::Map<String, Value> = all
                .into_iter()
                .map(|(c, n)| (c, json!({ "num_clients": n })))
                .collect();
            Ok(json!({ "channels": m }))
        }
        Req::Info => {
            let nodes: Vec<Value> = node
                .nodes()
                .await
                .iter()
                .map(|n| {
                    json!({
                        "uid": n.id,
                        "name": n.name,
                        "version": n.version,
                        "num_clients": n.num_clients,
                        "num_users": n.num_users,
                        "num_channels": n.num_channels,
                        "num_subs": n.num_subs,
                        "uptime": n.uptime_secs,
                    })
                })
                .collect();
            Ok(json!({ "nodes": nodes }))
        }
        Req::User { method, req } => {
            let internal = |_| ApiError::new(ErrorCode::INTERNAL);
            match method {
                "subscribe" | "unsubscribe" => {
                    channel_options(node.config(), &req.channel).map_err(channel_error)?;
                    let raw = |v: &Option<Box<RawValue>>| {
                        v.as_ref()
                            .map(|v| Bytes::copy_from_slice(v.get().as_bytes()))
                    };
                    let control = if method == "subscribe" {
                        Control::Subscribe {
                            channel: req.channel.clone(),
                            info: raw(&req.info),
                            data: raw(&req.data),
                            recover_since: req.recover_since.as_ref().map(|p| StreamPosition {
                                offset: p.offset,
                                epoch: p.epoch.clone(),
                            }),
                        }
                    } else {
                        Control::Unsubscribe(req.channel.clone())
                    };
                    node.control_user(&req.user, &req.client, &control)
                        .await
                        .map_err(internal)?;
                }
                "disconnect" => {
                    let d = match req.disconnect {
                        Some(d) if d.code > 0 => Disconnect {
                            code: d.code,
                            reason: d.reason,
                            reconnect: DisconnectCode(d.code).reconnect(),
                        },
                        _ => DisconnectCode::FORCE_NO_RECONNECT.to_disconnect(),
                    };
                    node.control_user(&req.user, &req.client, &Control::Disconnect(d))
                        .await
                        .map_err(internal)?;
                }
                _ => {
                    let control = if req.expired {
                        Control::Disconnect(DisconnectCode::EXPIRED.to_disconnect())
                    } else {
                        Control::Refresh {
                            expire_at: req.expire_at,
                            info: req.info.map(|i| Bytes::copy_from_slice(i.get().as_bytes())),
                        }
                    };
                    node.control_user(&req.user, &req.client, &control)
                        .await
                        .map_err(internal)?;
                }
            }
            Ok(json!({}))
        }
    }
}

/// A decoded `batch` request ([`decode_batch`]): each command's method and
/// where its parameters are in the body, nothing copied.
#[derive(Debug)]
pub struct Batch {
    commands: Vec<BatchCommand>,
}

#[derive(Debug)]
enum BatchCommand {
    Call {
        method: &'static str,
        params: Range<usize>,
    },
    /// A method that is not a method of the API (or `batch` itself).
    Unknown,
    /// Not one method with its parameters.
    Invalid(&'static str),
}

impl Batch {
    /// Number of commands.
    pub fn len(&self) -> usize {
        self.commands.len()
    }
    /// Whether there are no commands.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
    /// The method and parameters of command `i` in `body` (the body the
    /// batch was decoded from); `None` for a command that is not one
    /// known method with its parameters.
    pub fn command<'b>(&self, body: &'b [u8], i: usize) -> Option<(&'static str, &'b [u8])> {
        match self.commands.get(i)? {
            BatchCommand::Call { method, params } => Some((method, body.get(params.clone())?)),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct BatchReq<'a> {
    #[serde(default, borrow)]
    commands: Option<&'a RawValue>,
    // `parallel: true` is accepted (not a field: unknown keys are ignored):
    // Centrifugo then runs the commands concurrently, and the replies are
    // the same, in order, as wshub's sequential run gives.
}

/// The method key of a batch command.
struct MethodKey(Option<&'static str>);

impl<'de> Deserialize<'de> for MethodKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MethodKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a method name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MethodKey, E> {
                Ok(MethodKey(method_name(v).filter(|m| *m != "batch")))
            }
        }
        d.deserialize_str(V)
    }
}

/// One element of `commands`, borrowed from the body.
enum RawCommand<'a> {
    One(Option<&'static str>, &'a RawValue),
    Empty,
    Many,
}

impl<'de> Deserialize<'de> for RawCommand<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCommand<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let Some(MethodKey(method)) = m.next_key()? else {
                    return Ok(RawCommand::Empty);
                };
                let params: &'de RawValue = m.next_value()?;
                let mut more = false;
                while m.next_key::<IgnoredAny>()?.is_some() {
                    m.next_value::<IgnoredAny>()?;
                    more = true;
                }
                Ok(if more {
                    RawCommand::Many
                } else {
                    RawCommand::One(method, params)
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// Decodes a `batch` body, `{"commands": [{"publish": {...}}, ...]}`,
/// without running it: the commands' parameters stay in the body. More
/// than [`ApiLimits::max_batch_commands`] commands is an
/// [`ApiErrorKind::TooLarge`] error, found before a slot per command is
/// allocated beyond the limit.
pub fn decode_batch(body: &[u8], limits: &ApiLimits) -> Result<Batch, ApiError> {
    let req: BatchReq = parse(body)?;
    let Some(raw) = req.commands else {
        return Ok(Batch {
            commands: Vec::new(),
        });
    };
    let list: Vec<RawCommand> = bounded_vec(
        raw.get(),
        limits.max_batch_commands,
        "commands in batch",
        "http_api.max_batch_commands",
    )?;
    let base = body.as_ptr() as usize;
    let commands = list
        .into_iter()
        .map(|c| match c {
            RawCommand::One(Some(method), params) => {
                let p = params.get().as_bytes();
                // The parameters are a slice of the body; keep where.
                let at = (p.as_ptr() as usize).checked_sub(base);
                match at.map(|a| a..a + p.len()) {
                    Some(r) if body.get(r.clone()) == Some(p) => {
                        BatchCommand::Call { method, params: r }
                    }
                    _ => BatchCommand::Invalid("parameters not in the body"),
                }
            }
            RawCommand::One(None, _) => BatchCommand::Unknown,
            RawCommand::Empty => BatchCommand::Invalid("empty command"),
            RawCommand::Many => BatchCommand::Invalid("one method per command"),
        })
        .collect();
    Ok(Batch { commands })
}

/// How a streamed batch ended ([`run_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchOutcome {
    /// Every command ran and the whole answer was handed on.
    Done,
    /// The receiver went away after `ran` commands; the others did not run.
    ReceiverGone {
        /// Commands that ran.
        ran: usize,
    },
    /// The receiver took no chunk within the write timeout, after `ran`
    /// commands; the others did not run and the answer is cut short.
    Stalled {
        /// Commands that ran.
        ran: usize,
    },
}

/// Size from which [`run_batch`] hands a chunk of the answer on.
pub const BATCH_CHUNK: usize = 32 << 10;

/// Runs `batch` (decoded from `body` by [`decode_batch`]) in order and
/// sends the answer, `{"replies": [{"publish": {...}} | {"error": {...}},
/// ...]}`, through `tx` in chunks of about [`BATCH_CHUNK`] bytes. Memory is
/// the body, one chunk and what `tx` buffers, whatever the batch's size. A
/// chunk that `tx` does not take within `write_timeout` stops the batch.
///
/// Cancel safety: not cancel safe (a command may be done or not).
pub async fn run_batch(
    node: &Arc<Node>,
    body: &[u8],
    batch: &Batch,
    tx: &mpsc::Sender<Bytes>,
    write_timeout: Duration,
) -> BatchOutcome {
    let mut buf: Vec<u8> = Vec::with_capacity(BATCH_CHUNK + 512);
    buf.extend_from_slice(b"{\"replies\":[");
    for (i, command) in batch.commands.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let r = match command {
            BatchCommand::Call { method, params } => {
                let params = body.get(params.clone()).unwrap_or(b"");
                call(node, method, params).await.map(|v| (*method, v))
            }
            BatchCommand::Unknown => Err(ApiError::new(ErrorCode::METHOD_NOT_FOUND)),
            BatchCommand::Invalid(why) => Err(ApiError::bad(*why)),
        };
        match r {
            Ok((method, a)) => {
                buf.extend_from_slice(b"{\"");
                buf.extend_from_slice(method.as_bytes());
                buf.extend_from_slice(b"\":");
                a.write_json(&mut buf);
                buf.push(b'}');
            }
            Err(e) => {
                // Writing JSON into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut buf, &error_value(&e));
            }
        }
        if buf.len() >= BATCH_CHUNK {
            let chunk = Bytes::from(std::mem::replace(
                &mut buf,
                Vec::with_capacity(BATCH_CHUNK + 512),
            ));
            match tokio::time::timeout(write_timeout, tx.send(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return BatchOutcome::ReceiverGone { ran: i + 1 },
                Err(_) => return BatchOutcome::Stalled { ran: i + 1 },
            }
        }
    }
    buf.extend_from_slice(b"]}");
    let n = batch.commands.len();
    match tokio::time::timeout(write_timeout, tx.send(Bytes::from(buf))).await {
        Ok(Ok(())) => BatchOutcome::Done,
        Ok(Err(_)) => BatchOutcome::ReceiverGone { ran: n },
        Err(_) => BatchOutcome::Stalled { ran: n },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_borrows_and_bounds() {
        let limits = ApiLimits::default()
            .max_batch_commands(3)
            .max_broadcast_channels(2);
        // An escaped method key is still the method.
        let body = br#"{"commands":[{"pub\u006cish":{"channel":"a","data":1}},{"nope":{}},{}]}"#;
        let b = decode_batch(body, &limits).unwrap();
        assert_eq!(b.len(), 3);
        let (m, params) = b.command(body, 0).unwrap();
        assert_eq!(
            (m, params),
            ("publish", &br#"{"channel":"a","data":1}"#[..])
        );
        assert!(b.command(body, 1).is_none() && b.command(body, 2).is_none());
        let e = decode_batch(br#"{"commands":[{},{},{},{}]}"#, &limits).unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::TooLarge);
        let e = decode_batch(br#"{"commands":[1]}"#, &limits).unwrap_err();
        assert_eq!(e.kind, ApiErrorKind::Malformed);
        assert!(decode_batch(b" ", &limits).unwrap().is_empty());

        let e = decode(
            "broadcast",
            br#"{"channels":["a","b","c"],"data":1}"#,
            &limits,
        )
        .unwrap_err();
        assert!(e.message.contains("http_api.max_broadcast_channels"), "{e}");
        let r = decode("broadcast", br#"{"channels":["a","b"],"data":1}"#, &limits).unwrap();
        assert_eq!(r.method(), "broadcast");
        let e = decode("broadcast", br#"{"channels":[],"data":1}"#, &limits).unwrap_err();
        assert_eq!((e.kind, e.code), (ApiErrorKind::Reply, 107));
        let e = decode("nope", b"{}", &limits).unwrap_err();
        assert_eq!(e.code, 104);
        assert_eq!(
            decode("info", b"{bad", &limits)
                .unwrap_err()
                .kind
                .http_status(),
            400
        );
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("", "x"));
        assert!(glob("chat:*", "chat:1"));
        assert!(!glob("chat:*", "news:1"));
        assert!(glob("*:1", "chat:1"));
        assert!(glob("a*b*c", "aXXbYc"));
        assert!(!glob("abc", "abcd"));
    }
}
