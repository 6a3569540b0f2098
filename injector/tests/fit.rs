//! Pods whose own spec the tracer must fit, through the real webhook over
//! HTTPS: pod-level resources, a port the app already declares, and pods
//! that run to completion. Each patched pod is checked the way the API
//! server validates it.

mod common;

use common::*;
use linnix_injector::quantity::Quantity;
use serde_json::{json, Value};

fn nanos(v: &Value) -> i128 {
    Quantity::parse(v.as_str().unwrap()).unwrap().nanos()
}

/// Containers that count toward the pod's resources: app containers and
/// restartable (native sidecar) init containers.
fn counted(pod: &Value) -> Vec<&Value> {
    let spec = &pod["spec"];
    spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            spec["initContainers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["restartPolicy"] == "Always"),
        )
        .collect()
}

fn tracer(pod: &Value) -> &Value {
    counted(pod)
        .into_iter()
        .find(|c| c["name"] == "linnix-tracer")
        .unwrap_or_else(|| panic!("no tracer in {pod}"))
}

/// The API server's rules for pod-level resources (Kubernetes 1.34,
/// `validatePodResources`): the containers' requests together within the
/// pod's, and each container's limit within the pod's limit.
fn assert_pod_resources_hold(pod: &Value) {
    let pod_res = &pod["spec"]["resources"];
    for resource in ["cpu", "memory"] {
        if let Some(req) = pod_res["requests"].get(resource) {
            let sum: i128 = counted(pod)
                .iter()
                .filter_map(|c| c["resources"]["requests"].get(resource))
                .map(nanos)
                .sum();
            assert!(
                sum <= nanos(req),
                "{resource}: containers request {sum} > pod {req}"
            );
        }
        if let Some(limit) = pod_res["limits"].get(resource) {
            for c in counted(pod) {
                if let Some(l) = c["resources"]["limits"].get(resource) {
                    assert!(nanos(l) <= nanos(limit), "{}: {l} > pod {limit}", c["name"]);
                }
            }
        }
    }
}

#[tokio::test]
async fn pod_level_resources_are_raised_by_the_tracer_share() {
    let server = Server::start(&[]);
    let both = json!({"cpu": "1", "memory": "1Gi"});
    let spec = json!({
        "resources": {"requests": both, "limits": both},
        "containers": [{"name": "app", "image": "app:1", "resources": {"requests": both, "limits": both}}],
    });
    let pod = common::pod(json!({"sidecar.linnix.io/inject": "true"}), spec);
    let review = server.review(&review_of(&pod, "apps")).await;
    let out = patched(&pod, &review);
    tracer(&out);
    assert_pod_resources_hold(&out);
    assert_eq!(out["spec"]["resources"]["requests"]["cpu"], "1010m");
    assert_eq!(out["spec"]["resources"]["requests"]["memory"], "1040Mi");
    let w = warnings(&review);
    assert!(w.iter().any(|w| w.contains("spec.resources")), "{w:?}");
    // Only what the pod sets is raised.
    let spec = json!({
        "resources": {"limits": {"memory": "2Gi"}},
        "containers": [{"name": "app", "image": "app:1"}],
    });
    let pod = common::pod(json!({"sidecar.linnix.io/inject": "true"}), spec);
    let out = patched(&pod, &server.review(&review_of(&pod, "apps")).await);
    assert_eq!(
        out["spec"]["resources"],
        json!({"limits": {"memory": "2112Mi"}})
    );
}

#[tokio::test]
async fn the_metrics_port_moves_off_a_port_the_app_declares() {
    let server = Server::start(&[]);
    for (annotations, host_network) in [
        (json!({"sidecar.linnix.io/inject": "true"}), false),
        (
            json!({"sidecar.linnix.io/inject": "true", "sidecar.linnix.io/native-sidecar": "false"}),
            true,
        ),
    ] {
        let spec = json!({
            "hostNetwork": host_network,
            "containers": [{"name": "app", "image": "app:1", "ports": [
                {"containerPort": 9464, "hostPort": if host_network { json!(9464) } else { json!(null) }},
                {"containerPort": 9465, "protocol": "UDP"},
            ]}],
        });
        let pod = common::pod(annotations, spec);
        let review = server.review(&review_of(&pod, "apps")).await;
        let out = patched(&pod, &review);
        let t = tracer(&out);
        let port = t["ports"][0]["containerPort"].as_u64().unwrap();
        assert_eq!(port, 9466, "{t}");
        // Every declared port of the pod is unique (what validation
        // refuses for host ports, and what would share one socket).
        let mut all: Vec<u64> = counted(&out)
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .map(|p| p["containerPort"].as_u64().unwrap())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 3, "{out}");
        let args: Vec<&str> = t["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.contains(&"--metrics-addr=0.0.0.0:9466"), "{args:?}");
        // The startup probe of the native tracer names the port that moved.
        if let Some(probe) = t.get("startupProbe") {
            assert_eq!(probe["httpGet"]["port"], t["ports"][0]["name"]);
        }
        let w = warnings(&review);
        assert!(w.iter().any(|w| w.contains("port 9466")), "{w:?}");
    }
}

#[tokio::test]
async fn pods_that_run_to_completion_still_complete() {
    // Configured native: a pod's native-sidecar=false is overruled.
    let server = Server::start(&[]);
    let spec = json!({"restartPolicy": "Never", "containers": [{"name": "job", "image": "job:1"}]});
    let pod = common::pod(
        json!({"sidecar.linnix.io/inject": "true", "sidecar.linnix.io/native-sidecar": "false"}),
        spec.clone(),
    );
    let review = server.review(&review_of(&pod, "batch")).await;
    let out = patched(&pod, &review);
    assert_eq!(out["spec"]["initContainers"][0]["name"], "linnix-tracer");
    assert_eq!(out["spec"]["initContainers"][0]["restartPolicy"], "Always");
    assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
    let w = warnings(&review);
    assert!(w.iter().any(|w| w.contains("runs to completion")), "{w:?}");

    // Configured regular: no form works, the pod is skipped and says why.
    let server = Server::start(&["--native-sidecar=false"]);
    for policy in ["Never", "OnFailure"] {
        let spec =
            json!({"restartPolicy": policy, "containers": [{"name": "job", "image": "job:1"}]});
        let pod = common::pod(json!({"sidecar.linnix.io/inject": "true"}), spec);
        let review = server.review(&review_of(&pod, "batch")).await;
        let out = patched(&pod, &review);
        assert_eq!(
            out["spec"]["containers"].as_array().unwrap().len(),
            1,
            "{out}"
        );
        let status = out["metadata"]["annotations"]["sidecar.linnix.io/status"]
            .as_str()
            .unwrap();
        assert!(
            status.starts_with("skipped: the pod runs to completion"),
            "{status}"
        );
        assert_eq!(warnings(&review).len(), 1);
    }
    let m = server.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"linnix_injector_admissions_total{decision="skipped",reason="runs-to-completion"}"#
        ),
        2.0,
        "{m}"
    );
    // A long-running pod keeps the regular form.
    let pod = common::pod(json!({"sidecar.linnix.io/inject": "true"}), app_spec());
    let out = patched(&pod, &server.review(&review_of(&pod, "apps")).await);
    assert_eq!(out["spec"]["containers"][1]["name"], "linnix-tracer");
}
