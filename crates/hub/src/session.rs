//! [`Session`]: the state machine of one client connection, independent of
//! the transport. The transport feeds it frames of commands
//! ([`Session::handle_frame`]) and actions from the node
//! ([`Session::handle_control`]); the session answers by queueing encoded
//! replies on its [`ClientHandle`], the same queue the fan-out pushes into,
//! so a subscribe reply always precedes the channel's publications.
//!
//! States: connecting (only `connect` is accepted) → connected → closed.
//! A protocol violation ends the session with a [`Disconnect`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wshub_protocol::{
    decode_commands, encode_reply, Command, ConnectRequest, ConnectResult, Disconnect,
    DisconnectCode, Encoding, ErrorCode, HistoryRequest, HistoryResult, PresenceResult,
    PresenceStatsResult, PublishRequest, PublishResult, RefreshResult, Reply, Request,
    SubRefreshResult, Subscribe, SubscribeRequest, SubscribeResult, UnsubscribeCode,
    UnsubscribeResult,
};

use crate::auth::{AuthError, SubscribeOptions};
use crate::broker::{
    self, recover, HistoryFilter, HistoryOptions, PublishOptions, RecoverOptions, StreamPosition,
};
use crate::config::{channel_options, ChannelError, ChannelOptions};
use crate::hub::{ClientHandle, Control, Subscriber};
use crate::limits::TokenBucket;
use crate::metrics::ClientLimit;
use crate::node::{random_id, to_proto_info, to_proto_publication, Node};

/// How long a presence entry lives without refresh.
pub const PRESENCE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Connected,
    Closed,
}

#[derive(Debug, Clone)]
struct Sub {
    /// When the subscription token expires (Unix seconds), if it does.
    exp: Option<u64>,
    presence: bool,
    join_leave: bool,
    info: broker::ClientInfo,
}

/// What a command asked for in a subscription.
#[derive(Debug, Default, Clone)]
struct SubRequest {
    recover: Option<StreamPosition>,
    recoverable: bool,
    positioned: bool,
    join_leave: bool,
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct Session {
    node: Arc<Node>,
    handle: Arc<ClientHandle>,
    state: State,
    user: String,
    conn_info: Option<Bytes>,
    exp: Option<u64>,
    subs: HashMap<String, Sub>,
    pong_seen: bool,
    /// `limits.commands_per_second`, when set.
    commands: Option<TokenBucket>,
    /// Commands refused in a row by the rate limit.
    refused_in_a_row: u32,
}

type CmdResult = Result<Option<Reply>, Disconnect>;

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unix_now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn err(id: u32, code: ErrorCode) -> CmdResult {
    Ok(Some(Reply::error(id, code)))
}

fn bad_request() -> Disconnect {
    DisconnectCode::BAD_REQUEST.to_disconnect()
}

fn ttl_of(exp: Option<u64>) -> (bool, u32) {
    match exp {
        Some(e) => (true, e.saturating_sub(now_unix()) as u32),
        None => (false, 0),
    }
}

impl Session {
    /// A new session on `node` for a client speaking `encoding`.
    pub fn new(node: Arc<Node>, encoding: Encoding) -> Self {
        let max = node.config().client.queue_max_size as usize;
        let handle = Arc::new(ClientHandle::new(random_id(), encoding, max));
        let l = &node.config().limits;
        let commands = (l.commands_per_second > 0)
            .then(|| TokenBucket::new(l.commands_per_second, l.commands_burst, Instant::now()));
        node.metrics().connection_accepted();
        Session {
            node,
            handle,
            state: State::Connecting,
            user: String::new(),
            conn_info: None,
            exp: None,
            subs: HashMap::new(),
            pong_seen: false,
            commands,
            refused_in_a_row: 0,
        }
    }

    /// The outbound queue the transport drains.
    pub fn handle(&self) -> &Arc<ClientHandle> {
        &self.handle
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.handle.id()
    }

    /// The user id (empty before connect and for anonymous users).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether the connect command succeeded.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// When the connection's credentials expire (Unix seconds), if they do.
    /// A refresh command with a new token moves it.
    pub fn expires_at(&self) -> Option<u64> {
        self.exp
    }

    /// Whether a pong came since the last call (and resets the flag).
    pub fn take_pong(&mut self) -> bool {
        std::mem::take(&mut self.pong_seen)
    }

    fn encoding(&self) -> Encoding {
        self.handle.encoding()
    }

    fn enqueue(&self, reply: &Reply) -> Option<Bytes> {
        match encode_reply(self.encoding(), reply) {
            Ok(b) => Some(self.node.frame(self.encoding(), b)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode reply");
                None
            }
        }
    }

    /// Queues a reply. On overflow the handle is marked slow (3008) and
    /// the transport ends the session; [`Session::close`] counts it.
    fn queue(&self, reply: &Reply) {
        if let Some(f) = self.enqueue(reply) {
            self.handle.push(f);
        }
    }

