//! One Pusher connection: the protocol 7 session over the node's hub,
//! brokers and limits. Transport-agnostic like the Centrifugo session: the
//! adapter hands it the text of each WebSocket message
//! ([`PusherSession::handle_data`]), wakes it at [`PusherSession::poll_timeout`],
//! and writes what [`PusherSession::take_output`] returns.
//!
//! What reaches the client goes through the connection's
//! [`ClientHandle`]: the session's own replies and the fan-out's pushes,
//! which [`crate::front::Codec`] encoded once per event. Presence joins and
//! leaves arrive as internal records (`crate::front::member`) that the
//! session turns into `member_added` / `member_removed`: Pusher counts
//! users, not connections, so a user's second connection adds no member
//! and only the last one to leave removes it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::value::RawValue;
use wshub_hub::broker::{ClientInfo, HistoryFilter, HistoryOptions, Publication, PublishOptions};
use wshub_hub::hub::{ClientHandle, Control, Subscriber};
use wshub_hub::limits::TokenBucket;
use wshub_hub::metrics::ClientLimit;
use wshub_hub::node::Node;
use wshub_protocol::{Disconnect, Encoding};

use crate::app::App;
use crate::front::{self, Member};
use crate::names::{self, ChannelType};
use crate::{sign, wire};

/// How long a presence entry lives without a refresh.
const PRESENCE_TTL: Duration = Duration::from_secs(60);
/// How often the entries are refreshed.
const PRESENCE_REFRESH: Duration = Duration::from_secs(25);
/// How long a cache channel keeps its last event.
pub const CACHE_TTL: Duration = Duration::from_secs(30 * 60);

/// Pusher's close codes (4000-4099: do not reconnect; 4100-4199: reconnect
/// after a back-off; 4200-4299: reconnect at once).
pub mod close {
    /// The app key names no app.
    pub const APP_DOES_NOT_EXIST: u32 = 4001;
    /// The app is over its connection quota.
    pub const OVER_QUOTA: u32 = 4004;
    /// The path names no endpoint.
    pub const PATH_NOT_FOUND: u32 = 4005;
    /// The protocol version is not a number.
    pub const INVALID_VERSION: u32 = 4006;
    /// The protocol version is not supported.
    pub const UNSUPPORTED_PROTOCOL: u32 = 4007;
    /// No protocol version was given.
    pub const NO_PROTOCOL: u32 = 4008;
    /// Over capacity (slow consumer, message flood): reconnect after a
    /// back-off.
    pub const OVER_CAPACITY: u32 = 4100;
    /// Generic "reconnect now" (server shutting down).
    pub const RECONNECT: u32 = 4200;
    /// No pong to the server's ping.
    pub const PONG_NOT_RECEIVED: u32 = 4201;
    /// A client event refused for its rate (an error, not a close).
    pub const CLIENT_EVENT_RATE: u16 = 4301;
}

/// A disconnect with a Pusher close code.
pub fn disconnect(code: u32, reason: &str) -> Disconnect {
    Disconnect {
        code,
        reason: reason.to_owned(),
        reconnect: code >= 4100,
    }
}

/// The node's channel of an app's channel.
pub fn node_channel(app: &App, channel: &str) -> String {
    format!("{}{}", app.prefix(), channel)
}

/// A presence channel's members, by user: the connections of each user
/// and the info the first of them gave.
#[derive(Debug, Default)]
struct Members {
    users: HashMap<String, (HashSet<String>, Option<Box<RawValue>>)>,
}

impl Members {
    /// Adds a connection; true when its user is new.
    fn add(&mut self, user: &str, socket: &str, info: Option<Box<RawValue>>) -> bool {
        let e = self.users.entry(user.to_owned()).or_default();
        let new = e.0.is_empty();
        e.0.insert(socket.to_owned());
        if new {
            e.1 = info;
        }
        new
    }

