//! # wshub-config: configuration in the Centrifugo v6 file format
//!
//! This crate owns everything between a configuration file and typed
//! options: the file formats, the environment variables, the defaults, the
//! validation and the refusals behind `wshub check-config`, and the schemas
//! of every section, the brokers' ([`RedisConfig`], [`NatsConfig`]) included.
//! The other crates take the typed [`Config`] and know no file format.
//!
//! `wshub serve` reads the same configuration files as Centrifugo v6 (JSON,
//! YAML or TOML, chosen by file extension), with the same section and key
//! names and the same defaults, so an existing Centrifugo config works as is
//! for the features wshub implements. Keys Centrifugo knows but wshub does not
//! implement are reported as [`WarningKind::Unsupported`]; keys nobody knows
//! (typos) as [`WarningKind::UnknownKey`]. Neither stops the server, like in
//! Centrifugo; invalid values do ([`ConfigError`]), and so does any key that
//! would turn on a feature wshub does not implement (`sse.enabled: true`,
//! `allowed_delta_types`, `allow_tags_filter`, `http_server.internal_port`,
//! ...): a user who turns an option on gets the feature or a clear refusal.
//!
//! Environment variables override the file: `WSHUB_` + the dotted key path in
//! upper case with `.` replaced by `_` (`WSHUB_CLIENT_TOKEN_HMAC_SECRET_KEY`,
//! `WSHUB_HTTP_API_KEY`, `WSHUB_CHANNEL_WITHOUT_NAMESPACE_PRESENCE`). Arrays of
//! strings are space separated; `WSHUB_CHANNEL_NAMESPACES` takes a JSON array
//! of namespace objects; one option of a namespace that exists is
//! `WSHUB_CHANNEL_NAMESPACES_<NAME>_<OPTION>`. Empty variables count as unset.
//!
//! What this crate must not know: sockets, HTTP, the broker implementations,
//! key formats (the token verifier checks public keys through
//! [`TokenKeyCheck`]). It describes; `crates/server`, the hub and the brokers
//! act on it.
//!
//! ```
//! use wshub_config::{channel_options, Format, Loader};
//!
//! let text = r#"{
//!     "client": {"token": {"hmac_secret_key": "secret"}},
//!     "channel": {"namespaces": [{"name": "chat", "presence": true,
//!                                  "history_size": 100, "history_ttl": "5m"}]}
//! }"#;
//! let loaded = Loader::new().load_str(text, Format::Json).unwrap();
//! assert!(loaded.warnings.is_empty());
//! let ch = channel_options(&loaded.config, "chat:room-1").unwrap();
//! assert_eq!(ch.namespace, Some("chat"));
//! assert!(ch.options.presence);
//! assert!(channel_options(&loaded.config, "nope:x").is_err()); // 102 unknown channel
//! ```

// No panic reachable from input: the release profile aborts on panic.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod channel;
mod duration;
mod load;
mod validate;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Deserializer, Serialize};

pub use channel::{
    channel_options, ChannelError, ChannelNamespace, ChannelOptions, JoinLeaveLimit,
    ResolvedChannel, FRONT_CHANNEL_PREFIX,
};
pub use duration::{Duration, DurationParseError};
pub use load::{ConfigWarning, Format, Loaded, Loader, WarningKind, ENV_PREFIX};
pub use validate::{check_jwks_endpoint, TokenKeyCheck, ValidationError};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file extension is not `.json`, `.yaml`, `.yml` or `.toml`.
    #[error("config file {path}: unknown format (use .json, .yaml, .yml or .toml)")]
    UnknownFormat {
        /// The file.
        path: String,
    },
    /// The file is not valid JSON/YAML/TOML.
    #[error("config is not valid {format}: {message}")]
    Syntax {
        /// The format that was expected.
        format: Format,
        /// The parser's message, with a line and column when it has one.
        message: String,
    },
    /// A key has a value of the wrong type (`"presence": "yes"`).
    #[error("config key {path}: {message}")]
    Type {
        /// Dotted path of the key.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// An environment variable could not be read as the type of its key.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What was wrong.
        message: String,
    },
    /// The values are well typed but do not make sense together.
    #[error("invalid configuration: {}", join_errors(.0))]
    Invalid(Vec<ValidationError>),
    /// A PEM value (TLS certificate or key) is not raw PEM, base64 PEM or a
    /// readable file.
    #[error("{key}: {message}")]
    Pem {
        /// Which key.
        key: String,
        /// What was wrong.
        message: String,
    },
}

