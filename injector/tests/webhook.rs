//! The real `linnix-injector serve` over real HTTPS.

mod common;

use common::*;
use serde_json::{json, Value};

const STATUS: &str = "sidecar.linnix.io/status";

fn status(pod: &Value) -> &str {
    pod["metadata"]["annotations"][STATUS]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn annotated_pod_is_injected_once() {
    let server = Server::start(&[]);
    let pod = pod(json!({"sidecar.linnix.io/inject": "true"}), app_spec());
    let review = server.review(&review_of(&pod, "apps")).await;
    let r = response(&review);
    assert_eq!(r["allowed"], true);
    assert_eq!(r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert!(warnings(&review).is_empty());
    let out = patched(&pod, &review);
    assert!(
        status(&out).starts_with("injected (linnix-injector "),
        "{}",
        status(&out)
    );
    assert_eq!(out["spec"]["shareProcessNamespace"], true);
    let tracer = &out["spec"]["initContainers"][0];
    assert_eq!(tracer["name"], "linnix-tracer");
    assert_eq!(tracer["restartPolicy"], "Always");
    assert_eq!(tracer["startupProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        tracer["securityContext"]["capabilities"]["add"],
        json!(["BPF", "PERFMON"])
    );
    assert_eq!(out["spec"]["containers"], pod["spec"]["containers"]);

    // Injecting the injected pod again changes nothing.
    let again = server.review(&review_of(&out, "apps")).await;
    assert!(patch_of(&again).is_none(), "{again}");
    assert_eq!(patched(&out, &again), out);

    let m = server.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"linnix_injector_admissions_total{decision="injected",reason="requested"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            r#"linnix_injector_admissions_total{decision="skipped",reason="already-injected"}"#
        ),
        1.0
    );
    kubernetes_validate(&serde_yaml::to_string(&out).unwrap());
}

#[tokio::test]
async fn unknown_fields_survive_and_generate_name_only_pods_work() {
    let server = Server::start(&[]);
    let mut pod = pod(json!({"sidecar.linnix.io/inject": "enabled"}), app_spec());
    pod["metadata"] =
        json!({"generateName": "web-", "annotations": {"sidecar.linnix.io/inject": "enabled"}});
    pod["spec"]["futureField"] = json!({"x": [1, 2]});
    let review = server.review(&review_of(&pod, "apps")).await;
    let out = patched(&pod, &review);
    assert_eq!(out["spec"]["futureField"], json!({"x": [1, 2]}));
    assert_eq!(out["spec"]["initContainers"][0]["name"], "linnix-tracer");
}

#[tokio::test]
async fn unannotated_and_opted_out_pods_are_left_alone_with_a_status() {
    let server = Server::start(&[]);
    let plain =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": app_spec()});
    let review = server.review(&review_of(&plain, "apps")).await;
    let out = patched(&plain, &review);
    assert!(warnings(&review).is_empty());
    assert!(out["spec"].get("initContainers").is_none());
    assert!(
        status(&out).starts_with("skipped: neither the pod nor its namespace"),
        "{}",
        status(&out)
    );
    assert_eq!(out["spec"], plain["spec"]);

    for value in ["false", "disabled"] {
        let pod = pod(json!({"sidecar.linnix.io/inject": value}), app_spec());
        let review = server.review(&review_of(&pod, "apps")).await;
        let out = patched(&pod, &review);
        assert!(warnings(&review).is_empty());
        assert!(
            status(&out).contains("disabled on the pod"),
            "{}",
            status(&out)
        );
        assert_eq!(out["spec"], pod["spec"]);
    }
    let m = server.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"linnix_injector_admissions_total{decision="skipped",reason="not-requested"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            r#"linnix_injector_admissions_total{decision="skipped",reason="disabled-by-pod"}"#
        ),
        2.0
    );
}

