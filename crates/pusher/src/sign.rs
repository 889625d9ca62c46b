//! The signatures of the Pusher Channels protocol 7, all HMAC-SHA256 keyed
//! with the app's secret and written as lowercase hex.
//!
//! - Channel authorization (`pusher:subscribe`'s `auth`): `key:hex` over
//!   `socket_id:channel`, or `socket_id:channel:channel_data` for presence.
//! - User authentication (`pusher:signin`'s `auth`): `key:hex` over
//!   `socket_id::user::user_data`.
//! - Webhooks: the hex MAC of the body, sent as `X-Pusher-Signature`.
//! - HTTP API requests: the query carries `auth_key`, `auth_timestamp`,
//!   `auth_version=1.0`, `body_md5` (hex MD5 of a non-empty body) and
//!   `auth_signature`, the hex MAC of `METHOD\nPATH\nQUERY`, where QUERY is
//!   every other parameter as `key=value` (keys lowercased, values
//!   URL-decoded), sorted by key and joined with `&`.
//!
//! Signatures are compared in constant time.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far `auth_timestamp` may be from the server's clock, in seconds.
pub const TIMESTAMP_GRACE_SECS: i64 = 600;

/// The `auth_version` this module signs and accepts.
const AUTH_VERSION: &str = "1.0";

