//! The default mode: the tracer's parent cgroup is the pod. Built here as a
//! cgroup tree `<pod>/{tracer, libpod-<id>}` like podman's, with no API
//! server reachable. Real BPF; needs root.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::api::{
    http_kubeconfig, metric, pod_mode_env, pod_object, start_in_pod, status, PodEndpoint,
};
use common::{http_get, of_kind, pod_cgroup, run_in, wait_until, Proc, Tracer};
use linnix_test_support::{in_cgroup, v2_mount, MemoryLimit, TestCgroup};
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

#[test]
fn container_names_come_from_the_pod_status_and_are_refreshed() {
    let late_id = "1a7e".repeat(16);
    let pod = pod_cgroup("names");
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let late = pod.child(&format!("libpod-{late_id}"));
    let late_status = status("late", &late_id);
    let endpoint = PodEndpoint::start(move |_, n| {
        let mut statuses = vec![status("app", APP_ID)];
        if n > 1 {
            statuses.push(late_status.clone());
        }
        (200, pod_object(statuses))
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = http_kubeconfig(dir.path(), endpoint.port);
    let t = start_in_pod(&tracer_cg, &pod_mode_env(&kubeconfig));
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

    let requests = endpoint.requests();
    assert!(
        requests.len() >= 2 && requests.len() <= 3,
        "one read at start, rate-limited refreshes: {requests:?}"
    );
    for req in &requests {
        assert!(
            req.line
                .starts_with("GET /api/v1/namespaces/team-a/pods/demo "),
            "{req:?}"
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
    let pod = pod_cgroup("forbidden");
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let endpoint = PodEndpoint::start(|_, _| {
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
    let t = start_in_pod(&tracer_cg, &pod_mode_env(&kubeconfig));
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

const DB_ID: &str = "4c1d0000db0000000000000000000000000000000000000000000000000000bb";

/// A process of `container` (under `limit`) that writes `mib` MiB and keeps
/// it until killed.
fn hold_memory(container: &std::path::Path, limit: &MemoryLimit, mib: u32) -> Proc {
    let mut cmd = Command::new(common::PYTHON);
    cmd.args([
        "-c",
        &format!("import time\nx = b'\\x01' * ({mib} << 20)\ntime.sleep(120)\n"),
    ]);
    in_cgroup(&mut cmd, container);
    limit.apply(&mut cmd);
    Proc::spawn(&mut cmd)
}

#[test]
fn memory_gauges_name_the_containers() {
    let pod = pod_cgroup("memory");
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let db = pod.child(&format!("libpod-{DB_ID}"));
    let app_limit = MemoryLimit::new(&app, 64 << 20);
    let db_limit = MemoryLimit::new(&db, 48 << 20);
    let endpoint = PodEndpoint::start(|_, _| {
        (
            200,
            pod_object(vec![status("app", APP_ID), status("db", DB_ID)]),
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = http_kubeconfig(dir.path(), endpoint.port);
    let app_holder = hold_memory(&app, &app_limit, 16);
    let db_holder = hold_memory(&db, &db_limit, 8);
    let t = start_in_pod(&tracer_cg, &pod_mode_env(&kubeconfig));

    let usage = |c: &str| {
        metric(
            &t,
            &format!("linnix_container_memory_usage_bytes{{container=\"{c}\"}}"),
        )
    };
    assert!(
        wait_until(Duration::from_secs(10), || usage("app")
            .is_some_and(|u| u > 16 << 20)
            && usage("db").is_some_and(|u| u > 8 << 20)),
        "no named usage gauges: app {:?}, db {:?}",
        usage("app"),
        usage("db")
    );
    for (name, cgroup) in [("app", &app), ("db", &db)] {
        let gauge = usage(name).expect("gauge");
        let kernel = linnix_test_support::charged_bytes(cgroup);
        assert!(
            gauge.abs_diff(kernel) * 20 <= kernel,
            "{name}: gauge {gauge}, cgroupfs {kernel}"
        );
    }
    let limit = |c: &str| {
        metric(
            &t,
            &format!("linnix_container_memory_limit_bytes{{container=\"{c}\"}}"),
        )
    };
    assert_eq!(limit("app"), Some(64 << 20));
    assert_eq!(limit("db"), Some(48 << 20));
    assert_eq!(
        metric(
            &t,
            "linnix_container_memory_events_total{container=\"app\",event=\"oom_kill\"}"
        ),
        Some(0)
    );
    let (_, body) = http_get(t.metrics.expect("addr"), "/metrics").expect("metrics");
    // Names only (no ids), and nothing about the tracer's own container.
    let memory_lines: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("linnix_container_memory"))
        .collect();
    assert!(
        memory_lines
            .iter()
            .all(|l| l.contains("container=\"app\"") || l.contains("container=\"db\"")),
        "{memory_lines:#?}"
    );

    // A container whose processes are gone loses its series.
    drop(db_holder);
    assert!(
        wait_until(Duration::from_secs(8), || usage("db").is_none()),
        "db still reported"
    );
    assert!(usage("app").is_some());
    let r = t.stop();
    assert!(r.status.success(), "{}", r.stderr);
    drop(app_holder);
}