#[tokio::test]
async fn skip_reasons_are_visible() {
    let server = Server::start(&["--namespace=linnix-system"]);
    let asked = json!({"sidecar.linnix.io/inject": "true"});

    // Protected namespaces: no change at all, but a warning since it was asked for.
    for ns in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "linnix-system",
    ] {
        let pod = pod(asked.clone(), app_spec());
        let review = server.review(&review_of(&pod, ns)).await;
        assert!(patch_of(&review).is_none(), "{ns}: {review}");
        let w = warnings(&review);
        assert_eq!(w.len(), 1, "{ns}: {w:?}");
        assert!(
            w[0].contains(&format!("namespace {ns} is never injected")),
            "{w:?}"
        );
    }

    // shareProcessNamespace: false, explicitly.
    let pod = pod(
        asked.clone(),
        json!({"shareProcessNamespace": false, "containers": [{"name": "app", "image": "x"}]}),
    );
    let review = server.review(&review_of(&pod, "apps")).await;
    let out = patched(&pod, &review);
    assert_eq!(out["spec"]["shareProcessNamespace"], false);
    assert!(out["spec"].get("initContainers").is_none());
    assert!(status(&out).contains("shareProcessNamespace is explicitly false"));
    assert!(warnings(&review)[0].contains("shareProcessNamespace"));

    // A user namespace: CAP_BPF there is no CAP_BPF on the host.
    let pod = common::pod(
        asked.clone(),
        json!({"hostUsers": false, "containers": [{"name": "app", "image": "x"}]}),
    );
    let review = server.review(&review_of(&pod, "apps")).await;
    let out = patched(&pod, &review);
    assert!(out["spec"].get("initContainers").is_none());
    assert!(
        status(&out).contains("hostUsers is false"),
        "{}",
        status(&out)
    );
    assert!(warnings(&review)[0].contains("user namespace"));

    // A value that is neither yes nor no.
    let pod = pod_with("sidecar.linnix.io/inject", "yes please");
    let review = server.review(&review_of(&pod, "apps")).await;
    let out = patched(&pod, &review);
    assert!(out["spec"].get("initContainers").is_none());
    assert!(status(&out).contains("\"yes please\""), "{}", status(&out));
    assert!(warnings(&review)[0].contains("not one of true, enabled, false, disabled"));

    let m = server.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"linnix_injector_admissions_total{decision="skipped",reason="protected-namespace"}"#
        ),
        4.0
    );
    assert_eq!(
        sample(
            &m,
            r#"linnix_injector_admissions_total{decision="skipped",reason="share-process-namespace-disabled"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            r#"linnix_injector_admissions_total{decision="skipped",reason="invalid-annotation"}"#
        ),
        1.0
    );
}

fn pod_with(key: &str, value: &str) -> Value {
    pod(json!({ key: value }), app_spec())
}

#[tokio::test]
async fn resource_overrides_and_bad_overrides() {
    let server = Server::start(&[]);
    let pod = pod(
        json!({"sidecar.linnix.io/inject": "true", "sidecar.linnix.io/cpu-limit": "500m", "sidecar.linnix.io/memory-limit": "40Mi"}),
        app_spec(),
    );
    let review = server.review(&review_of(&pod, "apps")).await;
    assert!(warnings(&review).is_empty());
    let out = patched(&pod, &review);
    let res = &out["spec"]["initContainers"][0]["resources"];
    assert_eq!(res["limits"], json!({"cpu": "500m", "memory": "40Mi"}));
    // The memory request (16Mi by default) is below the limit: it stays.
    assert_eq!(res["requests"], json!({"cpu": "10m", "memory": "16Mi"}));
    kubernetes_validate(&serde_yaml::to_string(&out).unwrap());

    let pod = pod_bad_overrides();
    let review = server.review(&review_of(&pod, "apps")).await;
    let w = warnings(&review);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter()
            .any(|w| w.contains("sidecar.linnix.io/cpu=\"2 cores\" ignored")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("sidecar.linnix.io/memory=\"-64Mi\" ignored")),
        "{w:?}"
    );
    let out = patched(&pod, &review);
    let res = &out["spec"]["initContainers"][0]["resources"];
    assert_eq!(res["limits"], json!({"cpu": "500m", "memory": "64Mi"}));
}

#[tokio::test]
async fn non_string_and_exact_overrides() {
    let server = Server::start(&[]);
    let pod = pod(
        json!({"sidecar.linnix.io/inject": "true", "sidecar.linnix.io/memory": 128}),
        app_spec(),
    );
    let review = server.review(&review_of(&pod, "apps")).await;
    let w = warnings(&review);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("sidecar.linnix.io/memory ignored: its value is a number"),
        "{w:?}"
    );
    // A request a nano above the limit is refused, or the API server would
    // reject the patched pod; the same request at the limit is taken.
    // (CPU: memory comes in whole bytes.)
    for (limit, request) in [("0.047999999", "10m"), ("0.048", "48m")] {
        let asked = common::pod(
            json!({"sidecar.linnix.io/inject": "true", "sidecar.linnix.io/cpu-limit": limit, "sidecar.linnix.io/cpu": "48m"}),
            app_spec(),
        );
        let out = patched(&asked, &server.review(&review_of(&asked, "apps")).await);
        let res = &out["spec"]["initContainers"][0]["resources"];
        assert_eq!(res["limits"]["cpu"], limit);
        assert_eq!(res["requests"]["cpu"], request, "limit {limit}");
    }
    // Below the tracer's load-time peak: refused, with a warning.
    let pod = pod_with_memory("16Mi");
    let review = server.review(&review_of(&pod, "apps")).await;
    let w = warnings(&review);
    assert!(w.len() == 1 && w[0].contains("below 32Mi"), "{w:?}");
    let out = patched(&pod, &review);
    assert_eq!(
        out["spec"]["initContainers"][0]["resources"]["limits"]["memory"],
        "64Mi"
    );
}

