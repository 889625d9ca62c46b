//! Tests of token verification: every algorithm family, expiry, `alg: none`,
//! algorithm confusion, wrong keys, subscription checks, audience/issuer,
//! claims decoding, and the JWKS cache (with a fake fetcher; the HTTP
//! fetcher is tested with a real local server in `wshub-server`). Keys in `testdata/` are throwaway test keys made with openssl.

// Configs are built the way code outside this crate must build them
// (`#[non_exhaustive]` structs: default, then assign fields).
#![allow(clippy::field_reassign_with_default)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use wshub_config::{Config, TokenConfig};

const RSA_PRIV: &str = include_str!("testdata/rsa_private.pem");
const RSA_PUB: &str = include_str!("testdata/rsa_public.pem");
const RSA2_PRIV: &str = include_str!("testdata/rsa2_private.pem");
const EC256_PRIV: &str = include_str!("testdata/ec256_private.pem");
const EC256_PUB: &str = include_str!("testdata/ec256_public.pem");
const EC384_PRIV: &str = include_str!("testdata/ec384_private.pem");
const EC384_PUB: &str = include_str!("testdata/ec384_public.pem");
const ED_PRIV: &str = include_str!("testdata/ed25519_private.pem");
const JWKS: &str = include_str!("testdata/jwks.json");

const NOW: i64 = 1_700_000_000;

fn hmac_cfg(secret: &str) -> TokenConfig {
    let mut t = TokenConfig::default();
    t.hmac_secret_key = secret.into();
    t
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    encode(&h, claims, key).unwrap()
}

fn hs(alg: Algorithm, secret: &str, claims: &Value) -> String {
    sign(
        alg,
        &EncodingKey::from_secret(secret.as_bytes()),
        None,
        claims,
    )
}

fn rsa_key(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

fn ec_key(pem: &str) -> EncodingKey {
    EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token built by hand: any header, any signature.
fn raw_token(header: &Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        b64url(sig)
    )
}

async fn connect(v: &TokenVerifier, token: &str) -> Result<ConnectClaims, AuthError> {
    v.verify_connect_at(token, NOW).await
}

#[tokio::test]
async fn hmac_family_verifies() {
    let v = TokenVerifier::new(&hmac_cfg("secret")).unwrap();
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let t = hs(alg, "secret", &json!({"sub": "42"}));
        assert_eq!(connect(&v, &t).await.unwrap().user, "42", "{alg:?}");
    }
}

#[test]
fn pem_whose_end_line_is_inside_the_begin_line_is_refused() {
    // Used to slice backwards and panic: a config value aborted the node.
    for pem in ["-----BEGIN -----END -----", "-----BEGIN X-----END X-----"] {
        let mut cfg = TokenConfig::default();
        cfg.rsa_public_key = pem.into();
        assert!(TokenVerifier::new(&cfg).is_err(), "{pem}");
        let mut cfg = TokenConfig::default();
        cfg.ecdsa_public_key = pem.into();
        assert!(TokenVerifier::new(&cfg).is_err(), "{pem}");
    }
}

#[tokio::test]
async fn rsa_family_verifies() {
    let mut cfg = TokenConfig::default();
    cfg.rsa_public_key = RSA_PUB.into();
    let v = TokenVerifier::new(&cfg).unwrap();
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512] {
        let t = sign(alg, &rsa_key(RSA_PRIV), None, &json!({"sub": "u"}));
        assert_eq!(connect(&v, &t).await.unwrap().user, "u", "{alg:?}");
    }
    // RSA-PSS is not among Centrifugo's algorithms.
    let t = sign(
        Algorithm::PS256,
        &rsa_key(RSA_PRIV),
        None,
        &json!({"sub": "u"}),
    );
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::BadAlgorithm { .. })
    ));
}

#[tokio::test]
async fn ecdsa_family_verifies_on_the_matching_curve() {
    let mut cfg = TokenConfig::default();
    cfg.ecdsa_public_key = EC256_PUB.into();
    let v256 = TokenVerifier::new(&cfg).unwrap();
    cfg.ecdsa_public_key = EC384_PUB.into();
    let v384 = TokenVerifier::new(&cfg).unwrap();

    let t256 = sign(
        Algorithm::ES256,
        &ec_key(EC256_PRIV),
        None,
        &json!({"sub": "e"}),
    );
    let t384 = sign(
        Algorithm::ES384,
        &ec_key(EC384_PRIV),
        None,
        &json!({"sub": "e"}),
    );
    assert_eq!(connect(&v256, &t256).await.unwrap().user, "e");
    assert_eq!(connect(&v384, &t384).await.unwrap().user, "e");
    assert!(matches!(
        connect(&v256, &t384).await,
        Err(AuthError::BadAlgorithm { .. })
    ));
    assert!(matches!(
        connect(&v384, &t256).await,
        Err(AuthError::BadAlgorithm { .. })
    ));
}

