//! The parts of a pod that the decision and the patch read, parsed without
//! building the rest.
//!
//! A review carries the whole pod; a large one (thousands of env entries) is
//! mostly data the injector never looks at. Deserializing it into a
//! `serde_json::Value` allocates every string and map of it. Here serde
//! skips unknown fields without allocating, and a small `Value` holding only
//! the read parts (annotations, `shareProcessNamespace`, container names,
//! and which of `metadata`/`spec`/lists exist) is built from the rest. The
//! patch computed against this view is the one computed against the full
//! pod. Shapes the view cannot represent (a `spec` that is not a map, say)
//! make its parse fail; callers then parse the full pod instead.

use serde::Deserialize;
use serde_json::{Map, Value};

/// Deserializes straight from the request body, in the same pass as the
/// rest of the review.
#[derive(Deserialize)]
pub struct PodView {
    metadata: Option<MetaView>,
    spec: Option<SpecView>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaView {
    name: Option<String>,
    generate_name: Option<String>,
    namespace: Option<String>,
    annotations: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecView {
    share_process_namespace: Option<bool>,
    host_users: Option<bool>,
    containers: Option<Vec<NamedView>>,
    init_containers: Option<Vec<NamedView>>,
}

#[derive(Deserialize)]
struct NamedView {
    name: Option<String>,
}

/// Identity fields used for logging.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub namespace: Option<String>,
}

/// The identity of a fully parsed pod.
pub fn identity_of(full: &Value) -> Identity {
    let field = |k: &str| {
        full.get("metadata")
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Identity {
        name: field("name"),
        generate_name: field("generateName"),
        namespace: field("namespace"),
    }
}

/// The view of the pod in `json`, or the full pod when the view cannot
/// represent it, and its identity.
pub fn pod_view(json: &str) -> (Value, Identity) {
    match serde_json::from_str::<PodView>(json) {
        Ok(view) => view.into_parts(),
        Err(_) => {
            let full: Value = serde_json::from_str(json).unwrap_or(Value::Null);
            let id = identity_of(&full);
            (full, id)
        }
    }
}

impl PodView {
    /// The view as a pod-shaped `Value`, and the identity.
    pub fn into_parts(self) -> (Value, Identity) {
        build(self)
    }
}

fn build(view: PodView) -> (Value, Identity) {
    let mut pod = Map::new();
    let mut id = Identity::default();
    if let Some(meta) = view.metadata {
        let mut m = Map::new();
        if let Some(a) = meta.annotations {
            m.insert("annotations".into(), Value::Object(a));
        }
        pod.insert("metadata".into(), Value::Object(m));
        id = Identity {
            name: meta.name,
            generate_name: meta.generate_name,
            namespace: meta.namespace,
        };
    }
    if let Some(spec) = view.spec {
        let mut s = Map::new();
        if let Some(share) = spec.share_process_namespace {
            s.insert("shareProcessNamespace".into(), Value::Bool(share));
        }
        if let Some(host_users) = spec.host_users {
            s.insert("hostUsers".into(), Value::Bool(host_users));
        }
        for (key, list) in [
            ("containers", spec.containers),
            ("initContainers", spec.init_containers),
        ] {
            if let Some(list) = list {
                let names = list
                    .into_iter()
                    .map(|c| {
                        let mut o = Map::new();
                        if let Some(n) = c.name {
                            o.insert("name".into(), Value::String(n));
                        }
                        Value::Object(o)
                    })
                    .collect();
                s.insert(key.into(), Value::Array(names));
            }
        }
        pod.insert("spec".into(), Value::Object(s));
    }
    (Value::Object(pod), id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::decision::Context;
    use crate::mutate::mutate;
    use json_patch::jsonptr::PointerBuf;
    use serde_json::json;

    /// The operations from the view equal those from the full pod.
    #[test]
    fn view_gives_the_same_patch_as_the_full_pod() {
        let pods = [
            json!({"metadata": {"name": "a", "annotations": {"sidecar.linnix.io/inject": "true", "x": "y"}}, "spec": {"containers": [{"name": "app", "image": "i", "env": [{"name": "A", "value": "1"}]}], "volumes": []}}),
            json!({"metadata": {"generateName": "g-", "annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app"}], "shareProcessNamespace": true}}),
            json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": {"shareProcessNamespace": false}}),
            json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": {"hostUsers": false}}),
            json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": null}),
            json!({"metadata": {"annotations": null}, "spec": {"containers": null}}),
            json!({"metadata": null}),
            json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "maybe"}}, "spec": {}}),
            json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": 7}}, "spec": {}}),
            json!({"metadata": {"annotations": {"sidecar.linnix.io/status": "injected (x)"}}}),
            json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": {"containers": [{"name": "linnix-tracer"}]}}),
            json!({"metadata": "odd", "spec": 3}),
            json!({"spec": {"containers": [{"name": 5}]}}),
            json!("not an object"),
            json!({}),
        ];
        let sidecar = Config::default().sidecar.validate(None).unwrap();
        for pod in pods {
            let text = serde_json::to_string(&pod).unwrap();
            let (view, _) = pod_view(&text);
            let ctx = Context::default();
            let root = PointerBuf::root();
            let from_view = mutate(&view, &root, &sidecar, &ctx, true);
            let from_full = mutate(&pod, &root, &sidecar, &ctx, true);
            assert_eq!(from_view.decision, from_full.decision, "{pod}");
            assert_eq!(from_view.ops, from_full.ops, "{pod}");
            assert_eq!(from_view.warnings, from_full.warnings, "{pod}");
        }
    }

    #[test]
    fn identity_is_read() {
        let (_, id) = pod_view(r#"{"metadata": {"generateName": "web-", "namespace": "ns"}}"#);
        assert_eq!(id.generate_name.as_deref(), Some("web-"));
        assert_eq!(id.namespace.as_deref(), Some("ns"));
        let (_, id) = pod_view(r#"{"metadata": {"name": "p", "labels": 3}, "spec": "x"}"#);
        assert_eq!(id.name.as_deref(), Some("p"));
    }
}
