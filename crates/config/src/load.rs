//! Loading: file formats, environment overrides, unknown-key warnings.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use super::{ChannelOptions, Config, ConfigError, TokenKeyCheck};

/// Prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "WSHUB";

/// A configuration file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// `.json`
    Json,
    /// `.yaml`, `.yml`
    Yaml,
    /// `.toml`
    Toml,
}

impl Format {
    /// The format of a file, by extension (case-insensitive).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
            Format::Toml => "TOML",
        })
    }
}

/// What kind of thing a [`ConfigWarning`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// A key neither Centrifugo v6 nor wshub knows: probably a typo. Ignored.
    UnknownKey,
    /// A Centrifugo v6 key that wshub does not implement. Ignored.
    Unsupported,
    /// An environment variable with the wshub prefix that names no key. Ignored.
    UnknownEnv,
}

/// A problem that does not stop the server; log each one at WARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// What kind.
    pub kind: WarningKind,
    /// Dotted key path (`client.tokn`, `channel.namespaces[chat].map`) or the
    /// environment variable name.
    pub path: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            WarningKind::UnknownKey => write!(f, "unknown config key {} (ignored)", self.path),
            WarningKind::Unsupported => {
                write!(
                    f,
                    "config key {} is not supported by wshub (ignored)",
                    self.path
                )
            }
            WarningKind::UnknownEnv => {
                write!(
                    f,
                    "environment variable {} names no config key (ignored)",
                    self.path
                )
            }
        }
    }
}

/// A loaded, validated configuration and the warnings found on the way.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Unknown and unsupported keys, unknown environment variables.
    pub warnings: Vec<ConfigWarning>,
}

/// Reads a configuration: file (or defaults), then environment overrides,
/// then validation.
///
/// ```
/// use wshub_config::Loader;
/// let loaded = Loader::new()
///     .env_vars([("WSHUB_HTTP_API_KEY".to_string(), "k".to_string())])
///     .load_defaults()
///     .unwrap();
/// assert_eq!(loaded.config.http_api.key, "k");
/// ```
#[derive(Debug, Clone)]
pub struct Loader {
    prefix: String,
    env: Vec<(String, String)>,
    keys: Option<TokenKeyCheck>,
}

impl Default for Loader {
    fn default() -> Self {
        Loader::new()
    }
}

impl Loader {
    /// A loader with the `WSHUB` prefix and no environment.
    pub fn new() -> Self {
        Loader {
            prefix: ENV_PREFIX.to_owned(),
            env: Vec::new(),
            keys: None,
        }
    }

    /// Check the public keys of tokens with `check` during validation (see
    /// [`TokenKeyCheck`]); without it they are not parsed here.
    pub fn token_key_check(mut self, check: TokenKeyCheck) -> Self {
        self.keys = Some(check);
        self
    }

    /// Use another environment prefix (without the trailing `_`).
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Use these environment variables (replacing any given before).
    pub fn env_vars(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = vars.into_iter().collect();
        self
    }

    /// Use the process environment.
    pub fn process_env(self) -> Self {
        self.env_vars(std::env::vars())
    }

