//! Serving certificates: the in-memory self-signed mode and its renewal,
//! `certs`, and bundles that hold an old and a new CA (the reload from disk
//! is in `cert_reload.rs`).

mod common;

use std::time::{Duration, Instant};

use common::served::*;
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::json;

#[tokio::test]
async fn self_signed_without_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        dir,
        &[
            "--self-signed",
            "--webhook-config=linnix-injector",
            "--dns=localhost",
            "--dns=linnix-injector.linnix.svc",
        ],
        false,
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The CA exists only in memory (and in the caBundle when a cluster is
    // reachable), so this client checks the certificate by hand.
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()
        .unwrap();
    let der = served_cert(&client, &server.url("/healthz")).await.unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        sans,
        ["DNSName(localhost)", "DNSName(linnix-injector.linnix.svc)"]
    );
    assert!(cert.issuer().to_string().contains("linnix-injector CA"));

    let m = server.metrics().await;
    let expiry = sample(&m, "linnix_injector_certificate_expiry_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now + 300.0 * 86400.0, "expiry {expiry}");

    let pod = pod(json!({"sidecar.linnix.io/inject": "true"}), app_spec());
    let answer: serde_json::Value = client
        .post(server.url("/mutate"))
        .json(&review_of(&pod, "apps"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(patch_of(&answer).is_some());
}

#[test]
fn certs_command_writes_private_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("new/sub");
    let o = run(
        &[
            "certs",
            "--out",
            out.to_str().unwrap(),
            "--dns",
            "a.b.svc",
            "--dns",
            "localhost",
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mode = std::fs::metadata(out.join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let der = der_of(&out.join("tls.crt"));
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let ca = der_of(&out.join("ca.crt"));
    let (_, ca) = x509_parser::parse_x509_certificate(&ca).unwrap();
    assert_eq!(cert.issuer(), ca.subject());
    assert!(ca.is_ca());
    assert!(cert.verify_signature(Some(ca.public_key())).is_ok());
    // Without --dns the command refuses to run.
    assert!(!run(&["certs", "--out", out.to_str().unwrap()], None)
        .status
        .success());
}

/// `openssl verify` of each serving certificate against a bundle of the old
/// and the new CA, in both orders: with equal CA subjects and no key
/// identifiers OpenSSL tries only the first CA of that name.
#[test]
fn openssl_verifies_against_a_bundle_in_either_order() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    make_certs(a.path());
    make_certs(b.path());
    let ca = |d: &tempfile::TempDir| std::fs::read_to_string(d.path().join("ca.crt")).unwrap();
    let bundles = tempfile::tempdir().unwrap();
    let old_new = bundles.path().join("old-new.pem");
    let new_old = bundles.path().join("new-old.pem");
    std::fs::write(&old_new, format!("{}{}", ca(&a), ca(&b))).unwrap();
    std::fs::write(&new_old, format!("{}{}", ca(&b), ca(&a))).unwrap();
    for bundle in [&old_new, &new_old] {
        for dir in [&a, &b] {
            let out = std::process::Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(bundle)
                .arg("-purpose")
                .arg("sslserver")
                .arg(dir.path().join("tls.crt"))
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "{}: {}{}",
                bundle.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // Each CA has its own subject and serial; the serving certificate names
    // its CA's key.
    let parse = |p: std::path::PathBuf| der_of(&p);
    let (ca_a, ca_b) = (
        parse(a.path().join("ca.crt")),
        parse(b.path().join("ca.crt")),
    );
    let (_, ca_a) = x509_parser::parse_x509_certificate(&ca_a).unwrap();
    let (_, ca_b) = x509_parser::parse_x509_certificate(&ca_b).unwrap();
    assert_ne!(ca_a.subject(), ca_b.subject());
    assert_ne!(ca_a.raw_serial(), ca_b.raw_serial());
    let leaf = parse(a.path().join("tls.crt"));
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    use x509_parser::extensions::ParsedExtension;
    let ski = |c: &x509_parser::certificate::X509Certificate<'_>| {
        c.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
    };
    let aki = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(k) => {
                k.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .expect("serving certificate has an AKI");
    assert_eq!(Some(aki), ski(&ca_a));
    assert!(ski(&leaf).is_some(), "serving certificate has an SKI");
}

/// `--self-signed` with a 6 s validity renews at 4 s. Across two renewals
/// every request, each on a fresh TLS connection from a client that trusts
/// exactly the caBundle as the API server stores it at that moment,
/// succeeds: the new CA reaches the bundle before its certificate is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificates_are_renewed_without_a_failed_request() {
    use common::fake_api::FakeApi;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = FakeApi::start(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "linnix-injector", "resourceVersion": "1"},
        "webhooks": [{
            "name": "inject.sidecar.linnix.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"service": {"name": "linnix-injector", "namespace": "linnix"}}
        }]
    }))
    .await;
    let kubeconfig = api.kubeconfig.to_str().unwrap().to_owned();
    let server = Server::start_with_env(
        tempfile::tempdir().unwrap(),
        &[
            "--self-signed",
            "--webhook-config=linnix-injector",
            "--dns=localhost",
            "--cert-validity=6s",
        ],
        false,
        &[("KUBECONFIG", &kubeconfig)],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.ca_bundle().is_empty() {
        assert!(Instant::now() < deadline, "caBundle never set");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let review = review_of(
        &pod(json!({"sidecar.linnix.io/inject": "true"}), app_spec()),
        "apps",
    );
    let mut served: Vec<Vec<u8>> = Vec::new();
    let mut failures = Vec::new();
    let mut ok = 0;
    let started = Instant::now();
    // Two renewals: at about 4 s and 8.3 s (4 s after the first, plus the
    // 0.3 s wait for the bundle to propagate).
    while served.len() < 3 && started.elapsed() < Duration::from_secs(20) {
        let client = client_with_tls_info(&api.ca_bundle(), true);
        match client
            .post(server.url("/mutate"))
            .json(&review)
            .send()
            .await
        {
            Ok(r) if r.status() == 200 => {
                let der = r
                    .extensions()
                    .get::<reqwest::tls::TlsInfo>()
                    .and_then(|i| i.peer_certificate())
                    .map(<[u8]>::to_vec)
                    .unwrap();
                if served.last() != Some(&der) {
                    served.push(der);
                }
                ok += 1;
            }
            Ok(r) => failures.push(format!("status {}", r.status())),
            Err(e) => failures.push(format!("{e:?}")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failures.is_empty(), "{} ok, failed: {failures:?}", ok);
    assert_eq!(served.len(), 3, "certificates served: {}", served.len());
    // Three CAs with three subjects; the bundle still holds the unexpired ones.
    let issuers: Vec<String> = served
        .iter()
        .map(|der| {
            let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
            c.issuer().to_string()
        })
        .collect();
    assert!(
        issuers[0] != issuers[1] && issuers[1] != issuers[2],
        "{issuers:?}"
    );
    let bundle = api.ca_bundle();
    assert!(CertificateDer::pem_slice_iter(&bundle).count() >= 2);

    // The metrics say when the certificate expires and when it is renewed.
    let m = server.metrics().await;
    let expiry = sample(&m, "linnix_injector_certificate_expiry_timestamp_seconds");
    let renewal = sample(&m, "linnix_injector_certificate_renewal_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        renewal > now - 1.0 && renewal < expiry,
        "{renewal} {expiry} {now}"
    );
    assert!((expiry - renewal - 2.0).abs() < 1.5, "{renewal} {expiry}");
    let log = std::fs::read_to_string(server.dir.path().join("serve.log")).unwrap();
    assert!(!log.contains("ERROR"), "{log}");
}