#[tokio::test]
async fn all_three_static_keys_together() {
    let mut cfg = hmac_cfg("secret");
    cfg.rsa_public_key = RSA_PUB.into();
    cfg.ecdsa_public_key = EC256_PUB.into();
    let v = TokenVerifier::new(&cfg).unwrap();
    let c = json!({"sub": "1"});
    for t in [
        hs(Algorithm::HS256, "secret", &c),
        sign(Algorithm::RS256, &rsa_key(RSA_PRIV), None, &c),
        sign(Algorithm::ES256, &ec_key(EC256_PRIV), None, &c),
    ] {
        connect(&v, &t).await.unwrap();
    }
}

#[tokio::test]
async fn expiry_is_distinct_from_invalid() {
    let v = TokenVerifier::new(&hmac_cfg("secret")).unwrap();
    let past = hs(
        Algorithm::HS256,
        "secret",
        &json!({"sub": "1", "exp": NOW - 1}),
    );
    let now = hs(Algorithm::HS256, "secret", &json!({"sub": "1", "exp": NOW}));
    let future = hs(
        Algorithm::HS256,
        "secret",
        &json!({"sub": "1", "exp": NOW + 60}),
    );
    let not_yet = hs(
        Algorithm::HS256,
        "secret",
        &json!({"sub": "1", "nbf": NOW + 60}),
    );
    let err = connect(&v, &past).await.unwrap_err();
    assert_eq!(err, AuthError::Expired);
    assert!(err.is_expired());
    assert_eq!(err.to_string(), "token expired");
    assert_eq!(connect(&v, &now).await.unwrap_err(), AuthError::Expired);
    assert_eq!(connect(&v, &not_yet).await.unwrap_err(), AuthError::Expired);
    assert_eq!(
        connect(&v, &future).await.unwrap().exp,
        Some((NOW + 60) as u64)
    );
    // An expired token with a bad signature is invalid, not expired.
    let forged = hs(
        Algorithm::HS256,
        "other",
        &json!({"sub": "1", "exp": NOW - 1}),
    );
    assert!(matches!(
        connect(&v, &forged).await,
        Err(AuthError::InvalidToken { .. })
    ));
    // Fractional NumericDate values are accepted.
    let frac = hs(
        Algorithm::HS256,
        "secret",
        &json!({"sub": "1", "exp": (NOW + 10) as f64 + 0.5}),
    );
    assert_eq!(
        connect(&v, &frac).await.unwrap().exp,
        Some((NOW + 10) as u64)
    );
}

#[tokio::test]
async fn expire_at_decouples_connection_expiry_from_token_expiry() {
    let v = TokenVerifier::new(&hmac_cfg("s")).unwrap();
    let none = hs(Algorithm::HS256, "s", &json!({"sub": "1"}));
    assert_eq!(connect(&v, &none).await.unwrap().exp, None);
    let zero = hs(
        Algorithm::HS256,
        "s",
        &json!({"sub": "1", "exp": NOW + 5, "expire_at": 0}),
    );
    assert_eq!(connect(&v, &zero).await.unwrap().exp, None);
    let later = hs(
        Algorithm::HS256,
        "s",
        &json!({"sub": "1", "exp": NOW + 5, "expire_at": NOW + 500}),
    );
    assert_eq!(
        connect(&v, &later).await.unwrap().exp,
        Some((NOW + 500) as u64)
    );
    // `exp` is still checked.
    let old = hs(
        Algorithm::HS256,
        "s",
        &json!({"sub": "1", "exp": NOW - 5, "expire_at": NOW + 500}),
    );
    assert_eq!(connect(&v, &old).await.unwrap_err(), AuthError::Expired);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let mut cfg = hmac_cfg("secret");
    cfg.rsa_public_key = RSA_PUB.into();
    let v = TokenVerifier::new(&cfg).unwrap();
    for alg in ["none", "None", "NONE"] {
        let t = raw_token(
            &json!({"alg": alg, "typ": "JWT"}),
            &json!({"sub": "admin"}),
            b"",
        );
        match connect(&v, &t).await {
            Err(AuthError::BadAlgorithm { alg: a, .. }) => assert_eq!(a, alg),
            other => panic!("{alg}: {other:?}"),
        }
    }
    // Even when signatures are not checked (development mode).
    let skip = TokenVerifier::new(&cfg)
        .unwrap()
        .skip_signature_verify(true);
    let t = raw_token(&json!({"alg": "none"}), &json!({"sub": "admin"}), b"");
    assert!(matches!(
        connect(&skip, &t).await,
        Err(AuthError::BadAlgorithm { .. })
    ));
    // A header without alg is malformed.
    let t = raw_token(&json!({"typ": "JWT"}), &json!({"sub": "admin"}), b"x");
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::InvalidToken { .. })
    ));
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    // The attacker signs an HS256 token using the (public) RSA key as the
    // HMAC secret, hoping the server verifies HS256 with "its key".
    let forged = |claims: &Value| hs(Algorithm::HS256, RSA_PUB, claims);
    let c = json!({"sub": "admin"});

    let mut rsa_only = TokenConfig::default();
    rsa_only.rsa_public_key = RSA_PUB.into();
    let v = TokenVerifier::new(&rsa_only).unwrap();
    assert!(matches!(
        connect(&v, &forged(&c)).await,
        Err(AuthError::BadAlgorithm { .. })
    ));

    // With an HMAC secret configured too, HS256 is checked against that secret only.
    let mut both = rsa_only.clone();
    both.hmac_secret_key = "real-secret".into();
    let v = TokenVerifier::new(&both).unwrap();
    assert!(matches!(
        connect(&v, &forged(&c)).await,
        Err(AuthError::InvalidToken { .. })
    ));

    // Same with the EC public key.
    let mut ec_only = TokenConfig::default();
    ec_only.ecdsa_public_key = EC256_PUB.into();
    let v = TokenVerifier::new(&ec_only).unwrap();
    let t = hs(Algorithm::HS256, EC256_PUB, &c);
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::BadAlgorithm { .. })
    ));

    // And an RS256 token is not checked against an HMAC secret.
    let v = TokenVerifier::new(&hmac_cfg("secret")).unwrap();
    let t = sign(Algorithm::RS256, &rsa_key(RSA_PRIV), None, &c);
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::BadAlgorithm { .. })
    ));
}

