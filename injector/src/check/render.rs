//! `check` output: text for people, YAML or JSON for scripts.

use std::fmt::Write;

use serde::Serialize;

use super::report::{Report, Running, Stale};
use super::CheckError;
use crate::overrides::Origin;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Yaml,
    Json,
}

/// Reports as YAML documents (one per pod template) or a JSON array.
fn structured<T: Serialize>(items: &[T], format: Format) -> Result<String, CheckError> {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(items).map_err(CheckError::Json)?;
            s.push('\n');
            Ok(s)
        }
        _ => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_yaml::to_string(item).map_err(CheckError::Yaml)?);
            }
            Ok(out)
        }
    }
}

pub fn reports(reports: &[Report], format: Format) -> Result<String, CheckError> {
    if format != Format::Text {
        return structured(reports, format);
    }
    let mut out = String::new();
    for r in reports {
        text(&mut out, r);
    }
    Ok(out)
}

fn text(out: &mut String, r: &Report) {
    let name = match &r.namespace {
        Some(ns) => format!("{ns}/{}", r.name),
        None => r.name.clone(),
    };
    let _ = write!(out, "{} {name}", r.kind);
    if !r.template.is_empty() {
        let _ = write!(out, " (pod template {})", r.template);
    }
    out.push('\n');
    let verdict = if r.injected {
        "injected"
    } else {
        "not injected"
    };
    let _ = writeln!(
        out,
        "  result:   {verdict}: rule {} ({}): {}",
        r.rule, r.reason, r.why
    );
    let _ = writeln!(
        out,
        "  status:   {}",
        r.status.as_deref().unwrap_or("(none)")
    );
    let overridden: Vec<String> = r
        .settings
        .iter()
        .filter(|e| matches!(e.origin, Origin::Pod | Origin::Namespace))
        .map(|e| {
            format!(
                "{}={} (from {})",
                e.setting.name(),
                e.value,
                e.origin.describe()
            )
        })
        .collect();
    if r.injected {
        let settings = if overridden.is_empty() {
            "all from the config".to_owned()
        } else {
            format!("{}; the rest from the config", overridden.join(", "))
        };
        let _ = writeln!(out, "  settings: {settings}");
    }
    for w in &r.warnings {
        let _ = writeln!(out, "  warning:  {w}");
    }
    if let Some(running) = &r.running {
        let _ = writeln!(out, "  running:  {}", describe(running));
    }
}

fn describe(r: &Running) -> String {
    match (&r.image, r.stale) {
        _ if !r.has_tracer => "no tracer".into(),
        (Some(image), true) => format!(
            "tracer {image}, stale: the configuration has {}",
            r.configured_image
        ),
        (Some(image), false) => format!("tracer {image}, as configured"),
        (None, _) => format!(
            "a tracer without an image, stale: the configuration has {}",
            r.configured_image
        ),
    }
}

pub fn stale(
    stale: &[Stale],
    configured_image: &str,
    format: Format,
) -> Result<String, CheckError> {
    if format != Format::Text {
        return structured(stale, format);
    }
    if stale.is_empty() {
        return Ok(format!(
            "no pod runs a tracer other than {configured_image}\n"
        ));
    }
    let width = |f: fn(&Stale) -> &str, title: &str| {
        stale
            .iter()
            .map(|s| f(s).chars().count())
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let (wn, wp) = (
        width(|s| &s.namespace, "NAMESPACE"),
        width(|s| &s.name, "POD"),
    );
    let mut out = format!("{:wn$}  {:wp$}  IMAGE\n", "NAMESPACE", "POD");
    for s in stale {
        let _ = writeln!(out, "{:wn$}  {:wp$}  {}", s.namespace, s.name, s.image);
    }
    let _ = writeln!(
        out,
        "{} pod(s) run a tracer other than {configured_image}",
        stale.len()
    );
    Ok(out)
}
