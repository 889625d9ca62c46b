//! The token verifier.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use regex::Regex;
use serde::Deserialize;

use super::claims::{effective_expiry, raw_or_b64, NumericDate, RawClaims};
use super::jwks::{alg_name, JwksCache, JwksFetcher, JwksOptions};
use super::keys::{ec_public_key, parse_alg, rsa_public_key, Curve, Family};
use super::{AuthError, ConnectClaims, SubscribeClaims, VerifierError};
use wshub_config::{Config, TokenConfig};

/// Verifies connection and subscription JWTs with Centrifugo v6 semantics.
///
/// Keys come from a [`TokenConfig`] (`client.token`): an HMAC secret
/// (HS256/384/512), an RSA public key (RS256/384/512), an ECDSA public key
/// (ES256 for P-256, ES384 for P-384) — or, when `jwks_public_endpoint` is
/// set, only the keys of that JWKS (RSA, EC, Ed25519 by `kid`), as in
/// Centrifugo. A token is checked only against a key of its algorithm's
/// family: `alg: none` and algorithm confusion (an HS256 token "signed" with
/// an RSA public key) are refused.
///
/// ```
/// use wshub_hub::auth::{generate_connection_token, TokenVerifier};
/// use wshub_config::Config;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut cfg = Config::default();
/// cfg.client.token.hmac_secret_key = "secret".into();
/// let verifier = TokenVerifier::new(&cfg.client.token).unwrap();
/// let token = generate_connection_token("secret", "42", None, None, &[]).unwrap();
/// let claims = verifier.verify_connect(&token).await.unwrap();
/// assert_eq!(claims.user, "42");
/// # });
/// ```
pub struct TokenVerifier {
    keys: Keys,
    audience: Option<String>,
    audience_re: Option<Regex>,
    issuer: Option<String>,
    issuer_re: Option<Regex>,
    user_id_claim: Option<String>,
    skip_signature: bool,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.keys {
            Keys::Static(s) => format!(
                "static(hmac: {}, rsa: {}, ecdsa: {:?})",
                s.hmac.is_some(),
                s.rsa.is_some(),
                s.ec.as_ref().map(|(_, c)| *c)
            ),
            Keys::Jwks(c) => format!("jwks({})", c.url()),
        };
        f.debug_struct("TokenVerifier")
            .field("keys", &mode)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("skip_signature", &self.skip_signature)
            .finish_non_exhaustive()
    }
}

enum Keys {
    Static(Box<StaticKeys>),
    Jwks(Arc<JwksCache>),
}

struct StaticKeys {
    hmac: Option<DecodingKey>,
    hmac_previous: Option<DecodingKey>,
    /// Unix seconds; 0 = no limit.
    hmac_previous_valid_until: i64,
    rsa: Option<DecodingKey>,
    ec: Option<(DecodingKey, Curve)>,
}

/// The connection and subscription verifiers of a configuration: the same
/// one unless `client.subscription_token.enabled`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Verifiers {
    /// For connection tokens (`client.token`).
    pub connect: Arc<TokenVerifier>,
    /// For subscription tokens (`client.subscription_token` when enabled).
    pub subscribe: Arc<TokenVerifier>,
}

impl Verifiers {
    /// Build both from a configuration, with
    /// `client.insecure_skip_token_signature_verify` applied. A
    /// configuration with a `jwks_public_endpoint` needs a fetcher: see
    /// [`Verifiers::from_config_with`].
    pub fn from_config(config: &Config) -> Result<Verifiers, VerifierError> {
        Self::from_config_with(config, None)
    }

    /// [`Verifiers::from_config`], with JWKS endpoints fetched by `jwks`
    /// (cached with [`JwksOptions::default`]). Without a fetcher, a
    /// configured endpoint is an error (key `jwks_public_endpoint`).
    pub fn from_config_with(
        config: &Config,
        jwks: Option<Arc<dyn JwksFetcher>>,
    ) -> Result<Verifiers, VerifierError> {
        let skip = config.client.insecure_skip_token_signature_verify;
        let verifier = |t: &TokenConfig| {
            TokenVerifier::build(t, jwks.clone(), JwksOptions::default())
                .map(|v| Arc::new(v.skip_signature_verify(skip)))
        };
        let connect = verifier(&config.client.token)?;
        let subscribe = if config.client.subscription_token.enabled {
            verifier(&config.client.subscription_token.token)?
        } else {
            connect.clone()
        };
        Ok(Verifiers { connect, subscribe })
    }
}

