//! `inject` against kubectl's own YAML reader: a small Go program
//! (tests/yaml-reference) that runs kubectl's path from a YAML stream to
//! the JSON it sends (apimachinery's decoder, sigs.k8s.io/yaml, go-yaml
//! v2). For each tricky document, what kubectl refuses `inject` refuses,
//! and what kubectl accepts keeps its meaning through `inject`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::run;
use serde_json::Value;

/// Builds the reference once. Go is required: without it the comparison
/// cannot be made, and that is a failure, not a skip.
fn reference() -> &'static PathBuf {
    static BIN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &BIN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("yaml-reference");
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/yaml-reference");
        let out = Command::new("go")
            .args(["build", "-mod=readonly", "-o"])
            .arg(&bin)
            .arg(".")
            .current_dir(&src)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need Go to build kubectl's YAML reader (`go build` in {}): {e}",
                    src.display()
                )
            });
        assert!(
            out.status.success(),
            "go build of {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, bin)
    })
    .1
}

/// The documents kubectl reads from `stream`, as JSON, or its error.
fn kubectl_reads(stream: &str) -> Result<Vec<Value>, String> {
    use std::io::Write;
    let mut child = Command::new(reference())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let mut docs = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        match line.split_once(' ') {
            Some(("doc", json)) => docs.push(serde_json::from_str(json).unwrap()),
            Some(("error", msg)) => return Err(msg.to_owned()),
            _ => panic!("unexpected reference output {line:?}"),
        }
    }
    Ok(docs)
}

/// JSON equality where a float equal to an integer is that integer, as in
/// the JSON Go writes.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Whether everything `a` says, `b` says too: `b` may add keys and list
/// items (what injection adds), but changes nothing of `a`.
fn kept_in(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| kept_in(v, w))),
        (Value::Array(x), Value::Array(y)) => {
            let mut rest = y.iter();
            x.iter().all(|v| rest.any(|w| kept_in(v, w)))
        }
        _ => same(a, b),
    }
}

/// `fragment` under the key `x` of an untouched ConfigMap, and of a pod
/// that `inject --all` rewrites; then an ordinary pod.
fn stream(fragment: &str) -> (String, String) {
    let nested: String = fragment
        .split_inclusive('\n')
        .map(|l| format!("  {l}"))
        .collect();
    let untouched = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\nx:\n{nested}");
    let stream = format!(
        "{untouched}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: app\n    image: app:1\nx:\n{nested}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: plain\n  labels: {{app: web}}\nspec:\n  containers:\n  - {{name: app, image: 'app:1', args: [on, '0644', 0644]}}\n"
    );
    (untouched, stream)
}

const CASES: &[&str] = &[
    // Ordinary YAML 1.1.
    "mode: 0644\non: yes\nname: nginx\nport: 8080\ntime: 12:30\nday: 2024-01-01\nratio: 1e3\n",
    "binary: !!binary aGVsbG8=\nlines: !!binary |\n  aGVs\n  bG8=\n",
    "notutf8: !!binary \"////\"\n",
    "1.0: a\n1e3: b\n1e6: c\n0.1: d\n1.5e-5: e\n1.23456789: f\n0x10: g\n",
    ".Inf: a\n-.inf: b\n.NaN: c\n",
    "bang: ! 123\n",
    "custom: !foo 123\nempty: !foo\nafter: 1\n",
    "verbatim: !<tag:yaml.org,2002:int> '12'\nmap_tag: !!map x\n",
    "nel: \"x\u{85}y\"\n",
    "nel_plain: a\u{85}more: y\n",
    "nel_spaces: \"x  \u{85}  y\u{85}\u{85}z\"\nsingle: 'a\u{85}b'\nseq:\n- \"c\u{85}d\"\n",
    "escaped: \"a\\Nb\\L\"\n",
    "dup: 1\nnested: {a: 1, a: 2}\ndup: 2\n",
    "merged: {a: 1, <<: {a: 2, b: 3}, b: 4}\nlist: {<<: [{a: 1}, {a: 2, c: 3}]}\n",
    // kubectl refuses these.
    "~: null key\n",
    "null: null key\n",
    "? [a]\n: complex\n",
    "{a: 1}: complex\n",
    "inf: .inf\n",
    "nan: !!float .nan\n",
    "tagged_null: !!null x\n",
    "bad_binary: !!binary x\n",
];

