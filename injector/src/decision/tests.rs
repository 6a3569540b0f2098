//! Unit tests of the decision module.

use super::*;
use serde_json::{json, Value};

fn decide_for(pod: Value, ns: Option<NamespaceFacts>) -> Decision {
    let facts = PodFacts::of(&pod);
    decide(
        &facts,
        "linnix-tracer",
        &Context {
            namespace: Some("apps"),
            own_namespace: Some("linnix"),
            namespace_facts: ns.as_ref(),
            inject_all: false,
        },
    )
}

fn annotated(value: &str) -> Value {
    json!({"metadata": {"annotations": {INJECT_ANNOTATION: value}}, "spec": {"containers": []}})
}

#[test]
fn pod_annotation_decides() {
    assert_eq!(decide_for(annotated("true"), None), Decision::Inject);
    assert_eq!(decide_for(annotated("enabled"), None), Decision::Inject);
    assert_eq!(
        decide_for(annotated("false"), None),
        Decision::Skip(Skip::Disabled(Source::Pod))
    );
    assert_eq!(
        decide_for(annotated("disabled"), None),
        Decision::Skip(Skip::Disabled(Source::Pod))
    );
    assert!(matches!(
        decide_for(annotated("yes"), None),
        Decision::Skip(Skip::InvalidAnnotation {
            source: Source::Pod,
            ..
        })
    ));
}

#[test]
fn pod_annotation_wins_over_namespace() {
    let ns = NamespaceFacts {
        inject: Some("true".into()),
        ..Default::default()
    };
    assert_eq!(
        decide_for(annotated("false"), Some(ns)),
        Decision::Skip(Skip::Disabled(Source::Pod))
    );
}

#[test]
fn namespace_decides_when_pod_is_silent() {
    let pod = json!({"spec": {"containers": []}});
    let ns = |v: &str| NamespaceFacts {
        inject: Some(v.into()),
        ..Default::default()
    };
    assert_eq!(
        decide_for(pod.clone(), Some(ns("enabled"))),
        Decision::Inject
    );
    assert_eq!(
        decide_for(pod.clone(), Some(ns("disabled"))),
        Decision::Skip(Skip::Disabled(Source::Namespace))
    );
    assert_eq!(
        decide_for(pod.clone(), None),
        Decision::Skip(Skip::NotRequested)
    );
    assert_eq!(
        decide_for(pod, Some(NamespaceFacts::default())),
        Decision::Skip(Skip::NotRequested)
    );
}

#[test]
fn pod_security_levels() {
    for (level, skipped) in [
        ("privileged", false),
        ("baseline", true),
        ("restricted", true),
    ] {
        let ns = NamespaceFacts {
            pod_security_enforce: Some(level.into()),
            ..Default::default()
        };
        let d = decide_for(annotated("true"), Some(ns));
        assert_eq!(
            matches!(d, Decision::Skip(Skip::PodSecurity { .. })),
            skipped,
            "{level}"
        );
    }
}

#[test]
fn guarded_namespaces() {
    for (level, guarded, injects) in [
        (Some("privileged"), true, true),
        (None, true, true),
        (Some("privileged"), false, true),
        (Some("baseline"), true, false),
        (Some("restricted"), true, false),
    ] {
        let ns = NamespaceFacts {
            pod_security_enforce: level.map(Into::into),
            guarded,
            ..Default::default()
        };
        let ctx = Context {
            namespace: Some("apps"),
            namespace_facts: Some(&ns),
            ..Default::default()
        };
        let pod = annotated("true");
        let d = decide(&PodFacts::of(&pod), "linnix-tracer", &ctx);
        if injects {
            assert_eq!(d, Decision::Inject, "{level:?} {guarded}");
            let status = injected_status("injected (linnix-injector x)", &ctx);
            assert!(status.starts_with(INJECTED_PREFIX), "{status}");
            assert_eq!(status.contains("namespace guarded"), guarded, "{status}");
        } else {
            let Decision::Skip(skip) = d else {
                panic!("{level:?} {guarded} injected");
            };
            assert_eq!(skip.reason(), "pod-security");
            assert!(skip.message().contains(GUARD_LABEL), "{}", skip.message());
        }
    }
    assert_eq!(
        injected_status("injected (linnix-injector x)", &Context::default()),
        "injected (linnix-injector x)"
    );
}

