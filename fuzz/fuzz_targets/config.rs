//! Configuration text (JSON, YAML or TOML) plus environment overrides
//! through the loader, which also validates; then the token verifiers that
//! the server builds from a loaded configuration (with their keys parsed).
//!
//! Input: one format byte, the text, and optionally after a NUL byte
//! `NAME=VALUE` lines that become `WSHUB_NAME` environment variables.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use wshub_config::{Format, Loader};
use wshub_hub::auth::{check_token_keys, JwksError, JwksFetcher, JwksOptions, TokenVerifier};

/// Building a verifier fetches nothing (the first token does), so a
/// fetcher that never answers is enough.
#[derive(Debug)]
struct NoFetch;

#[async_trait::async_trait]
impl JwksFetcher for NoFetch {
    async fn fetch(&self, _url: &str) -> Result<bytes::Bytes, JwksError> {
        Err(JwksError("not fetched while fuzzing".into()))
    }
}

fn fetcher() -> Arc<dyn JwksFetcher> {
    Arc::new(NoFetch)
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else { return };
    let Ok(input) = std::str::from_utf8(rest) else { return };
    let (text, env) = input.split_once('\0').unwrap_or((input, ""));
    let format = match knobs % 3 {
        0 => Format::Json,
        1 => Format::Yaml,
        _ => Format::Toml,
    };
    let env = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (format!("WSHUB_{k}"), v.to_owned()));
    // As `wshub serve` loads: public keys checked by the verifier's check.
    let loader = Loader::new().token_key_check(check_token_keys).env_vars(env);
    let Ok(loaded) = loader.load_str(text, format) else { return };
    let _ = loaded.config.describe();
    let _ = loaded.config.validate();
    // What `Verifiers::from_config` builds, with the shared fetcher.
    let client = &loaded.config.client;
    let _ = TokenVerifier::with_jwks_fetcher(&client.token, fetcher(), JwksOptions::default());
    if client.subscription_token.enabled {
        let sub = &client.subscription_token.token;
        let _ = TokenVerifier::with_jwks_fetcher(sub, fetcher(), JwksOptions::default());
    }
});
