//! Decision plus patch for one pod or pod template: the piece `serve` and
//! `inject` share.

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
    let ops = match &decision {
        Decision::Inject => {
            let resources = overrides(pod, &sidecar.resources, &mut warnings);
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

/// Applies `sidecar.linnix.io/cpu` and `sidecar.linnix.io/memory`: each sets
/// the limit, and lowers the request when the configured one would exceed
/// it (the API server rejects request > limit). A bad value keeps the
/// configured resources and produces a warning; it never stops injection.
/// `None` when neither annotation is set: the configured resources apply.
fn overrides(
    facts: &PodFacts<'_>,
    base: &Resources,
    warnings: &mut Vec<String>,
) -> Option<Resources> {
    if facts.annotation(CPU_ANNOTATION).is_none() && facts.annotation(MEMORY_ANNOTATION).is_none() {
        return None;
    }
    let mut r = base.clone();
    for (key, request, limit) in [
        (CPU_ANNOTATION, &mut r.cpu_request, &mut r.cpu_limit),
        (
            MEMORY_ANNOTATION,
            &mut r.memory_request,
            &mut r.memory_limit,
        ),
    ] {
        let Some(text) = facts.annotation(key) else {
            continue;
        };
        match Quantity::parse_resource(text) {
            Ok(q) if q.value() > 0.0 => {
                if request.value() > q.value() {
                    *request = q.clone();
                }
                *limit = q;
            }
            Ok(_) => warnings.push(format!(
                "{key}={:?} ignored: the limit must be greater than zero; keeping {limit}",
                shorten(text)
            )),
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
        assert_eq!(r, json!({"cpu": "5m", "memory": "16Mi"}));
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
