//! Algorithms and public keys: which `alg` goes with which key.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};

use super::AuthError;

/// Key families. A token is checked only against a key of its algorithm's
/// family, so an HS256 token is never checked with an RSA public key used as
/// an HMAC secret (the algorithm-confusion attack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Hmac,
    Rsa,
    Ec(Curve),
    Ed,
}

/// ECDSA curves wshub verifies (`ring` has no P-521, so no ES512).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

/// The algorithms accepted in the `alg` header, with their key family.
pub(crate) fn parse_alg(alg: &str) -> Result<(Algorithm, Family), AuthError> {
    let bad = |reason| AuthError::BadAlgorithm {
        alg: alg.to_owned(),
        reason,
    };
    Ok(match alg {
        "HS256" => (Algorithm::HS256, Family::Hmac),
        "HS384" => (Algorithm::HS384, Family::Hmac),
        "HS512" => (Algorithm::HS512, Family::Hmac),
        "RS256" => (Algorithm::RS256, Family::Rsa),
        "RS384" => (Algorithm::RS384, Family::Rsa),
        "RS512" => (Algorithm::RS512, Family::Rsa),
        "ES256" => (Algorithm::ES256, Family::Ec(Curve::P256)),
        "ES384" => (Algorithm::ES384, Family::Ec(Curve::P384)),
        "EdDSA" => (Algorithm::EdDSA, Family::Ed),
        a if a.eq_ignore_ascii_case("none") => {
            return Err(bad("unsigned tokens are never accepted"))
        }
        "ES512" => return Err(bad("ES512 (P-521) is not supported")),
        "PS256" | "PS384" | "PS512" => {
            return Err(bad("RSA-PSS is not accepted (use RS256, RS384 or RS512)"))
        }
        _ => return Err(bad("unknown algorithm")),
    })
}

/// PEM pasted into an environment variable often has literal `\n`s.
fn unescape_newlines(pem: &str) -> std::borrow::Cow<'_, str> {
    if !pem.contains('\n') && pem.contains("\\n") {
        pem.replace("\\n", "\n").into()
    } else {
        pem.into()
    }
}

/// Decode a PEM block: its label and DER bytes.
fn pem_der(pem: &str) -> Result<(String, Vec<u8>), String> {
    let (_, rest) = pem
        .split_once("-----BEGIN ")
        .ok_or_else(|| "not PEM (no -----BEGIN line)".to_owned())?;
    let (label, rest) = rest
        .split_once("-----")
        .ok_or_else(|| "malformed PEM header".to_owned())?;
    // The END line is looked for after the BEGIN line, not inside it.
    let end_marker = format!("-----END {label}-----");
    let (body, _) = rest
        .split_once(&end_marker)
        .ok_or_else(|| format!("no {end_marker} line"))?;
    let label = label.to_owned();
    let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("PEM body is not base64: {e}"))?;
    Ok((label, der))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// DER of the OID 1.2.840.10045.3.1.7 (prime256v1 / P-256).
const OID_P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
/// DER of the OID 1.3.132.0.34 (secp384r1 / P-384).
const OID_P384: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
/// DER of the OID 1.3.132.0.35 (secp521r1 / P-521).
const OID_P521: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x23];

/// An RSA public key: `PUBLIC KEY` (SPKI), `RSA PUBLIC KEY` (PKCS#1) or a
/// `CERTIFICATE`.
pub(crate) fn rsa_public_key(pem: &str) -> Result<DecodingKey, String> {
    let pem = unescape_newlines(pem);
    let (label, _) = pem_der(&pem)?;
    if label.contains("PRIVATE") {
        return Err("this is a private key; configure the public key".into());
    }
    DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| format!("not an RSA public key ({e})"))
}

/// An ECDSA public key (`PUBLIC KEY` or `CERTIFICATE`) on P-256 or P-384.
pub(crate) fn ec_public_key(pem: &str) -> Result<(DecodingKey, Curve), String> {
    let pem = unescape_newlines(pem);
    let (label, der) = pem_der(&pem)?;
    if label.contains("PRIVATE") {
        return Err("this is a private key; configure the public key".into());
    }
    let curve = if contains(&der, OID_P256) {
        Curve::P256
    } else if contains(&der, OID_P384) {
        Curve::P384
    } else if contains(&der, OID_P521) {
        return Err("P-521 (ES512) keys are not supported; use P-256 or P-384".into());
    } else {
        return Err("not an ECDSA P-256 or P-384 public key".into());
    };
    let key = DecodingKey::from_ec_pem(pem.as_bytes())
        .map_err(|e| format!("not an ECDSA public key ({e})"))?;
    Ok((key, curve))
}
