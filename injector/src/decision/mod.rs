//! Whether a pod gets the tracer, and why not when it does not.
//!
//! Pure logic over facts read from the raw pod JSON and the namespace, shared by
//! the webhook and the offline `inject` command.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::pod::PodFacts;

/// Opt-in/opt-out annotation on pods and namespaces.
pub const INJECT_ANNOTATION: &str = "sidecar.linnix.io/inject";
/// Written on every pod the webhook decides about: the version or the skip reason.
pub const STATUS_ANNOTATION: &str = "sidecar.linnix.io/status";
pub const POD_SECURITY_ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// Namespace label the injector chart's admission policy selects: every
/// container but the exact tracer is then held to Pod Security baseline.
pub const GUARD_LABEL: &str = "sidecar.linnix.io/guard";
/// The one value of [`GUARD_LABEL`] (the policy refuses any other).
pub const GUARD_VALUE: &str = "baseline";

/// Namespaces never touched: the control plane's own, and the injector's.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Prefix of the status annotation value of an injected pod; the rest
/// names the versions and the image ([`crate::config::Sidecar::injected_status`]).
pub const INJECTED_PREFIX: &str = "injected";

/// Appended to the status of a pod injected in a guarded namespace.
pub const GUARDED_STATUS_SUFFIX: &str =
    ", namespace guarded: every other container is held to Pod Security baseline";

/// Whether the tracer called `tracer` is already in the pod, or the pod
/// says it was injected.
fn already_injected(pod: &PodFacts<'_>, tracer: &str) -> bool {
    pod.has_container(tracer)
        || pod
            .annotation(STATUS_ANNOTATION)
            .is_some_and(|s| s.starts_with(INJECTED_PREFIX))
}

/// What the pod's namespace says, as far as it is known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceFacts {
    pub inject: Option<String>,
    pub pod_security_enforce: Option<String>,
    /// The namespace carries `sidecar.linnix.io/guard=baseline`.
    pub guarded: bool,
    /// The per-pod settings the namespace sets for its pods: its
    /// annotations named in [`crate::overrides::Override::annotation`].
    pub settings: BTreeMap<String, String>,
}

/// Everything besides the pod itself that the decision depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    pub namespace: Option<&'a str>,
    pub own_namespace: Option<&'a str>,
    /// `None`: the namespace could not be looked up (no cluster, offline).
    pub namespace_facts: Option<&'a NamespaceFacts>,
    /// Offline `--all`: inject whatever the annotations say.
    pub inject_all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Inject,
    Skip(Skip),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Pod,
    Namespace,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Pod => "pod",
            Source::Namespace => "namespace",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    AlreadyInjected,
    ProtectedNamespace(String),
    NotRequested,
    Disabled(Source),
    InvalidAnnotation {
        source: Source,
        value: String,
    },
    PodSecurity {
        level: String,
    },
    ShareProcessNamespaceDisabled,
    HostPid,
    Windows,
    UserNamespace,
    /// The tracer would be a regular container in a pod that runs to
    /// completion, and the configuration has no native sidecars.
    RunsToCompletion {
        restart_policy: &'static str,
    },
    /// A container declares the tracer's metrics port, in a guarded
    /// namespace, whose policy admits the tracer only on its configured port.
    PortTaken {
        port: u16,
    },
}

impl Skip {
    /// Stable, low-cardinality name for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::AlreadyInjected => "already-injected",
            Skip::ProtectedNamespace(_) => "protected-namespace",
            Skip::NotRequested => "not-requested",
            Skip::Disabled(Source::Pod) => "disabled-by-pod",
            Skip::Disabled(Source::Namespace) => "disabled-by-namespace",
            Skip::InvalidAnnotation { .. } => "invalid-annotation",
            Skip::PodSecurity { .. } => "pod-security",
            Skip::ShareProcessNamespaceDisabled => "share-process-namespace-disabled",
            Skip::HostPid => "host-pid",
            Skip::Windows => "windows",
            Skip::UserNamespace => "user-namespace",
            Skip::RunsToCompletion { .. } => "runs-to-completion",
            Skip::PortTaken { .. } => "port-taken",
        }
    }

    /// Human explanation, used for the status annotation, warnings and logs.
    pub fn message(&self) -> String {
        match self {
            Skip::AlreadyInjected => "the linnix tracer is already present".into(),
            Skip::ProtectedNamespace(ns) => {
                format!("namespace {ns} is never injected")
            }
            Skip::NotRequested => {
                format!("neither the pod nor its namespace sets {INJECT_ANNOTATION}")
            }
            Skip::Disabled(source) => {
                format!("{INJECT_ANNOTATION} is disabled on the {}", source.as_str())
            }
            Skip::InvalidAnnotation { source, value } => format!(
                "{INJECT_ANNOTATION}={:?} on the {} is not one of true, enabled, false, disabled",
                shorten(value),
                source.as_str()
            ),
            Skip::PodSecurity { level } => format!(
                "namespace enforces Pod Security level {level:?}, which forbids the CAP_BPF and CAP_PERFMON the tracer needs: the pod would be rejected after mutation; to trace here without allowing privileged pods, guard the namespace (enforce privileged, warn and audit baseline, label {GUARD_LABEL}={GUARD_VALUE}: see charts/linnix-namespace)"
            ),
            Skip::ShareProcessNamespaceDisabled => {
                "spec.shareProcessNamespace is explicitly false; the tracer needs the shared process namespace".into()
            }
            Skip::HostPid => {
                "spec.hostPID is true: the API server refuses shareProcessNamespace, which the tracer needs, beside it".into()
            }
            Skip::Windows => {
                "the pod is for Windows (spec.os.name, or a HostProcess container): the tracer is a Linux program".into()
            }
            Skip::UserNamespace => {
                "spec.hostUsers is false: capabilities inside a user namespace do not allow loading BPF programs".into()
            }
            Skip::RunsToCompletion { restart_policy } => format!(
                "the pod runs to completion (restartPolicy {restart_policy}) and the injector is configured for a regular tracer container, which would keep it from ever completing"
            ),
            Skip::PortTaken { port } => format!(
                "a container of the pod declares port {port}, the tracer's metrics port, and a guarded namespace admits the tracer only on its configured port"
            ),
        }
    }

    /// Whether the status annotation records this skip. Pods that already
    /// carry the tracer keep their status; protected namespaces are left
    /// entirely untouched.
    pub fn annotates(&self) -> bool {
        !matches!(self, Skip::AlreadyInjected | Skip::ProtectedNamespace(_))
    }

    /// Whether someone asked for injection (or wrote a value we cannot read)
    /// and so deserves an admission warning.
    pub fn warns(&self) -> bool {
        matches!(
            self,
            Skip::InvalidAnnotation { .. }
                | Skip::PodSecurity { .. }
                | Skip::ShareProcessNamespaceDisabled
                | Skip::HostPid
                | Skip::Windows
                | Skip::UserNamespace
                | Skip::RunsToCompletion { .. }
                | Skip::PortTaken { .. }
        )
    }
}