/// A MAC keyed with `secret`, fed `parts` one after another.
fn mac(secret: &str, parts: &[&[u8]]) -> HmacSha256 {
    // HMAC takes keys of any length (longer ones are hashed first); only
    // fixed-key MACs can refuse one.
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

fn to_hex(mac: HmacSha256) -> String {
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` (hex) is `mac`'s tag, compared in constant time.
fn matches_hex(mac: HmacSha256, signature: &str) -> bool {
    hex::decode(signature).is_ok_and(|tag| mac.verify_slice(&tag).is_ok())
}

/// The hex `signature` out of `"{key}:{signature}"`, if it names `key`.
fn strip_key<'a>(auth: &'a str, key: &str) -> Option<&'a str> {
    auth.strip_prefix(key)?.strip_prefix(':')
}

/// HMAC-SHA256 of `data` keyed with `secret`, in lowercase hex.
pub fn hmac_sha256_hex(secret: &str, data: &[u8]) -> String {
    to_hex(mac(secret, &[data]))
}

fn channel_mac(
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> HmacSha256 {
    let mut mac = mac(secret, &[socket_id.as_bytes(), b":", channel.as_bytes()]);
    if let Some(data) = channel_data {
        mac.update(b":");
        mac.update(data.as_bytes());
    }
    mac
}

/// The `auth` that lets `socket_id` subscribe to `channel`: `"{key}:{hex}"`.
/// Presence channels sign their `channel_data` too.
pub fn channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    format!(
        "{key}:{}",
        to_hex(channel_mac(secret, socket_id, channel, channel_data))
    )
}

/// Whether `auth` is exactly [`channel_auth`]'s answer for these inputs.
/// Malformed values are simply false.
pub fn verify_channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> bool {
    strip_key(auth, key).is_some_and(|signature| {
        matches_hex(
            channel_mac(secret, socket_id, channel, channel_data),
            signature,
        )
    })
}

fn user_mac(secret: &str, socket_id: &str, user_data: &str) -> HmacSha256 {
    mac(
        secret,
        &[socket_id.as_bytes(), b"::user::", user_data.as_bytes()],
    )
}

/// The `auth` of a `pusher:signin` for `socket_id` as the user described by
/// `user_data` (JSON text): `"{key}:{hex}"`.
pub fn user_auth(key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    format!("{key}:{}", to_hex(user_mac(secret, socket_id, user_data)))
}

/// Whether `auth` is exactly [`user_auth`]'s answer for these inputs.
/// Malformed values are simply false.
pub fn verify_user_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> bool {
    strip_key(auth, key)
        .is_some_and(|signature| matches_hex(user_mac(secret, socket_id, user_data), signature))
}

/// The `X-Pusher-Signature` of a webhook whose body is `body`.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    hmac_sha256_hex(secret, body)
}

/// The MD5 of `body` in lowercase hex, as the API's `body_md5` carries it.
pub fn body_md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// An HTTP API request, as far as its signature covers it.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    /// The HTTP method, such as `POST` (any case).
    pub method: &'a str,
    /// The request path, such as `/apps/123/events`, without the query.
    pub path: &'a str,
    /// The query parameters, URL-decoded, in the order received.
    pub query: &'a [(String, String)],
    /// The request body.
    pub body: &'a [u8],
}

/// Why an HTTP API request's signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiAuthError {
    /// A parameter the signature needs is absent.
    #[error("the query parameter {0} is missing")]
    MissingParam(&'static str),
    /// A parameter appears more than once (keys compared case-insensitively).
    #[error("the query parameter {0} is given more than once")]
    DuplicateParam(String),
    /// `auth_key` is not this app's key.
    #[error("auth_key is not the key of this app")]
    UnknownKey,
    /// `auth_version` is not `1.0`.
    #[error("auth_version must be 1.0")]
    BadVersion,
    /// `auth_timestamp` is not an integer.
    #[error("auth_timestamp {0:?} is not a whole number of seconds since 1970")]
    BadTimestamp(String),
    /// `auth_timestamp` is too far from the server's clock.
    #[error(
        "auth_timestamp {timestamp} is more than {TIMESTAMP_GRACE_SECS} s from the server's clock {now}"
    )]
    Stale {
        /// The request's `auth_timestamp`.
        timestamp: i64,
        /// The server's clock, in Unix seconds.
        now: i64,
    },
    /// `body_md5` is not the MD5 of the body.
    #[error("body_md5 is not the MD5 of the request body")]
    BodyMd5,
    /// `auth_signature` does not sign this request with this app's secret.
    #[error(
        "auth_signature does not match the request (its method, path, parameters and the app's secret)"
    )]
    BadSignature,
}

/// The value of the query parameter `name` (compared case-insensitively).
fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The key named by the request (`auth_key`), for looking the app up first.
pub fn api_request_key(query: &[(String, String)]) -> Option<&str> {
    param(query, "auth_key")
}

/// `METHOD\nPATH\nQUERY`, the text an API request's signature covers.
fn string_to_sign(method: &str, path: &str, query: &[(String, String)]) -> String {
    let mut params: Vec<(String, &str)> = query
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .filter(|(k, _)| k != "auth_signature")
        .collect();
    params.sort_unstable();
    let mut out = format!("{}\n{path}\n", method.to_ascii_uppercase());
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The hex `auth_signature` of a request with these (URL-decoded) query
/// parameters; an `auth_signature` among them is left out.
pub fn sign_api_request(
    method: &str,
    path: &str,
    query: &[(String, String)],
    secret: &str,
) -> String {
    hmac_sha256_hex(secret, string_to_sign(method, path, query).as_bytes())
}

/// Checks a signed API request: [`verify_api_query`], then
/// [`verify_body_md5`].
pub fn verify_api_request(
    req: &ApiRequest<'_>,
    key: &str,
    secret: &str,
    now_unix: i64,
) -> Result<(), ApiAuthError> {
    verify_api_query(req.method, req.path, req.query, key, secret, now_unix)?;
    verify_body_md5(req.query, req.body)
}

/// Checks everything of a signed API request that is in its method, path
/// and query: no duplicated parameter, `auth_key` is `key`, `auth_version`
/// 1.0, `auth_timestamp` within [`TIMESTAMP_GRACE_SECS`] of `now_unix`, and
/// `auth_signature` signs them (compared in constant time). The signature
/// covers `body_md5`, so this runs before the body is read: an unsigned
/// request costs no body.
pub fn verify_api_query(
    method: &str,
    path: &str,
    query: &[(String, String)],
    key: &str,
    secret: &str,
    now_unix: i64,
) -> Result<(), ApiAuthError> {
    let mut names: Vec<String> = query.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    names.sort_unstable();
    if let Some(dup) = names.windows(2).find_map(|w| match w {
        [a, b] if a == b => Some(a),
        _ => None,
    }) {
        return Err(ApiAuthError::DuplicateParam(dup.clone()));
    }
    let required = |name: &'static str| param(query, name).ok_or(ApiAuthError::MissingParam(name));

    if required("auth_key")? != key {
        return Err(ApiAuthError::UnknownKey);
    }
    let signature = required("auth_signature")?;
    if required("auth_version")? != AUTH_VERSION {
        return Err(ApiAuthError::BadVersion);
    }
    let timestamp = required("auth_timestamp")?;
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| ApiAuthError::BadTimestamp(timestamp.to_owned()))?;
    if timestamp.abs_diff(now_unix) > TIMESTAMP_GRACE_SECS.unsigned_abs() {
        return Err(ApiAuthError::Stale {
            timestamp,
            now: now_unix,
        });
    }
    let text = string_to_sign(method, path, query);
    if matches_hex(mac(secret, &[text.as_bytes()]), signature) {
        Ok(())
    } else {
        Err(ApiAuthError::BadSignature)
    }
}

/// Checks the body against the signed `body_md5` (required for a
/// non-empty body).
pub fn verify_body_md5(query: &[(String, String)], body: &[u8]) -> Result<(), ApiAuthError> {
    match param(query, "body_md5") {
        None if body.is_empty() => Ok(()),
        None => Err(ApiAuthError::MissingParam("body_md5")),
        Some(md5) if md5.eq_ignore_ascii_case(&body_md5_hex(body)) => Ok(()),
        Some(_) => Err(ApiAuthError::BodyMd5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers computed with the official Node server SDK, `pusher`
    // 5.3.4 (`authorizeChannel`, `authenticateUser`, the signed URLs its
    // `trigger`/`get` send, `Token.sign` checked by `webhook().isValid()`),
    // with these credentials, socket id and `Date.now()` fixed at
    // 1700000000123 ms.
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const SOCKET: &str = "1234.1234";
    const TS: i64 = 1_700_000_000;

    type Query = Vec<(String, String)>;

    fn pairs(list: &[(&str, &str)]) -> Query {
        list.iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn sdk_private_channel_auth() {
        let auth =
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        assert_eq!(
            channel_auth(KEY, SECRET, SOCKET, "private-foobar", None),
            auth
        );
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            SOCKET,
            "private-foobar",
            None,
            auth
        ));
    }

    #[test]
    fn sdk_presence_channel_auth() {
        // The SDK's channel_data: JSON.stringify of the presence data.
        let data = r#"{"user_id":"10","user_info":{"name":"Mr. Channels"}}"#;
        let auth =
            "278d425bdf160c739803:4c6d8fc42a207ba96a0779844171b0bb819d96ffceef9609f5cce596ab17a800";
        assert_eq!(
            channel_auth(KEY, SECRET, SOCKET, "presence-foobar", Some(data)),
            auth
        );
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            SOCKET,
            "presence-foobar",
            Some(data),
            auth
        ));
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            SOCKET,
            "presence-foobar",
            None,
            auth
        ));
    }

    #[test]
    fn sdk_user_auth() {
        let data = r#"{"id":"12345","name":"Jane \"J\" Doe","watchlist":["a","b"]}"#;
        let auth =
            "278d425bdf160c739803:977a28acb7b02ea7ff65a70b8012f7c25bdbef6c27da0b3da452aba88242307f";
        assert_eq!(user_auth(KEY, SECRET, SOCKET, data), auth);
        assert!(verify_user_auth(KEY, SECRET, SOCKET, data, auth));
        assert!(!verify_user_auth(KEY, SECRET, "1234.1235", data, auth));
    }

    #[test]
    fn sdk_webhook_signature() {
        let body = br#"{"time_ms":1700000000123,"events":[{"name":"channel_occupied","channel":"test-channel"}]}"#;
        assert_eq!(
            webhook_signature(SECRET, body),
            "9741bd9415d1124b1dc51376ec4c5e0978efaeedae5e42af29045c255e96a27b"
        );
    }

    #[test]
    fn md5_known_answers() {
        assert_eq!(body_md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        let body = br#"{"name":"my-event","data":"{\"message\":\"hello world\"}","channels":["my-channel"]}"#;
        assert_eq!(body_md5_hex(body), "15d251b35306a6da7efa515a0e971f80");
    }

    /// An SDK request: its method, path, query pairs (in the SDK's order,
    /// `auth_signature` last) and body.
    struct SdkRequest {
        method: &'static str,
        path: &'static str,
        query: Vec<(String, String)>,
        body: &'static [u8],
    }

    impl SdkRequest {
        fn req(&self) -> ApiRequest<'_> {
            ApiRequest {
                method: self.method,
                path: self.path,
                query: &self.query,
                body: self.body,
            }
        }
    }

    fn sdk_requests() -> Vec<SdkRequest> {
        let auth = |extra: &[(&str, &str)], sig: &str| {
            let mut q = pairs(&[
                ("auth_key", KEY),
                ("auth_timestamp", "1700000000"),
                ("auth_version", "1.0"),
            ]);
            q.extend(pairs(extra));
            q.push(("auth_signature".to_owned(), sig.to_owned()));
            q
        };
        vec![
            // pusher.trigger("my-channel", "my-event", {message: "hello world"})
            SdkRequest {
                method: "POST",
                path: "/apps/123456/events",
                query: auth(
                    &[("body_md5", "15d251b35306a6da7efa515a0e971f80")],
                    "a606fd4f686f24316e74a2344745fa44bdade94878bc822826ab19c97c2a7b19",
                ),
                body: br#"{"name":"my-event","data":"{\"message\":\"hello world\"}","channels":["my-channel"]}"#,
            },
            // pusher.trigger(["private-a", "presence-b"], "client-ish",
            //   "h\u00e9llo \"x\"\n\u2603", {socket_id: "1234.1234"})
            SdkRequest {
                method: "POST",
                path: "/apps/123456/events",
                query: auth(
                    &[("body_md5", "0b1cda5a5307b489b9fdd171a027c63c")],
                    "28ed1f23ca11679ae0159e3a33ee7e5f7afbe8359e8cd3de4b63dd8fa11f696e",
                ),
                body: "{\"name\":\"client-ish\",\"data\":\"h\u{e9}llo \\\"x\\\"\\n\u{2603}\",\
                       \"channels\":[\"private-a\",\"presence-b\"],\"socket_id\":\"1234.1234\"}"
                    .as_bytes(),
            },
            // pusher.get({path: "/channels", params: {filter_by_prefix: "presence-", info: "user_count"}})
            SdkRequest {
                method: "GET",
                path: "/apps/123456/channels",
                query: auth(
                    &[("filter_by_prefix", "presence-"), ("info", "user_count")],
                    "13a547c276949fba41bc65d512f0ee751f009a30cd0cd862588653613dfad085",
                ),
                body: b"",
            },
            // pusher.get({path: "/channels", params: {info: "subscription_count,user_count",
            //   filter_by_prefix: "private-"}})
            SdkRequest {
                method: "GET",
                path: "/apps/123456/channels",
                query: auth(
                    &[("filter_by_prefix", "private-"), ("info", "subscription_count,user_count")],
                    "1629d76a88cb4089859e060fb8472011934a55aa33f7c008d5305adbdacc0cf5",
                ),
                body: b"",
            },
            // pusher.get({path: "/channels/presence-foobar/users"})
            SdkRequest {
                method: "GET",
                path: "/apps/123456/channels/presence-foobar/users",
                query: auth(&[], "acedcbe2cb37868e428da46bd38d34c25958d6f78527d85c0e46459b8f5a9b4d"),
                body: b"",
            },
        ]
    }

    #[test]
    fn sdk_api_requests_verify() {
        for r in sdk_requests() {
            let req = r.req();
            assert_eq!(api_request_key(req.query), Some(KEY));
            assert_eq!(
                verify_api_request(&req, KEY, SECRET, TS),
                Ok(()),
                "{}",
                r.path
            );
            assert_eq!(verify_api_request(&req, KEY, SECRET, TS + 600), Ok(()));
            assert_eq!(verify_api_request(&req, KEY, SECRET, TS - 600), Ok(()));
            let signature = param(req.query, "auth_signature").unwrap_or_default();
            assert_eq!(
                sign_api_request(req.method, req.path, req.query, SECRET),
                signature
            );
            // The order received does not matter, nor the method's case.
            let mut shuffled = r.query.clone();
            shuffled.reverse();
            let req = ApiRequest {
                query: &shuffled,
                method: "get",
                ..req
            };
            let want = if r.method == "GET" {
                Ok(())
            } else {
                Err(ApiAuthError::BadSignature)
            };
            assert_eq!(verify_api_request(&req, KEY, SECRET, TS), want);
        }
    }

    #[test]
    fn api_request_refusals() {
        let sdk = sdk_requests();
        let post = &sdk[0];
        let check = |edit: &dyn Fn(&mut Query), want: ApiAuthError| {
            let mut query = post.query.clone();
            edit(&mut query);
            let req = ApiRequest {
                query: &query,
                ..post.req()
            };
            assert_eq!(verify_api_request(&req, KEY, SECRET, TS), Err(want));
        };
        let set = |name: &'static str, value: &'static str| {
            move |q: &mut Query| {
                for (k, v) in q.iter_mut() {
                    if k == name {
                        *v = value.to_owned();
                    }
                }
            }
        };
        let without = |name: &'static str| move |q: &mut Query| q.retain(|(k, _)| k != name);
        for name in [
            "auth_key",
            "auth_signature",
            "auth_version",
            "auth_timestamp",
        ] {
            check(&without(name), ApiAuthError::MissingParam(name));
        }
        // The signature covers body_md5, and is checked first (before the
        // body is read): an edited or missing body_md5 breaks it.
        check(&without("body_md5"), ApiAuthError::BadSignature);
        check(&set("auth_key", "other"), ApiAuthError::UnknownKey);
        check(&set("auth_version", "2.0"), ApiAuthError::BadVersion);
        check(
            &set("auth_timestamp", "17e8"),
            ApiAuthError::BadTimestamp("17e8".into()),
        );
        check(
            &set("auth_timestamp", ""),
            ApiAuthError::BadTimestamp(String::new()),
        );
        check(
            &set("auth_timestamp", "99999999999999999999"),
            ApiAuthError::BadTimestamp("99999999999999999999".into()),
        );
        check(
            &set("auth_timestamp", "1699999399"),
            ApiAuthError::Stale {
                timestamp: 1_699_999_399,
                now: TS,
            },
        );
        check(
            &set("auth_timestamp", "-9223372036854775808"),
            ApiAuthError::Stale {
                timestamp: i64::MIN,
                now: TS,
            },
        );
        check(
            &set("body_md5", "d41d8cd98f00b204e9800998ecf8427e"),
            ApiAuthError::BadSignature,
        );
        // A body that is not the signed one.
        assert_eq!(
            verify_body_md5(&post.query, b"another body"),
            Err(ApiAuthError::BodyMd5)
        );
        let no_md5: Query = post
            .query
            .iter()
            .filter(|(k, _)| k != "body_md5")
            .cloned()
            .collect();
        assert_eq!(
            verify_body_md5(&no_md5, b"x"),
            Err(ApiAuthError::MissingParam("body_md5"))
        );
        assert_eq!(verify_body_md5(&no_md5, b""), Ok(()));
        for sig in [
            "",
            "zz",
            "a606",
            "b606fd4f686f24316e74a2344745fa44bdade94878bc822826ab19c97c2a7b19",
            "a606fd4f686f24316e74a2344745fa44bdade94878bc822826ab19c97c2a7b1900",
            "a606fd4f686f24316e74a2344745fa44bdade94878bc822826ab19c97c2a7b1",
            "\u{e9}606fd4f686f24316e74a2344745fa44bdade94878bc822826ab19c97c2a7b1",
        ] {
            check(&set("auth_signature", sig), ApiAuthError::BadSignature);
        }
        // A parameter the SDK did not sign.
        check(
            &|q| q.push(("info".into(), "user_count".into())),
            ApiAuthError::BadSignature,
        );
        check(
            &|q| q.push(("AUTH_key".into(), KEY.into())),
            ApiAuthError::DuplicateParam("auth_key".into()),
        );
        // Another body, path or method than the one signed.
        let req = ApiRequest {
            body: b"{}",
            ..post.req()
        };
        assert_eq!(
            verify_api_request(&req, KEY, SECRET, TS),
            Err(ApiAuthError::BodyMd5)
        );
        let req = ApiRequest {
            path: "/apps/123457/events",
            ..post.req()
        };
        assert_eq!(
            verify_api_request(&req, KEY, SECRET, TS),
            Err(ApiAuthError::BadSignature)
        );
        let req = ApiRequest {
            method: "PUT",
            ..post.req()
        };
        assert_eq!(
            verify_api_request(&req, KEY, SECRET, TS),
            Err(ApiAuthError::BadSignature)
        );
        assert_eq!(
            verify_api_request(&post.req(), KEY, "another secret", TS),
            Err(ApiAuthError::BadSignature)
        );
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let stale = ApiAuthError::Stale {
            timestamp: 1_700_000_000,
            now: 1_700_000_900,
        };
        assert_eq!(
            stale.to_string(),
            "auth_timestamp 1700000000 is more than 600 s from the server's clock 1700000900"
        );
        assert_eq!(
            ApiAuthError::MissingParam("body_md5").to_string(),
            "the query parameter body_md5 is missing"
        );
        assert_eq!(
            ApiAuthError::BadTimestamp("soon".into()).to_string(),
            "auth_timestamp \"soon\" is not a whole number of seconds since 1970"
        );
    }

    #[test]
    fn empty_body_md5_is_optional_but_checked() {
        let path = "/apps/1/channels";
        let signed = |extra: &[(&str, &str)]| {
            let mut q = pairs(&[
                ("auth_key", "k"),
                ("auth_timestamp", "100"),
                ("auth_version", "1.0"),
            ]);
            q.extend(pairs(extra));
            let sig = sign_api_request("GET", path, &q, "s");
            q.push(("auth_signature".into(), sig));
            q
        };
        let verify = |q: &[(String, String)]| {
            verify_api_request(
                &ApiRequest {
                    method: "GET",
                    path,
                    query: q,
                    body: b"",
                },
                "k",
                "s",
                100,
            )
        };
        assert_eq!(verify(&signed(&[])), Ok(()));
        assert_eq!(
            verify(&signed(&[("body_md5", "d41d8cd98f00b204e9800998ecf8427e")])),
            Ok(())
        );
        assert_eq!(
            verify(&signed(&[("body_md5", "D41D8CD98F00B204E9800998ECF8427E")])),
            Ok(())
        );
        assert_eq!(
            verify(&signed(&[("body_md5", "15d251b35306a6da7efa515a0e971f80")])),
            Err(ApiAuthError::BodyMd5)
        );
    }

    #[test]
    fn api_signing_uses_decoded_values_and_lowercased_keys() {
        // What an SDK signs for `?Info=a%20b%26c%3Dd&auth_key=k`: the raw value.
        let query = pairs(&[("Info", "a b&c=d"), ("auth_key", "k")]);
        assert_eq!(
            string_to_sign("post", "/p", &query),
            "POST\n/p\nauth_key=k&info=a b&c=d"
        );
        let with_sig = pairs(&[("auth_signature", "x"), ("b", "2"), ("a", "1")]);
        assert_eq!(string_to_sign("GET", "/p", &with_sig), "GET\n/p\na=1&b=2");
        assert_eq!(string_to_sign("GET", "/p", &[]), "GET\n/p\n");
    }

    #[test]
    fn auth_strings_are_checked_strictly() {
        let good = channel_auth(KEY, SECRET, SOCKET, "private-foobar", None);
        let hex = good.split_once(':').map(|(_, h)| h).unwrap_or_default();
        let upper = format!("{KEY}:{}", hex.to_ascii_uppercase());
        let bad = [
            String::new(),
            ":".into(),
            KEY.into(),
            format!("{KEY}:"),
            format!("{KEY}{hex}"),
            format!("other:{hex}"),
            format!(":{hex}"),
            format!("{KEY}::{hex}"),
            format!(" {KEY}:{hex}"),
            format!("{KEY}:{hex} "),
            format!("{KEY}:{hex}00"),
            format!("{KEY}:{}", &hex[..63]),
            format!("{KEY}:{}", &hex[..62]),
            format!("{KEY}:{}g", &hex[..63]),
            format!("{KEY}:{}\u{e9}", &hex[..62]),
        ];
        for auth in &bad {
            assert!(
                !verify_channel_auth(KEY, SECRET, SOCKET, "private-foobar", None, auth),
                "{auth:?}"
            );
            assert!(
                !verify_user_auth(KEY, SECRET, SOCKET, "{}", auth),
                "{auth:?}"
            );
        }
        // Hex digits are case-insensitive; the MAC is the same.
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            SOCKET,
            "private-foobar",
            None,
            &upper
        ));
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            SOCKET,
            "private-foobaz",
            None,
            &good
        ));
        assert!(!verify_channel_auth(
            KEY,
            "other",
            SOCKET,
            "private-foobar",
            None,
            &good
        ));
        // A key with a colon in it still splits at the right place.
        let odd = channel_auth("a:b", "s", "1.1", "private-x", None);
        assert!(verify_channel_auth(
            "a:b",
            "s",
            "1.1",
            "private-x",
            None,
            &odd
        ));
        assert!(!verify_channel_auth(
            "a",
            "s",
            "1.1",
            "private-x",
            None,
            &odd
        ));
    }

    #[test]
    fn hmac_known_answer_rfc4231() {
        // RFC 4231 test case 2, and a key longer than SHA-256's block.
        assert_eq!(
            hmac_sha256_hex("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long_key = "k".repeat(200);
        assert_eq!(hmac_sha256_hex(&long_key, b"x").len(), 64);
    }
}
