//! Tests of the Centrifugo v6 configuration format: the three file formats,
//! unknown keys, environment overrides, validation, channel resolution.

// Configs are built the way code outside this crate must build them
// (`#[non_exhaustive]` structs: default, then assign fields).
#![allow(clippy::field_reassign_with_default)]

use super::*;

const JSON: &str = include_str!("testdata/config.json");
const YAML: &str = include_str!("testdata/config.yaml");
const TOML: &str = include_str!("testdata/config.toml");

fn load(text: &str, format: Format) -> Loaded {
    Loader::new().load_str(text, format).unwrap()
}

fn load_json(v: serde_json::Value) -> Result<Loaded, ConfigError> {
    Loader::new().load_str(&v.to_string(), Format::Json)
}

fn env(vars: &[(&str, &str)]) -> Loader {
    Loader::new().env_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn invalid(v: serde_json::Value) -> Vec<ValidationError> {
    match load_json(v) {
        Err(ConfigError::Invalid(errors)) => errors,
        other => panic!("expected validation errors, got {other:?}"),
    }
}

fn paths(errors: &[ValidationError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn same_content_in_three_formats_gives_the_same_config() {
    let j = load(JSON, Format::Json);
    let y = load(YAML, Format::Yaml);
    let t = load(TOML, Format::Toml);
    // `log.level` is read but not applied (`--log` / `RUST_LOG` are).
    let level_only = [ConfigWarning {
        kind: WarningKind::Unsupported,
        path: "log.level".into(),
    }];
    assert_eq!(j.warnings, level_only);
    assert_eq!(y.warnings, level_only);
    assert_eq!(t.warnings, level_only);
    assert_eq!(j.config, y.config);
    assert_eq!(j.config, t.config);

    let c = &j.config;
    assert_eq!(c.http_server.address, "0.0.0.0");
    assert_eq!(c.http_server.port, 9000);
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.broker_kind(), BrokerKind::Redis);
    assert_eq!(
        c.redis().address,
        ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]
    );
    assert_eq!(c.redis().prefix, "myapp");
    assert_eq!(c.redis().io_timeout, Duration::from_secs(2));
    assert_eq!(
        c.redis().connect_timeout,
        Duration::from_secs(1),
        "default kept"
    );
    assert_eq!(c.client.token.hmac_secret_key, "a-very-long-secret");
    assert_eq!(c.client.token.audience, "centrifugo");
    assert_eq!(c.client.allowed_origins.len(), 2);
    assert_eq!(c.client.ping_interval, Duration::from_secs(20));
    assert_eq!(c.client.pong_timeout, Duration::from_secs(5));
    assert_eq!(c.client.channel_limit, 64);
    assert_eq!(c.client.user_connection_limit, 10);
    assert_eq!(c.client.queue_max_size, 2 * 1024 * 1024);
    assert_eq!(c.client.history_max_publication_limit, 300, "default kept");
    assert_eq!(c.channel.max_length, 128);
    assert_eq!(c.channel.namespace_boundary, ":", "default kept");
    assert_eq!(c.channel.namespaces.len(), 3);
    let chat = &c.channel.namespaces[0];
    assert_eq!(chat.name, "chat");
    assert!(chat.options.presence && chat.options.join_leave && chat.options.force_recovery);
    assert_eq!(chat.options.history_size, 100);
    assert_eq!(chat.options.history_ttl, Duration::from_secs(300));
    assert_eq!(
        c.channel.namespaces[1].options.history_ttl,
        Duration::from_secs(3600)
    );
    assert_eq!(c.http_api.key, "api-key");
    assert_eq!(c.http_api.handler_prefix, "/api", "default kept");
    assert!(c.prometheus.enabled && c.health.enabled);
    assert_eq!(c.shutdown.timeout, Duration::from_secs(10));
    assert_eq!(c.websocket.message_size_limit, 65_536, "default kept");
    assert_eq!(c.personal_channel("42"), "personal:#42");
}

#[test]
fn load_file_picks_the_format_by_extension() {
    let dir = std::env::temp_dir().join(format!("wshub-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut configs = Vec::new();
    for (name, text) in [
        ("c.json", JSON),
        ("c.yml", YAML),
        ("c.YAML", YAML),
        ("c.toml", TOML),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        configs.push(Loader::new().load_file(&p).unwrap().config);
    }
    assert!(configs.windows(2).all(|w| w[0] == w[1]));
    let p = dir.join("c.ini");
    std::fs::write(&p, "").unwrap();
    assert!(matches!(
        Loader::new().load_file(&p),
        Err(ConfigError::UnknownFormat { .. })
    ));
    assert!(matches!(
        Loader::new().load_file(dir.join("missing.json")),
        Err(ConfigError::Io { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_files_give_defaults() {
    for (text, format) in [
        ("", Format::Json),
        ("", Format::Yaml),
        ("", Format::Toml),
        ("{}", Format::Json),
    ] {
        assert_eq!(load(text, format).config, Config::default(), "{format}");
    }
    let d = Config::default();
    assert_eq!(d.http_server.port, 8000);
    assert_eq!(d.client.ping_interval, Duration::from_secs(25));
    assert_eq!(d.client.pong_timeout, Duration::from_secs(8));
    assert_eq!(d.client.channel_limit, 128);
    assert_eq!(d.client.queue_max_size, 1_048_576);
    assert_eq!(d.channel.max_length, 255);
    assert_eq!(d.channel.private_prefix, "$");
    assert_eq!(d.channel.user_boundary, "#");
    assert_eq!(d.channel.user_separator, ",");
    assert_eq!(d.channel.history_meta_ttl, Duration::from_secs(720 * 3600));
    assert_eq!(d.shutdown.timeout, Duration::from_secs(30));
    assert_eq!(d.broker_kind(), BrokerKind::Memory);
    d.validate().unwrap();
}

#[test]
fn syntax_errors_name_the_format() {
    for (text, format) in [
        ("{\"client\": ", Format::Json),
        ("client: [unclosed", Format::Yaml),
        ("[client\nx = ", Format::Toml),
    ] {
        match Loader::new().load_str(text, format) {
            Err(e @ ConfigError::Syntax { .. }) => {
                assert!(e.to_string().contains(&format.to_string()))
            }
            other => panic!("{format}: {other:?}"),
        }
    }
    assert!(matches!(
        Loader::new().load_str("[1, 2]", Format::Json),
        Err(ConfigError::Type { .. })
    ));
    assert!(Loader::new()
        .load_str("a: 1\n---\nb: 2\n", Format::Yaml)
        .is_err());
}

#[test]
fn type_errors_have_paths() {
    let e = load_json(serde_json::json!({"client": {"channel_limit": "many"}})).unwrap_err();
    match &e {
        ConfigError::Type { path, .. } => assert_eq!(path, "client.channel_limit"),
        other => panic!("{other:?}"),
    }
    let e = load_json(serde_json::json!({"client": {"ping_interval": "25"}})).unwrap_err();
    assert!(e.to_string().contains("client.ping_interval"), "{e}");
    assert!(e.to_string().contains("missing unit"), "{e}");
    let e = load_json(serde_json::json!({"channel": {"namespaces": [{"name": "ok"}, {"name": "x2", "history_size": -1}]}}))
        .unwrap_err();
    match &e {
        ConfigError::Type { path, .. } => {
            assert!(path.starts_with("channel.namespaces[1]"), "{path}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn nulls_and_single_strings_are_lenient() {
    let y = "client:\n  token:\nengine:\n  type: redis\n  redis:\n    address: redis://h:6379\n";
    let c = load(y, Format::Yaml).config;
    assert_eq!(c.client.token, TokenConfig::default());
    assert_eq!(c.engine.redis.address, ["redis://h:6379"]);
}

#[test]
fn unknown_and_unsupported_keys_are_reported_with_paths() {
    let text = r#"{
        "client": {"tokn": {"hmac_secret_key": "x"}, "proxy": {"connect": {"enabled": false}}},
        "http_server": {"tls": {"enabeld": true}},
        "channel": {
            "namespaces": [
                {"name": "chat", "presense": true, "map": {"mode": "ephemeral"}},
                {"history_size": 0, "name": "feed", "subscribe_proxy_name": "p"}
            ],
            "without_namespace": {"allow_subscribe_for_clients": true}
        },
        "admin": {"enabled": false, "password": "p"},
        "rpc": {},
        "engine": {"redis": {"presence_ttl": "60s"}},
        "my_custom_thing": 1
    }"#;
    let loaded = Loader::new().load_str(text, Format::Json).unwrap();
    let mut got: Vec<(WarningKind, &str)> = loaded
        .warnings
        .iter()
        .map(|w| (w.kind, w.path.as_str()))
        .collect();
    got.sort_by_key(|(_, p)| *p);
    use WarningKind::*;
    assert_eq!(
        got,
        [
            (Unsupported, "admin"),
            (Unsupported, "channel.namespaces[chat].map"),
            (UnknownKey, "channel.namespaces[chat].presense"),
            (Unsupported, "channel.namespaces[feed].subscribe_proxy_name"),
            (
                UnknownKey,
                "channel.without_namespace.allow_subscribe_for_clients"
            ),
            (Unsupported, "client.proxy"),
            (UnknownKey, "client.tokn"),
            (Unsupported, "engine.redis.presence_ttl"),
            (UnknownKey, "http_server.tls.enabeld"),
            (UnknownKey, "my_custom_thing"),
            (Unsupported, "rpc"),
        ]
    );
    // Each warning reads well in a log line.
    assert_eq!(
        loaded
            .warnings
            .iter()
            .find(|w| w.path == "client.tokn")
            .unwrap()
            .to_string(),
        "unknown config key client.tokn (ignored)"
    );

    // The same in YAML and TOML.
    let y = "client:\n  tokn: {}\nadmin:\n  enabled: false\n";
    let t = "[client.tokn]\n[admin]\nenabled = false\n";
    for (text, format) in [(y, Format::Yaml), (t, Format::Toml)] {
        let w = load(text, format).warnings;
        let p: Vec<&str> = w.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(p, ["admin", "client.tokn"], "{format}");
    }
}

#[test]
fn environment_overrides_the_file() {
    let loaded = env(&[
        ("WSHUB_CLIENT_TOKEN_HMAC_SECRET_KEY", "from-env"),
        ("WSHUB_HTTP_API_KEY", "env-api-key"),
        (
            "WSHUB_CLIENT_ALLOWED_ORIGINS",
            "https://a.com https://b.com",
        ),
        ("WSHUB_PROMETHEUS_ENABLED", "0"),
        ("WSHUB_HEALTH_ENABLED", "false"),
        ("WSHUB_CLIENT_PING_INTERVAL", "30s"),
        ("WSHUB_HTTP_SERVER_PORT", "7000"),
        ("WSHUB_CHANNEL_NAMESPACES_CHAT_HISTORY_SIZE", "50"),
        ("WSHUB_CHANNEL_NAMESPACES_PERSONAL_PRESENCE", "true"),
        (
            "WSHUB_ENGINE_REDIS_ADDRESS",
            "redis://r1:6379 redis://r2:6379",
        ),
        ("WSHUB_CLIENT_SUBSCRIPTION_TOKEN_ENABLED", "1"),
        ("WSHUB_CLIENT_SUBSCRIPTION_TOKEN_HMAC_SECRET_KEY", "subs"),
        // Empty means unset.
        ("WSHUB_LOG_LEVEL", ""),
        // Not ours.
        ("HOME", "/root"),
        ("WSHUB_CLIENT_TOKEN_HMAC_SECRET", "typo"),
    ])
    .load_str(JSON, Format::Json)
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.client.token.hmac_secret_key, "from-env");
    assert_eq!(c.client.token.audience, "centrifugo", "file value kept");
    assert_eq!(c.http_api.key, "env-api-key");
    assert_eq!(c.client.allowed_origins, ["https://a.com", "https://b.com"]);
    assert!(!c.prometheus.enabled && !c.health.enabled);
    assert_eq!(c.client.ping_interval, Duration::from_secs(30));
    assert_eq!(c.http_server.port, 7000);
    assert_eq!(c.channel.namespaces[0].options.history_size, 50);
    assert!(c.channel.namespaces[0].options.presence, "file value kept");
    assert!(c.channel.namespaces[1].options.presence);
    assert_eq!(
        c.engine.redis.address,
        ["redis://r1:6379", "redis://r2:6379"]
    );
    assert!(c.client.subscription_token.enabled);
    assert_eq!(c.subscription_token().hmac_secret_key, "subs");
    assert_eq!(c.log.level, "debug");
    let unknown: Vec<_> = loaded
        .warnings
        .iter()
        .filter(|w| w.path != "log.level")
        .map(|w| (w.kind, w.path.as_str()))
        .collect();
    assert_eq!(
        unknown,
        [(WarningKind::UnknownEnv, "WSHUB_CLIENT_TOKEN_HMAC_SECRET")]
    );
}

#[test]
fn environment_sets_namespaces_and_reports_bad_values() {
    let c = env(&[
        (
            "WSHUB_CHANNEL_NAMESPACES",
            r#"[{"name": "ns1", "presence": true}, {"name": "ns-2"}]"#,
        ),
        ("WSHUB_CHANNEL_NAMESPACES_NS_2_JOIN_LEAVE", "true"),
    ])
    .load_defaults()
    .unwrap()
    .config;
    let names: Vec<&str> = c
        .channel
        .namespaces
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(names, ["ns1", "ns-2"]);
    assert!(c.channel.namespaces[0].options.presence);
    assert!(c.channel.namespaces[1].options.join_leave);

    let c = env(&[("WSHUB_CHANNEL_NAMESPACES", "a1 b2")])
        .load_defaults()
        .unwrap()
        .config;
    assert_eq!(c.channel.namespaces.len(), 2);

    for (var, value) in [
        ("WSHUB_PROMETHEUS_ENABLED", "yes"),
        ("WSHUB_CLIENT_CHANNEL_LIMIT", "lots"),
        ("WSHUB_CHANNEL_NAMESPACES", "[{"),
    ] {
        match env(&[(var, value)]).load_defaults() {
            Err(ConfigError::Env { var: v, .. }) => assert_eq!(v, var),
            other => panic!("{var}: {other:?}"),
        }
    }
    // A well-formed value of the wrong type for the field is a type error.
    assert!(matches!(
        env(&[("WSHUB_HTTP_SERVER_PORT", "70000")]).load_defaults(),
        Err(ConfigError::Type { .. })
    ));
    // Another prefix.
    let c = Loader::new()
        .env_prefix("CENTRIFUGO")
        .env_vars([("CENTRIFUGO_HTTP_API_KEY".to_owned(), "k".to_owned())])
        .load_defaults()
        .unwrap()
        .config;
    assert_eq!(c.http_api.key, "k");
}

#[test]
fn validation_reports_every_problem() {
    let errors = invalid(serde_json::json!({
        "log": {"level": "verbose"},
        "client": {"ping_interval": "5s", "pong_timeout": "8s"},
        "channel": {
            "namespaces": [
                {"name": "a"},
                {"name": "bad name"},
                {"name": "chat"},
                {"name": "chat"},
                {"name": "hist", "history_size": 10},
                {"name": "ttl", "history_ttl": "10s"},
                {"name": "subsec", "history_size": 1, "history_ttl": "1500ms"},
                {"name": "rec", "force_recovery": true},
                {"name": "proxy", "subscribe_proxy_enabled": true},
                {"name": "maps", "subscription_type": "map"},
                {"name": "re", "channel_regex": "(["},
                {"name": "mode", "force_recovery_mode": "magic"},
                {"name": "fmt", "publication_data_format": "xml"},
                {"name": "meta", "history_size": 1, "history_ttl": "2h", "history_meta_ttl": "1h"}
            ]
        }
    }));
    let p = paths(&errors);
    for want in [
        "log.level",
        "client.ping_interval",
        "channel.namespaces[a].name",
        "channel.namespaces[bad name].name",
        "channel.namespaces[chat].name",
        "channel.namespaces[hist].history_ttl",
        "channel.namespaces[ttl].history_size",
        "channel.namespaces[subsec].history_ttl",
        "channel.namespaces[rec].force_recovery",
        "channel.namespaces[proxy].subscribe_proxy_enabled",
        "channel.namespaces[maps].subscription_type",
        "channel.namespaces[re].channel_regex",
        "channel.namespaces[mode].force_recovery_mode",
        "channel.namespaces[fmt].publication_data_format",
        "channel.namespaces[meta].history_ttl",
    ] {
        assert!(p.contains(&want), "missing {want} in {p:#?}");
    }
    let dup = errors
        .iter()
        .find(|e| e.path == "channel.namespaces[chat].name")
        .unwrap();
    assert!(dup.message.contains("duplicate"), "{dup}");
    let e = ConfigError::Invalid(errors.clone());
    assert!(e.to_string().starts_with("invalid configuration: "));
}

/// Public keys are checked by the check the loader is given (the token
/// verifier's, in the hub), at the key's path; without one they are not parsed.
#[test]
fn token_keys_are_checked_by_the_given_check() {
    fn refuse_rsa(t: &TokenConfig) -> Result<(), (&'static str, String)> {
        if t.rsa_public_key.is_empty() {
            Ok(())
        } else {
            Err(("rsa_public_key", "not an RSA public key".into()))
        }
    }
    let v = serde_json::json!({
        "client": {"token": {"rsa_public_key": "junk"},
                   "subscription_token": {"enabled": true, "rsa_public_key": "junk",
                                          "jwks_public_endpoint": "nope"}}});
    assert!(
        load_json(v.clone()).is_err(),
        "the bad JWKS URL alone is refused"
    );
    let checked = Loader::new().token_key_check(refuse_rsa);
    match checked.load_str(&v.to_string(), Format::Json) {
        Err(ConfigError::Invalid(errors)) => assert_eq!(
            paths(&errors),
            [
                "client.token.rsa_public_key",
                "client.subscription_token.rsa_public_key"
            ],
            "one error per token config, the first"
        ),
        other => panic!("expected validation errors, got {other:?}"),
    }
    let mut c = Config::default();
    c.client.token.rsa_public_key = "junk".into();
    c.validate().unwrap();
    assert!(c.validate_with(Some(refuse_rsa)).is_err());
}

#[test]
fn validation_of_sections() {
    let p = |v| {
        let e = invalid(v);
        e.into_iter().map(|e| e.path).collect::<Vec<_>>()
    };
    assert_eq!(
        p(serde_json::json!({"engine": {"type": "tarantool"}})),
        ["engine.type"]
    );
    assert_eq!(
        p(serde_json::json!({"broker": {"enabled": true, "type": "postgres"}})),
        ["broker.type"]
    );
    assert_eq!(
        p(serde_json::json!({"broker": {"type": "kafka"}})),
        ["broker.type"]
    );
    assert_eq!(
        p(serde_json::json!({"engine": {"type": "redis", "redis": {"address": []}}})),
        ["engine.redis.address"]
    );
    assert_eq!(
        p(serde_json::json!({"http_server": {"tls": {"enabled": true, "cert_pem": "/c.pem"}}})),
        ["http_server.tls.key_pem"]
    );
    assert_eq!(
        p(
            serde_json::json!({"client": {"subscribe_to_user_personal_channel": {
            "enabled": true, "personal_channel_namespace": "personal"}}})
        ),
        ["client.subscribe_to_user_personal_channel.personal_channel_namespace"]
    );
    assert_eq!(
        p(
            serde_json::json!({"client": {"subscribe_to_user_personal_channel": {
            "enabled": true, "single_connection": true}}})
        ),
        ["client.subscribe_to_user_personal_channel.single_connection"]
    );
    assert_eq!(
        p(serde_json::json!({"client": {"token": {"audience": "a", "audience_regex": "a"}}})),
        ["client.token.audience_regex"]
    );
    assert_eq!(
        p(serde_json::json!({"client": {"token": {"user_id_claim": "user.id"}}})),
        ["client.token.user_id_claim"]
    );
    assert_eq!(
        p(
            serde_json::json!({"client": {"subscription_token": {"enabled": true, "jwks_public_endpoint": "nope"}}})
        ),
        ["client.subscription_token.jwks_public_endpoint"]
    );
    assert_eq!(
        p(serde_json::json!({"channel": {"history_meta_ttl": "1.5s"}})),
        ["channel.history_meta_ttl"]
    );
    // Broker selection.
    let c = load_json(serde_json::json!({"broker": {"enabled": true, "type": "nats", "nats": {"url": "nats://n:4222"}}}))
        .unwrap()
        .config;
    assert_eq!(c.broker_kind(), BrokerKind::Nats);
    assert_eq!(c.broker.nats.url, "nats://n:4222");
    assert_eq!(c.broker.nats.prefix, "centrifugo");
}

#[test]
fn development_default_is_valid_and_described() {
    let dev = Config::development_default();
    dev.validate().unwrap();
    assert!(dev.client.allow_anonymous_connect_without_token);
    assert!(dev.http_api.insecure && dev.demo.enabled);
    assert_eq!(dev.broker_kind(), BrokerKind::Memory);
    assert_eq!(dev.http_server.address, "127.0.0.1");
    let d = dev.describe();
    for needle in [
        "memory broker",
        "http_api.insecure",
        "allow_anonymous_connect_without_token",
        "demo",
        "Pusher demo app",
    ] {
        assert!(d.contains(needle), "{needle} not in {d}");
    }
    assert_eq!(
        Config::default().describe(),
        "memory broker (single node, data lost on restart); no development-only settings"
    );
    // The environment applies to the development defaults too.
    let c = env(&[
        ("WSHUB_HTTP_API_INSECURE", "false"),
        ("WSHUB_HTTP_API_KEY", "k"),
    ])
    .load_development()
    .unwrap()
    .config;
    assert!(!c.http_api.insecure);
    assert!(c.client.allow_anonymous_connect_without_token);
    // Channels work out of the box.
    let ch = channel_options(&dev, "news").unwrap();
    assert!(ch.options.allow_subscribe_for_client && ch.options.history_enabled());
}

#[test]
fn serialized_config_loads_back_unchanged() {
    let j = load(JSON, Format::Json).config;
    let text = serde_json::to_string_pretty(&j).unwrap();
    let back = load(&text, Format::Json);
    assert_eq!(back.config, j);
    let w: Vec<&str> = back.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(w, ["log.level"], "the file's level, read but not applied");
}

#[test]
fn tls_pem_sources() {
    use base64::Engine as _;
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    assert_eq!(
        TlsConfig::load_pem(pem, "k").unwrap(),
        pem.trim().as_bytes()
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
    assert_eq!(TlsConfig::load_pem(&b64, "k").unwrap(), pem.as_bytes());
    let path = std::env::temp_dir().join(format!("wshub-pem-{}.pem", std::process::id()));
    std::fs::write(&path, pem).unwrap();
    assert_eq!(
        TlsConfig::load_pem(path.to_str().unwrap(), "k").unwrap(),
        pem.as_bytes()
    );
    std::fs::remove_file(&path).unwrap();
    let err = TlsConfig::load_pem("/no/such/file.pem", "http_server.tls.cert_pem").unwrap_err();
    assert!(
        err.to_string().starts_with("http_server.tls.cert_pem: "),
        "{err}"
    );
}

// ---- channel resolution ----

fn channel_config() -> Config {
    // Not validated: `publication_data_format` is refused at validation
    // (not enforced), resolution still reports it.
    let text = serde_json::json!({
        "channel": {
            "max_length": 32,
            "publication_data_format": "json",
            "without_namespace": {"presence": true},
            "namespaces": [
                {"name": "chat", "join_leave": true},
                {"name": "personal", "allow_user_limited_channels": true, "publication_data_format": "binary"},
                {"name": "updates", "channel_regex": "^[a-z0-9_]+$"}
            ]
        }
    });
    serde_json::from_value(text).unwrap()
}

#[test]
fn channel_resolution_table() {
    let c = channel_config();
    // (channel, namespace, rest, private, user_limited)
    let ok: &[(&str, Option<&str>, &str, bool, bool)] = &[
        ("news", None, "news", false, false),
        ("chat:room", Some("chat"), "room", false, false),
        ("chat:a:b", Some("chat"), "a:b", false, false),
        ("$chat:secret", Some("chat"), "secret", true, false),
        ("$news", None, "$news", true, false),
        ("personal:#42", Some("personal"), "#42", false, true),
        (
            "personal:dialog#42,43",
            Some("personal"),
            "dialog#42,43",
            false,
            true,
        ),
        ("$personal:x#1", Some("personal"), "x#1", true, true),
        ("chat:room#42", Some("chat"), "room#42", false, false),
        ("news#1", None, "news#1", false, false),
        (":x", None, "x", false, false),
        ("updates:abc_1", Some("updates"), "abc_1", false, false),
    ];
    for &(ch, ns, rest, private, user_limited) in ok {
        let r = channel_options(&c, ch).unwrap_or_else(|e| panic!("{ch}: {e}"));
        assert_eq!(
            (r.channel, r.namespace, r.rest, r.private, r.user_limited),
            (ch, ns, rest, private, user_limited),
            "{ch}"
        );
    }
    let err: &[(&str, ChannelError, u32)] = &[
        ("", ChannelError::Empty, 107),
        (
            "nope:x",
            ChannelError::UnknownNamespace {
                namespace: "nope".into(),
            },
            102,
        ),
        (
            "$nope:x",
            ChannelError::UnknownNamespace {
                namespace: "nope".into(),
            },
            102,
        ),
        ("новости", ChannelError::NotAscii, 107),
        ("$pusher/1/chat", ChannelError::Reserved, 102),
        ("chat:é", ChannelError::NotAscii, 107),
        ("updates:ABC", ChannelError::RegexMismatch, 107),
        ("updates:", ChannelError::RegexMismatch, 107),
        (
            &"x".repeat(33),
            ChannelError::TooLong { len: 33, max: 32 },
            107,
        ),
    ];
    for (ch, want, code) in err {
        let got = channel_options(&c, ch).unwrap_err();
        assert_eq!(&got, want, "{ch}");
        assert_eq!(got.code(), *code, "{ch}");
    }
    // The namespace's options are the ones returned.
    assert!(channel_options(&c, "news").unwrap().options.presence);
    assert!(channel_options(&c, "chat:x").unwrap().options.join_leave);
    assert!(!channel_options(&c, "chat:x").unwrap().options.presence);
    assert_eq!(
        channel_options(&c, "chat:x")
            .unwrap()
            .publication_data_format(),
        "json"
    );
    assert_eq!(
        channel_options(&c, "personal:x")
            .unwrap()
            .publication_data_format(),
        "binary"
    );
    // 32 bytes exactly is fine.
    assert!(channel_options(&c, &"x".repeat(32)).is_ok());
}

#[test]
fn user_limited_channels() {
    let c = channel_config();
    let r = channel_options(&c, "personal:dialog#42,43").unwrap();
    assert_eq!(r.allowed_users().collect::<Vec<_>>(), ["42", "43"]);
    assert!(r.user_allowed("42") && r.user_allowed("43"));
    assert!(!r.user_allowed("4") && !r.user_allowed("") && !r.user_allowed("42,43"));
    let r = channel_options(&c, "personal:#7").unwrap();
    assert_eq!(r.allowed_users().collect::<Vec<_>>(), ["7"]);
    let r = channel_options(&c, "personal:open").unwrap();
    assert!(!r.user_limited);
    assert!(r.user_allowed("anyone"));
    assert_eq!(r.allowed_users().count(), 0);

    // Custom boundaries; an empty separator means a single user.
    let mut c = c;
    c.channel.user_boundary = "@".into();
    c.channel.user_separator = String::new();
    c.channel.namespace_boundary = "/".into();
    let r = channel_options(&c, "personal/box@a,b").unwrap();
    assert_eq!(r.namespace, Some("personal"));
    assert!(r.user_limited);
    assert_eq!(r.allowed_users().collect::<Vec<_>>(), ["a,b"]);
    assert!(r.user_allowed("a,b") && !r.user_allowed("a"));
}

#[test]
fn development_defaults_serve_the_demo_channels() {
    let c = Config::development_default();
    c.validate().unwrap();
    for ch in ["chat:lobby", "dashboard:metrics", "news"] {
        let r = channel_options(&c, ch).unwrap_or_else(|e| panic!("{ch}: {e:?}"));
        assert!(r.options.allow_subscribe_for_anonymous, "{ch}");
        assert!(
            r.options.history_size > 0 && r.options.force_recovery,
            "{ch}"
        );
    }
}

#[test]
fn limits_section_defaults_loading_env_and_validation() {
    let d = Config::default();
    assert_eq!(d.limits.connections_per_ip, 1000);
    assert_eq!(
        (d.limits.connect_rate_per_ip, d.limits.connect_burst_per_ip),
        (10, 50)
    );
    assert_eq!(
        (d.limits.commands_per_second, d.limits.commands_burst),
        (100, 200)
    );
    assert_eq!(d.limits.command_flood_disconnect, 50);
    let dev = Config::development_default();
    assert_eq!(dev.limits.connections_per_ip, 0);
    assert_eq!(dev.limits.connect_rate_per_ip, 0);
    assert_eq!(dev.limits.commands_per_second, 100);

    let loaded = load_json(serde_json::json!({
        "limits": {"connections_per_ip": 5, "commands_per_second": 7, "commands_burst": 9},
        "client": {"connection_rate_limit": 30}
    }))
    .unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let l = &loaded.config.limits;
    assert_eq!(
        (
            l.connections_per_ip,
            l.commands_per_second,
            l.commands_burst
        ),
        (5, 7, 9)
    );
    assert_eq!(l.connect_rate_per_ip, 10, "unset keys keep their default");
    assert_eq!(loaded.config.client.connection_rate_limit, 30);

    let c = env(&[("WSHUB_LIMITS_CONNECT_RATE_PER_IP", "3")])
        .load_defaults()
        .unwrap()
        .config;
    assert_eq!(c.limits.connect_rate_per_ip, 3);

    // A typo is reported, not silently ignored.
    let w = load_json(serde_json::json!({"limits": {"connection_per_ip": 5}}))
        .unwrap()
        .warnings;
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].path, "limits.connection_per_ip");

    let errors = invalid(serde_json::json!({
        "limits": {"connect_burst_per_ip": 0, "commands_burst": 0}
    }));
    assert_eq!(
        paths(&errors),
        ["limits.connect_burst_per_ip", "limits.commands_burst"]
    );
    // A zero burst is fine when its rate is off.
    load_json(serde_json::json!({
        "limits": {"connect_rate_per_ip": 0, "connect_burst_per_ip": 0}
    }))
    .unwrap();
}

// ---- keys accepted but not implemented ----

#[test]
fn the_http_fallback_transports_read_their_v6_keys() {
    let c = load_json(serde_json::json!({
        "http_stream": {"enabled": true, "max_request_body_size": 1000},
        "sse": {"enabled": true, "handler_prefix": "/sse"},
        "uni_sse": {"enabled": true},
        "uni_http_stream": {"enabled": true},
        "uni_websocket": {"enabled": true, "join_push_messages": true},
        "long_poll": {"enabled": true, "poll_timeout": "10s"},
        "emulation": {"handler_prefix": "/emu"},
    }))
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = c.config;
    assert!(
        c.http_stream.enabled && c.sse.enabled && c.uni_sse.enabled && c.uni_http_stream.enabled
    );
    assert_eq!(c.http_stream.handler_prefix, "/connection/http_stream");
    assert_eq!(c.http_stream.max_request_body_size, 1000);
    assert_eq!(c.sse.handler_prefix, "/sse");
    assert_eq!(c.uni_sse.handler_prefix, "/connection/uni_sse");
    assert_eq!(
        c.uni_http_stream.handler_prefix,
        "/connection/uni_http_stream"
    );
    assert_eq!(c.emulation.handler_prefix, "/emu");
    assert_eq!(c.emulation.max_request_body_size, 65_536);
    assert!(c.uni_websocket.enabled && c.uni_websocket.join_push_messages);
    assert_eq!(c.uni_websocket.handler_prefix, "/connection/uni_websocket");
    assert!(c.long_poll.enabled);
    assert_eq!(c.long_poll.poll_timeout.as_std().as_secs(), 10);
    assert_eq!(c.long_poll.session_timeout.as_std().as_secs(), 15);
    let p = refused_paths(serde_json::json!({"sse": {"handler_prefix": "sse"}}));
    assert_eq!(p, ["sse.handler_prefix"]);
}

fn refused_paths(v: serde_json::Value) -> Vec<String> {
    let mut p: Vec<String> = invalid(v).into_iter().map(|e| e.path).collect();
    p.sort();
    p
}

#[test]
fn unimplemented_feature_sections_refuse_to_start_when_turned_on() {
    let text = serde_json::json!({
        "uni_grpc": {"enabled": true},
        "consumers": [{"name": "kafka", "enabled": true, "type": "kafka"}, {"name": "off", "enabled": false}],
        "client": {
            "allowed_delta_types": ["fossil"],
            "proxy": {"connect": {"enabled": true, "endpoint": "http://x"}, "refresh": {"enabled": false}},
            "rate_limit": {"client_command": {"enabled": true}},
        },
        "rpc": {"without_namespace": {"proxy_enabled": true}},
        "http_api": {"error_mode": "transport"},
        "pid_file": "/run/wshub.pid",
        "channel": {"namespaces": [{"name": "ns", "auto_cache_recovery": true}]},
    });
    let errors = invalid(text);
    let mut p: Vec<&str> = paths(&errors);
    p.sort();
    assert_eq!(
        p,
        [
            "channel.namespaces[ns].auto_cache_recovery",
            "client.allowed_delta_types",
            "client.proxy.connect.enabled",
            "client.rate_limit.client_command.enabled",
            "consumers[kafka].enabled",
            "http_api.error_mode",
            "pid_file",
            "rpc.without_namespace.proxy_enabled",
            "uni_grpc.enabled",
        ]
    );
    let wt = errors
        .iter()
        .find(|e| e.path == "uni_grpc.enabled")
        .unwrap();
    assert!(
        wt.message.contains("the unidirectional gRPC transport")
            && wt.message.contains("does not implement"),
        "{wt}"
    );
    // Off, or only tuned: warnings, the server starts.
    let loaded = load_json(serde_json::json!({
        "uni_grpc": {"port": 11000},
        "client": {"connect_code_to_unidirectional_disconnect": {"enabled": true}},
    }))
    .unwrap();
    let mut w: Vec<&str> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
    w.sort();
    assert_eq!(
        w,
        [
            "client.connect_code_to_unidirectional_disconnect",
            "uni_grpc"
        ]
    );
}

#[test]
fn accepted_keys_that_wshub_does_not_act_on_are_refused() {
    let on = serde_json::json!({
        "allowed_delta_types": ["fossil"],
        "delta_publish": true,
        "allow_tags_filter": true,
        "history_size": 10, "history_ttl": "60s",
        "force_recovery": true,
        "force_recovery_mode": "cache",
        "auto_cache_recover": true,
        "publication_data_format": "json_object",
    });
    let mut ns = on.clone();
    ns["name"] = "ns".into();
    let p = refused_paths(serde_json::json!({
        "channel": {"without_namespace": on, "namespaces": [ns], "publication_data_format": "json"},
    }));
    let mut want = vec!["channel.publication_data_format".to_owned()];
    for prefix in ["channel.without_namespace", "channel.namespaces[ns]"] {
        for key in [
            "allow_tags_filter",
            "allowed_delta_types",
            "auto_cache_recover",
            "delta_publish",
            "force_recovery_mode",
            "publication_data_format",
        ] {
            want.push(format!("{prefix}.{key}"));
        }
    }
    want.sort();
    assert_eq!(p, want);

    assert_eq!(
        refused_paths(serde_json::json!({
            "client": {
                "user_id_http_header": "X-User-Id",
                "subscribe_to_user_personal_channel": {"enabled": true, "single_connection": true},
            },
            "http_server": {
                "internal_port": "9001",
                "internal_address": "127.0.0.1",
                "internal_tls": {"enabled": true, "cert_pem": "c", "key_pem": "k"},
                "tls_external": true,
                "tls": {"enabled": true, "cert_pem": "c", "key_pem": "k", "client_ca_pem": "ca"},
            },
            "prometheus": {"instrument_http_handlers": true},
            "log": {"file": "/var/log/wshub.log"},
        })),
        [
            "client.subscribe_to_user_personal_channel.single_connection",
            "client.user_id_http_header",
            "http_server.internal_address",
            "http_server.internal_port",
            "http_server.internal_tls.enabled",
            "http_server.tls.client_ca_pem",
            "http_server.tls_external",
            "log.file",
            "prometheus.instrument_http_handlers",
        ]
    );
    // Redis and NATS options wshub cannot apply, where that broker is in
    // use (before, `serve` refused them only at start and `check-config`
    // said ok).
    assert_eq!(
        refused_paths(serde_json::json!({
            "engine": {"type": "redis", "redis": {
                "cluster_address": ["redis://a:7000"],
                "sentinel_address": ["a:26379"], "sentinel_master_name": "m",
                "tls": {"enabled": true},
            }},
        })),
        [
            "engine.redis.cluster_address",
            "engine.redis.sentinel_address",
            "engine.redis.tls.enabled",
        ]
    );
    assert_eq!(
        refused_paths(serde_json::json!({
            "broker": {"enabled": true, "type": "nats", "nats": {"tls": {"enabled": true}}},
        })),
        ["broker.nats.tls.enabled"]
    );
    // Not in use: nothing to refuse.
    load_json(serde_json::json!({"engine": {"redis": {"tls": {"enabled": true}}}})).unwrap();
}

#[test]
fn tuning_keys_wshub_does_not_apply_are_warnings() {
    let loaded = load_json(serde_json::json!({
        "client": {"channel_position_check_delay": "10s", "channel_position_max_time_lag": "5s"},
        "websocket": {
            "compression": true, "compression_level": 5, "compression_min_size": 128,
            "read_buffer_size": 4096, "write_buffer_size": 4096, "use_write_buffer_pool": true,
        },
        "http_api": {"external": true},
        "log": {"level": "debug"},
    }))
    .unwrap();
    let got: Vec<(WarningKind, &str)> = loaded
        .warnings
        .iter()
        .map(|w| (w.kind, w.path.as_str()))
        .collect();
    use WarningKind::Unsupported;
    assert_eq!(
        got,
        [
            (Unsupported, "client.channel_position_check_delay"),
            (Unsupported, "client.channel_position_max_time_lag"),
            (Unsupported, "websocket.compression_min_size"),
            (Unsupported, "websocket.compression_level"),
            (Unsupported, "websocket.read_buffer_size"),
            (Unsupported, "websocket.write_buffer_size"),
            (Unsupported, "websocket.use_write_buffer_pool"),
            (Unsupported, "http_api.external"),
            (Unsupported, "log.level"),
        ]
    );
    assert!(Loader::new().load_defaults().unwrap().warnings.is_empty());
    assert!(Loader::new()
        .load_development()
        .unwrap()
        .warnings
        .is_empty());
}

#[test]
fn http_api_limits_load_and_zero_is_refused() {
    let c = load_json(serde_json::json!({ "http_api": {
        "max_batch_commands": 5,
        "max_broadcast_channels": 7,
        "max_in_flight_body_size": 1000,
        "request_body_timeout": "2s",
        "response_write_timeout": "1s",
        "cluster_request_timeout": "500ms",
    }}))
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let a = &c.config.http_api;
    assert_eq!((a.max_batch_commands, a.max_broadcast_channels), (5, 7));
    assert_eq!(a.max_in_flight_body_size, 1000);
    assert_eq!(a.request_body_timeout.as_std().as_millis(), 2000);
    assert_eq!(a.response_write_timeout.as_std().as_millis(), 1000);
    assert_eq!(a.cluster_request_timeout.as_std().as_millis(), 500);
    let d = HttpApiConfig::default();
    assert_eq!(
        (d.max_batch_commands, d.max_broadcast_channels),
        (10_000, 10_000)
    );
    let errors = invalid(serde_json::json!({ "http_api": {
        "max_batch_commands": 0,
        "cluster_request_timeout": "0s",
    }}));
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"http_api.max_batch_commands"), "{paths:?}");
    assert!(
        paths.contains(&"http_api.cluster_request_timeout"),
        "{paths:?}"
    );
}

#[test]
fn http3_needs_tls_and_webtransport_needs_http3() {
    let errors = invalid(serde_json::json!({
        "http_server": {"http3": {"enabled": true}},
        "webtransport": {"enabled": true},
    }));
    assert_eq!(paths(&errors), ["http_server.http3.enabled"]);
    assert!(errors[0].message.contains("requires TLS"), "{}", errors[0]);
    let errors = invalid(serde_json::json!({"webtransport": {"enabled": true}}));
    assert_eq!(paths(&errors), ["webtransport.enabled"]);
    let loaded = load_json(serde_json::json!({
        "http_server": {"tls": {"enabled": true, "cert_pem": "c", "key_pem": "k"}, "http3": {"enabled": true}},
        "webtransport": {"enabled": true, "handler_prefix": "/wt", "message_size_limit": 1024},
    }))
    .unwrap();
    assert!(loaded.config.http_server.http3.enabled);
    assert_eq!(loaded.config.webtransport.handler_prefix, "/wt");
    assert_eq!(loaded.config.webtransport.message_size_limit, 1024);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn pusher_apps_are_checked_and_unimplemented_parts_refused() {
    let loaded = load_json(serde_json::json!({
        "pusher": {"enabled": true, "apps": [
            {"app_id": "1", "key": "k1", "secret": "s1", "enable_client_messages": true},
            {"app_id": "2", "key": "k2", "secret": "s2", "max_connections": 5}
        ]}
    }))
    .unwrap();
    let p = &loaded.config.pusher;
    assert!(p.enabled);
    assert_eq!(p.apps.len(), 2);
    assert!(p.apps[0].enable_client_messages);
    assert_eq!(p.apps[0].max_client_events_per_second, 10);
    assert_eq!(p.apps[1].max_connections, 5);
    assert_eq!(p.activity_timeout.as_std().as_secs(), 120);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    let errors = invalid(serde_json::json!({"pusher": {"enabled": true}}));
    assert_eq!(paths(&errors), ["pusher.apps"]);
    let errors = invalid(serde_json::json!({
        "pusher": {"enabled": true, "apps": [
            {"app_id": "1", "key": "k", "secret": "s", "enable_user_authentication": true,
             "webhooks": [{"url": "http://127.0.0.1:1/hook"}]},
            {"app_id": "1", "key": "k", "secret": ""},
            {"app_id": "a/b", "key": "", "secret": "s"}
        ]}
    }));
    assert_eq!(
        paths(&errors),
        [
            "pusher.apps[0].enable_user_authentication",
            "pusher.apps[0].webhooks",
            "pusher.apps[1].app_id",
            "pusher.apps[1].key",
            "pusher.apps[1].secret",
            "pusher.apps[2].app_id",
            "pusher.apps[2].key",
        ]
    );
    assert!(
        errors[0].message.contains("does not implement"),
        "{}",
        errors[0]
    );
    // Off, nothing is checked.
    load_json(serde_json::json!({"pusher": {"apps": [{"app_id": ""}]}})).unwrap();
}

#[test]
fn one_pusher_app_from_env_vars() {
    let loaded = env(&[
        ("WSHUB_PUSHER_ENABLED", "true"),
        ("WSHUB_PUSHER_APP_ID", "app-1"),
        ("WSHUB_PUSHER_APP_KEY", "key-1"),
        ("WSHUB_PUSHER_APP_SECRET", "secret-1"),
        ("WSHUB_PUSHER_APP_ENABLE_CLIENT_MESSAGES", "true"),
    ])
    .load_str("{}", Format::Json)
    .unwrap();
    let p = &loaded.config.pusher;
    assert!(p.enabled);
    assert_eq!(p.apps.len(), 1);
    assert_eq!(p.apps[0].app_id, "app-1");
    assert_eq!(p.apps[0].key, "key-1");
    assert_eq!(p.apps[0].secret, "secret-1");
    assert!(p.apps[0].enable_client_messages);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // Over a file's first app.
    let loaded = env(&[("WSHUB_PUSHER_APP_SECRET", "from-env")])
        .load_str(
            r#"{"pusher": {"enabled": true, "apps": [{"app_id": "1", "key": "k", "secret": "s"}]}}"#,
            Format::Json,
        )
        .unwrap();
    assert_eq!(loaded.config.pusher.apps[0].secret, "from-env");
    assert_eq!(loaded.config.pusher.apps[0].key, "k");
}
