//! Validation: values that are well typed but wrong, or that wshub does not
//! implement and must not silently ignore.

use std::collections::HashSet;
use std::fmt;

use regex::Regex;

use super::{ChannelOptions, Config, ConfigError, Duration, TlsConfig, TokenConfig};

/// One problem found by [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted path of the key (`channel.namespaces[chat].history_ttl`).
    pub path: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

struct Errors(Vec<ValidationError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            path: path.into(),
            message: message.into(),
        });
    }
}

const LOG_LEVELS: [&str; 7] = ["trace", "debug", "info", "warn", "error", "fatal", "none"];
/// Broker types Centrifugo v6 knows.
const CENTRIFUGO_BROKERS: [&str; 5] = ["memory", "nats", "redis", "redisnats", "postgres"];
/// Broker types wshub implements.
const WSHUB_BROKERS: [&str; 3] = ["memory", "redis", "nats"];
const DATA_FORMATS: [&str; 4] = ["", "json", "json_object", "binary"];
/// Subscription types Centrifugo v6 knows; wshub implements `stream` only.
const SUBSCRIPTION_TYPES: [&str; 5] = ["stream", "map", "map_clients", "map_users", "shared_poll"];

/// What `publication_data_format` would turn on.
const DATA_FORMAT_CHECKS: &str = "checks of the publication data format";

/// The message for a key that turns on a feature wshub does not have.
pub(super) fn unimplemented(feature: &str, instead: &str) -> String {
    format!("turns on {feature}, which wshub does not implement; it refuses to start rather than ignore it ({instead})")
}

