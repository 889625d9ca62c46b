//! The background task: owns the WebSocket, the pending commands and the
//! connection and subscription state machines.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep, sleep_until, Instant};
use wshub_protocol::{
    decode_replies, Command, CommandEncoder, ConnectRequest, ConnectResult, DisconnectCode,
    Encoding, ErrorCode, Push, RefreshRequest, Reply, SubRefreshRequest, SubscribeRequest,
    SubscribeResult, UnsubscribeCode, UnsubscribeRequest,
};
use wshub_ws::{CloseCode, MaybeTlsStream, Message, WebSocket};

use crate::backoff::reconnect_delay;
use crate::config::{BoxFuture, ClientConfig, SubscriptionConfig};
use crate::error::{Error, TokenError};
use crate::{codes, ClientEvent, State, SubscriptionEvent, SubscriptionState};

type Ws = WebSocket<MaybeTlsStream>;
type ReplyTx = oneshot::Sender<Result<Reply, Error>>;

/// What the handles ask of the task.
pub(crate) enum Control {
    Connect,
    Disconnect,
    Call {
        cmd: Box<Command>,
        reply: ReplyTx,
        /// `false` for `send`: answered once written.
        needs_reply: bool,
    },
    NewSub {
        channel: String,
        config: SubscriptionConfig,
        events: mpsc::UnboundedSender<SubscriptionEvent>,
        state: watch::Sender<SubscriptionState>,
    },
    Subscribe(String),
    Unsubscribe(String),
    RemoveSub(String),
    /// A channel token fetched by a spawned `get_token` call.
    SubToken {
        channel: String,
        result: Result<String, TokenError>,
    },
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Control::Connect => "Connect",
            Control::Disconnect => "Disconnect",
            Control::Call { .. } => "Call",
            Control::NewSub { .. } => "NewSub",
            Control::Subscribe(_) => "Subscribe",
            Control::Unsubscribe(_) => "Unsubscribe",
            Control::RemoveSub(_) => "RemoveSub",
            Control::SubToken { .. } => "SubToken",
        })
    }
}

/// A command sent and waiting for its reply.
enum Pending {
    User(ReplyTx),
    Subscribe { channel: String, deadline: Instant },
    Refresh,
    SubRefresh { channel: String },
    Ignore,
}

struct Sub {
    config: SubscriptionConfig,
    /// The channel token to subscribe with.
    token: Option<String>,
    /// A `get_token` call is under way.
    fetching: bool,
    /// Publications pushed while the subscribe reply is awaited (a server
    /// should not send them before the reply; if it does, they are
    /// delivered after the reply's recovered publications, not lost).
    early: Vec<wshub_protocol::Publication>,
    events: mpsc::UnboundedSender<SubscriptionEvent>,
    state: watch::Sender<SubscriptionState>,
    /// Subscribe again with `recover: true` from (`offset`, `epoch`).
    recover: bool,
    offset: u64,
    epoch: String,
    /// Tracks stream positions (the server said recoverable or positioned).
    tracking: bool,
    /// A subscribe command is in flight.
    in_flight: bool,
    /// Failed subscribes in a row (backoff).
    attempt: u32,
    /// When to retry a subscribe that failed temporarily.
    retry_at: Option<Instant>,
    /// When to renew the channel token (`sub_refresh`).
    refresh_at: Option<Instant>,
}

impl Sub {
    fn state(&self) -> SubscriptionState {
        *self.state.borrow()
    }
    fn emit(&self, event: SubscriptionEvent) {
        let _ = self.events.send(event);
    }
    fn set_state(&self, s: SubscriptionState) {
        self.state.send_replace(s);
    }
}

/// What the task does next.
enum Next {
    Idle,
    Connect(Option<Duration>),
    Connected(Box<(Ws, ConnectResult)>),
    Exit,
}

/// Per-connection state.
struct Live {
    out: CommandEncoder,
    pong: bool,
    ping_timeout: Option<Duration>,
    ping_deadline: Option<Instant>,
    refresh_at: Option<Instant>,
    token_fut: Option<BoxFuture<Result<String, TokenError>>>,
}

pub(crate) struct Task {
    url: String,
    config: ClientConfig,
    ws_opts: wshub_ws::ClientOptions,
    ctl: mpsc::UnboundedReceiver<Control>,
    /// For spawned token fetches to report back (weak: the task ends when
    /// the handles are gone).
    ctl_tx: mpsc::WeakUnboundedSender<Control>,
    events: mpsc::UnboundedSender<ClientEvent>,
    state: watch::Sender<State>,
    subs: HashMap<String, Sub>,
    pending: HashMap<u32, Pending>,
    /// Calls made while connecting, sent once connected.
    queued: Vec<(Box<Command>, ReplyTx, bool)>,
    next_id: u32,
    token: Option<String>,
    refresh_required: bool,
    attempt: u32,
}

