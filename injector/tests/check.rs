//! `linnix-injector check` offline: against the fixtures `inject` uses and
//! against the webhook's own answers (the in-cluster report is in
//! `check_report.rs`, the client side in `check_cluster.rs`).

mod common;

use common::*;
use serde::Deserialize;
use serde_json::{json, Value};

const WORKLOADS: &str = include_str!("fixtures/workloads.yaml");

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// `check ARGS` with `stdin`: (exit code, JSON reports or stdout text, stderr).
fn check(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let out = run(&all, stdin);
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn check_json(args: &[&str], stdin: &str) -> (i32, Vec<Value>) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", "json", "-f", "-"]);
    let (code, stdout, stderr) = check(&all, Some(stdin));
    assert_ne!(code, 2, "check failed: {stderr}");
    (code, serde_json::from_str(&stdout).unwrap())
}

/// The pod templates of `inject`'s output, in document order.
fn templates(doc: &Value) -> Vec<&Value> {
    match doc["kind"].as_str().unwrap() {
        "Pod" => vec![doc],
        "CronJob" => vec![&doc["spec"]["jobTemplate"]["spec"]["template"]],
        "List" => doc["items"].as_array().unwrap().iter().collect(),
        "Service" => vec![],
        _ => vec![&doc["spec"]["template"]],
    }
}

fn tracer_of(template: &Value) -> &Value {
    template["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .chain(template["spec"]["containers"].as_array())
        .flatten()
        .find(|c| c["name"] == "linnix-tracer")
        .unwrap_or_else(|| panic!("no tracer in {template}"))
}

#[test]
fn check_shows_what_inject_injects_for_every_workload_kind() {
    let out = run(&["inject", "-f", "-"], Some(WORKLOADS));
    assert!(out.status.success());
    let injected = docs(&String::from_utf8(out.stdout).unwrap());
    let injected: Vec<&Value> = injected.iter().flat_map(templates).collect();

    let (code, reports) = check_json(&[], WORKLOADS);
    assert_eq!(code, 0, "every template asks for the tracer");
    assert_eq!(reports.len(), injected.len());
    assert_eq!(reports.len(), 8);
    for (r, t) in reports.iter().zip(&injected) {
        assert_eq!(r["injected"], true, "{r}");
        assert_eq!(r["rule"], "3");
        assert_eq!(r["reason"], "requested");
        assert_eq!(&r["tracer"], tracer_of(t), "{}", r["kind"]);
        assert_eq!(
            r["status"],
            t["metadata"]["annotations"]["sidecar.linnix.io/status"]
        );
        assert_eq!(r["warnings"], json!([]));
    }
    let kinds: Vec<&str> = reports
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob",
            "Pod"
        ]
    );
    assert_eq!(reports[1]["namespace"], "team-a");
    assert_eq!(reports[1]["template"], "/spec/template");
    assert_eq!(
        reports[1]["settings"]["memory-limit"],
        json!({"value": "128Mi", "origin": "pod"})
    );
    assert_eq!(reports[6]["template"], "/spec/jobTemplate/spec/template");

    // The text form says the same, one block per template.
    let (code, text, _) = check(&["-f", "-"], Some(WORKLOADS));
    assert_eq!(code, 0);
    assert_eq!(
        text.matches("  result:   injected: rule 3 (requested)")
            .count(),
        8
    );
    assert!(
        text.contains("Deployment team-a/web (pod template /spec/template)"),
        "{text}"
    );
    assert!(text.contains("memory-limit=128Mi (from the pod)"), "{text}");

    // The injected output checks as already injected.
    let out = run(&["inject", "-f", "-"], Some(WORKLOADS));
    let (code, again) = check_json(&[], &String::from_utf8(out.stdout).unwrap());
    assert_eq!(code, 1, "already injected is not 'would be injected'");
    assert!(again
        .iter()
        .all(|r| r["rule"] == "1" && r["reason"] == "already-injected"));
}

fn pod_yaml(name: &str, annotations: Value, spec: Value) -> String {
    serde_yaml::to_string(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": spec,
    }))
    .unwrap()
}

