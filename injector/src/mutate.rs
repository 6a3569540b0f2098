//! Decision plus patch for one pod or pod template: the piece `serve` and
//! `inject` share.

use json_patch::jsonptr::Pointer;
use json_patch::PatchOperation;

use crate::config::Sidecar;
use crate::decision::{self, Context, Decision, Skip, Wish, INJECT_ANNOTATION, STATUS_ANNOTATION};
use crate::overrides;
use crate::patch;
use crate::pod::PodFacts;
use crate::scrape_annotations;

/// Names the container `kubectl logs` and `kubectl exec` use without `-c`.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

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
    let mut decision = decision::decide(pod, &sidecar.name, ctx);
    let mut warnings = Vec::new();
    non_string(pod, INJECT_ANNOTATION, &mut warnings);
    let mut ops = Vec::new();
    if decision == Decision::Inject {
        match inject(pod, base, sidecar, ctx, &mut warnings) {
            Ok(injected) => ops = injected,
            Err(skip) => decision = Decision::Skip(skip),
        }
    }
    if let Decision::Skip(skip) = &decision {
        let asked = pod
            .annotation(INJECT_ANNOTATION)
            .is_some_and(|v| decision::parse_wish(v) == Wish::Inject);
        if skip.warns() || (asked && matches!(skip, Skip::ProtectedNamespace(_))) {
            warnings.push(format!("linnix tracer not injected: {}", skip.message()));
        }
        if annotate_skips && skip.annotates() {
            let status = format!("skipped: {}", skip.message());
            ops = patch::set_annotation(pod, base, STATUS_ANNOTATION, &status);
        }
    }
    Outcome {
        decision,
        ops,
        warnings,
    }
}

