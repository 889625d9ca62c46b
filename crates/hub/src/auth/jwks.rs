//! JSON Web Key Sets: fetching (behind [`JwksFetcher`]) and a cache by `kid`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::time::Instant;

use super::keys::{parse_alg, Curve, Family};
use super::AuthError;

/// Why a JWKS document could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JwksError(pub String);

/// Gets a JWKS document: the key source of a [`JwksCache`].
///
/// The hub makes no network calls itself: the HTTP(S) implementation is
/// `wshub_server::HttpJwksFetcher` (over `reqwest`), given to the node at
/// start (`Node::start_with_jwks`); tests and embedders may supply their own.
/// An implementation bounds what one fetch may cost: a timeout, and a limit
/// on the body size.
#[async_trait]
pub trait JwksFetcher: Send + Sync + fmt::Debug {
    /// GET `url` and return the body of a 200 response.
    ///
    /// Cancel safety: dropping the future abandons the request; nothing is
    /// cached from it.
    async fn fetch(&self, url: &str) -> Result<Bytes, JwksError>;
}

/// Cache tuning. Defaults: keys are fresh for 1 hour (Centrifugo's value);
/// an unknown `kid` triggers a refetch at most once every 10 seconds, so
/// tokens with random `kid`s cannot turn the server into a JWKS flooder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksOptions {
    /// How long a fetched key set is used before it is fetched again.
    pub ttl: Duration,
    /// Minimum time between two fetches (the rate limit on refetches for
    /// unknown `kid`s and on retries after a failure).
    pub min_refetch_interval: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            ttl: Duration::from_secs(3600),
            min_refetch_interval: Duration::from_secs(10),
        }
    }
}

impl JwksOptions {
    /// Set [`JwksOptions::ttl`].
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Set [`JwksOptions::min_refetch_interval`].
    pub fn min_refetch_interval(mut self, d: Duration) -> Self {
        self.min_refetch_interval = d;
        self
    }
}

/// One usable signing key from a JWKS.
pub(crate) struct Jwk {
    pub family: Family,
    /// The key's `alg`, when the JWKS names one.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Arc<Jwk>>,
    fetched_at: Option<Instant>,
}