/// For pods alone (no namespace facts), `check` reports the status and the
/// warnings the webhook answers with, for every row of the table.
#[tokio::test]
async fn check_agrees_with_the_webhook_on_every_pod_rule() {
    let app = app_spec();
    let cases: Vec<(&str, Value, Value, &str, &str)> = vec![
        (
            "asked",
            json!({"sidecar.linnix.io/inject": "true"}),
            app.clone(),
            "apps",
            "3",
        ),
        (
            "traced",
            json!({"sidecar.linnix.io/inject": "true"}),
            json!({"initContainers": [{"name": "linnix-tracer", "image": "t"}], "containers": [{"name": "app", "image": "a"}]}),
            "apps",
            "1",
        ),
        (
            "system",
            json!({"sidecar.linnix.io/inject": "true"}),
            app.clone(),
            "kube-system",
            "2",
        ),
        (
            "refused",
            json!({"sidecar.linnix.io/inject": "disabled"}),
            app.clone(),
            "apps",
            "4",
        ),
        (
            "odd",
            json!({"sidecar.linnix.io/inject": "yes please"}),
            app.clone(),
            "apps",
            "5",
        ),
        ("silent", json!({}), app.clone(), "apps", "6b"),
        (
            "private",
            json!({"sidecar.linnix.io/inject": "true"}),
            json!({"shareProcessNamespace": false, "containers": [{"name": "app", "image": "a"}]}),
            "apps",
            "8",
        ),
        (
            "userns",
            json!({"sidecar.linnix.io/inject": "true"}),
            json!({"hostUsers": false, "containers": [{"name": "app", "image": "a"}]}),
            "apps",
            "9",
        ),
        (
            "overrides",
            json!({"sidecar.linnix.io/inject": "true", "sidecar.linnix.io/cpu": "2 cores", "sidecar.linnix.io/threads": "true", "sidecar.linnix.io/max-events-per-sec": "lots"}),
            app.clone(),
            "apps",
            "3",
        ),
    ];
    let server = Server::start(&[]);
    for (name, annotations, spec, namespace, rule) in cases {
        let yaml = pod_yaml(name, annotations, spec);
        let (code, reports) = check_json(&["-n", namespace], &yaml);
        let r = &reports[0];
        assert_eq!(r["rule"], rule, "{name}: {r}");
        assert_eq!(code, if rule == "3" { 0 } else { 1 }, "{name}");

        let object: Value = serde_yaml::from_str(&yaml).unwrap();
        let review = server.review(&review_of(&object, namespace)).await;
        let admitted = patched(&object, &review);
        assert_eq!(
            r["status"], admitted["metadata"]["annotations"]["sidecar.linnix.io/status"],
            "{name}"
        );
        assert_eq!(r["warnings"], json!(warnings(&review)), "{name}");
        let tracer = admitted["spec"]["initContainers"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == "linnix-tracer"));
        assert_eq!(r.get("tracer"), tracer, "{name}");
    }
}

#[test]
fn namespace_flags_stand_for_the_namespace() {
    let silent = pod_yaml("web", json!({}), app_spec());
    let (code, r) = check_json(
        &[
            "-n",
            "team-a",
            "--namespace-annotations",
            "sidecar.linnix.io/inject=true",
        ],
        &silent,
    );
    assert_eq!(
        (code, &r[0]["rule"], &r[0]["injected"]),
        (0, &json!("6"), &json!(true))
    );
    assert_eq!(
        r[0]["why"],
        "sidecar.linnix.io/inject=\"true\" on the namespace"
    );

    let (code, r) = check_json(
        &[
            "--namespace-annotations",
            "sidecar.linnix.io/inject=disabled",
        ],
        &silent,
    );
    assert_eq!(
        (code, &r[0]["reason"]),
        (1, &json!("disabled-by-namespace"))
    );

    let (code, r) = check_json(
        &[
            "--namespace-annotations=sidecar.linnix.io/inject=true",
            "--namespace-labels",
            "pod-security.kubernetes.io/enforce=restricted,team=a",
        ],
        &silent,
    );
    assert_eq!((code, &r[0]["rule"]), (1, &json!("7")));
    assert!(r[0]["warnings"][0].as_str().unwrap().contains("CAP_BPF"));

    // Settings: the pod wins over the namespace, the namespace over the config.
    let pod = pod_yaml(
        "web",
        json!({"sidecar.linnix.io/memory-limit": "256Mi", "sidecar.linnix.io/log-level": "shout"}),
        app_spec(),
    );
    let (code, r) = check_json(
        &[
            "--namespace-annotations",
            "sidecar.linnix.io/inject=true,sidecar.linnix.io/memory-limit=128Mi",
            "--namespace-annotations",
            "sidecar.linnix.io/log-level=debug,sidecar.linnix.io/native-sidecar=false",
        ],
        &pod,
    );
    assert_eq!(code, 0);
    let s = &r[0]["settings"];
    assert_eq!(
        s["memory-limit"],
        json!({"value": "256Mi", "origin": "pod"})
    );
    assert_eq!(
        s["log-level"],
        json!({"value": "debug", "origin": "namespace"})
    );
    assert_eq!(
        s["native-sidecar"],
        json!({"value": "false", "origin": "namespace"})
    );
    assert_eq!(s["cpu-limit"], json!({"value": "500m", "origin": "config"}));
    let w = r[0]["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0]
        .as_str()
        .unwrap()
        .starts_with("sidecar.linnix.io/log-level=\"shout\" ignored: "));
    let tracer = &r[0]["tracer"];
    assert_eq!(tracer["resources"]["limits"]["memory"], "256Mi");
    assert_eq!(
        tracer["args"],
        json!(["--metrics-addr=0.0.0.0:9464", "--log-level=debug"])
    );
    // A regular container, because the namespace said so.
    assert!(tracer.get("restartPolicy").is_none());
}

