//! The HTTP/3 front: a QUIC endpoint (quinn) on the HTTP port number (UDP)
//! when `http_server.http3.enabled` (TLS required: QUIC is TLS 1.3 only,
//! ALPN `h3`). Each QUIC connection holds a socket permit under
//! `http_server.max_connections` like a TCP one, completes its handshake
//! within `http_server.tls_handshake_timeout` (else it is dropped and
//! counted in [`QUIC_HANDSHAKE_FAILURES`](crate::QUIC_HANDSHAKE_FAILURES)),
//! and is served by h3:
//!
//! - `CONNECT` with `:protocol = webtransport` at `webtransport.handler_prefix`
//!   (with `webtransport.enabled`): the origin and per-IP checks of every
//!   real-time endpoint, then a WebTransport session (`server::webtransport`).
//!   The session takes the connection (one session per connection, as
//!   browsers open them);
//! - anything else is answered `404` with a short text.
//!
//! QUIC itself bounds what a peer can make the node do before it proves
//! its address: at most three times the bytes received (RFC 9000 §8.1,
//! quinn's default), and streams and bytes per connection by the transport
//! parameters set from [`QuicLimits`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use wshub_protocol::Encoding;

use crate::admission::{HttpVersion, SocketPermit};
use crate::{ServerError, Shared};

/// The transport limits of the QUIC endpoint.
#[derive(Debug, Clone)]
pub(crate) struct QuicLimits {
    /// Bidirectional streams a peer may have open at once.
    pub max_streams: u32,
    /// A connection with no packet for this long is closed.
    pub idle_timeout: Duration,
    /// Handshake bound (`http_server.tls_handshake_timeout`).
    pub handshake_timeout: Duration,
}

/// The rustls configuration for QUIC from the PEM chain and key: TLS 1.3
/// only, ALPN `h3`.
pub(crate) fn tls_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<rustls::ServerConfig, ServerError> {
    let err = |e: &dyn std::fmt::Display| ServerError::Tls(format!("HTTP/3: {e}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| err(&e))?;
    if certs.is_empty() {
        return Err(err(&"no certificate in the certificate PEM"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| err(&e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(&e))?;
    cfg.alpn_protocols = vec![b"h3".to_vec()];
    cfg.max_early_data_size = 0;
    Ok(cfg)
}

/// Binds the QUIC endpoint at `addr` (UDP).
pub(crate) fn bind(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    limits: &QuicLimits,
) -> Result<quinn::Endpoint, ServerError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| ServerError::Tls(format!("HTTP/3: {e}")))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(limits.max_streams))
        // The peer's control and QPACK streams, and WebTransport's.
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(16))
        .stream_receive_window(quinn::VarInt::from_u32(256 * 1024))
        .receive_window(quinn::VarInt::from_u32(1024 * 1024))
        .send_window(1024 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(15)));
    if let Ok(idle) = quinn::IdleTimeout::try_from(limits.idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    cfg.transport_config(Arc::new(t));
    quinn::Endpoint::server(cfg, addr).map_err(|source| ServerError::Bind {
        addr: format!("udp/{addr}"),
        source,
    })
}

/// Accepts QUIC connections until the shutdown, each in its own task.
pub(crate) async fn run(shared: Arc<Shared>, endpoint: quinn::Endpoint, limits: QuicLimits) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => break,
        };
        let Some(permit) = shared.admission.try_admit() else {
            // Over the cap: refused before any state is kept for it.
            incoming.refuse();
            shared
                .admission
                .count_refused(crate::admission::Refusal::MaxConnections);
            continue;
        };
        let shared = shared.clone();
        let limits = limits.clone();
        shared.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            connection(&shared, incoming, &limits, permit).await;
            shared.connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
    // New connections are refused from now on; open ones end with their
    // sessions (the drain tells each client 3001).
    endpoint.set_server_config(None);
}