    /// Load a file; its format comes from the extension.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Loaded, ConfigError> {
        let path = path.as_ref();
        let format = Format::from_path(path).ok_or_else(|| ConfigError::UnknownFormat {
            path: path.display().to_string(),
        })?;
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.load_str(&text, format)
    }

    /// Load configuration text.
    pub fn load_str(&self, text: &str, format: Format) -> Result<Loaded, ConfigError> {
        let value = parse_text(text, format)?;
        self.load_value(value)
    }

    /// Load Centrifugo's defaults (no file) with the environment applied.
    pub fn load_defaults(&self) -> Result<Loaded, ConfigError> {
        self.load_value(Value::Object(Map::new()))
    }

    /// Load [`Config::development_default`] with the environment applied.
    pub fn load_development(&self) -> Result<Loaded, ConfigError> {
        let base = serde_json::to_value(Config::development_default())
            .map_err(|e| type_error(String::new(), e.to_string()))?;
        self.load_value(base)
    }

    fn load_value(&self, mut input: Value) -> Result<Loaded, ConfigError> {
        if input.is_null() {
            input = Value::Object(Map::new());
        }
        if !input.is_object() {
            return Err(type_error(
                String::new(),
                "the top level must be a map of sections".into(),
            ));
        }
        strip_nulls(&mut input);
        let mut warnings = self.apply_env(&mut input)?;
        let config: Config = serde_path_to_error::deserialize(input.clone()).map_err(|e| {
            let path = e.path().to_string();
            type_error(
                if path == "." { String::new() } else { path },
                e.into_inner().to_string(),
            )
        })?;
        let known =
            serde_json::to_value(&config).map_err(|e| type_error(String::new(), e.to_string()))?;
        let mut unknown = Vec::new();
        let mut refused = Vec::new();
        walk_unknown(
            &input,
            &known,
            &mut String::new(),
            &mut unknown,
            &mut refused,
        );
        ignored_known_keys(&input, &mut unknown);
        warnings.splice(0..0, unknown);
        match config.validate_with(self.keys) {
            Ok(()) if refused.is_empty() => {}
            Ok(()) => return Err(ConfigError::Invalid(refused)),
            Err(ConfigError::Invalid(mut errors)) => {
                refused.append(&mut errors);
                return Err(ConfigError::Invalid(refused));
            }
            Err(other) => return Err(other),
        }
        Ok(Loaded { config, warnings })
    }

    fn apply_env(&self, input: &mut Value) -> Result<Vec<ConfigWarning>, ConfigError> {
        let prefix = format!("{}_", self.prefix);
        // Later duplicates win, like a shell; empty means unset (as in Centrifugo).
        let mut vars: HashMap<&str, &str> = HashMap::new();
        for (k, v) in &self.env {
            if k.starts_with(&prefix) && !v.is_empty() {
                vars.insert(k.as_str(), v.as_str());
            }
        }
        if vars.is_empty() {
            return Ok(Vec::new());
        }
        let defaults = serde_json::to_value(Config::default())
            .map_err(|e| type_error(String::new(), e.to_string()))?;
        let mut leaves = Vec::new();
        collect_leaves(&defaults, &mut Vec::new(), &mut leaves);
        let mut used: HashSet<&str> = HashSet::new();
        for (path, default) in &leaves {
            let name = env_name(&prefix, path);
            if let Some((&var, &raw)) = vars.get_key_value(name.as_str()) {
                let is_namespaces =
                    matches!(path.as_slice(), [a, b] if a == "channel" && b == "namespaces");
                let v = parse_env(var, raw, default, is_namespaces)?;
                set_path(input, path, v);
                used.insert(var);
            }
        }
        // Options of namespaces that exist: PREFIX_CHANNEL_NAMESPACES_<NAME>_<OPTION>.
        let opt_defaults = serde_json::to_value(ChannelOptions::default())
            .map_err(|e| type_error(String::new(), e.to_string()))?;
        if let Some(Value::Array(nss)) = input.pointer_mut("/channel/namespaces") {
            for ns in nss.iter_mut() {
                let Some(name) = ns.get("name").and_then(Value::as_str).map(str::to_owned) else {
                    continue;
                };
                let Some(obj) = ns.as_object_mut() else {
                    continue;
                };
                let base = format!("{prefix}CHANNEL_NAMESPACES_{}", name_for_env(&name));
                if let Value::Object(opts) = &opt_defaults {
                    for (key, default) in opts {
                        let var_name = format!("{base}_{}", key.to_ascii_uppercase());
                        if let Some((&var, &raw)) = vars.get_key_value(var_name.as_str()) {
                            obj.insert(key.clone(), parse_env(var, raw, default, false)?);
                            used.insert(var);
                        }
                    }
                }
            }
        }
        // One Pusher app, as soketi's and Sockudo's DEFAULT_APP_* variables
        // give one: PREFIX_PUSHER_APP_<OPTION> sets the first app's option
        // (creating the app when the file has none).
        let app_defaults = serde_json::to_value(super::PusherApp::default())
            .map_err(|e| type_error(String::new(), e.to_string()))?;
        if let Value::Object(opts) = &app_defaults {
            let mut app = Map::new();
            for (key, default) in opts {
                // `app_id` is PREFIX_PUSHER_APP_ID, not ..._APP_APP_ID.
                let option = key.strip_prefix("app_").unwrap_or(key);
                let var_name = format!("{prefix}PUSHER_APP_{}", option.to_ascii_uppercase());
                if let Some((&var, &raw)) = vars.get_key_value(var_name.as_str()) {
                    app.insert(key.clone(), parse_env(var, raw, default, false)?);
                    used.insert(var);
                }
            }
            if !app.is_empty() {
                let apps = input
                    .pointer_mut("/pusher/apps")
                    .and_then(Value::as_array_mut)
                    .filter(|a| !a.is_empty());
                match apps
                    .and_then(|a| a.first_mut())
                    .and_then(Value::as_object_mut)
                {
                    Some(first) => first.extend(app),
                    None => set_path(
                        input,
                        &["pusher".to_owned(), "apps".to_owned()],
                        Value::Array(vec![Value::Object(app)]),
                    ),
                }
            }
        }
        let mut warnings: Vec<ConfigWarning> = vars
            .keys()
            .filter(|k| !used.contains(*k))
            .map(|k| ConfigWarning {
                kind: WarningKind::UnknownEnv,
                path: (*k).to_owned(),
            })
            .collect();
        warnings.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(warnings)
    }
}

