//! `linnix-injector inject` on every supported kind, checked against the
//! real Kubernetes schemas.

mod common;

use common::*;
use serde::Deserialize;
use serde_json::Value;

const WORKLOADS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: solo
  annotations: {sidecar.linnix.io/inject: "true"}
spec:
  containers: [{name: app, image: "registry.example/app:1"}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: team-a}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {sidecar.linnix.io/inject: "true", sidecar.linnix.io/memory: 128Mi}
    spec:
      containers: [{name: app, image: "registry.example/app:1"}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata:
      labels: {app: db}
      annotations: {sidecar.linnix.io/inject: enabled}
    spec:
      initContainers: [{name: migrate, image: "registry.example/db:1"}]
      containers: [{name: db, image: "registry.example/db:1"}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata:
      labels: {app: agent}
      annotations: {sidecar.linnix.io/inject: "true"}
    spec:
      containers: [{name: agent, image: "registry.example/agent:1"}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  selector: {matchLabels: {app: rs}}
  template:
    metadata:
      labels: {app: rs}
      annotations: {sidecar.linnix.io/inject: "true"}
    spec:
      containers: [{name: app, image: "registry.example/app:1"}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    metadata:
      annotations: {sidecar.linnix.io/inject: "true"}
    spec:
      restartPolicy: Never
      containers: [{name: task, image: "registry.example/task:1"}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations: {sidecar.linnix.io/inject: "true"}
        spec:
          restartPolicy: OnFailure
          containers: [{name: task, image: "registry.example/task:1"}]
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: listed
    annotations: {sidecar.linnix.io/inject: "true"}
  spec:
    containers: [{name: app, image: "registry.example/app:1"}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"#;

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

fn template(doc: &Value) -> &Value {
    match doc["kind"].as_str().unwrap() {
        "Pod" => doc,
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"],
        "List" => &doc["items"][0],
        _ => &doc["spec"]["template"],
    }
}

fn inject(args: &[&str], stdin: Option<&str>) -> String {
    let out = run(args, stdin);
    assert!(
        out.status.success(),
        "inject failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_workload_kind_is_injected_and_valid() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.yaml");
    std::fs::write(&file, WORKLOADS).unwrap();
    let yaml = inject(&["inject", "-f", file.to_str().unwrap()], None);
    let out = docs(&yaml);
    let input = docs(WORKLOADS);
    assert_eq!(out.len(), input.len());
    for (doc, orig) in out.iter().zip(&input) {
        let kind = doc["kind"].as_str().unwrap();
        if kind == "Service" {
            assert_eq!(doc, orig, "other kinds pass through unchanged");
            continue;
        }
        let t = template(doc);
        assert_eq!(
            t["spec"]["initContainers"][0]["name"], "linnix-tracer",
            "{kind}"
        );
        assert_eq!(t["spec"]["shareProcessNamespace"], true, "{kind}");
        let status = t["metadata"]["annotations"]["sidecar.linnix.io/status"]
            .as_str()
            .unwrap();
        assert!(status.starts_with("injected"), "{kind}: {status}");
    }
    // Existing init containers keep their order after the tracer.
    assert_eq!(
        template(&out[2])["spec"]["initContainers"][1]["name"],
        "migrate"
    );
    // The per-pod memory override applies to templates too.
    assert_eq!(
        template(&out[1])["spec"]["initContainers"][0]["resources"]["limits"]["memory"],
        "128Mi"
    );
    kubernetes_validate(&yaml);

    // Idempotent: injecting the output again yields the same manifests.
    let again = inject(&["inject", "-f", "-"], Some(&yaml));
    assert_eq!(docs(&again), out);
}

#[test]
fn all_flag_stdin_and_regular_containers() {
    let input = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: app, image: nginx}]\n";
    // Without --all an unannotated template is left as it is.
    let plain = inject(&["inject", "-f", "-"], Some(input));
    assert_eq!(docs(&plain), docs(input));

    let yaml = inject(
        &["inject", "-f", "-", "--all", "--native-sidecar=false"],
        Some(input),
    );
    let out = docs(&yaml);
    let spec = &out[0]["spec"]["template"]["spec"];
    assert!(spec.get("initContainers").is_none());
    assert_eq!(spec["containers"][1]["name"], "linnix-tracer");
    kubernetes_validate(&yaml);
}

#[test]
fn config_file_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "sidecar:\n  image: localhost/linnix-sidecar:dev\n  seccompProfile: {type: RuntimeDefault}\n").unwrap();
    let input = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: b}]}\n";
    let yaml = inject(
        &[
            "inject",
            "-f",
            "-",
            "--all",
            "--config",
            config.to_str().unwrap(),
        ],
        Some(input),
    );
    let out = docs(&yaml);
    let tracer = &out[0]["spec"]["initContainers"][0];
    assert_eq!(tracer["image"], "localhost/linnix-sidecar:dev");
    assert_eq!(
        tracer["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );

    // Bad YAML, a bad config and a missing file fail with a message.
    let bad = run(&["inject", "-f", "-"], Some("kind: [unclosed"));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("document 0"));
    std::fs::write(&config, "sidecar: {imagePullPolicy: Sometimes}\n").unwrap();
    let bad = run(
        &["inject", "-f", "-", "--config", config.to_str().unwrap()],
        Some(input),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not valid"));
    // A template that contradicts itself: the probe would never succeed.
    std::fs::write(
        &config,
        "sidecar:\n  metricsPort: 9464\n  args: [--metrics-addr=0.0.0.0:9100]\n",
    )
    .unwrap();
    let bad = run(
        &["inject", "-f", "-", "--config", config.to_str().unwrap()],
        Some(input),
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("listens on port 9100, but sidecar.metricsPort is 9464"),
        "{err}"
    );
    assert!(bad.stdout.is_empty());
    let bad = run(&["inject", "-f", "/nonexistent/x.yaml"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/x.yaml"));
}