/// Why an attempt to connect failed.
enum EstablishError {
    Transport(Error),
    Token(TokenError),
    Server(wshub_protocol::Error),
    Closed { code: u32, reason: String },
}

impl Task {
    pub(crate) fn new(
        url: String,
        config: ClientConfig,
        (ctl_tx, ctl): (
            mpsc::WeakUnboundedSender<Control>,
            mpsc::UnboundedReceiver<Control>,
        ),
        events: mpsc::UnboundedSender<ClientEvent>,
        state: watch::Sender<State>,
    ) -> Self {
        let mut ws_opts = config.ws.clone();
        if config.encoding == Encoding::Protobuf {
            ws_opts = ws_opts.subprotocols([Encoding::PROTOBUF_SUBPROTOCOL]);
        }
        Task {
            url,
            token: config.token.clone().filter(|t| !t.is_empty()),
            config,
            ws_opts,
            ctl,
            ctl_tx,
            events,
            state,
            subs: HashMap::new(),
            pending: HashMap::new(),
            queued: Vec::new(),
            next_id: 0,
            refresh_required: false,
            attempt: 0,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut next = Next::Idle;
        loop {
            next = match next {
                Next::Idle => self.idle().await,
                Next::Connect(delay) => self.connecting(delay).await,
                Next::Connected(conn) => {
                    let (ws, result) = *conn;
                    self.connected(ws, result).await
                }
                Next::Exit => return,
            };
        }
    }

    fn emit(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }

    fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    fn backoff(&mut self) -> Duration {
        let d = reconnect_delay(
            self.attempt,
            self.config.min_reconnect_delay,
            self.config.max_reconnect_delay,
        );
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    // ---- Disconnected ------------------------------------------------------

    async fn idle(&mut self) -> Next {
        loop {
            let Some(c) = self.ctl.recv().await else {
                return Next::Exit;
            };
            match c {
                Control::Connect => {
                    self.state.send_replace(State::Connecting);
                    self.emit(ClientEvent::Connecting {
                        code: codes::CONNECT_CALLED,
                        reason: "connect called".into(),
                    });
                    return Next::Connect(None);
                }
                Control::Disconnect => {}
                Control::Call { reply, .. } => {
                    let _ = reply.send(Err(Error::Disconnected));
                }
                other => self.sub_control(other, None),
            }
        }
    }

    /// Handles a control while not connected; `Some(next)` leaves the phase.
    fn offline_control(&mut self, c: Control) -> Option<Next> {
        match c {
            Control::Connect => None,
            Control::Disconnect => {
                Some(self.disconnected(codes::DISCONNECT_CALLED, "disconnect called".into()))
            }
            Control::Call {
                cmd,
                reply,
                needs_reply,
            } => {
                self.queued.retain(|(_, tx, _)| !tx.is_closed());
                self.queued.push((cmd, reply, needs_reply));
                None
            }
            other => {
                self.sub_control(other, None);
                None
            }
        }
    }

    // ---- Connecting --------------------------------------------------------

    async fn connecting(&mut self, delay: Option<Duration>) -> Next {
        if let Some(delay) = delay {
            let wake = sleep(delay);
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    _ = &mut wake => break,
                    c = self.ctl.recv() => match c {
                        None => return Next::Exit,
                        Some(c) => if let Some(next) = self.offline_control(c) { return next },
                    },
                }
            }
        }
        let need_token = self.token.is_none() || self.refresh_required;
        let get_token = self.config.get_token.clone().filter(|_| need_token);
        let request = ConnectRequest {
            token: self.token.clone().unwrap_or_default(),
            data: self.config.data.clone(),
            name: self.config.name.clone(),
            version: self.config.version.clone(),
            ..ConnectRequest::default()
        };
        let id = self.id();
        let attempt = establish(
            self.url.clone(),
            self.ws_opts.clone(),
            self.config.encoding,
            get_token,
            request,
            id,
            self.config.timeout,
        );
        tokio::pin!(attempt);
        let result = loop {
            tokio::select! {
                r = &mut attempt => break r,
                c = self.ctl.recv() => match c {
                    None => return Next::Exit,
                    Some(c) => if let Some(next) = self.offline_control(c) { return next },
                },
            }
        };
        match result {
            Ok((ws, result, new_token)) => {
                if new_token.is_some() {
                    self.token = new_token;
                }
                self.refresh_required = false;
                self.attempt = 0;
                self.state.send_replace(State::Connected);
                self.emit(ClientEvent::Connected {
                    client_id: result.client.clone(),
                    version: result.version.clone(),
                    data: result.data.clone(),
                    ping: result.ping,
                });
                Next::Connected(Box::new((ws, result)))
            }
            Err(EstablishError::Transport(e)) => {
                tracing::debug!(error = %e, "connect attempt failed");
                self.emit(ClientEvent::Error(e));
                Next::Connect(Some(self.backoff()))
            }
            Err(EstablishError::Token(TokenError::Unauthorized)) => {
                self.disconnected(codes::UNAUTHORIZED, "unauthorized".into())
            }
            Err(EstablishError::Token(e)) => {
                self.emit(ClientEvent::Error(Error::Token(e)));
                Next::Connect(Some(self.backoff()))
            }
            Err(EstablishError::Server(e)) => {
                let code = e.code;
                let retry = code < 100 || e.temporary || code == ErrorCode::TOKEN_EXPIRED.0;
                if code == ErrorCode::TOKEN_EXPIRED.0 {
                    self.refresh_required = true;
                }
                if retry {
                    self.emit(ClientEvent::Error(e.into()));
                    Next::Connect(Some(self.backoff()))
                } else {
                    self.disconnected(code, e.message)
                }
            }
            Err(EstablishError::Closed { code, reason }) => {
                if DisconnectCode(code).reconnect() {
                    self.emit(ClientEvent::Connecting { code, reason });
                    Next::Connect(Some(self.backoff()))
                } else {
                    self.disconnected(code, reason)
                }
            }
        }
    }

