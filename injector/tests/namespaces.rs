//! Namespace opt-in through the reflector's real cache: a `Store` filled by
//! its `Writer` from watcher events, read through `NamespaceLookup`.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ObjectMeta;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use linnix_injector::config::Config;
use linnix_injector::decision::{Context, Decision, NamespaceFacts, Skip, Source};
use linnix_injector::mutate::mutate;
use linnix_injector::namespaces::{NamespaceLookup, Reflected};
use linnix_injector::pod::PodFacts;
use serde_json::{json, Value};

fn namespace(name: &str, annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> Namespace {
    let map = |kv: &[(&str, &str)]| {
        (!kv.is_empty()).then(|| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        })
    };
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: map(annotations),
            labels: map(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn decide(lookup: &dyn NamespaceLookup, ns: &str, pod: &Value) -> (Decision, Vec<String>) {
    let facts = lookup.lookup(ns).await.unwrap();
    let sidecar = Config::default().sidecar.validate(None).unwrap();
    let ctx = Context {
        namespace: Some(ns),
        own_namespace: Some("linnix"),
        namespace_facts: facts.as_ref(),
        inject_all: false,
    };
    let out = mutate(
        &PodFacts::of(pod),
        &PointerBuf::root(),
        &sidecar,
        &ctx,
        true,
    );
    (out.decision, out.warnings)
}

#[tokio::test]
async fn namespace_annotation_and_pod_security_from_the_cache() {
    let (store, mut writer) = reflector::store::<Namespace>();
    writer.apply_watcher_event(&Event::Init);
    writer.apply_watcher_event(&Event::InitApply(namespace(
        "team-a",
        &[("sidecar.linnix.io/inject", "true")],
        &[],
    )));
    writer.apply_watcher_event(&Event::InitApply(namespace(
        "locked",
        &[("sidecar.linnix.io/inject", "enabled")],
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    )));
    writer.apply_watcher_event(&Event::InitApply(namespace(
        "baseline",
        &[],
        &[("pod-security.kubernetes.io/enforce", "baseline")],
    )));
    writer.apply_watcher_event(&Event::InitApply(namespace(
        "off",
        &[("sidecar.linnix.io/inject", "disabled")],
        &[],
    )));
    writer.apply_watcher_event(&Event::InitDone);
    let lookup = Reflected::new(store, None);

    let silent = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
    let asked = json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "true"}}, "spec": {"containers": [{"name": "app"}]}});
    let refused =
        json!({"metadata": {"annotations": {"sidecar.linnix.io/inject": "false"}}, "spec": {}});

    assert_eq!(
        lookup.lookup("team-a").await.unwrap(),
        Some(NamespaceFacts {
            inject: Some("true".into()),
            ..Default::default()
        })
    );
    assert_eq!(decide(&lookup, "team-a", &silent).await.0, Decision::Inject);
    assert_eq!(
        decide(&lookup, "team-a", &refused).await.0,
        Decision::Skip(Skip::Disabled(Source::Pod))
    );
    assert_eq!(
        decide(&lookup, "off", &silent).await.0,
        Decision::Skip(Skip::Disabled(Source::Namespace))
    );
    assert_eq!(decide(&lookup, "off", &asked).await.0, Decision::Inject);

    let (d, w) = decide(&lookup, "locked", &silent).await;
    assert_eq!(
        d,
        Decision::Skip(Skip::PodSecurity {
            level: "restricted".into()
        })
    );
    assert!(w[0].contains("CAP_BPF"), "{w:?}");
    assert!(w[0].contains("rejected after mutation"), "{w:?}");
    assert!(matches!(
        decide(&lookup, "baseline", &asked).await.0,
        Decision::Skip(Skip::PodSecurity { .. })
    ));

    // A namespace the cache has not seen (no client here for the GET).
    assert_eq!(lookup.lookup("unknown").await.unwrap(), None);
    assert_eq!(
        decide(&lookup, "unknown", &silent).await.0,
        Decision::Skip(Skip::NotRequested)
    );

    // Watch events keep the cache current.
    writer.apply_watcher_event(&Event::Apply(namespace(
        "team-a",
        &[("sidecar.linnix.io/inject", "false")],
        &[],
    )));
    assert_eq!(
        decide(&lookup, "team-a", &silent).await.0,
        Decision::Skip(Skip::Disabled(Source::Namespace))
    );
    writer.apply_watcher_event(&Event::Delete(namespace("team-a", &[], &[])));
    assert_eq!(lookup.lookup("team-a").await.unwrap(), None);
}