async fn connection(
    shared: &Arc<Shared>,
    incoming: quinn::Incoming,
    limits: &QuicLimits,
    _permit: SocketPermit,
) {
    let peer = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "QUIC: refused");
            shared.admission.count_quic_handshake_failure();
            return;
        }
    };
    let quic = match tokio::time::timeout(limits.handshake_timeout, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "QUIC handshake failed");
            shared.admission.count_quic_handshake_failure();
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "QUIC handshake timed out");
            shared.admission.count_quic_handshake_failure();
            shared.admission.count_timeout(crate::admission::Phase::Tls);
            return;
        }
    };
    shared.admission.count_connection(HttpVersion::Http3);
    let cfg = shared.node.config().clone();
    let wt_enabled = cfg.webtransport.enabled;
    let built = h3::server::builder()
        .enable_extended_connect(true)
        .enable_webtransport(wt_enabled)
        .enable_datagram(wt_enabled)
        .max_webtransport_sessions(u64::from(wt_enabled))
        .max_field_section_size(16 * 1024)
        .send_grease(true)
        .build::<_, Bytes>(h3_quinn::Connection::new(quic.clone()))
        .await;
    let mut conn = match built {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "HTTP/3 set-up failed");
            return;
        }
    };
    let wt_path = cfg
        .webtransport
        .handler_prefix
        .trim_end_matches('/')
        .to_owned();
    let mut shutdown = shared.shutdown.clone();
    loop {
        let next = tokio::select! {
            r = conn.accept() => r,
            _ = async { shutdown.wait_for(|s| *s).await.map(|_| ()) } => {
                let _ = conn.shutdown(0).await;
                return;
            }
        };
        let resolver = match next {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "HTTP/3 connection ended");
                return;
            }
        };
        // The request head, within the header timeout.
        let header = shared.timeouts.header.max(Duration::from_millis(100));
        let (req, mut stream) = match tokio::time::timeout(header, resolver.resolve_request()).await
        {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "HTTP/3 request refused");
                continue;
            }
            Err(_) => {
                shared
                    .admission
                    .count_timeout(crate::admission::Phase::Header);
                continue;
            }
        };
        if wt_enabled && is_webtransport(&req) && req.uri().path().trim_end_matches('/') == wt_path
        {
            let origin = req
                .headers()
                .get(http::header::ORIGIN)
                .and_then(|v| v.to_str().ok());
            let permit = match crate::http::admit_client(shared, peer, origin, "webtransport") {
                Ok(p) => p,
                Err(refused) => {
                    respond(&mut stream, refused.status(), "refused").await;
                    continue;
                }
            };
            let encoding = match query(&req, "cf_protocol") {
                Some(v) if Encoding::from_query_value(&v) == Encoding::Protobuf => {
                    Encoding::Protobuf
                }
                _ => Encoding::Json,
            };
            let wt = match crate::webtransport::WtSession::accept(req, stream, conn).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "webtransport: session refused");
                    return;
                }
            };
            shared.admission.count_webtransport();
            crate::webtransport::serve(shared.clone(), wt, quic, encoding, permit).await;
            return;
        }
        let msg = if is_webtransport(&req) && !wt_enabled {
            "WebTransport is not enabled (webtransport.enabled)"
        } else {
            "not found: over HTTP/3 this node serves WebTransport only"
        };
        respond(&mut stream, StatusCode::NOT_FOUND, msg).await;
    }
}

fn is_webtransport(req: &Request<()>) -> bool {
    req.method() == Method::CONNECT
        && req.extensions().get::<h3::ext::Protocol>() == Some(&h3::ext::Protocol::WEB_TRANSPORT)
}

fn query(req: &Request<()>, name: &str) -> Option<String> {
    req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    })
}

/// A short plain-text answer, bounded in time.
async fn respond<S>(stream: &mut h3::server::RequestStream<S, Bytes>, status: StatusCode, msg: &str)
where
    S: h3::quic::BidiStream<Bytes>,
{
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let body = Bytes::from(format!("{msg}\n"));
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        stream.send_response(resp).await?;
        stream.send_data(body).await?;
        stream.finish().await
    })
    .await;
}
