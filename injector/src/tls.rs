//! Serving certificates: generation (rcgen), loading, reload on change, and
//! the caBundle of the injector's own MutatingWebhookConfiguration.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use time::OffsetDateTime;

use crate::metrics::{Metrics, ReloadLabels};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("no certificate in the PEM data")]
    NoCertificate,
    #[error("bad certificate PEM: {0}")]
    CertificatePem(rustls::pki_types::pem::Error),
    #[error("bad private key PEM: {0}")]
    KeyPem(rustls::pki_types::pem::Error),
    #[error("certificate and key do not form a usable pair: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot parse the certificate: {0}")]
    X509(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot update the caBundle of MutatingWebhookConfiguration {name}: {source}")]
    CaBundle {
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// A CA and a serving certificate it signed, all PEM.
pub struct Generated {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

const CA_DAYS: i64 = 3650;
const SERVING_DAYS: i64 = 365;

/// Makes a fresh CA and a serving certificate for `dns` names.
pub fn generate(dns: &[String]) -> Result<Generated, TlsError> {
    let now = OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "linnix-injector CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = now - time::Duration::minutes(5);
    ca_params.not_after = now + time::Duration::days(CA_DAYS);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(dns.to_vec())?;
    if let Some(first) = dns.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(SERVING_DAYS);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Generated {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`.
pub fn write_files(dir: &Path, g: &Generated) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (name, content, mode) in [
        ("ca.crt", &g.ca_pem, 0o644),
        ("tls.crt", &g.cert_pem, 0o644),
        ("tls.key", &g.key_pem, 0o600),
    ] {
        let path = dir.join(name);
        // Write a sibling and rename it, so a reader never sees half a file
        // and the key is never readable by others, not even briefly.
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(content.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    Ok(())
}

/// A rustls server configuration (ring, HTTP/2 and HTTP/1.1) and the
/// certificate's expiry as Unix seconds.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Arc<ServerConfig>, i64), TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::CertificatePem)?;
    let leaf = certs.first().ok_or(TlsError::NoCertificate)?;
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| TlsError::X509(e.to_string()))?
        .1
        .validity()
        .not_after
        .timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsError::KeyPem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), not_after))
}

/// Certificate and key PEM bytes as read from disk.
pub type PemPair = (Vec<u8>, Vec<u8>);

/// A pair loaded at start-up.
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    pub not_after: i64,
    pub pair: PemPair,
}

/// Files of a serving certificate that are watched for changes.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    fn read(&self) -> Result<PemPair, TlsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Io {
                path: p.to_owned(),
                source,
            })
        };
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    /// Loads the pair now (start-up: failure is fatal).
    pub fn load(&self) -> Result<Loaded, TlsError> {
        let pair = self.read()?;
        let (config, not_after) = server_config(&pair.0, &pair.1)?;
        Ok(Loaded {
            config,
            not_after,
            pair,
        })
    }
}

/// Polls the files and swaps the served configuration when their content
/// changes. New handshakes get the new certificate; connections already
/// open keep theirs, so no in-flight request is dropped. A bad pair keeps
/// the old configuration.
pub fn spawn_reloader(
    files: CertFiles,
    rustls: RustlsConfig,
    metrics: Arc<Metrics>,
    loaded: PemPair,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Last content seen, good or bad: a bad pair is reported once, not
        // on every poll, and retried as soon as either file changes again.
        let mut seen = loaded;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let files = files.clone();
            let pair = match tokio::task::spawn_blocking(move || files.read()).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cannot read certificate files; keeping the current pair");
                    continue;
                }
                Err(_) => continue,
            };
            if pair == seen {
                continue;
            }
            match server_config(&pair.0, &pair.1) {
                Ok((config, not_after)) => {
                    rustls.reload_from_config(config);
                    metrics.cert_expiry.set(not_after as f64);
                    metrics
                        .cert_reloads
                        .get_or_create(&ReloadLabels { result: "success" })
                        .inc();
                    tracing::info!(not_after, "serving certificate reloaded");
                }
                Err(e) => {
                    metrics
                        .cert_reloads
                        .get_or_create(&ReloadLabels { result: "failure" })
                        .inc();
                    tracing::error!(error = %e, "new certificate files rejected; still serving the previous pair");
                }
            }
            seen = pair;
        }
    })
}

/// Sets `clientConfig.caBundle` on every webhook of the named configuration
/// (and only that one).
pub async fn patch_ca_bundle(client: Client, name: &str, ca_pem: &str) -> Result<usize, TlsError> {
    let api = Api::<MutatingWebhookConfiguration>::all(client);
    let err = |source| TlsError::CaBundle {
        name: name.to_owned(),
        source: Box::new(source),
    };
    let current = api.get(name).await.map_err(err)?;
    let bundle = serde_json::to_value(ByteString(ca_pem.as_bytes().to_vec()))
        .unwrap_or(serde_json::Value::Null);
    let mut ops = Vec::new();
    let webhooks = current.webhooks.unwrap_or_default();
    for (i, hook) in webhooks.iter().enumerate() {
        // `test` guards against the list changing between GET and PATCH.
        ops.push(serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": hook.name}));
        ops.push(serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle}));
    }
    if ops.is_empty() {
        return Ok(0);
    }
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|e| err(kube::Error::SerdeError(e)))?;
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(err)?;
    Ok(webhooks.len())
}

/// Keeps trying to set the caBundle until it succeeds: the configuration may
/// be created after the injector starts (Helm installs it last).
pub fn spawn_ca_bundle_patcher(client: Client, name: String, ca_pem: String) {
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        loop {
            match patch_ca_bundle(client.clone(), &name, &ca_pem).await {
                Ok(n) => {
                    tracing::info!(webhook_config = %name, webhooks = n, "caBundle set");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "caBundle not set yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_and_mismatch_is_rejected() {
        let a = generate(&["a.ns.svc".into()]).unwrap();
        let b = generate(&["b.ns.svc".into()]).unwrap();
        let (_, not_after) = server_config(a.cert_pem.as_bytes(), a.key_pem.as_bytes()).unwrap();
        let year = 365 * 24 * 3600;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!((not_after - now - year).abs() < 3600, "{not_after}");
        assert!(server_config(a.cert_pem.as_bytes(), b.key_pem.as_bytes()).is_err());
        assert!(matches!(
            server_config(b"", a.key_pem.as_bytes()),
            Err(TlsError::NoCertificate)
        ));
        assert!(server_config(a.cert_pem.as_bytes(), b"junk").is_err());
    }

    #[test]
    fn key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let g = generate(&["x.y.svc".into()]).unwrap();
        write_files(dir.path(), &g).unwrap();
        let mode = std::fs::metadata(dir.path().join("tls.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        for f in ["ca.crt", "tls.crt"] {
            assert!(dir.path().join(f).exists());
        }
    }
}
