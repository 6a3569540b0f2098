//! `linnix-injector inject`: the webhook's decision and patch applied to
//! manifests on disk, like `istioctl kube-inject`.

use std::io::{Read, Write};

use json_patch::jsonptr::PointerBuf;
use serde_json::Value;

use crate::cli::InjectArgs;
use crate::config::{Config, Sidecar, HOST_ENV, PORT_ENV};
use crate::decision::{Context, Decision};
use crate::mutate::mutate;
use crate::pod::PodFacts;
use crate::yaml11::{self, YamlError};

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    // The YAML error is part of the message, not a source: a chain would
    // print it twice.
    #[error("document {} (from line {line}): not valid YAML for a Kubernetes object: {error}", index + 1)]
    Parse {
        index: usize,
        line: usize,
        error: YamlError,
    },
    #[error("document {}: cannot apply the patch: {error}", index + 1)]
    Patch {
        index: usize,
        error: json_patch::PatchError,
    },
}

/// `linnix-injector inject`: the manifests of `args.file`, injected, on stdout.
pub fn run(args: InjectArgs) -> anyhow::Result<()> {
    let sidecar = Config::load(args.config.as_deref())?
        .sidecar
        .validate(args.native_sidecar)?;
    // Offline, this process's own environment is not the cluster's: only
    // the config file names the API server.
    if sidecar.api_server.is_none() {
        tracing::warn!(
            "sidecar.apiServer is not set in the config: the tracer gets {HOST_ENV}/{PORT_ENV} \
             from service links, which a Service named kubernetes in its namespace overrides; \
             guarded namespaces refuse it"
        );
    }
    let text = read_input(&args.file)?;
    let out = inject_yaml(
        &text,
        &Options {
            sidecar: &sidecar,
            inject_all: args.all,
        },
    )?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

pub struct Options<'a> {
    pub sidecar: &'a Sidecar,
    pub inject_all: bool,
}

/// Reads `path` (`-` for stdin).
pub fn read_input(path: &str) -> Result<String, OfflineError> {
    let mut text = String::new();
    if path == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| OfflineError::Read("stdin".into(), e))?;
    } else {
        text = std::fs::read_to_string(path).map_err(|e| OfflineError::Read(path.into(), e))?;
    }
    Ok(text)
}

/// Injects every pod and pod template in the YAML stream. Documents that
/// do not change (other kinds, skipped pods, comments, empty documents) are
/// copied byte for byte, so they mean to kubectl exactly what they meant;
/// an injected document is read as kubectl reads it (YAML 1.1) and written
/// so that YAML 1.1 and 1.2 readers alike read the same values (see
/// [`crate::yaml11`]).
pub fn inject_yaml(text: &str, opts: &Options<'_>) -> Result<String, OfflineError> {
    let mut out = String::with_capacity(text.len() + 4096);
    for (index, doc) in documents(text).enumerate() {
        let (raw, parsed) = doc?;
        let Some(mut value) = parsed else {
            out.push_str(raw.text);
            continue;
        };
        let changed = inject_object(&mut value, opts)
            .map_err(|error| OfflineError::Patch { index, error })?;
        if !changed {
            out.push_str(raw.text);
            continue;
        }
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        if index > 0 || starts_with_marker(raw.text) {
            out.push_str("---\n");
        }
        out.push_str(&yaml11::write_document(&value));
        if yaml11::ends_with_end_marker(raw.text) {
            out.push_str("...\n");
        }
    }
    Ok(out)
}

/// Each document of the stream and its value as kubectl reads it (YAML
/// 1.1; `None` for a document without content). `inject` and `check` both
/// read their input here, so they cannot disagree about what it says.
pub fn documents(
    text: &str,
) -> impl Iterator<Item = Result<(yaml11::RawDocument<'_>, Option<Value>), OfflineError>> {
    yaml11::split_documents(text)
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            let parsed = yaml11::read_document(raw.text).map_err(|error| OfflineError::Parse {
                index,
                line: raw.line,
                error: error.in_stream(raw.line),
            })?;
            Ok((raw, parsed.filter(|v| !v.is_null())))
        })
}

/// Whether the document opens with directives or a `---` line.
fn starts_with_marker(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .is_some_and(|l| l.starts_with("---") || l.starts_with('%'))
}

