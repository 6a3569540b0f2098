//! Namespace opt-in through the reflector's real cache: a `Store` filled by
//! its `Writer` from watcher events, read through `NamespaceLookup`.

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ObjectMeta;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use linnix_injector::config::Config;
use linnix_injector::decision::{
    Context, Decision, NamespaceFacts, Skip, Source, GUARDED_STATUS_SUFFIX, STATUS_ANNOTATION,
};
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
    let (decision, warnings, _) = decide_and_patch(lookup, ns, pod).await;
    (decision, warnings)
}

/// The decision, the warnings and the pod as the patch leaves it.
async fn decide_and_patch(
    lookup: &dyn NamespaceLookup,
    ns: &str,
    pod: &Value,
) -> (Decision, Vec<String>, Value) {
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
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &out.ops).unwrap();
    (out.decision, out.warnings, patched)
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

#[tokio::test]
async fn guarded_namespaces_are_injected_and_say_so() {
    let (store, mut writer) = reflector::store::<Namespace>();
    writer.apply_watcher_event(&Event::Init);
    let guarded_labels = [
        ("pod-security.kubernetes.io/enforce", "privileged"),
        ("pod-security.kubernetes.io/warn", "baseline"),
        ("pod-security.kubernetes.io/audit", "baseline"),
        ("sidecar.linnix.io/guard", "baseline"),
    ];
    let opted_in = [("sidecar.linnix.io/inject", "true")];
    writer.apply_watcher_event(&Event::InitApply(namespace(
        "guarded",
        &opted_in,
        &guarded_labels,
    )));
    writer.apply_watcher_event(&Event::InitApply(namespace(
        "open",
        &opted_in,
        &[("pod-security.kubernetes.io/enforce", "privileged")],
    )));
    writer.apply_watcher_event(&Event::InitApply(namespace(
        "typo",
        &opted_in,
        &[("sidecar.linnix.io/guard", "true")],
    )));
    writer.apply_watcher_event(&Event::InitApply(namespace(
        "strict",
        &opted_in,
        &[
            ("pod-security.kubernetes.io/enforce", "baseline"),
            ("sidecar.linnix.io/guard", "baseline"),
        ],
    )));
    writer.apply_watcher_event(&Event::InitDone);
    let lookup = Reflected::new(store, None);
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
    let status = |p: &Value| p["metadata"]["annotations"][STATUS_ANNOTATION].clone();

    assert!(lookup.lookup("guarded").await.unwrap().unwrap().guarded);
    let (d, w, patched) = decide_and_patch(&lookup, "guarded", &pod).await;
    assert_eq!(d, Decision::Inject);
    assert!(w.is_empty(), "{w:?}");
    let guarded = status(&patched);
    let guarded = guarded.as_str().unwrap();
    assert!(
        guarded.starts_with("injected (linnix-injector "),
        "{guarded}"
    );
    assert!(guarded.ends_with(GUARDED_STATUS_SUFFIX), "{guarded}");

    for unguarded in ["open", "typo"] {
        let (d, _, patched) = decide_and_patch(&lookup, unguarded, &pod).await;
        assert_eq!(d, Decision::Inject, "{unguarded}");
        let plain = status(&patched);
        assert!(
            plain
                .as_str()
                .unwrap()
                .starts_with("injected (linnix-injector "),
            "{plain}"
        );
        assert!(!plain.as_str().unwrap().contains("guarded"), "{plain}");
    }

    // Baseline still refuses the tracer, guard or not; the warning names
    // the guarded set-up as the way forward.
    let (d, w, patched) = decide_and_patch(&lookup, "strict", &pod).await;
    assert!(
        matches!(d, Decision::Skip(Skip::PodSecurity { .. })),
        "{d:?}"
    );
    assert!(w[0].contains("sidecar.linnix.io/guard=baseline"), "{w:?}");
    assert!(w[0].contains("warn and audit baseline"), "{w:?}");
    assert!(status(&patched).as_str().unwrap().starts_with("skipped: "));
}
