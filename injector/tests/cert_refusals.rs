//! Certificate files the reloader must refuse, each time they appear, while
//! it keeps serving the last good pair: a mismatched pair seen again after
//! the good one came back, a certificate past its validity, and a huge file.

mod common;

use std::time::{Duration, Instant};

use common::served::*;
use common::*;

fn failures(m: &str) -> f64 {
    sample(
        m,
        r#"linnix_injector_certificate_reloads_total{result="failure"}"#,
    )
}

fn successes(m: &str) -> f64 {
    sample(
        m,
        r#"linnix_injector_certificate_reloads_total{result="success"}"#,
    )
}

/// Waits until the failure counter reaches `n`.
async fn failures_reach(server: &Server, n: f64, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = server.metrics().await;
        if failures(&m) >= n {
            return m;
        }
        assert!(Instant::now() < deadline, "{what}: not reported\n{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_pair_is_reported_every_time_and_the_good_one_stays() {
    let server = Server::start(&[]);
    let served = server.dir.path().join("tls.crt");
    let good = tempfile::tempdir().unwrap();
    std::fs::copy(&served, good.path().join("tls.crt")).unwrap();
    let good_der = der_of(&served);
    let client = client_with_tls_info(&std::fs::read(server.ca_path()).unwrap(), true);
    let health = server.url("/healthz");

    // A certificate that does not match the key: one failure.
    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    replace(&other.path().join("tls.crt"), &served);
    failures_reach(&server, 1.0, "a mismatched pair").await;

    // The good pair comes back (for several polls, 200 ms apart), then the
    // same bad one again: a second failure.
    replace(&good.path().join("tls.crt"), &served);
    // notAfter has whole seconds: past it by more than one.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    replace(&other.path().join("tls.crt"), &served);
    failures_reach(&server, 2.0, "the same mismatched pair, a second time").await;

    // An expired pair: refused, not loaded.
    let expired = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "certs",
            "--out",
            expired.path().to_str().unwrap(),
            "--dns",
            "localhost",
            "--cert-validity",
            "1s",
        ],
        None,
    );
    assert!(out.status.success());
    replace(&good.path().join("tls.crt"), &served);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    replace(
        &expired.path().join("tls.key"),
        &server.dir.path().join("tls.key"),
    );
    replace(&expired.path().join("tls.crt"), &served);
    let m = failures_reach(&server, 3.0, "an expired certificate").await;
    assert_eq!(successes(&m), 0.0, "an expired certificate was loaded\n{m}");
    assert_eq!(served_cert(&client, &health).await.unwrap(), good_der);

    // 100 MB at the certificate path: refused without reading it all.
    let big = vec![b'A'; 100 << 20];
    std::fs::write(server.dir.path().join("big"), &big).unwrap();
    drop(big);
    replace(&server.dir.path().join("big"), &served);
    let m = failures_reach(&server, 4.0, "a 100 MB certificate file").await;
    assert_eq!(successes(&m), 0.0, "{m}");
    let peak = peak_rss_kib(server.pid());
    assert!(peak < 64 << 10, "peak RSS {peak} KiB after a 100 MB file");
    assert_eq!(served_cert(&client, &health).await.unwrap(), good_der);

    let log = std::fs::read_to_string(server.dir.path().join("serve.log")).unwrap();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 4, "{log}");
    assert!(errors[2].contains("expired"), "{}", errors[2]);
    assert!(errors[3].contains("larger than"), "{}", errors[3]);
    assert!(
        errors.iter().all(|l| l.contains("still serving")),
        "{errors:?}"
    );
}