#[test]
fn inject_all_ignores_annotations_only() {
    let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "false"}}, "spec": {"shareProcessNamespace": false}});
    let facts = PodFacts::of(&pod);
    let ctx = Context {
        inject_all: true,
        ..Default::default()
    };
    assert_eq!(
        decide(&facts, "linnix-tracer", &ctx),
        Decision::Skip(Skip::ShareProcessNamespaceDisabled)
    );
    let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "false"}}, "spec": {}});
    assert_eq!(
        decide(&PodFacts::of(&pod), "linnix-tracer", &ctx),
        Decision::Inject
    );
}

#[test]
fn already_injected_by_container_or_status() {
    let by_container = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true"}}, "spec": {"initContainers": [{"name": "linnix-tracer"}]}});
    assert_eq!(
        decide_for(by_container, None),
        Decision::Skip(Skip::AlreadyInjected)
    );
    let by_status = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", STATUS_ANNOTATION: "injected (linnix-injector 0.0.1)"}}});
    assert_eq!(
        decide_for(by_status, None),
        Decision::Skip(Skip::AlreadyInjected)
    );
}

#[test]
fn user_namespaces_are_skipped() {
    let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true"}}, "spec": {"hostUsers": false}});
    assert_eq!(decide_for(pod, None), Decision::Skip(Skip::UserNamespace));
    let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true"}}, "spec": {"hostUsers": true}});
    assert_eq!(decide_for(pod, None), Decision::Inject);
}

#[test]
fn long_values_are_not_echoed_whole() {
    let long = "é".repeat(10_000);
    let skip = Skip::InvalidAnnotation {
        source: Source::Pod,
        value: long,
    };
    assert!(skip.message().chars().count() < 200, "{}", skip.message());
    assert_eq!(shorten("short"), "short");
}

#[test]
fn protected_namespaces() {
    let pod = annotated("true");
    let facts = PodFacts::of(&pod);
    for ns in ["kube-system", "kube-public", "kube-node-lease", "linnix"] {
        let ctx = Context {
            namespace: Some(ns),
            own_namespace: Some("linnix"),
            ..Default::default()
        };
        assert_eq!(
            decide(&facts, "linnix-tracer", &ctx),
            Decision::Skip(Skip::ProtectedNamespace(ns.into()))
        );
    }
}

/// The API server refuses shareProcessNamespace beside hostPID: injected,
/// such a pod would be invalid, so it is skipped and says why.
#[test]
fn a_host_pid_pod_is_skipped() {
    let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true"}}, "spec": {"hostPID": true}});
    let decision = decide_for(pod, None);
    assert_eq!(decision, Decision::Skip(Skip::HostPid));
    let Decision::Skip(skip) = decision else {
        unreachable!()
    };
    assert!(skip.warns() && skip.annotates());
    assert_eq!(skip.reason(), "host-pid");
    let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true"}}, "spec": {"hostPID": false}});
    assert_eq!(decide_for(pod, None), Decision::Inject);
}

/// Beside a Windows HostProcess container every container must be one, and
/// the tracer runs on Linux only: such pods, and pods for Windows, are
/// skipped.
#[test]
fn a_windows_pod_is_skipped() {
    let host_process = json!({"securityContext": {"windowsOptions": {"hostProcess": true}}});
    for spec in [
        json!({"os": {"name": "windows"}}),
        json!({"securityContext": {"windowsOptions": {"hostProcess": true}}}),
        json!({"containers": [{"name": "a"}, {"name": "b", "securityContext": host_process["securityContext"]}]}),
        json!({"initContainers": [{"name": "i", "securityContext": host_process["securityContext"]}]}),
    ] {
        let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true"}}, "spec": spec});
        assert_eq!(decide_for(pod, None), Decision::Skip(Skip::Windows));
    }
    let linux = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true"}},
        "spec": {"os": {"name": "linux"}, "securityContext": {"windowsOptions": {"hostProcess": false}}}});
    assert_eq!(decide_for(linux, None), Decision::Inject);
}