fn namespace_name_ok(name: &str) -> bool {
    name.len() >= 2
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn whole_seconds(d: Duration) -> bool {
    d.as_std().subsec_nanos() == 0
}

/// Checks the public keys of a token config (`rsa_public_key`,
/// `ecdsa_public_key`): `Err((key, message))` names the first bad key.
///
/// This crate knows no key formats; the token verifier does, and supplies
/// the check (`wshub_hub::auth::check_token_keys`) to
/// [`Config::validate_with`] or [`crate::Loader::token_key_check`].
pub type TokenKeyCheck = fn(&TokenConfig) -> Result<(), (&'static str, String)>;

impl Config {
    /// Check the configuration; every problem is reported, not only the first.
    /// Public keys of tokens are not parsed (see [`Config::validate_with`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_with(None)
    }

    /// [`Config::validate`], with the public keys of `client.token` and
    /// `client.subscription_token` checked by `keys`.
    pub fn validate_with(&self, keys: Option<TokenKeyCheck>) -> Result<(), ConfigError> {
        let mut e = Errors(Vec::new());
        self.validate_into(&mut e, keys);
        if e.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(e.0))
        }
    }

    fn validate_into(&self, e: &mut Errors, keys: Option<TokenKeyCheck>) {
        if !LOG_LEVELS.contains(&self.log.level.as_str()) {
            e.push(
                "log.level",
                format!(
                    "unknown level {:?} (use one of {})",
                    self.log.level,
                    LOG_LEVELS.join(", ")
                ),
            );
        }

        if !self.log.file.is_empty() {
            e.push(
                "log.file",
                unimplemented("logging to a file", "wshub logs to stderr; redirect it"),
            );
        }

        // Engine and broker.
        if !["memory", "redis"].contains(&self.engine.kind.as_str()) {
            e.push(
                "engine.type",
                format!(
                    "unknown engine {:?} (use memory or redis)",
                    self.engine.kind
                ),
            );
        }
        let bk = self.broker.kind.as_str();
        if !CENTRIFUGO_BROKERS.contains(&bk) {
            e.push(
                "broker.type",
                format!("unknown broker {bk:?} (use memory, redis or nats)"),
            );
        } else if self.broker.enabled && !WSHUB_BROKERS.contains(&bk) {
            e.push(
                "broker.type",
                format!("broker {bk:?} is not supported by wshub (use memory, redis or nats)"),
            );
        }
        let redis_in_use = if self.broker.enabled {
            bk == "redis"
        } else {
            self.engine.kind == "redis"
        };
        if redis_in_use {
            let (path, r) = if self.broker.enabled {
                ("broker.redis", &self.broker.redis)
            } else {
                ("engine.redis", &self.engine.redis)
            };
            if r.address.iter().all(String::is_empty)
                && r.cluster_address.is_empty()
                && r.sentinel_address.is_empty()
            {
                e.push(format!("{path}.address"), "no Redis address");
            }
            if !r.sentinel_address.is_empty() && r.sentinel_master_name.is_empty() {
                e.push(
                    format!("{path}.sentinel_master_name"),
                    "required with sentinel_address",
                );
            }
            check_tls(e, &format!("{path}.tls"), &r.tls, false);
            if !r.cluster_address.is_empty() {
                e.push(
                    format!("{path}.cluster_address"),
                    unimplemented(
                        "Redis Cluster",
                        "use one or more redis:// addresses in address",
                    ),
                );
            }
            if !r.sentinel_address.is_empty() {
                e.push(
                    format!("{path}.sentinel_address"),
                    unimplemented(
                        "Redis Sentinel",
                        "use one or more redis:// addresses in address",
                    ),
                );
            }
            if r.tls.enabled {
                e.push(
                    format!("{path}.tls.enabled"),
                    unimplemented("TLS to Redis", "remove the key"),
                );
            }
        }
        if self.broker.enabled && bk == "nats" {
            if self.broker.nats.url.is_empty() {
                e.push("broker.nats.url", "empty NATS URL");
            }
            if self.broker.nats.tls.enabled {
                e.push(
                    "broker.nats.tls.enabled",
                    unimplemented(
                        "TLS options for NATS",
                        "use a tls:// URL for a server with a publicly trusted certificate",
                    ),
                );
            }
        }

        check_tls(e, "http_server.tls", &self.http_server.tls, true);
        check_tls(
            e,
            "http_server.internal_tls",
            &self.http_server.internal_tls,
            true,
        );
        if !self.http_server.internal_port.is_empty()
            && self.http_server.internal_port.parse::<u16>().is_err()
        {
            e.push(
                "http_server.internal_port",
                format!("{:?} is not a port number", self.http_server.internal_port),
            );
        }
        // Internal endpoints on their own listener: not implemented, and
        // ignoring it would expose the API on the public port.
        let hs = &self.http_server;
        let internal = "a separate listener for the internal endpoints (API, metrics, health)";
        let one_port =
            "wshub serves every endpoint on http_server.port; restrict access in front of it";
        if !hs.internal_port.is_empty() {
            e.push(
                "http_server.internal_port",
                unimplemented(internal, one_port),
            );
        }
        if !hs.internal_address.is_empty() {
            e.push(
                "http_server.internal_address",
                unimplemented(internal, one_port),
            );
        }
        if hs.internal_tls.enabled {
            e.push(
                "http_server.internal_tls.enabled",
                unimplemented(internal, one_port),
            );
        }
        if hs.tls_external {
            e.push(
                "http_server.tls_external",
                unimplemented(internal, "http_server.tls applies to every endpoint"),
            );
        }
        // QUIC is TLS 1.3 only; WebTransport runs over HTTP/3.
        if hs.http3.enabled && !hs.tls.enabled {
            e.push(
                "http_server.http3.enabled",
                "HTTP/3 runs over QUIC, which requires TLS: set http_server.tls \
                 (enabled, cert_pem, key_pem) or turn http3 off"
                    .to_owned(),
            );
        }
        if self.webtransport.enabled && !hs.http3.enabled {
            e.push(
                "webtransport.enabled",
                "WebTransport runs over HTTP/3: set http_server.http3.enabled (and \
                 http_server.tls) or turn webtransport off"
                    .to_owned(),
            );
        }
        if hs.http3.max_concurrent_streams == 0 {
            e.push(
                "http_server.http3.max_concurrent_streams",
                "must be at least 1".to_owned(),
            );
        }
        if !hs.tls.client_ca_pem.trim().is_empty() {
            e.push(
                "http_server.tls.client_ca_pem",
                unimplemented("client certificate authentication (mTLS)", "remove the key"),
            );
        }
        if self.prometheus.instrument_http_handlers {
            e.push(
                "prometheus.instrument_http_handlers",
                unimplemented("per-handler HTTP metrics", "set it to false"),
            );
        }

        // Client.
        let c = &self.client;
        check_token(e, "client.token", &c.token, keys);
        if c.subscription_token.enabled {
            check_token(
                e,
                "client.subscription_token",
                &c.subscription_token.token,
                keys,
            );
        }
        if c.ping_interval <= c.pong_timeout {
            e.push(
                "client.ping_interval",
                format!(
                    "must be greater than client.pong_timeout ({} <= {})",
                    c.ping_interval, c.pong_timeout
                ),
            );
        }
        if !c.user_id_http_header.is_empty() {
            e.push(
                "client.user_id_http_header",
                unimplemented(
                    "taking the user id from a request header",
                    "authenticate with a connection token",
                ),
            );
        }
        for (i, o) in c.allowed_origins.iter().enumerate() {
            if o.is_empty() {
                e.push(
                    format!("client.allowed_origins[{i}]"),
                    "empty origin pattern",
                );
            }
        }

        // Channels.
        let ch = &self.channel;
        if !whole_seconds(ch.history_meta_ttl) {
            e.push(
                "channel.history_meta_ttl",
                format!(
                    "{} has sub-second precision, which is not supported here",
                    ch.history_meta_ttl
                ),
            );
        }
        if !DATA_FORMATS.contains(&ch.publication_data_format.as_str()) {
            e.push(
                "channel.publication_data_format",
                format!(
                    "unknown format {:?} (use json, json_object or binary)",
                    ch.publication_data_format
                ),
            );
        } else if !ch.publication_data_format.is_empty() {
            e.push(
                "channel.publication_data_format",
                unimplemented(DATA_FORMAT_CHECKS, "remove the key"),
            );
        }
        for (key, v) in [
            ("namespace_boundary", &ch.namespace_boundary),
            ("user_boundary", &ch.user_boundary),
            ("user_separator", &ch.user_separator),
            ("private_prefix", &ch.private_prefix),
        ] {
            if !v.is_ascii() {
                e.push(format!("channel.{key}"), "must be ASCII");
            }
        }
        check_channel_options(
            e,
            "channel.without_namespace",
            &ch.without_namespace,
            ch.history_meta_ttl,
        );
        let mut seen = HashSet::new();
        for (i, ns) in ch.namespaces.iter().enumerate() {
            let path = if ns.name.is_empty() {
                format!("channel.namespaces[{i}]")
            } else {
                format!("channel.namespaces[{}]", ns.name)
            };
            if !namespace_name_ok(&ns.name) {
                e.push(
                    format!("{path}.name"),
                    format!(
                        "invalid namespace name {:?} (2 or more of letters, digits, '-', '_', '.')",
                        ns.name
                    ),
                );
            } else if !seen.insert(ns.name.as_str()) {
                e.push(
                    format!("{path}.name"),
                    format!("duplicate namespace {:?}", ns.name),
                );
            }
            check_channel_options(e, &path, &ns.options, ch.history_meta_ttl);
        }

        let p = &c.subscribe_to_user_personal_channel;
        let ns_missing = !p.personal_channel_namespace.is_empty()
            && !ch
                .namespaces
                .iter()
                .any(|n| n.name == p.personal_channel_namespace);
        if p.enabled && ns_missing {
            e.push(
                "client.subscribe_to_user_personal_channel.personal_channel_namespace",
                format!(
                    "namespace {:?} is not configured",
                    p.personal_channel_namespace
                ),
            );
        }
        if p.single_connection {
            e.push(
                "client.subscribe_to_user_personal_channel.single_connection",
                unimplemented(
                    "one connection per user",
                    "use client.user_connection_limit 1 to refuse a second connection",
                ),
            );
        }

        if !self.http_api.handler_prefix.is_empty()
            && !self.http_api.handler_prefix.starts_with('/')
        {
            e.push("http_api.handler_prefix", "must start with '/'");
        }
        let api = &self.http_api;
        for (v, path) in [
            (api.max_batch_commands as u64, "http_api.max_batch_commands"),
            (
                api.max_broadcast_channels as u64,
                "http_api.max_broadcast_channels",
            ),
            (
                api.max_in_flight_body_size,
                "http_api.max_in_flight_body_size",
            ),
        ] {
            if v == 0 {
                e.push(path, "must be at least 1");
            }
        }
        for (d, path) in [
            (
                api.response_write_timeout,
                "http_api.response_write_timeout",
            ),
            (
                api.cluster_request_timeout,
                "http_api.cluster_request_timeout",
            ),
        ] {
            if d.is_zero() {
                e.push(path, "must be more than 0");
            }
        }
        for (prefix, path) in [
            (&self.websocket.handler_prefix, "websocket.handler_prefix"),
            (
                &self.http_stream.handler_prefix,
                "http_stream.handler_prefix",
            ),
            (&self.sse.handler_prefix, "sse.handler_prefix"),
            (&self.emulation.handler_prefix, "emulation.handler_prefix"),
            (
                &self.uni_http_stream.handler_prefix,
                "uni_http_stream.handler_prefix",
            ),
            (&self.uni_sse.handler_prefix, "uni_sse.handler_prefix"),
            (&self.long_poll.handler_prefix, "long_poll.handler_prefix"),
            (
                &self.uni_websocket.handler_prefix,
                "uni_websocket.handler_prefix",
            ),
        ] {
            if !prefix.starts_with('/') {
                e.push(path, "must start with '/'");
            }
        }
        for (d, path) in [
            (self.long_poll.poll_timeout, "long_poll.poll_timeout"),
            (self.long_poll.session_timeout, "long_poll.session_timeout"),
        ] {
            if d.is_zero() {
                e.push(path, "must be more than 0");
            }
        }
        if !(-2..=9).contains(&self.websocket.compression_level) {
            e.push("websocket.compression_level", "must be between -2 and 9");
        }
        let l = &self.limits;
        for (rate, burst, path) in [
            (
                l.connect_rate_per_ip,
                l.connect_burst_per_ip,
                "limits.connect_burst_per_ip",
            ),
            (
                l.commands_per_second,
                l.commands_burst,
                "limits.commands_burst",
            ),
        ] {
            if rate > 0 && burst == 0 {
                e.push(path, "must be at least 1 when its rate is set");
            }
        }
        check_pusher(e, &self.pusher);
    }
}