/// Where the pod template of each supported kind lives.
pub fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Injects `obj` in place; whether anything changed.
fn inject_object(obj: &mut Value, opts: &Options<'_>) -> Result<bool, json_patch::PatchError> {
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if kind == "List" || (kind.ends_with("List") && obj.get("items").is_some_and(Value::is_array)) {
        let mut changed = false;
        if let Some(items) = obj.get_mut("items").and_then(Value::as_array_mut) {
            for item in items {
                changed |= inject_object(item, opts)?;
            }
        }
        return Ok(changed);
    }
    let Some(pointer) = template_pointer(&kind) else {
        return Ok(false);
    };
    let name = obj
        .pointer("/metadata/name")
        .or_else(|| obj.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let Some(pod) = obj.pointer(pointer).filter(|p| p.is_object()) else {
        tracing::warn!(%kind, %name, "no pod template object at {pointer}; left unchanged");
        return Ok(false);
    };
    let namespace = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let ctx = Context {
        namespace: namespace.as_deref(),
        own_namespace: None,
        namespace_facts: None,
        inject_all: opts.inject_all,
    };
    let base = match PointerBuf::parse(pointer) {
        Ok(base) => base,
        Err(_) => return Ok(false),
    };
    let outcome = mutate(&PodFacts::of(pod), &base, opts.sidecar, &ctx, false);
    for w in &outcome.warnings {
        tracing::warn!(%kind, %name, "{w}");
    }
    match &outcome.decision {
        Decision::Inject => tracing::info!(%kind, %name, "injected"),
        Decision::Skip(skip) => {
            tracing::info!(%kind, %name, reason = skip.reason(), "skipped: {}", skip.message())
        }
    }
    json_patch::patch(obj, &outcome.ops)?;
    Ok(!outcome.ops.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn run(yaml: &str, all: bool) -> Vec<Value> {
        let sidecar = Config::default().sidecar.validate(None).unwrap();
        let out = inject_yaml(
            yaml,
            &Options {
                sidecar: &sidecar,
                inject_all: all,
            },
        )
        .unwrap();
        yaml11::split_documents(&out)
            .iter()
            .filter_map(|d| yaml11::read_document(d.text).unwrap())
            .filter(|v| !v.is_null())
            .collect()
    }

    #[test]
    fn passes_other_kinds_and_keeps_order() {
        let docs = run(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {z: '1', a: '2'}\n---\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
            true,
        );
        assert_eq!(docs.len(), 2);
        let keys: Vec<_> = docs[0]["data"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["z", "a"]);
        assert_eq!(docs[1]["kind"], "Service");
    }

    #[test]
    fn list_items_are_injected() {
        let docs = run(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p}\n  spec: {containers: [{name: app, image: busybox}]}\n",
            true,
        );
        assert_eq!(
            docs[0]["items"][0]["spec"]["initContainers"][0]["name"],
            "linnix-tracer"
        );
    }

    #[test]
    fn without_all_the_annotation_decides() {
        let docs = run(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: app, image: busybox}]}\n",
            false,
        );
        assert!(docs[0]["spec"].get("initContainers").is_none());
        assert!(docs[0]["metadata"].get("annotations").is_none());
    }

    #[test]
    fn templates_that_are_not_objects_are_left_alone() {
        let input = "kind: Deployment\nmetadata: {name: d}\nspec: {template: 5}\n---\nkind: Job\nspec: {template: [x]}\n---\nkind: CronJob\nspec: {jobTemplate: {spec: {template: null}}}\n";
        let docs = run(input, true);
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0]["spec"]["template"], 5);
        assert_eq!(docs[1]["spec"]["template"][0], "x");
        assert!(docs[2]["spec"]["jobTemplate"]["spec"]["template"].is_null());
    }

    /// Found by the inject_yaml fuzz target: an injected document that
    /// ended with `...` lost it, and the `%YAML` directive after it became
    /// invalid.
    #[test]
    fn end_markers_before_directives_survive_injection() {
        let input =
            "kind: Pod\nmetadata: {name: p}\nspec: {}\n...\n%YAML 1.1\n---\nkind: Service\n";
        let sidecar = Config::default().sidecar.validate(None).unwrap();
        let opts = Options {
            sidecar: &sidecar,
            inject_all: true,
        };
        let out = inject_yaml(input, &opts).unwrap();
        assert!(
            out.ends_with("...\n%YAML 1.1\n---\nkind: Service\n"),
            "{out}"
        );
        for doc in yaml11::split_documents(&out) {
            yaml11::read_document(doc.text).unwrap();
        }
        assert_eq!(inject_yaml(&out, &opts).unwrap(), out);
    }

    #[test]
    fn rejects_broken_yaml() {
        let sidecar = Config::default().sidecar.validate(None).unwrap();
        let r = inject_yaml(
            "kind: [",
            &Options {
                sidecar: &sidecar,
                inject_all: true,
            },
        );
        assert!(matches!(r, Err(OfflineError::Parse { index: 0, .. })));
    }
}
