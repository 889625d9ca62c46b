//! `wshub gen-cert`: a self-signed development certificate for TLS,
//! HTTP/2 and (with `--days 14` or less) WebTransport's
//! `serverCertificateHashes`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// `wshub gen-cert` flags.
#[derive(clap::Args)]
pub struct Args {
    /// Directory for `cert.pem` and `key.pem` (created if missing).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Host names and IP addresses the certificate is for.
    #[arg(long = "host", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
    hosts: Vec<String>,
    /// Days of validity from now. Browsers accept a certificate given by
    /// hash (WebTransport `serverCertificateHashes`) only up to 14 days.
    #[arg(long, default_value_t = 14)]
    days: u32,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.days == 0 || a.days > 3650 {
        bail!("--days must be between 1 and 3650");
    }
    let cert_path = a.dir.join("cert.pem");
    let key_path = a.dir.join("key.pem");
    for p in [&cert_path, &key_path] {
        if p.exists() && !a.force {
            bail!("{} exists (--force replaces it)", p.display());
        }
    }
    let mut params =
        rcgen::CertificateParams::new(a.hosts.clone()).context("invalid --host value")?;
    let now = time::OffsetDateTime::now_utc();
    // A minute of slack for clocks slightly behind, inside the period:
    // WebTransport's serverCertificateHashes accept a certificate valid for
    // 14 days at most, counted from not_before.
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = params.not_before + time::Duration::days(i64::from(a.days));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "wshub development certificate");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    std::fs::create_dir_all(&a.dir)
        .with_context(|| format!("cannot create {}", a.dir.display()))?;
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    let cert_hash = Sha256::digest(cert.der());
    let spki_hash = Sha256::digest(key.public_key_der());
    let b64 = base64::engine::general_purpose::STANDARD;
    println!("certificate: {}", cert_path.display());
    println!("key:         {}", key_path.display());
    println!("hosts:       {}", a.hosts.join(", "));
    println!("valid until: {} (UTC)", params_date(now, a.days));
    println!(
        "certificate SHA-256 (hex, WebTransport serverCertificateHashes): {}",
        hex(&cert_hash)
    );
    println!(
        "SPKI SHA-256 (base64, chromium --ignore-certificate-errors-spki-list): {}",
        b64.encode(spki_hash)
    );
    println!(
        "run: wshub serve --tls-cert {} --tls-key {}",
        cert_path.display(),
        key_path.display()
    );
    Ok(())
}

fn params_date(now: time::OffsetDateTime, days: u32) -> String {
    let end = now + time::Duration::days(i64::from(days));
    format!(
        "{}-{:02}-{:02}",
        end.year(),
        u8::from(end.month()),
        end.day()
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the key readable by its owner only.
fn write_private(path: &std::path::Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("cannot write {}", path.display()))
}
