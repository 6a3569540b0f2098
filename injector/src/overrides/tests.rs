//! Resolution of the per-pod settings, from annotations to the tracer's spec.

use super::*;
use crate::config::Config;
use serde_json::{json, Value};

fn sidecar(yaml: &str) -> Sidecar {
    Config::from_yaml(yaml)
        .unwrap()
        .sidecar
        .validate(None)
        .unwrap()
}

fn resolve_for(pod: Value, ns: &[(&str, &str)], s: &Sidecar) -> Settings {
    let facts = NamespaceFacts {
        settings: ns
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    resolve(&PodFacts::of(&pod), Some(&facts), s)
}

fn annotated(a: Value) -> Value {
    json!({"metadata": {"annotations": a}})
}

fn value_of(s: &Settings, setting: Override) -> (&str, Origin) {
    let e = s.effective.iter().find(|e| e.setting == setting).unwrap();
    (e.value.as_str(), e.origin)
}

#[test]
fn names_and_annotations() {
    for o in Override::ALL {
        assert_eq!(o.annotation(), format!("sidecar.linnix.io/{}", o.name()));
        let parsed: Override = serde_yaml::from_str(o.name()).unwrap();
        assert_eq!(parsed, o);
    }
}

#[test]
fn nothing_set_means_the_config() {
    let s = sidecar("");
    let out = resolve(&PodFacts::of(&json!({})), None, &s);
    assert!(!out.overridden());
    assert!(out.warnings.is_empty());
    assert_eq!(out.resources, s.resources);
    assert_eq!(out.args, s.args);
    let order: Vec<Override> = out.effective.iter().map(|e| e.setting).collect();
    assert_eq!(order, Override::ALL);
    assert_eq!(value_of(&out, Override::LogLevel), ("info", Origin::Config));
    assert_eq!(
        value_of(&out, Override::MaxEventsPerSec),
        ("10000", Origin::Config)
    );
    assert_eq!(
        value_of(&out, Override::NativeSidecar),
        ("true", Origin::Config)
    );
}

#[test]
fn pod_wins_over_namespace_wins_over_config() {
    let s = sidecar("sidecar: {args: [--max-events-per-sec, '500']}");
    let pod = annotated(json!({"sidecar.linnix.io/memory-limit": "256Mi"}));
    let out = resolve_for(
        pod,
        &[
            ("sidecar.linnix.io/memory-limit", "128Mi"),
            ("sidecar.linnix.io/cpu-limit", "300m"),
        ],
        &s,
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(
        value_of(&out, Override::MemoryLimit),
        ("256Mi", Origin::Pod)
    );
    assert_eq!(
        value_of(&out, Override::CpuLimit),
        ("300m", Origin::Namespace)
    );
    assert_eq!(value_of(&out, Override::Cpu), ("10m", Origin::Config));
    assert_eq!(
        value_of(&out, Override::MaxEventsPerSec),
        ("500", Origin::Config)
    );
    assert_eq!(out.args, ["--max-events-per-sec", "500"]);
    assert!(out.overridden());
}

#[test]
fn a_guarded_namespace_keeps_the_tracer_as_configured_but_its_resources() {
    let s = sidecar("");
    let pod = annotated(json!({
        "sidecar.linnix.io/log-level": "debug",
        "sidecar.linnix.io/threads": "true",
        "sidecar.linnix.io/native-sidecar": "false",
        "sidecar.linnix.io/memory-limit": "128Mi",
    }));
    let facts = NamespaceFacts {
        guarded: true,
        ..Default::default()
    };
    let out = resolve(&PodFacts::of(&pod), Some(&facts), &s);
    assert_eq!(out.args, s.args);
    assert_eq!(out.native_sidecar, s.native_sidecar);
    assert_eq!(
        value_of(&out, Override::MemoryLimit),
        ("128Mi", Origin::Pod)
    );
    assert_eq!(out.warnings.len(), 3, "{:?}", out.warnings);
    assert!(
        out.warnings.iter().all(|w| w.contains("guarded")),
        "{:?}",
        out.warnings
    );
}

#[test]
fn flags_replace_the_configured_ones() {
    let s = sidecar(
        "sidecar: {args: [--threads, --log-level, debug, --max-events-per-sec=7, --other]}",
    );
    let pod = annotated(json!({
        "sidecar.linnix.io/threads": "false",
        "sidecar.linnix.io/log-level": "warn,linnix_sidecar=trace",
        "sidecar.linnix.io/max-events-per-sec": "0",
        "sidecar.linnix.io/ignore-exec-probes": "true",
    }));
    let out = resolve_for(pod, &[], &s);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(
        out.args,
        [
            "--other",
            "--log-level=warn,linnix_sidecar=trace",
            "--max-events-per-sec=0",
            "--ignore-exec-probes"
        ]
    );
    // Without the annotation the flag is not emitted.
    let out = resolve_for(json!({}), &[], &sidecar(""));
    assert!(!out.args.iter().any(|a| a.contains("ignore-exec-probes")));
    assert_eq!(
        value_of(&out, Override::IgnoreExecProbes),
        ("false", Origin::Config)
    );
}

#[test]
fn invalid_values_fall_through_with_a_warning() {
    let s = sidecar("");
    let pod = annotated(json!({
        "sidecar.linnix.io/memory-limit": "lots",
        "sidecar.linnix.io/threads": "yes",
        "sidecar.linnix.io/log-level": "verbose please",
        "sidecar.linnix.io/max-events-per-sec": "-1",
        "sidecar.linnix.io/native-sidecar": "no",
        "sidecar.linnix.io/cpu-limit": "0",
    }));
    let out = resolve_for(pod, &[("sidecar.linnix.io/memory-limit", "96Mi")], &s);
    assert_eq!(out.warnings.len(), 6, "{:#?}", out.warnings);
    // The pod's bad value gives way to the namespace's.
    assert_eq!(
        value_of(&out, Override::MemoryLimit),
        ("96Mi", Origin::Namespace)
    );
    assert!(out.warnings.iter().any(|w| w
        .starts_with("sidecar.linnix.io/memory-limit=\"lots\" ignored: ")
        && w.ends_with("(set on the pod); the tracer gets 96Mi from the namespace")));
    assert_eq!(value_of(&out, Override::CpuLimit), ("500m", Origin::Config));
    assert_eq!(out.args, s.args);
    assert!(out.native_sidecar);
}

#[test]
fn requests_never_exceed_limits() {
    let s = sidecar("");
    // A request above the limit in effect is refused...
    let out = resolve_for(
        annotated(json!({"sidecar.linnix.io/memory": "128Mi"})),
        &[],
        &s,
    );
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("the request exceeds the limit 64Mi"));
    assert_eq!(out.resources.memory_request.as_str(), "16Mi");
    // ...unless the limit is raised too.
    let out = resolve_for(
        annotated(
            json!({"sidecar.linnix.io/memory": "128Mi", "sidecar.linnix.io/memory-limit": "1Gi"}),
        ),
        &[],
        &s,
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(out.resources.memory_request.as_str(), "128Mi");
    // A limit below the configured request lowers that request.
    let out = resolve_for(
        annotated(json!({"sidecar.linnix.io/cpu-limit": "5m"})),
        &[],
        &s,
    );
    assert!(out.warnings.is_empty());
    assert_eq!(
        value_of(&out, Override::Cpu),
        ("5m", Origin::LoweredToLimit)
    );
    // Equal quantities in different units are not above each other.
    let out = resolve_for(
        annotated(
            json!({"sidecar.linnix.io/memory": "67108864", "sidecar.linnix.io/memory-limit": "64Mi"}),
        ),
        &[],
        &s,
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn only_allowed_overrides_apply() {
    let s = sidecar("sidecar: {allowedOverrides: [memory-limit]}");
    let pod = annotated(json!({
        "sidecar.linnix.io/max-events-per-sec": "1000000",
        "sidecar.linnix.io/memory-limit": "128Mi",
    }));
    let out = resolve_for(pod, &[("sidecar.linnix.io/max-events-per-sec", "0")], &s);
    assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
    assert!(out
        .warnings
        .iter()
        .all(|w| w.contains("max-events-per-sec is not among the overrides")));
    assert_eq!(
        value_of(&out, Override::MaxEventsPerSec),
        ("10000", Origin::Config)
    );
    assert_eq!(out.resources.memory_limit.as_str(), "128Mi");
    assert!(out.args.is_empty());
}

/// What the API server reads: `250u` and `5n` are quantities; memory in
/// fractions of a byte is admitted only with a warning, so it is refused
/// here with one.
#[test]
fn quantities_as_the_api_server_reads_them() {
    let s = sidecar("");
    let out = resolve_for(
        annotated(json!({"sidecar.linnix.io/cpu": "5n", "sidecar.linnix.io/cpu-limit": "250u"})),
        &[],
        &s,
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(out.resources.cpu_limit.as_str(), "250u");
    assert_eq!(out.resources.cpu_request.as_str(), "5n");
    for (key, fraction) in [
        ("sidecar.linnix.io/memory", "0.1"),
        ("sidecar.linnix.io/memory-limit", "67108864500m"),
    ] {
        let out = resolve_for(annotated(json!({ key: fraction })), &[], &s);
        assert_eq!(out.warnings.len(), 1, "{fraction}: {:?}", out.warnings);
        assert!(
            out.warnings[0].contains("whole bytes"),
            "{:?}",
            out.warnings
        );
        assert!(out.resources.memory_request.is_whole());
        assert!(out.resources.memory_limit.is_whole());
    }
}
