//! Connection and subscription tokens (JWT), with Centrifugo v6 semantics.
//!
//! A client proves who it is with a **connection token** (claims `sub`,
//! `exp`, `iat`, `jti`, `aud`, `iss`, `info`/`b64info`, `channels`, `subs`,
//! `meta`, `expire_at`) and may be allowed into a channel with a
//! **subscription token** (`sub`, `channel`, `client`, `exp`, `expire_at`,
//! `info`/`b64info`, `data`/`b64data`, `override`). [`TokenVerifier`] checks
//! both against the keys of `client.token` (or `client.subscription_token`):
//! HMAC, RSA and ECDSA keys, or a JWKS endpoint cached by `kid`
//! ([`JwksCache`], fetched through [`JwksFetcher`]).
//!
//! What this module must not know: sockets or HTTP (a JWKS fetch is behind
//! [`JwksFetcher`], implemented outside the hub), sessions, or how the
//! gateway answers; [`AuthError`]
//! documents the Centrifugo codes the gateway maps each error to.
//!
//! ```
//! use wshub_hub::auth::{generate_subscription_token, AuthError, Verifiers};
//! use wshub_config::Config;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let mut cfg = Config::default();
//! cfg.client.token.hmac_secret_key = "secret".into();
//! let v = Verifiers::from_config(&cfg).unwrap();
//! let t = generate_subscription_token("secret", "42", "$news", None, None).unwrap();
//! let ok = v.subscribe.verify_subscribe(&t, "$news", "42", "client-1").await.unwrap();
//! assert_eq!(ok.channel, "$news");
//! let other = v.subscribe.verify_subscribe(&t, "$sport", "42", "client-1").await;
//! assert!(matches!(other, Err(AuthError::ChannelMismatch { .. })));
//! # });
//! ```

mod claims;
mod error;
mod generate;
mod jwks;
mod keys;
mod verifier;

#[cfg(test)]
mod tests;

pub use claims::{ConnectClaims, SubscribeClaims, SubscribeOptions, SubscribeOverride};
pub use error::{AuthError, GenerateError, VerifierError};
pub use generate::{generate_connection_token, generate_subscription_token};
pub use jwks::{JwksCache, JwksError, JwksFetcher, JwksOptions};
pub use verifier::{check_token_keys, TokenVerifier, Verifiers};