fn type_error(path: String, message: String) -> ConfigError {
    ConfigError::Type { path, message }
}

/// Parse text into a JSON value tree (every format goes through this, so the
/// same content in any format gives the same [`Config`]).
fn parse_text(text: &str, format: Format) -> Result<Value, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax { format, message };
    match format {
        Format::Json => {
            if text.trim().is_empty() {
                return Ok(Value::Object(Map::new()));
            }
            serde_json::from_str(text).map_err(|e| syntax(e.to_string()))
        }
        Format::Toml => toml::from_str::<Value>(text).map_err(|e| syntax(e.to_string())),
        Format::Yaml => {
            let docs =
                yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| syntax(e.to_string()))?;
            match docs.len() {
                0 => Ok(Value::Object(Map::new())),
                1 => match docs.first() {
                    Some(doc) => yaml_to_json(doc).map_err(syntax),
                    None => Ok(Value::Object(Map::new())),
                },
                n => Err(syntax(format!("{n} documents; a config file has one"))),
            }
        }
    }
}

fn yaml_to_json(y: &yaml_rust2::Yaml) -> Result<Value, String> {
    use yaml_rust2::Yaml;
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(s) => {
            let f: f64 = y.as_f64().ok_or_else(|| format!("bad number {s}"))?;
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| format!("number {s} is not finite"))?
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) | Yaml::Real(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(format!("unsupported map key {other:?}")),
                };
                m.insert(key, yaml_to_json(v)?);
            }
            Value::Object(m)
        }
        Yaml::Alias(_) | Yaml::BadValue => return Err("unsupported YAML node".into()),
    })
}

/// `key: null` (or an empty YAML value) means "not set".
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn collect_leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                path.push(k.clone());
                collect_leaves(child, path, out);
                path.pop();
            }
        }
        other => out.push((path.clone(), other.clone())),
    }
}

fn env_name(prefix: &str, path: &[String]) -> String {
    let mut s = prefix.to_owned();
    s.push_str(&path.join("_").to_ascii_uppercase());
    s
}

/// Centrifugo's NameForEnv: `.` and `-` become `_`; then upper case.
fn name_for_env(name: &str) -> String {
    name.replace(['.', '-'], "_").to_ascii_uppercase()
}

fn set_path(root: &mut Value, path: &[String], v: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = root;
    for key in parents {
        if !cur.get(key).is_some_and(Value::is_object) {
            if let Some(m) = cur.as_object_mut() {
                m.insert(key.clone(), Value::Object(Map::new()));
            }
        }
        let Some(next) = cur.get_mut(key) else { return };
        cur = next;
    }
    if let Some(m) = cur.as_object_mut() {
        m.insert(last.clone(), v);
    }
}