    fn info(&self, chan_info: Option<Bytes>) -> broker::ClientInfo {
        broker::ClientInfo {
            user: self.user.clone(),
            client: self.client_id().to_owned(),
            conn_info: self.conn_info.clone(),
            chan_info,
        }
    }

    /// Decodes a frame of commands and handles each in order, queueing the
    /// replies. An undecodable frame ends the session with 3501.
    ///
    /// Cancel safety: not cancel safe (a command may be half applied).
    pub async fn handle_frame(&mut self, frame: &[u8]) -> Result<(), Disconnect> {
        let commands = decode_commands(self.encoding(), frame).map_err(|e| {
            tracing::debug!(client = %self.client_id(), error = %e, "bad frame");
            e.disconnect_code().to_disconnect()
        })?;
        for cmd in commands {
            if cmd.is_pong() {
                self.pong_seen = true;
                continue;
            }
            if !self.take_command_token()? {
                // Over the rate: error 111 for this command (nothing for
                // an id-less `send`, which has no reply).
                if cmd.id != 0 {
                    self.queue(&Reply::error(cmd.id, ErrorCode::TOO_MANY_REQUESTS));
                }
                continue;
            }
            let method = cmd.request().map(|r| r.method());
            let started = Instant::now();
            let reply = self.handle_command(cmd).await?;
            if let Some(m) = method {
                self.node.metrics().observe_command(m, started.elapsed());
            }
            if let Some(reply) = reply {
                self.queue(&reply);
            }
        }
        Ok(())
    }

    /// Takes a token for one command: `Ok(false)` when over
    /// `limits.commands_per_second`, `Err` (3013) after
    /// `limits.command_flood_disconnect` refusals in a row.
    fn take_command_token(&mut self) -> Result<bool, Disconnect> {
        let Some(bucket) = &mut self.commands else {
            return Ok(true);
        };
        if bucket.try_take(Instant::now()) {
            self.refused_in_a_row = 0;
            return Ok(true);
        }
        self.refused_in_a_row += 1;
        let metrics = self.node.metrics();
        metrics.limit_exceeded(ClientLimit::CommandsPerSecond);
        let flood = self.node.config().limits.command_flood_disconnect;
        if flood > 0 && self.refused_in_a_row >= flood {
            tracing::debug!(client = %self.client_id(), "command flood: disconnecting");
            metrics.limit_exceeded(ClientLimit::CommandFlood);
            return Err(DisconnectCode::TOO_MANY_REQUESTS.to_disconnect());
        }
        if self.refused_in_a_row == 1 {
            tracing::debug!(client = %self.client_id(), "command rate limit exceeded");
        }
        Ok(false)
    }

    /// Handles one command; returns the reply to queue (`None` when there is
    /// none or it was queued already).
    ///
    /// Cancel safety: not cancel safe.
    pub async fn handle_command(&mut self, cmd: Command) -> CmdResult {
        let id = cmd.id;
        let Some(req) = cmd.request() else {
            // A method this server does not know (unknown fields are
            // skipped when decoding): error 104 once connected, as the
            // codes define it; before connect it is a bad request.
            if id != 0 && self.state == State::Connected {
                return err(id, ErrorCode::METHOD_NOT_FOUND);
            }
            return Err(bad_request());
        };
        self.node.metrics().command(req.method());
        if self.state == State::Closed {
            return Err(DisconnectCode::CONNECTION_CLOSED.to_disconnect());
        }
        if let Request::Connect(c) = req {
            if self.state != State::Connecting {
                return Err(bad_request());
            }
            let c = c.clone();
            return self.connect(id, c).await;
        }
        if self.state != State::Connected {
            return Err(bad_request());
        }
        if id == 0 && !matches!(req, Request::Send(_)) {
            return Err(bad_request());
        }
        match req {
            Request::Connect(_) => unreachable!("handled above"),
            Request::Subscribe(s) => {
                let s = s.clone();
                self.subscribe_cmd(id, s).await
            }
            Request::Unsubscribe(u) => {
                let ch = u.channel.clone();
                self.leave(&ch).await;
                Ok(Some(Reply {
                    id,
                    unsubscribe: Some(UnsubscribeResult {}),
                    ..Default::default()
                }))
            }
            Request::Publish(p) => {
                let p = p.clone();
                self.publish(id, p).await
            }
            Request::Presence(p) => {
                let ch = p.channel.clone();
                self.presence(id, &ch, false).await
            }
            Request::PresenceStats(p) => {
                let ch = p.channel.clone();
                self.presence(id, &ch, true).await
            }
            Request::History(h) => {
                let h = h.clone();
                self.history(id, h).await
            }
            Request::Ping(_) => Ok(Some(Reply {
                id,
                ping: Some(Default::default()),
                ..Default::default()
            })),
            Request::Send(_) => Ok(None),
            Request::Rpc(_) => err(id, ErrorCode::NOT_AVAILABLE),
            Request::Refresh(r) => {
                let token = r.token.clone();
                self.refresh(id, &token).await
            }
            Request::SubRefresh(r) => {
                let (ch, token) = (r.channel.clone(), r.token.clone());
                self.sub_refresh(id, &ch, &token).await
            }
            #[allow(unreachable_patterns)]
            _ => err(id, ErrorCode::METHOD_NOT_FOUND),
        }
    }

