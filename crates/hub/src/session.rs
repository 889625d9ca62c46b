//! [`Session`]: the state machine of one client connection, independent of
//! the transport, and sans-I/O like the WebSocket engine: it never touches
//! a socket or a clock of its own.
//!
//! - **In**: the bytes of one transport message of commands
//!   ([`Session::handle_data`]), time ([`Session::poll_timeout`] tells when
//!   it wants [`Session::handle_timeout`]), and actions from the node
//!   (server API, cluster controls), which arrive on its own queue and
//!   which it applies in [`Session::apply_actions`] when
//!   [`Session::take_output`] says there are some.
//! - **Out**: encoded protocol messages (replies and pushes, in the
//!   session's encoding) from [`Session::take_output`], in order, each one
//!   for the transport to frame and write; or a [`Disconnect`] to close with.
//!
//! It owns everything a client connection means whatever carries it:
//! heartbeats (the server's ping, the pong deadline), the stale-connection
//! deadline, token expiry and refresh, subscription expiry, presence
//! refresh, the command rate limit, the outbound queue with its byte limit
//! and the slow-consumer policy ([`ClientHandle`]), and the spread-out
//! disconnect on shutdown. A transport adapter (WebSocket today; HTTP
//! streaming, SSE, HTTP/2 and HTTP/3 next) only moves bytes and says what it
//! can do ([`TransportInfo`]).
//!
//! The queue is the one the fan-out pushes into, so a subscribe reply
//! always precedes the channel's publications.
//!
//! States: connecting (only `connect` is accepted) → connected → closed.
//! A protocol violation ends the session with a [`Disconnect`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wshub_protocol::{
    decode_commands, encode_reply, ping_frame, Command, ConnectRequest, ConnectResult, Disconnect,
    DisconnectCode, Encoding, ErrorCode, HistoryRequest, HistoryResult, PresenceResult,
    PresenceStatsResult, PublishRequest, PublishResult, RefreshResult, Reply, Request,
    SubRefreshResult, Subscribe, SubscribeRequest, SubscribeResult, UnsubscribeCode,
    UnsubscribeResult,
};

use crate::auth::{AuthError, SubscribeOptions};
use crate::broker::{
    self, recover, HistoryFilter, HistoryOptions, PublishOptions, RecoverOptions, StreamPosition,
};
use crate::hub::{ClientHandle, Control, Subscriber};
use crate::limits::TokenBucket;
use crate::metrics::ClientLimit;
use crate::node::{random_id, to_proto_info, to_proto_publication, Node};
use wshub_config::{channel_options, ChannelError, ChannelOptions};

/// How long a presence entry lives without refresh.
pub const PRESENCE_TTL: Duration = Duration::from_secs(60);

/// What a transport is and can do: the facts the session needs to serve a
/// client over it. The adapter fills it in; the session never asks which
/// transport it is beyond this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportInfo {
    /// A short name for logs and metrics (`"websocket"`, `"sse"`, ...).
    pub name: &'static str,
    /// How protocol messages are encoded on it.
    pub encoding: Encoding,
    /// Whether the client can send commands after connecting. A
    /// unidirectional transport takes one connect and then only receives:
    /// the server still pings (so proxies keep the stream open and the
    /// client can tell a dead stream), but expects no pong, and any further
    /// command is a protocol violation.
    pub unidirectional: bool,
}

impl TransportInfo {
    /// A bidirectional transport (commands and replies both ways).
    pub fn bidirectional(name: &'static str, encoding: Encoding) -> Self {
        TransportInfo {
            name,
            encoding,
            unidirectional: false,
        }
    }

    /// A unidirectional transport (one connect, then pushes only).
    pub fn unidirectional(name: &'static str, encoding: Encoding) -> Self {
        TransportInfo {
            name,
            encoding,
            unidirectional: true,
        }
    }
}

/// What [`Session::take_output`] hands the transport.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Output {
    /// Encoded protocol messages to write, in order.
    pub messages: Vec<Bytes>,
    /// Their total length in bytes. They stay counted against
    /// `client.queue_max_size` until the transport reports what it still
    /// holds ([`ClientHandle::set_in_flight`]).
    pub bytes: usize,
    /// After writing `messages` (none for a slow consumer: its queue was
    /// dropped), close with this.
    pub disconnect: Option<Disconnect>,
    /// The node queued actions for the session: call
    /// [`Session::apply_actions`], then take the output again.
    pub actions: bool,
}