    /// Removes a connection; true when its user has none left.
    fn remove(&mut self, user: &str, socket: &str) -> bool {
        let Some(e) = self.users.get_mut(user) else {
            return false;
        };
        e.0.remove(socket);
        if e.0.is_empty() {
            self.users.remove(user);
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Sub {
    kind: ChannelType,
    /// On a presence channel: this connection's member, and the channel's.
    presence: Option<Box<(Member, Members)>>,
}

/// What [`PusherSession::take_output`] hands the transport.
#[derive(Debug, Default)]
pub struct Output {
    /// JSON text messages to write, in order.
    pub messages: Vec<Bytes>,
    /// After writing them, close with this.
    pub disconnect: Option<Disconnect>,
}

/// One Pusher connection (see the module doc).
pub struct PusherSession {
    node: Arc<Node>,
    app: Arc<App>,
    handle: Arc<ClientHandle>,
    subs: HashMap<String, Sub>,
    /// Messages allowed per second (`limits.commands_per_second`; none
    /// when 0, as for the Centrifugo session).
    messages: Option<TokenBucket>,
    refused_in_a_row: u32,
    client_events: TokenBucket,
    last_seen: Instant,
    ping_sent: Option<Instant>,
    next_presence: Instant,
    shutdown_at: Option<Instant>,
    /// Counted in the app's connections until closed.
    open: bool,
}

impl std::fmt::Debug for PusherSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PusherSession")
            .field("socket_id", &self.handle.id())
            .field("app", &self.app.config().app_id)
            .finish_non_exhaustive()
    }
}

/// A random socket id in Pusher's form (`123.456`).
fn socket_id() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        b = (Instant::now().elapsed().as_nanos() as u64).to_le_bytes();
    }
    let n = u64::from_le_bytes(b);
    format!(
        "{}.{}",
        (n >> 32) % 1_000_000_000,
        (n & 0xffff_ffff) % 1_000_000_000
    )
}

impl PusherSession {
    /// Opens a session for `app`: counts the connection against the app's
    /// `max_connections` (over it, the disconnect to close with, 4004) and
    /// queues `pusher:connection_established`.
    pub fn open(node: Arc<Node>, app: Arc<App>, now: Instant) -> Result<Self, Disconnect> {
        if !app.try_connect() {
            node.metrics()
                .limit_exceeded(ClientLimit::PusherAppConnections);
            return Err(disconnect(
                close::OVER_QUOTA,
                "Application is over connection quota",
            ));
        }
        let cfg = node.config().clone();
        let handle = Arc::new(ClientHandle::new(
            socket_id(),
            Encoding::Json,
            cfg.client.queue_max_size as usize,
        ));
        let a = app.config();
        let activity = cfg.pusher.activity_timeout.as_std();
        handle.push(wire::connection_established(
            handle.id(),
            activity.as_secs(),
        ));
        let l = &cfg.limits;
        Ok(PusherSession {
            messages: (l.commands_per_second > 0)
                .then(|| TokenBucket::new(l.commands_per_second, l.commands_burst, now)),
            client_events: TokenBucket::new(
                a.max_client_events_per_second,
                a.max_client_events_per_second,
                now,
            ),
            node,
            app,
            handle,
            subs: HashMap::new(),
            refused_in_a_row: 0,
            last_seen: now,
            ping_sent: None,
            next_presence: now + PRESENCE_REFRESH,
            shutdown_at: None,
            open: true,
        })
    }

    /// The connection's queue.
    pub fn handle(&self) -> &Arc<ClientHandle> {
        &self.handle
    }

    /// The connection's `socket_id`.
    pub fn socket_id(&self) -> &str {
        self.handle.id()
    }

    fn reply(&self, frame: Bytes) {
        self.handle.push(frame);
    }

    fn error(&self, code: Option<u16>, message: &str) {
        self.reply(wire::error(code, message));
    }

