//! `https://` and `wss://` on the gateway port (`http_server.tls`) with a
//! self-signed certificate made by rcgen: the WebSocket endpoint and the
//! server API over TLS, plain HTTP to the TLS port, clients that never
//! finish the handshake, and shutdown with a handshake pending.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use wshub_config::Config;
use wshub_hub::broker::{MemoryBroker, MemoryBrokerConfig};
use wshub_hub::node::Node;
use wshub_protocol::Encoding;
use wshub_server::TLS_HANDSHAKE_FAILURES;
use wshub_ws::{ClientOptions, TlsOptions};

use crate::support::{dev_config, Client, T};

const API_KEY: &str = "tls-k3y";

/// A certificate for `127.0.0.1` and `localhost`: (cert PEM, key PEM, DER).
fn self_signed() -> (String, String, CertificateDer<'static>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    (
        ck.cert.pem(),
        ck.key_pair.serialize_pem(),
        ck.cert.der().clone(),
    )
}

struct TlsServer {
    addr: SocketAddr,
    node: Arc<Node>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Development defaults, anonymous clients, an API key, TLS from raw PEM.
fn tls_config() -> (Config, String, CertificateDer<'static>) {
    let (cert, key, der) = self_signed();
    let mut c = dev_config();
    c.http_api.insecure = false;
    c.http_api.key = API_KEY.into();
    c.http_server.tls.enabled = true;
    c.http_server.tls.cert_pem = cert.clone();
    c.http_server.tls.key_pem = key;
    (c, cert, der)
}

async fn start_tls(handshake_timeout: Duration) -> TlsServer {
    let (config, cert_pem, cert_der) = tls_config();
    start_with(config, cert_pem, cert_der, handshake_timeout).await
}

async fn start_with(
    config: Config,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    handshake_timeout: Duration,
) -> TlsServer {
    let broker = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
    let server = wshub_server::Server::bind(config, broker, "127.0.0.1:0")
        .await
        .expect("bind")
        .tls_handshake_timeout(handshake_timeout);
    assert!(server.is_tls());
    assert_eq!(server.scheme(), "https");
    let addr = server.local_addr();
    let node = server.node().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    TlsServer {
        addr,
        node,
        cert_pem,
        cert_der,
        stop: Some(tx),
        task,
    }
}

impl TlsServer {
    fn wss_url(&self) -> String {
        format!("wss://127.0.0.1:{}/connection/websocket", self.addr.port())
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions::default().tls(
            TlsOptions::default()
                .use_native_roots(false)
                .extra_ca_pem(self.cert_pem.clone()),
        )
    }

    /// The failure counter for `reason` as `/metrics` exposes it.
    fn failures(&self, reason: &str) -> u64 {
        let series = format!("{TLS_HANDSHAKE_FAILURES}{{reason=\"{reason}\"}} ");
        let text = self.node.metrics_text();
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.parse().ok())
            .unwrap_or_else(|| panic!("{series} not exposed:\n{text}"))
    }

