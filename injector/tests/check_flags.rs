//! `check`'s offline namespace flags as a user types them.

mod common;

use common::*;
use serde_json::Value;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: app, image: app:1}]\n";

fn tracer_args(flags: &[&str]) -> Vec<String> {
    let mut args = vec!["check", "-f", "-", "-o", "json"];
    args.extend_from_slice(flags);
    let out = run(&args, Some(POD));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let reports: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    reports[0]["tracer"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// A log-level with directives keeps its commas, in one flag or in a list
/// of pairs, as it does on a real namespace.
#[test]
fn annotation_values_keep_their_commas() {
    for flags in [
        &[
            "--namespace-annotations",
            "sidecar.linnix.io/inject=true,sidecar.linnix.io/log-level=warn,linnix_sidecar=debug",
        ][..],
        &[
            "--namespace-annotations=sidecar.linnix.io/inject=true",
            "--namespace-annotations=sidecar.linnix.io/log-level=warn,linnix_sidecar=debug",
        ][..],
    ] {
        let args = tracer_args(flags);
        assert!(
            args.iter()
                .any(|a| a == "--log-level=warn,linnix_sidecar=debug"),
            "{flags:?}: {args:?}"
        );
    }
}