fn join_errors(errors: &[ValidationError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The whole configuration file (Centrifugo v6 layout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct Config {
    /// `http_server`: listen address, port, TLS, connection timeouts and
    /// limits.
    pub http_server: HttpServerConfig,
    /// `log`: level and file.
    pub log: LogConfig,
    /// `engine`: combined broker and presence manager (`memory` or `redis`).
    pub engine: EngineConfig,
    /// `broker`: a broker set separately from the engine (`memory`, `redis`, `nats`).
    pub broker: BrokerConfig,
    /// `client`: connection auth, origins, limits, heartbeats.
    pub client: ClientConfig,
    /// `channel`: channel name rules, options and namespaces.
    pub channel: ChannelConfig,
    /// `http_api`: the server HTTP API (`/api`).
    pub http_api: HttpApiConfig,
    /// `websocket`: the bidirectional WebSocket transport.
    pub websocket: WebSocketConfig,
    /// `http_stream`: bidirectional HTTP-streaming (with `emulation`).
    pub http_stream: HttpStreamConfig,
    /// `sse`: bidirectional Server-Sent Events (with `emulation`).
    pub sse: SseConfig,
    /// `emulation`: the endpoint for the commands of HTTP-streaming and SSE
    /// clients.
    pub emulation: EmulationConfig,
    /// `uni_http_stream`: unidirectional HTTP-streaming.
    pub uni_http_stream: UniHttpStreamConfig,
    /// `uni_sse`: unidirectional Server-Sent Events.
    pub uni_sse: UniSseConfig,
    /// `uni_websocket`: unidirectional WebSocket.
    pub uni_websocket: UniWebSocketConfig,
    /// `long_poll` (wshub only): long-polling, for proxies that buffer
    /// streamed responses.
    pub long_poll: LongPollConfig,
    /// `webtransport`: the bidirectional WebTransport transport (over
    /// HTTP/3, `http_server.http3`).
    pub webtransport: WebTransportConfig,
    /// `prometheus`: the metrics endpoint.
    pub prometheus: PrometheusConfig,
    /// `health`: the health check endpoint.
    pub health: HealthConfig,
    /// `shutdown`: graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// `demo` (wshub only, not a Centrifugo key): the static demo pages.
    pub demo: DemoConfig,
    /// `limits`: per-IP and per-connection limits (wshub only; Centrifugo
    /// OSS has no such keys).
    pub limits: LimitsConfig,
    /// `pusher` (wshub only): the Pusher Channels protocol 7 front, for
    /// `pusher-js`, Laravel Echo and the Pusher server SDKs.
    pub pusher: PusherConfig,
}

/// `http_server` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HttpServerConfig {
    /// `address`: interface to listen on; empty means all interfaces.
    pub address: String,
    /// `port`: default 8000.
    pub port: u16,
    /// `internal_address`: interface for internal endpoints (API, metrics, health).
    pub internal_address: String,
    /// `internal_port`: port for internal endpoints; empty means `port`.
    /// A string, as in Centrifugo.
    pub internal_port: String,
    /// `tls`: TLS for the external server.
    pub tls: TlsConfig,
    /// `tls_external`: use TLS only for the external endpoints.
    pub tls_external: bool,
    /// `internal_tls`: TLS for the internal port.
    pub internal_tls: TlsConfig,
    /// `read_header_timeout` (wshub; Centrifugo v6 has no key for it): how
    /// long a client may take to send a request's line and headers, counted
    /// from the accept for the first request and from the first byte for
    /// the next ones on a keep-alive connection. Over it the connection is
    /// closed. Default 10s; 0 disables it (not recommended: a silent or
    /// half-sent request would hold its socket forever).
    pub read_header_timeout: Duration,
    /// `idle_timeout` (wshub): how long a keep-alive connection may stay
    /// open with no request after its last response. Default 60s; 0
    /// disables it. Never applies to a WebSocket after the upgrade or to a
    /// request still being answered.
    pub idle_timeout: Duration,
    /// `tls_handshake_timeout` (wshub): how long a client on a TLS
    /// listener may take to complete the handshake. Default 10s; 0
    /// disables it.
    pub tls_handshake_timeout: Duration,
    /// `listen_backlog` (wshub): length of the queue of connections the
    /// kernel accepted that wshub has not taken yet, default 4096. The
    /// kernel caps it at `net.core.somaxconn`.
    pub listen_backlog: u32,
    /// `max_connections` (wshub): open sockets (HTTP and WebSocket) the
    /// node holds at most; a connection over it is answered `503 Service
    /// Unavailable` with `Retry-After` and closed, before any request is
    /// read. 0 (the default) picks the open-file limit minus a reserve of
    /// max(64, 5%) for the broker, logs and the listener.
    pub max_connections: u32,
    /// `http2` (wshub): HTTP/2 on the same port, with WebSockets over it
    /// (RFC 8441).
    pub http2: Http2Config,
    /// `http3`: HTTP/3 over QUIC on the same port number (UDP), with
    /// WebSockets over it (RFC 9220) and WebTransport. Requires TLS.
    pub http3: Http3Config,
}

/// `http_server.http3` section. With `enabled` (and `http_server.tls`,
/// which QUIC requires) the node also listens on UDP at the HTTP port:
/// `/connection/websocket` by extended CONNECT (RFC 9220) and, with
/// `webtransport.enabled`, WebTransport sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Http3Config {
    /// `enabled`: default false (as in Centrifugo).
    pub enabled: bool,
    /// `max_concurrent_streams` (wshub): bidirectional streams (requests,
    /// WebSockets) one QUIC connection may open at once; default 128. QUIC
    /// flow control holds back the streams past it.
    pub max_concurrent_streams: u32,
}

impl Default for Http3Config {
    fn default() -> Self {
        Http3Config {
            enabled: false,
            max_concurrent_streams: 128,
        }
    }
}

/// `http_server.http2` section (wshub). HTTP/2 is served on TLS
/// connections whose client picks ALPN `h2` and on cleartext connections
/// that open with the HTTP/2 preface (prior knowledge, h2c), on the same
/// port as HTTP/1.1; WebSockets open over it by extended CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Http2Config {
    /// `enabled`: default true. When false, TLS offers only ALPN
    /// `http/1.1` and the preface is answered as a bad HTTP/1.1 request.
    pub enabled: bool,
    /// `max_concurrent_streams`: streams (requests, WebSockets, SSE
    /// streams) one connection may have open at once; default 128. A
    /// stream past it is refused (`REFUSED_STREAM`).
    pub max_concurrent_streams: u32,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            enabled: true,
            max_concurrent_streams: 128,
        }
    }
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            address: String::new(),
            port: 8000,
            internal_address: String::new(),
            internal_port: String::new(),
            tls: TlsConfig::default(),
            tls_external: false,
            internal_tls: TlsConfig::default(),
            read_header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_handshake_timeout: Duration::from_secs(10),
            listen_backlog: 4096,
            max_connections: 0,
            http2: Http2Config::default(),
            http3: Http3Config::default(),
        }
    }
}

/// A Centrifugo TLS object.
///
/// Each `*_pem` value is raw PEM, base64-encoded PEM, or a path to a PEM file
/// (tried in that order, as in Centrifugo); see [`TlsConfig::load_pem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct TlsConfig {
    /// `enabled`.
    pub enabled: bool,
    /// `cert_pem`: certificate chain.
    pub cert_pem: String,
    /// `key_pem`: private key.
    pub key_pem: String,
    /// `server_ca_pem`: CA used by a client to check the server.
    pub server_ca_pem: String,
    /// `client_ca_pem`: CA used by the server to check client certificates.
    pub client_ca_pem: String,
    /// `insecure_skip_verify`: client side, skip server certificate checks.
    pub insecure_skip_verify: bool,
    /// `server_name`: client side, name to verify.
    pub server_name: String,
}

