//! The Pusher HTTP API (`/apps/{app_id}/...`), as the Pusher server SDKs
//! call it: every request signed with the app's secret (`auth_key`,
//! `auth_timestamp` within 600 s, `auth_version` 1.0, `body_md5`,
//! `auth_signature`), JSON in and out. HTTP-agnostic: the server's route
//! hands over the method, path, query and body it has read (bounded), and
//! writes the [`Response`].

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use wshub_hub::broker::{ClientInfo, Publication};
use wshub_hub::metrics::{ApiLimit, ClientLimit};
use wshub_hub::node::Node;

use crate::app::{App, Apps};
use crate::front::{self, Envelope};
use crate::names::{self, ChannelType};
use crate::session::{node_channel, publish_options};
use crate::sign;

/// Most events in one `batch_events` request (Pusher's limit).
pub const MAX_BATCH: usize = 10;

/// An answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// `application/json` for 200, `text/plain` otherwise.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

impl Response {
    fn json(v: Value) -> Self {
        Response {
            status: 200,
            content_type: "application/json",
            body: Bytes::from(v.to_string()),
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Self {
        let mut m: String = message.into();
        m.push('\n');
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(m),
        }
    }
}

/// Whether `path` is the API's (`/apps/...`).
pub fn is_api_path(path: &str) -> bool {
    path.starts_with("/apps/")
}

/// A request whose signature was checked ([`authorize`]): its app and
/// decoded query, waiting for its body.
#[derive(Debug)]
pub struct Authorized {
    app: Arc<App>,
    pairs: Vec<(String, String)>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Checks what the signature covers before the body is read (the app, the
/// key, the time, the signature over method, path and query, `body_md5`
/// included), so that an unsigned request costs no body and none of the
/// node's in-flight body budget. `query` is the raw query string.
pub fn authorize(
    node: &Node,
    apps: &Apps,
    method: &str,
    path: &str,
    query: &str,
) -> Result<Authorized, Response> {
    let Some(rest) = path.strip_prefix("/apps/") else {
        return Err(Response::error(404, "Not found"));
    };
    let app_id = rest.split_once('/').map_or(rest, |(id, _)| id);
    let Some(app) = apps.by_id(app_id) else {
        return Err(Response::error(404, format!("Unknown app_id {app_id:?}")));
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let a = app.config();
    if let Err(e) = sign::verify_api_query(method, path, &pairs, &a.key, &a.secret, unix_now()) {
        node.metrics().api_limit_exceeded(ApiLimit::PusherAuth);
        return Err(Response::error(401, e.to_string()));
    }
    Ok(Authorized {
        app: app.clone(),
        pairs,
    })
}

/// Answers one API request: [`authorize`], then [`answer`] with the body.
pub async fn handle(
    node: &Arc<Node>,
    apps: &Apps,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Response {
    match authorize(node, apps, method, path, query) {
        Ok(a) => answer(node, a, method, path, body).await,
        Err(r) => r,
    }
}

/// Answers an authorized request once its body is in.
pub async fn answer(
    node: &Arc<Node>,
    authorized: Authorized,
    method: &str,
    path: &str,
    body: &[u8],
) -> Response {
    let Authorized { app, pairs } = authorized;
    let app = &*app;
    if let Err(e) = sign::verify_body_md5(&pairs, body) {
        node.metrics().api_limit_exceeded(ApiLimit::PusherAuth);
        return Response::error(401, e.to_string());
    }
    let rest = path
        .strip_prefix("/apps/")
        .and_then(|r| r.split_once('/'))
        .map_or("", |(_, r)| r);
    let param = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match (method, segments.as_slice()) {
        ("POST", ["events"]) => events(node, app, body).await,
        ("POST", ["batch_events"]) => batch_events(node, app, body).await,
        ("GET", ["channels"]) => {
            channels(node, app, param("filter_by_prefix"), param("info")).await
        }
        ("GET", ["channels", name]) => channel(node, app, name, param("info")).await,
        ("GET", ["channels", name, "users"]) => users(node, app, name).await,
        ("POST", ["users", _, "terminate_connections"]) => Response::error(
            501,
            "terminate_connections needs user authentication (pusher:signin), \
             which this server does not implement yet",
        ),
        (_, ["events" | "batch_events" | "channels"] | ["channels", ..]) => {
            Response::error(405, "Method not allowed")
        }
        _ => Response::error(404, "Not found"),
    }
}

/// One event as the API takes it (`events`, or one of a batch).
#[derive(Deserialize)]
struct EventIn {
    name: String,
    data: Box<RawValue>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

/// The `info` attributes asked for: `user_count`, `subscription_count`.
#[derive(Clone, Copy, Default)]
struct Info {
    user_count: bool,
    subscription_count: bool,
}

fn parse_info(info: Option<&str>) -> Result<Info, Response> {
    let mut i = Info::default();
    for a in info.unwrap_or("").split(',').map(str::trim) {
        match a {
            "" => {}
            "user_count" => i.user_count = true,
            "subscription_count" => i.subscription_count = true,
            other => {
                return Err(Response::error(
                    400,
                    format!(
                        "Unknown info attribute {other:?} (use user_count, subscription_count)"
                    ),
                ))
            }
        }
    }
    Ok(i)
}

/// Checks one event and the channels it names.
fn check_event(app: &App, e: &EventIn) -> Result<Vec<String>, Response> {
    let a = app.config();
    if !names::valid_event_name(&e.name) {
        return Err(Response::error(400, "Event name must be 1 to 200 bytes"));
    }
    let channels: Vec<String> = match (&e.channels, &e.channel) {
        (Some(c), None) => c.clone(),
        (None, Some(c)) => vec![c.clone()],
        (Some(_), Some(_)) => {
            return Err(Response::error(400, "Give channels or channel, not both"))
        }
        (None, None) => return Err(Response::error(400, "Missing channels")),
    };
    if channels.is_empty() {
        return Err(Response::error(400, "Missing channels"));
    }
    if channels.len() as u64 > a.max_channels_per_event {
        return Err(Response::error(
            400,
            format!(
                "An event may name at most {} channels, this one names {}",
                a.max_channels_per_event,
                channels.len()
            ),
        ));
    }
    if let Some(bad) = channels.iter().find(|c| !names::valid_channel_name(c)) {
        return Err(Response::error(
            400,
            format!("Invalid channel name {bad:?}"),
        ));
    }
    if e.data.get().len() as u64 > a.max_event_size {
        return Err(Response::error(
            413,
            format!(
                "Event data is {} bytes, over the limit of {}",
                e.data.get().len(),
                a.max_event_size
            ),
        ));
    }
    if let Some(s) = &e.socket_id {
        if !names::valid_socket_id(s) {
            return Err(Response::error(400, format!("Invalid socket_id {s:?}")));
        }
    }
    Ok(channels)
}

async fn publish(
    node: &Arc<Node>,
    app: &App,
    e: &EventIn,
    channels: &[String],
) -> Result<(), Response> {
    let env = Envelope {
        event: e.name.clone(),
        data: e.data.clone(),
        user_id: None,
    };
    let data = front::encode(&env);
    for c in channels {
        let mut p = Publication::new(data.clone());
        if let Some(s) = &e.socket_id {
            p.info = Some(ClientInfo::new("", s.as_str()));
        }
        let nc = node_channel(app, c);
        if let Err(err) = node
            .broker()
            .publish(&nc, p, publish_options(ChannelType::of(c)))
            .await
        {
            tracing::warn!(channel = %nc, error = %err, "pusher API publish failed");
            return Err(Response::error(500, "Publish failed"));
        }
    }
    Ok(())
}

/// Distinct users present in a node channel (0 when the broker cannot say).
async fn user_count(node: &Node, nc: &str) -> usize {
    node.broker()
        .presence_stats(nc)
        .await
        .map_or(0, |s| s.num_users)
}

/// Connections subscribed to a node channel over the cluster.
async fn subscription_count(node: &Node, nc: &str) -> u64 {
    node.cluster_channels(nc)
        .await
        .get(nc)
        .copied()
        .unwrap_or(0)
}

/// The `info` attributes of each channel.
async fn channel_info(
    node: &Arc<Node>,
    app: &App,
    channels: &[String],
    info: Info,
) -> Map<String, Value> {
    let mut out = Map::new();
    for c in channels {
        let mut m = Map::new();
        let nc = node_channel(app, c);
        if info.subscription_count {
            let n = subscription_count(node, &nc).await;
            m.insert("subscription_count".into(), n.into());
        }
        if info.user_count && ChannelType::of(c).is_presence() {
            let n = user_count(node, &nc).await;
            m.insert("user_count".into(), n.into());
        }
        out.insert(c.clone(), Value::Object(m));
    }
    out
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| Response::error(400, format!("Invalid JSON body: {e}")))
}

fn size_refused(node: &Node, r: &Response) {
    if r.status == 413 {
        node.metrics().limit_exceeded(ClientLimit::PusherEventSize);
    }
}

async fn events(node: &Arc<Node>, app: &App, body: &[u8]) -> Response {
    let e: EventIn = match parse_body(body) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let channels = match check_event(app, &e) {
        Ok(c) => c,
        Err(r) => {
            size_refused(node, &r);
            return r;
        }
    };
    let info = match parse_info(e.info.as_deref()) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if let Err(r) = publish(node, app, &e, &channels).await {
        return r;
    }
    if e.info.is_none() {
        return Response::json(json!({}));
    }
    let m = channel_info(node, app, &channels, info).await;
    Response::json(json!({ "channels": m }))
}

#[derive(Deserialize)]
struct BatchIn {
    batch: Vec<EventIn>,
}

async fn batch_events(node: &Arc<Node>, app: &App, body: &[u8]) -> Response {
    let b: BatchIn = match parse_body(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if b.batch.len() > MAX_BATCH {
        return Response::error(
            400,
            format!(
                "Batch of {} events, over the limit of {MAX_BATCH}",
                b.batch.len()
            ),
        );
    }
    // Every event is checked before any is published.
    let mut checked = Vec::with_capacity(b.batch.len());
    for e in &b.batch {
        if e.channels.is_some() {
            return Response::error(400, "A batch event names one channel (channel)");
        }
        match check_event(app, e) {
            Ok(c) => checked.push((c, parse_info(e.info.as_deref()))),
            Err(r) => {
                size_refused(node, &r);
                return r;
            }
        }
    }
    let mut infos = Vec::new();
    for (e, (channels, info)) in b.batch.iter().zip(checked) {
        let info = match info {
            Ok(i) => i,
            Err(r) => return r,
        };
        if let Err(r) = publish(node, app, e, &channels).await {
            return r;
        }
        if e.info.is_some() {
            let m = channel_info(node, app, &channels, info).await;
            infos.push(m.into_iter().next().map_or(json!({}), |(_, v)| v));
        } else {
            infos.push(json!({}));
        }
    }
    if b.batch.iter().any(|e| e.info.is_some()) {
        Response::json(json!({ "batch": infos }))
    } else {
        Response::json(json!({}))
    }
}

async fn channels(
    node: &Arc<Node>,
    app: &App,
    prefix: Option<&str>,
    info: Option<&str>,
) -> Response {
    let info = match parse_info(info) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let prefix = prefix.unwrap_or("");
    if info.user_count && !prefix.starts_with("presence-") {
        return Response::error(400, "info=user_count needs filter_by_prefix=presence-");
    }
    if prefix.contains('*') {
        return Response::error(400, "Invalid filter_by_prefix");
    }
    let pattern = format!("{}{prefix}*", app.prefix());
    let found: BTreeMap<String, u64> = node.cluster_channels(&pattern).await;
    let mut out = Map::new();
    for (nc, subscribers) in found {
        let Some(name) = nc.strip_prefix(app.prefix()) else {
            continue;
        };
        let mut m = Map::new();
        if info.subscription_count {
            m.insert("subscription_count".into(), subscribers.into());
        }
        if info.user_count {
            let n = user_count(node, &nc).await;
            m.insert("user_count".into(), n.into());
        }
        out.insert(name.to_owned(), Value::Object(m));
    }
    Response::json(json!({ "channels": out }))
}

async fn channel(node: &Arc<Node>, app: &App, name: &str, info: Option<&str>) -> Response {
    if !names::valid_channel_name(name) {
        return Response::error(400, format!("Invalid channel name {name:?}"));
    }
    let info = match parse_info(info) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let kind = ChannelType::of(name);
    if info.user_count && !kind.is_presence() {
        return Response::error(400, "user_count is only for presence channels");
    }
    let nc = node_channel(app, name);
    let subscribers = subscription_count(node, &nc).await;
    let mut m = Map::new();
    m.insert("occupied".into(), (subscribers > 0).into());
    if info.subscription_count {
        m.insert("subscription_count".into(), subscribers.into());
    }
    if info.user_count {
        let n = user_count(node, &nc).await;
        m.insert("user_count".into(), n.into());
    }
    Response::json(Value::Object(m))
}

async fn users(node: &Arc<Node>, app: &App, name: &str) -> Response {
    if !names::valid_channel_name(name) || !ChannelType::of(name).is_presence() {
        return Response::error(400, "users is only for presence channels");
    }
    let nc = node_channel(app, name);
    let presence = match node.broker().presence(&nc).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(channel = %nc, error = %e, "presence failed");
            return Response::error(500, "Presence is unavailable");
        }
    };
    let mut ids: Vec<&str> = presence.values().map(|i| i.user.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let users: Vec<Value> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    Response::json(json!({ "users": users }))
}