    async fn connect(&mut self, id: u32, req: ConnectRequest) -> CmdResult {
        let cfg = self.node.config().clone();
        let mut server_subs: Vec<(String, Option<SubscribeOptions>)> = Vec::new();
        if !req.token.is_empty() {
            match self
                .node
                .verifiers()
                .connect
                .verify_connect(&req.token)
                .await
            {
                Ok(claims) => {
                    if claims.user.is_empty() && cfg.client.disallow_anonymous_connection_tokens {
                        return Err(DisconnectCode::INVALID_TOKEN.to_disconnect());
                    }
                    self.user = claims.user.clone();
                    self.conn_info = claims.info.clone();
                    self.exp = claims.exp;
                    server_subs = claims
                        .server_side_subscriptions()
                        .map(|(c, o)| (c.to_owned(), o.cloned()))
                        .collect();
                }
                Err(e) if e.is_expired() => return err(id, ErrorCode::TOKEN_EXPIRED),
                Err(e) if e.is_temporary() => return err(id, ErrorCode::INTERNAL),
                Err(e) => {
                    tracing::info!(error = %e, "connect with an invalid token");
                    return Err(DisconnectCode::INVALID_TOKEN.to_disconnect());
                }
            }
        } else if !(cfg.client.allow_anonymous_connect_without_token || cfg.client.insecure) {
            tracing::info!("connect without a token refused");
            return Err(bad_request());
        }
        let limit = cfg.client.connection_limit as usize;
        if limit > 0 && self.node.hub().client_counts().0 >= limit {
            return Err(DisconnectCode::CONNECTION_LIMIT.to_disconnect());
        }
        let per_user = cfg.client.user_connection_limit as usize;
        if per_user > 0
            && !self.user.is_empty()
            && self.node.hub().user_client_count(&self.user) >= per_user
        {
            return Err(DisconnectCode::CONNECTION_LIMIT.to_disconnect());
        }
        if cfg.client.subscribe_to_user_personal_channel.enabled && !self.user.is_empty() {
            server_subs.push((cfg.personal_channel(&self.user), None));
        }
        self.state = State::Connected;
        self.node.hub().add_user(&self.user, self.handle.clone());
        let (expires, ttl) = ttl_of(self.exp);
        let mut result = ConnectResult {
            client: self.client_id().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            expires,
            ttl,
            ping: cfg.client.ping_interval.as_std().as_secs() as u32,
            pong: true,
            node: self.node.id().to_owned(),
            ..Default::default()
        };
        if cfg.client.connect_include_server_time {
            result.time = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
        }
        let mut after = Vec::new();
        for (channel, opts) in server_subs {
            let Ok(resolved) = channel_options(&cfg, &channel) else {
                tracing::warn!(%channel, "server-side subscription to an unknown channel skipped");
                continue;
            };
            let options = resolved.options.clone();
            let prev = req.subs.get(&channel);
            let sreq = SubRequest {
                recover: prev
                    .filter(|p| p.recover)
                    .map(|p| StreamPosition::new(p.offset, p.epoch.clone())),
                recoverable: true,
                positioned: true,
                join_leave: true,
            };
            let chan_info = opts.as_ref().and_then(|o| o.info.clone());
            self.handle.begin_pending(&channel);
            match self.join(&channel, &options, &sreq, chan_info).await {
                Ok((res, top)) => {
                    result.subs.insert(channel.clone(), res);
                    after.push((channel, top));
                }
                Err(_) => {
                    self.handle.end_pending(&channel, None, 0);
                }
            }
        }
        let reply = Reply {
            id,
            connect: Some(result),
            ..Default::default()
        };
        self.queue(&reply);
        for (channel, top) in after {
            self.handle.end_pending(&channel, None, top);
        }
        Ok(None)
    }

