//! RFC 6902 operations against the raw pod JSON.
//!
//! The pod is never deserialized into a typed `Pod`: a typed round trip drops
//! fields this build does not know and costs time on large pods. Instead each
//! operation targets exactly what changes, under a JSON pointer prefix (empty
//! for a pod, `/spec/template` for a workload), creating maps and arrays that
//! do not exist yet.

use json_patch::jsonptr::{Pointer, PointerBuf, Token};
use json_patch::{AddOperation, PatchOperation};
use serde_json::{json, Map, Value};

use crate::config::{PullPolicy, Resources, SeccompProfile, Sidecar, HOST_ENV, PORT_ENV};
use crate::pod::{ContainerList, PodFacts};

/// Name of the tracer's metrics port; the startup probe refers to it.
pub const METRICS_PORT_NAME: &str = "linnix-metrics";

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn child(base: &Pointer, token: &str) -> PointerBuf {
    base.with_trailing_token(Token::new(token))
}

/// Sets `metadata.annotations[key] = value`, creating `metadata` and
/// `annotations` when missing. No operation when the value is already there.
pub fn set_annotation(
    pod: &PodFacts<'_>,
    base: &Pointer,
    key: &str,
    value: &str,
) -> Vec<PatchOperation> {
    set_annotations(pod, base, &[(key, value)])
}

/// Sets every `(key, value)` annotation not already set to that value,
/// creating `metadata` and `annotations` when missing (all keys in the one
/// operation that creates the map: a second `add` of the map would replace
/// the first).
pub fn set_annotations(
    pod: &PodFacts<'_>,
    base: &Pointer,
    annotations: &[(&str, &str)],
) -> Vec<PatchOperation> {
    let missing: Vec<&(&str, &str)> = annotations
        .iter()
        .filter(|(k, v)| pod.annotation(k) != Some(*v))
        .collect();
    if missing.is_empty() {
        return vec![];
    }
    let map = || {
        Value::Object(
            missing
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
                .collect(),
        )
    };
    if pod.has_annotations() {
        let annotations = child(&child(base, "metadata"), "annotations");
        missing
            .iter()
            .map(|(k, v)| add(child(&annotations, k), Value::String((*v).to_owned())))
            .collect()
    } else if pod.has_metadata() {
        // Missing (or null) annotations: add the whole map at once.
        vec![add(child(&child(base, "metadata"), "annotations"), map())]
    } else {
        vec![add(
            child(base, "metadata"),
            json!({ "annotations": map() }),
        )]
    }
}

/// All operations that add the `tracer` container to the pod at `base`,
/// with the given annotations.
pub fn inject(
    pod: &PodFacts<'_>,
    base: &Pointer,
    tracer: Value,
    native_sidecar: bool,
    annotations: &[(&str, &str)],
) -> Vec<PatchOperation> {
    let mut ops = set_annotations(pod, base, annotations);
    let spec_path = child(base, "spec");
    if !pod.has_spec() {
        ops.push(add(spec_path.clone(), Value::Object(Map::new())));
    }
    if pod.share_process_namespace() != Some(true) {
        ops.push(add(
            child(&spec_path, "shareProcessNamespace"),
            Value::Bool(true),
        ));
    }
    let (list, index) = if native_sidecar {
        // First init container: it starts before every other init container
        // and app container, so no exec escapes it.
        (ContainerList::InitContainers, "0")
    } else {
        (ContainerList::Containers, "-")
    };
    let list_path = child(&spec_path, list.key());
    if pod.has_list(list) {
        ops.push(add(child(&list_path, index), tracer));
    } else {
        ops.push(add(list_path, Value::Array(vec![tracer])));
    }
    ops
}

fn resources_json(r: &Resources) -> Value {
    json!({
        "requests": {"cpu": r.cpu_request.as_str(), "memory": r.memory_request.as_str()},
        "limits": {"cpu": r.cpu_limit.as_str(), "memory": r.memory_limit.as_str()},
    })
}

impl Sidecar {
    /// The tracer container every pod of this configuration gets, unless its
    /// annotations change it: built once, on first use.
    pub fn container(&self) -> &Value {
        self.container.get_or_init(|| {
            tracer_container(self, &self.args, self.native_sidecar, &self.resources)
        })
    }
}

