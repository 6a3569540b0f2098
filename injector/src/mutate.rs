//! Decision plus patch for one pod or pod template: the piece `serve` and
//! `inject` share.

use std::cmp::Ordering;

use json_patch::jsonptr::Pointer;
use json_patch::PatchOperation;

use crate::config::{Resources, Sidecar};
use crate::decision::{
    self, shorten, Context, Decision, Skip, Wish, CPU_ANNOTATION, INJECTED_STATUS,
    INJECT_ANNOTATION, MEMORY_ANNOTATION, STATUS_ANNOTATION,
};
use crate::patch;
use crate::pod::PodFacts;
use crate::quantity::Quantity;

/// The result for one pod: what to change and what to tell the user.
#[derive(Debug)]
pub struct Outcome {
    pub decision: Decision,
    pub ops: Vec<PatchOperation>,
    pub warnings: Vec<String>,
}

impl Outcome {
    /// Metric label value for the decision.
    pub fn label(&self) -> (&'static str, &'static str) {
        match &self.decision {
            Decision::Inject => ("injected", "requested"),
            Decision::Skip(skip) => ("skipped", skip.reason()),
        }
    }
}

/// Decides about the pod found at `base` in the document and builds the
/// operations. `annotate_skips` is false offline, where a skipped manifest
/// is printed unchanged.
pub fn mutate(
    pod: &PodFacts<'_>,
    base: &Pointer,
    sidecar: &Sidecar,
    ctx: &Context<'_>,
    annotate_skips: bool,
) -> Outcome {
    let decision = decision::decide(pod, &sidecar.name, ctx);
    let mut warnings = Vec::new();
    non_string(pod, INJECT_ANNOTATION, &mut warnings);
    let ops = match &decision {
        Decision::Inject => {
            non_string(pod, CPU_ANNOTATION, &mut warnings);
            non_string(pod, MEMORY_ANNOTATION, &mut warnings);
            let resources = overrides(pod, sidecar, &mut warnings);
            patch::inject(pod, base, sidecar, resources.as_ref(), INJECTED_STATUS)
        }
        Decision::Skip(skip) => {
            let asked = pod
                .annotation(INJECT_ANNOTATION)
                .is_some_and(|v| decision::parse_wish(v) == Wish::Inject);
            if skip.warns() || (asked && matches!(skip, Skip::ProtectedNamespace(_))) {
                warnings.push(format!("linnix tracer not injected: {}", skip.message()));
            }
            if annotate_skips && skip.annotates() {
                let status = format!("skipped: {}", skip.message());
                patch::set_annotation(pod, base, STATUS_ANNOTATION, &status)
            } else {
                Vec::new()
            }
        }
    };
    Outcome {
        decision,
        ops,
        warnings,
    }
}

/// Annotation values are strings; another type (an unquoted `64` or `true`
/// in a manifest) is ignored, and says so.
fn non_string(pod: &PodFacts<'_>, key: &str, warnings: &mut Vec<String>) {
    if let Some(kind) = pod.non_string_annotation(key) {
        warnings.push(format!(
            "{key} ignored: its value is {kind}, not a string (quote it)"
        ));
    }
}