impl TlsConfig {
    /// Resolve one of the `*_pem` values to PEM bytes: raw PEM if it contains
    /// `-----BEGIN`, else base64 of PEM, else a file path. `key` names the
    /// option in the error.
    pub fn load_pem(value: &str, key: &str) -> Result<Vec<u8>, ConfigError> {
        use base64::Engine as _;
        let err = |message: String| ConfigError::Pem {
            key: key.to_owned(),
            message,
        };
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(err("empty".into()));
        }
        if trimmed.contains("-----BEGIN") {
            return Ok(trimmed.as_bytes().to_vec());
        }
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(trimmed) {
            if decoded.windows(10).any(|w| w == b"-----BEGIN") {
                return Ok(decoded);
            }
        }
        let bytes = std::fs::read(trimmed).map_err(|e| {
            err(format!(
                "not PEM, not base64 PEM, and not a readable file: {e}"
            ))
        })?;
        if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
            return Err(err(format!("file {trimmed} does not contain PEM data")));
        }
        Ok(bytes)
    }
}

/// `log` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LogConfig {
    /// `level`: `trace`, `debug`, `info` (default), `warn`, `error`, `fatal`
    /// or `none`. Checked but not applied (`wshub --log` and `RUST_LOG` set
    /// the filter); a warning when set.
    pub level: String,
    /// `file`: log to this file instead of stdout. Not implemented by wshub
    /// (validation refuses a non-empty value).
    pub file: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            file: String::new(),
        }
    }
}

/// `engine` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EngineConfig {
    /// `type`: `memory` (default) or `redis`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `redis`: used when `type` is `redis`.
    pub redis: RedisConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            kind: "memory".into(),
            redis: RedisConfig::default(),
        }
    }
}

/// `broker` section: a broker configured separately from the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// `enabled`: use this section instead of `engine` for PUB/SUB and history.
    pub enabled: bool,
    /// `type`: `memory` (default), `redis` or `nats`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `redis`.
    pub redis: RedisConfig,
    /// `nats`.
    pub nats: NatsConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            enabled: false,
            kind: "memory".into(),
            redis: RedisConfig::default(),
            nats: NatsConfig::default(),
        }
    }
}

/// Which broker implementation the configuration selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerKind {
    /// In-process, single node.
    Memory,
    /// Redis (`engine.redis` or `broker.redis`).
    Redis,
    /// NATS (`broker.nats`): core subjects for delivery, JetStream for
    /// history, presence and the node registry.
    Nats,
}

/// A Redis connection (the subset of Centrifugo's Redis options wshub uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `address`: one or more `redis://host:port` addresses (a single string
    /// is accepted too). Several addresses shard channels across servers.
    #[serde(deserialize_with = "string_or_seq")]
    pub address: Vec<String>,
    /// `prefix`: key prefix, default `centrifugo`.
    pub prefix: String,
    /// `db`.
    pub db: u32,
    /// `user`.
    pub user: String,
    /// `password`.
    pub password: String,
    /// `connect_timeout`: default 1s.
    pub connect_timeout: Duration,
    /// `io_timeout`: default 4s.
    pub io_timeout: Duration,
    /// `cluster_address`: Redis Cluster seed addresses. Not implemented by
    /// wshub (validation refuses them where Redis is in use).
    #[serde(deserialize_with = "string_or_seq")]
    pub cluster_address: Vec<String>,
    /// `sentinel_address`: Sentinel addresses. Not implemented by wshub
    /// (validation refuses them where Redis is in use).
    #[serde(deserialize_with = "string_or_seq")]
    pub sentinel_address: Vec<String>,
    /// `sentinel_master_name`.
    pub sentinel_master_name: String,
    /// `tls`: not implemented for Redis (validation refuses `enabled`
    /// where Redis is in use).
    pub tls: TlsConfig,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            address: vec!["redis://127.0.0.1:6379".into()],
            prefix: "centrifugo".into(),
            db: 0,
            user: String::new(),
            password: String::new(),
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(4),
            cluster_address: Vec::new(),
            sentinel_address: Vec::new(),
            sentinel_master_name: String::new(),
            tls: TlsConfig::default(),
        }
    }
}

/// A NATS connection (`broker.nats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NatsConfig {
    /// `url`: default `nats://localhost:4222`.
    pub url: String,
    /// `prefix`: subject prefix, default `centrifugo`.
    pub prefix: String,
    /// `dial_timeout`: default 1s.
    pub dial_timeout: Duration,
    /// `write_timeout`: default 1s.
    pub write_timeout: Duration,
    /// `tls`: not applied (validation refuses `enabled`; a `tls://` URL
    /// works for servers with publicly trusted certificates).
    pub tls: TlsConfig,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://localhost:4222".into(),
            prefix: "centrifugo".into(),
            dial_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            tls: TlsConfig::default(),
        }
    }
}