/// The tracer container as Kubernetes JSON, with `extra_args` after the
/// metrics address. Built once per configuration (see
/// [`Sidecar::container`]), and again only for pods whose annotations
/// change it.
pub fn tracer_container(
    sidecar: &Sidecar,
    extra_args: &[String],
    native_sidecar: bool,
    resources: &Resources,
) -> Value {
    let mut args = Vec::with_capacity(extra_args.len() + 1);
    if !extra_args.iter().any(|a| a.starts_with("--metrics-addr")) {
        args.push(format!("--metrics-addr=0.0.0.0:{}", sidecar.metrics_port));
    }
    args.extend(extra_args.iter().cloned());
    let field_env = |name: &str, path: &str| json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}});
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_UID", "metadata.uid"),
        field_env("NODE_NAME", "spec.nodeName"),
    ];
    // Explicit env wins over the kubelet's service links, which a team's
    // own Service named `kubernetes` would otherwise set.
    if let Some(api) = &sidecar.api_server {
        env.push(json!({"name": HOST_ENV, "value": api.host}));
        env.push(json!({"name": PORT_ENV, "value": api.port.to_string()}));
    }
    let mut container = json!({
        "name": sidecar.name,
        "image": sidecar.image,
        "imagePullPolicy": pull_policy(sidecar.image_pull_policy),
        "args": args,
        "env": env,
        "ports": [{
            "name": METRICS_PORT_NAME,
            "containerPort": sidecar.metrics_port,
            "protocol": "TCP",
        }],
        "resources": resources_json(resources),
        "securityContext": {
            "capabilities": {"drop": ["ALL"], "add": ["BPF", "PERFMON"]},
            "allowPrivilegeEscalation": false,
            "privileged": false,
            "readOnlyRootFilesystem": true,
            // The capabilities are granted to the process by the runtime; a
            // non-root user would need file capabilities, which
            // allowPrivilegeEscalation: false (no_new_privs) disables.
            "runAsUser": 0,
            "runAsNonRoot": false,
            "seccompProfile": seccomp(&sidecar.seccomp_profile),
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    });
    if native_sidecar {
        if let Some(c) = container.as_object_mut() {
            c.insert("restartPolicy".into(), json!("Always"));
            // App containers start only once this succeeds, i.e. once the
            // tracer reports its programs attached.
            c.insert(
                "startupProbe".into(),
                json!({
                    "httpGet": {"path": "/readyz", "port": METRICS_PORT_NAME},
                    "periodSeconds": 1,
                    "timeoutSeconds": 1,
                    "failureThreshold": 60,
                }),
            );
        }
    }
    container
}

fn pull_policy(p: PullPolicy) -> &'static str {
    match p {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    }
}

