//! `kubectl debug POD --copy-to=NAME`: the copy of a traced pod already
//! has the tracer, and the webhook must leave it as it is.
//!
//! `debug_copy` does what kubectl does (`pkg/cmd/debug/debug.go`,
//! `generatePodCopyWithDebugContainer`, and the profiles of
//! `pkg/cmd/debug/profiles.go`): the copy keeps the spec, loses
//! ephemeral containers and the node name, gets a debug container
//! appended; the `legacy` profile drops the labels, the `general` profile
//! (the default) also the annotations, the app containers' probes and,
//! with `--keep-init-containers=false`, the init containers.

mod common;

use common::*;
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq)]
enum Profile {
    Legacy,
    General,
}

struct Debug<'a> {
    profile: Profile,
    /// `--set-image=*=IMAGE`: every app container's image.
    set_all_images: Option<&'a str>,
    /// `--share-processes=BOOL` given explicitly.
    share_processes: Option<bool>,
    keep_init_containers: bool,
}

impl Default for Debug<'_> {
    fn default() -> Self {
        Self {
            profile: Profile::General,
            set_all_images: None,
            share_processes: None,
            keep_init_containers: true,
        }
    }
}

fn debug_copy(pod: &Value, copy_to: &str, o: &Debug<'_>) -> Value {
    let mut copy = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": copy_to, "namespace": pod["metadata"]["namespace"]},
        "spec": pod["spec"].clone(),
    });
    if let Some(a) = pod["metadata"].get("annotations") {
        copy["metadata"]["annotations"] = a.clone();
    }
    let spec = copy["spec"].as_object_mut().unwrap();
    spec.remove("ephemeralContainers");
    if let Some(share) = o.share_processes {
        spec.insert("shareProcessNamespace".into(), json!(share));
    }
    spec.remove("nodeName");
    if let Some(image) = o.set_all_images {
        for c in spec["containers"].as_array_mut().unwrap() {
            c["image"] = json!(image);
        }
    }
    let containers = spec["containers"].as_array_mut().unwrap();
    containers.push(json!({
        "name": "debugger-x7k2p", "image": "busybox",
        "terminationMessagePolicy": "File", "stdin": true, "tty": true,
    }));
    let meta = copy["metadata"].as_object_mut().unwrap();
    meta.remove("labels");
    if o.profile == Profile::General {
        meta.remove("annotations");
        let spec = copy["spec"].as_object_mut().unwrap();
        for c in spec["containers"].as_array_mut().unwrap() {
            let c = c.as_object_mut().unwrap();
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                c.remove(probe);
            }
        }
        if !o.keep_init_containers {
            spec.remove("initContainers");
        }
        let debugger = spec["containers"]
            .as_array_mut()
            .unwrap()
            .last_mut()
            .unwrap();
        debugger["securityContext"] = json!({"capabilities": {"add": ["SYS_PTRACE"]}});
        spec.entry("shareProcessNamespace").or_insert(json!(true));
    }
    copy
}

/// The pod as the API server stores it after the webhook's patch.
async fn traced_pod(server: &Server) -> Value {
    let mut pod = pod(
        json!({"sidecar.linnix.io/inject": "true", "sidecar.linnix.io/memory-limit": "96Mi"}),
        json!({"containers": [{
            "name": "app", "image": "registry.example/app:1",
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
        }]}),
    );
    pod["metadata"]["labels"] = json!({"app": "web", "pod-template-hash": "7c9d"});
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7c9d", "uid": "9a1e0000-0000-4000-8000-000000000002", "controller": true}]);
    let review = server.review(&review_of(&pod, "apps")).await;
    assert!(warnings(&review).is_empty());
    let mut stored = patched(&pod, &review);
    stored["metadata"]["namespace"] = json!("apps");
    stored["metadata"]["uid"] = json!("5b1f0000-0000-4000-8000-000000000001");
    stored["spec"]["nodeName"] = json!("node-1");
    stored["spec"]["ephemeralContainers"] = json!([{"name": "debugger-old", "image": "busybox"}]);
    stored["status"] = json!({"phase": "Running"});
    stored
}

/// The review of `copy` changes nothing and warns about nothing.
async fn unchanged(server: &Server, copy: &Value, what: &str) {
    let review = server.review(&review_of(copy, "apps")).await;
    assert!(patch_of(&review).is_none(), "{what}: {review}");
    assert!(warnings(&review).is_empty(), "{what}: {review}");
    kubernetes_validate(&serde_yaml::to_string(copy).unwrap());
}