fn pod_with_memory(memory: &str) -> Value {
    pod(
        json!({"sidecar.linnix.io/inject": "true", "sidecar.linnix.io/memory-limit": memory}),
        app_spec(),
    )
}

fn pod_bad_overrides() -> Value {
    pod(
        json!({"sidecar.linnix.io/inject": "true", "sidecar.linnix.io/cpu": "2 cores", "sidecar.linnix.io/memory": "-64Mi"}),
        app_spec(),
    )
}

#[tokio::test]
async fn regular_container_mode() {
    let server = Server::start(&["--native-sidecar=false"]);
    let pod = pod(json!({"sidecar.linnix.io/inject": "true"}), app_spec());
    let review = server.review(&review_of(&pod, "apps")).await;
    let out = patched(&pod, &review);
    assert!(out["spec"].get("initContainers").is_none());
    let tracer = &out["spec"]["containers"][1];
    assert_eq!(tracer["name"], "linnix-tracer");
    assert!(tracer.get("restartPolicy").is_none());
    kubernetes_validate(&serde_yaml::to_string(&out).unwrap());
}

#[tokio::test]
async fn config_file_is_used() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "sidecar:\n  name: tracer\n  image: example.org/tracer:9\n  args: [--threads]\n  metricsPort: 9999\n  seccompProfile: {type: RuntimeDefault}\n",
    )
    .unwrap();
    let flag = format!("--config={}", config.display());
    let server = Server::start_in(dir, &[&flag], true);
    let pod = pod(json!({"sidecar.linnix.io/inject": "true"}), app_spec());
    let out = patched(&pod, &server.review(&review_of(&pod, "apps")).await);
    let tracer = &out["spec"]["initContainers"][0];
    assert_eq!(tracer["name"], "tracer");
    assert_eq!(tracer["image"], "example.org/tracer:9");
    assert_eq!(
        tracer["args"],
        json!(["--metrics-addr=0.0.0.0:9999", "--threads"])
    );
    assert_eq!(tracer["ports"][0]["containerPort"], 9999);
    assert_eq!(
        tracer["securityContext"]["seccompProfile"],
        json!({"type": "RuntimeDefault"})
    );
}

#[tokio::test]
async fn dry_run_answers_the_same_and_counts_nothing() {
    let server = Server::start(&[]);
    let pod = pod(json!({"sidecar.linnix.io/inject": "true"}), app_spec());
    let mut review = review_of(&pod, "apps");
    review["request"]["dryRun"] = json!(true);
    let answer = server.review(&review).await;
    assert!(patch_of(&answer).is_some());
    let m = server.metrics().await;
    assert!(!m.contains("linnix_injector_admissions_total{"), "{m}");
}

#[tokio::test]
async fn other_kinds_and_operations_pass_unchanged() {
    let server = Server::start(&[]);
    let pod = pod(json!({"sidecar.linnix.io/inject": "true"}), app_spec());
    let mut update = review_of(&pod, "apps");
    update["request"]["operation"] = json!("UPDATE");
    update["request"]["oldObject"] = pod.clone();
    let mut deployment = review_of(&json!({"kind": "Deployment"}), "apps");
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let mut binding = review_of(&pod, "apps");
    binding["request"]["subResource"] = json!("binding");
    for review in [update, deployment, binding] {
        let answer = server.review(&review).await;
        assert_eq!(answer["response"]["allowed"], true);
        assert!(patch_of(&answer).is_none(), "{answer}");
        assert!(warnings(&answer).is_empty());
    }
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let mut server = Server::start(&[]);
    let pod = pod(json!({"sidecar.linnix.io/inject": "true"}), app_spec());
    assert!(patch_of(&server.review(&review_of(&pod, "apps")).await).is_some());
    let status = server.terminate();
    assert!(status.success(), "{status}");
}
