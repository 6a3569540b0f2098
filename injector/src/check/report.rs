//! Why a pod is, or is not, traced: the decision table's row, the status
//! the pod would carry, the warnings and the tracer it would get. Pure
//! functions over pod, template and namespace objects, shared by the
//! offline and the in-cluster `check`.

use json_patch::jsonptr::PointerBuf;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::config::Sidecar;
use crate::decision::{
    Context, Decision, NamespaceFacts, Skip, Source, INJECTED_PREFIX, INJECT_ANNOTATION,
    STATUS_ANNOTATION,
};
use crate::mutate::mutate;
use crate::overrides::{self, Effective, Origin};
use crate::pod::{ContainerList, PodFacts};

/// What `check` says about one pod or pod template.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub kind: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// JSON pointer of the pod template in its document; empty for a pod.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub template: String,
    /// Whether the webhook would add the tracer.
    pub injected: bool,
    /// The row of the decision table that applied.
    pub rule: &'static str,
    /// The metric `reason` of that row.
    pub reason: &'static str,
    pub why: String,
    /// `sidecar.linnix.io/status` after admission; `None` when the pod is
    /// left without one.
    pub status: Option<String>,
    pub warnings: Vec<String>,
    /// Every tracer setting and where it comes from (injected pods only),
    /// written as a map from the setting's name to `{value, origin}`.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "settings_by_name"
    )]
    pub settings: Vec<Effective>,
    /// The tracer container the admitted pod has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracer: Option<Value>,
    /// In a cluster: the tracer the running pod actually has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<Running>,
}

fn settings_by_name<S: Serializer>(settings: &[Effective], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Entry<'a> {
        value: &'a str,
        origin: Origin,
    }
    s.collect_map(settings.iter().map(|e| {
        (
            e.setting.name(),
            Entry {
                value: &e.value,
                origin: e.origin,
            },
        )
    }))
}

/// The tracer of a pod as it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    pub has_tracer: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub configured_image: String,
    /// The tracer's image differs from the configured one.
    pub stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// Everything besides the pod that the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    pub sidecar: &'a Sidecar,
    /// The namespace of objects that do not name one.
    pub namespace: Option<&'a str>,
    /// `None`: unknown, as offline without `--namespace-*` flags.
    pub namespace_facts: Option<&'a NamespaceFacts>,
    /// The injector's own namespace, never injected.
    pub own_namespace: Option<&'a str>,
}

/// The row of the decision table (README) for a decision.
pub fn rule(decision: &Decision, pod: &PodFacts<'_>) -> &'static str {
    match decision {
        Decision::Inject if pod.annotation(INJECT_ANNOTATION).is_some() => "3",
        Decision::Inject => "6",
        Decision::Skip(skip) => match skip {
            Skip::AlreadyInjected => "1",
            Skip::ProtectedNamespace(_) => "2",
            Skip::Disabled(Source::Pod) => "4",
            Skip::InvalidAnnotation {
                source: Source::Pod,
                ..
            } => "5",
            Skip::Disabled(Source::Namespace)
            | Skip::InvalidAnnotation {
                source: Source::Namespace,
                ..
            } => "6",
            Skip::NotRequested => "6b",
            Skip::PodSecurity { .. } => "7",
            Skip::ShareProcessNamespaceDisabled => "8",
            Skip::HostPid => "8b",
            Skip::Windows => "8c",
            Skip::UserNamespace => "9",
            Skip::PortTaken { .. } => "11",
            Skip::RunsToCompletion { .. } => "12",
        },
    }
}

fn why(decision: &Decision, pod: &PodFacts<'_>, facts: Option<&NamespaceFacts>) -> String {
    match decision {
        Decision::Inject => match pod.annotation(INJECT_ANNOTATION) {
            Some(v) => format!("{INJECT_ANNOTATION}={v:?} on the pod"),
            None => format!(
                "{INJECT_ANNOTATION}={:?} on the namespace",
                facts.and_then(|f| f.inject.as_deref()).unwrap_or_default()
            ),
        },
        Decision::Skip(skip) => skip.message(),
    }
}

/// The container called `name` in the pod's init containers or containers.
pub fn find_container<'a>(pod: &'a Value, name: &str) -> Option<(ContainerList, &'a Value)> {
    [ContainerList::InitContainers, ContainerList::Containers]
        .into_iter()
        .find_map(|list| {
            pod.get("spec")?
                .get(list.key())?
                .as_array()?
                .iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
                .map(|c| (list, c))
        })
}

fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

/// The report for the pod (template) `template` of a `kind` object.
pub fn report(
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    pointer: &str,
    template: &Value,
    opts: &Options<'_>,
) -> Report {
    let namespace = namespace.or(opts.namespace);
    let facts = PodFacts::of(template);
    let ctx = Context {
        namespace,
        own_namespace: opts.own_namespace,
        namespace_facts: opts.namespace_facts,
        inject_all: false,
    };
    // Exactly what the webhook would send, applied as the API server would.
    let outcome = mutate(&facts, &PointerBuf::root(), opts.sidecar, &ctx, true);
    let mut admitted = template.clone();
    let applied = json_patch::patch(&mut admitted, &outcome.ops);
    let mut warnings = outcome.warnings.clone();
    if let Err(e) = applied {
        // Only an object no API server would store gets here; say so
        // rather than show a pod that was never built.
        warnings.push(format!("the patch does not apply to this object: {e}"));
        admitted = template.clone();
    }
    let injected = outcome.decision == Decision::Inject;
    Report {
        kind: kind.to_owned(),
        name: name.to_owned(),
        namespace: namespace.map(str::to_owned),
        template: pointer.to_owned(),
        injected,
        rule: rule(&outcome.decision, &facts),
        reason: outcome.label().1,
        why: why(&outcome.decision, &facts, opts.namespace_facts),
        status: annotation(&admitted, STATUS_ANNOTATION).map(str::to_owned),
        warnings,
        settings: if injected {
            overrides::resolve(&facts, opts.namespace_facts, opts.sidecar).effective
        } else {
            Vec::new()
        },
        tracer: find_container(&admitted, &opts.sidecar.name).map(|(_, c)| c.clone()),
        running: None,
    }
}

