//! Reading pod facts from JSON text and from a `Value` alike.

use super::*;
use crate::config::Config;
use crate::decision::Context;
use crate::mutate::mutate;
use json_patch::jsonptr::PointerBuf;
use serde_json::json;

fn from_text(text: &str) -> PodFacts<'_> {
    PodFacts::read(&mut serde_json::Deserializer::from_str(text)).unwrap()
}

/// Reading the JSON text (strings borrowed, or copied when escaped) and
/// reading a `Value` give the same operations; odd shapes read as
/// absent, and the patch they get applies and is not repeated.
#[test]
fn text_and_value_give_the_same_patch() {
    let pods = [
        json!({"metadata": {"name": "a", "annotations": {"sidecar.linnix.io/inject": "true", "x": "y"}}, "spec": {"containers": [{"name": "app", "image": "i", "env": [{"name": "A", "value": "1"}]}], "volumes": []}}),
        json!({"metadata": {"generateName": "g-", "annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app"}], "shareProcessNamespace": true}}),
        json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": {"shareProcessNamespace": false}}),
        json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": {"hostUsers": false}}),
        json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": {"hostUsers": "no", "shareProcessNamespace": 1}}),
        json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": null}),
        json!({"metadata": {"annotations": null}, "spec": {"containers": null}}),
        json!({"metadata": null}),
        json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "maybe \"quoted\"\n"}}, "spec": {}}),
        json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": 7}}, "spec": {}}),
        json!({"metadata": {"annotations": {"sidecar.linnix.io/status": "injected (x)"}}}),
        json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": {"containers": [{"name": "linnix-tracer"}]}}),
        json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": {"containers": {"name": "linnix-tracer"}, "initContainers": [3, {"name": ["x"]}]}}),
        json!({"metadata": {"annotations": ["sidecar.linnix.io/inject"]}, "spec": []}),
        json!({"metadata": "odd", "spec": 3}),
        json!({"spec": {"containers": [{"name": 5}]}}),
        json!("not an object"),
        json!({}),
    ];
    let sidecar = Config::default().sidecar.validate(None).unwrap();
    let root = PointerBuf::root();
    for (pod, inject_all) in pods.iter().flat_map(|p| [(p, false), (p, true)]) {
        let ctx = Context {
            inject_all,
            ..Context::default()
        };
        let text = serde_json::to_string(&pod).unwrap();
        let from_text = mutate(&from_text(&text), &root, &sidecar, &ctx, true);
        let from_value = mutate(&PodFacts::of(pod), &root, &sidecar, &ctx, true);
        assert_eq!(from_text.decision, from_value.decision, "{pod}");
        assert_eq!(from_text.ops, from_value.ops, "{pod}");
        assert_eq!(from_text.warnings, from_value.warnings, "{pod}");
        if !pod.is_object() {
            continue;
        }
        let mut patched = pod.clone();
        json_patch::patch(&mut patched, &from_value.ops).unwrap_or_else(|e| panic!("{pod}: {e}"));
        let again = mutate(&PodFacts::of(&patched), &root, &sidecar, &ctx, true);
        assert!(again.ops.is_empty(), "{pod}: {:?}", again.ops);
    }
}

#[test]
fn identity_and_facts_are_read() {
    let facts = from_text(r#"{"metadata": {"generateName": "web-", "namespace": "ns"}}"#);
    assert_eq!(facts.generate_name(), Some("web-"));
    assert_eq!(facts.namespace(), Some("ns"));
    let facts = from_text(r#"{"metadata": {"name": "p", "labels": 3}, "spec": "x"}"#);
    assert_eq!(facts.name(), Some("p"));
    assert!(!facts.has_spec());
    let facts = from_text(
        r#"{"metadata": {"annotations": {"a": "1", "b": 2, "a": "3"}}, "spec": {"initContainers": [{"name": "t\u0072acer"}]}}"#,
    );
    assert_eq!(facts.annotation("a"), Some("3"));
    assert_eq!(facts.annotation("b"), None);
    assert_eq!(facts.non_string_annotation("b"), Some("a number"));
    assert_eq!(facts.non_string_annotation("a"), None);
    let odd = from_text(
        r#"{"metadata": {"annotations": {"t": true, "n": null, "o": {"x": [1]}, "l": [], "s": "x", "s": 1}}}"#,
    );
    assert_eq!(odd.non_string_annotation("t"), Some("a boolean"));
    assert_eq!(odd.non_string_annotation("n"), Some("null"));
    assert_eq!(odd.non_string_annotation("o"), Some("an object"));
    assert_eq!(odd.non_string_annotation("l"), Some("an array"));
    // A string under the same key wins, as annotation() reads it.
    assert_eq!(odd.non_string_annotation("s"), None);
    assert_eq!(odd.annotation("s"), Some("x"));
    assert!(facts.has_container("tracer"));
    assert!(!facts.has_list(ContainerList::Containers));
    assert_eq!(facts.first_container(), None);
    let facts = from_text(r#"{"spec": {"containers": [{"name": "app"}, {"name": "b"}]}}"#);
    assert_eq!(facts.first_container(), Some("app"));
    assert!(from_text("[1, 2]").name().is_none());
}
