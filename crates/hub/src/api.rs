//! The server API of Centrifugo v6 (`POST /api/<method>` and the `batch`
//! method), transport-agnostic: a method name and a JSON body in, a JSON
//! value out (`{"result": ...}` or `{"error": {"code", "message"}}` is
//! built by [`reply`]). Authentication of the caller is the transport's job.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use wshub_protocol::{Disconnect, DisconnectCode, ErrorCode};

use crate::broker::{self, ClientInfo, StreamPosition};
use crate::config::channel_options;
use crate::hub::Control;
use crate::node::Node;
use crate::session::{publish_options, run_history};

/// An API error: a Centrifugo error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The code (100 internal, 102 unknown channel, 107 bad request, ...).
    pub code: u32,
    /// The message.
    pub message: String,
}

impl ApiError {
    fn new(code: ErrorCode) -> Self {
        ApiError {
            code: code.0,
            message: code.message().unwrap_or("error").to_owned(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        ApiError {
            code: ErrorCode::BAD_REQUEST.0,
            message: message.into(),
        }
    }
}

/// Whether `method` is a method of the API.
pub fn is_method(method: &str) -> bool {
    matches!(
        method,
        "publish"
            | "broadcast"
            | "subscribe"
            | "unsubscribe"
            | "disconnect"
            | "refresh"
            | "presence"
            | "presence_stats"
            | "history"
            | "history_remove"
            | "channels"
            | "info"
            | "batch"
    )
}

/// The JSON answer for a call's outcome.
pub fn reply(r: Result<Value, ApiError>) -> Value {
    match r {
        Ok(v) => json!({ "result": v }),
        Err(e) => json!({ "error": { "code": e.code, "message": e.message } }),
    }
}

#[derive(Deserialize)]
struct PublishReq {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    channels: Vec<String>,
    data: Option<Box<RawValue>>,
    #[serde(default)]
    b64data: String,
    #[serde(default)]
    skip_history: bool,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    idempotency_key: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChannelReq {
    channel: String,
    limit: Option<i32>,
    since: Option<SinceReq>,
    reverse: bool,
    pattern: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SinceReq {
    offset: u64,
    epoch: String,
}

#[derive(Deserialize, Default)]
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

#[derive(Deserialize)]
struct SincePos {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    epoch: String,
}

#[derive(Deserialize, Default)]
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
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("bad request: {e}")))
}

/// Raw publication bytes as a JSON value (the JSON itself when the bytes
/// are JSON, else a string).
fn data_value(data: &Bytes) -> Value {
    serde_json::from_slice(data)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(data).into_owned()))
}

fn info_value(i: &ClientInfo) -> Value {
    let mut v = json!({ "user": i.user, "client": i.client });
    if let Some(c) = &i.conn_info {
        v["conn_info"] = data_value(c);
    }
    if let Some(c) = &i.chan_info {
        v["chan_info"] = data_value(c);
    }
    v
}