/// The tracer a running pod has, compared with the configured one.
pub fn running(pod: &Value, sidecar: &Sidecar) -> Running {
    let tracer = find_container(pod, &sidecar.name).map(|(_, c)| c);
    let image = tracer
        .and_then(|c| c.get("image"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Running {
        has_tracer: tracer.is_some(),
        stale: tracer.is_some() && image.as_deref() != Some(sidecar.image.as_str()),
        image,
        configured_image: sidecar.image.clone(),
        status: annotation(pod, STATUS_ANNOTATION).map(str::to_owned),
    }
}

/// The pod as its controller would submit it again: without the tracer
/// and the status the webhook added, so that the decision shows why the
/// pod is (or would now be) traced rather than that it already is.
pub fn as_submitted(pod: &Value, tracer: &str) -> Value {
    let mut pod = pod.clone();
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        for list in [ContainerList::InitContainers, ContainerList::Containers] {
            if let Some(containers) = spec.get_mut(list.key()).and_then(Value::as_array_mut) {
                containers.retain(|c| c.get("name").and_then(Value::as_str) != Some(tracer));
            }
        }
    }
    if let Some(annotations) = pod
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        let injected = annotations
            .get(STATUS_ANNOTATION)
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with(INJECTED_PREFIX));
        if injected {
            annotations.remove(STATUS_ANNOTATION);
        }
    }
    pod
}

/// The report for a pod read from the cluster, with its namespace's facts
/// in `opts`.
pub fn live(pod: &Value, opts: &Options<'_>) -> Report {
    let meta = |key: &str| {
        pod.get("metadata")
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
    };
    let mut report = report(
        "Pod",
        meta("name").unwrap_or_default(),
        meta("namespace"),
        "",
        &as_submitted(pod, &opts.sidecar.name),
        opts,
    );
    let running = running(pod, opts.sidecar);
    if report.injected && !running.has_tracer {
        report
            .warnings
            .push(unseen_by_webhook(running.status.is_some()));
    }
    report.running = Some(running);
    report
}

/// Why a pod that would be injected now runs without the tracer. Without a
/// status annotation the webhook never answered for it: it was down or
/// unreachable when the pod was created, and `failurePolicy: Ignore` let the
/// pod through, or the namespace opted in later.
fn unseen_by_webhook(has_status: bool) -> String {
    let why = if has_status {
        "its status annotation says the webhook decided otherwise when it was created"
    } else {
        "it has no status annotation: the webhook did not see it when it was created \
         (the webhook was down or unreachable, and failurePolicy Ignore admitted the pod, \
         or the namespace opted in later)"
    };
    format!("the pod runs without the tracer; {why}; recreate it to trace it (kubectl delete pod, or a rollout restart of its controller)")
}

/// Whether a pod read from the cluster is what `check` answers 0 for: it
/// runs the tracer, and the webhook would inject it.
pub fn traced(report: &Report) -> bool {
    report.injected && report.running.as_ref().is_none_or(|r| r.has_tracer)
}

/// A pod whose tracer is not the configured one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stale {
    pub namespace: String,
    pub name: String,
    pub image: String,
    pub configured_image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// The pods among `pods` that run a tracer other than the configured one.
pub fn stale(pods: &[Value], sidecar: &Sidecar) -> Vec<Stale> {
    pods.iter()
        .filter_map(|pod| {
            let r = running(pod, sidecar);
            if !r.stale {
                return None;
            }
            let meta = |key: &str| {
                pod.pointer(&format!("/metadata/{key}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            Some(Stale {
                namespace: meta("namespace"),
                name: meta("name"),
                image: r.image.unwrap_or_default(),
                configured_image: r.configured_image,
                status: r.status,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::Config;

    fn check_live(pod: &Value) -> Report {
        let sidecar = Config::default().sidecar.validate(None).unwrap();
        let facts = NamespaceFacts {
            inject: Some("true".into()),
            ..Default::default()
        };
        live(
            pod,
            &Options {
                sidecar: &sidecar,
                namespace: Some("team-a"),
                namespace_facts: Some(&facts),
                own_namespace: None,
            },
        )
    }

    fn app_pod(annotations: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "team-a", "annotations": annotations},
               "spec": {"containers": [{"name": "app", "image": "busybox"}]}})
    }

    #[test]
    fn a_pod_the_webhook_never_saw_is_not_traced_and_says_why() {
        let report = check_live(&app_pod(json!({})));
        assert!(report.injected, "the webhook would inject it now");
        assert!(!traced(&report));
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("no status annotation")
                    && w.contains("failurePolicy Ignore")
                    && w.contains("recreate it")),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn a_pod_running_the_tracer_is_traced_without_a_warning() {
        let sidecar = Config::default().sidecar.validate(None).unwrap();
        let mut pod = app_pod(json!({STATUS_ANNOTATION: "injected"}));
        pod["spec"]["initContainers"] = json!([{"name": sidecar.name, "image": sidecar.image}]);
        let report = check_live(&pod);
        assert!(traced(&report), "{report:?}");
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }
}