    /// Subscribes this client (permissions already checked): hub, broker,
    /// presence, join, and the subscribe result with recovery. Returns the
    /// result and the stream top the reply covers.
    async fn join(
        &mut self,
        channel: &str,
        opts: &ChannelOptions,
        req: &SubRequest,
        chan_info: Option<Bytes>,
    ) -> Result<(SubscribeResult, u64), ErrorCode> {
        let node = self.node.clone();
        let push_join_leave = opts.join_leave && (opts.force_push_join_leave || req.join_leave);
        {
            let _g = node.hub().sub_lock(channel).await;
            let first = node.hub().add(
                channel,
                Subscriber {
                    handle: self.handle.clone(),
                    join_leave: push_join_leave,
                },
            );
            if first {
                if let Err(e) = node.broker().subscribe(channel).await {
                    tracing::warn!(channel, error = %e, "broker subscribe failed");
                    node.hub().remove(channel, self.client_id());
                    return Err(ErrorCode::INTERNAL);
                }
            }
        }
        let info = self.info(chan_info);
        self.subs.insert(
            channel.to_owned(),
            Sub {
                exp: None,
                presence: opts.presence,
                join_leave: opts.join_leave,
                info: info.clone(),
            },
        );
        let mut res = SubscribeResult::default();
        let mut top = 0;
        if opts.history_enabled() {
            let recoverable = opts.force_recovery || (opts.allow_recovery && req.recoverable);
            let positioned =
                recoverable || opts.force_positioning || (opts.allow_positioning && req.positioned);
            let hist = HistoryOptions::new(opts.history_size as usize, opts.history_ttl.as_std());
            if recoverable {
                if let Some(since) = &req.recover {
                    let ro = RecoverOptions::default()
                        .max_publications(
                            node.config().client.recovery_max_publication_limit as usize,
                        )
                        .history(hist.clone());
                    match recover(node.broker().as_ref(), channel, since, &ro).await {
                        Ok(r) => {
                            res.was_recovering = true;
                            res.recovered = r.recovered;
                            res.publications = r
                                .publications
                                .iter()
                                .map(|p| to_proto_publication(p))
                                .collect();
                            res.offset = r.position.offset;
                            res.epoch = r.position.epoch;
                        }
                        Err(e) => {
                            tracing::warn!(channel, error = %e, "recovery failed");
                            self.leave(channel).await;
                            return Err(ErrorCode::INTERNAL);
                        }
                    }
                }
            }
            if positioned && !res.was_recovering {
                match node
                    .broker()
                    .history(channel, HistoryFilter::position_only(), hist)
                    .await
                {
                    Ok(h) => {
                        res.offset = h.position.offset;
                        res.epoch = h.position.epoch;
                    }
                    Err(e) => {
                        tracing::warn!(channel, error = %e, "history position failed");
                        self.leave(channel).await;
                        return Err(ErrorCode::INTERNAL);
                    }
                }
            }
            res.recoverable = recoverable;
            res.positioned = positioned;
            top = res.offset;
            node.hub()
                .note_position(channel, &StreamPosition::new(res.offset, res.epoch.clone()));
        }
        if opts.presence {
            if let Err(e) = node
                .broker()
                .add_presence(channel, self.client_id(), info.clone(), PRESENCE_TTL)
                .await
            {
                tracing::warn!(channel, error = %e, "add presence failed");
            }
        }
        if opts.join_leave {
            let _ = node.broker().publish_join(channel, info).await;
        }
        Ok((res, top))
    }

    /// Unsubscribes from `channel` (no-op when not subscribed).
    async fn leave(&mut self, channel: &str) {
        let Some(sub) = self.subs.remove(channel) else {
            return;
        };
        let node = self.node.clone();
        {
            let _g = node.hub().sub_lock(channel).await;
            if node.hub().remove(channel, self.client_id()) {
                let _ = node.broker().unsubscribe(channel).await;
            }
        }
        if sub.presence {
            let _ = node
                .broker()
                .remove_presence(channel, self.client_id())
                .await;
        }
        if sub.join_leave {
            let _ = node.broker().publish_leave(channel, sub.info).await;
        }
    }

    async fn subscribe_cmd(&mut self, id: u32, s: SubscribeRequest) -> CmdResult {
        let channel = s.channel.clone();
        if channel.is_empty() {
            return Err(bad_request());
        }
        let cfg = self.node.config().clone();
        let resolved = match channel_options(&cfg, &channel) {
            Ok(r) => r,
            Err(ChannelError::Empty) => return Err(bad_request()),
            Err(e) => return err(id, ErrorCode(e.code())),
        };
        if self.subs.contains_key(&channel) {
            return err(id, ErrorCode::ALREADY_SUBSCRIBED);
        }
        let limit = cfg.client.channel_limit as usize;
        if limit > 0 && self.subs.len() >= limit {
            return err(id, ErrorCode::LIMIT_EXCEEDED);
        }
        if s.tf.is_some() {
            // A tags filter needs `allow_tags_filter`, which wshub does not
            // implement (validation refuses the key): like Centrifugo in a
            // namespace without it, 107 bad request, never a subscription
            // that delivers what the filter would drop.
            tracing::debug!(client = %self.client_id(), %channel, "tags filter refused");
            return err(id, ErrorCode::BAD_REQUEST);
        }
        // `delta` (fossil) is not negotiated: as Centrifugo does when the
        // namespace's `allowed_delta_types` does not have it, the
        // subscription goes on with `delta: false` in the reply and full
        // publications.
        let opts = resolved.options.clone();
        let mut chan_info = None;
        let mut sub_exp = None;
        if !s.token.is_empty() {
            match self
                .node
                .verifiers()
                .subscribe
                .verify_subscribe(&s.token, &channel, &self.user, self.client_id())
                .await
            {
                Ok(claims) => {
                    chan_info = claims.options.info;
                    sub_exp = claims.exp;
                }
                Err(AuthError::Expired) => return err(id, ErrorCode::TOKEN_EXPIRED),
                Err(e) if e.is_temporary() => return err(id, ErrorCode::INTERNAL),
                Err(
                    AuthError::ChannelMismatch { .. }
                    | AuthError::UserMismatch { .. }
                    | AuthError::ClientMismatch,
                ) => return Err(DisconnectCode::INVALID_TOKEN.to_disconnect()),
                Err(_) => return err(id, ErrorCode::PERMISSION_DENIED),
            }
        } else if resolved.private {
            return err(id, ErrorCode::PERMISSION_DENIED);
        } else if resolved.user_limited {
            if !resolved.user_allowed(&self.user) {
                return err(id, ErrorCode::PERMISSION_DENIED);
            }
        } else {
            let anon_ok = !self.user.is_empty() || opts.allow_subscribe_for_anonymous;
            if !(opts.allow_subscribe_for_client && anon_ok) {
                return err(id, ErrorCode::PERMISSION_DENIED);
            }
        }
        let req = SubRequest {
            recover: s
                .recover
                .then(|| StreamPosition::new(s.offset, s.epoch.clone())),
            recoverable: s.recoverable,
            positioned: s.positioned,
            join_leave: s.join_leave,
        };
        self.handle.begin_pending(&channel);
        match self.join(&channel, &opts, &req, chan_info).await {
            Ok((mut res, top)) => {
                // The SDK refreshes the subscription token before `ttl`;
                // without a refresh the subscription ends with 2501 (see
                // `expire_subscriptions`).
                (res.expires, res.ttl) = ttl_of(sub_exp);
                if let Some(sub) = self.subs.get_mut(&channel) {
                    sub.exp = sub_exp;
                }
                let reply = Reply {
                    id,
                    subscribe: Some(res),
                    ..Default::default()
                };
                let frame = self.enqueue(&reply);
                self.handle.end_pending(&channel, frame, top);
                Ok(None)
            }
            Err(code) => {
                self.handle.end_pending(&channel, None, 0);
                err(id, code)
            }
        }
    }