/// `client` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `allowed_origins`: `Origin` patterns allowed to connect (`*` wildcard,
    /// `https://*.example.com`). Empty: every request that has an `Origin`
    /// header (every browser) is refused; requests without `Origin` always pass.
    pub allowed_origins: Vec<String>,
    /// `token`: connection (and, by default, subscription) JWT verification.
    pub token: TokenConfig,
    /// `subscription_token`: separate keys for subscription JWTs.
    pub subscription_token: SubscriptionTokenConfig,
    /// `allow_anonymous_connect_without_token`: connect with no token as user `""`.
    pub allow_anonymous_connect_without_token: bool,
    /// `disallow_anonymous_connection_tokens`: reject tokens with an empty `sub`.
    pub disallow_anonymous_connection_tokens: bool,
    /// `ping_interval`: server ping period, default 25s.
    pub ping_interval: Duration,
    /// `pong_timeout`: how long to wait for a pong, default 8s.
    pub pong_timeout: Duration,
    /// `expired_close_delay`: grace period to refresh an expired connection, default 25s.
    pub expired_close_delay: Duration,
    /// `expired_sub_close_delay`: same for expired subscriptions, default 25s.
    pub expired_sub_close_delay: Duration,
    /// `stale_close_delay`: close connections that sent no connect command, default 10s.
    pub stale_close_delay: Duration,
    /// `channel_limit`: subscriptions per connection, default 128.
    pub channel_limit: u32,
    /// `queue_max_size`: bytes queued to a slow client before disconnect, default 1 MiB.
    pub queue_max_size: u64,
    /// `presence_update_interval`: default 27s.
    pub presence_update_interval: Duration,
    /// `channel_position_check_delay`: default 40s. Not applied by wshub
    /// (positions are checked every 30 s); a warning when set.
    pub channel_position_check_delay: Duration,
    /// `channel_position_max_time_lag`: 0 means the Centrifugo default. Not
    /// applied by wshub; a warning when set.
    pub channel_position_max_time_lag: Duration,
    /// `connection_limit`: connections per node, 0 = unlimited.
    pub connection_limit: u64,
    /// `user_connection_limit`: connections per user per node, 0 = unlimited.
    pub user_connection_limit: u64,
    /// `connection_rate_limit`: new connections per second per node (burst
    /// the same), 0 = unlimited. Over it the WebSocket upgrade is refused
    /// with HTTP 429.
    pub connection_rate_limit: u64,
    /// `connect_include_server_time`: put the server time in connect replies.
    pub connect_include_server_time: bool,
    /// `history_max_publication_limit`: max publications per history call, default 300.
    pub history_max_publication_limit: u32,
    /// `recovery_max_publication_limit`: max publications recovered, default 300.
    pub recovery_max_publication_limit: u32,
    /// `insecure_skip_token_signature_verify`: accept tokens without checking
    /// signatures. Development only.
    pub insecure_skip_token_signature_verify: bool,
    /// `user_id_http_header`: take the user id from this request header
    /// (behind a trusted proxy) when no token is given. Not implemented by
    /// wshub (validation refuses a non-empty value).
    pub user_id_http_header: String,
    /// `insecure`: no auth at all, every client may subscribe and publish
    /// anywhere. Development only.
    pub insecure: bool,
    /// `subscribe_to_user_personal_channel`.
    pub subscribe_to_user_personal_channel: PersonalChannelConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            allowed_origins: Vec::new(),
            token: TokenConfig::default(),
            subscription_token: SubscriptionTokenConfig::default(),
            allow_anonymous_connect_without_token: false,
            disallow_anonymous_connection_tokens: false,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(8),
            expired_close_delay: Duration::from_secs(25),
            expired_sub_close_delay: Duration::from_secs(25),
            stale_close_delay: Duration::from_secs(10),
            channel_limit: 128,
            queue_max_size: 1_048_576,
            presence_update_interval: Duration::from_secs(27),
            channel_position_check_delay: Duration::from_secs(40),
            channel_position_max_time_lag: Duration::ZERO,
            connection_limit: 0,
            user_connection_limit: 0,
            connection_rate_limit: 0,
            connect_include_server_time: false,
            history_max_publication_limit: 300,
            recovery_max_publication_limit: 300,
            insecure_skip_token_signature_verify: false,
            user_id_http_header: String::new(),
            insecure: false,
            subscribe_to_user_personal_channel: PersonalChannelConfig::default(),
        }
    }
}

/// `client.token`: how JWTs are verified (by `wshub_hub::auth`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct TokenConfig {
    /// `hmac_secret_key`: enables HS256/HS384/HS512.
    pub hmac_secret_key: String,
    /// `hmac_previous_secret_key`: also accepted during a key rotation.
    pub hmac_previous_secret_key: String,
    /// `hmac_previous_secret_key_valid_until`: Unix seconds after which the
    /// previous key is no longer accepted (0 = no limit).
    pub hmac_previous_secret_key_valid_until: i64,
    /// `rsa_public_key`: PEM; enables RS256/RS384/RS512.
    pub rsa_public_key: String,
    /// `ecdsa_public_key`: PEM; enables ES256 (P-256) or ES384 (P-384).
    pub ecdsa_public_key: String,
    /// `jwks_public_endpoint`: when set, every token is verified with keys
    /// from this JWKS URL (by `kid`) and the static keys above are not used.
    pub jwks_public_endpoint: String,
    /// `audience`: require this `aud`.
    pub audience: String,
    /// `audience_regex`: require an `aud` matching this regex.
    pub audience_regex: String,
    /// `issuer`: require this `iss`.
    pub issuer: String,
    /// `issuer_regex`: require an `iss` matching this regex.
    pub issuer_regex: String,
    /// `user_id_claim`: take the user id from this top-level claim instead of `sub`.
    pub user_id_claim: String,
}

/// `client.subscription_token`: when `enabled`, subscription JWTs are
/// verified with these options instead of `client.token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct SubscriptionTokenConfig {
    /// `enabled`.
    pub enabled: bool,
    /// The same keys as `client.token`, at the same level as `enabled`.
    #[serde(flatten)]
    pub token: TokenConfig,
}

/// `client.subscribe_to_user_personal_channel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
#[non_exhaustive]
pub struct PersonalChannelConfig {
    /// `enabled`: subscribe every authenticated connection to `#<user>`
    /// (or `<namespace>:#<user>`) on the server side.
    pub enabled: bool,
    /// `personal_channel_namespace`: namespace of the personal channel.
    pub personal_channel_namespace: String,
    /// `single_connection`: keep one connection per user. Not implemented
    /// by wshub (validation refuses it).
    pub single_connection: bool,
}

/// `channel` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// `without_namespace`: options of channels without a namespace.
    pub without_namespace: ChannelOptions,
    /// `namespaces`: named option sets, used by `name:channel`.
    pub namespaces: Vec<ChannelNamespace>,
    /// `history_meta_ttl`: how long stream metadata (epoch, offset) lives, default 720h.
    pub history_meta_ttl: Duration,
    /// `publication_data_format`: default for namespaces that set none
    /// (`""`, `json`, `json_object` or `binary`).
    pub publication_data_format: String,
    /// `max_length`: longest channel name in bytes, default 255.
    pub max_length: u32,
    /// `private_prefix`: default `$`; such channels need a subscription token.
    pub private_prefix: String,
    /// `namespace_boundary`: default `:`.
    pub namespace_boundary: String,
    /// `user_boundary`: default `#`.
    pub user_boundary: String,
    /// `user_separator`: default `,`.
    pub user_separator: String,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            without_namespace: ChannelOptions::default(),
            namespaces: Vec::new(),
            history_meta_ttl: Duration::from_secs(720 * 3600),
            publication_data_format: String::new(),
            max_length: 255,
            private_prefix: "$".into(),
            namespace_boundary: ":".into(),
            user_boundary: "#".into(),
            user_separator: ",".into(),
        }
    }
}

