//! Serving certificates: reload from disk while requests flow, and the
//! in-memory self-signed mode.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::json;

fn der_of(pem_path: &std::path::Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem_path).unwrap().to_vec()
}

/// Replaces a file the way a Secret volume or cert-manager does: atomically.
fn replace(from: &std::path::Path, to: &std::path::Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn client_with_tls_info(ca_pem: &[u8], fresh_connections: bool) -> reqwest::Client {
    let mut b = builder_trusting(ca_pem).tls_info(true);
    if fresh_connections {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().unwrap()
}

async fn served_cert(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, reqwest::Error> {
    let resp = client.get(url).send().await?;
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    Ok(info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_while_requests_flow() {
    let server = Server::start(&[]);
    let old_ca = std::fs::read(server.ca_path()).unwrap();
    let next = tempfile::tempdir().unwrap();
    make_certs(next.path());
    let new_ca = std::fs::read(next.path().join("ca.crt")).unwrap();
    let both: Vec<u8> = [old_ca.clone(), new_ca.clone()].concat();

    // Requests flow on a kept-alive connection and on fresh connections,
    // from clients that trust both CAs (as the API server does during a
    // rotation), and none may fail.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut flows = Vec::new();
    for fresh in [false, true] {
        let client = client_with_tls_info(&both, fresh);
        let url = server.url("/mutate");
        let (stop, ok) = (stop.clone(), ok.clone());
        flows.push(tokio::spawn(async move {
            let pod = pod(json!({"sidecar.linnix.io/inject": "true"}), app_spec());
            let review = review_of(&pod, "apps");
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.post(&url).json(&review).send().await {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("{e:?}")),
                }
            }
            failures
        }));
    }

    let old_client = client_with_tls_info(&old_ca, true);
    let new_client = client_with_tls_info(&new_ca, true);
    let health = server.url("/healthz");
    assert_eq!(
        served_cert(&old_client, &health).await.unwrap(),
        der_of(&server.dir.path().join("tls.crt"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    replace(
        &next.path().join("tls.key"),
        &server.dir.path().join("tls.key"),
    );
    replace(
        &next.path().join("tls.crt"),
        &server.dir.path().join("tls.crt"),
    );

    let new_der = der_of(&next.path().join("tls.crt"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(der) = served_cert(&new_client, &health).await {
            assert_eq!(der, new_der);
            break;
        }
        assert!(Instant::now() < deadline, "new certificate not served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A fresh connection that trusts only the old CA is now refused.
    assert!(served_cert(&old_client, &health).await.is_err());

    // A broken pair is rejected and the current certificate stays.
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    replace(
        &other.path().join("tls.crt"),
        &server.dir.path().join("tls.crt"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = server.metrics().await;
        if sample(
            &m,
            r#"linnix_injector_certificate_reloads_total{result="failure"}"#,
        ) >= 1.0
        {
            assert_eq!(
                sample(
                    &m,
                    r#"linnix_injector_certificate_reloads_total{result="success"}"#
                ),
                1.0
            );
            break;
        }
        assert!(Instant::now() < deadline, "bad pair not noticed: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served_cert(&new_client, &health).await.unwrap(), new_der);

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for flow in flows {
        let failures = flow.await.unwrap();
        assert!(
            failures.is_empty(),
            "requests failed during reload: {failures:?}"
        );
    }
    assert!(
        ok.load(Ordering::Relaxed) > 20,
        "too few requests flowed: {}",
        ok.load(Ordering::Relaxed)
    );
}

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

/// A writer that replaces the certificate and, a moment later, the key is
/// not a failure: the reloader waits for a matching pair. `certs` into the
/// directory being served switches all files at once.
#[tokio::test]
async fn a_pair_written_one_file_at_a_time_is_waited_for() {
    let server = Server::start(&[]);
    let next = tempfile::tempdir().unwrap();
    make_certs(next.path());
    replace(
        &next.path().join("tls.crt"),
        &server.dir.path().join("tls.crt"),
    );
    // Several polls (every 200 ms) see the new certificate with the old key.
    tokio::time::sleep(Duration::from_millis(600)).await;
    replace(
        &next.path().join("tls.key"),
        &server.dir.path().join("tls.key"),
    );
    let reloads = |m: &str, result: &str| {
        sample(
            m,
            &format!(r#"linnix_injector_certificate_reloads_total{{result="{result}"}}"#),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = server.metrics().await;
        if reloads(&m, "success") >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "new pair not loaded: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `certs` over the served directory: one more success, no failure.
    make_certs(server.dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = server.metrics().await;
        if reloads(&m, "success") >= 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "certs output not loaded: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the settle time (1 s at this poll interval), still no failure.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = server.metrics().await;
    assert_eq!(reloads(&m, "failure"), 0.0, "{m}");
    let client = client_trusting(&std::fs::read(server.ca_path()).unwrap());
    let resp = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let log = std::fs::read_to_string(server.dir.path().join("serve.log")).unwrap();
    assert!(!log.contains("ERROR"), "{log}");
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
