//! Serving certificates: loading (the reload is in [`crate::reload`]), and the caBundle of the
//! injector's own MutatingWebhookConfiguration. Generation is in
//! [`crate::certs`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use time::OffsetDateTime;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("a validity of {0:?} is out of range")]
    Validity(Duration),
    #[error("the system's random number generator failed")]
    Random,
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
    #[error("the certificate {0}")]
    OutsideValidity(String),
    #[error("{path}: larger than {max} bytes, not a certificate or key")]
    TooLarge { path: PathBuf, max: u64 },
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
    let parsed = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| TlsError::X509(e.to_string()))?
        .1;
    let not_after = within_validity(
        parsed.validity().not_before.timestamp(),
        parsed.validity().not_after.timestamp(),
        OffsetDateTime::now_utc().unix_timestamp(),
    )?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(TlsError::KeyPem)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(config), not_after))
}

/// `not_after` when `now` lies within the validity. A client refuses a
/// certificate outside it, so serving one would fail every review; the
/// caller keeps the pair it has instead.
fn within_validity(not_before: i64, not_after: i64, now: i64) -> Result<i64, TlsError> {
    let at = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| t.to_string())
    };
    if now < not_before {
        return Err(TlsError::OutsideValidity(format!(
            "is not valid yet (notBefore {})",
            at(not_before)
        )));
    }
    if now > not_after {
        return Err(TlsError::OutsideValidity(format!(
            "expired (notAfter {})",
            at(not_after)
        )));
    }
    Ok(not_after)
}

/// Most bytes read from a certificate or key file. A chain of a few
/// certificates is a few KiB; reading whatever sits at the path would let
/// a stray file grow the process for good.
pub const MAX_PEM_FILE: u64 = 1 << 20;

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
    pub(crate) fn read(&self) -> Result<PemPair, TlsError> {
        let read = |p: &Path| read_bounded(p, MAX_PEM_FILE);
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

/// The content of `path`, refused when it holds more than `max` bytes
/// (read at most one byte beyond, whatever the file's size).
fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut content = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(max + 1)
        .read_to_end(&mut content)
        .map_err(io)?;
    if content.len() as u64 > max {
        return Err(TlsError::TooLarge {
            path: path.to_owned(),
            max,
        });
    }
    Ok(content)
}

/// Most CAs kept in a caBundle. Every replica in `--self-signed` mode has its
/// own CA, so the bundle holds several; the oldest beyond this are dropped
/// (replicas that are gone), and live replicas put theirs back.
pub const MAX_BUNDLE_CAS: usize = 8;