    /// Waits (bounded) until the failure counter for `reason` reaches `n`.
    async fn wait_failures(&self, reason: &str, n: u64) {
        let deadline = Instant::now() + T;
        while self.failures(reason) < n {
            assert!(
                Instant::now() < deadline,
                "{reason} failures stayed at {} (want {n})",
                self.failures(reason)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `POST path` over HTTPS with hyper; returns status, body and the
    /// negotiated ALPN protocol.
    async fn https_post(
        &self,
        path: &str,
        body: &str,
        api_key: Option<&str>,
    ) -> (u16, String, Option<Vec<u8>>) {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let body = body.to_owned();
        let path = path.to_owned();
        let addr = self.addr;
        let api_key = api_key.map(str::to_owned);
        tokio::time::timeout(T, async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let tls = TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
                .expect("TLS handshake");
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            // The server picks h2 when offered (HTTP/2 on the same port).
            let mut req = if alpn.as_deref() == Some(b"h2") {
                hyper::Request::post(format!("https://{addr}{path}"))
            } else {
                hyper::Request::post(path).header("host", addr.to_string())
            }
            .header("content-type", "application/json");
            if let Some(k) = api_key {
                req = req.header("x-api-key", k);
            }
            let req = req.body(Full::new(Bytes::from(body))).unwrap();
            let resp = if alpn.as_deref() == Some(b"h2") {
                let (mut sender, conn) = hyper::client::conn::http2::handshake(
                    hyper_util::rt::TokioExecutor::new(),
                    TokioIo::new(tls),
                )
                .await
                .unwrap();
                tokio::spawn(conn);
                sender.send_request(req).await.unwrap()
            } else {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                sender.send_request(req).await.unwrap()
            };
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&bytes).into_owned(), alpn)
        })
        .await
        .expect("HTTPS request timed out")
    }

    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(T, &mut self.task)
            .await
            .expect("shutdown timed out")
            .expect("server task panicked");
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Asserts the Centrifugo connect command works over `wss://`.
async fn wss_connect(srv: &TlsServer) {
    let mut c = Client::open_with(&srv.wss_url(), srv.client_options(), Encoding::Json).await;
    assert!(c.ws.get_ref().is_tls());
    let r = c.call(r#""connect":{}"#).await;
    let connect = r
        .connect
        .as_ref()
        .unwrap_or_else(|| panic!("no connect result: {r:?}"));
    assert!(!connect.client.is_empty());
}

/// Reads until EOF (bounded by `T`); returns what arrived.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("the server did not close the connection")
        .expect("read");
    out
}

#[tokio::test]
async fn wss_connect_and_https_api() {
    let srv = start_tls(Duration::from_secs(10)).await;
    wss_connect(&srv).await;

    let (status, body, alpn) = srv.https_post("/api/info", "{}", Some(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    // Offered h2 and http/1.1, the server picks h2 (the API over HTTP/2).
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let nodes = v["result"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes[0]["num_clients"], 0, "{v}");
    let (status, _, _) = srv.https_post("/api/info", "{}", None).await;
    assert_eq!(status, 401);
    let (status, _, _) = srv.https_post("/api/info", "{}", Some("not-the-key")).await;
    assert_eq!(status, 401);

    assert_eq!(srv.failures("error"), 0);
    assert_eq!(srv.failures("timeout"), 0);
    srv.shutdown().await;
}

#[tokio::test]
async fn plain_http_to_tls_port_gets_400_and_others_are_served() {
    let srv = start_tls(Duration::from_secs(10)).await;
    // Plain HTTP: a readable 400, then the server closes.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let req = format!(
        "POST /api/info HTTP/1.1\r\nHost: {}\r\nX-API-Key: {API_KEY}\r\n\
         Content-Length: 2\r\n\r\n{{}}",
        srv.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let answer = String::from_utf8(read_until_closed(&mut s).await).unwrap();
    assert!(answer.starts_with("HTTP/1.0 400 "), "{answer:?}");
    assert!(
        answer.ends_with("HTTP request to an HTTPS server.\n"),
        "{answer:?}"
    );
    srv.wait_failures("not_tls", 1).await;

    // Bytes that are neither TLS nor HTTP: closed without an answer.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"\x00\x01\x02garbage").await.unwrap();
    assert!(read_until_closed(&mut s).await.is_empty());
    srv.wait_failures("not_tls", 2).await;

    // A TLS client that does not trust the certificate: the handshake
    // fails on both sides.
    let untrusting = ClientOptions::default().tls(TlsOptions::default().use_native_roots(false));
    let r = tokio::time::timeout(T, wshub_ws::connect(&srv.wss_url(), &untrusting))
        .await
        .expect("connect timed out");
    assert!(r.is_err(), "an untrusted certificate was accepted");
    srv.wait_failures("error", 1).await;

    // Everyone else is still served.
    wss_connect(&srv).await;
    let (status, body, _) = srv.https_post("/api/info", "{}", Some(API_KEY)).await;
    assert_eq!(status, 200, "{body}");
    srv.shutdown().await;
}

#[tokio::test]
async fn client_that_never_finishes_the_handshake_is_dropped() {
    let timeout = Duration::from_millis(300);
    let srv = start_tls(timeout).await;

    // Connects and sends nothing.
    let t0 = Instant::now();
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    // Sends the first bytes of a ClientHello record, then stalls.
    let mut stalled = TcpStream::connect(srv.addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    // Meanwhile a real client is served.
    wss_connect(&srv).await;

    assert!(read_until_closed(&mut silent).await.is_empty());
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(T, stalled.read_to_end(&mut rest))
        .await
        .expect("the stalled handshake was not dropped");
    assert!(
        t0.elapsed() >= timeout - Duration::from_millis(50),
        "dropped before the timeout: {:?}",
        t0.elapsed()
    );
    srv.wait_failures("timeout", 2).await;
    assert!(srv
        .node
        .metrics_text()
        .contains(&format!("{TLS_HANDSHAKE_FAILURES}{{reason=\"timeout\"}} 2")));
    srv.shutdown().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_pending_handshakes() {
    let (mut config, cert, der) = tls_config();
    config.shutdown.timeout = Duration::from_secs(8).into();
    let srv = start_with(config, cert, der, Duration::from_secs(60)).await;
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    wss_connect(&srv).await;
    let t0 = Instant::now();
    srv.shutdown().await;
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?} for a pending handshake",
        t0.elapsed()
    );
    assert!(read_until_closed(&mut silent).await.is_empty());
}

#[tokio::test]
async fn unusable_certificate_fails_at_bind() {
    let (mut config, _, _) = tls_config();
    config.http_server.tls.key_pem = "/no/such/key.pem".into();
    let broker = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
    let err = wshub_server::Server::bind(config, broker, "127.0.0.1:0")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("http_server.tls.key_pem"), "{msg}");

    let (mut config, _, _) = tls_config();
    config.http_server.tls.cert_pem = "-----BEGIN CERTIFICATE-----\nnope\n".into();
    let broker = Arc::new(MemoryBroker::new(MemoryBrokerConfig::default()));
    let err = wshub_server::Server::bind(config, broker, "127.0.0.1:0")
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("cannot set up TLS"), "{err}");
}
