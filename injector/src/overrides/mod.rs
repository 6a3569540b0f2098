//! Per-pod tracer settings from annotations, inherited from the namespace.
//!
//! Every setting has one annotation, `sidecar.linnix.io/<name>`. The pod's
//! annotation wins over its namespace's, which wins over the injector's
//! configuration. A value that cannot be used (bad syntax, a request above
//! the limit, an override the configuration does not allow) is skipped with
//! a warning and the next source decides: a bad annotation never stops the
//! injection, let alone the pod.

use serde::{Deserialize, Serialize};

mod args;
mod values;

use args::{flag_value, has_flag, without_flag};
use values::{parse_bool, parse_count, parse_limit, parse_log_level};

use crate::config::{Resources, Sidecar};
use crate::decision::{shorten, NamespaceFacts};
use crate::pod::PodFacts;
use crate::quantity::Quantity;

/// A setting a pod or namespace may override, named as in its annotation
/// and in `sidecar.allowedOverrides`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Override {
    Cpu,
    Memory,
    CpuLimit,
    MemoryLimit,
    LogLevel,
    MaxEventsPerSec,
    Threads,
    IgnoreExecProbes,
    NativeSidecar,
}

impl Override {
    pub const ALL: [Override; 9] = [
        Override::Cpu,
        Override::Memory,
        Override::CpuLimit,
        Override::MemoryLimit,
        Override::LogLevel,
        Override::MaxEventsPerSec,
        Override::Threads,
        Override::IgnoreExecProbes,
        Override::NativeSidecar,
    ];

    /// The name in `sidecar.allowedOverrides`.
    pub fn name(self) -> &'static str {
        self.annotation()
            .strip_prefix("sidecar.linnix.io/")
            .unwrap_or_default()
    }

    pub fn annotation(self) -> &'static str {
        match self {
            Override::Cpu => "sidecar.linnix.io/cpu",
            Override::Memory => "sidecar.linnix.io/memory",
            Override::CpuLimit => "sidecar.linnix.io/cpu-limit",
            Override::MemoryLimit => "sidecar.linnix.io/memory-limit",
            Override::LogLevel => "sidecar.linnix.io/log-level",
            Override::MaxEventsPerSec => "sidecar.linnix.io/max-events-per-sec",
            Override::Threads => "sidecar.linnix.io/threads",
            Override::IgnoreExecProbes => "sidecar.linnix.io/ignore-exec-probes",
            Override::NativeSidecar => "sidecar.linnix.io/native-sidecar",
        }
    }

    /// The tracer flag the setting maps to, for the settings passed as
    /// arguments.
    fn flag(self) -> Option<&'static str> {
        match self {
            Override::LogLevel => Some("--log-level"),
            Override::MaxEventsPerSec => Some("--max-events-per-sec"),
            Override::Threads => Some("--threads"),
            Override::IgnoreExecProbes => Some("--ignore-exec-probes"),
            _ => None,
        }
    }

    /// Whether the setting changes what the admission policy of a guarded
    /// namespace pins: the tracer's arguments or its form.
    fn changes_tracer_spec(self) -> bool {
        self.flag().is_some() || self == Override::NativeSidecar
    }
}

/// Where the value in effect comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Pod,
    Namespace,
    Config,
    /// The configured request, lowered to a smaller limit (the API server
    /// rejects a request above its limit).
    LoweredToLimit,
}

impl Origin {
    pub fn describe(self) -> &'static str {
        match self {
            Origin::Pod => "the pod",
            Origin::Namespace => "the namespace",
            Origin::Config => "the config",
            Origin::LoweredToLimit => "the config, lowered to the limit",
        }
    }
}

/// One setting as the tracer gets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub setting: Override,
    pub value: String,
    pub origin: Origin,
}

/// Everything the annotations decide about one pod's tracer.
#[derive(Debug, Clone)]
pub struct Settings {
    pub resources: Resources,
    /// The tracer's extra arguments: the configured ones with the
    /// overridden flags replaced.
    pub args: Vec<String>,
    pub native_sidecar: bool,
    /// All settings in [`Override::ALL`] order.
    pub effective: Vec<Effective>,
    pub warnings: Vec<String>,
}

