//! `inject` and `check` read their input the same way, as kubectl does
//! (YAML 1.1), and say where it is wrong: in lines of the whole stream,
//! once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `check -f - -o json`: exit code and, when it checked anything, the
/// `injected` answer of the first report.
fn check(yaml: &str) -> (i32, Option<bool>, String) {
    let out = run(&["check", "-f", "-", "-o", "json"], Some(yaml));
    let reports: Option<Vec<Value>> = serde_json::from_slice(&out.stdout).ok();
    (
        out.status.code().unwrap(),
        reports.and_then(|r| r[0]["injected"].as_bool()),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether `inject` adds the tracer.
fn injects(yaml: &str) -> bool {
    let out = run(&["inject", "-f", "-"], Some(yaml));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .contains("linnix-tracer")
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations:\n    sidecar.linnix.io/inject: \"true\"\nspec:\n  containers:\n  - {name: app, image: app:1}\n";

#[test]
fn check_reads_what_inject_reads() {
    let cases = [
        // YAML 1.1 booleans: rules 8 and 9 skip.
        (POD.replace("spec:\n", "spec:\n  shareProcessNamespace: no\n"), false),
        (POD.replace("spec:\n", "spec:\n  hostUsers: off\n"), false),
        // A merge key asks for the tracer.
        (
            "anns: &anns\n  sidecar.linnix.io/inject: \"true\"\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations:\n    <<: *anns\nspec:\n  containers:\n  - {name: app, image: app:1}\n"
                .replace("anns: &anns\n  sidecar.linnix.io/inject: \"true\"\n---\n", "")
                .replace("  annotations:\n    <<: *anns\n", "  annotations:\n    <<: &anns {sidecar.linnix.io/inject: \"true\"}\n"),
            true,
        ),
        // A UTF-8 byte order mark.
        (format!("\u{feff}{POD}"), true),
    ];
    for (yaml, want) in cases {
        assert_eq!(injects(&yaml), want, "inject:\n{yaml}");
        let (code, injected, stderr) = check(&yaml);
        assert_ne!(code, 2, "{stderr}\n{yaml}");
        assert_eq!(injected, Some(want), "check:\n{yaml}");
    }
}

#[test]
fn errors_name_the_line_of_the_stream_once() {
    // The second document starts on line 15 (its `---`); its null key
    // is on line 29.
    let mut yaml = String::from(POD);
    while yaml.lines().count() < 14 {
        yaml.push_str("# filler\n");
    }
    assert_eq!(yaml.lines().count() + 1, 15);
    yaml.push_str("---\n");
    let mut second = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n");
    for i in 0..8 {
        second.push_str(&format!("  k{i}: v\n"));
    }
    second.push_str("  ~: a null key\n");
    yaml.push_str(&second);
    assert_eq!(yaml.lines().count(), 29);
    for cmd in ["inject", "check"] {
        let out = run(&[cmd, "-f", "-"], Some(&yaml));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("line 29 column 3"), "{cmd}: {stderr}");
        assert_eq!(
            stderr.matches("kubectl refuses it").count(),
            1,
            "{cmd}: {stderr}"
        );
        assert!(
            stderr.contains("document 2 (from line 15)"),
            "{cmd}: {stderr}"
        );
    }
}

/// Deep nesting fails as fast in `check` as in `inject`, and small input
/// costs little memory.
#[test]
fn deep_nesting_is_refused_at_once() {
    let brackets = "[".repeat(200 * 1024);
    for cmd in ["inject", "check"] {
        let started = Instant::now();
        let out = run(&[cmd, "-f", "-"], Some(&brackets));
        let took = started.elapsed();
        assert!(!out.status.success());
        assert!(took < Duration::from_secs(5), "{cmd} took {took:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("recursion limit") || stderr.contains("nested deeper"),
            "{cmd}: {stderr}"
        );
    }
}