/// The caBundle with `own_ca_pem` in it, or `None` when it is already there.
/// Keeps the other valid CAs (other replicas), drops expired or unreadable
/// entries and, beyond [`MAX_BUNDLE_CAS`], the oldest.
pub fn merged_bundle(current: &[u8], own_ca_pem: &str) -> Option<String> {
    let own = CertificateDer::pem_slice_iter(own_ca_pem.as_bytes())
        .next()
        .and_then(Result::ok)?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut others: Vec<(i64, CertificateDer<'static>)> = Vec::new();
    let mut has_own = false;
    for cert in CertificateDer::pem_slice_iter(current).flatten() {
        if cert == own {
            has_own = true;
            continue;
        }
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(&cert) else {
            continue;
        };
        let validity = parsed.validity();
        if validity.not_after.timestamp() < now || others.iter().any(|(_, c)| *c == cert) {
            continue;
        }
        others.push((validity.not_before.timestamp(), cert.clone()));
    }
    if has_own && others.len() < MAX_BUNDLE_CAS {
        let unchanged = CertificateDer::pem_slice_iter(current).count() == others.len() + 1;
        if unchanged {
            return None;
        }
    }
    others.sort_by_key(|(not_before, _)| std::cmp::Reverse(*not_before));
    others.truncate(MAX_BUNDLE_CAS - 1);
    let mut pem = own_ca_pem.trim_end().to_owned();
    pem.push('\n');
    for (_, cert) in others.iter().rev() {
        pem.push_str(&to_pem(cert));
    }
    Some(pem)
}

fn to_pem(cert: &CertificateDer<'_>) -> String {
    use std::fmt::Write;
    let b64 = serde_json::to_value(ByteString(cert.to_vec()))
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        let _ = writeln!(out, "{}", String::from_utf8_lossy(chunk));
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Puts `ca_pem` into `clientConfig.caBundle` of every webhook of the named
/// configuration (and only that one), keeping other replicas' CAs. Returns
/// how many webhook entries changed.
pub async fn patch_ca_bundle(client: Client, name: &str, ca_pem: &str) -> Result<usize, TlsError> {
    let api = Api::<MutatingWebhookConfiguration>::all(client);
    let err = |source| TlsError::CaBundle {
        name: name.to_owned(),
        source: Box::new(source),
    };
    let current = api.get(name).await.map_err(err)?;
    let mut ops = Vec::new();
    let mut changed = 0;
    for (i, hook) in current.webhooks.unwrap_or_default().iter().enumerate() {
        let old = hook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.as_slice());
        let Some(bundle) = merged_bundle(old.unwrap_or_default(), ca_pem) else {
            continue;
        };
        let bundle = serde_json::to_value(ByteString(bundle.into_bytes()))
            .unwrap_or(serde_json::Value::Null);
        let path = format!("/webhooks/{i}/clientConfig/caBundle");
        // `test` makes the patch conditional: when another replica or a
        // Helm upgrade changed the entry since the GET, the patch fails and
        // the next round starts from the new state instead of erasing it.
        ops.push(serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": hook.name}));
        match &hook.client_config.ca_bundle {
            Some(old) => {
                ops.push(serde_json::json!({"op": "test", "path": path, "value": old}));
                ops.push(serde_json::json!({"op": "replace", "path": path, "value": bundle}));
            }
            None => ops.push(serde_json::json!({"op": "add", "path": path, "value": bundle})),
        }
        changed += 1;
    }
    if ops.is_empty() {
        return Ok(0);
    }
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|e| err(kube::Error::SerdeError(e)))?;
    // Named, so that whoever else writes the caBundle (`helm upgrade` to
    // another certificate mode, with server-side apply) is told who owns it.
    let params = PatchParams {
        field_manager: Some("linnix-injector".into()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Json::<()>(patch))
        .await
        .map_err(err)?;
    Ok(changed)
}

/// Keeps this replica's CA (the latest value of `own_ca`, which changes on
/// renewal) in the caBundle for the life of the process: the configuration
/// may be created after the injector starts (Helm installs it last), and a
/// Helm upgrade resets the bundle.
pub fn spawn_ca_bundle_patcher(client: Client, name: String, mut own_ca: watch::Receiver<String>) {
    const RECHECK: Duration = Duration::from_secs(60);
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        loop {
            let ca_pem = own_ca.borrow_and_update().clone();
            let wait = match patch_ca_bundle(client.clone(), &name, &ca_pem).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(webhook_config = %name, webhooks = n, "caBundle updated");
                    }
                    delay = Duration::from_secs(1);
                    RECHECK
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "caBundle not set yet");
                    let d = delay;
                    delay = (delay * 2).min(Duration::from_secs(30));
                    d
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = own_ca.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(dns: &[String]) -> crate::certs::Generated {
        crate::certs::generate(
            dns,
            crate::certs::SERVING_VALIDITY,
            crate::certs::CA_VALIDITY,
        )
        .unwrap()
    }

    #[test]
    fn generated_pair_loads_and_mismatch_is_rejected() {
        let a = generate(&["a.ns.svc".into()]);
        let b = generate(&["b.ns.svc".into()]);
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
    fn certificates_outside_their_validity_are_refused() {
        assert_eq!(within_validity(10, 20, 15).unwrap(), 20);
        let early = within_validity(10, 20, 5).unwrap_err().to_string();
        assert!(early.contains("not valid yet"), "{early}");
        let late = within_validity(10, 20, 25).unwrap_err().to_string();
        assert!(late.contains("expired"), "{late}");
        // A real certificate whose notBefore lies ahead.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a".to_owned()]).unwrap();
        params.not_before = OffsetDateTime::now_utc() + time::Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + time::Duration::days(2);
        let cert = params.self_signed(&key).unwrap();
        let err = server_config(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid yet"), "{err}");
    }

    #[test]
    fn files_are_read_only_up_to_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![b'x'; 11]).unwrap();
        assert_eq!(read_bounded(&path, 11).unwrap().len(), 11);
        assert!(matches!(
            read_bounded(&path, 10),
            Err(TlsError::TooLarge { max: 10, .. })
        ));
    }

    #[test]
    fn bundle_merging_keeps_other_replicas() {
        let own = generate(&["a".into()]).ca_pem;
        let other = generate(&["b".into()]).ca_pem;
        // Empty bundle: just ours.
        let b = merged_bundle(b"", &own).unwrap();
        assert_eq!(CertificateDer::pem_slice_iter(b.as_bytes()).count(), 1);
        assert!(merged_bundle(b.as_bytes(), &own).is_none(), "already there");
        // Another replica's CA stays; junk goes.
        let current = format!("{other}not a certificate\n");
        let b = merged_bundle(current.as_bytes(), &own).unwrap();
        let certs: Vec<_> = CertificateDer::pem_slice_iter(b.as_bytes())
            .map(Result::unwrap)
            .collect();
        assert_eq!(certs.len(), 2);
        let der = |pem: &str| {
            CertificateDer::pem_slice_iter(pem.as_bytes())
                .next()
                .unwrap()
                .unwrap()
        };
        assert!(certs.contains(&der(&own)) && certs.contains(&der(&other)));
        assert!(merged_bundle(b.as_bytes(), &other).is_none());
        // Bounded: the oldest extra CAs are dropped, ours never.
        let many: String = (0..MAX_BUNDLE_CAS + 3)
            .map(|i| generate(&[format!("n{i}")]).ca_pem)
            .collect();
        let b = merged_bundle(many.as_bytes(), &own).unwrap();
        let certs: Vec<_> = CertificateDer::pem_slice_iter(b.as_bytes())
            .map(Result::unwrap)
            .collect();
        assert_eq!(certs.len(), MAX_BUNDLE_CAS);
        assert_eq!(certs[0], der(&own));
    }
}