    /// The session's one deadline: the next ping, the pong's, the
    /// presence refresh, the shutdown.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let p = &self.node.config().pusher;
        let mut t = match self.ping_sent {
            Some(sent) => sent + p.pong_timeout.as_std(),
            None => self.last_seen + p.activity_timeout.as_std(),
        };
        if self.subs.values().any(|s| s.presence.is_some()) {
            t = t.min(self.next_presence);
        }
        if let Some(s) = self.shutdown_at {
            t = t.min(s);
        }
        Some(t)
    }

    /// Acts on whatever is due at `now`.
    pub async fn handle_timeout(&mut self, now: Instant) -> Result<(), Disconnect> {
        let p = &self.node.config().pusher;
        if self.shutdown_at.is_some_and(|s| now >= s) {
            return Err(disconnect(close::RECONNECT, "server shutting down"));
        }
        match self.ping_sent {
            Some(sent) if now >= sent + p.pong_timeout.as_std() => {
                return Err(disconnect(
                    close::PONG_NOT_RECEIVED,
                    "Pong reply not received",
                ));
            }
            None if now >= self.last_seen + p.activity_timeout.as_std() => {
                self.ping_sent = Some(now);
                self.reply(wire::ping());
            }
            _ => {}
        }
        if now >= self.next_presence {
            self.next_presence = now + PRESENCE_REFRESH;
            for (channel, sub) in &self.subs {
                if let Some(p) = &sub.presence {
                    let _ = self
                        .node
                        .broker()
                        .add_presence(
                            &node_channel(&self.app, channel),
                            self.handle.id(),
                            p.0.info(self.handle.id()),
                            PRESENCE_TTL,
                        )
                        .await;
                }
            }
        }
        Ok(())
    }

    /// Starts a graceful shutdown: the connection is closed with 4200 (so
    /// the client reconnects to another node) at a random moment within
    /// `drain`.
    pub fn begin_shutdown(&mut self, now: Instant, drain: Duration) {
        let spread = drain.mul_f64(fastrand::f64());
        self.shutdown_at = Some(now + spread);
    }

    /// One message from the client (the text of a WebSocket message).
    pub async fn handle_data(&mut self, data: &[u8]) -> Result<(), Disconnect> {
        let now = Instant::now();
        self.last_seen = now;
        self.ping_sent = None;
        if self.messages.as_mut().is_some_and(|b| !b.try_take(now)) {
            self.node
                .metrics()
                .limit_exceeded(ClientLimit::CommandsPerSecond);
            self.refused_in_a_row += 1;
            let flood = self.node.config().limits.command_flood_disconnect;
            if flood > 0 && self.refused_in_a_row >= flood {
                self.node
                    .metrics()
                    .limit_exceeded(ClientLimit::CommandFlood);
                return Err(disconnect(close::OVER_CAPACITY, "too many messages"));
            }
            self.error(Some(close::CLIENT_EVENT_RATE), "Rate limit exceeded");
            return Ok(());
        }
        self.refused_in_a_row = 0;
        let msg = match wire::parse(data) {
            Ok(m) => m,
            Err(e) => {
                self.error(None, &format!("Invalid message: {e}"));
                return Ok(());
            }
        };
        match msg {
            wire::Incoming::Ping => self.reply(wire::pong()),
            wire::Incoming::Pong => {}
            wire::Incoming::Subscribe {
                channel,
                auth,
                channel_data,
            } => {
                self.subscribe(channel, auth, channel_data).await;
            }
            wire::Incoming::Unsubscribe { channel } => self.leave(&channel).await,
            wire::Incoming::Signin { .. } => self.error(
                None,
                "User authentication (pusher:signin) is not enabled on this server",
            ),
            wire::Incoming::ClientEvent {
                event,
                channel,
                data,
            } => self.client_event(event, channel, data).await,
            wire::Incoming::Other { .. } => {}
        }
        Ok(())
    }

    fn sub_error(&self, channel: &str, kind: &str, error: &str, status: u16) {
        self.reply(wire::subscription_error(channel, kind, error, status));
    }

    async fn subscribe(
        &mut self,
        channel: String,
        auth: Option<String>,
        channel_data: Option<String>,
    ) {
        if !names::valid_channel_name(&channel) {
            self.sub_error(
                &channel,
                "InvalidChannel",
                "Channel names are 1 to 200 of A-Z a-z 0-9 _ - = @ , . ;",
                400,
            );
            return;
        }
        if self.subs.contains_key(&channel) {
            // pusher-js subscribes again after a reconnect only; answer as
            // the first time.
            self.reply(self.succeeded(&channel));
            return;
        }
        let limit = self.node.config().client.channel_limit as usize;
        if limit > 0 && self.subs.len() >= limit {
            self.node
                .metrics()
                .limit_exceeded(ClientLimit::ChannelLimit);
            self.sub_error(
                &channel,
                "LimitReached",
                &format!("A connection may subscribe to at most {limit} channels"),
                403,
            );
            return;
        }
        let kind = ChannelType::of(&channel);
        let a = self.app.config();
        if kind.needs_auth() {
            let ok = auth.as_deref().is_some_and(|auth| {
                sign::verify_channel_auth(
                    &a.key,
                    &a.secret,
                    self.handle.id(),
                    &channel,
                    if kind.is_presence() {
                        channel_data.as_deref()
                    } else {
                        None
                    },
                    auth,
                )
            });
            if !ok {
                self.sub_error(
                    &channel,
                    "AuthError",
                    "Invalid signature: the auth does not sign this socket_id and channel",
                    401,
                );
                return;
            }
        }
        let nc = node_channel(&self.app, &channel);
        let member = if kind.is_presence() {
            let Some(cd) = channel_data.as_deref() else {
                self.sub_error(
                    &channel,
                    "AuthError",
                    "A presence channel needs channel_data",
                    400,
                );
                return;
            };
            let parsed = match wire::parse_channel_data(cd) {
                Ok(c) => c,
                Err(e) => {
                    self.sub_error(
                        &channel,
                        "AuthError",
                        &format!("Bad channel_data: {e}"),
                        400,
                    );
                    return;
                }
            };
            if cd.len() as u64 > a.max_event_size {
                self.node
                    .metrics()
                    .limit_exceeded(ClientLimit::PusherEventSize);
                self.sub_error(
                    &channel,
                    "LimitReached",
                    &format!("channel_data is over {} bytes", a.max_event_size),
                    413,
                );
                return;
            }
            Some(Member {
                user_id: parsed.user_id,
                user_info: parsed.user_info.map(|r| r.get().to_owned()),
            })
        } else {
            None
        };

        let node = self.node.clone();
        let max = a.max_presence_members as usize;
        self.handle.begin_pending(&nc);
        {
            // Held across the member check and the presence entry, so that
            // this node's subscribes to one presence channel cannot race
            // past `max_presence_members`; other nodes' are checked after.
            let _g = node.hub().sub_lock(&nc).await;
            if let Some(m) = &member {
                match presence_users(&node, &nc).await {
                    Ok(users) if max > 0 && users.len() >= max && !users.contains(&m.user_id) => {
                        self.handle.end_pending(&nc, Vec::new(), 0);
                        self.refuse_member(&channel, max);
                        return;
                    }
                    Ok(_) => {}
                    Err(()) => {
                        self.handle.end_pending(&nc, Vec::new(), 0);
                        self.sub_error(&channel, "ServerError", "presence is unavailable", 500);
                        return;
                    }
                }
                if let Err(e) = node
                    .broker()
                    .add_presence(
                        &nc,
                        self.handle.id(),
                        m.info(self.handle.id()),
                        PRESENCE_TTL,
                    )
                    .await
                {
                    tracing::warn!(channel = %nc, error = %e, "add presence failed");
                }
            }
            let first = node.hub().add(
                &nc,
                Subscriber {
                    handle: self.handle.clone(),
                    join_leave: member.is_some(),
                },
            );
            if first {
                if let Err(e) = node.broker().subscribe(&nc).await {
                    tracing::warn!(channel = %nc, error = %e, "broker subscribe failed");
                    node.hub().remove(&nc, self.handle.id());
                    if member.is_some() {
                        let _ = node.broker().remove_presence(&nc, self.handle.id()).await;
                    }
                    self.handle.end_pending(&nc, Vec::new(), 0);
                    self.sub_error(&channel, "ServerError", "subscribe failed", 500);
                    return;
                }
            }
        }
        let mut replies = Vec::new();
        let presence = match member {
            Some(m) => {
                let info = m.info(self.handle.id());
                let mut members = Members::default();
                match node.broker().presence(&nc).await {
                    Ok(p) => {
                        for (socket, i) in p {
                            let info = i
                                .chan_info
                                .as_ref()
                                .and_then(|b| std::str::from_utf8(b).ok())
                                .and_then(|s| RawValue::from_string(s.to_owned()).ok());
                            members.add(&i.user, &socket, info);
                        }
                    }
                    Err(e) => tracing::warn!(channel = %nc, error = %e, "presence failed"),
                }
                members.add(&m.user_id, self.handle.id(), m.raw_info());
                if max > 0 && members.users.len() > max {
                    // Another node's subscribe raced this one past the
                    // limit: this one steps back (both may; a retry gets
                    // in once there is room).
                    self.handle.end_pending(&nc, Vec::new(), 0);
                    self.undo_join(&nc).await;
                    self.refuse_member(&channel, max);
                    return;
                }
                let _ = node.broker().publish_join(&nc, info).await;
                Some(Box::new((m, members)))
            }
            None => None,
        };
        let sub = Sub { kind, presence };
        replies.push(succeeded_frame(&channel, &sub));
        if kind.cache {
            replies.push(self.cache_replay(&channel, &nc).await);
        }
        self.subs.insert(channel, sub);
        self.handle.end_pending(&nc, replies, 0);
    }

    fn refuse_member(&self, channel: &str, max: usize) {
        self.node
            .metrics()
            .limit_exceeded(ClientLimit::PusherPresenceMembers);
        self.sub_error(
            channel,
            "LimitReached",
            &format!("The presence channel has {max} members, its limit"),
            403,
        );
    }

    /// Takes back a subscribe that was refused after it joined.
    async fn undo_join(&self, nc: &str) {
        let node = &self.node;
        {
            let _g = node.hub().sub_lock(nc).await;
            if node.hub().remove(nc, self.handle.id()) {
                let _ = node.broker().unsubscribe(nc).await;
            }
        }
        let _ = node.broker().remove_presence(nc, self.handle.id()).await;
    }

    fn succeeded(&self, channel: &str) -> Bytes {
        match self.subs.get(channel) {
            Some(sub) => succeeded_frame(channel, sub),
            None => wire::subscription_succeeded(channel, None),
        }
    }

    /// The last event of a cache channel, or `pusher:cache_miss`.
    async fn cache_replay(&self, channel: &str, nc: &str) -> Bytes {
        let h = self
            .node
            .broker()
            .history(
                nc,
                HistoryFilter {
                    since: None,
                    limit: Some(1),
                    reverse: true,
                },
                HistoryOptions::new(1, CACHE_TTL),
            )
            .await;
        match h {
            Ok(h) => match h.publications.last() {
                Some(p) => match front::decode(&p.data) {
                    Some(env) => {
                        wire::event(channel, &env.event, &env.data, env.user_id.as_deref())
                    }
                    None => wire::cache_miss(channel),
                },
                None => wire::cache_miss(channel),
            },
            Err(e) => {
                tracing::warn!(channel = %nc, error = %e, "cache history failed");
                wire::cache_miss(channel)
            }
        }
    }

    /// Unsubscribes from `channel` (nothing when not subscribed).
    async fn leave(&mut self, channel: &str) {
        let Some(sub) = self.subs.remove(channel) else {
            return;
        };
        let nc = node_channel(&self.app, channel);
        let node = self.node.clone();
        {
            let _g = node.hub().sub_lock(&nc).await;
            if node.hub().remove(&nc, self.handle.id()) {
                let _ = node.broker().unsubscribe(&nc).await;
            }
        }
        if let Some(p) = sub.presence {
            let _ = node.broker().remove_presence(&nc, self.handle.id()).await;
            let _ = node
                .broker()
                .publish_leave(&nc, p.0.info(self.handle.id()))
                .await;
        }
    }

    async fn client_event(&mut self, event: String, channel: String, data: Box<RawValue>) {
        let a = self.app.config();
        let Some(sub) = self.subs.get(&channel) else {
            self.error(
                None,
                &format!("Client event rejected: not subscribed to {channel:?}"),
            );
            return;
        };
        if !a.enable_client_messages {
            self.error(
                None,
                "To send client events, you must enable this feature in the app's settings",
            );
            return;
        }
        if !sub.kind.allows_client_events() {
            self.error(
                None,
                "Client events are only allowed on private and presence channels \
                 (not on public or encrypted ones)",
            );
            return;
        }
        if !names::valid_event_name(&event) {
            self.error(None, "Event names are 1 to 200 bytes");
            return;
        }
        if data.get().len() as u64 > a.max_event_size {
            self.node
                .metrics()
                .limit_exceeded(ClientLimit::PusherEventSize);
            self.error(
                None,
                &format!(
                    "Client event rejected: data over {} bytes",
                    a.max_event_size
                ),
            );
            return;
        }
        if !self.client_events.try_take(Instant::now()) {
            self.node
                .metrics()
                .limit_exceeded(ClientLimit::PusherClientEvents);
            self.error(
                Some(close::CLIENT_EVENT_RATE),
                "Client event rejected due to rate limit",
            );
            return;
        }
        let user_id = sub.presence.as_ref().map(|p| p.0.user_id.clone());
        let kind = sub.kind;
        let env = front::Envelope {
            event,
            data,
            user_id: user_id.clone(),
        };
        let mut publication = Publication::new(front::encode(&env));
        publication.info = Some(ClientInfo::new(
            user_id.unwrap_or_default(),
            self.handle.id(),
        ));
        let nc = node_channel(&self.app, &channel);
        if let Err(e) = self
            .node
            .broker()
            .publish(&nc, publication, publish_options(kind))
            .await
        {
            tracing::warn!(channel = %nc, error = %e, "client event publish failed");
            self.error(None, "Client event could not be delivered");
        }
    }

    /// Everything for the client: the queue drained, presence records
    /// turned into member events, the node's actions applied.
    pub fn take_output(&mut self) -> Output {
        let d = self.handle.drain();
        let mut messages = Vec::with_capacity(d.frames.len());
        for f in d.frames {
            match front::member_record(&f) {
                Some((joined, channel_nc, member, socket)) => {
                    if let Some(m) = self.member_event(joined, channel_nc, member, socket) {
                        messages.push(m);
                    }
                }
                None => messages.push(f),
            }
        }
        let mut disconnect = d.disconnect.map(|d| {
            if d.code == wshub_protocol::DisconnectCode::SLOW.0 {
                self::disconnect(close::OVER_CAPACITY, "slow consumer")
            } else {
                d
            }
        });
        for c in d.controls {
            if let Control::Disconnect(d) = c {
                disconnect.get_or_insert(d);
            }
        }
        Output {
            messages,
            disconnect,
        }
    }

    fn member_event(
        &mut self,
        joined: bool,
        channel_nc: &str,
        member: Member,
        socket: &str,
    ) -> Option<Bytes> {
        let channel = channel_nc.strip_prefix(self.app.prefix())?;
        let sub = self.subs.get_mut(channel)?;
        let p = sub.presence.as_mut()?;
        if joined {
            let info = member.raw_info();
            let user_info = info.as_deref().map(|r| r.to_owned());
            p.1.add(&member.user_id, socket, info)
                .then(|| wire::member_added(channel, &member.user_id, user_info.as_deref()))
        } else {
            p.1.remove(&member.user_id, socket)
                .then(|| wire::member_removed(channel, &member.user_id))
        }
    }

    /// Ends the session: leaves every channel and gives the app its
    /// connection back. Call once, when the transport closes.
    pub async fn close(&mut self) {
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for c in channels {
            self.leave(&c).await;
        }
        if std::mem::take(&mut self.open) {
            self.app.disconnect();
        }
    }
}