/// Read an environment string as the type of the key's default value.
fn parse_env(
    var: &str,
    raw: &str,
    default: &Value,
    namespaces: bool,
) -> Result<Value, ConfigError> {
    let err = |message: String| ConfigError::Env {
        var: var.to_owned(),
        message,
    };
    Ok(match default {
        Value::Bool(_) => Value::Bool(match raw {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            _ => return Err(err(format!("{raw:?} is not a boolean (use true or false)"))),
        }),
        Value::Number(_) => {
            let t = raw.trim();
            if let Ok(i) = t.parse::<i64>() {
                Value::from(i)
            } else if let Ok(u) = t.parse::<u64>() {
                Value::from(u)
            } else {
                t.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| err(format!("{raw:?} is not a number")))?
            }
        }
        Value::Array(_) => {
            let t = raw.trim();
            if t.starts_with('[') {
                let v: Value =
                    serde_json::from_str(t).map_err(|e| err(format!("not a JSON array: {e}")))?;
                if !v.is_array() {
                    return Err(err("not a JSON array".into()));
                }
                v
            } else if namespaces {
                // Space-separated names, as Centrifugo accepts.
                Value::Array(
                    t.split_whitespace()
                        .map(|n| {
                            let mut m = Map::new();
                            m.insert("name".into(), Value::String(n.to_owned()));
                            Value::Object(m)
                        })
                        .collect(),
                )
            } else {
                Value::Array(
                    t.split_whitespace()
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                )
            }
        }
        Value::Object(_) => {
            serde_json::from_str(raw).map_err(|e| err(format!("not a JSON object: {e}")))?
        }
        Value::String(_) | Value::Null => Value::String(raw.to_owned()),
    })
}

/// Keys of sections wshub does not implement that would turn a feature on:
/// set to `true`, a non-empty string or list, or a non-zero number, they
/// stop the server instead of being ignored (a user who turns a feature on
/// gets it or a clear refusal). The rest of those sections only tunes an
/// absent feature and stays a warning. `[]` stands for any array index,
/// `*` for any one key.
const FEATURE_SWITCHES: &[(&str, &str)] = &[
    ("uni_grpc.enabled", "the unidirectional gRPC transport"),
    ("grpc_api.enabled", "the gRPC server API"),
    ("admin.enabled", "the admin web interface"),
    ("swagger.enabled", "the Swagger UI"),
    ("debug.enabled", "the debug (pprof) endpoints"),
    ("opentelemetry.enabled", "OpenTelemetry tracing"),
    ("graphite.enabled", "Graphite metrics export"),
    ("presence_manager.enabled", "a separate presence manager"),
    ("map_broker.enabled", "the map broker"),
    ("controller.enabled", "a separate controller"),
    ("consumers[].enabled", "asynchronous consumers"),
    ("rpc.ping", "the built-in ping RPC"),
    ("rpc.without_namespace.proxy_enabled", "RPC proxies"),
    ("rpc.namespaces[].proxy_enabled", "RPC proxies"),
    ("client.proxy.*.enabled", "connection event proxies"),
    ("client.rate_limit.*.enabled", "per-command rate limits"),
    ("client.allowed_delta_types", "delta compression"),
    (
        "http_server.tls_autocert.enabled",
        "automatic TLS certificates",
    ),
    ("http_server.h2c_external", "HTTP/2 without TLS"),
    ("http_api.error_mode", "another API error mode"),
    (
        "prometheus.recovered_publications_histogram",
        "the recovered publications histogram",
    ),
    (
        "prometheus.native_histograms",
        "native Prometheus histograms",
    ),
    ("broker.nats.allow_wildcards", "wildcard NATS subscriptions"),
    ("broker.nats.raw_mode.enabled", "raw NATS mode"),
    ("engine.redis.history_use_lists", "Redis lists for history"),
    ("broker.redis.history_use_lists", "Redis lists for history"),
    ("engine.redis.replica_client.enabled", "Redis replica reads"),
    ("broker.redis.replica_client.enabled", "Redis replica reads"),
    ("pid_file", "writing a PID file"),
    (
        "channel.without_namespace.auto_cache_recovery",
        "automatic cache recovery",
    ),
    (
        "channel.namespaces[].auto_cache_recovery",
        "automatic cache recovery",
    ),
];

/// Whether a normalized path (`[]` for indexes) matches a switch pattern.
fn switch_matches(pattern: &str, path: &str) -> bool {
    let (mut p, mut q) = (pattern.split('.'), path.split('.'));
    loop {
        match (p.next(), q.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == "*" || a == b => {}
            _ => return false,
        }
    }
}

/// `true`, a non-empty string, list or map, a non-zero number.
fn turns_on(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::Null => false,
    }
}

