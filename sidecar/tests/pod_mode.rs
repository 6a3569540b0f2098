//! The default mode: the tracer's parent cgroup is the pod. Built here as a
//! cgroup tree `<pod>/{tracer, libpod-<id>}` like podman's, with no API
//! server reachable. Real BPF; needs root.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{in_cgroup, of_kind, run_in, Proc, TestCgroup, Tracer};
use serde_json::json;

const APP_ID: &str = "4c1d0000a11ce0000000000000000000000000000000000000000000000000aa";

/// A kubeconfig pointing at a listener that accepts connections and never
/// answers: the container name lookup must give up on its own, warn once and
/// keep ids.
fn silent_kubeconfig(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\n\
         clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n\
         users:\n- name: u\n  user:\n    token: t\n\
         contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: team-a\n\
         current-context: x\n"
        ),
    )
    .expect("write kubeconfig");
    path
}

#[test]
fn traces_its_pod_and_reports_present_processes() {
    let pod = TestCgroup::new("pod");
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let outsider = TestCgroup::new("outsider");

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
    let root = common::v2_mount();
    let mut t = Tracer::start(&[], &[], Some(&root), &[]);
    let r = t.finish(Duration::from_secs(20));
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("error: "), "{}", r.stderr);
}

/// Answers every request over plain HTTP with what `respond(n)` gives for
/// the n-th request (from 1): status code and JSON body, as the API server
/// would for a `get` of one pod.
struct PodEndpoint {
    port: u16,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn status(name: &str, id: &str) -> serde_json::Value {
    json!({
        "name": name, "containerID": format!("containerd://{id}"),
        "image": "x", "imageID": "", "ready": true, "restartCount": 0
    })
}

fn pod_object(statuses: Vec<serde_json::Value>) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "demo", "namespace": "team-a"},
        "status": {"containerStatuses": statuses}
    })
}

fn http_kubeconfig(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             users:\n- name: u\n  user:\n    token: t\n\
             contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n\
             current-context: x\n"
        ),
    )
    .expect("kubeconfig");
    path
}

impl PodEndpoint {
    fn start(respond: impl Fn(usize) -> (u16, serde_json::Value) + Send + 'static) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let n = {
                    let mut seen = seen.lock().expect("lock");
                    seen.push(request_line.trim().to_owned());
                    seen.len()
                };
                let (code, body) = respond(n);
                let body = body.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        PodEndpoint { port, requests }
    }
}

#[test]
fn container_names_come_from_the_pod_status_and_are_refreshed() {
    let late_id = "1a7e".repeat(16);
    let pod = TestCgroup::new("names");
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let late = pod.child(&format!("libpod-{late_id}"));
    let late_status = status("late", &late_id);
    let endpoint = PodEndpoint::start(move |n| {
        let mut statuses = vec![status("app", APP_ID)];
        if n > 1 {
            statuses.push(late_status.clone());
        }
        (200, pod_object(statuses))
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = http_kubeconfig(dir.path(), endpoint.port);
    let mut t = Tracer::start(
        &[],
        &[],
        Some(&tracer_cg),
        &[
            ("POD_NAME", "demo"),
            ("POD_NAMESPACE", "team-a"),
            ("KUBECONFIG", kubeconfig.to_str().expect("utf8")),
        ],
    );
    t.wait_ready();
    run_in(&app, &["/bin/echo", "app-marker"]);
    // A container the first answer did not know: its id now, a refresh
    // in the background, its name once the refresh is allowed.
    run_in(&late, &["/bin/echo", "late-1"]);
    std::thread::sleep(Duration::from_secs(7));
    run_in(&late, &["/bin/echo", "late-2"]);
    let r = t.stop();
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);

    let container_of = |marker: &str| {
        of_kind(&r.events, "exec")
            .into_iter()
            .find(|e| e["argv"][1] == marker)
            .map(|e| e["container"].clone())
            .unwrap_or_else(|| panic!("{marker} missing: {:?}", r.events))
    };
    assert_eq!(container_of("app-marker"), "app");
    assert_eq!(container_of("late-1"), late_id.as_str());
    assert_eq!(container_of("late-2"), "late");

    let requests = endpoint.requests.lock().expect("lock").clone();
    assert!(
        requests.len() >= 2 && requests.len() <= 3,
        "one read at start, rate-limited refreshes: {requests:?}"
    );
    for req in &requests {
        assert!(
            req.starts_with("GET /api/v1/namespaces/team-a/pods/demo "),
            "{req}"
        );
    }
    assert!(
        !r.stderr.contains("WARN"),
        "names were available: {}",
        r.stderr
    );
}

#[test]
fn forbidden_pod_read_warns_once_and_keeps_ids() {
    let pod = TestCgroup::new("forbidden");
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let endpoint = PodEndpoint::start(|_| {
        (
            403,
            json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "pods \"demo\" is forbidden: User \"system:serviceaccount:team-a:default\" cannot get resource \"pods\"",
                "reason": "Forbidden", "code": 403
            }),
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = http_kubeconfig(dir.path(), endpoint.port);
    let mut t = Tracer::start(
        &[],
        &[],
        Some(&tracer_cg),
        &[
            ("POD_NAME", "demo"),
            ("POD_NAMESPACE", "team-a"),
            ("KUBECONFIG", kubeconfig.to_str().expect("utf8")),
        ],
    );
    t.wait_ready();
    for i in 0..3 {
        run_in(&app, &["/bin/echo", "forbidden-marker", &i.to_string()]);
    }
    let r = t.stop();
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
    let execs: Vec<_> = of_kind(&r.events, "exec")
        .into_iter()
        .filter(|e| e["argv"][1] == "forbidden-marker")
        .collect();
    assert_eq!(execs.len(), 3);
    assert!(execs.iter().all(|e| e["container"] == APP_ID), "{execs:?}");
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(warnings[0].contains("grant get on pods"), "{}", warnings[0]);
}
