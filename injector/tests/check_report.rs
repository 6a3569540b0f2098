//! `linnix-injector check`'s in-cluster report at its seam, fed with Pod and
//! Namespace objects as the API server returns them.

mod common;
mod pods;

use common::*;
use linnix_injector::check::report::{self, Options};
use linnix_injector::config::Sidecar;
use linnix_injector::namespaces::facts_of;
use pods::{namespace, sidecar, stored};
use serde_json::json;

fn opts<'a>(
    sidecar: &'a Sidecar,
    facts: &'a linnix_injector::decision::NamespaceFacts,
) -> Options<'a> {
    Options {
        sidecar,
        namespace: Some("team-a"),
        namespace_facts: Some(facts),
        own_namespace: Some("linnix-system"),
    }
}

#[test]
fn a_running_pod_is_reported_as_its_controller_would_submit_it() {
    let s = sidecar();
    let opted_in = namespace(
        &[
            ("sidecar.linnix.io/inject", "true"),
            ("sidecar.linnix.io/cpu-limit", "300m"),
        ],
        &[],
    );
    let facts = facts_of(&opted_in);
    let web = pod(json!({}), app_spec());
    let running = stored(&web, &opted_in, &s);

    let r = report::live(&running, &opts(&s, &facts));
    // Why it is traced: the namespace asked, not "already injected".
    assert!(r.injected);
    assert_eq!((r.rule, r.reason), ("6", "requested"));
    assert_eq!(r.status.as_deref(), Some(s.injected_status()));
    let run = r.running.as_ref().unwrap();
    assert!(run.has_tracer && !run.stale, "{run:?}");
    assert_eq!(run.status.as_deref(), Some(s.injected_status()));
    // The tracer it would get now is the one it has.
    let (_, has) = report::find_container(&running, "linnix-tracer").unwrap();
    assert_eq!(r.tracer.as_ref(), Some(has));
    assert_eq!(has["resources"]["limits"]["cpu"], "300m");

    // The namespace has since opted out: the pod keeps its tracer, and a
    // new one would not get it.
    let opted_out = namespace(&[("sidecar.linnix.io/inject", "false")], &[]);
    let facts = facts_of(&opted_out);
    let r = report::live(&running, &opts(&s, &facts));
    assert!(!r.injected);
    assert_eq!((r.rule, r.reason), ("6", "disabled-by-namespace"));
    assert!(r.running.unwrap().has_tracer);

    // A pod from before the opt-in: no tracer yet, one after a restart.
    let plain = stored(&web, &opted_out, &s);
    let facts = facts_of(&opted_in);
    let r = report::live(&plain, &opts(&s, &facts));
    assert!(r.injected);
    assert!(!r.running.unwrap().has_tracer);

    // Pod Security on the namespace is read from its labels.
    let locked = namespace(
        &[("sidecar.linnix.io/inject", "true")],
        &[("pod-security.kubernetes.io/enforce", "baseline")],
    );
    let facts = facts_of(&locked);
    let r = report::live(&plain, &opts(&s, &facts));
    assert_eq!((r.rule, r.injected), ("7", false));
}

#[test]
fn stale_tracers_are_those_with_another_image() {
    let s = sidecar();
    let ns = namespace(&[("sidecar.linnix.io/inject", "true")], &[]);
    let current = stored(&pod(json!({}), app_spec()), &ns, &s);
    let mut old = current.clone();
    old["metadata"]["name"] = json!("old");
    old["spec"]["initContainers"][0]["image"] = json!("linnix/linnix-sidecar:0.0.9");
    old["metadata"]["annotations"]["sidecar.linnix.io/status"] =
        json!("injected (linnix-injector 0.0.9, tracer 0.0.9, image linnix/linnix-sidecar:0.0.9)");
    let untraced = pod(json!({}), app_spec());

    let stale = report::stale(&[current.clone(), old.clone(), untraced], &s);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0].name, "old");
    assert_eq!(stale[0].namespace, "team-a");
    assert_eq!(stale[0].image, "linnix/linnix-sidecar:0.0.9");
    assert_eq!(stale[0].configured_image, s.image);
    assert!(stale[0].status.as_deref().unwrap().contains("tracer 0.0.9"));

    let facts = facts_of(&ns);
    let r = report::live(&old, &opts(&s, &facts));
    assert!(r.running.unwrap().stale);
}
