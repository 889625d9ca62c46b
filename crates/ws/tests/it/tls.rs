//! wss:// with a self-signed certificate made by rcgen.

use std::net::SocketAddr;

use wshub_ws::{
    accept, connect, tls_acceptor_from_pem, ClientOptions, CloseCode, DeflateConfig, Message,
    ServerOptions, TlsOptions, WsError,
};

use crate::util::{listener, payload, within};

/// A TLS echo server; returns its address and the certificate PEM.
async fn tls_echo_server() -> (SocketAddr, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = ck.cert.pem();
    let acceptor =
        tls_acceptor_from_pem(cert_pem.as_bytes(), ck.key_pair.serialize_pem().as_bytes()).unwrap();
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let opts = ServerOptions::default().deflate(Some(DeflateConfig::default()));
                let Ok(mut ws) = accept(tls, &opts).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.recv().await {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, cert_pem)
}

async fn echo_over(url: &str, opts: &ClientOptions) {
    let mut ws = within(connect(url, opts)).await.unwrap();
    assert!(ws.get_ref().is_tls());
    for m in [
        Message::Text("over tls".into()),
        Message::Binary(payload(300_000, 9).into()),
        Message::Binary(Vec::new().into()),
    ] {
        within(ws.send(m.clone())).await.unwrap();
        assert_eq!(within(ws.recv()).await.unwrap().unwrap(), m);
    }
    within(ws.close(CloseCode::NORMAL, "tls bye"))
        .await
        .unwrap();
    assert!(within(ws.recv()).await.is_none());
}

#[tokio::test]
async fn wss_with_extra_ca() {
    let (addr, cert) = tls_echo_server().await;
    let opts = ClientOptions::default()
        .deflate(Some(DeflateConfig::default()))
        .tls(
            TlsOptions::default()
                .use_native_roots(false)
                .extra_ca_pem(cert),
        );
    echo_over(&format!("wss://localhost:{}/secure", addr.port()), &opts).await;
}

#[tokio::test]
async fn wss_insecure_skip_verify() {
    let (addr, _) = tls_echo_server().await;
    let opts = ClientOptions::default().tls(TlsOptions::default().insecure_skip_verify(true));
    // By IP: the name does not match the certificate either.
    echo_over(&format!("wss://127.0.0.1:{}/", addr.port()), &opts).await;
}

#[tokio::test]
async fn wss_untrusted_certificate_fails() {
    let (addr, _) = tls_echo_server().await;
    let opts = ClientOptions::default().tls(TlsOptions::default().use_native_roots(false));
    let r = within(connect(&format!("wss://localhost:{}/", addr.port()), &opts)).await;
    match r {
        Err(WsError::Io(e)) => assert!(e.to_string().to_lowercase().contains("certificate"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_pem_is_a_tls_error() {
    assert!(matches!(
        tls_acceptor_from_pem(b"nope", b"nope"),
        Err(WsError::Tls(_))
    ));
}

fn tls_message(r: Result<tokio_rustls::TlsAcceptor, WsError>) -> String {
    match r {
        Err(WsError::Tls(m)) => m,
        Err(e) => panic!("not a TLS error: {e:?}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn pem_sections_are_found_among_other_text_and_a_missing_one_is_named() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (ck.cert.pem(), ck.key_pair.serialize_pem());
    // Comments around the sections, a chain of two, key and certificate in
    // one file: the sections that matter are found.
    let chain = format!("subject=CN localhost\n{cert}\n# issuer\n{cert}");
    let bundle = format!("{cert}{key}");
    assert!(tls_acceptor_from_pem(chain.as_bytes(), bundle.as_bytes()).is_ok());

    let m = tls_message(tls_acceptor_from_pem(cert.as_bytes(), cert.as_bytes()));
    assert!(m.contains("no private key"), "{m}");
    let m = tls_message(tls_acceptor_from_pem(key.as_bytes(), key.as_bytes()));
    assert!(m.contains("no certificate"), "{m}");
    // A section whose body is not base64.
    let broken = cert.replacen("-----\n", "-----\n*!*", 1);
    let m = tls_message(tls_acceptor_from_pem(broken.as_bytes(), key.as_bytes()));
    assert!(m.contains("certificate PEM"), "{m}");
}