    async fn publish(&mut self, id: u32, p: PublishRequest) -> CmdResult {
        let cfg = self.node.config().clone();
        let resolved = match channel_options(&cfg, &p.channel) {
            Ok(r) => r,
            Err(e) => return err(id, ErrorCode(e.code())),
        };
        let o = resolved.options;
        let subscribed = self.subs.get(&p.channel);
        let anon_ok = !self.user.is_empty() || o.allow_publish_for_anonymous;
        let allowed = anon_ok
            && (o.allow_publish_for_client
                || (o.allow_publish_for_subscriber && subscribed.is_some()));
        if !allowed {
            return err(id, ErrorCode::PERMISSION_DENIED);
        }
        let chan_info = subscribed.and_then(|s| s.info.chan_info.clone());
        let publication = broker::Publication {
            data: p.data.clone(),
            info: Some(self.info(chan_info)),
            ..Default::default()
        };
        match self
            .node
            .broker()
            .publish(&p.channel, publication, publish_options(&cfg, o))
            .await
        {
            Ok(_) => Ok(Some(Reply {
                id,
                publish: Some(PublishResult {}),
                ..Default::default()
            })),
            Err(e) => {
                tracing::warn!(channel = %p.channel, error = %e, "publish failed");
                err(id, ErrorCode::INTERNAL)
            }
        }
    }

    async fn presence(&mut self, id: u32, channel: &str, stats: bool) -> CmdResult {
        let cfg = self.node.config().clone();
        let o = match channel_options(&cfg, channel) {
            Ok(r) => r.options,
            Err(e) => return err(id, ErrorCode(e.code())),
        };
        if !o.presence {
            return err(id, ErrorCode::NOT_AVAILABLE);
        }
        let anon_ok = !self.user.is_empty() || o.allow_presence_for_anonymous;
        let allowed = anon_ok
            && (o.allow_presence_for_client
                || (o.allow_presence_for_subscriber && self.subs.contains_key(channel)));
        if !allowed {
            return err(id, ErrorCode::PERMISSION_DENIED);
        }
        let b = self.node.broker();
        if stats {
            match b.presence_stats(channel).await {
                Ok(s) => Ok(Some(Reply {
                    id,
                    presence_stats: Some(PresenceStatsResult {
                        num_clients: s.num_clients as u32,
                        num_users: s.num_users as u32,
                    }),
                    ..Default::default()
                })),
                Err(_) => err(id, ErrorCode::INTERNAL),
            }
        } else {
            match b.presence(channel).await {
                Ok(p) => Ok(Some(Reply {
                    id,
                    presence: Some(PresenceResult {
                        presence: p
                            .iter()
                            .map(|(k, v)| (k.clone(), to_proto_info(v)))
                            .collect(),
                    }),
                    ..Default::default()
                })),
                Err(_) => err(id, ErrorCode::INTERNAL),
            }
        }
    }

