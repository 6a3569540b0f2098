//! The default mode: the tracer's parent cgroup is the pod. Built here as a
//! cgroup tree `<pod>/{tracer, libpod-<id>}` like podman's, with no API
//! server reachable: which cgroup is the pod, and what is refused. Real BPF;
//! needs root.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::api::APP_ID;
use common::{of_kind, pod_cgroup, run_in, Proc, Tracer};
use linnix_test_support::{in_cgroup, v2_mount, TestCgroup};
use serde_json::json;

/// A kubeconfig pointing at a listener that accepts connections and never
/// answers: the container name lookup must give up on its own, warn once and
/// keep ids.
fn silent_kubeconfig(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    common::api::kubeconfig(dir, &format!("https://127.0.0.1:{port}"), Some("team-a"))
}

#[test]
fn traces_its_pod_and_reports_present_processes() {
    let pod = pod_cgroup("pod");
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let outsider = TestCgroup::named("outsider");

    let mut sleep = Command::new("sleep");
    sleep.arg("300");
    in_cgroup(&mut sleep, &app);
    let sleeper = Proc::spawn(&mut sleep);
    let mut other = Command::new("sleep");
    other.arg("301");
    in_cgroup(&mut other, &outsider.path);
    let outside = Proc::spawn(&mut other);

    let dir = tempfile::tempdir().expect("tempdir");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let kubeconfig = silent_kubeconfig(dir.path(), port);
    let started = Instant::now();
    let mut t = Tracer::start(
        &[],
        &[],
        Some(&tracer_cg),
        &[
            ("POD_NAME", "demo"),
            ("POD_NAMESPACE", "team-a"),
            ("POD_UID", "5b1f-uid"),
            ("KUBECONFIG", kubeconfig.to_str().expect("utf8")),
        ],
    );
    t.wait_ready();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "start-up waited {:?} for an absent API server",
        started.elapsed()
    );
    run_in(&app, &["/bin/sh", "-c", "/bin/echo pod-marker; exit 6"]);
    run_in(&outsider.path, &["/bin/echo", "outside-marker"]);
    let tracer_pid = u64::from(t.proc.pid());
    let r = t.stop();
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);

    let pod_json = json!({"name": "demo", "namespace": "team-a", "uid": "5b1f-uid"});
    for e in &r.events {
        assert_eq!(e["pod"], pod_json, "{e}");
        assert_ne!(e["pid"], tracer_pid, "the tracer reported itself: {e}");
    }

    let present = of_kind(&r.events, "present");
    assert_eq!(present.len(), 1, "only the pod's sleeper: {present:?}");
    assert_eq!(present[0]["pid"], sleeper.pid());
    assert_eq!(present[0]["host_pid"], sleeper.pid());
    assert_eq!(present[0]["comm"], "sleep");
    assert_eq!(present[0]["container"], APP_ID);
    assert!(present.iter().all(|p| p["pid"] != outside.pid()));

    let exec = of_kind(&r.events, "exec")
        .into_iter()
        .find(|e| e["argv"] == json!(["/bin/echo", "pod-marker"]))
        .unwrap_or_else(|| panic!("app exec missing: {:?}", r.events));
    assert_eq!(exec["container"], APP_ID);
    assert!(of_kind(&r.events, "exit")
        .iter()
        .any(|e| e["exit_code"] == 6 && e["container"] == APP_ID));
    assert!(!r.events.iter().any(|e| e["argv"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "outside-marker"))));

    // No API server: one warning, not one per event.
    let warnings = r
        .stderr
        .lines()
        .filter(|l| l.contains("container ids instead of names"))
        .count();
    assert_eq!(warnings, 1, "{}", r.stderr);
    drop(sleeper);
    drop(outside);
    drop(silent);
}

#[test]
fn at_the_cgroup_root_there_is_no_pod() {
    // This test binary runs in some cgroup; the tracer, started in the v2
    // root itself, has no parent to call its pod.
    let root = v2_mount();
    let mut t = Tracer::start(&[], &[], Some(&root), &[]);
    let r = t.finish(Duration::from_secs(20));
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("error: "), "{}", r.stderr);
}

#[test]
fn a_parent_at_the_cgroup_root_is_refused() {
    // One level below the root: the parent would be the root, i.e. the
    // whole host. Refused before anything is attached.
    let top = TestCgroup::named("toplevel");
    let mut t = Tracer::start(&[], &[], Some(&top.path), &[]);
    let r = t.finish(Duration::from_secs(20));
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("error: the tracer's parent cgroup is the cgroup v2 root"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("programs attached"), "{}", r.stderr);
    assert!(r.events.is_empty(), "{:?}", r.events);
}

#[test]
fn a_parent_not_named_like_a_pod_is_traced_with_one_warning() {
    let pod = TestCgroup::named("slice");
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let mut t = Tracer::start(&[], &[], Some(&tracer_cg), &[]);
    t.wait_ready();
    run_in(&app, &["/bin/echo", "slice-marker"]);
    let r = t.stop();
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
    assert!(of_kind(&r.events, "exec")
        .iter()
        .any(|e| e["argv"] == json!(["/bin/echo", "slice-marker"])));
    let name = pod.path.file_name().and_then(|n| n.to_str()).expect("name");
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("does not look like a pod cgroup"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(warnings[0].contains(name), "{}", warnings[0]);
    // The start-up log names the traced cgroup.
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("programs attached") && l.contains(name)),
        "{}",
        r.stderr
    );
}
