//! An ephemeral container added to a traced pod (`kubectl debug -it POD
//! --image=busybox`) is traced: the kubelet has the runtime start it in a
//! new container cgroup under the pod's cgroup, after the tracer attached,
//! and the kernel filter matches every descendant of the pod's cgroup.
//! Built here as the runtime lays a pod out (`<pod>/cri-containerd-<id>.scope`).
//! Real BPF; needs root.

mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{http_get, of_kind, pod_cgroup, run_in, Proc, Tracer};
use linnix_test_support::{in_cgroup, TestCgroup};
use serde_json::Value;

const APP_ID: &str = "a11ce0000000000000000000000000000000000000000000000000000000a001";
const DEBUG_ID: &str = "deb0900000000000000000000000000000000000000000000000000000000d01";
const TRACER_ID: &str = "7ac0000000000000000000000000000000000000000000000000000000000e01";

fn scope(id: &str) -> String {
    format!("cri-containerd-{id}.scope")
}

fn has_arg(e: &Value, word: &str) -> bool {
    e["argv"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == word))
}

/// The pod's app, already running when the tracer starts.
fn start_app(pod: &TestCgroup) -> Proc {
    let app = pod.child(&scope(APP_ID));
    let mut sleep = Command::new("sleep");
    sleep.arg("300");
    in_cgroup(&mut sleep, &app);
    Proc::spawn(&mut sleep)
}

/// Starts the "ephemeral container" once the tracer is ready, waits until
/// its exec is counted under its own container id, and returns the
/// last scrape.
fn debug_session(pod: &TestCgroup, t: &Tracer) -> String {
    let debug = pod.child(&scope(DEBUG_ID));
    run_in(
        &debug,
        &["/bin/sh", "-c", "/bin/echo ephemeral-marker; exit 7"],
    );
    let addr = t.metrics();
    let series = format!("linnix_events_total{{kind=\"exec\",container=\"{DEBUG_ID}\"}} ");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get(addr, "/metrics").expect("metrics");
        let counted = body
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        // The shell and the echo.
        if counted >= 2 || Instant::now() > deadline {
            return body;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn assert_debug_container_traced(events: &[Value], metrics: &str) {
    let exec = of_kind(events, "exec")
        .into_iter()
        .find(|e| has_arg(e, "ephemeral-marker"))
        .unwrap_or_else(|| panic!("the ephemeral container's exec is missing: {events:?}"));
    assert_eq!(exec["container"], DEBUG_ID, "{exec}");
    assert!(
        of_kind(events, "exit")
            .iter()
            .any(|e| e["exit_code"] == 7 && e["container"] == DEBUG_ID),
        "{events:?}"
    );
    assert!(
        metrics.contains(&format!(
            "linnix_exits_total{{container=\"{DEBUG_ID}\",code=\"7\",signal=\"\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(concat!(
            "linnix_build_info{version=\"",
            env!("CARGO_PKG_VERSION"),
            "\"} 1"
        )),
        "{metrics}"
    );
}

#[test]
fn a_container_added_to_the_traced_cgroup_later_is_traced() {
    let pod = pod_cgroup("ephemeral");
    let app = start_app(&pod);
    let mut t = Tracer::trace_cgroup(&pod.path, &[]);
    t.wait_ready();
    let metrics = debug_session(&pod, &t);
    let r = t.stop();
    assert!(r.status.success(), "{}", r.stderr);
    assert_debug_container_traced(&r.events, &metrics);
    let present = of_kind(&r.events, "present");
    assert_eq!(present.len(), 1, "{present:?}");
    assert_eq!(present[0]["pid"], app.pid());
    assert_eq!(present[0]["container"], APP_ID);
}

/// The same in the pod mode the injector sets up: the tracer in its own
/// container cgroup traces its parent, the pod.
#[test]
fn in_the_pod_mode_too() {
    let pod = pod_cgroup("ephemeral-pod");
    let _app = start_app(&pod);
    let tracer_cg = pod.child(&scope(TRACER_ID));
    let mut t = Tracer::start(
        &[],
        &[],
        Some(&tracer_cg),
        &[
            ("POD_NAME", "web"),
            ("POD_NAMESPACE", "team-a"),
            ("KUBECONFIG", "/nonexistent/kubeconfig"),
        ],
    );
    t.wait_ready();
    let metrics = debug_session(&pod, &t);
    let r = t.stop();
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
    assert_debug_container_traced(&r.events, &metrics);
    for e in &r.events {
        assert_eq!(e["pod"]["name"], "web", "{e}");
    }
}