fn seccomp(p: &SeccompProfile) -> Value {
    match p {
        SeccompProfile::RuntimeDefault => json!({"type": "RuntimeDefault"}),
        SeccompProfile::Unconfined => json!({"type": "Unconfined"}),
        SeccompProfile::Localhost { localhost_profile } => {
            json!({"type": "Localhost", "localhostProfile": localhost_profile})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn sidecar(native: bool) -> Sidecar {
        Config::default().sidecar.validate(Some(native)).unwrap()
    }

    fn apply(mut pod: Value, ops: &[PatchOperation]) -> Value {
        json_patch::patch(&mut pod, ops).unwrap();
        pod
    }

    /// The pod with the configured tracer injected.
    fn inject_at_root(pod: &Value, sidecar: &Sidecar) -> Value {
        let ops = inject(
            &PodFacts::of(pod),
            &PointerBuf::root(),
            sidecar.container().clone(),
            sidecar.native_sidecar,
            &[("s", "injected")],
        );
        apply(pod.clone(), &ops)
    }

    #[test]
    fn annotation_keys_are_escaped_and_maps_created() {
        let root = PointerBuf::root();
        let ops = set_annotation(&PodFacts::of(&json!({})), &root, "a.io/b~c", "v");
        assert_eq!(ops.len(), 1);
        let pod = apply(json!({}), &ops);
        assert_eq!(pod, json!({"metadata": {"annotations": {"a.io/b~c": "v"}}}));

        let pod = json!({"metadata": {"annotations": {"x": "y"}}});
        let ops = set_annotation(&PodFacts::of(&pod), &root, "a.io/b~c", "v");
        let serialized = serde_json::to_string(&ops).unwrap();
        assert!(
            serialized.contains("/metadata/annotations/a.io~1b~0c"),
            "{serialized}"
        );
        let pod = apply(pod, &ops);
        assert_eq!(pod["metadata"]["annotations"]["a.io/b~c"], "v");
        assert_eq!(pod["metadata"]["annotations"]["x"], "y");
        assert!(set_annotation(&PodFacts::of(&pod), &root, "a.io/b~c", "v").is_empty());
    }

    #[test]
    fn native_sidecar_goes_first() {
        let s = sidecar(true);
        let pod = json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app"}], "unknownField": 1}});
        let out = inject_at_root(&pod, &s);
        assert_eq!(out["spec"]["initContainers"][0]["name"], "linnix-tracer");
        assert_eq!(out["spec"]["initContainers"][0]["restartPolicy"], "Always");
        assert_eq!(out["spec"]["initContainers"][1]["name"], "init");
        assert_eq!(out["spec"]["shareProcessNamespace"], true);
        assert_eq!(out["spec"]["unknownField"], 1);
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn regular_container_is_appended() {
        let s = sidecar(false);
        let pod = json!({"spec": {"containers": [{"name": "app"}]}});
        let out = inject_at_root(&pod, &s);
        assert_eq!(out["spec"]["containers"][1]["name"], "linnix-tracer");
        assert!(out["spec"]["containers"][1].get("restartPolicy").is_none());
        assert!(out["spec"].get("initContainers").is_none());
    }

    #[test]
    fn works_under_a_prefix() {
        let s = sidecar(true);
        let doc = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "app"}]}}}});
        let base = PointerBuf::parse("/spec/template").unwrap();
        let ops = inject(
            &PodFacts::of(&doc["spec"]["template"]),
            &base,
            s.container().clone(),
            s.native_sidecar,
            &[(crate::decision::STATUS_ANNOTATION, "injected"), ("b", "2")],
        );
        let out = apply(doc, &ops);
        let t = &out["spec"]["template"];
        assert_eq!(
            t["metadata"]["annotations"][crate::decision::STATUS_ANNOTATION],
            "injected"
        );
        assert_eq!(t["metadata"]["annotations"]["b"], "2");
        assert_eq!(t["spec"]["initContainers"][0]["name"], "linnix-tracer");
    }

    #[test]
    fn several_annotations_in_every_shape() {
        let root = PointerBuf::root();
        let want = [("a", "1"), ("b", "2")];
        for pod in [
            json!({}),
            json!({"metadata": {}}),
            json!({"metadata": {"annotations": null}}),
            json!({"metadata": {"annotations": {"a": "0", "c": "3"}}}),
            json!({"metadata": {"annotations": {"b": "2"}}}),
        ] {
            let out = apply(
                pod.clone(),
                &set_annotations(&PodFacts::of(&pod), &root, &want),
            );
            let a = &out["metadata"]["annotations"];
            assert_eq!((&a["a"], &a["b"]), (&json!("1"), &json!("2")), "{pod}");
            if let Some(c) = pod.pointer("/metadata/annotations/c") {
                assert_eq!(&a["c"], c);
            }
            assert!(set_annotations(&PodFacts::of(&out), &root, &want).is_empty());
        }
    }

    #[test]
    fn container_spec() {
        let s = sidecar(true);
        let c = s.container();
        let sc = &c["securityContext"];
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["capabilities"]["add"], json!(["BPF", "PERFMON"]));
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(c["startupProbe"]["httpGet"]["port"], METRICS_PORT_NAME);
        assert_eq!(c["args"][0], "--metrics-addr=0.0.0.0:9464");
        let env: Vec<_> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap())
            .collect();
        assert_eq!(
            env,
            [
                "metadata.name",
                "metadata.namespace",
                "metadata.uid",
                "spec.nodeName"
            ]
        );
    }

    /// The tracer's literal (non-downward) env, as `name=value`.
    fn env_of(c: &Value) -> Vec<String> {
        let env = c["env"].as_array().unwrap().iter();
        env.filter_map(|e| Some(format!("{}={}", e["name"], e.get("value")?)))
            .collect()
    }

    #[test]
    fn api_server_env_from_config_else_own_env() {
        let c = Config::from_yaml("sidecar: {apiServer: {host: 10.96.0.1, port: 443}}").unwrap();
        let s = c.sidecar.validate(None).unwrap();
        let want = |h: &str, p: &str| {
            [
                format!(r#""{HOST_ENV}"="{h}""#),
                format!(r#""{PORT_ENV}"="{p}""#),
            ]
        };
        assert_eq!(env_of(s.container()), want("10.96.0.1", "443"));
        // The config wins over the injector's own address.
        let own = crate::config::ApiServer::parse("own", "10.0.0.9", "6443").unwrap();
        let s = s.or_api_server(Some(own.clone()));
        assert_eq!(env_of(s.container()), want("10.96.0.1", "443"));
        // Without it, the injector's own, even once the container was built.
        let s = sidecar(true);
        assert!(env_of(s.container()).is_empty());
        let s = s.or_api_server(Some(own));
        let pod = inject_at_root(&json!({"spec": {"containers": [{"name": "app"}]}}), &s);
        assert_eq!(
            env_of(&pod["spec"]["initContainers"][0]),
            want("10.0.0.9", "6443")
        );
    }
}