/// `http_api` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HttpApiConfig {
    /// `disabled`: turn the HTTP API off.
    pub disabled: bool,
    /// `handler_prefix`: default `/api`.
    pub handler_prefix: String,
    /// `key`: required in `X-API-Key` (or `Authorization: apikey <key>`).
    pub key: String,
    /// `external`: serve the API on the external port even when an internal port is set.
    pub external: bool,
    /// `insecure`: no key required. Development only.
    pub insecure: bool,
    /// `max_batch_commands` (wshub; Centrifugo has no such key): the most
    /// commands one `batch` request may carry; a batch with more is
    /// answered 400 before any of its commands runs. Default 10,000.
    pub max_batch_commands: usize,
    /// `max_broadcast_channels` (wshub): the most channels of one
    /// `broadcast`; more is answered 400 (a `broadcast` inside a batch gets
    /// the error as its reply). Default 10,000.
    pub max_broadcast_channels: usize,
    /// `max_in_flight_body_size` (wshub): bytes of API request bodies the
    /// node holds at once over all requests (a request's body stays
    /// counted until its answer is written). A request that would pass it
    /// is answered 503. Each body is limited to 16 MiB on its own. Default
    /// 64 MiB.
    pub max_in_flight_body_size: u64,
    /// `request_body_timeout` (wshub): how long reading an API request's
    /// body may take once its headers are in; past it the request is
    /// answered 408 and its bytes leave the in-flight budget. Default 30 s.
    pub request_body_timeout: Duration,
    /// `response_write_timeout` (wshub): how long a streamed `batch` answer
    /// may wait for the caller to read; past it the batch stops (the
    /// commands not yet run are not run) and the answer ends there, cut
    /// short (not valid JSON). Default 30 s.
    pub response_write_timeout: Duration,
    /// `cluster_request_timeout` (wshub): how long `channels` waits for the
    /// other nodes' answers (a survey over the broker's control channel);
    /// a node that has not answered by then is left out of the result and
    /// counted in `wshub_api_survey_timeouts_total`. Default 2 s.
    pub cluster_request_timeout: Duration,
}

impl Default for HttpApiConfig {
    fn default() -> Self {
        HttpApiConfig {
            disabled: false,
            handler_prefix: "/api".into(),
            key: String::new(),
            external: false,
            insecure: false,
            max_batch_commands: 10_000,
            max_broadcast_channels: 10_000,
            max_in_flight_body_size: 64 << 20,
            request_body_timeout: Duration::from_secs(30),
            response_write_timeout: Duration::from_secs(30),
            cluster_request_timeout: Duration::from_secs(2),
        }
    }
}

/// `websocket` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WebSocketConfig {
    /// `disabled`.
    pub disabled: bool,
    /// `handler_prefix`: default `/connection/websocket`.
    pub handler_prefix: String,
    /// `compression`: negotiate permessage-deflate.
    pub compression: bool,
    /// `compression_min_size`: do not compress smaller messages. Not
    /// applied by wshub; a warning when set.
    pub compression_min_size: u32,
    /// `compression_level`: default 1. Not applied by wshub (the engine's
    /// level is used); a warning when set.
    pub compression_level: i32,
    /// `read_buffer_size`: 0 = engine default. Not applied by wshub; a
    /// warning when set.
    pub read_buffer_size: u32,
    /// `write_buffer_size`: 0 = engine default. Not applied by wshub; a
    /// warning when set.
    pub write_buffer_size: u32,
    /// `use_write_buffer_pool`. Not applied by wshub (idle connections
    /// hold no write buffer anyway); a warning when set.
    pub use_write_buffer_pool: bool,
    /// `write_timeout`: default 1s.
    pub write_timeout: Duration,
    /// `message_size_limit`: max incoming message bytes, default 65536.
    pub message_size_limit: u64,
    /// `decompressed_message_size_limit`: max bytes after inflate, 0 = same as
    /// `message_size_limit`.
    pub decompressed_message_size_limit: u64,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            disabled: false,
            handler_prefix: "/connection/websocket".into(),
            compression: false,
            compression_min_size: 0,
            compression_level: 1,
            read_buffer_size: 0,
            write_buffer_size: 0,
            use_write_buffer_pool: false,
            write_timeout: Duration::from_secs(1),
            message_size_limit: 65_536,
            decompressed_message_size_limit: 0,
        }
    }
}

/// A section of an HTTP transport: `enabled`, `handler_prefix` and
/// `max_request_body_size` (Centrifugo v6's keys and defaults).
macro_rules! http_transport_section {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        #[non_exhaustive]
        pub struct $name {
            /// `enabled`.
            pub enabled: bool,
            #[doc = concat!("`handler_prefix`: default `", $prefix, "`.")]
            pub handler_prefix: String,
            /// `max_request_body_size`: the largest request body (the
            /// connect command or request), default 65536 bytes; over it
            /// the request is answered 413.
            pub max_request_body_size: u64,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    enabled: false,
                    handler_prefix: $prefix.into(),
                    max_request_body_size: 65_536,
                }
            }
        }
    };
}

/// `webtransport` section (Centrifugo v6's keys): a WebTransport session
/// at `handler_prefix` over HTTP/3, whose first bidirectional stream
/// carries the client protocol as on `http_stream` (JSON lines, or
/// length-prefixed protobuf with `cf_protocol=protobuf`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WebTransportConfig {
    /// `enabled`: default false; needs `http_server.http3.enabled`.
    pub enabled: bool,
    /// `handler_prefix`: default `/connection/webtransport`.
    pub handler_prefix: String,
    /// `message_size_limit`: the largest command (one JSON line or one
    /// protobuf command) the client may send, default 65536 bytes; over it
    /// the session is closed.
    pub message_size_limit: u64,
}