#[tokio::test]
async fn wrong_key_or_tampering_is_invalid() {
    let v = TokenVerifier::new(&hmac_cfg("secret")).unwrap();
    let t = hs(Algorithm::HS256, "not-the-secret", &json!({"sub": "1"}));
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::InvalidToken { .. })
    ));

    let mut cfg = TokenConfig::default();
    cfg.rsa_public_key = RSA_PUB.into();
    let v = TokenVerifier::new(&cfg).unwrap();
    let t = sign(
        Algorithm::RS256,
        &rsa_key(RSA2_PRIV),
        None,
        &json!({"sub": "1"}),
    );
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::InvalidToken { .. })
    ));

    // Payload swapped after signing.
    let good = sign(
        Algorithm::RS256,
        &rsa_key(RSA_PRIV),
        None,
        &json!({"sub": "1"}),
    );
    let mut parts: Vec<&str> = good.split('.').collect();
    let evil = b64url(json!({"sub": "admin"}).to_string().as_bytes());
    parts[1] = &evil;
    assert!(matches!(
        connect(&v, &parts.join(".")).await,
        Err(AuthError::InvalidToken { .. })
    ));
}

#[tokio::test]
async fn malformed_tokens_are_invalid() {
    let v = TokenVerifier::new(&hmac_cfg("s")).unwrap();
    for t in ["", "abc", "a.b", "a.b.c.d", "!!!.###.$$$"] {
        assert!(
            matches!(connect(&v, t).await, Err(AuthError::InvalidToken { .. })),
            "{t:?}"
        );
    }
    // Claims must be an object with a string sub.
    let t = hs(Algorithm::HS256, "s", &json!({"sub": 42}));
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::InvalidToken { .. })
    ));
    let t = hs(Algorithm::HS256, "s", &json!(["not", "an", "object"]));
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::InvalidToken { .. })
    ));
}

#[tokio::test]
async fn no_key_configured_refuses_everything() {
    let v = TokenVerifier::new(&TokenConfig::default()).unwrap();
    let t = hs(Algorithm::HS256, "", &json!({"sub": "1"}));
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::BadAlgorithm { .. })
    ));
}

#[tokio::test]
async fn anonymous_token_has_empty_user() {
    let v = TokenVerifier::new(&hmac_cfg("s")).unwrap();
    let t = hs(Algorithm::HS256, "s", &json!({"sub": ""}));
    assert_eq!(connect(&v, &t).await.unwrap().user, "");
    let t = hs(Algorithm::HS256, "s", &json!({}));
    assert_eq!(connect(&v, &t).await.unwrap().user, "");
}