#[test]
fn inject_reads_and_keeps_what_kubectl_reads() {
    let mut failures = Vec::new();
    for fragment in CASES {
        if let Err(e) = compare(fragment) {
            failures.push(format!("{fragment:?}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn compare(fragment: &str) -> Result<(), String> {
    let (untouched, input) = stream(fragment);
    let out = run(&["inject", "--all", "-f", "-"], Some(&input));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = match kubectl_reads(&input) {
        Err(kubectl) => {
            // Refused as a whole, with the place, and nothing written.
            let at = regex_like_position(&stderr);
            return if out.status.success() || !at || !stdout.is_empty() {
                Err(format!(
                    "kubectl refuses ({kubectl}); inject: {:?}, stderr {stderr:?}, stdout {stdout:?}",
                    out.status
                ))
            } else {
                Ok(())
            };
        }
        Ok(docs) => docs,
    };
    if !out.status.success() {
        return Err(format!("kubectl accepts; inject refuses: {stderr}"));
    }
    // What `inject` reads (and decides on) is what kubectl reads.
    let read: Vec<Value> = linnix_injector::offline::documents(&input)
        .filter_map(|d| d.unwrap().1)
        .collect();
    if read.len() != want.len() || !read.iter().zip(&want).all(|(a, b)| same(a, b)) {
        return Err(format!("read {read:?}\nkubectl reads {want:?}"));
    }
    if !stdout.starts_with(&untouched) {
        return Err(format!("the untouched document changed:\n{stdout}"));
    }
    let got = kubectl_reads(&stdout).map_err(|e| format!("kubectl refuses the output: {e}"))?;
    if got.len() != 3 || !same(&got[0], &want[0]) {
        return Err(format!("kubectl reads the output as {got:?}"));
    }
    for (before, after) in want[1..].iter().zip(&got[1..]) {
        if !after.to_string().contains("linnix-tracer") {
            return Err(format!("not injected: {after}"));
        }
        if !kept_in(before, after) || !same(&before["x"], &after["x"]) {
            return Err(format!(
                "injection changed the pod:\nbefore {before}\nafter  {after}"
            ));
        }
    }
    Ok(())
}

/// Whether an error message names a line and a column.
fn regex_like_position(stderr: &str) -> bool {
    stderr.split("line ").skip(1).any(|rest| {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(" column ")
    })
}

/// A key repeated in an untouched Secret does not stop the stream: kubectl
/// keeps the last value.
#[test]
fn a_repeated_key_in_an_untouched_document_passes() {
    let secret =
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  k: YQ==\n  k: Yg==\n";
    let input = format!("{secret}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - {{name: app, image: app}}\n");
    let want = kubectl_reads(&input).unwrap();
    assert_eq!(want[0]["data"]["k"], "Yg==");
    let out = run(&["inject", "--all", "-f", "-"], Some(&input));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(out.stdout).unwrap().starts_with(secret));
}

/// U+2028 and U+2029 break lines for kubectl but not for YAML 1.2; no
/// YAML 1.2 reading gives kubectl's meaning, so `inject` refuses them,
/// at their place.
#[test]
fn line_separators_are_refused_at_their_place() {
    let input =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"x\u{2028}y\"\n";
    assert!(kubectl_reads(input).is_ok());
    let out = run(&["inject", "-f", "-"], Some(input));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 6 column 8"), "{stderr}");
    assert!(stderr.contains("U+2028"), "{stderr}");
}