/// App ids and keys appear in URL paths (`/apps/{app_id}`, `/app/{key}`)
/// and in the node's channel names.
fn pusher_id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_pusher(e: &mut Errors, p: &super::PusherConfig) {
    if !p.enabled {
        return;
    }
    if p.apps.is_empty() {
        e.push("pusher.apps", "the Pusher front is enabled but has no app");
    }
    if p.activity_timeout.as_std().as_secs() < 1 {
        e.push("pusher.activity_timeout", "must be at least 1s");
    }
    if p.pong_timeout.is_zero() {
        e.push("pusher.pong_timeout", "must be more than 0");
    }
    let mut ids = HashSet::new();
    let mut keys = HashSet::new();
    for (i, app) in p.apps.iter().enumerate() {
        let at = |k: &str| format!("pusher.apps[{i}].{k}");
        if !pusher_id_ok(&app.app_id) {
            e.push(
                at("app_id"),
                "must be 1 to 64 of A-Z a-z 0-9 - _ . (it is part of the API's paths)",
            );
        } else if !ids.insert(app.app_id.as_str()) {
            e.push(at("app_id"), format!("{:?} names two apps", app.app_id));
        }
        if !pusher_id_ok(&app.key) {
            e.push(
                at("key"),
                "must be 1 to 64 of A-Z a-z 0-9 - _ . (clients connect to /app/{key})",
            );
        } else if !keys.insert(app.key.as_str()) {
            e.push(at("key"), format!("{:?} names two apps", app.key));
        }
        if app.secret.is_empty() {
            e.push(
                at("secret"),
                "must be set: it signs every authorization and API request",
            );
        }
        if app.enable_user_authentication {
            e.push(
                at("enable_user_authentication"),
                unimplemented(
                    "Pusher user authentication (pusher:signin)",
                    "set it to false",
                ),
            );
        }
        if !app.webhooks.is_empty() {
            e.push(
                at("webhooks"),
                unimplemented("Pusher webhooks", "remove the list"),
            );
        }
        if app.max_client_events_per_second == 0 && app.enable_client_messages {
            e.push(
                at("max_client_events_per_second"),
                "must be at least 1 when enable_client_messages is on",
            );
        }
        if app.max_event_size == 0 {
            e.push(at("max_event_size"), "must be at least 1");
        }
        if app.max_channels_per_event == 0 {
            e.push(at("max_channels_per_event"), "must be at least 1");
        }
    }
}