#[tokio::test]
async fn connect_claims_are_decoded() {
    let v = TokenVerifier::new(&hmac_cfg("s")).unwrap();
    let t = hs(
        Algorithm::HS256,
        "s",
        &json!({
            "sub": "42", "iat": NOW - 10, "jti": "j-1",
            "info": {"name": "Alice", "tags": [1, 2]},
            "meta": {"plan": "pro"},
            "channels": ["news", "chat:lobby"],
        }),
    );
    let c = connect(&v, &t).await.unwrap();
    assert_eq!(c.iat, Some(NOW - 10));
    assert_eq!(c.jti.as_deref(), Some("j-1"));
    assert_eq!(
        c.info.as_deref(),
        Some(&br#"{"name":"Alice","tags":[1,2]}"#[..])
    );
    assert_eq!(c.meta.as_deref(), Some(&br#"{"plan":"pro"}"#[..]));
    assert_eq!(c.channels, ["news", "chat:lobby"]);
    let subs: Vec<_> = c
        .server_side_subscriptions()
        .map(|(ch, o)| (ch, o.is_none()))
        .collect();
    assert_eq!(subs, [("news", true), ("chat:lobby", true)]);

    // b64info wins and may be any bytes; subs wins over channels.
    let t = hs(
        Algorithm::HS256,
        "s",
        &json!({
            "sub": "42",
            "info": {"ignored": true},
            "b64info": "AAEC/w==",
            "channels": ["ignored"],
            "subs": {
                "chat:1": {"info": {"role": "mod"}, "b64data": "aGk=",
                           "override": {"presence": {"value": false}, "force_recovery": {"value": true}}},
                "news": {}
            }
        }),
    );
    let c = connect(&v, &t).await.unwrap();
    assert_eq!(c.info.as_deref(), Some(&[0u8, 1, 2, 255][..]));
    let subs: Vec<&str> = c.server_side_subscriptions().map(|(ch, _)| ch).collect();
    assert_eq!(subs, ["chat:1", "news"]);
    let o = &c.subs["chat:1"];
    assert_eq!(o.info.as_deref(), Some(&br#"{"role":"mod"}"#[..]));
    assert_eq!(o.data.as_deref(), Some(&b"hi"[..]));
    assert_eq!(o.overrides.presence, Some(false));
    assert_eq!(o.overrides.force_recovery, Some(true));
    assert_eq!(o.overrides.join_leave, None);
    assert_eq!(c.subs["news"], SubscribeOptions::default());

    let t = hs(
        Algorithm::HS256,
        "s",
        &json!({"sub": "42", "b64info": "%%%"}),
    );
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::InvalidToken { .. })
    ));
}

#[tokio::test]
async fn connection_token_must_not_have_channel_claim() {
    let v = TokenVerifier::new(&hmac_cfg("s")).unwrap();
    let t = hs(
        Algorithm::HS256,
        "s",
        &json!({"sub": "1", "channel": "news"}),
    );
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::InvalidToken { .. })
    ));
}

