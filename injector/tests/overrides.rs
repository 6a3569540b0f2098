//! Per-pod tracer settings by annotation, end to end: through the webhook
//! over HTTPS, and inherited from namespaces read by the reflector's real
//! cache. Patched pods are checked against the Kubernetes schemas.

mod common;

use std::collections::BTreeMap;

use common::*;
use json_patch::jsonptr::PointerBuf;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ObjectMeta;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use linnix_injector::config::Config;
use linnix_injector::decision::{Context, Decision};
use linnix_injector::mutate::mutate;
use linnix_injector::namespaces::{NamespaceLookup, Reflected};
use linnix_injector::pod::PodFacts;
use serde_json::{json, Value};

fn tracer(pod: &Value) -> &Value {
    pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .chain(pod["spec"]["containers"].as_array())
        .flatten()
        .find(|c| c["name"] == "linnix-tracer")
        .unwrap_or_else(|| panic!("no tracer: {pod}"))
}

#[tokio::test]
async fn every_override_reaches_the_tracer() {
    let server = Server::start(&[]);
    let pod = pod(
        json!({
            "sidecar.linnix.io/inject": "true",
            "sidecar.linnix.io/cpu": "20m",
            "sidecar.linnix.io/cpu-limit": "1",
            "sidecar.linnix.io/memory": "48Mi",
            "sidecar.linnix.io/memory-limit": "128Mi",
            "sidecar.linnix.io/log-level": "debug",
            "sidecar.linnix.io/max-events-per-sec": "500",
            "sidecar.linnix.io/threads": "true",
            "sidecar.linnix.io/ignore-exec-probes": "true",
            "sidecar.linnix.io/native-sidecar": "false",
        }),
        app_spec(),
    );
    let review = server.review(&review_of(&pod, "apps")).await;
    assert!(warnings(&review).is_empty(), "{:?}", warnings(&review));
    let out = patched(&pod, &review);
    // native-sidecar=false: a regular container after the app.
    assert!(out["spec"].get("initContainers").is_none());
    let t = &out["spec"]["containers"][1];
    assert_eq!(t["name"], "linnix-tracer");
    assert!(t.get("startupProbe").is_none() && t.get("restartPolicy").is_none());
    assert_eq!(
        t["resources"],
        json!({"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}})
    );
    assert_eq!(
        t["args"],
        json!([
            "--metrics-addr=0.0.0.0:9464",
            "--log-level=debug",
            "--max-events-per-sec=500",
            "--threads",
            "--ignore-exec-probes"
        ])
    );
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "app"
    );
    kubernetes_validate(&serde_yaml::to_string(&out).unwrap());
}

#[tokio::test]
async fn bad_or_forbidden_overrides_warn_and_never_deny() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let config = dir.path().join("config.yaml");
    // A platform that lets teams size the tracer but not lift the event cap.
    std::fs::write(
        &config,
        "sidecar:\n  args: [--max-events-per-sec=1000]\n  allowedOverrides: [cpu, cpu-limit, memory, memory-limit]\n",
    )
    .unwrap();
    let flag = format!("--config={}", config.display());
    let server = Server::start_in(dir, &[&flag], true);
    let pod = pod(
        json!({
            "sidecar.linnix.io/inject": "true",
            "sidecar.linnix.io/max-events-per-sec": "0",
            "sidecar.linnix.io/memory": "1Gi",
            "sidecar.linnix.io/cpu-limit": "a lot",
            "sidecar.linnix.io/threads": "true",
        }),
        app_spec(),
    );
    let review = server.review(&review_of(&pod, "apps")).await;
    assert_eq!(response(&review)["allowed"], true);
    let w = warnings(&review);
    assert_eq!(w.len(), 4, "{w:#?}");
    for (key, why) in [
        (
            "max-events-per-sec=\"0\"",
            "max-events-per-sec is not among the overrides",
        ),
        ("threads=\"true\"", "threads is not among the overrides"),
        ("memory=\"1Gi\"", "the request exceeds the limit 64Mi"),
        ("cpu-limit=\"a lot\"", "has no digits"),
    ] {
        assert!(
            w.iter().any(
                |w| w.starts_with(&format!("sidecar.linnix.io/{key} ignored: ")) && w.contains(why)
            ),
            "{key}: {w:#?}"
        );
    }
    let out = patched(&pod, &review);
    let t = tracer(&out);
    assert_eq!(
        t["args"],
        json!(["--metrics-addr=0.0.0.0:9464", "--max-events-per-sec=1000"])
    );
    assert_eq!(
        t["resources"],
        json!({"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "500m", "memory": "64Mi"}})
    );
    kubernetes_validate(&serde_yaml::to_string(&out).unwrap());
}

fn namespace(name: &str, annotations: &[(&str, &str)]) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn namespaces_set_defaults_that_pods_override() {
    let (store, mut writer) = reflector::store::<Namespace>();
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitApply(namespace(
        "team-a",
        &[
            ("sidecar.linnix.io/inject", "true"),
            ("sidecar.linnix.io/memory-limit", "128Mi"),
            ("sidecar.linnix.io/log-level", "warn"),
            ("sidecar.linnix.io/threads", "sometimes"),
            ("unrelated.example/x", "y"),
        ],
    )));
    writer.apply_watcher_event(&Event::InitDone);
    let lookup = Reflected::new(store, None);
    let facts = lookup.lookup("team-a").await.unwrap().unwrap();
    assert_eq!(facts.settings.len(), 3, "{:?}", facts.settings);

    let sidecar = Config::default().sidecar.validate(None).unwrap();
    let ctx = Context {
        namespace: Some("team-a"),
        own_namespace: Some("linnix"),
        namespace_facts: Some(&facts),
        inject_all: false,
    };
    let admit = |pod: &Value| {
        let out = mutate(
            &PodFacts::of(pod),
            &PointerBuf::root(),
            &sidecar,
            &ctx,
            true,
        );
        assert_eq!(out.decision, Decision::Inject);
        let mut patched = pod.clone();
        json_patch::patch(&mut patched, &out.ops).unwrap();
        (patched, out.warnings)
    };

    let (inherits, w) = admit(&pod(json!({}), app_spec()));
    let t = tracer(&inherits);
    assert_eq!(t["resources"]["limits"]["memory"], "128Mi");
    assert_eq!(
        t["args"],
        json!(["--metrics-addr=0.0.0.0:9464", "--log-level=warn"])
    );
    // The namespace's bad value is reported on each of its pods.
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("(set on the namespace)"), "{}", w[0]);

    let (own, w) = admit(&pod(
        json!({"sidecar.linnix.io/memory-limit": "256Mi", "sidecar.linnix.io/threads": "false", "sidecar.linnix.io/log-level": "nonsense"}),
        app_spec(),
    ));
    let t = tracer(&own);
    assert_eq!(t["resources"]["limits"]["memory"], "256Mi");
    // The pod's bad log level gives way to the namespace's good one.
    assert_eq!(
        t["args"],
        json!(["--metrics-addr=0.0.0.0:9464", "--log-level=warn"])
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].ends_with("(set on the pod); the tracer gets warn from the namespace"),
        "{}",
        w[0]
    );
    kubernetes_validate(&serde_yaml::to_string(&own).unwrap());
}