/// A JWKS endpoint with its keys cached by `kid`.
///
/// A key is looked up in the cache; when missing, or when the set is older
/// than the TTL, the set is fetched again, at most once per
/// `min_refetch_interval`, by one task at a time (others wait for its result).
/// A fetch replaces the whole set, so keys removed from the JWKS stop working.
/// If a fetch fails, keys already known stay usable.
pub struct JwksCache {
    url: String,
    fetcher: Arc<dyn JwksFetcher>,
    options: JwksOptions,
    state: RwLock<State>,
    last_fetch: Mutex<Option<Instant>>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.url)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache for `url`, empty until the first lookup (or [`JwksCache::refresh`]).
    pub fn new(
        url: impl Into<String>,
        fetcher: Arc<dyn JwksFetcher>,
        options: JwksOptions,
    ) -> Self {
        JwksCache {
            url: url.into(),
            fetcher,
            options,
            state: RwLock::new(State::default()),
            last_fetch: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `kid`s of the keys in the cache.
    pub fn kids(&self) -> Vec<String> {
        let mut v: Vec<String> = read(&self.state).keys.keys().cloned().collect();
        v.sort();
        v
    }

    /// Fetch the set now (for example at startup, to fail early), ignoring
    /// the rate limit. Returns the number of usable keys.
    ///
    /// Cancel safety: cancel-safe; a cancelled refresh changes nothing.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _guard = self.fetch_lock.lock().await;
        self.fetch_now().await
    }

    async fn fetch_now(&self) -> Result<usize, JwksError> {
        let result = self.fetcher.fetch(&self.url).await;
        let now = Instant::now();
        *lock(&self.last_fetch) = Some(now);
        let keys = parse_jwks(&result?)?;
        let n = keys.len();
        let mut st = write(&self.state);
        st.keys = keys;
        st.fetched_at = Some(now);
        Ok(n)
    }

    fn cached(&self, kid: &str, now: Instant) -> (Option<Arc<Jwk>>, bool) {
        let st = read(&self.state);
        let fresh = st.fetched_at.is_some_and(|t| now < t + self.options.ttl);
        (st.keys.get(kid).cloned(), fresh)
    }

    /// The key with this `kid`.
    ///
    /// Cancel safety: cancel-safe; a lookup cancelled during a fetch leaves
    /// the cache as it was, and the next lookup fetches.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<Jwk>, AuthError> {
        if let (Some(k), true) = self.cached(kid, Instant::now()) {
            return Ok(k);
        }
        let _guard = self.fetch_lock.lock().await;
        // Another task may have fetched while this one waited.
        let now = Instant::now();
        let (known, fresh) = self.cached(kid, now);
        if let (Some(k), true) = (&known, fresh) {
            return Ok(k.clone());
        }
        let recently =
            lock(&self.last_fetch).is_some_and(|t| now < t + self.options.min_refetch_interval);
        if recently {
            return known.ok_or_else(|| AuthError::UnknownKey {
                kid: kid.to_owned(),
            });
        }
        match self.fetch_now().await {
            Ok(_) => self
                .cached(kid, Instant::now())
                .0
                .ok_or_else(|| AuthError::UnknownKey {
                    kid: kid.to_owned(),
                }),
            Err(e) => match known {
                Some(k) => {
                    tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; using the cached key");
                    Ok(k)
                }
                None => Err(AuthError::KeysUnavailable {
                    reason: format!("JWKS {}: {e}", self.url),
                }),
            },
        }
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

/// Parse a JWKS document. Keys that are not for signatures (`use` other than
/// `sig`), have no `kid`, are symmetric (`oct`), or cannot be read are
/// skipped; only RSA, EC (P-256, P-384) and OKP (Ed25519) keys are kept.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<Jwk>>, JwksError> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| JwksError(format!("not JSON: {e}")))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| JwksError("no \"keys\" array".into()))?;
    let mut out = HashMap::new();
    for k in keys {
        let s = |name: &str| k.get(name).and_then(Value::as_str);
        let Some(kid) = s("kid") else { continue };
        if s("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let alg = match s("alg") {
            None => None,
            Some(a) => match parse_alg(a) {
                Ok((alg, _)) => Some(alg),
                Err(_) => continue,
            },
        };
        let parsed = match (s("kty"), s("crv")) {
            (Some("RSA"), _) => match (s("n"), s("e")) {
                (Some(n), Some(e)) => DecodingKey::from_rsa_components(n, e)
                    .ok()
                    .map(|key| (Family::Rsa, key)),
                _ => None,
            },
            (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => match (s("x"), s("y")) {
                (Some(x), Some(y)) => DecodingKey::from_ec_components(x, y).ok().map(|key| {
                    let curve = if crv == "P-256" {
                        Curve::P256
                    } else {
                        Curve::P384
                    };
                    (Family::Ec(curve), key)
                }),
                _ => None,
            },
            (Some("OKP"), Some("Ed25519")) => s("x")
                .and_then(|x| DecodingKey::from_ed_components(x).ok())
                .map(|key| (Family::Ed, key)),
            _ => None,
        };
        let Some((family, key)) = parsed else {
            tracing::debug!(kid, "JWKS key skipped: unsupported or malformed");
            continue;
        };
        // A key whose `alg` belongs to another family is unusable.
        if let Some(a) = alg {
            if parse_alg(alg_name(a)).map(|(_, f)| f) != Ok(family) {
                continue;
            }
        }
        out.entry(kid.to_owned())
            .or_insert_with(|| Arc::new(Jwk { family, alg, key }));
    }
    Ok(out)
}

pub(crate) fn alg_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
    }
}
