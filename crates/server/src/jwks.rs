//! The JWKS key source over HTTP(S): [`HttpJwksFetcher`], the
//! [`JwksFetcher`] that [`Server`](crate::Server) gives its node.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use wshub_hub::auth::{JwksError, JwksFetcher};

/// Fetches JWKS documents with `reqwest` over HTTP, or HTTPS (rustls with
/// the ring provider and the bundled Mozilla roots). Like Centrifugo: a
/// 1 second timeout per attempt (connect, TLS, request and body) and 2
/// attempts. Only a `200` answer is a key set; redirects are not followed;
/// bodies over 1 MiB are refused. HTTP/1.1, straight to the host: proxy
/// environment variables are not used (give a client with
/// [`HttpJwksFetcher::with_client`] for that).
#[derive(Clone)]
pub struct HttpJwksFetcher {
    client: Option<reqwest::Client>,
    timeout: Duration,
    attempts: u32,
    max_body: usize,
}

impl fmt::Debug for HttpJwksFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpJwksFetcher")
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl Default for HttpJwksFetcher {
    fn default() -> Self {
        HttpJwksFetcher::new()
    }
}

impl HttpJwksFetcher {
    /// With the bundled Mozilla root certificates.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("wshub")
            .no_proxy()
            .build();
        if let Err(e) = &client {
            // Only a broken TLS backend makes the builder fail; each fetch
            // then reports it.
            tracing::error!(error = %e, "cannot build the JWKS HTTP client");
        }
        HttpJwksFetcher {
            client: client.ok(),
            timeout: Duration::from_secs(1),
            attempts: 2,
            max_body: 1 << 20,
        }
    }

    /// Use this client (for example one that trusts a private CA, or goes
    /// through a proxy). The timeout, attempts and body limit still apply.
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Timeout of one attempt (connect, TLS, request and body).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Number of attempts (at least 1).
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }

    /// The largest body accepted, in bytes (default 1 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    async fn get_once(&self, client: &reqwest::Client, url: &str) -> Result<Bytes, JwksError> {
        let err = |what: &str, e: &dyn fmt::Display| JwksError(format!("{what}: {e}"));
        let mut resp = client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    err("connect", &error_chain(&e))
                } else {
                    err("request", &error_chain(&e))
                }
            })?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(JwksError(format!("HTTP status {}", resp.status())));
        }
        let too_big = || JwksError(format!("body: larger than {} bytes", self.max_body));
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(too_big());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| err("body", &error_chain(&e)))?
        {
            if body.len() + chunk.len() > self.max_body {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// An error with its sources: reqwest's own message is often only
/// "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[async_trait]
impl JwksFetcher for HttpJwksFetcher {
    /// Cancel safety: dropping the future abandons the request.
    async fn fetch(&self, url: &str) -> Result<Bytes, JwksError> {
        let parsed = url::Url::parse(url).map_err(|e| JwksError(format!("bad URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(JwksError("URL must be http:// or https://".into()));
        }
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| JwksError("the HTTP client could not be built".into()))?;
        let mut last = JwksError("no attempt".into());
        for _ in 0..self.attempts {
            match tokio::time::timeout(self.timeout, self.get_once(client, url)).await {
                Ok(Ok(body)) => return Ok(body),
                Ok(Err(e)) => last = e,
                Err(_) => last = JwksError(format!("timed out after {:?}", self.timeout)),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    //! Against a real HTTP server on 127.0.0.1.

    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use wshub_config::TokenConfig;
    use wshub_hub::auth::{JwksOptions, TokenVerifier};

    use super::*;

    /// A key set with one usable EC P-256 key (`ec-1`) and one skipped
    /// (`use: enc`).
    const JWKS: &str = r#"{"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
         "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        {"kty": "EC", "crv": "P-256", "kid": "ec-enc", "use": "enc",
         "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
    ]}"#;

    /// Serves `n` connections, one request each, answering with
    /// `answer(request head)`; returns the address and the heads seen.
    async fn serve(
        n: usize,
        answer: fn(&str) -> Vec<u8>,
    ) -> (
        std::net::SocketAddr,
        Arc<Mutex<Vec<String>>>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = requests.clone();
        let server = tokio::spawn(async move {
            for _ in 0..n {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut got = 0;
                while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => got += k,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..got]).to_string();
                let resp = answer(&head);
                seen.lock().unwrap().push(head);
                let _ = sock.write_all(&resp).await;
                let _ = sock.shutdown().await;
            }
        });
        (addr, requests, server)
    }

    fn ok(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn fetches_over_http_and_feeds_the_verifier() {
        let (addr, requests, server) = serve(3, |head| {
            if head.starts_with("GET /.well-known/jwks.json?realm=x HTTP/1.1\r\n") {
                ok(JWKS)
            } else {
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec()
            }
        })
        .await;
        let fetcher = HttpJwksFetcher::new().timeout(Duration::from_secs(5));
        let url = format!("http://{addr}/.well-known/jwks.json?realm=x");
        let body = fetcher.fetch(&url).await.unwrap();
        assert_eq!(body.as_ref(), JWKS.as_bytes());
        let head = requests.lock().unwrap()[0].to_ascii_lowercase();
        assert!(head.contains(&format!("host: {addr}")), "{head}");
        assert!(head.contains("accept: application/json"), "{head}");

        // Through the verifier's cache: the usable key only.
        let mut cfg = TokenConfig::default();
        cfg.jwks_public_endpoint = url.clone();
        let v = TokenVerifier::with_jwks_fetcher(
            &cfg,
            Arc::new(fetcher.clone()),
            JwksOptions::default(),
        )
        .unwrap();
        let cache = v.jwks().unwrap();
        assert_eq!(cache.refresh().await.unwrap(), 1);
        assert_eq!(cache.kids(), ["ec-1"]);

        // A 404 is an error (one attempt, so the server sees one request).
        let err = fetcher
            .attempts(1)
            .fetch(&format!("http://{addr}/missing"))
            .await
            .unwrap_err();
        assert!(err.0.contains("404"), "{err}");
        server.await.unwrap();
        assert_eq!(requests.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn refuses_big_bodies_redirects_and_slow_servers() {
        // Declared too big.
        let (addr, _, server) = serve(1, |_| ok(&"x".repeat(2048))).await;
        let f = HttpJwksFetcher::new().attempts(1).max_body(1024);
        let err = f.fetch(&format!("http://{addr}/")).await.unwrap_err();
        assert!(err.0.contains("larger than 1024"), "{err}");
        server.await.unwrap();

        // Too big without a length (chunked): counted while read.
        let (addr, _, server) = serve(1, |_| {
            let chunk = "x".repeat(800);
            format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                 320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
            )
            .into_bytes()
        })
        .await;
        let err = f.fetch(&format!("http://{addr}/")).await.unwrap_err();
        assert!(err.0.contains("larger than 1024"), "{err}");
        server.await.unwrap();

        // A redirect is not followed.
        let (addr, requests, server) = serve(1, |_| {
            b"HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:9/\r\ncontent-length: 0\r\n\r\n"
                .to_vec()
        })
        .await;
        let err = f.fetch(&format!("http://{addr}/")).await.unwrap_err();
        assert!(err.0.contains("302"), "{err}");
        server.await.unwrap();
        assert_eq!(requests.lock().unwrap().len(), 1);

        // A server that never answers: each attempt times out.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let f = HttpJwksFetcher::new()
            .attempts(2)
            .timeout(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = f.fetch(&format!("http://{addr}/")).await.unwrap_err();
        assert!(err.0.contains("timed out"), "{err}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "{took:?}"
        );
        drop(silent);
    }

    #[tokio::test]
    async fn reports_refused_connections_and_bad_urls() {
        // Bind then drop to get a port that nothing listens on.
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let f = HttpJwksFetcher::new().timeout(Duration::from_secs(2));
        let err = f.fetch(&format!("http://{addr}/jwks")).await.unwrap_err();
        assert!(err.0.contains("connect"), "{err}");
        assert!(f.fetch("file:///etc/passwd").await.is_err());
        assert!(f.fetch("not a url").await.is_err());
    }
}