impl Default for WebTransportConfig {
    fn default() -> Self {
        WebTransportConfig {
            enabled: false,
            handler_prefix: "/connection/webtransport".into(),
            message_size_limit: 65_536,
        }
    }
}

http_transport_section!(
    /// `http_stream` section: the client POSTs its connect command and reads
    /// replies and pushes from the chunked response (JSON lines or
    /// length-prefixed protobuf); its further commands go to `emulation`.
    HttpStreamConfig,
    "/connection/http_stream"
);
http_transport_section!(
    /// `sse` section: an `EventSource` GET with the connect command in the
    /// `cf_connect` query parameter (or a POST body), replies and pushes as
    /// SSE events; further commands go to `emulation`.
    SseConfig,
    "/connection/sse"
);
http_transport_section!(
    /// `uni_http_stream` section: one POSTed connect request, then pushes as
    /// JSON lines.
    UniHttpStreamConfig,
    "/connection/uni_http_stream"
);
http_transport_section!(
    /// `uni_sse` section: one connect request (`cf_connect` query parameter
    /// or a POST body), then pushes as SSE events.
    UniSseConfig,
    "/connection/uni_sse"
);

/// `uni_websocket` section: a plain WebSocket client sends one
/// `ConnectRequest` (the first message, or the `cf_connect` query
/// parameter) and then only receives bare pushes as text frames; the server
/// pings with `{}` messages and with WebSocket pings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct UniWebSocketConfig {
    /// `enabled`.
    pub enabled: bool,
    /// `handler_prefix`: default `/connection/uni_websocket`.
    pub handler_prefix: String,
    /// `message_size_limit`: the largest message from the client (its
    /// connect request), default 65536; over it the close is 1009.
    pub message_size_limit: u64,
    /// `decompressed_message_size_limit`: after inflate, 0 = 10 × the
    /// message size limit.
    pub decompressed_message_size_limit: u64,
    /// `compression`: negotiate permessage-deflate.
    pub compression: bool,
    /// `compression_min_size`. Not applied by wshub; a warning when set.
    pub compression_min_size: u32,
    /// `compression_level`. Not applied by wshub; a warning when set.
    pub compression_level: i32,
    /// `read_buffer_size`. Not applied by wshub; a warning when set.
    pub read_buffer_size: u32,
    /// `write_buffer_size`. Not applied by wshub; a warning when set.
    pub write_buffer_size: u32,
    /// `use_write_buffer_pool`. Not applied by wshub; a warning when set.
    pub use_write_buffer_pool: bool,
    /// `write_timeout`: default 1s.
    pub write_timeout: Duration,
    /// `join_push_messages`: send the pushes of one write as one text
    /// frame, separated by `\n`.
    pub join_push_messages: bool,
    /// `disable_closing_handshake`: close the socket without waiting for
    /// the client's close frame.
    pub disable_closing_handshake: bool,
    /// `disable_disconnect_push`: only the close frame tells the code and
    /// reason, no `{"disconnect":...}` push before it.
    pub disable_disconnect_push: bool,
}

impl Default for UniWebSocketConfig {
    fn default() -> Self {
        UniWebSocketConfig {
            enabled: false,
            handler_prefix: "/connection/uni_websocket".into(),
            message_size_limit: 65_536,
            decompressed_message_size_limit: 0,
            compression: false,
            compression_min_size: 0,
            compression_level: 1,
            read_buffer_size: 0,
            write_buffer_size: 0,
            use_write_buffer_pool: false,
            write_timeout: Duration::from_secs(1),
            join_push_messages: false,
            disable_closing_handshake: false,
            disable_disconnect_push: false,
        }
    }
}

/// `long_poll` section (wshub only, not a Centrifugo key): the client opens
/// a session with a POST of its connect command, then fetches what the
/// server has for it with polls that are held until there is something or
/// `poll_timeout` passes, acknowledging what it got; its commands go to
/// `emulation`. Every request ends, so a proxy that buffers responses until
/// they end passes it. Protocol: README, "Long-poll".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LongPollConfig {
    /// `enabled`.
    pub enabled: bool,
    /// `handler_prefix`: default `/connection/long_poll` (polls go to
    /// `{handler_prefix}/poll`).
    pub handler_prefix: String,
    /// `max_request_body_size`: default 65536 bytes; over it 413.
    pub max_request_body_size: u64,
    /// `poll_timeout`: how long a poll is held when there is nothing to
    /// send, default 25s (below the 60 s that proxies commonly allow).
    pub poll_timeout: Duration,
    /// `session_timeout`: a session with no poll held for this long is
    /// closed (its client is gone), default 15s.
    pub session_timeout: Duration,
}

impl Default for LongPollConfig {
    fn default() -> Self {
        LongPollConfig {
            enabled: false,
            handler_prefix: "/connection/long_poll".into(),
            max_request_body_size: 65_536,
            poll_timeout: Duration::from_secs(25),
            session_timeout: Duration::from_secs(15),
        }
    }
}

/// `emulation` section: where HTTP-streaming and SSE clients POST their
/// commands after connecting. On whenever either transport is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EmulationConfig {
    /// `handler_prefix`: default `/emulation`.
    pub handler_prefix: String,
    /// `max_request_body_size`: default 65536 bytes; over it 413.
    pub max_request_body_size: u64,
}

impl Default for EmulationConfig {
    fn default() -> Self {
        EmulationConfig {
            handler_prefix: "/emulation".into(),
            max_request_body_size: 65_536,
        }
    }
}

/// `prometheus` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PrometheusConfig {
    /// `enabled`.
    pub enabled: bool,
    /// `handler_prefix`: default `/metrics`.
    pub handler_prefix: String,
    /// `instrument_http_handlers`: per-handler HTTP metrics. Not
    /// implemented by wshub (validation refuses `true`).
    pub instrument_http_handlers: bool,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            enabled: false,
            handler_prefix: "/metrics".into(),
            instrument_http_handlers: false,
        }
    }
}

/// `health` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HealthConfig {
    /// `enabled`.
    pub enabled: bool,
    /// `handler_prefix`: default `/health`.
    pub handler_prefix: String,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            enabled: false,
            handler_prefix: "/health".into(),
        }
    }
}

