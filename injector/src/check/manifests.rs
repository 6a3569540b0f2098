//! The pod templates of a YAML stream, found as `inject` finds them.

use serde_json::Value;

use super::report::{report, Options, Report};
use super::CheckError;
use crate::offline::template_pointer;

/// One report per pod and pod template in `text`, in document order.
pub fn reports(text: &str, opts: &Options<'_>) -> Result<Vec<Report>, CheckError> {
    let mut out = Vec::new();
    for (index, doc) in crate::offline::documents(text).enumerate() {
        if let (_, Some(value)) = doc? {
            walk(&value, index, opts, &mut out);
        }
    }
    if out.is_empty() {
        return Err(CheckError::NoPods);
    }
    Ok(out)
}

fn walk(obj: &Value, index: usize, opts: &Options<'_>, out: &mut Vec<Report>) {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if let Some(items) = obj.get("items").and_then(Value::as_array) {
        if kind.ends_with("List") {
            for item in items {
                walk(item, index, opts, out);
            }
            return;
        }
    }
    let Some(pointer) = template_pointer(kind) else {
        return;
    };
    let meta = |key: &str| {
        obj.get("metadata")
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
    };
    let name = meta("name").or(meta("generateName")).unwrap_or_default();
    match obj.pointer(pointer) {
        Some(template) => out.push(report(
            kind,
            name,
            meta("namespace"),
            pointer,
            template,
            opts,
        )),
        None => {
            tracing::warn!(document = index, %kind, %name, "no pod template at {pointer}; not checked")
        }
    }
}
