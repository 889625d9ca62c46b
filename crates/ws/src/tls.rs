//! TLS (rustls with the ring provider): client configuration for `wss://`
//! and a server acceptor from PEM files.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio_rustls::TlsAcceptor;

use crate::error::WsError;

/// How a client verifies `wss://` servers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Extra trusted CA certificates, each a PEM file's contents (may hold
    /// several certificates), e.g. a private CA or a self-signed server
    /// certificate.
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// Accept any server certificate (signatures on the handshake are
    /// still checked). **For testing only**: it makes TLS useless against
    /// an active attacker.
    pub insecure_skip_verify: bool,
    /// Trust the operating system's CA store besides the bundled Mozilla
    /// roots (default `true`). Loaded once per process.
    pub use_native_roots: bool,
    /// A complete rustls configuration to use instead of the fields above
    /// (client certificates, custom verifiers, ...). Building a
    /// configuration once and sharing it also saves work per connection.
    pub config: Option<Arc<ClientConfig>>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            extra_ca_pem: Vec::new(),
            insecure_skip_verify: false,
            use_native_roots: true,
            config: None,
        }
    }
}

impl TlsOptions {
    /// Adds a PEM file's CA certificates to [`TlsOptions::extra_ca_pem`].
    pub fn extra_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_ca_pem.push(pem.into());
        self
    }
    /// Sets [`TlsOptions::insecure_skip_verify`].
    pub fn insecure_skip_verify(mut self, v: bool) -> Self {
        self.insecure_skip_verify = v;
        self
    }
    /// Sets [`TlsOptions::use_native_roots`].
    pub fn use_native_roots(mut self, v: bool) -> Self {
        self.use_native_roots = v;
        self
    }
    /// Sets [`TlsOptions::config`].
    pub fn config(mut self, v: Option<Arc<ClientConfig>>) -> Self {
        self.config = v;
        self
    }
}

fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn tls_err(e: impl std::fmt::Display) -> WsError {
    WsError::Tls(e.to_string())
}

/// The bundled Mozilla roots, plus the OS store if asked; built once.
fn base_roots(native: bool) -> &'static RootCertStore {
    static WEBPKI: OnceLock<RootCertStore> = OnceLock::new();
    static WITH_NATIVE: OnceLock<RootCertStore> = OnceLock::new();
    let webpki = || RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if !native {
        return WEBPKI.get_or_init(webpki);
    }
    WITH_NATIVE.get_or_init(|| {
        let mut roots = webpki();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!("native CA store: {e}");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "native CA certificates loaded");
        roots
    })
}

fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, WsError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WsError::Tls(format!("certificate PEM: {e}")))
}

/// The client configuration for `opts`. Configurations without extra CAs
/// are built once per process and shared.
pub(crate) fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, WsError> {
    if let Some(c) = &opts.config {
        return Ok(c.clone());
    }
    static SHARED: [OnceLock<Arc<ClientConfig>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let [webpki, native, insecure] = &SHARED;
    let slot = if opts.insecure_skip_verify {
        Some(insecure)
    } else if opts.extra_ca_pem.is_empty() {
        Some(if opts.use_native_roots {
            native
        } else {
            webpki
        })
    } else {
        None
    };
    if let Some(Some(c)) = slot.map(|s| s.get()) {
        return Ok(c.clone());
    }
    let cfg = Arc::new(build_client_config(opts)?);
    if let Some(s) = slot {
        return Ok(s.get_or_init(|| cfg).clone());
    }
    Ok(cfg)
}

fn build_client_config(opts: &TlsOptions) -> Result<ClientConfig, WsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let mut cfg = if opts.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = base_roots(opts.use_native_roots).clone();
        for pem in &opts.extra_ca_pem {
            let certs = parse_certs(pem)?;
            if certs.is_empty() {
                return Err(WsError::Tls("no certificate in an extra CA PEM".into()));
            }
            for c in certs {
                roots.add(c).map_err(tls_err)?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The TLS server name for a URL host.
pub(crate) fn server_name(host: &url::Host<String>) -> Result<ServerName<'static>, WsError> {
    match host {
        url::Host::Domain(d) => ServerName::try_from(d.clone()).map_err(tls_err),
        url::Host::Ipv4(a) => Ok(ServerName::IpAddress(std::net::IpAddr::V4(*a).into())),
        url::Host::Ipv6(a) => Ok(ServerName::IpAddress(std::net::IpAddr::V6(*a).into())),
    }
}

/// Accepts every certificate; still verifies handshake signatures so the
/// peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS acceptor for `wss://` servers from a PEM certificate chain (leaf
/// first) and a PEM private key (PKCS#8, PKCS#1 or SEC1). Offers ALPN
/// `http/1.1`.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let acceptor = wshub_ws::tls_acceptor_from_pem(
///     &std::fs::read("cert.pem")?,
///     &std::fs::read("key.pem")?,
/// )?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// let (tcp, _) = listener.accept().await?;
/// let tls = acceptor.accept(tcp).await?;
/// let ws = wshub_ws::accept(tls, &wshub_ws::ServerOptions::default()).await?;
/// # drop(ws); Ok(()) }
/// ```
pub fn tls_acceptor_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, WsError> {
    acceptor(cert_pem, key_pem, vec![b"http/1.1".to_vec()])
}

/// Like [`tls_acceptor_from_pem`], offering ALPN `h2` before `http/1.1`:
/// for a server that serves HTTP/2 on the connections that pick it
/// (`tls.get_ref().1.alpn_protocol() == Some(b"h2")`, then
/// [`crate::serve_http2`]) and HTTP/1.1 on the others.
pub fn tls_acceptor_from_pem_h2(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, WsError> {
    acceptor(
        cert_pem,
        key_pem,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    )
}

/// A rustls server configuration for HTTP/3 (QUIC) from a PEM certificate
/// chain (leaf first) and a PEM private key, as [`tls_acceptor_from_pem`]
/// reads them: TLS 1.3 only (QUIC has no other), ALPN `h3`, no 0-RTT. Hand
/// it to [`crate::bind_http3`] or [`crate::Http3Options::server_config`].
pub fn http3_tls_config_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig, WsError> {
    server_config(cert_pem, key_pem, vec![b"h3".to_vec()], true)
}

fn acceptor(cert_pem: &[u8], key_pem: &[u8], alpn: Vec<Vec<u8>>) -> Result<TlsAcceptor, WsError> {
    let cfg = server_config(cert_pem, key_pem, alpn, false)?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    alpn: Vec<Vec<u8>>,
    tls13_only: bool,
) -> Result<ServerConfig, WsError> {
    let certs = parse_certs(cert_pem)?;
    if certs.is_empty() {
        return Err(WsError::Tls("no certificate in the certificate PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => WsError::Tls("no private key in the key PEM".into()),
        e => WsError::Tls(format!("private key PEM: {e}")),
    })?;
    let builder = ServerConfig::builder_with_provider(provider());
    let builder = if tls13_only {
        builder.with_protocol_versions(&[&rustls::version::TLS13])
    } else {
        builder.with_safe_default_protocol_versions()
    };
    let mut cfg = builder
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_err)?;
    cfg.alpn_protocols = alpn;
    Ok(cfg)
}