    async fn history(&mut self, id: u32, h: HistoryRequest) -> CmdResult {
        let cfg = self.node.config().clone();
        let o = match channel_options(&cfg, &h.channel) {
            Ok(r) => r.options,
            Err(e) => return err(id, ErrorCode(e.code())),
        };
        if !o.history_enabled() {
            return err(id, ErrorCode::NOT_AVAILABLE);
        }
        let anon_ok = !self.user.is_empty() || o.allow_history_for_anonymous;
        let allowed = anon_ok
            && (o.allow_history_for_client
                || (o.allow_history_for_subscriber && self.subs.contains_key(&h.channel)));
        if !allowed {
            return err(id, ErrorCode::PERMISSION_DENIED);
        }
        let max = cfg.client.history_max_publication_limit as usize;
        match run_history(
            &self.node,
            &h.channel,
            o,
            h.limit,
            h.since.map(|s| StreamPosition::new(s.offset, s.epoch)),
            h.reverse,
            max,
        )
        .await
        {
            Ok(r) => Ok(Some(Reply {
                id,
                history: Some(r),
                ..Default::default()
            })),
            Err(code) => err(id, code),
        }
    }

    async fn refresh(&mut self, id: u32, token: &str) -> CmdResult {
        match self.node.verifiers().connect.verify_connect(token).await {
            Ok(c) if c.user == self.user => {
                self.exp = c.exp;
                let (expires, ttl) = ttl_of(self.exp);
                Ok(Some(Reply {
                    id,
                    refresh: Some(RefreshResult {
                        client: self.client_id().to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        expires,
                        ttl,
                    }),
                    ..Default::default()
                }))
            }
            Ok(_) => Err(DisconnectCode::INVALID_TOKEN.to_disconnect()),
            Err(e) if e.is_expired() => err(id, ErrorCode::TOKEN_EXPIRED),
            Err(e) if e.is_temporary() => err(id, ErrorCode::INTERNAL),
            Err(_) => Err(DisconnectCode::INVALID_TOKEN.to_disconnect()),
        }
    }

    async fn sub_refresh(&mut self, id: u32, channel: &str, token: &str) -> CmdResult {
        if !self.subs.contains_key(channel) {
            return err(id, ErrorCode::PERMISSION_DENIED);
        }
        match self
            .node
            .verifiers()
            .subscribe
            .verify_subscribe(token, channel, &self.user, self.client_id())
            .await
        {
            Ok(c) => {
                let (expires, ttl) = ttl_of(c.exp);
                if let Some(sub) = self.subs.get_mut(channel) {
                    sub.exp = c.exp;
                }
                Ok(Some(Reply {
                    id,
                    sub_refresh: Some(SubRefreshResult {
                        expires,
                        ttl,
                        ..Default::default()
                    }),
                    ..Default::default()
                }))
            }
            Err(e) if e.is_expired() => Ok(Some(Reply {
                id,
                sub_refresh: Some(SubRefreshResult {
                    expires: true,
                    ..Default::default()
                }),
                ..Default::default()
            })),
            Err(e) if e.is_temporary() => err(id, ErrorCode::INTERNAL),
            Err(_) => Err(DisconnectCode::INVALID_TOKEN.to_disconnect()),
        }
    }

    /// Unsubscribes from `channel` (if subscribed) and tells the client with
    /// an unsubscribe push carrying `code`.
    async fn server_unsubscribe(&mut self, channel: String, code: UnsubscribeCode) {
        if self.subs.contains_key(&channel) {
            self.leave(&channel).await;
            let push = wshub_protocol::Push::unsubscribe(channel, code.to_unsubscribe());
            self.queue(&Reply::from_push(push));
        }
    }

    /// Applies an action from the node. `Err` means: close with it.
    ///
    /// Cancel safety: not cancel safe.
    pub async fn handle_control(&mut self, c: Control) -> Result<(), Disconnect> {
        match c {
            Control::Disconnect(d) => Err(d),
            Control::Refresh { expire_at, info } => {
                if expire_at.is_some() {
                    self.exp = expire_at;
                }
                if info.is_some() {
                    self.conn_info = info;
                }
                Ok(())
            }
            Control::Unsubscribe(channel) => {
                self.server_unsubscribe(channel, UnsubscribeCode::SERVER)
                    .await;
                Ok(())
            }
            Control::InsufficientState(channel) => {
                self.server_unsubscribe(channel, UnsubscribeCode::INSUFFICIENT_STATE)
                    .await;
                Ok(())
            }
            Control::Subscribe {
                channel,
                info,
                data,
                recover_since,
            } => {
                if self.subs.contains_key(&channel) || self.state != State::Connected {
                    return Ok(());
                }
                let cfg = self.node.config().clone();
                let Ok(resolved) = channel_options(&cfg, &channel) else {
                    return Ok(());
                };
                let opts = resolved.options.clone();
                let req = SubRequest {
                    recover: recover_since,
                    recoverable: true,
                    positioned: true,
                    join_leave: true,
                };
                self.handle.begin_pending(&channel);
                match self.join(&channel, &opts, &req, info).await {
                    Ok((res, top)) => {
                        let push = wshub_protocol::Push::subscribe(
                            channel.clone(),
                            Subscribe {
                                recoverable: res.recoverable,
                                epoch: res.epoch,
                                offset: res.offset,
                                positioned: res.positioned,
                                data: data.unwrap_or_default(),
                            },
                        );
                        // The recovered publications follow the subscribe
                        // push, before any live one (the pending queue holds
                        // those until `end_pending`).
                        // Each is a complete WebSocket frame: back to back
                        // they still go out in one write.
                        let mut frames = bytes::BytesMut::new();
                        frames.extend(self.enqueue(&Reply::from_push(push)));
                        for p in res.publications {
                            let push = wshub_protocol::Push::publication(channel.clone(), p);
                            frames.extend(self.enqueue(&Reply::from_push(push)));
                        }
                        let frame = (!frames.is_empty()).then(|| frames.freeze());
                        self.handle.end_pending(&channel, frame, top);
                    }
                    Err(_) => {
                        self.handle.end_pending(&channel, None, 0);
                    }
                }
                Ok(())
            }
        }
    }