impl Settings {
    /// Whether an annotation changed anything, so that the tracer container
    /// differs from the prebuilt one.
    pub fn overridden(&self) -> bool {
        self.effective
            .iter()
            .any(|e| matches!(e.origin, Origin::Pod | Origin::Namespace))
    }
}

/// Whether `a` is larger than `b`. The one place quantities are compared,
/// so that the comparison is the one `quantity` provides.
fn exceeds(a: &Quantity, b: &Quantity) -> bool {
    a.cmp_amount(b) == std::cmp::Ordering::Greater
}

/// A value one source offered and why it was not used.
struct Rejected<'a> {
    origin: Origin,
    text: &'a str,
    why: String,
}

/// The annotation values of one setting, pod first.
fn candidates<'a>(
    setting: Override,
    pod: &'a PodFacts<'_>,
    namespace: Option<&'a NamespaceFacts>,
) -> [(Origin, Option<&'a str>); 2] {
    let key = setting.annotation();
    [
        (Origin::Pod, pod.annotation(key)),
        (
            Origin::Namespace,
            namespace.and_then(|n| n.settings.get(key).map(String::as_str)),
        ),
    ]
}

/// The first usable annotation value of `setting`, or `None`; every value
/// skipped on the way is recorded in `rejected`.
fn pick<'a, T>(
    sources: [(Origin, Option<&'a str>); 2],
    refusal: Option<String>,
    rejected: &mut Vec<Rejected<'a>>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<(T, Origin)> {
    for (origin, text) in sources {
        let Some(text) = text else { continue };
        if let Some(why) = &refusal {
            rejected.push(Rejected {
                origin,
                text,
                why: why.clone(),
            });
            continue;
        }
        match parse(text) {
            Ok(value) => return Some((value, origin)),
            Err(why) => rejected.push(Rejected { origin, text, why }),
        }
    }
    None
}

/// The settings for `pod` in `namespace` (when known) under `sidecar`.
pub fn resolve(
    pod: &PodFacts<'_>,
    namespace: Option<&NamespaceFacts>,
    sidecar: &Sidecar,
) -> Settings {
    let guarded = namespace.is_some_and(|n| n.guarded);
    // Why a setting may not be used here, if it may not.
    let allowed = |s: Override| -> Option<String> {
        if !sidecar.allowed_overrides.contains(&s) {
            return Some(format!(
                "{} is not among the overrides the injector allows (sidecar.allowedOverrides)",
                s.name()
            ));
        }
        // A guarded namespace's admission policy admits only the tracer as
        // configured (its args and its form): a pod whose tracer differed
        // would be refused, so only the resources may change there.
        if guarded && s.changes_tracer_spec() {
            return Some(format!(
                "{} changes the tracer's arguments or form, which a guarded namespace \
                 (sidecar.linnix.io/guard) admits only as configured",
                s.name()
            ));
        }
        None
    };
    let mut effective = Vec::with_capacity(Override::ALL.len());
    let mut warnings = Vec::new();
    let mut record =
        |setting: Override, value: String, origin: Origin, rejected: Vec<Rejected<'_>>| {
            for r in rejected {
                warnings.push(format!(
                    "{}={:?} ignored: {} (set on {}); the tracer gets {value} from {}",
                    setting.annotation(),
                    shorten(r.text),
                    r.why,
                    r.origin.describe(),
                    origin.describe(),
                ));
            }
            effective.push(Effective {
                setting,
                value,
                origin,
            });
        };

    let configured = &sidecar.resources;
    let mut resources = configured.clone();
    // A memory limit below minMemoryLimit would have the tracer OOM-killed
    // while it loads and, as a native sidecar, hold the app back for good.
    for (
        request_setting,
        limit_setting,
        request,
        limit,
        configured_request,
        configured_limit,
        floor,
    ) in [
        (
            Override::Cpu,
            Override::CpuLimit,
            &mut resources.cpu_request,
            &mut resources.cpu_limit,
            &configured.cpu_request,
            &configured.cpu_limit,
            None,
        ),
        (
            Override::Memory,
            Override::MemoryLimit,
            &mut resources.memory_request,
            &mut resources.memory_limit,
            &configured.memory_request,
            &configured.memory_limit,
            Some(&sidecar.min_memory_limit),
        ),
    ] {
        // The limit first: it bounds the request.
        let mut rejected = Vec::new();
        let (chosen_limit, limit_origin) = pick(
            candidates(limit_setting, pod, namespace),
            allowed(limit_setting),
            &mut rejected,
            |text| {
                let q = parse_limit(text)?;
                match floor {
                    Some(f) if q.cmp_amount(f) == std::cmp::Ordering::Less => Err(format!(
                        "below {}, the least the tracer needs to load its programs (minMemoryLimit)",
                        f.as_str()
                    )),
                    _ => Ok(q),
                }
            },
        )
        .unwrap_or_else(|| (configured_limit.clone(), Origin::Config));
        let mut rejected_requests = Vec::new();
        let (chosen_request, request_origin) = match pick(
            candidates(request_setting, pod, namespace),
            allowed(request_setting),
            &mut rejected_requests,
            |text| {
                let q = Quantity::parse_resource(text).map_err(|e| e.to_string())?;
                if exceeds(&q, &chosen_limit) {
                    return Err(format!("the request exceeds the limit {chosen_limit}"));
                }
                Ok(q)
            },
        ) {
            Some(chosen) => chosen,
            None if exceeds(configured_request, &chosen_limit) => {
                (chosen_limit.clone(), Origin::LoweredToLimit)
            }
            None => (configured_request.clone(), Origin::Config),
        };
        record(
            request_setting,
            chosen_request.to_string(),
            request_origin,
            rejected_requests,
        );
        record(
            limit_setting,
            chosen_limit.to_string(),
            limit_origin,
            rejected,
        );
        *request = chosen_request;
        *limit = chosen_limit;
    }

    let mut args = sidecar.args.clone();
    for setting in [Override::LogLevel, Override::MaxEventsPerSec] {
        let Some(flag) = setting.flag() else { continue };
        let mut rejected = Vec::new();
        let parse = |text: &str| -> Result<String, String> {
            match setting {
                Override::LogLevel => parse_log_level(text),
                _ => parse_count(text).map(|n| n.to_string()),
            }
        };
        let (value, origin) = match pick(
            candidates(setting, pod, namespace),
            allowed(setting),
            &mut rejected,
            parse,
        ) {
            Some((value, origin)) => {
                args = without_flag(&args, flag, true);
                args.push(format!("{flag}={value}"));
                (value, origin)
            }
            None => {
                let default = match setting {
                    Override::LogLevel => "info",
                    _ => "10000",
                };
                (
                    flag_value(&args, flag).unwrap_or_else(|| default.to_owned()),
                    Origin::Config,
                )
            }
        };
        record(setting, value, origin, rejected);
    }
    for setting in [Override::Threads, Override::IgnoreExecProbes] {
        let Some(flag) = setting.flag() else { continue };
        let mut rejected = Vec::new();
        let (on, origin) = match pick(
            candidates(setting, pod, namespace),
            allowed(setting),
            &mut rejected,
            parse_bool,
        ) {
            Some((on, origin)) => {
                args = without_flag(&args, flag, false);
                if on {
                    args.push(flag.to_owned());
                }
                (on, origin)
            }
            None => (has_flag(&args, flag), Origin::Config),
        };
        record(setting, on.to_string(), origin, rejected);
    }

    let mut rejected = Vec::new();
    let (native_sidecar, origin) = pick(
        candidates(Override::NativeSidecar, pod, namespace),
        allowed(Override::NativeSidecar),
        &mut rejected,
        parse_bool,
    )
    .unwrap_or((sidecar.native_sidecar, Origin::Config));
    record(
        Override::NativeSidecar,
        native_sidecar.to_string(),
        origin,
        rejected,
    );

    // Resources are resolved in pairs, limit first; report in table order.
    effective.sort_by_key(|e| Override::ALL.iter().position(|o| *o == e.setting));
    Settings {
        resources,
        args,
        native_sidecar,
        effective,
        warnings,
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(value_of(&out, Override::CpuLimit), ("200m", Origin::Config));
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
        assert_eq!(out.resources.memory_request.as_str(), "32Mi");
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
}
