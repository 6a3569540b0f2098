//! Pods and namespaces as the API server returns them, for the tests of
//! `check` in a cluster.
#![allow(dead_code)]

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::ObjectMeta;
use linnix_injector::config::{Config, Sidecar};
use linnix_injector::decision::Context;
use linnix_injector::mutate::mutate;
use linnix_injector::namespaces::facts_of;
use linnix_injector::pod::PodFacts;
use serde_json::{json, Value};

pub fn sidecar() -> Sidecar {
    Config::default().sidecar.validate(None).unwrap()
}

pub fn namespace(annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> Namespace {
    let map = |kv: &[(&str, &str)]| {
        Some(
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    Namespace {
        metadata: ObjectMeta {
            name: Some("team-a".into()),
            annotations: map(annotations),
            labels: map(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `object` as the webhook admitted it and the API server stores it: the
/// patch applied, then the fields the server and the kubelet add, round
/// tripped through the typed `Pod` as kube's client reads it.
pub fn stored(object: &Value, ns: &Namespace, sidecar: &Sidecar) -> Value {
    let facts = facts_of(ns);
    let ctx = Context {
        namespace: Some("team-a"),
        own_namespace: Some("linnix-system"),
        namespace_facts: Some(&facts),
        inject_all: false,
    };
    let outcome = mutate(
        &PodFacts::of(object),
        &PointerBuf::root(),
        sidecar,
        &ctx,
        true,
    );
    let mut pod = object.clone();
    json_patch::patch(&mut pod, &outcome.ops).unwrap();
    pod["metadata"]["namespace"] = json!("team-a");
    pod["metadata"]["uid"] = json!("5b1f0000-0000-4000-8000-000000000001");
    pod["metadata"]["resourceVersion"] = json!("4711");
    pod["spec"]["nodeName"] = json!("node-1");
    pod["status"] = json!({"phase": "Running", "podIP": "10.0.0.7"});
    let typed: Pod = serde_json::from_value(pod).unwrap();
    serde_json::to_value(typed).unwrap()
}