fn glob(pattern: &str, s: &str) -> bool {
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
    req: &PublishReq,
) -> Result<Value, ApiError> {
    if channel.is_empty() {
        return Err(ApiError::bad("channel required"));
    }
    let cfg = node.config();
    let resolved = channel_options(cfg, channel).map_err(|e| ApiError {
        code: e.code(),
        message: e.to_string(),
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

fn publish_data(req: &PublishReq) -> Result<Bytes, ApiError> {
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

/// Calls API `method` with a JSON `body`.
///
/// Cancel safety: not cancel safe (a publish may be done or not).
pub async fn call(node: &Arc<Node>, method: &str, body: &[u8]) -> Result<Value, ApiError> {
    node.metrics()
        .inc(Node::API_CALLS, format!("method=\"{method}\""));
    match method {
        "publish" => {
            let req: PublishReq = parse(body)?;
            let data = publish_data(&req)?;
            publish_one(node, &req.channel, data, &req).await
        }
        "broadcast" => {
            let req: PublishReq = parse(body)?;
            let data = publish_data(&req)?;
            if req.channels.is_empty() {
                return Err(ApiError::bad("channels required"));
            }
            let mut responses = Vec::new();
            for c in &req.channels {
                responses.push(reply(publish_one(node, c, data.clone(), &req).await));
            }
            Ok(json!({ "responses": responses }))
        }
        "presence" | "presence_stats" | "history" | "history_remove" => {
            let req: ChannelReq = parse(body)?;
            if req.channel.is_empty() {
                return Err(ApiError::bad("channel required"));
            }
            let cfg = node.config();
            let o = channel_options(cfg, &req.channel)
                .map_err(|e| ApiError {
                    code: e.code(),
                    message: e.to_string(),
                })?
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
                            let mut v = json!({ "data": data_value(&p.data), "offset": p.offset });
                            if !p.tags.is_empty() {
                                v["tags"] = json!(p.tags);
                            }
                            if let Some(i) = &p.info {
                                v["info"] = info_value(&ClientInfo {
                                    user: i.user.clone(),
                                    client: i.client.clone(),
                                    conn_info: (!i.conn_info.is_empty())
                                        .then(|| i.conn_info.clone()),
                                    chan_info: (!i.chan_info.is_empty())
                                        .then(|| i.chan_info.clone()),
                                });
                            }
                            v
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
        "channels" => {
            let req: ChannelReq = parse(body)?;
            let mut m = serde_json::Map::new();
            let mut all = node.hub().channels();
            all.sort();
            for (c, n) in all {
                if glob(&req.pattern, &c) {
                    m.insert(c, json!({ "num_clients": n }));
                }
            }
            Ok(json!({ "channels": m }))
        }
        "info" => {
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
        "subscribe" | "unsubscribe" | "disconnect" | "refresh" => {
            let req: UserReq = parse(body)?;
            if req.user.is_empty() && method != "disconnect" {
                return Err(ApiError::bad("user required"));
            }
            match method {
                "subscribe" | "unsubscribe" => {
                    if req.channel.is_empty() {
                        return Err(ApiError::bad("channel required"));
                    }
                    channel_options(node.config(), &req.channel).map_err(|e| ApiError {
                        code: e.code(),
                        message: e.to_string(),
                    })?;
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
                        .map_err(|_| ApiError::new(ErrorCode::INTERNAL))?;
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
                        .map_err(|_| ApiError::new(ErrorCode::INTERNAL))?;
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
                        .map_err(|_| ApiError::new(ErrorCode::INTERNAL))?;
                }
            }
            Ok(json!({}))
        }
        "batch" => Err(ApiError::bad("use call_batch")),
        _ => Err(ApiError::new(ErrorCode::METHOD_NOT_FOUND)),
    }
}

#[derive(Deserialize)]
struct BatchReq {
    #[serde(default)]
    commands: Vec<BTreeMap<String, Box<RawValue>>>,
}

/// The `batch` method: `{"commands": [{"publish": {...}}, ...]}` →
/// `{"replies": [{"publish": {...}} | {"error": {...}}, ...]}`, in order.
pub async fn call_batch(node: &Arc<Node>, body: &[u8]) -> Result<Value, ApiError> {
    let req: BatchReq = parse(body)?;
    let mut replies = Vec::with_capacity(req.commands.len());
    for cmd in &req.commands {
        let Some((method, params)) = cmd.iter().next() else {
            replies.push(reply(Err(ApiError::bad("empty command"))));
            continue;
        };
        let r = if is_method(method) && method != "batch" {
            call(node, method, params.get().as_bytes()).await
        } else {
            Err(ApiError::new(ErrorCode::METHOD_NOT_FOUND))
        };
        replies.push(match r {
            Ok(v) => json!({ method.as_str(): v }),
            Err(e) => json!({ "error": { "code": e.code, "message": e.message } }),
        });
    }
    Ok(json!({ "replies": replies }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