/// `shutdown` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ShutdownConfig {
    /// `timeout`: how long a graceful drain may take, default 30s.
    pub timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            timeout: Duration::from_secs(30),
        }
    }
}

/// `demo` section (wshub only): the static demo pages of `wshub serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct DemoConfig {
    /// `enabled`.
    pub enabled: bool,
    /// `handler_prefix`: default `/demo`.
    pub handler_prefix: String,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            enabled: false,
            handler_prefix: "/demo".into(),
        }
    }
}

/// `limits` section (wshub only): limits on untrusted clients that
/// Centrifugo OSS does not have. Centrifugo's own limits stay where
/// Centrifugo puts them: `client.connection_limit`,
/// `client.user_connection_limit`, `client.connection_rate_limit`,
/// `client.channel_limit`, `client.queue_max_size`,
/// `websocket.message_size_limit`. Centrifugo PRO's command rate limits
/// (`client.rate_limit`) are not read; `commands_per_second` is the simple
/// per-connection equivalent.
///
/// The IP is the TCP peer address (no proxy headers are trusted); IPv6
/// peers are grouped by their /64 network. 0 disables a limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// `connections_per_ip`: open WebSocket connections per IP, default
    /// 1000 (0 in the development defaults). Over it the upgrade is refused
    /// with HTTP 429.
    pub connections_per_ip: u32,
    /// `connect_rate_per_ip`: new WebSocket connections per second per IP
    /// (token bucket), default 10 (0 in the development defaults). Over it
    /// the upgrade is refused with HTTP 429.
    pub connect_rate_per_ip: u32,
    /// `connect_burst_per_ip`: the bucket size for `connect_rate_per_ip`,
    /// default 50.
    pub connect_burst_per_ip: u32,
    /// `commands_per_second`: client commands per second per connection
    /// (token bucket), default 100. A command over it gets error 111 too
    /// many requests.
    pub commands_per_second: u32,
    /// `commands_burst`: the bucket size for `commands_per_second`, default 200.
    pub commands_burst: u32,
    /// `command_flood_disconnect`: this many refused commands in a row
    /// disconnect the client with 3013 too many requests, default 50
    /// (0 = never disconnect).
    pub command_flood_disconnect: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            connections_per_ip: 1000,
            connect_rate_per_ip: 10,
            connect_burst_per_ip: 50,
            commands_per_second: 100,
            commands_burst: 200,
            command_flood_disconnect: 50,
        }
    }
}

/// `pusher` section (wshub only): the Pusher Channels front. Clients connect
/// to `/app/{key}` on the same listener as the Centrifugo endpoints; the
/// HTTP API is under `/apps/{app_id}/`. Apps are isolated from each other
/// and from the Centrifugo channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PusherConfig {
    /// `enabled`: default false.
    pub enabled: bool,
    /// `activity_timeout`: the `activity_timeout` told to clients in
    /// `pusher:connection_established` (they ping after that long without a
    /// message) and the time the server waits for any message before it
    /// pings; a client that then stays silent for `pong_timeout` is closed
    /// with 4201. Default 120s, as Pusher's.
    pub activity_timeout: Duration,
    /// `pong_timeout`: default 30s.
    pub pong_timeout: Duration,
    /// `apps`: at least one when enabled.
    pub apps: Vec<PusherApp>,
}

impl Default for PusherConfig {
    fn default() -> Self {
        PusherConfig {
            enabled: false,
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            apps: Vec::new(),
        }
    }
}

/// One Pusher app: its credentials and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PusherApp {
    /// `app_id`: the id in the HTTP API's paths (`/apps/{app_id}/events`).
    pub app_id: String,
    /// `key`: the public key clients connect with (`/app/{key}`) and API
    /// requests name as `auth_key`.
    pub key: String,
    /// `secret`: signs channel authorizations and API requests.
    pub secret: String,
    /// `enable_client_messages`: whether clients may send `client-` events
    /// on private and presence channels. Default false, as Pusher's.
    pub enable_client_messages: bool,
    /// `enable_user_authentication`: `pusher:signin`. Not implemented yet:
    /// `true` is refused at start-up.
    pub enable_user_authentication: bool,
    /// `max_connections`: open connections of the app on this node
    /// (0 = no limit). Over it a new connection gets 4004.
    pub max_connections: u64,
    /// `max_client_events_per_second`: client events per connection per
    /// second, default 10 (Pusher's); over it the event is refused with a
    /// `pusher:error` 4301.
    pub max_client_events_per_second: u32,
    /// `max_event_size`: the largest event `data`, in bytes, from the API or
    /// a client, default 10240 (Pusher's 10 KB).
    pub max_event_size: u64,
    /// `max_presence_members`: members of one presence channel, default
    /// 100 (Pusher's); a subscribe over it is refused.
    pub max_presence_members: u64,
    /// `max_channels_per_event`: channels one API event may name, default
    /// 100 (Pusher's).
    pub max_channels_per_event: u64,
    /// `webhooks`: not implemented yet; a non-empty list is refused at
    /// start-up.
    pub webhooks: Vec<serde_json::Value>,
}

impl Default for PusherApp {
    fn default() -> Self {
        PusherApp {
            app_id: String::new(),
            key: String::new(),
            secret: String::new(),
            enable_client_messages: false,
            enable_user_authentication: false,
            max_connections: 0,
            max_client_events_per_second: 10,
            max_event_size: 10_240,
            max_presence_members: 100,
            max_channels_per_event: 100,
            webhooks: Vec::new(),
        }
    }
}

/// The Pusher app of the development defaults: (app_id, key, secret). The
/// secret is public: [`Config::describe`] names it as development-only.
pub const DEMO_PUSHER_APP: (&str, &str, &str) = ("1", "wshub-demo", "wshub-demo-secret");