#[tokio::test]
async fn a_debug_copy_of_a_traced_pod_is_left_as_it_is() {
    let server = Server::start(&[]);
    let original = traced_pod(&server).await;
    let tracer = original["spec"]["initContainers"][0].clone();
    assert_eq!(tracer["name"], "linnix-tracer");

    let general = debug_copy(&original, "web-debug", &Debug::default());
    // The default profile dropped the status annotation: the tracer
    // container alone says the copy is traced.
    assert!(general["metadata"].get("annotations").is_none());
    assert_eq!(general["spec"]["initContainers"][0], tracer);
    unchanged(&server, &general, "general profile").await;

    let legacy = debug_copy(
        &original,
        "web-debug",
        &Debug {
            profile: Profile::Legacy,
            share_processes: Some(false),
            ..Debug::default()
        },
    );
    assert!(
        legacy["metadata"]["annotations"]["sidecar.linnix.io/status"]
            .as_str()
            .unwrap()
            .starts_with("injected (")
    );
    unchanged(&server, &legacy, "legacy profile, --share-processes=false").await;

    // --set-image=*=... reaches app containers only, not the native tracer.
    let images = debug_copy(
        &original,
        "web-debug",
        &Debug {
            set_all_images: Some("registry.example/app:2-debug"),
            ..Debug::default()
        },
    );
    assert_eq!(images["spec"]["initContainers"][0], tracer);
    unchanged(&server, &images, "--set-image").await;

    let m = server.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"linnix_injector_admissions_total{decision="skipped",reason="already-injected"}"#
        ),
        3.0
    );

    // `check` on the copies says why: rule 1.
    for copy in [&general, &legacy, &images] {
        let out = run(
            &["check", "-f", "-", "-o", "json"],
            Some(&serde_yaml::to_string(copy).unwrap()),
        );
        assert_eq!(out.status.code(), Some(1));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r[0]["rule"], "1");
        assert_eq!(r[0]["tracer"], tracer);
    }
}

#[tokio::test]
async fn a_regular_container_tracer_survives_a_copy_too() {
    let server = Server::start(&["--native-sidecar=false"]);
    let original = traced_pod(&server).await;
    let tracer = original["spec"]["containers"][1].clone();
    assert_eq!(tracer["name"], "linnix-tracer");
    let copy = debug_copy(&original, "web-debug", &Debug::default());
    // kubectl removes app containers' probes: the tracer has none in this
    // mode, so it is copied whole.
    assert_eq!(copy["spec"]["containers"][1], tracer);
    unchanged(&server, &copy, "regular container").await;

    // --set-image=*=... does reach a regular container: the copy keeps
    // a tracer, unchanged, that `check --stale` reports.
    let copy = debug_copy(
        &original,
        "web-debug",
        &Debug {
            set_all_images: Some("busybox"),
            ..Debug::default()
        },
    );
    assert_eq!(copy["spec"]["containers"][1]["image"], "busybox");
    unchanged(&server, &copy, "regular container, --set-image").await;
}

#[tokio::test]
async fn a_copy_without_init_containers_is_decided_like_a_new_pod() {
    let server = Server::start(&[]);
    let original = traced_pod(&server).await;
    let copy = debug_copy(
        &original,
        "web-debug",
        &Debug {
            keep_init_containers: false,
            ..Debug::default()
        },
    );
    assert!(copy["spec"].get("initContainers").is_none());
    // Its annotations are gone with the general profile, the opt-in with
    // them: like any new pod that asks for nothing, it gets only a status.
    let review = server.review(&review_of(&copy, "apps")).await;
    let out = patched(&copy, &review);
    assert!(out["spec"].get("initContainers").is_none());
    assert!(out["metadata"]["annotations"]["sidecar.linnix.io/status"]
        .as_str()
        .unwrap()
        .starts_with("skipped: neither the pod nor its namespace"));
    // With the opt-in kept, it is injected once, and only once.
    let mut asked = copy.clone();
    asked["metadata"]["annotations"] = json!({"sidecar.linnix.io/inject": "true"});
    let review = server.review(&review_of(&asked, "apps")).await;
    let out = patched(&asked, &review);
    assert_eq!(out["spec"]["initContainers"][0]["name"], "linnix-tracer");
    unchanged(&server, &out, "re-injected copy").await;
}
