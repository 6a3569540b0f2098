//! The tracer in its own PID namespace, as in a container: its own pid and
//! its children's pids are numbers of that namespace, which the kernel's
//! events do not share. Real BPF; needs root.

mod common;

use common::{of_kind, pod_cgroup, run_in, trace_command_under, Tracer};
use serde_json::json;

/// A PID namespace of its own with a /proc to match, as a container has;
/// `--kill-child` takes the tracer down if a test fails before stopping it.
const OWN_PID_NS: &[&str] = &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];

const APP_ID: &str = "9e5d0000a11ce0000000000000000000000000000000000000000000000000bb";

#[test]
fn pod_processes_numbered_like_the_tracer_are_reported() {
    let pod = pod_cgroup("pidns");
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let mut t = Tracer::start(&[], OWN_PID_NS, Some(&tracer_cg), &[]);
    t.wait_ready();

    // The tracer is pid 1 of its namespace, and so is this shell of its
    // own nested namespace: the same number, another process.
    let script = "/bin/echo nested-marker; exit 4";
    run_in(
        &app,
        &["unshare", "--pid", "--fork", "/bin/sh", "-c", script],
    );
    // Another process of the tracer's own container is not the pod's app.
    run_in(&tracer_cg, &["/bin/echo", "own-container-marker"]);
    let r = t.stop_forked();
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);

    let sh_exec = of_kind(&r.events, "exec")
        .into_iter()
        .find(|e| e["argv"] == json!(["/bin/sh", "-c", script]))
        .unwrap_or_else(|| panic!("exec of the nested shell missing: {:?}", r.events));
    assert_eq!(sh_exec["pid"], 1, "{sh_exec}");
    assert_eq!(sh_exec["container"], APP_ID, "{sh_exec}");
    assert!(
        of_kind(&r.events, "exit")
            .iter()
            .any(|e| e["pid"] == 1 && e["exit_code"] == 4 && e["container"] == APP_ID),
        "exit of the nested shell missing: {:?}",
        r.events
    );
    assert!(
        of_kind(&r.events, "exec")
            .iter()
            .any(|e| e["argv"] == json!(["/bin/echo", "nested-marker"])),
        "{:?}",
        r.events
    );
    assert!(
        !r.events.iter().any(|e| e["argv"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "own-container-marker"))),
        "the tracer's own container was reported: {:?}",
        r.events
    );
}

#[test]
fn the_commands_exit_is_recognised_across_pid_namespaces() {
    let r = trace_command_under(OWN_PID_NS, &[], &["/bin/sh", "-c", "exit 3"]);
    assert_eq!(r.status.code(), Some(3), "{}", r.stderr);
    assert!(
        of_kind(&r.events, "exit")
            .iter()
            .any(|e| e["exit_code"] == 3 && e["comm"] == "sh"),
        "{:?}",
        r.events
    );
    // The exit event ends the wait for it; without a match the tracer
    // waits out its timeout and says so.
    assert!(!r.stderr.contains("did not arrive in time"), "{}", r.stderr);
}