#[tokio::test]
async fn subscription_tokens() {
    let v = TokenVerifier::new(&hmac_cfg("s")).unwrap();
    let sub = |claims: Value| hs(Algorithm::HS256, "s", &claims);
    let check = |t: String, ch: &'static str, user: &'static str, client: &'static str| {
        let v = &v;
        async move { v.verify_subscribe_at(&t, ch, user, client, NOW).await }
    };

    let t = sub(
        json!({"sub": "42", "channel": "$news", "exp": NOW + 60, "info": {"a": 1},
                        "data": {"hello": true}, "override": {"join_leave": {"value": true}}}),
    );
    let c = check(t.clone(), "$news", "42", "c1").await.unwrap();
    assert_eq!(c.channel, "$news");
    assert_eq!(c.user, "42");
    assert_eq!(c.exp, Some((NOW + 60) as u64));
    assert_eq!(c.options.info.as_deref(), Some(&br#"{"a":1}"#[..]));
    assert_eq!(c.options.data.as_deref(), Some(&br#"{"hello":true}"#[..]));
    assert_eq!(c.options.overrides.join_leave, Some(true));

    assert!(matches!(
        check(t.clone(), "$sport", "42", "c1").await,
        Err(AuthError::ChannelMismatch { .. })
    ));
    assert!(matches!(
        check(t.clone(), "$news", "43", "c1").await,
        Err(AuthError::UserMismatch { .. })
    ));
    // Anonymous token, anonymous connection.
    let t = sub(json!({"channel": "news"}));
    assert_eq!(check(t, "news", "", "c1").await.unwrap().user, "");

    // Bound to a client.
    let t = sub(json!({"sub": "42", "channel": "news", "client": "c1"}));
    assert!(check(t.clone(), "news", "42", "c1").await.is_ok());
    assert_eq!(
        check(t, "news", "42", "c2").await.unwrap_err(),
        AuthError::ClientMismatch
    );

    // No channel claim.
    let t = sub(json!({"sub": "42"}));
    assert!(matches!(
        check(t, "news", "42", "c1").await,
        Err(AuthError::InvalidToken { .. })
    ));
    // Expired beats mismatch (the token is checked first, as in Centrifugo).
    let t = sub(json!({"sub": "42", "channel": "news", "exp": NOW - 1}));
    assert_eq!(
        check(t, "other", "42", "c1").await.unwrap_err(),
        AuthError::Expired
    );
    // expire_at 0: never expires.
    let t = sub(json!({"sub": "42", "channel": "news", "exp": NOW + 9, "expire_at": 0}));
    assert_eq!(check(t, "news", "42", "c1").await.unwrap().exp, None);
}

#[tokio::test]
async fn audience_and_issuer() {
    let mut cfg = hmac_cfg("s");
    cfg.audience = "centrifugo".into();
    cfg.issuer = "my-app".into();
    let v = TokenVerifier::new(&cfg).unwrap();
    let t = |c: Value| hs(Algorithm::HS256, "s", &c);
    assert!(connect(
        &v,
        &t(json!({"sub": "1", "aud": "centrifugo", "iss": "my-app"}))
    )
    .await
    .is_ok());
    assert!(connect(
        &v,
        &t(json!({"sub": "1", "aud": ["x", "centrifugo"], "iss": "my-app"}))
    )
    .await
    .is_ok());
    for bad in [
        json!({"sub": "1", "aud": "other", "iss": "my-app"}),
        json!({"sub": "1", "aud": ["x", "y"], "iss": "my-app"}),
        json!({"sub": "1", "iss": "my-app"}),
        json!({"sub": "1", "aud": "centrifugo", "iss": "evil"}),
        json!({"sub": "1", "aud": "centrifugo"}),
    ] {
        assert!(
            matches!(
                connect(&v, &t(bad.clone())).await,
                Err(AuthError::InvalidToken { .. })
            ),
            "{bad}"
        );
    }
    // Subscription tokens are checked the same way.
    let st = t(json!({"sub": "1", "channel": "c", "aud": "other", "iss": "my-app"}));
    assert!(matches!(
        v.verify_subscribe_at(&st, "c", "1", "x", NOW).await,
        Err(AuthError::InvalidToken { .. })
    ));

    // Without configuration, aud and iss are not checked.
    let v = TokenVerifier::new(&hmac_cfg("s")).unwrap();
    assert!(connect(
        &v,
        &t(json!({"sub": "1", "aud": "anything", "iss": "whoever"}))
    )
    .await
    .is_ok());

    // Regex forms.
    let mut cfg = hmac_cfg("s");
    cfg.audience_regex = "^app-(eu|us)$".into();
    cfg.issuer_regex = "^https://auth\\.example\\.com/".into();
    let v = TokenVerifier::new(&cfg).unwrap();
    assert!(connect(
        &v,
        &t(json!({"aud": "app-eu", "iss": "https://auth.example.com/r1"}))
    )
    .await
    .is_ok());
    assert!(connect(
        &v,
        &t(json!({"aud": "app-asia", "iss": "https://auth.example.com/r1"}))
    )
    .await
    .is_err());
    assert!(
        connect(&v, &t(json!({"aud": "app-us", "iss": "https://evil.com/"})))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn custom_user_id_claim() {
    let mut cfg = hmac_cfg("s");
    cfg.user_id_claim = "user_id".into();
    let v = TokenVerifier::new(&cfg).unwrap();
    let t = hs(
        Algorithm::HS256,
        "s",
        &json!({"sub": "ignored", "user_id": "u-7"}),
    );
    assert_eq!(connect(&v, &t).await.unwrap().user, "u-7");
    let t = hs(Algorithm::HS256, "s", &json!({"user_id": 99}));
    assert_eq!(connect(&v, &t).await.unwrap().user, "99");
}

#[tokio::test]
async fn hmac_key_rotation() {
    let mut cfg = hmac_cfg("new");
    cfg.hmac_previous_secret_key = "old".into();
    cfg.hmac_previous_secret_key_valid_until = NOW + 100;
    let v = TokenVerifier::new(&cfg).unwrap();
    let old = hs(Algorithm::HS256, "old", &json!({"sub": "1"}));
    let new = hs(Algorithm::HS256, "new", &json!({"sub": "1"}));
    assert!(v.verify_connect_at(&new, NOW).await.is_ok());
    assert!(v.verify_connect_at(&old, NOW).await.is_ok());
    assert!(matches!(
        v.verify_connect_at(&old, NOW + 101).await,
        Err(AuthError::InvalidToken { .. })
    ));
}

#[tokio::test]
async fn skip_signature_verify_is_development_only() {
    let v = TokenVerifier::new(&hmac_cfg("s"))
        .unwrap()
        .skip_signature_verify(true);
    let t = hs(
        Algorithm::HS256,
        "anything",
        &json!({"sub": "forged", "exp": NOW + 5}),
    );
    assert_eq!(connect(&v, &t).await.unwrap().user, "forged");
    // Expiry is still checked.
    let t = hs(
        Algorithm::HS256,
        "anything",
        &json!({"sub": "forged", "exp": NOW - 5}),
    );
    assert_eq!(connect(&v, &t).await.unwrap_err(), AuthError::Expired);
}

#[tokio::test]
async fn generated_tokens_round_trip() {
    let v = TokenVerifier::new(&hmac_cfg("secret")).unwrap();
    let info = json!({"name": "Bob"});
    let t = generate_connection_token(
        "secret",
        "7",
        Some(Duration::from_secs(3600)),
        Some(&info),
        &["news".to_owned()],
    )
    .unwrap();
    let c = v.verify_connect(&t).await.unwrap();
    assert_eq!(c.user, "7");
    assert_eq!(c.info.as_deref(), Some(&br#"{"name":"Bob"}"#[..]));
    assert_eq!(c.channels, ["news"]);
    let exp = c.exp.unwrap();
    assert!(c.iat.is_some_and(|iat| exp as i64 - iat == 3600));

    let t = generate_connection_token("secret", "", None, None, &[]).unwrap();
    let c = v.verify_connect(&t).await.unwrap();
    assert_eq!((c.user.as_str(), c.exp), ("", None));

    let t =
        generate_subscription_token("secret", "7", "$room", Some(Duration::from_secs(60)), None)
            .unwrap();
    let s = v.verify_subscribe(&t, "$room", "7", "any").await.unwrap();
    assert!(s.exp.is_some());

    assert!(generate_connection_token("", "7", None, None, &[]).is_err());
    assert!(generate_subscription_token("s", "7", "", None, None).is_err());
}

#[tokio::test]
async fn separate_subscription_token_config() {
    let mut cfg = Config::default();
    cfg.client.token.hmac_secret_key = "conn".into();
    let v = Verifiers::from_config(&cfg).unwrap();
    assert!(Arc::ptr_eq(&v.connect, &v.subscribe));

    cfg.client.subscription_token.enabled = true;
    cfg.client.subscription_token.token.hmac_secret_key = "subs".into();
    let v = Verifiers::from_config(&cfg).unwrap();
    let st = generate_subscription_token("subs", "1", "c", None, None).unwrap();
    let st_conn = generate_subscription_token("conn", "1", "c", None, None).unwrap();
    assert!(v
        .subscribe
        .verify_subscribe(&st, "c", "1", "x")
        .await
        .is_ok());
    assert!(v
        .subscribe
        .verify_subscribe(&st_conn, "c", "1", "x")
        .await
        .is_err());
    let ct = generate_connection_token("conn", "1", None, None, &[]).unwrap();
    assert!(v.connect.verify_connect(&ct).await.is_ok());
}

#[test]
fn bad_key_configuration_is_reported() {
    let mut cfg = TokenConfig::default();
    cfg.rsa_public_key = "not a pem".into();
    assert_eq!(TokenVerifier::new(&cfg).unwrap_err().key, "rsa_public_key");
    cfg.rsa_public_key = EC256_PUB.into(); // an EC key where RSA is expected
    assert_eq!(TokenVerifier::new(&cfg).unwrap_err().key, "rsa_public_key");
    cfg.rsa_public_key = RSA_PRIV.into(); // a private key
    assert!(TokenVerifier::new(&cfg)
        .unwrap_err()
        .message
        .contains("private"));

    let mut cfg = TokenConfig::default();
    cfg.ecdsa_public_key = RSA_PUB.into();
    assert_eq!(
        TokenVerifier::new(&cfg).unwrap_err().key,
        "ecdsa_public_key"
    );
    // PEM with literal "\n" (as pasted into an environment variable) works.
    cfg.ecdsa_public_key = EC256_PUB.trim().replace('\n', "\\n");
    assert!(!cfg.ecdsa_public_key.contains('\n'));
    assert!(TokenVerifier::new(&cfg).is_ok());

    let mut cfg = TokenConfig::default();
    cfg.jwks_public_endpoint = "ftp://keys.example.com/jwks".into();
    assert_eq!(
        TokenVerifier::new(&cfg).unwrap_err().key,
        "jwks_public_endpoint"
    );
    cfg.jwks_public_endpoint = "https://{{tenant}}.example.com/jwks".into();
    assert_eq!(
        TokenVerifier::new(&cfg).unwrap_err().key,
        "jwks_public_endpoint"
    );

    let mut cfg = hmac_cfg("s");
    cfg.audience_regex = "(".into();
    assert_eq!(TokenVerifier::new(&cfg).unwrap_err().key, "audience_regex");
}

/// `wshub check-config` and `wshub serve` load with [`check_token_keys`]: a
/// public key the verifier could not read is refused at load time, at its
/// dotted path.
#[test]
fn config_validation_checks_keys_with_the_verifier() {
    use wshub_config::{ConfigError, Format, Loader};
    let bad_rsa = json!({"client": {"token": {"rsa_public_key":
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}}});
    let loader = Loader::new().token_key_check(check_token_keys);
    match loader.load_str(&bad_rsa.to_string(), Format::Json) {
        Err(ConfigError::Invalid(errors)) => {
            let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
            assert_eq!(paths, ["client.token.rsa_public_key"]);
        }
        other => panic!("expected validation errors, got {other:?}"),
    }
    let bad_ec = json!({"client": {"subscription_token": {"enabled": true,
        "ecdsa_public_key": RSA_PUB}}});
    match loader.load_str(&bad_ec.to_string(), Format::Json) {
        Err(ConfigError::Invalid(errors)) => {
            assert_eq!(errors[0].path, "client.subscription_token.ecdsa_public_key");
        }
        other => panic!("expected validation errors, got {other:?}"),
    }
    let good = json!({"client": {"token": {"rsa_public_key": RSA_PUB,
        "ecdsa_public_key": EC256_PUB}}});
    loader.load_str(&good.to_string(), Format::Json).unwrap();
}

/// The hub fetches nothing itself: a JWKS endpoint without a fetcher is a
/// configuration error at start, not a failure on every token.
#[test]
fn jwks_endpoint_needs_a_fetcher() {
    let mut cfg = Config::default();
    cfg.client.token.jwks_public_endpoint = "https://auth.example.com/jwks".into();
    let err = Verifiers::from_config(&cfg).unwrap_err();
    assert_eq!(err.key, "jwks_public_endpoint");
    assert!(err.message.contains("fetcher"), "{err}");
    let fetcher: Arc<dyn JwksFetcher> = FakeFetcher::new(JWKS);
    let v = Verifiers::from_config_with(&cfg, Some(fetcher)).unwrap();
    assert_eq!(
        v.connect.jwks().map(|c| c.url()),
        Some("https://auth.example.com/jwks")
    );
}

// ---- JWKS ----

#[derive(Debug)]
struct FakeFetcher {
    body: Mutex<Result<Bytes, JwksError>>,
    calls: AtomicUsize,
    delay: Duration,
}

impl FakeFetcher {
    fn new(body: &str) -> Arc<Self> {
        Arc::new(FakeFetcher {
            body: Mutex::new(Ok(Bytes::copy_from_slice(body.as_bytes()))),
            calls: AtomicUsize::new(0),
            delay: Duration::ZERO,
        })
    }

    fn set(&self, body: Result<&str, &str>) {
        *self.body.lock().unwrap() = body
            .map(|b| Bytes::copy_from_slice(b.as_bytes()))
            .map_err(|e| JwksError(e.to_owned()));
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl JwksFetcher for FakeFetcher {
    async fn fetch(&self, url: &str) -> Result<Bytes, JwksError> {
        assert_eq!(url, "https://auth.example.com/jwks");
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.body.lock().unwrap().clone()
    }
}

fn jwks_verifier(fetcher: Arc<FakeFetcher>) -> TokenVerifier {
    let mut cfg = TokenConfig::default();
    cfg.jwks_public_endpoint = "https://auth.example.com/jwks".into();
    // Static keys are ignored once a JWKS is configured.
    cfg.hmac_secret_key = "secret".into();
    TokenVerifier::with_jwks_fetcher(&cfg, fetcher, JwksOptions::default()).unwrap()
}

fn jwks_without(kids: &[&str]) -> String {
    let mut doc: Value = serde_json::from_str(JWKS).unwrap();
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| !kids.contains(&k["kid"].as_str().unwrap_or("")));
    doc.to_string()
}

#[tokio::test(start_paused = true)]
async fn jwks_keys_of_every_type() {
    let f = FakeFetcher::new(JWKS);
    let v = jwks_verifier(f.clone());
    let c = json!({"sub": "j"});
    let ok = [
        sign(Algorithm::RS256, &rsa_key(RSA_PRIV), Some("rsa-1"), &c),
        sign(Algorithm::RS512, &rsa_key(RSA2_PRIV), Some("rsa-2"), &c),
        sign(Algorithm::ES256, &ec_key(EC256_PRIV), Some("ec-256"), &c),
        sign(Algorithm::ES384, &ec_key(EC384_PRIV), Some("ec-384"), &c),
        sign(
            Algorithm::EdDSA,
            &EncodingKey::from_ed_pem(ED_PRIV.as_bytes()).unwrap(),
            Some("ed-1"),
            &c,
        ),
    ];
    for t in &ok {
        assert_eq!(connect(&v, t).await.unwrap().user, "j");
    }
    assert_eq!(f.calls(), 1, "one fetch serves every kid");
    let mut kids = v.jwks().unwrap().kids();
    kids.sort();
    // The encryption key and the symmetric key are not kept.
    assert_eq!(kids, ["ec-256", "ec-384", "ed-1", "rsa-1", "rsa-2"]);
}

#[tokio::test(start_paused = true)]
async fn jwks_refuses_mismatches() {
    let f = FakeFetcher::new(JWKS);
    let v = jwks_verifier(f.clone());
    let c = json!({"sub": "j"});
    // rsa-1 declares alg RS256.
    let t = sign(Algorithm::RS384, &rsa_key(RSA_PRIV), Some("rsa-1"), &c);
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::BadAlgorithm { .. })
    ));
    // An EC token naming an RSA kid.
    let t = sign(Algorithm::ES256, &ec_key(EC256_PRIV), Some("rsa-2"), &c);
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::BadAlgorithm { .. })
    ));
    // Signed by another key under a known kid.
    let t = sign(Algorithm::RS256, &rsa_key(RSA2_PRIV), Some("rsa-1"), &c);
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::InvalidToken { .. })
    ));
    // HMAC tokens are not accepted with a JWKS, even with hmac_secret_key set.
    let t = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"secret"),
        Some("rsa-1"),
        &c,
    );
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::BadAlgorithm { .. })
    ));
    // The symmetric JWK is never used as an HMAC key.
    let t = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"secret"),
        Some("oct-1"),
        &c,
    );
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::BadAlgorithm { .. })
    ));
    // No kid.
    let t = sign(Algorithm::RS256, &rsa_key(RSA_PRIV), None, &c);
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::InvalidToken { .. })
    ));
    // The encryption-only key is not a signing key.
    let t = sign(Algorithm::RS256, &rsa_key(RSA_PRIV), Some("rsa-enc"), &c);
    assert!(matches!(
        connect(&v, &t).await,
        Err(AuthError::UnknownKey { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn jwks_unknown_kid_refetches_with_a_rate_limit() {
    let f = FakeFetcher::new(&jwks_without(&["rsa-2"]));
    let v = jwks_verifier(f.clone());
    let c = json!({"sub": "j"});
    let t1 = sign(Algorithm::RS256, &rsa_key(RSA_PRIV), Some("rsa-1"), &c);
    let t2 = sign(Algorithm::RS256, &rsa_key(RSA2_PRIV), Some("rsa-2"), &c);
    let random = sign(Algorithm::RS256, &rsa_key(RSA_PRIV), Some("random-kid"), &c);

    connect(&v, &t1).await.unwrap();
    assert_eq!(f.calls(), 1);
    // A key rotated in: the first token with the new kid fails (fetched
    // within the rate-limit interval), then works once the interval passed.
    f.set(Ok(JWKS));
    assert!(matches!(
        connect(&v, &t2).await,
        Err(AuthError::UnknownKey { .. })
    ));
    assert_eq!(f.calls(), 1, "no refetch within min_refetch_interval");
    tokio::time::advance(Duration::from_secs(11)).await;
    connect(&v, &t2).await.unwrap();
    assert_eq!(f.calls(), 2);
    // Random kids cannot make it fetch more than once per interval.
    for _ in 0..20 {
        assert!(matches!(
            connect(&v, &random).await,
            Err(AuthError::UnknownKey { .. })
        ));
    }
    assert_eq!(f.calls(), 2);
    tokio::time::advance(Duration::from_secs(11)).await;
    for _ in 0..20 {
        assert!(connect(&v, &random).await.is_err());
    }
    assert_eq!(f.calls(), 3);
    // Known keys never wait for a fetch.
    connect(&v, &t1).await.unwrap();
    assert_eq!(f.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn jwks_ttl_and_rotation_out() {
    let f = FakeFetcher::new(JWKS);
    let v = jwks_verifier(f.clone());
    let c = json!({"sub": "j"});
    let t1 = sign(Algorithm::RS256, &rsa_key(RSA_PRIV), Some("rsa-1"), &c);
    connect(&v, &t1).await.unwrap();
    tokio::time::advance(Duration::from_secs(1800)).await;
    connect(&v, &t1).await.unwrap();
    assert_eq!(f.calls(), 1, "fresh for an hour");
    // After the TTL the set is fetched again; rsa-1 was removed meanwhile.
    f.set(Ok(&jwks_without(&["rsa-1"])));
    tokio::time::advance(Duration::from_secs(1801)).await;
    assert!(matches!(
        connect(&v, &t1).await,
        Err(AuthError::UnknownKey { .. })
    ));
    assert_eq!(f.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn jwks_fetch_failures() {
    let f = FakeFetcher::new(JWKS);
    f.set(Err("connection refused"));
    let v = jwks_verifier(f.clone());
    let c = json!({"sub": "j"});
    let t1 = sign(Algorithm::RS256, &rsa_key(RSA_PRIV), Some("rsa-1"), &c);
    let err = connect(&v, &t1).await.unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable { .. }), "{err:?}");
    assert!(err.is_temporary());
    // Failed fetches are rate limited too.
    assert!(connect(&v, &t1).await.is_err());
    assert_eq!(f.calls(), 1);

    tokio::time::advance(Duration::from_secs(11)).await;
    f.set(Ok(JWKS));
    connect(&v, &t1).await.unwrap();
    // The endpoint goes down after the TTL: known keys keep working.
    f.set(Err("503"));
    tokio::time::advance(Duration::from_secs(3601)).await;
    connect(&v, &t1).await.unwrap();
    assert_eq!(f.calls(), 3);

    // A document that is not a JWKS is a fetch failure.
    let f = FakeFetcher::new("<html>");
    let v = jwks_verifier(f);
    assert!(matches!(
        connect(&v, &t1).await,
        Err(AuthError::KeysUnavailable { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn jwks_concurrent_lookups_share_one_fetch() {
    let f = Arc::new(FakeFetcher {
        body: Mutex::new(Ok(Bytes::from_static(JWKS.as_bytes()))),
        calls: AtomicUsize::new(0),
        delay: Duration::from_millis(200),
    });
    let v = Arc::new(jwks_verifier(f.clone()));
    let t = sign(
        Algorithm::RS256,
        &rsa_key(RSA_PRIV),
        Some("rsa-1"),
        &json!({"sub": "j"}),
    );
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let v = v.clone();
            let t = t.clone();
            tokio::spawn(async move { v.verify_connect_at(&t, NOW).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(f.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn jwks_cancelled_lookup_leaves_cache_usable() {
    let f = Arc::new(FakeFetcher {
        body: Mutex::new(Ok(Bytes::from_static(JWKS.as_bytes()))),
        calls: AtomicUsize::new(0),
        delay: Duration::from_millis(500),
    });
    let v = jwks_verifier(f.clone());
    let t = sign(
        Algorithm::RS256,
        &rsa_key(RSA_PRIV),
        Some("rsa-1"),
        &json!({"sub": "j"}),
    );
    // Give up while the fetch is in flight.
    let r = tokio::time::timeout(Duration::from_millis(100), v.verify_connect_at(&t, NOW)).await;
    assert!(r.is_err());
    // The next lookup is not rate limited by the abandoned fetch.
    connect(&v, &t).await.unwrap();
    assert_eq!(f.calls(), 2);
}
