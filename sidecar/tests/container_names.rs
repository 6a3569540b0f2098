//! The default mode with a stand-in API server: container names from the
//! pod's status, refreshed for a container the first answer did not know,
//! ids kept when the read is forbidden, and the memory gauges labelled by
//! name. Real BPF; needs root.

mod common;

use std::process::Command;
use std::time::Duration;

use common::api::{
    http_kubeconfig, metric, pod_mode_env, pod_object, start_in_pod, status, PodEndpoint, APP_ID,
};
use common::{http_get, of_kind, pod_cgroup, run_in, wait_until, Proc};
use linnix_test_support::{in_cgroup, MemoryLimit};
use serde_json::json;

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
    let (_, body) = http_get(t.metrics(), "/metrics").expect("metrics");
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