/// The operations for a pod that gets the tracer: its annotations and
/// its namespace's settings shape the container, and the pod's own spec
/// where the tracer goes (see [`crate::fit`]). A pod the tracer cannot fit
/// is skipped.
fn inject(
    pod: &PodFacts<'_>,
    base: &Pointer,
    sidecar: &Sidecar,
    ctx: &Context<'_>,
    warnings: &mut Vec<String>,
) -> Result<Vec<PatchOperation>, Skip> {
    for o in overrides::Override::ALL {
        non_string(pod, o.annotation(), warnings);
    }
    let guarded = ctx.namespace_facts.is_some_and(|n| n.guarded);
    let namespace_sets = ctx.namespace_facts.is_some_and(|n| !n.settings.is_empty());
    let pod_sets = overrides::Override::ALL
        .iter()
        .any(|o| pod.annotation(o.annotation()).is_some());
    // Most pods set nothing: they get the container built at start-up.
    let settings =
        (namespace_sets || pod_sets).then(|| overrides::resolve(pod, ctx.namespace_facts, sidecar));
    if let Some(s) = &settings {
        warnings.extend(s.warnings.iter().cloned());
    }
    let mut native_sidecar = settings
        .as_ref()
        .map_or(sidecar.native_sidecar, |s| s.native_sidecar);
    let policy = pod.restart_policy();
    if !native_sidecar && policy.runs_to_completion() {
        // A regular container that never exits keeps a Job's pod from
        // completing. A native sidecar is stopped once the app containers
        // end: the form Istio and Linkerd use for Jobs. Where the
        // configuration itself is the regular form (a cluster without
        // native sidecars), no form works.
        if !sidecar.native_sidecar {
            return Err(Skip::RunsToCompletion {
                restart_policy: policy.as_str(),
            });
        }
        warnings.push(format!(
            "{}=\"false\" ignored: the pod runs to completion (restartPolicy {}), which a tracer in a regular container would keep it from; the tracer gets true (a native sidecar, stopped when the pod's containers end) from the config",
            overrides::Override::NativeSidecar.annotation(),
            policy.as_str()
        ));
        native_sidecar = true;
    }
    let port = crate::fit::metrics_port(pod, sidecar.metrics_port, guarded)?;
    let (mut tracer, resources) = match &settings {
        Some(s) if s.overridden() => (
            patch::tracer_container(sidecar, &s.args, native_sidecar, &s.resources),
            &s.resources,
        ),
        _ => (sidecar.container().clone(), &sidecar.resources),
    };
    if let Some(port) = port {
        crate::fit::move_metrics_port(&mut tracer, port);
        warnings.push(format!(
            "port {} is declared by a container of the pod: the linnix tracer serves its metrics on port {port} instead",
            sidecar.metrics_port
        ));
    }
    let status = decision::injected_status(sidecar.injected_status(), ctx);
    let mut annotations = vec![(STATUS_ANNOTATION, status.as_str())];
    // As Istio does, so that `kubectl logs POD` lands on the app; a
    // choice the pod already made is kept.
    if pod.annotation(DEFAULT_CONTAINER_ANNOTATION).is_none() {
        if let Some(app) = pod.first_container() {
            annotations.push((DEFAULT_CONTAINER_ANNOTATION, app));
        }
    }
    // The port the tracer serves on, moved off a port the pod declares.
    let scrape = scrape_annotations::decide(
        pod,
        sidecar.prometheus_annotations,
        port.unwrap_or(sidecar.metrics_port),
        warnings,
    );
    if let Some(scrape) = &scrape {
        annotations.extend(scrape.annotations());
    }
    let mut ops = patch::inject(pod, base, tracer, native_sidecar, &annotations);
    let (raise, changes) = crate::fit::raise_pod_resources(pod, base, resources);
    if !changes.is_empty() {
        warnings.push(format!(
            "pod-level resources (spec.resources) raised by the linnix tracer's, which they must cover: {}",
            changes.join(", ")
        ));
    }
    ops.extend(raise);
    Ok(ops)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use json_patch::jsonptr::PointerBuf;
    use serde_json::{json, Value};

    const CPU_LIMIT_ANNOTATION: &str = "sidecar.linnix.io/cpu-limit";
    const MEMORY_LIMIT_ANNOTATION: &str = "sidecar.linnix.io/memory-limit";

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
        let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", "sidecar.linnix.io/cpu": "5m", "sidecar.linnix.io/memory-limit": "256Mi"}}, "spec": {"containers": []}});
        let (l, r) = limits(&pod);
        assert_eq!(l, json!({"cpu": "500m", "memory": "256Mi"}));
        assert_eq!(r, json!({"cpu": "5m", "memory": "16Mi"}));
    }

    #[test]
    fn memory_below_the_load_peak_is_refused() {
        let with = |memory: &str| json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", MEMORY_LIMIT_ANNOTATION: memory}}, "spec": {"containers": []}});
        for low in ["16Mi", "33554431", "32M", "1"] {
            let out = run(with(low));
            assert_eq!(out.decision, Decision::Inject);
            assert_eq!(out.warnings.len(), 1, "{low}: {:?}", out.warnings);
            assert!(out.warnings[0].contains("below 32Mi"), "{:?}", out.warnings);
            let (l, _) = limits(&with(low));
            assert_eq!(l["memory"], "64Mi", "{low}");
        }
        // The floor itself is fine; the 16Mi request stays below it.
        let out = run(with("33554432"));
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
        let (l, r) = limits(&with("32Mi"));
        assert_eq!(
            (&l["memory"], &r["memory"]),
            (&json!("32Mi"), &json!("16Mi"))
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
    /// nano units): a limit a nano below a 10m request must lower it.
    #[test]
    fn overrides_compare_exactly() {
        let s = Config::default().sidecar.validate(None).unwrap();
        for (limit, request) in [
            ("0.009999999", "0.009999999"),
            // Beyond nano precision the API server rounds up to 10m.
            ("0.0099999991", "10m"),
            ("0.01", "10m"),
            ("10m", "10m"),
        ] {
            let mut pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", CPU_LIMIT_ANNOTATION: limit}}, "spec": {"containers": []}});
            let out = mutate(
                &PodFacts::of(&pod),
                &PointerBuf::root(),
                &s,
                &Context::default(),
                true,
            );
            json_patch::patch(&mut pod, &out.ops).unwrap();
            let res = &pod["spec"]["initContainers"][0]["resources"];
            let (l, r) = (&res["limits"], &res["requests"]);
            assert_eq!(l["cpu"], limit);
            assert_eq!(r["cpu"], request, "limit {limit}");
        }
    }

    #[test]
    fn bad_overrides_warn_and_still_inject() {
        let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", "sidecar.linnix.io/cpu-limit": "lots", "sidecar.linnix.io/memory-limit": "0"}}, "spec": {"containers": []}});
        let out = run(pod.clone());
        assert_eq!(out.decision, Decision::Inject);
        assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
        let (l, _) = limits(&pod);
        assert_eq!(l, json!({"cpu": "500m", "memory": "64Mi"}));
    }

    #[test]
    fn status_and_default_container() {
        let s = Config::default().sidecar.validate(None).unwrap();
        let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true"}}, "spec": {"containers": [{"name": "web"}, {"name": "proxy"}]}});
        let mut out = pod.clone();
        json_patch::patch(&mut out, &run(pod).ops).unwrap();
        let a = &out["metadata"]["annotations"];
        assert_eq!(a[STATUS_ANNOTATION], s.injected_status());
        assert_eq!(a[DEFAULT_CONTAINER_ANNOTATION], "web");
        // A pod's own choice stays.
        let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", DEFAULT_CONTAINER_ANNOTATION: "proxy"}}, "spec": {"containers": [{"name": "web"}, {"name": "proxy"}]}});
        let mut out = pod.clone();
        json_patch::patch(&mut out, &run(pod).ops).unwrap();
        assert_eq!(
            out["metadata"]["annotations"][DEFAULT_CONTAINER_ANNOTATION],
            "proxy"
        );
    }

    #[test]
    fn native_sidecar_by_annotation() {
        let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", "sidecar.linnix.io/native-sidecar": "false"}}, "spec": {"containers": [{"name": "app"}]}});
        let mut out = pod.clone();
        json_patch::patch(&mut out, &run(pod).ops).unwrap();
        assert!(out["spec"].get("initContainers").is_none());
        assert_eq!(out["spec"]["containers"][1]["name"], "linnix-tracer");
        assert!(out["spec"]["containers"][1].get("startupProbe").is_none());
    }

    #[test]
    fn non_string_values_are_reported() {
        let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true", CPU_LIMIT_ANNOTATION: 1, MEMORY_LIMIT_ANNOTATION: 128}}, "spec": {"containers": []}});
        let out = run(pod.clone());
        assert_eq!(out.decision, Decision::Inject);
        assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
        assert!(
            out.warnings[0].contains("sidecar.linnix.io/cpu-limit ignored: its value is a number")
        );
        assert!(out.warnings[1].contains("sidecar.linnix.io/memory-limit ignored"));
        let (l, _) = limits(&pod);
        assert_eq!(l, json!({"cpu": "500m", "memory": "64Mi"}));
        let out = run(json!({"metadata": {"annotations": {INJECT_ANNOTATION: true}}, "spec": {}}));
        assert!(matches!(out.decision, Decision::Skip(Skip::NotRequested)));
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
        assert!(out.warnings[0].contains("its value is a boolean, not a string"));
    }

    /// A guarded namespace's policy admits the tracer only on its
    /// configured port: there a taken port skips the pod.
    #[test]
    fn a_taken_port_in_a_guarded_namespace_skips() {
        let s = Config::default().sidecar.validate(None).unwrap();
        let facts = crate::decision::NamespaceFacts {
            guarded: true,
            ..Default::default()
        };
        let ctx = Context {
            namespace_facts: Some(&facts),
            ..Context::default()
        };
        let pod = json!({"metadata": {"annotations": {INJECT_ANNOTATION: "true"}}, "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 9464}]}]}});
        let out = mutate(&PodFacts::of(&pod), &PointerBuf::root(), &s, &ctx, true);
        assert_eq!(out.decision, Decision::Skip(Skip::PortTaken { port: 9464 }));
        assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
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