    /// How long until the earliest subscription token expiry plus
    /// `client.expired_sub_close_delay` (zero when already due), if any
    /// subscription expires.
    pub fn next_sub_expiry(&self) -> Option<Duration> {
        let delay = self.node.config().client.expired_sub_close_delay.as_std();
        let now = unix_now_ms();
        self.subs.values().filter_map(|s| s.exp).min().map(|exp| {
            let due = u128::from(exp) * 1000 + delay.as_millis();
            Duration::from_millis(due.saturating_sub(now) as u64)
        })
    }

    /// Ends every subscription whose token expired more than
    /// `client.expired_sub_close_delay` ago without a `sub_refresh`: the
    /// client gets an unsubscribe push with 2501 (subscription expired) and
    /// resubscribes with a new token. Returns how many ended.
    ///
    /// Cancel safety: not cancel safe.
    pub async fn expire_subscriptions(&mut self) -> usize {
        let delay = self.node.config().client.expired_sub_close_delay.as_std();
        let now = unix_now_ms();
        let due: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| {
                s.exp
                    .is_some_and(|exp| u128::from(exp) * 1000 + delay.as_millis() <= now)
            })
            .map(|(c, _)| c.clone())
            .collect();
        for channel in &due {
            tracing::debug!(client = %self.client_id(), %channel, "subscription expired");
            self.leave(channel).await;
            self.node.metrics().subscription_expired();
            let push = wshub_protocol::Push::unsubscribe(
                channel.clone(),
                UnsubscribeCode::EXPIRED.to_unsubscribe(),
            );
            self.queue(&Reply::from_push(push));
        }
        due.len()
    }

    /// Refreshes the presence entries of this client (call every
    /// `client.presence_update_interval`).
    pub async fn refresh_presence(&mut self) {
        for (channel, sub) in &self.subs {
            if sub.presence {
                let _ = self
                    .node
                    .broker()
                    .add_presence(channel, self.handle.id(), sub.info.clone(), PRESENCE_TTL)
                    .await;
            }
        }
    }

    /// Ends the session: leaves every channel and unregisters the client.
    /// Call once when the transport closes, with the disconnect (if any).
    pub async fn close(&mut self, reason: Option<&Disconnect>) {
        if self.state == State::Closed {
            return;
        }
        let was_connected = self.state == State::Connected;
        self.state = State::Closed;
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for c in channels {
            self.leave(&c).await;
        }
        if was_connected {
            self.node.hub().remove_user(&self.user, self.handle.id());
        }
        if self.handle.is_slow() {
            // Counted here, once per client, whichever push overflowed its
            // queue (a fan-out, a reply, an action from the node).
            self.node.metrics().slow_disconnect();
        }
        let code = reason.map_or(DisconnectCode::CONNECTION_CLOSED.0, |d| d.code);
        self.node.metrics().disconnect(code);
    }
}

/// Publish options for a channel's history settings.
pub fn publish_options(cfg: &crate::config::Config, o: &ChannelOptions) -> PublishOptions {
    let mut po = PublishOptions::default();
    if o.history_enabled() {
        po = po.history(o.history_size as usize, o.history_ttl.as_std());
        let meta = if o.history_meta_ttl.is_zero() {
            cfg.channel.history_meta_ttl
        } else {
            o.history_meta_ttl
        };
        if !meta.is_zero() {
            po = po.history_meta_ttl(meta.as_std());
        }
    }
    po
}

