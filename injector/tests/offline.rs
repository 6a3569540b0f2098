//! `linnix-injector inject` on every supported kind, checked against the
//! real Kubernetes schemas.

mod common;

use common::*;
use serde::Deserialize;
use serde_json::Value;

/// Shared with the tests of `check`, which must agree with `inject` on it.
const WORKLOADS: &str = include_str!("fixtures/workloads.yaml");

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
    // The per-pod memory limit applies to templates too.
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
    assert!(String::from_utf8_lossy(&bad.stderr).contains("document 1 (from line 1)"));
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

/// What kubectl (a YAML 1.1 reader) reads in the output is what it read in
/// the input: checked with PyYAML, which reads YAML 1.1 as kubectl does.
/// Untouched documents come out byte for byte.
#[test]
fn output_means_to_a_yaml_1_1_reader_what_the_input_meant() {
    let config_map = "# keep this comment\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: flags}\ndata:\n  a: \"yes\"\n  b: \"on\"\n  c: 'off'\n  d: \"no\"\n  e: \"12:30\"\n  f: \"1_000\"\n  g: \"2024-01-01\"\n  h: \"0644\"\n  i: \"~\"\n";
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    sidecar.linnix.io/inject: \"true\"\n    a: \"yes\"\n    b: \"on\"\n    c: 'off'\n    d: \"no\"\n    e: \"12:30\"\n    f: \"1_000\"\n    g: \"2024-01-01\"\n    h: \"0644\"\n    \"on\": \"y\"\n    note: \"a: b # c\\n\\u2028end\"\nspec:\n  hostNetwork: no\n  containers:\n  - name: app\n    image: nginx\n    env:\n    - {name: A, value: \"0x10\"}\n    - {name: B, value: \"1e3\"}\n    - {name: C, value: \"line 1\\n  line 2\\twith a tab\\n\"}\n    - {name: D, value: \"x\\n\\n\\n\"}\n    - {name: E, value: \"no end\\n# not a comment\"}\n  volumes:\n  - name: cfg\n    configMap: {name: flags, defaultMode: 0644}\n  - name: other\n    secret: {secretName: s, defaultMode: 0600}\n";
    let input = format!("{config_map}---\n{pod}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {{ports: [{{port: 80}}]}}\n");
    let out = inject(&["inject", "-f", "-"], Some(&input));
    // The ConfigMap and the Service, byte for byte.
    assert!(out.starts_with(config_map), "{out}");
    assert!(out.ends_with("---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.yaml"), &input).unwrap();
    std::fs::write(dir.path().join("out.yaml"), &out).unwrap();
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/.venv/bin/python");
    let script = r#"
import json, sys, yaml
def load(p):
    return [d for d in yaml.safe_load_all(open(p)) if d is not None]
before, after = load(sys.argv[1]), load(sys.argv[2])
assert len(before) == len(after) == 3, (len(before), len(after))
pod = after[1]
tracer = pod["spec"]["initContainers"].pop(0)
assert tracer["name"] == "linnix-tracer", tracer
status = pod["metadata"]["annotations"].pop("sidecar.linnix.io/status")
assert status.startswith("injected"), status
assert pod["metadata"]["annotations"].pop("kubectl.kubernetes.io/default-container") == "app"
assert pod["spec"].pop("shareProcessNamespace") is True
assert pod["spec"].pop("initContainers") == []
assert after == before, json.dumps([before, after], default=str, indent=1)
# The values themselves, as kubectl reads them.
vols = pod["spec"]["volumes"]
assert vols[0]["configMap"]["defaultMode"] == 420, vols
assert vols[1]["secret"]["defaultMode"] == 384, vols
a = pod["metadata"]["annotations"]
assert [a[k] for k in "abcdefgh"] == ["yes", "on", "off", "no", "12:30", "1_000", "2024-01-01", "0644"], a
assert a["on"] == "y" and pod["spec"]["hostNetwork"] is False
assert [e["value"] for e in pod["spec"]["containers"][0]["env"]] == ["0x10", "1e3", "line 1\n  line 2\twith a tab\n", "x\n\n\n", "no end\n# not a comment"]
print("ok")
"#;
    let run = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(dir.path().join("in.yaml"))
        .arg(dir.path().join("out.yaml"))
        .output()
        .expect("tests/.venv python (scripts/setup.sh)");
    assert!(
        run.status.success(),
        "{}{}\n--- output ---\n{out}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        out.contains("value: |\n"),
        "multi-line strings as literal blocks: {out}"
    );
    kubernetes_validate(&out);
    // Injecting the output again changes nothing at all.
    assert_eq!(inject(&["inject", "-f", "-"], Some(&out)), out);
}
