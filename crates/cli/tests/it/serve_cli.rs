//! `wshub serve`, `publish`, `gen-token`, `check-config` as processes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::wshub;

struct Server {
    child: Child,
    addr: String,
    scheme: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(args: &[&str]) -> Server {
    let mut cmd = wshub();
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn wshub serve");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("wshub serve printed nothing");
    let (scheme, addr) = line
        .strip_prefix("listening on ")
        .and_then(|url| url.split_once("://"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    Server {
        addr: addr.to_owned(),
        scheme: scheme.to_owned(),
        child,
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("run wshub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn serve_publish_and_terminate_gracefully() {
    let mut srv = serve(&[]);
    assert_eq!(srv.scheme, "http");
    let api = format!("http://{}", srv.addr);
    let (ok, out) = run(wshub().args(["publish", "news", r#"{"x":1}"#, "--api", &api]));
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["result"]["offset"], 1);
    #[cfg(unix)]
    {
        let pid = srv.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = srv.child.try_wait().unwrap() {
                assert!(status.success(), "{status:?}");
                break;
            }
            assert!(Instant::now() < deadline, "did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn api_key_from_config_and_token_generation() {
    let dir = std::env::temp_dir().join(format!("wshub-serve-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.json");
    std::fs::write(
        &cfg,
        r#"{"client":{"token":{"hmac_secret_key":"sekret"}},"http_api":{"key":"k"},
            "channel":{"without_namespace":{"history_size":10,"history_ttl":"60s"}}}"#,
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let (ok, out) = run(wshub().args(["check-config", cfg_s]));
    assert!(ok, "{out}");
    let (ok, token) = run(wshub().args(["gen-token", "--user", "42", "--config", cfg_s]));
    assert!(ok);
    assert_eq!(token.trim().split('.').count(), 3);
    let srv = serve(&["--config", cfg_s]);
    let api = format!("http://{}", srv.addr);
    let (ok, _) = run(wshub().args(["publish", "a", "1", "--api", &api]));
    assert!(!ok, "no key must fail");
    let (ok, out) = run(wshub().args(["publish", "a", "1", "--api", &api, "--api-key", "k"]));
    assert!(ok, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_with_tls_cert_and_key_flags() {
    let dir = std::env::temp_dir().join(format!("wshub-serve-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());

    let srv = serve(&["--tls-cert", cert_s, "--tls-key", key_s]);
    assert_eq!(srv.scheme, "https");
    let url = format!("wss://{}/connection/websocket", srv.addr);
    let opts = wshub_ws::ClientOptions::default().tls(
        wshub_ws::TlsOptions::default()
            .use_native_roots(false)
            .extra_ca_pem(ck.cert.pem()),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reply = rt.block_on(async {
        let limit = Duration::from_secs(10);
        let mut ws = tokio::time::timeout(limit, wshub_ws::connect(&url, &opts))
            .await
            .expect("connect timed out")
            .expect("wss connect");
        ws.send_text(r#"{"id":1,"connect":{}}"#).await.unwrap();
        let msg = tokio::time::timeout(limit, ws.recv())
            .await
            .expect("no reply")
            .expect("closed")
            .expect("read");
        String::from_utf8(msg.as_bytes().to_vec()).unwrap()
    });
    let v: serde_json::Value = serde_json::from_str(reply.lines().next().unwrap()).unwrap();
    assert_eq!(v["id"], 1, "{reply}");
    assert!(v["connect"]["client"].is_string(), "{reply}");
    drop(srv);

    // A key without a certificate, or a file without PEM, is refused.
    let (ok, _) = run(wshub().args(["serve", "--tls-key", key_s]));
    assert!(!ok);
    let out = wshub()
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert", key_s])
        .args(["--tls-key", dir.join("missing.pem").to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-key"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A key that would turn on a feature wshub does not implement stops
/// `check-config` and `serve` with a message naming it; one that only
/// tunes an absent feature is a warning.
#[test]
fn check_config_and_serve_refuse_keys_of_unimplemented_features() {
    let dir = std::env::temp_dir().join(format!("wshub-refuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"uni_grpc":{"enabled":true},"webtransport":{"enabled":true},
            "channel":{"namespaces":[{"name":"prices","allowed_delta_types":["fossil"],
                                      "allow_tags_filter":true}]}}"#,
    )
    .unwrap();
    refused_by_check_config_and_serve(
        &bad,
        &[
            "uni_grpc.enabled: turns on the unidirectional gRPC transport, which wshub does not implement",
            // Implemented, but only over HTTP/3.
            "webtransport.enabled: WebTransport runs over HTTP/3: set http_server.http3.enabled",
            "channel.namespaces[prices].allowed_delta_types: turns on delta compression",
            "channel.namespaces[prices].allow_tags_filter: turns on publication filters by tags",
        ],
    );
    // Off, or tuning only: a warning, and the file is fine.
    let ok = dir.join("ok.json");
    std::fs::write(
        &ok,
        r#"{"uni_grpc":{"enabled":false},"websocket":{"compression_level":5}}"#,
    )
    .unwrap();
    let out = wshub()
        .args(["check-config"])
        .arg(&ok)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config key uni_grpc is not supported by wshub (ignored)")
            && err.contains("config key websocket.compression_level is not supported by wshub"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check-config` and `serve` read public keys the way the token verifier
/// does: one it could not use is refused at load time, named by its path.
#[test]
fn check_config_refuses_unusable_token_keys() {
    let dir = std::env::temp_dir().join(format!("wshub-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "client:\n  token:\n    rsa_public_key: \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"\n\
         \x20 subscription_token:\n    enabled: true\n    jwks_public_endpoint: \"ftp://keys.example.com/jwks\"\n",
    )
    .unwrap();
    refused_by_check_config_and_serve(
        &bad,
        &[
            "client.token.rsa_public_key: not an RSA public key",
            "client.subscription_token.jwks_public_endpoint: must be an http:// or https:// URL",
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Both `check-config` and `serve --config` refuse `file`, each naming every
/// one of `keys` on stderr, and `serve` never starts listening.
fn refused_by_check_config_and_serve(file: &std::path::Path, keys: &[&str]) {
    for cmd in [
        &["check-config"][..],
        &["serve", "--listen", "127.0.0.1:0", "--config"],
    ] {
        let out = wshub()
            .args(cmd)
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{cmd:?} accepted it");
        let err = String::from_utf8_lossy(&out.stderr);
        for key in keys {
            assert!(err.contains(key), "{cmd:?}: missing {key:?} in:\n{err}");
        }
        assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
    }
}