#[test]
fn the_config_limits_the_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        "sidecar:\n  args: [--max-events-per-sec=2000]\n  allowedOverrides: [memory-limit, threads]\n",
    )
    .unwrap();
    let pod = pod_yaml(
        "web",
        json!({
            "sidecar.linnix.io/inject": "true",
            "sidecar.linnix.io/max-events-per-sec": "0",
            "sidecar.linnix.io/threads": "true",
            "sidecar.linnix.io/memory-limit": "96Mi",
        }),
        app_spec(),
    );
    let (code, r) = check_json(&["--config", config.to_str().unwrap()], &pod);
    assert_eq!(code, 0, "a forbidden override is a warning, never a skip");
    let s = &r[0]["settings"];
    assert_eq!(
        s["max-events-per-sec"],
        json!({"value": "2000", "origin": "config"})
    );
    assert_eq!(s["threads"], json!({"value": "true", "origin": "pod"}));
    assert_eq!(s["memory-limit"]["value"], "96Mi");
    let w = r[0]["warnings"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0]
        .as_str()
        .unwrap()
        .contains("max-events-per-sec is not among the overrides"));
    assert_eq!(
        r[0]["tracer"]["args"],
        json!([
            "--metrics-addr=0.0.0.0:9464",
            "--max-events-per-sec=2000",
            "--threads"
        ])
    );
}

#[test]
fn ignore_exec_probes_is_passed_only_when_asked() {
    let asked = pod_yaml(
        "web",
        json!({"sidecar.linnix.io/inject": "true", "sidecar.linnix.io/ignore-exec-probes": "true"}),
        app_spec(),
    );
    let (_, r) = check_json(&[], &asked);
    assert_eq!(
        r[0]["tracer"]["args"],
        json!(["--metrics-addr=0.0.0.0:9464", "--ignore-exec-probes"])
    );
    for value in ["false", "maybe"] {
        let pod = pod_yaml(
            "web",
            json!({"sidecar.linnix.io/inject": "true", "sidecar.linnix.io/ignore-exec-probes": value}),
            app_spec(),
        );
        let (_, r) = check_json(&[], &pod);
        assert_eq!(
            r[0]["tracer"]["args"],
            json!(["--metrics-addr=0.0.0.0:9464"]),
            "{value}"
        );
    }
}

#[test]
fn nothing_checkable_exits_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad_config = dir.path().join("c.yaml");
    std::fs::write(&bad_config, "sidecar: {allowedOverrides: [event-cap]}\n").unwrap();
    let pod = pod_yaml("web", json!({}), app_spec());
    for (args, stdin, message) in [
        (vec!["-f", "-"], "kind: [", "document 1 (from line 1)"),
        (
            vec!["-f", "-"],
            "apiVersion: v1\nkind: ConfigMap\n",
            "no Pod and no workload",
        ),
        (vec!["-f", "/nonexistent/x.yaml"], "", "/nonexistent/x.yaml"),
        (
            vec!["-f", "-", "--config", bad_config.to_str().unwrap()],
            pod.as_str(),
            "unknown variant `event-cap`",
        ),
        (
            vec!["-f", "-", "--namespace-labels", "novalue"],
            pod.as_str(),
            "is not key=value",
        ),
        (vec!["-f", "-", "-o", "xml"], pod.as_str(), "xml"),
    ] {
        let (code, stdout, stderr) = check(&args, Some(stdin));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
    }
    // No cluster reachable (KUBECONFIG points nowhere): an error, not a hang.
    let (code, _, stderr) = check(&["web", "-n", "team-a"], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot connect to the cluster"), "{stderr}");
}
