//! The default mode with a stand-in API server: an OOM kill becomes a
//! Kubernetes Warning event on the pod; when creating events is forbidden,
//! one warning and tracing goes on. Real BPF under a real memory limit;
//! needs root.

mod common;

use std::process::Command;
use std::time::Duration;

use common::api::{
    http_kubeconfig, metric, pod_mode_env, pod_object, start_in_pod, status, PodEndpoint, APP_ID,
};
use common::{of_kind, pod_cgroup, run_in, wait_until, Proc};
use linnix_test_support::{in_cgroup, MemoryLimit};
use serde_json::json;

const HOG: &str = "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n";

/// Run a memory hog in the app container under its 64 MiB limit; the
/// kernel kills it. Its pid.
fn oom_kill_in(app: &std::path::Path, limit: &MemoryLimit) -> u32 {
    let mut cmd = Command::new(common::PYTHON);
    cmd.args(["-c", HOG]);
    in_cgroup(&mut cmd, app);
    limit.apply(&mut cmd);
    let mut hog = Proc::spawn(&mut cmd);
    let status = hog.wait_timeout(Duration::from_secs(30));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    hog.pid()
}

const PUBLISHED: &str = "linnix_kube_events_total{result=\"published\"}";
const FAILED: &str = "linnix_kube_events_total{result=\"failed\"}";

#[test]
fn oom_kill_becomes_a_warning_event_on_the_pod() {
    let pod = pod_cgroup("oomevent");
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let limit = MemoryLimit::new(&app, 64 << 20);
    let endpoint = PodEndpoint::start(|req, _| {
        if req.is_event_post() {
            // The API server answers a create with the object it stored.
            let stored = serde_json::from_str(&req.body).unwrap_or(json!({}));
            (201, stored)
        } else {
            (200, pod_object(vec![status("app", APP_ID)]))
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = http_kubeconfig(dir.path(), endpoint.port);
    let t = start_in_pod(&tracer_cg, &pod_mode_env(&kubeconfig));
    assert_eq!(metric(&t, PUBLISHED), Some(0));

    let victim = oom_kill_in(&app, &limit);
    assert!(
        wait_until(Duration::from_secs(10), || metric(&t, PUBLISHED) == Some(1)),
        "no event published: {:?}",
        endpoint.requests()
    );
    let r = t.stop();
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);

    let ooms = of_kind(&r.events, "oom_kill");
    assert_eq!(ooms.len(), 1, "{ooms:?}");
    assert_eq!(ooms[0]["pid"], victim);
    assert_eq!(ooms[0]["container"], "app");

    let posted = endpoint.event_posts();
    assert_eq!(posted.len(), 1, "{:?}", endpoint.requests());
    let ev = &posted[0];
    assert_eq!(ev["apiVersion"], "events.k8s.io/v1", "{ev}");
    assert_eq!(ev["kind"], "Event", "{ev}");
    assert_eq!(ev["type"], "Warning", "{ev}");
    assert_eq!(ev["reason"], "OOMKilled", "{ev}");
    assert_eq!(ev["metadata"]["namespace"], "team-a", "{ev}");
    assert_eq!(
        ev["regarding"],
        json!({"apiVersion": "v1", "kind": "Pod", "name": "demo", "namespace": "team-a", "uid": "5b1f-uid"})
    );
    assert_eq!(ev["reportingController"], "linnix.io/tracer", "{ev}");
    assert_eq!(ev["reportingInstance"], "demo", "{ev}");
    let note = ev["note"].as_str().expect("note");
    let start = format!("process python3 (pid {victim}) in container app was OOM-killed: rss ");
    assert!(note.starts_with(&start), "{note}");
    let limit_bytes = (64u64 << 20).to_string();
    assert!(
        note.ends_with(&format!(" of {limit_bytes} bytes")),
        "{note}"
    );
    assert!(!r.stderr.contains("WARN"), "{}", r.stderr);
}

#[test]
fn forbidden_events_warn_once_and_tracing_goes_on() {
    let pod = pod_cgroup("oomforbidden");
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let limit = MemoryLimit::new(&app, 64 << 20);
    let endpoint = PodEndpoint::start(|req, _| {
        if req.is_event_post() {
            (
                403,
                json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "events.events.k8s.io is forbidden: User \"system:serviceaccount:team-a:default\" cannot create resource \"events\" in API group \"events.k8s.io\"",
                    "reason": "Forbidden", "code": 403
                }),
            )
        } else {
            (200, pod_object(vec![status("app", APP_ID)]))
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = http_kubeconfig(dir.path(), endpoint.port);
    let t = start_in_pod(&tracer_cg, &pod_mode_env(&kubeconfig));

    let first = oom_kill_in(&app, &limit);
    assert!(
        wait_until(Duration::from_secs(10), || metric(&t, FAILED) == Some(1)),
        "the refusal was not counted: {:?}",
        endpoint.requests()
    );
    // After the refusal nothing more is tried, and tracing goes on.
    let second = oom_kill_in(&app, &limit);
    run_in(&app, &["/bin/echo", "after-refusal"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(metric(&t, FAILED), Some(1));
    assert_eq!(metric(&t, PUBLISHED), Some(0));
    let r = t.stop();
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);

    let victims: Vec<_> = of_kind(&r.events, "oom_kill")
        .iter()
        .map(|e| e["pid"].clone())
        .collect();
    assert_eq!(victims, vec![json!(first), json!(second)]);
    assert!(of_kind(&r.events, "exec")
        .iter()
        .any(|e| e["argv"] == json!(["/bin/echo", "after-refusal"]) && e["container"] == "app"));

    let posts = endpoint
        .requests()
        .iter()
        .filter(|r| r.is_event_post())
        .count();
    assert_eq!(posts, 1, "{:?}", endpoint.requests());
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(warnings[0].contains("create events"), "{}", warnings[0]);
}