/// Check the public keys of a token config (`rsa_public_key`,
/// `ecdsa_public_key`) the way [`TokenVerifier::new`] reads them: the
/// [`wshub_config::TokenKeyCheck`] that config validation (and
/// `wshub check-config`) is given.
///
/// ```
/// use wshub_config::{Format, Loader};
/// let text = r#"{"client": {"token": {"rsa_public_key": "junk"}}}"#;
/// assert!(Loader::new().load_str(text, Format::Json).is_ok()); // not parsed
/// let checked = Loader::new().token_key_check(wshub_hub::auth::check_token_keys);
/// assert!(checked.load_str(text, Format::Json).is_err());
/// ```
pub fn check_token_keys(t: &TokenConfig) -> Result<(), (&'static str, String)> {
    if !t.rsa_public_key.is_empty() {
        rsa_public_key(&t.rsa_public_key).map_err(|m| ("rsa_public_key", m))?;
    }
    if !t.ecdsa_public_key.is_empty() {
        ec_public_key(&t.ecdsa_public_key).map_err(|m| ("ecdsa_public_key", m))?;
    }
    Ok(())
}

fn compile(re: &str, key: &'static str) -> Result<Option<Regex>, VerifierError> {
    if re.is_empty() {
        return Ok(None);
    }
    Regex::new(re).map(Some).map_err(|e| VerifierError {
        key,
        message: format!("invalid regex: {e}"),
    })
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Lenient base64url: JWTs have no padding, but accept it.
const B64URL: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

struct Checked {
    claims: RawClaims,
    /// The payload, kept for `user_id_claim`.
    payload: Vec<u8>,
}

impl TokenVerifier {
    /// A verifier for these settings, with static keys only: a
    /// `jwks_public_endpoint` is an error here (use
    /// [`TokenVerifier::with_jwks_fetcher`]).
    pub fn new(cfg: &TokenConfig) -> Result<Self, VerifierError> {
        Self::build(cfg, None, JwksOptions::default())
    }

    /// A verifier that fetches the JWKS (if configured) with `fetcher`.
    pub fn with_jwks_fetcher(
        cfg: &TokenConfig,
        fetcher: Arc<dyn JwksFetcher>,
        options: JwksOptions,
    ) -> Result<Self, VerifierError> {
        Self::build(cfg, Some(fetcher), options)
    }

    fn build(
        cfg: &TokenConfig,
        fetcher: Option<Arc<dyn JwksFetcher>>,
        options: JwksOptions,
    ) -> Result<Self, VerifierError> {
        let keys = if !cfg.jwks_public_endpoint.is_empty() {
            wshub_config::check_jwks_endpoint(&cfg.jwks_public_endpoint).map_err(|message| {
                VerifierError {
                    key: "jwks_public_endpoint",
                    message,
                }
            })?;
            let fetcher = fetcher.ok_or_else(|| VerifierError {
                key: "jwks_public_endpoint",
                message: "set, but no JWKS fetcher was given to the verifier".into(),
            })?;
            Keys::Jwks(Arc::new(JwksCache::new(
                cfg.jwks_public_endpoint.clone(),
                fetcher,
                options,
            )))
        } else {
            let rsa = if cfg.rsa_public_key.is_empty() {
                None
            } else {
                Some(
                    rsa_public_key(&cfg.rsa_public_key).map_err(|message| VerifierError {
                        key: "rsa_public_key",
                        message,
                    })?,
                )
            };
            let ec = if cfg.ecdsa_public_key.is_empty() {
                None
            } else {
                Some(
                    ec_public_key(&cfg.ecdsa_public_key).map_err(|message| VerifierError {
                        key: "ecdsa_public_key",
                        message,
                    })?,
                )
            };
            let secret = |s: &str| (!s.is_empty()).then(|| DecodingKey::from_secret(s.as_bytes()));
            Keys::Static(Box::new(StaticKeys {
                hmac: secret(&cfg.hmac_secret_key),
                hmac_previous: secret(&cfg.hmac_previous_secret_key),
                hmac_previous_valid_until: cfg.hmac_previous_secret_key_valid_until,
                rsa,
                ec,
            }))
        };
        Ok(TokenVerifier {
            keys,
            audience: non_empty(&cfg.audience),
            audience_re: compile(&cfg.audience_regex, "audience_regex")?,
            issuer: non_empty(&cfg.issuer),
            issuer_re: compile(&cfg.issuer_regex, "issuer_regex")?,
            user_id_claim: non_empty(&cfg.user_id_claim),
            skip_signature: false,
        })
    }

    /// Accept tokens without checking signatures
    /// (`client.insecure_skip_token_signature_verify`). Development only:
    /// anyone can then forge any user.
    pub fn skip_signature_verify(mut self, skip: bool) -> Self {
        self.skip_signature = skip;
        self
    }

    /// The JWKS cache, when keys come from a JWKS endpoint.
    pub fn jwks(&self) -> Option<&Arc<JwksCache>> {
        match &self.keys {
            Keys::Jwks(c) => Some(c),
            Keys::Static(_) => None,
        }
    }

    /// Verify a connection token, now.
    ///
    /// Cancel safety: cancel-safe (see [`JwksCache`]).
    pub async fn verify_connect(&self, token: &str) -> Result<ConnectClaims, AuthError> {
        self.verify_connect_at(token, now_unix()).await
    }

    /// Verify a connection token at `now` (Unix seconds).
    ///
    /// Cancel safety: cancel-safe.
    pub async fn verify_connect_at(
        &self,
        token: &str,
        now: i64,
    ) -> Result<ConnectClaims, AuthError> {
        let Checked { claims, payload } = self.check(token, now).await?;
        if claims.channel.as_deref().is_some_and(|c| !c.is_empty()) {
            return Err(AuthError::invalid(
                "a connection token must not have a channel claim (only subscription tokens do)",
            ));
        }
        let user = self.user_id(&claims, &payload)?;
        let exp = effective_expiry(&claims);
        let mut subs = std::collections::BTreeMap::new();
        for (ch, o) in claims.subs.unwrap_or_default() {
            subs.insert(ch, o.into_options()?);
        }
        Ok(ConnectClaims {
            user,
            exp,
            info: raw_or_b64(claims.info, claims.b64info, "b64info")?,
            channels: claims.channels.unwrap_or_default(),
            subs,
            meta: claims
                .meta
                .map(|m| bytes::Bytes::copy_from_slice(m.get().as_bytes())),
            iat: claims.iat.map(|NumericDate(t)| t),
            jti: claims.jti,
        })
    }

    /// Verify a subscription token for `channel`, presented by connection
    /// `client` of `user`: the token's `channel` and `sub` must match, and its
    /// `client` claim too when it has one.
    ///
    /// Cancel safety: cancel-safe.
    pub async fn verify_subscribe(
        &self,
        token: &str,
        channel: &str,
        user: &str,
        client: &str,
    ) -> Result<SubscribeClaims, AuthError> {
        self.verify_subscribe_at(token, channel, user, client, now_unix())
            .await
    }

    /// [`TokenVerifier::verify_subscribe`] at `now` (Unix seconds).
    ///
    /// Cancel safety: cancel-safe.
    pub async fn verify_subscribe_at(
        &self,
        token: &str,
        channel: &str,
        user: &str,
        client: &str,
        now: i64,
    ) -> Result<SubscribeClaims, AuthError> {
        let Checked {
            mut claims,
            payload,
        } = self.check(token, now).await?;
        let token_channel = match claims.channel.take() {
            Some(c) if !c.is_empty() => c,
            _ => {
                return Err(AuthError::invalid(
                    "a subscription token needs a channel claim",
                ))
            }
        };
        let token_user = self.user_id(&claims, &payload)?;
        if token_channel != channel {
            return Err(AuthError::ChannelMismatch {
                token_channel,
                channel: channel.to_owned(),
            });
        }
        if token_user != user {
            return Err(AuthError::UserMismatch {
                token_user,
                user: user.to_owned(),
            });
        }
        let token_client = claims.client.take().filter(|c| !c.is_empty());
        if token_client.as_deref().is_some_and(|c| c != client) {
            return Err(AuthError::ClientMismatch);
        }
        let exp = effective_expiry(&claims);
        let options = super::claims::RawSubscribeOptions {
            info: claims.info,
            b64info: claims.b64info,
            data: claims.data,
            b64data: claims.b64data,
            overrides: claims.overrides,
        }
        .into_options()?;
        Ok(SubscribeClaims {
            user: token_user,
            channel: token_channel,
            client: token_client,
            exp,
            options,
            iat: claims.iat.map(|NumericDate(t)| t),
            jti: claims.jti,
        })
    }

    fn user_id(&self, claims: &RawClaims, payload: &[u8]) -> Result<String, AuthError> {
        let Some(name) = &self.user_id_claim else {
            return Ok(claims.sub.clone().unwrap_or_default());
        };
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(payload)
            .map_err(|e| AuthError::invalid(format!("claims: {e}")))?;
        Ok(match map.get(name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        })
    }

    /// Header, signature, audience/issuer, time: everything both kinds share.
    async fn check(&self, token: &str, now: i64) -> Result<Checked, AuthError> {
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::invalid(
                "not a JWT (expected three dot-separated parts)",
            ));
        };
        let header_bytes = B64URL
            .decode(h64)
            .map_err(|e| AuthError::invalid(format!("header is not base64url: {e}")))?;
        let header: Header = serde_json::from_slice(&header_bytes)
            .map_err(|e| AuthError::invalid(format!("header: {e}")))?;
        let (alg, family) = parse_alg(&header.alg)?;
        let message = &token[..h64.len() + 1 + p64.len()];
        if !self.skip_signature {
            self.check_signature(alg, family, header.kid.as_deref(), sig, message, now)
                .await?;
        }
        let payload = B64URL
            .decode(p64)
            .map_err(|e| AuthError::invalid(format!("payload is not base64url: {e}")))?;
        let claims: RawClaims = serde_json::from_slice(&payload)
            .map_err(|e| AuthError::invalid(format!("claims: {e}")))?;

        let aud: &[String] = claims.aud.as_ref().map(|a| a.0.as_slice()).unwrap_or(&[]);
        if let Some(want) = &self.audience {
            if !aud.iter().any(|a| a == want) {
                return Err(AuthError::invalid("audience mismatch"));
            }
        }
        if let Some(re) = &self.audience_re {
            if !aud.iter().any(|a| re.is_match(a)) {
                return Err(AuthError::invalid("audience does not match audience_regex"));
            }
        }
        let iss = claims.iss.as_deref().unwrap_or("");
        if let Some(want) = &self.issuer {
            if iss != want {
                return Err(AuthError::invalid("issuer mismatch"));
            }
        }
        if let Some(re) = &self.issuer_re {
            if !re.is_match(iss) {
                return Err(AuthError::invalid("issuer does not match issuer_regex"));
            }
        }
        if claims.exp.is_some_and(|NumericDate(exp)| now >= exp) {
            return Err(AuthError::Expired);
        }
        if claims.nbf.is_some_and(|NumericDate(nbf)| now < nbf) {
            return Err(AuthError::Expired);
        }
        Ok(Checked { claims, payload })
    }

    async fn check_signature(
        &self,
        alg: Algorithm,
        family: Family,
        kid: Option<&str>,
        sig: &str,
        message: &str,
        now: i64,
    ) -> Result<(), AuthError> {
        let bad = |reason| AuthError::BadAlgorithm {
            alg: alg_name(alg).to_owned(),
            reason,
        };
        let verify = |key: &DecodingKey| {
            jsonwebtoken::crypto::verify(sig, message.as_bytes(), key, alg).unwrap_or(false)
        };
        let ok = match &self.keys {
            Keys::Static(k) => match family {
                Family::Hmac => {
                    if k.hmac.is_none() && k.hmac_previous.is_none() {
                        return Err(bad("no hmac_secret_key is configured"));
                    }
                    k.hmac.as_ref().is_some_and(verify)
                        || (k.hmac_previous.as_ref().is_some_and(verify)
                            && (k.hmac_previous_valid_until == 0
                                || now <= k.hmac_previous_valid_until))
                }
                Family::Rsa => verify(
                    k.rsa
                        .as_ref()
                        .ok_or_else(|| bad("no rsa_public_key is configured"))?,
                ),
                Family::Ec(curve) => {
                    let (key, have) =
                        k.ec.as_ref()
                            .ok_or_else(|| bad("no ecdsa_public_key is configured"))?;
                    if *have != curve {
                        return Err(bad("the configured ECDSA key is on another curve"));
                    }
                    verify(key)
                }
                Family::Ed => return Err(bad("EdDSA tokens are only accepted with a JWKS")),
            },
            Keys::Jwks(cache) => {
                if family == Family::Hmac {
                    return Err(bad(
                        "HMAC tokens are not accepted when a JWKS is configured",
                    ));
                }
                let kid = kid.filter(|k| !k.is_empty()).ok_or_else(|| {
                    AuthError::invalid("no kid header (needed to pick a JWKS key)")
                })?;
                let jwk = cache.key(kid).await?;
                if jwk.family != family {
                    return Err(bad("the JWKS key with this kid is of another type"));
                }
                if jwk.alg.is_some_and(|a| a != alg) {
                    return Err(bad("the JWKS key with this kid is for another algorithm"));
                }
                verify(&jwk.key)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::invalid("bad signature"))
        }
    }
}
