//! Bad input to the real `linnix-injector serve` over real HTTPS: malformed
//! reviews, objects of every odd shape and oversized bodies get a clear
//! answer, and none blocks a pod.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn malformed_requests_are_rejected_clearly() {
    let server = Server::start(&[]);
    let client = server.client();
    let url = server.url("/mutate");

    let review = |value: Value| serde_json::to_vec(&value).unwrap();
    let mut not_utf8 = review(review_of(&json!({}), "a"));
    // Invalid UTF-8, even in a field the webhook ignores, is not JSON
    // (found by the admission fuzz target).
    let at = not_utf8.windows(5).position(|w| w == b"admin").unwrap();
    not_utf8[at] = 0x92;
    for (content_type, body, status, says) in [
        (
            "application/json",
            b"{\"kind\": \"AdmissionReview\", ".to_vec(),
            400,
            "malformed AdmissionReview JSON",
        ),
        (
            "application/json",
            review(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})),
            400,
            "no request",
        ),
        (
            "application/json",
            review(
                json!({"apiVersion": "v1", "kind": "Pod", "request": review_of(&json!({}), "a")["request"]}),
            ),
            400,
            "expected kind AdmissionReview",
        ),
        ("application/json", not_utf8, 400, "not UTF-8"),
        (
            "text/plain",
            review(review_of(&json!({}), "a")),
            415,
            "expected Content-Type: application/json",
        ),
    ] {
        let resp = client
            .post(&url)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{says}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(says), "{text}");
    }

    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    let resp = client
        .post(&url)
        .header("Content-Type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = plain_client()
        .post(format!("http://localhost:{}/mutate", server.port))
        .json(&review_of(&json!({}), "a"))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // Unknown paths and wrong methods say what is served.
    let resp = client.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("no such path: /nope") && body.contains("POST /mutate"),
        "{body}"
    );
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let body = resp.text().await.unwrap();
    assert!(body.contains("method GET not allowed on /mutate"), "{body}");
    let resp = client.delete(server.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert!(!resp.text().await.unwrap().is_empty());
    let metrics = format!("http://127.0.0.1:{}", server.metrics_port);
    let resp = plain_client()
        .get(format!("{metrics}/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("GET /metrics"));
    let resp = plain_client()
        .post(format!("{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert!(resp.text().await.unwrap().contains("GET /metrics"));

    // And the server is still fine.
    let pod = pod(json!({"sidecar.linnix.io/inject": "true"}), app_spec());
    assert!(patch_of(&server.review(&review_of(&pod, "apps")).await).is_some());
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn strange_objects_never_block() {
    let server = Server::start(&[]);
    // A pod CREATE whose object is not a JSON object: allowed, no patch
    // (it could not apply), a warning that says why.
    for (object, kind) in [
        (json!(5), "a number"),
        (json!("pod"), "a string"),
        (json!([]), "an array"),
        (json!([{"metadata": {}}]), "an array"),
        (json!(true), "a boolean"),
        (json!(1.5), "a number"),
    ] {
        let answer = server.review(&review_of(&object, "apps")).await;
        assert_eq!(answer["response"]["allowed"], true, "{object}: {answer}");
        assert!(patch_of(&answer).is_none(), "{object}: {answer}");
        let w = warnings(&answer);
        assert_eq!(w.len(), 1, "{object}: {w:?}");
        assert!(
            w[0].contains(&format!("request.object is {kind}, not a pod object")),
            "{w:?}"
        );
    }
    let m = server.metrics().await;
    assert_eq!(
        sample(&m, r#"linnix_injector_errors_total{kind="not-an-object"}"#),
        6.0
    );
    // Shapes the API server would never send still get an allowed answer.
    for object in [
        json!(null),
        json!("a string"),
        json!({"metadata": "not a map", "spec": 3}),
        json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": null}),
        json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": 7}}}),
    ] {
        let answer = server.review(&review_of(&object, "apps")).await;
        assert_eq!(answer["response"]["allowed"], true, "{object}: {answer}");
        // Whatever patch comes back applies to the object.
        if object.is_object() {
            patched(&object, &answer);
        } else {
            assert!(patch_of(&answer).is_none(), "{object}: {answer}");
        }
    }
    let mut no_object = review_of(&json!({}), "apps");
    no_object["request"]
        .as_object_mut()
        .unwrap()
        .remove("object");
    let answer = server.review(&no_object).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(patch_of(&answer).is_none());
    assert!(warnings(&answer)[0].contains("internal error"));
    let m = server.metrics().await;
    // `"object": null` and a missing object alike.
    assert_eq!(
        sample(&m, r#"linnix_injector_errors_total{kind="no-object"}"#),
        2.0
    );
}

/// A body over the limit gets its 413 over HTTP/1.1 and HTTP/2, from clients
/// that write the whole body before they read (reqwest/hyper) and from curl:
/// the length is refused before the body is read, and the body is then read
/// and dropped instead of resetting the stream or the connection.
#[tokio::test]
async fn oversized_bodies_get_413_over_both_protocols() {
    let server = Server::start(&[]);
    let ca = std::fs::read(server.ca_path()).unwrap();
    let big = vec![b' '; 5 * 1024 * 1024];
    for (alpn, version) in [
        (&b"http/1.1"[..], reqwest::Version::HTTP_11),
        (&b"h2"[..], reqwest::Version::HTTP_2),
    ] {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(&ca, &[alpn]))
            .build()
            .unwrap();
        for _ in 0..3 {
            let resp = client
                .post(server.url("/mutate"))
                .header("Content-Type", "application/json")
                .body(big.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("{version:?}: {e:?}"));
            assert_eq!(resp.version(), version);
            assert_eq!(resp.status(), 413, "{version:?}");
            assert!(resp
                .text()
                .await
                .unwrap()
                .contains("larger than 4194304 bytes"));
        }
        // The connection (or stream) is still good for a real review.
        let pod = pod(json!({"sidecar.linnix.io/inject": "true"}), app_spec());
        let resp = client
            .post(server.url("/mutate"))
            .json(&review_of(&pod, "apps"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.json");
    std::fs::write(&file, &big).unwrap();
    for flag in ["--http1.1", "--http2"] {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                flag,
            ])
            .arg("--cacert")
            .arg(server.ca_path())
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .arg(server.url("/mutate"))
            .output()
            .expect("curl");
        let answer = String::from_utf8_lossy(&out.stdout);
        assert!(
            answer.starts_with("413 "),
            "curl {flag}: {answer} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