fn check_tls(e: &mut Errors, path: &str, tls: &TlsConfig, server: bool) {
    if tls.enabled && server {
        if tls.cert_pem.trim().is_empty() {
            e.push(format!("{path}.cert_pem"), "required when TLS is enabled");
        }
        if tls.key_pem.trim().is_empty() {
            e.push(format!("{path}.key_pem"), "required when TLS is enabled");
        }
    }
}

fn check_token(e: &mut Errors, path: &str, t: &TokenConfig, keys: Option<TokenKeyCheck>) {
    if !t.audience.is_empty() && !t.audience_regex.is_empty() {
        e.push(
            format!("{path}.audience_regex"),
            "use either audience or audience_regex, not both",
        );
    }
    if !t.issuer.is_empty() && !t.issuer_regex.is_empty() {
        e.push(
            format!("{path}.issuer_regex"),
            "use either issuer or issuer_regex, not both",
        );
    }
    for (key, re) in [
        ("audience_regex", &t.audience_regex),
        ("issuer_regex", &t.issuer_regex),
    ] {
        if !re.is_empty() {
            if let Err(err) = Regex::new(re) {
                e.push(format!("{path}.{key}"), format!("invalid regex: {err}"));
            }
        }
    }
    if !t.user_id_claim.is_empty()
        && !t
            .user_id_claim
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'_')
    {
        e.push(
            format!("{path}.user_id_claim"),
            format!("{:?} must match ^[a-zA-Z_]+$", t.user_id_claim),
        );
    }
    if t.hmac_previous_secret_key_valid_until < 0 {
        e.push(
            format!("{path}.hmac_previous_secret_key_valid_until"),
            "must not be negative",
        );
    }
    // One error at most for the keys and the JWKS URL, the first one.
    let first = match keys.map(|check| check(t)) {
        Some(Err(bad)) => Err(bad),
        _ if t.jwks_public_endpoint.is_empty() => Ok(()),
        _ => check_jwks_endpoint(&t.jwks_public_endpoint).map_err(|m| ("jwks_public_endpoint", m)),
    };
    if let Err((key, message)) = first {
        e.push(format!("{path}.{key}"), message);
    }
}