    // ---- Connected ---------------------------------------------------------

    async fn connected(&mut self, mut ws: Ws, result: ConnectResult) -> Next {
        let ping_timeout = (result.ping > 0).then(|| {
            Duration::from_secs(u64::from(result.ping)) + self.config.max_server_ping_delay
        });
        let mut live = Live {
            out: CommandEncoder::new(self.config.encoding),
            pong: result.pong,
            ping_timeout,
            ping_deadline: ping_timeout.map(|t| Instant::now() + t),
            refresh_at: (result.expires && result.ttl > 0)
                .then(|| Instant::now() + Duration::from_secs(u64::from(result.ttl))),
            token_fut: None,
        };
        // Subscribe everything that wants to be subscribed, then the calls
        // made while connecting.
        let channels: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| s.state() == SubscriptionState::Subscribing)
            .map(|(c, _)| c.clone())
            .collect();
        for channel in channels {
            self.send_subscribe(&channel, &mut live);
        }
        for (cmd, reply, needs_reply) in std::mem::take(&mut self.queued) {
            self.send_call(cmd, reply, needs_reply, &mut live);
        }

        loop {
            if !live.out.is_empty() {
                if let Err(e) = write(&mut ws, self.config.encoding, &mut live.out).await {
                    return self.lost(codes::TRANSPORT_CLOSED, e.to_string());
                }
            }
            let timer = self.next_timer();
            let next = tokio::select! {
                msg = ws.recv() => match msg {
                    Some(Ok(msg)) => {
                        if let Some(t) = live.ping_timeout {
                            live.ping_deadline = Some(Instant::now() + t);
                        }
                        self.frame(&msg, &mut live)
                    }
                    Some(Err(e)) => Some(self.lost(codes::TRANSPORT_CLOSED, e.to_string())),
                    None => {
                        let (code, reason) = match ws.close_info() {
                            Some((Some(code), reason)) => (u32::from(code.0), reason),
                            _ => (codes::TRANSPORT_CLOSED, "transport closed".to_owned()),
                        };
                        Some(self.server_disconnect(code, reason))
                    }
                },
                c = self.ctl.recv() => match c {
                    None => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(CloseCode::NORMAL, "")).await;
                        Some(Next::Exit)
                    }
                    Some(Control::Disconnect) => {
                        let _ = tokio::time::timeout(self.config.timeout, ws.close(CloseCode::NORMAL, "")).await;
                        Some(self.disconnected(codes::DISCONNECT_CALLED, "disconnect called".into()))
                    }
                    Some(Control::Connect) => None,
                    Some(Control::Call { cmd, reply, needs_reply }) => {
                        self.send_call(cmd, reply, needs_reply, &mut live);
                        None
                    }
                    Some(other) => {
                        self.sub_control(other, Some(&mut live));
                        None
                    }
                },
                _ = sleep_until(live.ping_deadline.unwrap_or_else(far_future)), if live.ping_deadline.is_some() => {
                    Some(self.lost(codes::NO_PING, "no ping".into()))
                }
                _ = sleep_until(live.refresh_at.unwrap_or_else(far_future)), if live.refresh_at.is_some() && live.token_fut.is_none() => {
                    live.refresh_at = None;
                    self.start_refresh(&mut live);
                    None
                }
                token = poll_opt(&mut live.token_fut), if live.token_fut.is_some() => {
                    live.token_fut = None;
                    self.refresh_token(token, &mut live)
                }
                _ = sleep_until(timer.unwrap_or_else(far_future)), if timer.is_some() => {
                    self.timers(&mut live)
                }
            };
            if let Some(next) = next {
                return next;
            }
        }
    }

    /// The earliest subscribe deadline or subscribe retry.
    fn next_timer(&self) -> Option<Instant> {
        let deadlines = self.pending.values().filter_map(|p| match p {
            Pending::Subscribe { deadline, .. } => Some(*deadline),
            _ => None,
        });
        let retries = self
            .subs
            .values()
            .flat_map(|s| s.retry_at.into_iter().chain(s.refresh_at));
        deadlines.chain(retries).min()
    }

    fn timers(&mut self, live: &mut Live) -> Option<Next> {
        let now = Instant::now();
        let timed_out = self.pending.values().any(|p| match p {
            Pending::Subscribe { deadline, .. } => *deadline <= now,
            _ => false,
        });
        if timed_out {
            return Some(self.lost(codes::SUBSCRIBE_TIMEOUT, "subscribe timeout".into()));
        }
        let due: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| s.retry_at.is_some_and(|t| t <= now))
            .map(|(c, _)| c.clone())
            .collect();
        for channel in due {
            let Some(sub) = self.subs.get_mut(&channel) else {
                continue;
            };
            sub.retry_at = None;
            if sub.state() == SubscriptionState::Subscribing {
                self.send_subscribe(&channel, live);
            }
        }
        let refresh: Vec<String> = self
            .subs
            .iter()
            .filter(|(_, s)| s.refresh_at.is_some_and(|t| t <= now))
            .map(|(c, _)| c.clone())
            .collect();
        for channel in refresh {
            let Some(sub) = self.subs.get_mut(&channel) else {
                continue;
            };
            sub.refresh_at = None;
            if let (SubscriptionState::Subscribed, Some(get_token), false) =
                (sub.state(), sub.config.get_token.clone(), sub.fetching)
            {
                sub.fetching = true;
                self.spawn_sub_token(channel, get_token);
            }
        }
        None
    }

    fn start_refresh(&mut self, live: &mut Live) {
        match &self.config.get_token {
            Some(get_token) => live.token_fut = Some(get_token()),
            // The server disconnects with 3005 (expired); reconnecting then
            // fails with 109 and, without a way to get a token, stops.
            None => tracing::debug!("token expires but no get_token is set"),
        }
    }

    fn refresh_token(
        &mut self,
        token: Result<String, TokenError>,
        live: &mut Live,
    ) -> Option<Next> {
        match token {
            Ok(token) => {
                self.token = Some(token.clone());
                let id = self.id();
                let cmd = Command {
                    id,
                    refresh: Some(RefreshRequest { token }),
                    ..Command::default()
                };
                if live.out.push(&cmd).is_ok() {
                    self.pending.insert(id, Pending::Refresh);
                }
                None
            }
            Err(TokenError::Unauthorized) => {
                Some(self.disconnected(codes::UNAUTHORIZED, "unauthorized".into()))
            }
            Err(e) => {
                self.emit(ClientEvent::Error(Error::Token(e)));
                live.refresh_at = Some(
                    Instant::now() + self.config.min_reconnect_delay.max(Duration::from_secs(1)),
                );
                None
            }
        }
    }

    fn send_call(
        &mut self,
        mut cmd: Box<Command>,
        reply: ReplyTx,
        needs_reply: bool,
        live: &mut Live,
    ) {
        if needs_reply {
            cmd.id = self.id();
        }
        if let Err(e) = live.out.push(&cmd) {
            let _ = reply.send(Err(Error::Encode(e.to_string())));
            return;
        }
        if needs_reply {
            if self.pending.len() >= 64 {
                self.pending
                    .retain(|_, p| !matches!(p, Pending::User(tx) if tx.is_closed()));
            }
            self.pending.insert(cmd.id, Pending::User(reply));
        } else {
            let _ = reply.send(Ok(Reply::default()));
        }
    }

    fn send_subscribe(&mut self, channel: &str, live: &mut Live) {
        let id = self.id();
        let Some(sub) = self.subs.get_mut(channel) else {
            return;
        };
        if sub.token.is_none() {
            if let Some(get_token) = sub.config.get_token.clone() {
                // Subscribe once the token arrives (Control::SubToken).
                if !sub.fetching {
                    sub.fetching = true;
                    self.spawn_sub_token(channel.to_owned(), get_token);
                }
                return;
            }
        }
        let request = SubscribeRequest {
            channel: channel.to_owned(),
            token: sub.token.clone().unwrap_or_default(),
            recoverable: sub.config.recoverable,
            positioned: sub.config.positioned,
            join_leave: sub.config.join_leave,
            data: sub.config.data.clone(),
            recover: sub.recover,
            offset: if sub.recover { sub.offset } else { 0 },
            epoch: if sub.recover {
                sub.epoch.clone()
            } else {
                String::new()
            },
            ..SubscribeRequest::default()
        };
        let cmd = Command {
            id,
            subscribe: Some(request),
            ..Command::default()
        };
        match live.out.push(&cmd) {
            Ok(()) => {
                sub.in_flight = true;
                self.pending.insert(
                    id,
                    Pending::Subscribe {
                        channel: channel.to_owned(),
                        deadline: Instant::now() + self.config.timeout,
                    },
                );
            }
            Err(e) => {
                sub.set_state(SubscriptionState::Unsubscribed);
                sub.emit(SubscriptionEvent::Error(Error::Encode(e.to_string())));
                sub.emit(SubscriptionEvent::Unsubscribed {
                    code: ErrorCode::BAD_REQUEST.0,
                    reason: "cannot encode subscribe".into(),
                });
            }
        }
    }

    // ---- Subscriptions -----------------------------------------------------

    /// Calls a channel's `get_token` in its own task; the result comes back
    /// as [`Control::SubToken`].
    fn spawn_sub_token(&self, channel: String, get_token: crate::config::GetToken) {
        let ctl = self.ctl_tx.clone();
        tokio::spawn(async move {
            let result = get_token().await;
            if let Some(ctl) = ctl.upgrade() {
                let _ = ctl.send(Control::SubToken { channel, result });
            }
        });
    }

    fn sub_control(&mut self, c: Control, live: Option<&mut Live>) {
        match c {
            Control::NewSub {
                channel,
                config,
                events,
                state,
            } => {
                let sub = Sub {
                    token: config.token.clone().filter(|t| !t.is_empty()),
                    fetching: false,
                    early: Vec::new(),
                    config,
                    events,
                    state,
                    recover: false,
                    offset: 0,
                    epoch: String::new(),
                    tracking: false,
                    in_flight: false,
                    attempt: 0,
                    retry_at: None,
                    refresh_at: None,
                };
                self.subs.insert(channel, sub);
            }
            Control::Subscribe(channel) => {
                let Some(sub) = self.subs.get_mut(&channel) else {
                    return;
                };
                if sub.state() != SubscriptionState::Unsubscribed {
                    return;
                }
                sub.set_state(SubscriptionState::Subscribing);
                sub.emit(SubscriptionEvent::Subscribing {
                    code: codes::SUBSCRIBE_CALLED,
                    reason: "subscribe called".into(),
                });
                if let Some(live) = live {
                    self.send_subscribe(&channel, live);
                }
            }
            Control::Unsubscribe(channel) => self.unsubscribe(&channel, live),
            Control::RemoveSub(channel) => {
                self.unsubscribe(&channel, live);
                self.subs.remove(&channel);
            }
            Control::SubToken { channel, result } => {
                let Some(sub) = self.subs.get_mut(&channel) else {
                    return;
                };
                sub.fetching = false;
                match result {
                    Ok(token) => {
                        sub.token = Some(token.clone());
                        match (live, sub.state()) {
                            (Some(live), SubscriptionState::Subscribing)
                                if !sub.in_flight && sub.retry_at.is_none() =>
                            {
                                self.send_subscribe(&channel, live);
                            }
                            (Some(live), SubscriptionState::Subscribed) => {
                                let id = self.id();
                                let cmd = Command {
                                    id,
                                    sub_refresh: Some(SubRefreshRequest {
                                        channel: channel.clone(),
                                        token,
                                        ..SubRefreshRequest::default()
                                    }),
                                    ..Command::default()
                                };
                                if live.out.push(&cmd).is_ok() {
                                    self.pending.insert(id, Pending::SubRefresh { channel });
                                }
                            }
                            _ => {}
                        }
                    }
                    Err(TokenError::Unauthorized) => {
                        if sub.state() == SubscriptionState::Subscribed {
                            // The server would unsubscribe at expiry anyway.
                            self.unsubscribe(&channel, live);
                        } else if sub.state() != SubscriptionState::Unsubscribed {
                            sub.set_state(SubscriptionState::Unsubscribed);
                            sub.recover = false;
                            sub.emit(SubscriptionEvent::Unsubscribed {
                                code: codes::UNAUTHORIZED,
                                reason: "unauthorized".into(),
                            });
                        }
                    }
                    Err(e) => {
                        sub.emit(SubscriptionEvent::Error(Error::Token(e)));
                        let delay = reconnect_delay(
                            sub.attempt,
                            self.config.min_reconnect_delay,
                            self.config.max_reconnect_delay,
                        );
                        sub.attempt = sub.attempt.saturating_add(1);
                        let at = Some(Instant::now() + delay);
                        if sub.state() == SubscriptionState::Subscribed {
                            sub.refresh_at = at;
                        } else {
                            sub.retry_at = at;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn unsubscribe(&mut self, channel: &str, live: Option<&mut Live>) {
        let id = self.id();
        let Some(sub) = self.subs.get_mut(channel) else {
            return;
        };
        if sub.state() == SubscriptionState::Unsubscribed {
            return;
        }
        let was_subscribed = sub.state() == SubscriptionState::Subscribed || sub.in_flight;
        sub.set_state(SubscriptionState::Unsubscribed);
        sub.recover = false;
        sub.tracking = false;
        sub.offset = 0;
        sub.epoch.clear();
        sub.retry_at = None;
        sub.refresh_at = None;
        sub.attempt = 0;
        sub.emit(SubscriptionEvent::Unsubscribed {
            code: codes::UNSUBSCRIBE_CALLED,
            reason: "unsubscribe called".into(),
        });
        if let (Some(live), true) = (live, was_subscribed) {
            let cmd = Command {
                id,
                unsubscribe: Some(UnsubscribeRequest {
                    channel: channel.to_owned(),
                }),
                ..Command::default()
            };
            if live.out.push(&cmd).is_ok() {
                self.pending.insert(id, Pending::Ignore);
            }
        }
    }

    fn subscribe_reply(&mut self, channel: String, reply: Reply, live: &mut Live) {
        let Some(sub) = self.subs.get_mut(&channel) else {
            return;
        };
        sub.in_flight = false;
        let early = std::mem::take(&mut sub.early);
        if sub.state() != SubscriptionState::Subscribing {
            // Unsubscribed meanwhile; the unsubscribe command followed.
            return;
        }
        if let Some(e) = reply.error {
            // A temporary error is retried with backoff, an expired token
            // with a new one from `get_token`; anything else (including 109
            // without `get_token`) ends the subscription.
            let expired = e.code == ErrorCode::TOKEN_EXPIRED.0 && sub.config.get_token.is_some();
            sub.emit(SubscriptionEvent::Error(e.clone().into()));
            if expired {
                sub.token = None;
                self.send_subscribe(&channel, live);
            } else if e.temporary {
                let delay = reconnect_delay(
                    sub.attempt,
                    self.config.min_reconnect_delay,
                    self.config.max_reconnect_delay,
                );
                sub.attempt = sub.attempt.saturating_add(1);
                sub.retry_at = Some(Instant::now() + delay);
            } else {
                sub.set_state(SubscriptionState::Unsubscribed);
                sub.recover = false;
                sub.emit(SubscriptionEvent::Unsubscribed {
                    code: e.code,
                    reason: e.message,
                });
            }
            return;
        }
        let result: SubscribeResult = reply.subscribe.unwrap_or_default();
        let asked_recover = sub.recover;
        let (prev_offset, prev_epoch) = (sub.offset, std::mem::take(&mut sub.epoch));
        sub.attempt = 0;
        sub.tracking = result.recoverable || result.positioned;
        sub.recover = result.recoverable;
        sub.offset = result.offset;
        sub.epoch = result.epoch.clone();
        sub.refresh_at = (result.expires && result.ttl > 0 && sub.config.get_token.is_some())
            .then(|| Instant::now() + Duration::from_secs(u64::from(result.ttl)));
        sub.set_state(SubscriptionState::Subscribed);
        sub.emit(SubscriptionEvent::Subscribed {
            recoverable: result.recoverable,
            positioned: result.positioned,
            was_recovering: result.was_recovering || asked_recover,
            recovered: result.recovered,
            epoch: result.epoch.clone(),
            offset: result.offset,
            data: result.data,
        });
        if asked_recover && !result.recovered {
            sub.emit(SubscriptionEvent::Unrecovered {
                offset: prev_offset,
                epoch: prev_epoch.clone(),
            });
        }
        // Recovered publications: in order, skipping what was delivered
        // before the reconnect (same epoch, offset not past ours).
        let same_epoch = asked_recover && prev_epoch == result.epoch;
        let mut top = result.offset;
        for p in result.publications {
            if same_epoch && p.offset != 0 && p.offset <= prev_offset {
                continue;
            }
            top = top.max(p.offset);
            sub.emit(SubscriptionEvent::Publication(p.into()));
        }
        sub.offset = top;
        for p in early {
            if sub.tracking && p.offset != 0 {
                if p.offset <= sub.offset {
                    continue;
                }
                sub.offset = p.offset;
            }
            sub.emit(SubscriptionEvent::Publication(p.into()));
        }
    }

    fn push(&mut self, push: Push, live: &mut Live) -> Option<Next> {
        if let Some(d) = push.disconnect {
            return Some(self.server_disconnect(d.code, d.reason));
        }
        if let Some(m) = push.message {
            self.emit(ClientEvent::Message(m.data));
            return None;
        }
        let channel = push.channel;
        let Some(sub) = self.subs.get_mut(&channel) else {
            if let Some(p) = push.publication {
                self.emit(ClientEvent::ServerPublication {
                    channel,
                    publication: p.into(),
                });
            }
            return None;
        };
        if sub.state() != SubscriptionState::Subscribed {
            if let (Some(p), true) = (push.publication, sub.in_flight) {
                sub.early.push(p);
            }
            return None;
        }
        if let Some(p) = push.publication {
            if sub.tracking && p.offset != 0 {
                if p.offset <= sub.offset {
                    return None; // already delivered
                }
                sub.offset = p.offset;
            }
            sub.emit(SubscriptionEvent::Publication(p.into()));
        } else if let Some(j) = push.join {
            sub.emit(SubscriptionEvent::Join(j.info.unwrap_or_default()));
        } else if let Some(l) = push.leave {
            sub.emit(SubscriptionEvent::Leave(l.info.unwrap_or_default()));
        } else if let Some(u) = push.unsubscribe {
            if UnsubscribeCode(u.code).resubscribe() {
                sub.set_state(SubscriptionState::Subscribing);
                sub.emit(SubscriptionEvent::Subscribing {
                    code: u.code,
                    reason: u.reason,
                });
                self.send_subscribe(&channel, live);
            } else {
                sub.set_state(SubscriptionState::Unsubscribed);
                sub.recover = false;
                sub.emit(SubscriptionEvent::Unsubscribed {
                    code: u.code,
                    reason: u.reason,
                });
            }
        }
        None
    }

    // ---- Incoming ----------------------------------------------------------

    fn frame(&mut self, msg: &Message, live: &mut Live) -> Option<Next> {
        let replies = match decode_replies(self.config.encoding, msg.as_bytes()) {
            Ok(r) => r,
            Err(e) => {
                self.emit(ClientEvent::Error(Error::Protocol(e.to_string())));
                return Some(self.disconnected(codes::BAD_PROTOCOL, "bad protocol".into()));
            }
        };
        for reply in replies {
            if let Some(next) = self.reply(reply, live) {
                return Some(next);
            }
        }
        None
    }

    fn reply(&mut self, mut reply: Reply, live: &mut Live) -> Option<Next> {
        if reply.is_ping() {
            if live.pong {
                // An empty command has no payload that could fail to encode.
                let _ = live.out.push(&Command::default());
            }
            return None;
        }
        if reply.id == 0 {
            return match reply.push.take() {
                Some(push) => self.push(push, live),
                None => None,
            };
        }
        match self.pending.remove(&reply.id) {
            Some(Pending::User(tx)) => {
                let _ = tx.send(Ok(reply));
            }
            Some(Pending::Subscribe { channel, .. }) => self.subscribe_reply(channel, reply, live),
            Some(Pending::Refresh) => match (reply.error, reply.refresh) {
                (Some(e), _) => {
                    self.emit(ClientEvent::Error(e.into()));
                    live.refresh_at = Some(Instant::now() + self.config.max_reconnect_delay);
                }
                (None, Some(r)) if r.expires => {
                    live.refresh_at = Some(Instant::now() + Duration::from_secs(u64::from(r.ttl)));
                }
                _ => live.refresh_at = None,
            },
            Some(Pending::SubRefresh { channel }) => {
                let (min, max) = (
                    self.config.min_reconnect_delay,
                    self.config.max_reconnect_delay,
                );
                if let Some(sub) = self.subs.get_mut(&channel) {
                    match (reply.error, reply.sub_refresh) {
                        (Some(e), _) => {
                            sub.emit(SubscriptionEvent::Error(e.into()));
                            let delay = reconnect_delay(sub.attempt, min, max);
                            sub.attempt = sub.attempt.saturating_add(1);
                            sub.refresh_at = Some(Instant::now() + delay);
                        }
                        (None, Some(r)) if r.expires && r.ttl > 0 => {
                            sub.attempt = 0;
                            sub.refresh_at =
                                Some(Instant::now() + Duration::from_secs(u64::from(r.ttl)));
                        }
                        _ => sub.refresh_at = None,
                    }
                }
            }
            Some(Pending::Ignore) | None => {}
        }
        None
    }

    // ---- Leaving the connected phase ---------------------------------------

    /// Fails the commands in flight and moves subscriptions to subscribing.
    fn drop_connection(&mut self, code: u32, reason: &str) {
        for (_, p) in self.pending.drain() {
            if let Pending::User(tx) = p {
                let _ = tx.send(Err(Error::ConnectionLost));
            }
        }
        for sub in self.subs.values_mut() {
            sub.in_flight = false;
            sub.retry_at = None;
            sub.refresh_at = None;
            sub.early.clear();
            if sub.state() == SubscriptionState::Subscribed {
                sub.set_state(SubscriptionState::Subscribing);
                sub.emit(SubscriptionEvent::Subscribing {
                    code,
                    reason: reason.to_owned(),
                });
            }
        }
    }

    /// The connection is gone; reconnect after a backoff delay.
    fn lost(&mut self, code: u32, reason: String) -> Next {
        tracing::debug!(code, %reason, "connection lost, reconnecting");
        self.drop_connection(code, &reason);
        self.state.send_replace(State::Connecting);
        self.emit(ClientEvent::Connecting { code, reason });
        Next::Connect(Some(self.backoff()))
    }

    /// The server disconnected us with `code`: reconnect or stop by its range.
    fn server_disconnect(&mut self, code: u32, reason: String) -> Next {
        if DisconnectCode(code).reconnect() {
            self.lost(code, reason)
        } else {
            self.disconnected(code, reason)
        }
    }

    /// Stop: disconnected until `connect` is called.
    fn disconnected(&mut self, code: u32, reason: String) -> Next {
        self.drop_connection(code, &reason);
        for (_, tx, _) in self.queued.drain(..) {
            let _ = tx.send(Err(Error::Disconnected));
        }
        self.attempt = 0;
        self.state.send_replace(State::Disconnected);
        self.emit(ClientEvent::Disconnected { code, reason });
        Next::Idle
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

async fn poll_opt<T>(fut: &mut Option<BoxFuture<T>>) -> T {
    match fut {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Writes everything waiting in `out` when more than this is queued in the
/// WebSocket; below it, the queued frame is written by the `recv` that the
/// task polls anyway, so that a server that writes to us while we write to
/// it cannot deadlock the two.
const FLUSH_ABOVE: usize = 256 * 1024;

/// Queues `out` as one WebSocket message, then flushes only above
/// [`FLUSH_ABOVE`] (backpressure on a server that does not read).
async fn write(ws: &mut Ws, encoding: Encoding, out: &mut CommandEncoder) -> Result<(), Error> {
    let frame = out.take();
    let msg = match encoding {
        Encoding::Json => Message::Text(
            String::from_utf8(frame)
                .map_err(|e| Error::Encode(e.to_string()))?
                .into(),
        ),
        Encoding::Protobuf => Message::Binary(frame.into()),
    };
    ws.feed(msg)?;
    if ws.buffered_out() > FLUSH_ABOVE {
        ws.flush().await?;
    }
    Ok(())
}

/// Opens the WebSocket, sends the connect command and waits for its reply.
async fn establish(
    url: String,
    opts: wshub_ws::ClientOptions,
    encoding: Encoding,
    get_token: Option<crate::config::GetToken>,
    mut request: ConnectRequest,
    id: u32,
    timeout: Duration,
) -> Result<(Ws, ConnectResult, Option<String>), EstablishError> {
    let mut new_token = None;
    if let Some(get_token) = get_token {
        let token = get_token().await.map_err(EstablishError::Token)?;
        request.token = token.clone();
        new_token = Some(token);
    }
    let work = async {
        let mut ws = wshub_ws::connect(&url, &opts)
            .await
            .map_err(|e| EstablishError::Transport(e.into()))?;
        let mut out = CommandEncoder::new(encoding);
        let cmd = Command {
            id,
            connect: Some(request),
            ..Command::default()
        };
        out.push(&cmd)
            .map_err(|e| EstablishError::Transport(Error::Encode(e.to_string())))?;
        write(&mut ws, encoding, &mut out)
            .await
            .map_err(EstablishError::Transport)?;
        ws.flush()
            .await
            .map_err(|e| EstablishError::Transport(e.into()))?;
        loop {
            let msg = match ws.recv().await {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => return Err(EstablishError::Transport(e.into())),
                None => {
                    let (code, reason) = match ws.close_info() {
                        Some((Some(code), reason)) => (u32::from(code.0), reason),
                        _ => (codes::TRANSPORT_CLOSED, "transport closed".to_owned()),
                    };
                    return Err(EstablishError::Closed { code, reason });
                }
            };
            let replies = decode_replies(encoding, msg.as_bytes())
                .map_err(|e| EstablishError::Transport(Error::Protocol(e.to_string())))?;
            for reply in replies {
                if reply.id != id {
                    if let Some(d) = reply.push.and_then(|p| p.disconnect) {
                        return Err(EstablishError::Closed {
                            code: d.code,
                            reason: d.reason,
                        });
                    }
                    continue;
                }
                if let Some(e) = reply.error {
                    return Err(EstablishError::Server(e));
                }
                return Ok((ws, reply.connect.unwrap_or_default()));
            }
        }
    };
    let (ws, result) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| EstablishError::Transport(Error::Timeout))??;
    Ok((ws, result, new_token))
}