/// Longest piece of user input echoed into an annotation or a warning. The
/// status annotation must stay small: echoing a huge value could push the
/// pod over the API server's 256 KiB annotation limit and get it rejected.
const ECHO_MAX_CHARS: usize = 64;

/// `value`, cut to [`ECHO_MAX_CHARS`] characters with a trailing `…`.
pub fn shorten(value: &str) -> Cow<'_, str> {
    match value.char_indices().nth(ECHO_MAX_CHARS) {
        None => Cow::Borrowed(value),
        Some((end, _)) => Cow::Owned(format!("{}…", &value[..end])),
    }
}

/// What an inject annotation value asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wish {
    Inject,
    Refuse,
    Invalid,
}

pub fn parse_wish(value: &str) -> Wish {
    match value {
        "true" | "enabled" => Wish::Inject,
        "false" | "disabled" => Wish::Refuse,
        _ => Wish::Invalid,
    }
}

/// Whether pods in `namespace` are never injected: the control plane's
/// namespaces and the injector's own (`own`).
pub fn is_protected(namespace: &str, own: Option<&str>) -> bool {
    SYSTEM_NAMESPACES.contains(&namespace) || own == Some(namespace)
}

/// The status annotation of a pod that [`decide`] injects, from the
/// configured tracer's `injected` status: whether its namespace is guarded
/// is part of it.
pub fn injected_status(injected: &str, ctx: &Context<'_>) -> String {
    if ctx.namespace_facts.is_some_and(|n| n.guarded) {
        format!("{injected}{GUARDED_STATUS_SUFFIX}")
    } else {
        injected.to_owned()
    }
}

/// The decision for `pod`, whose tracer container would be called `tracer`.
pub fn decide(pod: &PodFacts<'_>, tracer: &str, ctx: &Context<'_>) -> Decision {
    if already_injected(pod, tracer) {
        return Decision::Skip(Skip::AlreadyInjected);
    }
    if let Some(ns) = ctx
        .namespace
        .filter(|ns| is_protected(ns, ctx.own_namespace))
    {
        return Decision::Skip(Skip::ProtectedNamespace(ns.to_owned()));
    }
    if !ctx.inject_all {
        let (value, source) = match pod.annotation(INJECT_ANNOTATION) {
            Some(v) => (Some(v), Source::Pod),
            None => (
                ctx.namespace_facts.and_then(|n| n.inject.as_deref()),
                Source::Namespace,
            ),
        };
        let Some(value) = value else {
            return Decision::Skip(Skip::NotRequested);
        };
        match parse_wish(value) {
            Wish::Refuse => return Decision::Skip(Skip::Disabled(source)),
            Wish::Invalid => {
                return Decision::Skip(Skip::InvalidAnnotation {
                    source,
                    value: value.to_owned(),
                })
            }
            Wish::Inject => {}
        }
    }
    if let Some(level) = ctx
        .namespace_facts
        .and_then(|n| n.pod_security_enforce.as_deref())
    {
        if level == "baseline" || level == "restricted" {
            return Decision::Skip(Skip::PodSecurity {
                level: level.to_owned(),
            });
        }
    }
    if pod.share_process_namespace() == Some(false) {
        return Decision::Skip(Skip::ShareProcessNamespaceDisabled);
    }
    // Injected, the pod would be invalid: the webhook must never be the
    // reason a pod is refused.
    if pod.host_pid() == Some(true) {
        return Decision::Skip(Skip::HostPid);
    }
    if pod.for_windows() {
        return Decision::Skip(Skip::Windows);
    }
    // The tracer would start, fail with EPERM and, as a native sidecar,
    // hold back the app containers for good.
    if pod.host_users() == Some(false) {
        return Decision::Skip(Skip::UserNamespace);
    }
    Decision::Inject
}

#[cfg(test)]
mod tests;
