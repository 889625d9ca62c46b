//! Connection and subscription tokens through the verifier, with HMAC, RSA
//! and ECDSA keys configured: arbitrary token strings, and arbitrary claims
//! JSON signed with the HMAC or the EC key (so the signature passes and the
//! claims parser is reached).
#![no_main]
use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use wshub_hub::auth::TokenVerifier;
use wshub_config::TokenConfig;

const HMAC: &str = "fuzz-secret";
const RSA_PUB: &str = include_str!("../../crates/hub/src/auth/testdata/rsa_public.pem");
const EC256_PUB: &str = include_str!("../../crates/hub/src/auth/testdata/ec256_public.pem");
const EC256_PRIV: &str = include_str!("../../crates/hub/src/auth/testdata/ec256_private.pem");
/// A fixed "now", so runs are reproducible.
const NOW: i64 = 1_700_000_000;

struct Keys {
    verifier: TokenVerifier,
    unchecked: TokenVerifier,
    hmac: EncodingKey,
    ec: EncodingKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut cfg = TokenConfig::default();
        cfg.hmac_secret_key = HMAC.into();
        cfg.rsa_public_key = RSA_PUB.into();
        cfg.ecdsa_public_key = EC256_PUB.into();
        let mut unchecked_cfg = TokenConfig::default();
        unchecked_cfg.hmac_secret_key = HMAC.into();
        unchecked_cfg.audience_regex = "^a.*".into();
        unchecked_cfg.issuer = "i".into();
        unchecked_cfg.user_id_claim = "uid".into();
        Keys {
            verifier: TokenVerifier::new(&cfg).expect("test keys load"),
            unchecked: TokenVerifier::new(&unchecked_cfg)
                .expect("config loads")
                .skip_signature_verify(true),
            hmac: EncodingKey::from_secret(HMAC.as_bytes()),
            ec: EncodingKey::from_ec_pem(EC256_PRIV.as_bytes()).expect("test key loads"),
        }
    })
}

/// Static keys never wait, so one poll finishes the verification.
fn now<F: Future>(f: F) -> Option<F::Output> {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

fn signed(alg: Algorithm, name: &str, kid: bool, claims: &[u8], key: &EncodingKey) -> String {
    let header = if kid {
        format!(r#"{{"alg":"{name}","typ":"JWT","kid":"k1"}}"#)
    } else {
        format!(r#"{{"alg":"{name}","typ":"JWT"}}"#)
    };
    let message = format!("{}.{}", B64URL.encode(header), B64URL.encode(claims));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("signing works");
    format!("{message}.{sig}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let k = keys();
    let token = match mode & 3 {
        0 | 1 => String::from_utf8_lossy(rest).into_owned(),
        2 => {
            let (alg, name) = match (mode >> 2) % 3 {
                0 => (Algorithm::HS256, "HS256"),
                1 => (Algorithm::HS384, "HS384"),
                _ => (Algorithm::HS512, "HS512"),
            };
            signed(alg, name, mode & 0x10 != 0, rest, &k.hmac)
        }
        _ => signed(Algorithm::ES256, "ES256", mode & 0x10 != 0, rest, &k.ec),
    };
    let verifier = if mode & 3 == 1 { &k.unchecked } else { &k.verifier };
    let _ = now(verifier.verify_connect_at(&token, NOW));
    let _ = now(verifier.verify_subscribe_at(&token, "news", "42", "client-1", NOW));
});