/// The session's clocks (all `Instant`s come from the transport's calls).
#[derive(Debug, Clone)]
struct Timers {
    /// When to send the next ping (connected sessions).
    next_ping: Instant,
    /// When the outstanding ping's pong is due.
    pong_deadline: Option<Instant>,
    /// Until when a client may take to send `connect` (stale connection).
    connect_deadline: Option<Instant>,
    /// When to refresh presence entries next (connected sessions).
    next_presence: Instant,
    /// When the connection's credentials lapse (`exp` plus
    /// `client.expired_close_delay`), if they do.
    expire_at: Option<Instant>,
    /// When to disconnect for a server shutdown, once one started.
    shutdown_at: Option<Instant>,
}

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
    /// Channel info for presence and join/leave (raw JSON); the rest of
    /// the client info is the session's own.
    chan_info: Option<Bytes>,
}

/// A connection's subscriptions: a vector searched linearly. Connections
/// hold a few channels (at most `client.channel_limit`, 128 by default), and
/// an idle connection with one subscription is what a node holds most of:
/// one exact-size slot costs ~70 bytes where a hash map's smallest table
/// costs ~660.
#[derive(Debug, Default)]
struct Subs(Vec<(Box<str>, Sub)>);

impl Subs {
    fn position(&self, channel: &str) -> Option<usize> {
        self.0.iter().position(|(c, _)| &**c == channel)
    }
    fn get(&self, channel: &str) -> Option<&Sub> {
        self.0.iter().find(|(c, _)| &**c == channel).map(|(_, s)| s)
    }
    fn get_mut(&mut self, channel: &str) -> Option<&mut Sub> {
        self.0
            .iter_mut()
            .find(|(c, _)| &**c == channel)
            .map(|(_, s)| s)
    }
    fn contains_key(&self, channel: &str) -> bool {
        self.position(channel).is_some()
    }
    fn insert(&mut self, channel: &str, sub: Sub) {
        match self.get_mut(channel) {
            Some(s) => *s = sub,
            None => {
                self.0.reserve_exact(1);
                self.0.push((channel.into(), sub));
            }
        }
    }
    fn remove(&mut self, channel: &str) -> Option<Sub> {
        let i = self.position(channel)?;
        let (_, sub) = self.0.swap_remove(i);
        if self.0.is_empty() {
            self.0 = Vec::new();
        }
        Some(sub)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn values(&self) -> impl Iterator<Item = &Sub> {
        self.0.iter().map(|(_, s)| s)
    }
    fn iter(&self) -> impl Iterator<Item = (&str, &Sub)> {
        self.0.iter().map(|(c, s)| (&**c, s))
    }
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(c, _)| &**c)
    }
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
    subs: Subs,
    transport: TransportInfo,
    timers: Timers,
    /// Actions taken from the queue and not applied yet.
    actions: Vec<Control>,
    /// `limits.commands_per_second`, when set.
    commands: Option<TokenBucket>,
    /// Commands refused in a row by the rate limit.
    refused_in_a_row: u32,
    /// The emulation session id the connect result tells the client (a
    /// transport whose commands arrive through `/emulation`).
    emulation: Option<Box<str>>,
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

/// `d`, or never when it is zero (a disabled timer).
fn after(now: Instant, d: Duration) -> Option<Instant> {
    (!d.is_zero()).then(|| now + d)
}

/// A delay in `[0, drain)` derived from the client id, so disconnects on
/// shutdown are spread and clients do not all reconnect at once.
fn spread(client: &str, drain: Duration) -> Duration {
    if drain.is_zero() {
        return Duration::ZERO;
    }
    let h = client
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let ms = drain.as_millis().max(1) as u64;
    Duration::from_millis(h % ms)
}