/// Check a `jwks_public_endpoint` value: an `http://` or `https://` URL with
/// a host, not a Centrifugo template (`{{var}}`). `Err` says what is wrong.
pub fn check_jwks_endpoint(u: &str) -> Result<(), String> {
    if u.contains("{{") {
        return Err("templated JWKS endpoints ({{var}}) are not supported by wshub".into());
    }
    let parsed = url::Url::parse(u).map_err(|e| format!("bad URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if parsed.host().is_none() {
        return Err("no host".into());
    }
    Ok(())
}

fn check_channel_options(
    e: &mut Errors,
    path: &str,
    o: &ChannelOptions,
    global_meta_ttl: Duration,
) {
    let mut err = |key: &str, message: String| e.push(format!("{path}.{key}"), message);
    for (key, d) in [
        ("history_ttl", o.history_ttl),
        ("history_meta_ttl", o.history_meta_ttl),
    ] {
        if !whole_seconds(d) {
            err(
                key,
                format!("{d} has sub-second precision, which is not supported here"),
            );
        }
    }
    if (o.history_size == 0) != o.history_ttl.is_zero() {
        err(
            if o.history_size == 0 {
                "history_size"
            } else {
                "history_ttl"
            },
            "history needs both history_size and history_ttl".into(),
        );
    }
    let meta_ttl = if o.history_meta_ttl.is_zero() {
        global_meta_ttl
    } else {
        o.history_meta_ttl
    };
    if meta_ttl < o.history_ttl {
        err(
            "history_ttl",
            format!(
                "{} is longer than history_meta_ttl {meta_ttl}",
                o.history_ttl
            ),
        );
    }
    if o.force_recovery && !o.history_enabled() {
        err(
            "force_recovery",
            "recovery needs history (history_size and history_ttl)".into(),
        );
    }
    if !["", "stream", "cache"].contains(&o.force_recovery_mode.as_str()) {
        err(
            "force_recovery_mode",
            format!(
                "unknown recovery mode {:?} (use stream or cache)",
                o.force_recovery_mode
            ),
        );
    }
    if o.auto_cache_recover {
        err(
            "auto_cache_recover",
            unimplemented("automatic cache recovery", "set it to false"),
        );
    }
    if !o.channel_regex.is_empty() {
        if let Err(re_err) = Regex::new(&o.channel_regex) {
            err("channel_regex", format!("invalid regex: {re_err}"));
        }
    }
    if o.force_recovery_mode == "cache" {
        err(
            "force_recovery_mode",
            unimplemented("cache recovery", "use stream recovery (\"\" or \"stream\")"),
        );
    }
    for t in &o.allowed_delta_types {
        if t != "fossil" {
            err(
                "allowed_delta_types",
                format!("unknown delta type {t:?} (use fossil)"),
            );
        }
    }
    if !o.allowed_delta_types.is_empty() {
        err(
            "allowed_delta_types",
            unimplemented(
                "delta compression",
                "remove the key; subscribers asking for delta get full publications",
            ),
        );
    }
    if o.delta_publish {
        err(
            "delta_publish",
            unimplemented("delta compression", "set it to false"),
        );
    }
    if o.allow_tags_filter {
        err(
            "allow_tags_filter",
            unimplemented(
                "publication filters by tags",
                "set it to false; a subscribe with a tags filter gets 107 bad request",
            ),
        );
    }
    if !DATA_FORMATS.contains(&o.publication_data_format.as_str()) {
        err(
            "publication_data_format",
            format!(
                "unknown format {:?} (use json, json_object or binary)",
                o.publication_data_format
            ),
        );
    } else if !o.publication_data_format.is_empty() {
        err(
            "publication_data_format",
            unimplemented(DATA_FORMAT_CHECKS, "remove the key"),
        );
    }
    for (key, on) in [
        ("subscribe_proxy_enabled", o.subscribe_proxy_enabled),
        ("publish_proxy_enabled", o.publish_proxy_enabled),
        ("sub_refresh_proxy_enabled", o.sub_refresh_proxy_enabled),
        (
            "subscribe_stream_proxy_enabled",
            o.subscribe_stream_proxy_enabled,
        ),
    ] {
        if on {
            err(
                key,
                "proxies are not supported by wshub; channel permissions would differ from Centrifugo's, so it refuses to start"
                    .into(),
            );
        }
    }
    let st = o.subscription_type.as_str();
    if !st.is_empty() && st != "stream" {
        if SUBSCRIPTION_TYPES.contains(&st) {
            err(
                "subscription_type",
                format!("{st:?} subscriptions are not supported by wshub"),
            );
        } else {
            err(
                "subscription_type",
                format!("unknown subscription type {st:?}"),
            );
        }
    }
}
