//! Client and subscription settings.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wshub_protocol::Encoding;

use crate::error::TokenError;

/// A boxed, sendable future (what a token callback returns).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A callback that fetches a fresh connection token, typically from the
/// application's backend. Called before connecting when no token is known,
/// after the server answered a connect with error 109 (token expired), and
/// before the connection's token expires (then sent in a `refresh` command).
pub type GetToken = Arc<dyn Fn() -> BoxFuture<Result<String, TokenError>> + Send + Sync>;

/// Settings of a [`Client`](crate::Client).
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The connection token (JWT), if any.
    pub token: Option<String>,
    /// Fetches a new token (see [`GetToken`]).
    pub get_token: Option<GetToken>,
    /// Custom data sent in the connect command (raw JSON on JSON connections).
    pub data: Bytes,
    /// Client name sent in the connect command (default `"rust"`).
    pub name: String,
    /// Client version sent in the connect command.
    pub version: String,
    /// Wire encoding (default JSON; protobuf uses the
    /// `centrifuge-protobuf` subprotocol).
    pub encoding: Encoding,
    /// Smallest delay before a reconnect attempt (default 500 ms).
    pub min_reconnect_delay: Duration,
    /// Largest delay before a reconnect attempt (default 20 s).
    pub max_reconnect_delay: Duration,
    /// How long a command waits for its reply, and how long connecting
    /// (WebSocket plus connect command) may take (default 5 s).
    pub timeout: Duration,
    /// How much later than the interval the server announced a ping may
    /// arrive before the connection counts as dead (default 10 s).
    pub max_server_ping_delay: Duration,
    /// WebSocket settings (TLS, limits, compression). The subprotocol is
    /// set from [`encoding`](Self::encoding).
    pub ws: wshub_ws::ClientOptions,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            token: None,
            get_token: None,
            data: Bytes::new(),
            name: "rust".into(),
            version: String::new(),
            encoding: Encoding::Json,
            min_reconnect_delay: Duration::from_millis(500),
            max_reconnect_delay: Duration::from_secs(20),
            timeout: Duration::from_secs(5),
            max_server_ping_delay: Duration::from_secs(10),
            ws: wshub_ws::ClientOptions::default(),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("get_token", &self.get_token.is_some())
            .field("name", &self.name)
            .field("version", &self.version)
            .field("encoding", &self.encoding)
            .field("min_reconnect_delay", &self.min_reconnect_delay)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .field("timeout", &self.timeout)
            .field("max_server_ping_delay", &self.max_server_ping_delay)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Sets [`ClientConfig::token`].
    pub fn token(mut self, v: impl Into<String>) -> Self {
        self.token = Some(v.into());
        self
    }
    /// Sets [`ClientConfig::get_token`] from an async closure.
    pub fn get_token<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, TokenError>> + Send + 'static,
    {
        self.get_token = Some(Arc::new(move || Box::pin(f())));
        self
    }
    /// Sets [`ClientConfig::data`].
    pub fn data(mut self, v: impl Into<Bytes>) -> Self {
        self.data = v.into();
        self
    }
    /// Sets [`ClientConfig::name`].
    pub fn name(mut self, v: impl Into<String>) -> Self {
        self.name = v.into();
        self
    }
    /// Sets [`ClientConfig::version`].
    pub fn version(mut self, v: impl Into<String>) -> Self {
        self.version = v.into();
        self
    }
    /// Sets [`ClientConfig::encoding`].
    pub fn encoding(mut self, v: Encoding) -> Self {
        self.encoding = v;
        self
    }
    /// Sets [`ClientConfig::min_reconnect_delay`].
    pub fn min_reconnect_delay(mut self, v: Duration) -> Self {
        self.min_reconnect_delay = v;
        self
    }
    /// Sets [`ClientConfig::max_reconnect_delay`].
    pub fn max_reconnect_delay(mut self, v: Duration) -> Self {
        self.max_reconnect_delay = v;
        self
    }
    /// Sets [`ClientConfig::timeout`].
    pub fn timeout(mut self, v: Duration) -> Self {
        self.timeout = v;
        self
    }
    /// Sets [`ClientConfig::max_server_ping_delay`].
    pub fn max_server_ping_delay(mut self, v: Duration) -> Self {
        self.max_server_ping_delay = v;
        self
    }
    /// Sets [`ClientConfig::ws`].
    pub fn ws(mut self, v: wshub_ws::ClientOptions) -> Self {
        self.ws = v;
        self
    }
}

/// Settings of a [`Subscription`](crate::Subscription).
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct SubscriptionConfig {
    /// Channel token (JWT) for channels that need one.
    pub token: Option<String>,
    /// Fetches a channel token: before subscribing when there is none,
    /// after the server answered a subscribe with error 109 (token
    /// expired), and before the token expires (sent in a `sub_refresh`
    /// command when the subscribe result says `expires`).
    pub get_token: Option<GetToken>,
    /// Ask the server to keep a position in the stream so that missed
    /// publications are recovered after a reconnect.
    pub recoverable: bool,
    /// Ask the server to check the stream position (no gaps unnoticed).
    pub positioned: bool,
    /// Ask for join and leave pushes.
    pub join_leave: bool,
    /// Custom data sent in the subscribe command.
    pub data: Bytes,
}

impl fmt::Debug for SubscriptionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("get_token", &self.get_token.is_some())
            .field("recoverable", &self.recoverable)
            .field("positioned", &self.positioned)
            .field("join_leave", &self.join_leave)
            .finish_non_exhaustive()
    }
}

impl SubscriptionConfig {
    /// Sets [`SubscriptionConfig::token`].
    pub fn token(mut self, v: impl Into<String>) -> Self {
        self.token = Some(v.into());
        self
    }
    /// Sets [`SubscriptionConfig::get_token`] from an async closure.
    pub fn get_token<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, TokenError>> + Send + 'static,
    {
        self.get_token = Some(Arc::new(move || Box::pin(f())));
        self
    }
    /// Sets [`SubscriptionConfig::recoverable`].
    pub fn recoverable(mut self, v: bool) -> Self {
        self.recoverable = v;
        self
    }
    /// Sets [`SubscriptionConfig::positioned`].
    pub fn positioned(mut self, v: bool) -> Self {
        self.positioned = v;
        self
    }
    /// Sets [`SubscriptionConfig::join_leave`].
    pub fn join_leave(mut self, v: bool) -> Self {
        self.join_leave = v;
        self
    }
    /// Sets [`SubscriptionConfig::data`].
    pub fn data(mut self, v: impl Into<Bytes>) -> Self {
        self.data = v.into();
        self
    }
}

/// What a history request asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryOptions {
    /// Most publications to return (0: none, only the stream position;
    /// -1: all the server allows).
    pub limit: i32,
    /// Return publications after this position (offset, epoch).
    pub since: Option<(u64, String)>,
    /// Newest first.
    pub reverse: bool,
}

impl HistoryOptions {
    /// Sets [`HistoryOptions::limit`].
    pub fn limit(mut self, v: i32) -> Self {
        self.limit = v;
        self
    }
    /// Sets [`HistoryOptions::since`].
    pub fn since(mut self, offset: u64, epoch: impl Into<String>) -> Self {
        self.since = Some((offset, epoch.into()));
        self
    }
    /// Sets [`HistoryOptions::reverse`].
    pub fn reverse(mut self, v: bool) -> Self {
        self.reverse = v;
        self
    }
}