impl Session {
    /// A new session on `node` for a client on `transport`, opened at `now`.
    pub fn new(node: Arc<Node>, transport: TransportInfo, now: Instant) -> Self {
        let encoding = transport.encoding;
        let c = &node.config().client;
        let max = c.queue_max_size as usize;
        let timers = Timers {
            next_ping: now + Self::ping_every(&node),
            pong_deadline: None,
            connect_deadline: after(now, c.stale_close_delay.as_std()),
            next_presence: now + Self::presence_every(&node),
            expire_at: None,
            shutdown_at: None,
        };
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
            subs: Subs::default(),
            transport,
            timers,
            actions: Vec::new(),
            commands,
            refused_in_a_row: 0,
            emulation: None,
        }
    }

    /// Makes the connect result carry `session` (with the node id it always
    /// carries), for a transport whose further commands come through the
    /// emulation endpoint (see [`crate::emulation`]).
    pub fn set_emulation_session(&mut self, session: &str) {
        self.emulation = Some(session.into());
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

    /// The transport this session runs on.
    pub fn transport(&self) -> TransportInfo {
        self.transport
    }

    /// Whether a ping is waiting for its pong.
    pub fn awaits_pong(&self) -> bool {
        self.timers.pong_deadline.is_some()
    }

    fn ping_every(node: &Node) -> Duration {
        node.config()
            .client
            .ping_interval
            .as_std()
            .max(Duration::from_millis(10))
    }

    fn presence_every(node: &Node) -> Duration {
        node.config()
            .client
            .presence_update_interval
            .as_std()
            .max(Duration::from_secs(1))
    }

    /// Recomputes when the credentials lapse after `exp` changed: at `exp`
    /// plus `client.expired_close_delay`, measured on the transport's clock
    /// from the wall clock's distance to `exp`.
    fn set_exp(&mut self, exp: Option<u64>) {
        let now = Instant::now();
        self.exp = exp;
        let delay = self.node.config().client.expired_close_delay.as_std();
        self.timers.expire_at = exp.map(|e| {
            let left = e.saturating_sub(now_unix());
            now + Duration::from_secs(left) + delay
        });
    }

    /// When the session next wants [`Session::handle_timeout`]: the nearest
    /// of its deadlines (one timer per connection, whatever it waits for).
    /// `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.timers;
        let connected = self.state == State::Connected;
        let sub_expiry = if connected {
            self.next_sub_expiry().map(|d| Instant::now() + d)
        } else {
            None
        };
        [
            t.shutdown_at,
            t.pong_deadline,
            (self.state == State::Connecting)
                .then_some(t.connect_deadline)
                .flatten(),
            connected.then_some(t.next_ping),
            connected.then_some(t.next_presence),
            connected.then_some(t.expire_at).flatten(),
            sub_expiry,
        ]
        .into_iter()
        .flatten()
        .min()
        .filter(|_| self.state != State::Closed)
    }

    /// Acts on every deadline due at `now`: shutdown (3001), a missing pong
    /// (3012), a client that never connected (3010 stale), expired
    /// credentials (3005), expired subscriptions (2501 unsubscribe pushes),
    /// the next ping, the presence refresh. `Err` means: close with it.
    ///
    /// Cancel safety: not cancel safe (a broker call may be half done).
    pub async fn handle_timeout(&mut self, now: Instant) -> Result<(), Disconnect> {
        if self.state == State::Closed {
            return Ok(());
        }
        let due = |d: Option<Instant>| d.is_some_and(|d| d <= now);
        if due(self.timers.shutdown_at) {
            return Err(DisconnectCode::SHUTDOWN.to_disconnect());
        }
        if due(self.timers.pong_deadline) {
            self.node.metrics().heartbeat_failure();
            return Err(DisconnectCode::NO_PONG.to_disconnect());
        }
        if self.state == State::Connecting {
            if due(self.timers.connect_deadline) {
                return Err(DisconnectCode::STALE.to_disconnect());
            }
            return Ok(());
        }
        if due(self.timers.expire_at) && self.exp.is_some_and(|exp| exp <= now_unix()) {
            return Err(DisconnectCode::EXPIRED.to_disconnect());
        }
        if self.next_sub_expiry().is_some_and(|d| d.is_zero()) {
            self.expire_subscriptions().await;
        }
        if self.timers.next_ping <= now {
            self.timers.next_ping = now + Self::ping_every(&self.node);
            self.handle
                .push(Bytes::from_static(ping_frame(self.encoding())));
            let pong_timeout = self.node.config().client.pong_timeout.as_std();
            if self.timers.pong_deadline.is_none() && !self.transport.unidirectional {
                self.timers.pong_deadline = after(now, pong_timeout);
            }
        }
        if self.timers.next_presence <= now {
            self.timers.next_presence = now + Self::presence_every(&self.node);
            self.refresh_presence().await;
        }
        Ok(())
    }

    /// The server is shutting down: disconnect with 3001 at a moment in
    /// `[now, now + drain)` derived from the client id, so that clients do
    /// not all reconnect at once. A second call changes nothing.
    pub fn begin_shutdown(&mut self, now: Instant, drain: Duration) {
        if self.timers.shutdown_at.is_none() {
            self.timers.shutdown_at = Some(now + spread(self.client_id(), drain));
        }
    }

    /// Takes everything queued for the client, in order. When the node
    /// queued actions for this session (server API disconnect,
    /// unsubscribe, subscribe, refresh), `Output::actions` is set: apply
    /// them with [`Session::apply_actions`], then take the output again
    /// (their replies and pushes come after these messages). Call after
    /// every wakeup of [`ClientHandle::notified`] and after
    /// [`Session::handle_data`] / [`Session::handle_timeout`]. The
    /// messages' bytes stay counted against `client.queue_max_size` as in
    /// flight until the transport calls [`ClientHandle::set_in_flight`].
    ///
    /// Synchronous on purpose: the common wakeup (a push or a reply to
    /// write) costs no future and no allocation.
    pub fn take_output(&mut self) -> Output {
        let drained = self.handle.drain();
        let m = self.node.metrics();
        m.count_sent(
            self.encoding(),
            drained.frames.len() as u64,
            drained.bytes as u64,
        );
        let actions = !drained.controls.is_empty();
        self.actions.extend(drained.controls);
        Output {
            messages: drained.frames,
            bytes: drained.bytes,
            disconnect: drained.disconnect,
            actions,
        }
    }

    /// Applies the actions [`Session::take_output`] took from the queue,
    /// in order. `Err` means: close with it (after writing what is
    /// queued).
    ///
    /// Cancel safety: not cancel safe.
    pub async fn apply_actions(&mut self) -> Result<(), Disconnect> {
        for c in std::mem::take(&mut self.actions) {
            self.handle_control(c).await?;
        }
        Ok(())
    }

    fn encoding(&self) -> Encoding {
        self.handle.encoding()
    }

    fn enqueue(&self, reply: &Reply) -> Option<Bytes> {
        match encode_reply(self.encoding(), reply) {
            Ok(b) => Some(b),
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

    /// Decodes one transport message of commands (several in one message
    /// are newline-delimited in JSON, length-prefixed in protobuf) and
    /// handles each in order, queueing the replies. An undecodable message
    /// ends the session with 3501; so does a command after connect on a
    /// unidirectional transport.
    ///
    /// Cancel safety: not cancel safe (a command may be half applied).
    pub async fn handle_data(&mut self, data: &[u8]) -> Result<(), Disconnect> {
        self.node
            .metrics()
            .count_received(self.encoding(), data.len());
        let commands = decode_commands(self.encoding(), data).map_err(|e| {
            tracing::debug!(client = %self.client_id(), error = %e, "bad frame");
            e.disconnect_code().to_disconnect()
        })?;
        for cmd in commands {
            if cmd.is_pong() {
                self.timers.pong_deadline = None;
                continue;
            }
            if self.transport.unidirectional && self.state != State::Connecting {
                return Err(bad_request());
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

    /// Connects a client of a unidirectional transport from the one
    /// [`ConnectRequest`] it sends (a URL parameter or the request body, not
    /// a command). The result is queued as the reply to command 1; the
    /// transport turns it into a connect push, and an error reply into a
    /// disconnect.
    ///
    /// Cancel safety: not cancel safe.
    pub async fn connect_unidirectional(&mut self, req: ConnectRequest) -> Result<(), Disconnect> {
        let cmd = Command {
            id: 1,
            connect: Some(req),
            ..Default::default()
        };
        let started = Instant::now();
        let reply = self.handle_command(cmd).await?;
        self.node
            .metrics()
            .observe_command(wshub_protocol::Method::Connect, started.elapsed());
        if let Some(reply) = reply {
            self.queue(&reply);
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
                    self.set_exp(claims.exp);
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
            pong: !self.transport.unidirectional,
            node: self.node.id().to_owned(),
            session: self.emulation.as_deref().unwrap_or_default().to_owned(),
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
                    self.handle.end_pending(&channel, Vec::new(), 0);
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
            self.handle.end_pending(&channel, Vec::new(), top);
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
        let info = self.info(chan_info.clone());
        self.subs.insert(
            channel,
            Sub {
                exp: None,
                presence: opts.presence,
                join_leave: opts.join_leave,
                chan_info,
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
            let info = self.info(sub.chan_info);
            let _ = node.broker().publish_leave(channel, info).await;
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
                let reply = self.enqueue(&reply).into_iter().collect();
                self.handle.end_pending(&channel, reply, top);
                Ok(None)
            }
            Err(code) => {
                self.handle.end_pending(&channel, Vec::new(), 0);
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
        let chan_info = subscribed.and_then(|s| s.chan_info.clone());
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
                self.set_exp(c.exp);
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
                    self.set_exp(expire_at);
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
                        let mut messages: Vec<Bytes> =
                            self.enqueue(&Reply::from_push(push)).into_iter().collect();
                        for p in res.publications {
                            let push = wshub_protocol::Push::publication(channel.clone(), p);
                            messages.extend(self.enqueue(&Reply::from_push(push)));
                        }
                        self.handle.end_pending(&channel, messages, top);
                    }
                    Err(_) => {
                        self.handle.end_pending(&channel, Vec::new(), 0);
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
            .map(|(c, _)| c.to_owned())
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
        for (channel, sub) in self.subs.iter() {
            if sub.presence {
                let info = self.info(sub.chan_info.clone());
                let _ = self
                    .node
                    .broker()
                    .add_presence(channel, self.handle.id(), info, PRESENCE_TTL)
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
        let channels: Vec<String> = self.subs.keys().map(str::to_owned).collect();
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
pub fn publish_options(cfg: &wshub_config::Config, o: &ChannelOptions) -> PublishOptions {
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
    use wshub_config::Config;
    use wshub_protocol::decode_replies;

    async fn node() -> Arc<Node> {
        let broker = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
        Node::start(Config::development_default(), broker)
            .await
            .unwrap()
    }

    /// A session as the WebSocket adapter opens it.
    fn ws(node: &Arc<Node>) -> Session {
        Session::new(
            node.clone(),
            TransportInfo::bidirectional("test", Encoding::Json),
            Instant::now(),
        )
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
        let mut a = ws(&node);
        let mut b = ws(&node);
        for s in [&mut a, &mut b] {
            s.handle_data(
                br#"{"id":1,"connect":{}}
{"id":2,"subscribe":{"channel":"c"}}"#,
            )
            .await
            .unwrap();
            assert!(node.fanout().wait_idle(std::time::Duration::from_secs(5)));
            let r = replies(s);
            assert!(r[0].connect.is_some() && r[1].subscribe.is_some(), "{r:?}");
        }
        a.handle_data(br#"{"id":3,"publish":{"channel":"c","data":{"x":1}}}"#)
            .await
            .unwrap();
        // Pushes are queued by the fan-out workers.
        assert!(node.fanout().wait_idle(std::time::Duration::from_secs(5)));
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
        let mut s = ws(&node);
        let d = s
            .handle_data(br#"{"id":1,"presence":{"channel":"c"}}"#)
            .await
            .unwrap_err();
        assert_eq!(d.code, 3501);
        let mut s = ws(&node);
        s.handle_data(br#"{"id":1,"connect":{}}"#).await.unwrap();
        assert!(s.is_connected());
        let d = s
            .handle_data(br#"{"id":2,"connect":{}}"#)
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
        let mut s = ws(&node);
        s.handle_data(
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
        let d = s.handle_data(br#"{"id":5,"ping":{}}"#).await.unwrap_err();
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
        let mut s = ws(&node);
        s.handle_data(br#"{"id":1,"connect":{}}"#).await.unwrap();
        replies(&s);
        let ping_at = s.poll_timeout().unwrap();
        s.handle_timeout(ping_at).await.unwrap();
        assert!(s.awaits_pong());
        assert_eq!(s.take_output().messages, vec![&b"{}"[..]]);
        s.handle_data(b"{}").await.unwrap();
        assert!(!s.awaits_pong());
        assert!(replies(&s).is_empty());
    }

    /// Waits until `s`'s queue has something (the fan-out may deliver from
    /// another thread), then takes the output.
    async fn output(s: &mut Session) -> Output {
        let h = s.handle().clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = s.take_output();
            if !out.messages.is_empty() || out.disconnect.is_some() || Instant::now() > deadline {
                return out;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), h.notified()).await;
        }
    }

    fn decoded(out: &Output) -> Vec<Reply> {
        out.messages
            .iter()
            .flat_map(|m| decode_replies(Encoding::Json, m).unwrap())
            .collect()
    }

    /// The whole life of a client with no socket: bytes in, protocol
    /// messages out, time passed in.
    #[tokio::test]
    async fn a_session_is_driven_from_bytes_and_time_only() {
        let mut cfg = Config::development_default();
        cfg.client.queue_max_size = 4096;
        let broker = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
        let node = Node::start(cfg.clone(), broker).await.unwrap();
        let t0 = Instant::now();

        // A client that never connects is closed as stale.
        let stale = Session::new(
            node.clone(),
            TransportInfo::bidirectional("bytes", Encoding::Json),
            t0,
        );
        let due = stale.poll_timeout().unwrap();
        assert_eq!(due, t0 + cfg.client.stale_close_delay.as_std());
        let mut stale = stale;
        assert_eq!(stale.handle_timeout(due).await.unwrap_err().code, 3502);

        // Connect and subscribe in one message.
        let mut s = Session::new(
            node.clone(),
            TransportInfo::bidirectional("bytes", Encoding::Json),
            t0,
        );
        s.handle_data(
            br#"{"id":1,"connect":{}}
{"id":2,"subscribe":{"channel":"c"}}"#,
        )
        .await
        .unwrap();
        let r = decoded(&s.take_output());
        assert!(r[0].connect.as_ref().unwrap().pong);
        assert!(r[1].subscribe.is_some(), "{r:?}");

        // A publication from another client reaches it as a push.
        let mut p = ws(&node);
        p.handle_data(br#"{"id":1,"connect":{}}"#).await.unwrap();
        p.handle_data(br#"{"id":2,"publish":{"channel":"c","data":{"n":1}}}"#)
            .await
            .unwrap();
        let r = decoded(&output(&mut s).await);
        let publication = r
            .iter()
            .find_map(|r| r.push.as_ref()?.publication.as_ref())
            .expect("a publication push");
        assert_eq!(&*publication.data, br#"{"n":1}"#);

        // The ping comes at `ping_interval`; without a pong the session
        // ends with 3012 `pong_timeout` later.
        let ping_at = s.poll_timeout().unwrap();
        assert!(ping_at <= t0 + cfg.client.ping_interval.as_std());
        s.handle_timeout(ping_at).await.unwrap();
        assert_eq!(s.take_output().messages, vec![&b"{}"[..]]);
        // Other deadlines (the presence refresh) may come first.
        let pong_due = ping_at + cfg.client.pong_timeout.as_std();
        let d = loop {
            let at = s.poll_timeout().unwrap();
            assert!(at <= pong_due);
            if let Err(d) = s.handle_timeout(at).await {
                assert_eq!(at, pong_due);
                break d;
            }
        };
        assert_eq!(d.code, 3012);
        s.close(Some(&d)).await;

        // A subscriber that never takes its output is cut off as slow once
        // its queue passes `client.queue_max_size`: its queue is dropped.
        let mut slow = ws(&node);
        slow.handle_data(
            br#"{"id":1,"connect":{}}
{"id":2,"subscribe":{"channel":"c"}}"#,
        )
        .await
        .unwrap();
        let big = format!(
            r#"{{"id":3,"publish":{{"channel":"c","data":"{}"}}}}"#,
            "x".repeat(1000)
        );
        for _ in 0..8 {
            p.handle_data(big.as_bytes()).await.unwrap();
        }
        let h = slow.handle().clone();
        for _ in 0..100 {
            if h.is_slow() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let out = slow.take_output();
        assert!(out.messages.is_empty());
        assert_eq!(out.disconnect.as_ref().unwrap().code, 3008);
        slow.close(out.disconnect.as_ref()).await;
        p.close(None).await;
        assert_eq!(node.hub().counts(), (0, 0));
    }

    #[tokio::test]
    async fn a_unidirectional_session_takes_one_connect_and_expects_no_pong() {
        let node = node().await;
        let t0 = Instant::now();
        let mut s = Session::new(
            node.clone(),
            TransportInfo::unidirectional("bytes", Encoding::Json),
            t0,
        );
        s.handle_data(br#"{"id":1,"connect":{}}"#).await.unwrap();
        let r = decoded(&s.take_output());
        assert!(!r[0].connect.as_ref().unwrap().pong);
        let ping_at = s.poll_timeout().unwrap();
        s.handle_timeout(ping_at).await.unwrap();
        assert_eq!(s.take_output().messages, vec![&b"{}"[..]]);
        assert!(!s.awaits_pong());
        let d = s.handle_data(br#"{"id":2,"ping":{}}"#).await.unwrap_err();
        assert_eq!(d.code, 3501);
    }

    #[tokio::test]
    async fn shutdown_disconnects_within_the_drain_spread() {
        let node = node().await;
        let t0 = Instant::now();
        let mut s = ws(&node);
        s.handle_data(br#"{"id":1,"connect":{}}"#).await.unwrap();
        s.begin_shutdown(t0, Duration::from_secs(2));
        let at = s.poll_timeout().unwrap();
        assert!(at < t0 + Duration::from_secs(2));
        assert_eq!(s.handle_timeout(at).await.unwrap_err().code, 3001);
    }
}