/// The distinct users present in a node channel.
async fn presence_users(node: &Node, nc: &str) -> Result<HashSet<String>, ()> {
    match node.broker().presence(nc).await {
        Ok(p) => Ok(p.into_values().map(|i| i.user).collect()),
        Err(e) => {
            tracing::warn!(channel = %nc, error = %e, "presence failed");
            Err(())
        }
    }
}

fn succeeded_frame(channel: &str, sub: &Sub) -> Bytes {
    match &sub.presence {
        Some(p) => {
            let mut members: Vec<(String, Option<Box<RawValue>>)> =
                p.1.users
                    .iter()
                    .map(|(u, (_, info))| (u.clone(), info.clone()))
                    .collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            wire::subscription_succeeded(channel, Some(&wire::Presence { members }))
        }
        None => wire::subscription_succeeded(channel, None),
    }
}

/// How an app's event is published: a cache channel keeps its last event
/// for [`CACHE_TTL`]; the others keep nothing.
pub fn publish_options(kind: ChannelType) -> PublishOptions {
    if kind.cache {
        PublishOptions::default().history(1, CACHE_TTL)
    } else {
        PublishOptions::default()
    }
}

impl Drop for PusherSession {
    fn drop(&mut self) {
        if std::mem::take(&mut self.open) {
            self.app.disconnect();
        }
    }
}