impl Config {
    /// The configuration `wshub serve` uses with no file: Centrifugo defaults
    /// plus settings that make a local try-out work with no token or API key.
    /// **Not for production**; [`Config::describe`] lists what is unsafe.
    ///
    /// Memory broker; anonymous connections without a token; clients may
    /// subscribe, publish, and read presence and history in channels without
    /// a namespace (join/leave, 100 publications for 5 minutes, recovery); the
    /// HTTP API needs no key; listens on 127.0.0.1 only; metrics, health and
    /// demo pages on.
    pub fn development_default() -> Config {
        let mut c = Config::default();
        c.http_server.address = "127.0.0.1".into();
        c.client.allow_anonymous_connect_without_token = true;
        c.client.allowed_origins = vec!["*".into()];
        let o = &mut c.channel.without_namespace;
        o.presence = true;
        o.join_leave = true;
        o.force_push_join_leave = true;
        o.history_size = 100;
        o.history_ttl = Duration::from_secs(300);
        o.force_recovery = true;
        o.allow_subscribe_for_client = true;
        o.allow_subscribe_for_anonymous = true;
        o.allow_publish_for_client = true;
        o.allow_publish_for_anonymous = true;
        o.allow_presence_for_subscriber = true;
        o.allow_presence_for_anonymous = true;
        o.allow_history_for_subscriber = true;
        o.allow_history_for_anonymous = true;
        o.allow_user_limited_channels = true;
        // The demo pages use `chat:lobby` and `dashboard:metrics`.
        for name in ["chat", "dashboard"] {
            let mut ns = ChannelNamespace::new(name);
            ns.options = c.channel.without_namespace.clone();
            c.channel.namespaces.push(ns);
        }
        c.http_api.insecure = true;
        c.prometheus.enabled = true;
        c.health.enabled = true;
        c.demo.enabled = true;
        // Every transport, so that clients behind a proxy can be tried.
        c.http_stream.enabled = true;
        c.sse.enabled = true;
        c.long_poll.enabled = true;
        c.uni_websocket.enabled = true;
        c.uni_sse.enabled = true;
        c.uni_http_stream.enabled = true;
        // Load generators and many browser tabs come from one address.
        c.limits.connections_per_ip = 0;
        c.limits.connect_rate_per_ip = 0;
        // The Pusher demo page: one app whose secret is published here.
        c.pusher.enabled = true;
        c.pusher.apps.push(PusherApp {
            app_id: DEMO_PUSHER_APP.0.into(),
            key: DEMO_PUSHER_APP.1.into(),
            secret: DEMO_PUSHER_APP.2.into(),
            enable_client_messages: true,
            ..PusherApp::default()
        });
        c
    }

    /// One line for the startup log: the broker, and every setting in force
    /// that is unsafe outside development (empty list = none).
    pub fn describe(&self) -> String {
        let mut unsafe_settings: Vec<&str> = Vec::new();
        if self.client.insecure {
            unsafe_settings.push("client.insecure (no auth at all)");
        }
        if self.client.insecure_skip_token_signature_verify {
            unsafe_settings
                .push("client.insecure_skip_token_signature_verify (forged tokens accepted)");
        }
        if self.http_api.insecure && !self.http_api.disabled {
            unsafe_settings.push("http_api.insecure (API without key)");
        }
        if self.client.allow_anonymous_connect_without_token {
            unsafe_settings.push("client.allow_anonymous_connect_without_token");
        }
        if self.client.allowed_origins.iter().any(|o| o == "*") {
            unsafe_settings.push("client.allowed_origins [\"*\"] (any web page may connect)");
        }
        let all = std::iter::once(&self.channel.without_namespace)
            .chain(self.channel.namespaces.iter().map(|n| &n.options));
        let mut anon_publish = false;
        for o in all {
            anon_publish |= o.allow_publish_for_anonymous
                && (o.allow_publish_for_client || o.allow_publish_for_subscriber);
        }
        if anon_publish {
            unsafe_settings.push("allow_publish_for_anonymous (anonymous clients may publish)");
        }
        if self.demo.enabled {
            unsafe_settings.push("demo pages");
        }
        if self.pusher.enabled
            && self
                .pusher
                .apps
                .iter()
                .any(|a| a.secret == DEMO_PUSHER_APP.2)
        {
            unsafe_settings.push("the Pusher demo app (its secret is public)");
        }
        let broker = match self.broker_kind() {
            BrokerKind::Memory => "memory broker (single node, data lost on restart)",
            BrokerKind::Redis => "redis broker",
            BrokerKind::Nats => "nats broker",
        };
        if unsafe_settings.is_empty() {
            format!("{broker}; no development-only settings")
        } else {
            format!(
                "{broker}; development-only settings in force: {}",
                unsafe_settings.join(", ")
            )
        }
    }

    /// The broker selected: `broker.type` when `broker.enabled`, else
    /// `engine.type`. Unknown names (rejected by validation) read as memory.
    pub fn broker_kind(&self) -> BrokerKind {
        let kind = if self.broker.enabled {
            self.broker.kind.as_str()
        } else {
            self.engine.kind.as_str()
        };
        match kind {
            "redis" => BrokerKind::Redis,
            "nats" => BrokerKind::Nats,
            _ => BrokerKind::Memory,
        }
    }

    /// The Redis options of the selected broker (`broker.redis` when the
    /// broker section is enabled, else `engine.redis`).
    pub fn redis(&self) -> &RedisConfig {
        if self.broker.enabled {
            &self.broker.redis
        } else {
            &self.engine.redis
        }
    }

    /// The personal channel of `user` (`#user`, or `ns:#user` with
    /// `client.subscribe_to_user_personal_channel.personal_channel_namespace`).
    pub fn personal_channel(&self, user: &str) -> String {
        let p = &self.client.subscribe_to_user_personal_channel;
        if p.personal_channel_namespace.is_empty() {
            format!("{}{user}", self.channel.user_boundary)
        } else {
            format!(
                "{}{}{}{user}",
                p.personal_channel_namespace,
                self.channel.namespace_boundary,
                self.channel.user_boundary
            )
        }
    }

    /// The token options for subscription tokens: `client.subscription_token`
    /// when enabled, else `client.token`.
    pub fn subscription_token(&self) -> &TokenConfig {
        if self.client.subscription_token.enabled {
            &self.client.subscription_token.token
        } else {
            &self.client.token
        }
    }
}

/// Accept `"a"` as `["a"]`, as Centrifugo's loader does for string lists.
fn string_or_seq<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) if s.is_empty() => Vec::new(),
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}
