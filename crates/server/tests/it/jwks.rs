//! `client.token.jwks_public_endpoint` end to end: the server fetches the
//! key set over real HTTP (its `HttpJwksFetcher`) and a client connects
//! with a token signed by one of its keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{dev_config, start, Client};

/// The hub's test keys: `jwks.json` holds the public half of
/// `ec256_private.pem` as kid `ec-256`.
const JWKS: &str = include_str!("../../../hub/src/auth/testdata/jwks.json");
const EC256_PRIV: &str = include_str!("../../../hub/src/auth/testdata/ec256_private.pem");

/// Serves the key set at `/jwks` to any number of connections; counts them.
async fn jwks_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
            }
            let resp = if buf.starts_with(b"GET /jwks ") {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{JWKS}",
                    JWKS.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_owned()
            };
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (url, hits)
}

fn es256(kid: &str, sub: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let key = EncodingKey::from_ec_pem(EC256_PRIV.as_bytes()).unwrap();
    let claims = serde_json::json!({ "sub": sub, "channels": ["news"] });
    encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn connect_with_a_token_signed_by_a_key_of_the_jwks() {
    let (url, hits) = jwks_server().await;
    let mut cfg = dev_config();
    cfg.client.allow_anonymous_connect_without_token = false;
    cfg.client.token.jwks_public_endpoint = url;
    let srv = start(cfg).await;

    let mut c = Client::open(&srv.ws_url()).await;
    let token = es256("ec-256", "jwks-user");
    let r = c.call(&format!(r#""connect":{{"token":"{token}"}}"#)).await;
    let res = r.connect.expect("connect ok");
    let info = srv.api("presence", r#"{"channel":"news"}"#).await;
    assert_eq!(info["result"]["presence"][&res.client]["user"], "jwks-user");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "fetched once");

    // The second connection uses the cached set.
    let mut c2 = Client::open(&srv.ws_url()).await;
    let r = c2
        .call(&format!(r#""connect":{{"token":"{token}"}}"#))
        .await;
    assert!(r.connect.is_some());
    assert_eq!(hits.load(Ordering::SeqCst), 1, "cached");

    // A kid the set does not have is refused (invalid token).
    let mut bad = Client::open(&srv.ws_url()).await;
    let unknown = es256("nope", "x");
    bad.send_text(&format!(r#"{{"id":1,"connect":{{"token":"{unknown}"}}}}"#))
        .await;
    assert_eq!(bad.closed().await.0, 3500);
    srv.shutdown().await;
}
