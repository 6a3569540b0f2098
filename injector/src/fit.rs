//! How the tracer fits a pod it is added to, so that the API server admits
//! the mutated pod: its metrics port must not be one the pod's containers
//! declare, the pod-level resources must cover it, and a pod that runs to
//! completion must still complete.

use json_patch::jsonptr::{Pointer, Token};
use json_patch::{AddOperation, PatchOperation};
use serde_json::Value;

use crate::config::Resources;
use crate::decision::Skip;
use crate::patch::METRICS_PORT_NAME;
use crate::pod::PodFacts;
use crate::quantity::Quantity;

/// The metrics port the tracer gets in `pod`: `configured`, or the first
/// free port above it when a container of the pod declares it (as
/// containerPort or hostPort: they share the pod's network namespace, or
/// the node's with hostNetwork). `None` when it stays. In a guarded
/// namespace the policy admits the tracer only with its configured args,
/// so there the pod is skipped instead.
pub fn metrics_port(
    pod: &PodFacts<'_>,
    configured: u16,
    guarded: bool,
) -> Result<Option<u16>, Skip> {
    if !pod.declares_port(configured) {
        return Ok(None);
    }
    if guarded {
        return Err(Skip::PortTaken { port: configured });
    }
    // Declared ports are a few at most: a free one is always near.
    (configured.saturating_add(1)..=u16::MAX)
        .chain(1024..configured)
        .find(|p| !pod.declares_port(*p))
        .map(Some)
        .ok_or(Skip::PortTaken { port: configured })
}

/// Moves the tracer container's metrics port to `port`: its
/// `--metrics-addr`, and its declared port. The startup probe names the
/// port, so it follows.
pub fn move_metrics_port(tracer: &mut Value, port: u16) {
    let with_port = |addr: &str| match addr.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => addr.to_owned(),
    };
    if let Some(args) = tracer.get_mut("args").and_then(Value::as_array_mut) {
        let mut value_next = false;
        for arg in args.iter_mut() {
            let Some(text) = arg.as_str() else { continue };
            if value_next {
                *arg = Value::String(with_port(text));
                value_next = false;
            } else if text == "--metrics-addr" {
                value_next = true;
            } else if let Some(addr) = text.strip_prefix("--metrics-addr=") {
                *arg = Value::String(format!("--metrics-addr={}", with_port(addr)));
            }
        }
    }
    if let Some(ports) = tracer.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter(|p| p["name"] == METRICS_PORT_NAME) {
            p["containerPort"] = Value::from(port);
        }
    }
}

/// The operations that raise the pod-level requests and limits the pod
/// sets (`spec.resources`, Kubernetes 1.34+) by the tracer's: the API
/// server refuses a pod whose containers together request more than the
/// pod, and a container whose limit exceeds the pod's. The app keeps the
/// budget it was given; the pod grows by exactly the tracer. Also returns
/// what changed, for the warning.
pub fn raise_pod_resources(
    pod: &PodFacts<'_>,
    base: &Pointer,
    tracer: &Resources,
) -> (Vec<PatchOperation>, Vec<String>) {
    let Some([requests, limits]) = pod.pod_resources() else {
        return (Vec::new(), Vec::new());
    };
    let mut ops = Vec::new();
    let mut changes = Vec::new();
    for (kind, set, shares) in [
        (
            "requests",
            &requests,
            [
                ("cpu", &tracer.cpu_request),
                ("memory", &tracer.memory_request),
            ],
        ),
        (
            "limits",
            &limits,
            [("cpu", &tracer.cpu_limit), ("memory", &tracer.memory_limit)],
        ),
    ] {
        for (resource, share) in shares {
            // The last of duplicate keys wins, as in a JSON map.
            let Some((_, text)) = set.iter().rev().find(|(k, _)| *k == resource) else {
                continue;
            };
            // A value the API server cannot read gets the pod refused
            // whatever the tracer does.
            let Ok(current) = Quantity::parse_resource(text) else {
                continue;
            };
            let raised = format_nanos(current.nanos() + share.nanos(), resource == "memory");
            let path = ["spec", "resources", kind, resource]
                .iter()
                .fold(base.to_buf(), |p, t| p.with_trailing_token(Token::new(*t)));
            ops.push(PatchOperation::Add(AddOperation {
                path,
                value: Value::String(raised.clone()),
            }));
            changes.push(format!("{kind}.{resource} {text} to {raised}"));
        }
    }
    (ops, changes)
}

const NANOS: i128 = 1_000_000_000;

/// An amount in nano units as a quantity: binary suffixes for whole bytes
/// of memory, milli-, micro- or nano-units for fractions.
fn format_nanos(nanos: i128, memory: bool) -> String {
    if nanos % NANOS == 0 {
        let units = nanos / NANOS;
        if memory && units != 0 {
            for (suffix, shift) in [
                ("Ei", 60),
                ("Pi", 50),
                ("Ti", 40),
                ("Gi", 30),
                ("Mi", 20),
                ("Ki", 10),
            ] {
                if units % (1i128 << shift) == 0 {
                    return format!("{}{suffix}", units >> shift);
                }
            }
        }
        return units.to_string();
    }
    for (suffix, per) in [("m", 1_000_000), ("u", 1_000)] {
        if nanos % per == 0 {
            return format!("{}{suffix}", nanos / per);
        }
    }
    format!("{nanos}n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_print_as_the_quantities_they_are() {
        for (text, memory, want) in [
            ("1", false, "1"),
            ("1010m", false, "1010m"),
            ("1.5", false, "1500m"),
            ("250u", false, "250u"),
            ("5n", false, "5n"),
            ("1040Mi", true, "1040Mi"),
            ("1Gi", true, "1Gi"),
            ("1000", true, "1000"),
            ("0", true, "0"),
        ] {
            let q = Quantity::parse(text).unwrap();
            let out = format_nanos(q.nanos(), memory);
            assert_eq!(out, want, "{text}");
            assert_eq!(Quantity::parse(&out).unwrap().nanos(), q.nanos());
        }
    }
}