/// Replaces every `[...]` of a path with `[]`.
fn normalize(path: &str) -> String {
    let mut norm = String::with_capacity(path.len());
    let mut in_brackets = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_brackets = true;
                norm.push_str("[]");
            }
            ']' => in_brackets = false,
            c if !in_brackets => norm.push(c),
            _ => {}
        }
    }
    norm
}

/// Walks a value wshub does not know (at `path`) and refuses every feature
/// switch in it that is on.
fn find_switches(v: &Value, path: &mut String, out: &mut Vec<super::ValidationError>) {
    let norm = normalize(path);
    if let Some((_, feature)) = FEATURE_SWITCHES
        .iter()
        .find(|(p, _)| switch_matches(p, &norm))
    {
        if turns_on(v) {
            out.push(super::ValidationError {
                path: path.clone(),
                message: super::validate::unimplemented(feature, "remove the key or turn it off"),
            });
        }
        return;
    }
    match v {
        Value::Object(m) => {
            for (key, child) in m {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                find_switches(child, path, out);
                path.truncate(len);
            }
        }
        Value::Array(a) => {
            for (idx, child) in a.iter().enumerate() {
                let len = path.len();
                match child.get("name").and_then(Value::as_str) {
                    Some(name) if !name.is_empty() => path.push_str(&format!("[{name}]")),
                    _ => path.push_str(&format!("[{idx}]")),
                }
                find_switches(child, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// Keys wshub reads (they are fields of [`Config`]) but does not act on:
/// each only tunes something wshub does its own way, so setting one is a
/// warning, not an error.
const IGNORED_KNOWN: &[&str] = &[
    // The position check runs every 30 s with its own grace period.
    "client.channel_position_check_delay",
    "client.channel_position_max_time_lag",
    // permessage-deflate uses the engine's level and compresses replies of
    // any size; broadcast frames are not compressed.
    "websocket.compression_min_size",
    "websocket.compression_level",
    // The engine sizes its own buffers.
    "websocket.read_buffer_size",
    "websocket.write_buffer_size",
    "websocket.use_write_buffer_pool",
    "uni_websocket.compression_min_size",
    "uni_websocket.compression_level",
    "uni_websocket.read_buffer_size",
    "uni_websocket.write_buffer_size",
    "uni_websocket.use_write_buffer_pool",
    // Every endpoint is on the one external port already.
    "http_api.external",
    // The binary's `--log` flag and `RUST_LOG` set the log filter.
    "log.level",
];

/// Warns about every [`IGNORED_KNOWN`] key the input sets to a value other
/// than the default.
fn ignored_known_keys(input: &Value, out: &mut Vec<ConfigWarning>) {
    let Ok(defaults) = serde_json::to_value(Config::default()) else {
        return;
    };
    for path in IGNORED_KNOWN {
        let pointer = format!("/{}", path.replace('.', "/"));
        let set = input.pointer(&pointer);
        if set.is_some() && set != defaults.pointer(&pointer) {
            out.push(ConfigWarning {
                kind: WarningKind::Unsupported,
                path: (*path).to_owned(),
            });
        }
    }
}

/// Centrifugo v6 keys that wshub does not implement. A path matches an entry
/// when equal to it or below it. `[]` stands for any array index.
const UNSUPPORTED: &[&str] = &[
    "presence_manager",
    "map_broker",
    "controller",
    "shared_poll",
    "rpc",
    "proxies",
    "grpc_api",
    "consumers",
    "uni_grpc",
    "admin",
    "swagger",
    "debug",
    "init",
    "opentelemetry",
    "graphite",
    "usage_stats",
    "node",
    "pid_file",
    "enable_unreleased_features",
    "http_server.tls_autocert",
    "http_server.h2c_external",
    "client.proxy",
    "client.concurrency",
    // Centrifugo PRO's per-command buckets; wshub has `limits.commands_per_second`.
    "client.rate_limit",
    "client.allowed_delta_types",
    "client.connect_code_to_unidirectional_disconnect",
    "client.token.insecure_skip_jwks_endpoint_safety_check",
    "client.subscription_token.insecure_skip_jwks_endpoint_safety_check",
    "channel.proxy",
    "http_api.error_mode",
    "prometheus.recovered_publications_histogram",
    "prometheus.native_histograms",
    "broker.postgres",
    "broker.redisnats",
    "broker.nats.allow_wildcards",
    "broker.nats.raw_mode",
];

/// Redis options wshub does not implement (under `engine.redis` and `broker.redis`).
const UNSUPPORTED_REDIS: &[&str] = &[
    "history_use_lists",
    "presence_ttl",
    "presence_hash_field_ttl",
    "presence_user_mapping",
    "force_resp2",
    "client_name",
    "sentinel_user",
    "sentinel_password",
    "sentinel_client_name",
    "sentinel_tls",
    "replica_client",
];

/// Channel options wshub does not implement (in `without_namespace` and namespaces).
const UNSUPPORTED_CHANNEL_OPTIONS: &[&str] = &[
    "map_clients_presence_channel_prefix",
    "map_users_presence_channel_prefix",
    "subscribe_proxy_name",
    "publish_proxy_name",
    "sub_refresh_proxy_name",
    "subscribe_stream_proxy_name",
    "subscribe_stream_proxy_bidirectional",
    "map",
    "shared_poll",
    "auto_cache_recovery",
];

fn is_unsupported(path: &str) -> bool {
    let norm = normalize(path);
    let under = |entry: &str| {
        norm == entry
            || norm
                .strip_prefix(entry)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    if UNSUPPORTED.iter().any(|e| under(e)) {
        return true;
    }
    for section in ["engine.redis.", "broker.redis."] {
        if let Some(rest) = norm.strip_prefix(section) {
            let key = rest.split(['.', '[']).next().unwrap_or("");
            if UNSUPPORTED_REDIS.contains(&key) {
                return true;
            }
        }
    }
    for section in ["channel.without_namespace.", "channel.namespaces[]."] {
        if let Some(rest) = norm.strip_prefix(section) {
            let key = rest.split(['.', '[']).next().unwrap_or("");
            if UNSUPPORTED_CHANNEL_OPTIONS.contains(&key) {
                return true;
            }
        }
    }
    false
}

/// Report every key of `input` that has no counterpart in `known` (the
/// deserialized config serialized back, which has every known key), and
/// refuse the feature switches among them ([`FEATURE_SWITCHES`]).
fn walk_unknown(
    input: &Value,
    known: &Value,
    path: &mut String,
    out: &mut Vec<ConfigWarning>,
    refused: &mut Vec<super::ValidationError>,
) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, v) in i {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match k.get(key) {
                    Some(kv) => walk_unknown(v, kv, path, out, refused),
                    None if is_unsupported(path) => {
                        out.push(ConfigWarning {
                            kind: WarningKind::Unsupported,
                            path: path.clone(),
                        });
                        find_switches(v, path, refused);
                    }
                    None => out.push(ConfigWarning {
                        kind: WarningKind::UnknownKey,
                        path: path.clone(),
                    }),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (idx, (v, kv)) in i.iter().zip(k).enumerate() {
                let len = path.len();
                match v.get("name").and_then(Value::as_str) {
                    Some(name) if !name.is_empty() => path.push_str(&format!("[{name}]")),
                    _ => path.push_str(&format!("[{idx}]")),
                }
                walk_unknown(v, kv, path, out, refused);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_unique() {
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let mut leaves = Vec::new();
        collect_leaves(&defaults, &mut Vec::new(), &mut leaves);
        let mut seen = HashSet::new();
        for (path, _) in &leaves {
            assert!(
                seen.insert(env_name("WSHUB_", path)),
                "duplicate env name for {path:?}"
            );
        }
        assert!(seen.contains("WSHUB_CLIENT_TOKEN_HMAC_SECRET_KEY"));
        assert!(seen.contains("WSHUB_HTTP_API_KEY"));
        assert!(seen.contains("WSHUB_CLIENT_SUBSCRIPTION_TOKEN_HMAC_SECRET_KEY"));
        assert!(seen.contains("WSHUB_CHANNEL_NAMESPACES"));
    }

    #[test]
    fn unsupported_matching() {
        assert!(is_unsupported("admin"));
        assert!(is_unsupported("admin.enabled"));
        assert!(is_unsupported("channel.namespaces[chat].map"));
        assert!(is_unsupported(
            "channel.without_namespace.subscribe_proxy_name"
        ));
        assert!(is_unsupported("engine.redis.presence_ttl"));
        assert!(is_unsupported("client.rate_limit.client_command.enabled"));
        assert!(!is_unsupported("administrator"));
        assert!(!is_unsupported("channel.namespaces[chat].presense"));
    }
}