/// A history call with Centrifugo's rules: `limit` 0 = position only,
/// negative = up to `max`; a `since` from another epoch fails with 112.
pub async fn run_history(
    node: &Node,
    channel: &str,
    o: &ChannelOptions,
    limit: i32,
    since: Option<StreamPosition>,
    reverse: bool,
    max: usize,
) -> Result<HistoryResult, ErrorCode> {
    let cap = if max == 0 { None } else { Some(max) };
    let limit = if limit < 0 {
        cap
    } else {
        Some(cap.map_or(limit as usize, |m| m.min(limit as usize)))
    };
    let since_epoch = since.as_ref().map(|s| s.epoch.clone());
    let filter = HistoryFilter {
        since,
        limit,
        reverse,
    };
    let hist = HistoryOptions::new(o.history_size as usize, o.history_ttl.as_std());
    let r = node
        .broker()
        .history(channel, filter, hist)
        .await
        .map_err(|_| ErrorCode::INTERNAL)?;
    if let Some(e) = since_epoch {
        if !e.is_empty() && e != r.position.epoch {
            return Err(ErrorCode::UNRECOVERABLE_POSITION);
        }
    }
    Ok(HistoryResult {
        publications: r
            .publications
            .iter()
            .map(|p| to_proto_publication(p))
            .collect(),
        epoch: r.position.epoch,
        offset: r.position.offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{MemoryBroker, MemoryBrokerConfig};
    use crate::config::Config;
    use wshub_protocol::decode_replies;

    async fn node() -> Arc<Node> {
        let broker = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
        Node::start(Config::development_default(), broker)
            .await
            .unwrap()
    }

    fn replies(s: &Session) -> Vec<Reply> {
        s.handle()
            .drain()
            .frames
            .iter()
            .flat_map(|f| decode_replies(Encoding::Json, f).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn publication_is_encoded_once_and_shared_by_subscribers() {
        let node = node().await;
        let mut a = Session::new(node.clone(), Encoding::Json);
        let mut b = Session::new(node.clone(), Encoding::Json);
        for s in [&mut a, &mut b] {
            s.handle_frame(
                br#"{"id":1,"connect":{}}
{"id":2,"subscribe":{"channel":"c"}}"#,
            )
            .await
            .unwrap();
            let r = replies(s);
            assert!(r[0].connect.is_some() && r[1].subscribe.is_some(), "{r:?}");
        }
        a.handle_frame(br#"{"id":3,"publish":{"channel":"c","data":{"x":1}}}"#)
            .await
            .unwrap();
        let fa = a.handle().drain().frames;
        let fb = b.handle().drain().frames;
        // a: b's join, the publication push and its publish reply; b: the push.
        assert_eq!(fb.len(), 1);
        let is_pub = |f: &&Bytes| f.windows(5).any(|w| w == b"\"pub\"");
        let push = fa.iter().find(is_pub).unwrap();
        assert_eq!(push.as_ptr(), fb[0].as_ptr(), "same bytes, not a copy");
        let r = decode_replies(Encoding::Json, &fb[0]).unwrap();
        assert_eq!(
            r[0].push
                .as_ref()
                .unwrap()
                .publication
                .as_ref()
                .unwrap()
                .offset,
            1
        );
        a.close(None).await;
        b.close(None).await;
        assert_eq!(node.hub().counts(), (0, 0));
    }

    #[tokio::test]
    async fn state_machine_refuses_commands_before_connect_and_second_connect() {
        let node = node().await;
        let mut s = Session::new(node.clone(), Encoding::Json);
        let d = s
            .handle_frame(br#"{"id":1,"presence":{"channel":"c"}}"#)
            .await
            .unwrap_err();
        assert_eq!(d.code, 3501);
        let mut s = Session::new(node, Encoding::Json);
        s.handle_frame(br#"{"id":1,"connect":{}}"#).await.unwrap();
        assert!(s.is_connected());
        let d = s
            .handle_frame(br#"{"id":2,"connect":{}}"#)
            .await
            .unwrap_err();
        assert_eq!(d.code, 3501);
    }

    #[tokio::test]
    async fn commands_over_the_rate_get_111_then_a_flood_disconnects_3013() {
        let mut cfg = Config::development_default();
        cfg.limits.commands_per_second = 1;
        cfg.limits.commands_burst = 2;
        cfg.limits.command_flood_disconnect = 3;
        let broker = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
        let node = Node::start(cfg, broker).await.unwrap();
        let mut s = Session::new(node.clone(), Encoding::Json);
        s.handle_frame(
            br#"{"id":1,"connect":{}}
{"id":2,"ping":{}}
{"id":3,"ping":{}}
{}
{"id":4,"ping":{}}"#,
        )
        .await
        .unwrap();
        let r = replies(&s);
        assert!(r[0].connect.is_some() && r[1].ping.is_some(), "{r:?}");
        let codes: Vec<_> = r[2..]
            .iter()
            .map(|r| (r.id, r.error.as_ref().unwrap().code))
            .collect();
        assert_eq!(codes, [(3, 111), (4, 111)], "pongs cost nothing");
        assert!(s.take_pong());
        let d = s.handle_frame(br#"{"id":5,"ping":{}}"#).await.unwrap_err();
        assert_eq!(d.code, 3013);
        assert_eq!(
            node.metrics()
                .limit_exceeded_count(ClientLimit::CommandsPerSecond),
            3
        );
        s.close(Some(&d)).await;
    }

    #[tokio::test]
    async fn pong_is_noticed_and_not_answered() {
        let node = node().await;
        let mut s = Session::new(node, Encoding::Json);
        s.handle_frame(br#"{"id":1,"connect":{}}"#).await.unwrap();
        replies(&s);
        s.handle_frame(b"{}").await.unwrap();
        assert!(s.take_pong());
        assert!(!s.take_pong());
        assert!(replies(&s).is_empty());
    }
}