/// Applies `sidecar.linnix.io/cpu` and `sidecar.linnix.io/memory`: each sets
/// the limit, and lowers the request when the configured one would exceed
/// it (the API server rejects request > limit; both are compared exactly, as
/// it does). A bad value keeps the configured resources and produces a
/// warning; it never stops injection. So does a memory limit below
/// `minMemoryLimit`: the tracer would be OOM-killed while it loads and, as a
/// native sidecar, hold the app containers back for good.
/// `None` when neither annotation is set: the configured resources apply.
fn overrides(
    facts: &PodFacts<'_>,
    sidecar: &Sidecar,
    warnings: &mut Vec<String>,
) -> Option<Resources> {
    if facts.annotation(CPU_ANNOTATION).is_none() && facts.annotation(MEMORY_ANNOTATION).is_none() {
        return None;
    }
    let mut r = sidecar.resources.clone();
    for (key, request, limit, floor) in [
        (CPU_ANNOTATION, &mut r.cpu_request, &mut r.cpu_limit, None),
        (
            MEMORY_ANNOTATION,
            &mut r.memory_request,
            &mut r.memory_limit,
            Some(&sidecar.min_memory_limit),
        ),
    ] {
        let Some(text) = facts.annotation(key) else {
            continue;
        };
        match Quantity::parse_resource(text) {
            Ok(q) if q.is_zero() => warnings.push(format!(
                "{key}={:?} ignored: the limit must be greater than zero; keeping {limit}",
                shorten(text)
            )),
            Ok(q) if floor.is_some_and(|f| q.cmp_amount(f) == Ordering::Less) => {
                warnings.push(format!(
                    "{key}={:?} ignored: below {}, the least the tracer needs to load its programs (minMemoryLimit); keeping {limit}",
                    shorten(text),
                    floor.map(Quantity::as_str).unwrap_or_default(),
                ))
            }
            Ok(q) => {
                if request.cmp_amount(&q) == Ordering::Greater {
                    *request = q.clone();
                }
                *limit = q;
            }
            Err(e) => warnings.push(format!(
                "{key}={:?} ignored: {e}; keeping {limit}",
                shorten(text)
            )),
        }
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use json_patch::jsonptr::PointerBuf;
    use serde_json::{json, Value};

    fn run(pod: Value) -> Outcome {
        let s = Config::default().sidecar.validate(None).unwrap();
        let facts = PodFacts::of(&pod);
        mutate(&facts, &PointerBuf::root(), &s, &Context::default(), true)
    }

    fn limits(pod: &Value) -> (Value, Value) {
        let mut pod = pod.clone();
        let out = run(pod.clone());
        json_patch::patch(&mut pod, &out.ops).unwrap();
        let r = &pod["spec"]["initContainers"][0]["resources"];
        (r["limits"].clone(), r["requests"].clone())
    }

    #[test]
    fn resource_overrides() {
        let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", CPU_ANNOTATION: "5m", MEMORY_ANNOTATION: "256Mi"}}, "spec": {"containers": []}});
        let (l, r) = limits(&pod);
        assert_eq!(l, json!({"cpu": "5m", "memory": "256Mi"}));
        assert_eq!(r, json!({"cpu": "5m", "memory": "32Mi"}));
    }

    #[test]
    fn memory_below_the_load_peak_is_refused() {
        let with = |memory: &str| json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", MEMORY_ANNOTATION: memory}}, "spec": {"containers": []}});
        for low in ["16Mi", "25165823", "24M", "1"] {
            let out = run(with(low));
            assert_eq!(out.decision, Decision::Inject);
            assert_eq!(out.warnings.len(), 1, "{low}: {:?}", out.warnings);
            assert!(out.warnings[0].contains("below 24Mi"), "{:?}", out.warnings);
            let (l, _) = limits(&with(low));
            assert_eq!(l["memory"], "64Mi", "{low}");
        }
        // The floor itself is fine, and the request follows the limit down.
        let out = run(with("25165824"));
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        let (l, r) = limits(&with("24Mi"));
        assert_eq!(
            (&l["memory"], &r["memory"]),
            (&json!("24Mi"), &json!("24Mi"))
        );
        // The floor comes from the configuration.
        let s = Config::from_yaml("sidecar: {minMemoryLimit: 8Mi}")
            .unwrap()
            .sidecar
            .validate(None)
            .unwrap();
        let pod = with("16Mi");
        let out = mutate(
            &PodFacts::of(&pod),
            &PointerBuf::root(),
            &s,
            &Context::default(),
            true,
        );
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    }

    /// The API server compares quantities exactly (after rounding up to
    /// nano units): a limit a nano below the 32Mi request must lower it.
    #[test]
    fn overrides_compare_exactly() {
        for (limit, request) in [
            ("33554431.999999999", "33554431.999999999"),
            // Beyond nano precision the API server rounds up to 32Mi.
            ("33554431.9999999991", "32Mi"),
            ("33554432", "32Mi"),
            ("32Mi", "32Mi"),
        ] {
            let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", MEMORY_ANNOTATION: limit}}, "spec": {"containers": []}});
            let (l, r) = limits(&pod);
            assert_eq!(l["memory"], limit);
            assert_eq!(r["memory"], request, "limit {limit}");
        }
    }

    #[test]
    fn bad_overrides_warn_and_still_inject() {
        let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", CPU_ANNOTATION: "lots", MEMORY_ANNOTATION: "0"}}, "spec": {"containers": []}});
        let out = run(pod.clone());
        assert_eq!(out.decision, Decision::Inject);
        assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
        let (l, _) = limits(&pod);
        assert_eq!(l, json!({"cpu": "200m", "memory": "64Mi"}));
    }

    #[test]
    fn non_string_values_are_reported() {
        let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", CPU_ANNOTATION: 1, MEMORY_ANNOTATION: 128}}, "spec": {"containers": []}});
        let out = run(pod.clone());
        assert_eq!(out.decision, Decision::Inject);
        assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
        assert!(out.warnings[0].contains("sidecar.linnix.io/cpu ignored: its value is a number"));
        assert!(out.warnings[1].contains("sidecar.linnix.io/memory ignored"));
        let (l, _) = limits(&pod);
        assert_eq!(l, json!({"cpu": "200m", "memory": "64Mi"}));
        let out = run(json!({"metadata": {"annotations": {INJECT_ANNOTATION: true}}, "spec": {}}));
        assert!(matches!(out.decision, Decision::Skip(Skip::NotRequested)));
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert!(out.warnings[0].contains("its value is a boolean, not a string"));
    }

    #[test]
    fn skips_are_annotated_with_the_reason() {
        let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "maybe"}}, "spec": {"containers": []}});
        let out = run(pod.clone());
        assert_eq!(out.warnings.len(), 1);
        let mut pod = pod;
        json_patch::patch(&mut pod, &out.ops).unwrap();
        let status = pod["metadata"]["annotations"][STATUS_ANNOTATION]
            .as_str()
            .unwrap();
        assert!(status.starts_with("skipped: "), "{status}");
        assert!(status.contains("maybe"), "{status}");
        // The same review again changes nothing.
        assert!(run(pod).ops.is_empty());
    }
}
