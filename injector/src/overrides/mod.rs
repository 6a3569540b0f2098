//! Per-pod tracer settings from annotations, inherited from the namespace.
//!
//! Every setting has one annotation, `sidecar.linnix.io/<name>`. The pod's
//! annotation wins over its namespace's, which wins over the injector's
//! configuration. A value that cannot be used (bad syntax, a request above
//! the limit, an override the configuration does not allow) is skipped with
//! a warning and the next source decides: a bad annotation never stops the
//! injection, let alone the pod.

mod args;
mod setting;
mod values;

pub use setting::{Effective, Origin, Override};

use args::{flag_value, has_flag, without_flag};
use values::{parse_bool, parse_count, parse_limit, parse_log_level};

use crate::config::{Resources, Sidecar};
use crate::decision::{shorten, NamespaceFacts};
use crate::pod::PodFacts;
use crate::quantity::Quantity;

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

/// A memory quantity (`is_memory`) must be whole
/// bytes: the API server admits `0.1` only with a warning, and rounds it.
fn whole_bytes(q: &Quantity, is_memory: bool) -> Result<(), String> {
    if is_memory && !q.is_whole() {
        return Err("memory is counted in whole bytes".into());
    }
    Ok(())
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
        is_memory,
    ) in [
        (
            Override::Cpu,
            Override::CpuLimit,
            &mut resources.cpu_request,
            &mut resources.cpu_limit,
            &configured.cpu_request,
            &configured.cpu_limit,
            None,
            false,
        ),
        (
            Override::Memory,
            Override::MemoryLimit,
            &mut resources.memory_request,
            &mut resources.memory_limit,
            &configured.memory_request,
            &configured.memory_limit,
            Some(&sidecar.min_memory_limit),
            true,
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
                whole_bytes(&q, is_memory)?;
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
                whole_bytes(&q, is_memory)?;
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
mod tests;
