//! Serving certificates reloaded from disk, as a Secret volume or
//! cert-manager replaces them, while requests flow.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::served::*;
use common::*;
use serde_json::json;

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
