//! Who entered the pod, in pod mode with permission to read the pod: a
//! `kubectl exec` look-alike and an exec probe look-alike, each a process
//! that joins the app's cgroup from outside while the app runs, as a
//! runtime's exec does. Real BPF; needs root.

mod common;

use std::process::Command;
use std::time::Duration;

use common::api::{http_kubeconfig, metric, pod_mode_env, pod_with_spec, status, PodEndpoint};
use common::{of_kind, pod_cgroup, run_in, wait_until, Finished, Proc};
use linnix_test_support::in_cgroup;
use serde_json::{json, Value};

const APP_ID: &str = "e1e10000a11ce0000000000000000000000000000000000000000000000000cc";

/// The probe of app: what the kubelet would run through the runtime.
const PROBE: [&str; 2] = ["/bin/cat", "/proc/self/stat"];

fn argv_is(e: &Value, argv: &[&str]) -> bool {
    e["argv"] == json!(argv)
}

/// A pod whose app runs a sleeper, gets a probe run and a visitor, and is
/// traced with `extra` options. Returns the tracer's output and metrics.
fn run_pod(extra: &[&str]) -> (Finished, String) {
    let pod = pod_cgroup(if extra.is_empty() {
        "probes"
    } else {
        "noprobes"
    });
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let spec = json!({"containers": [{
        "name": "app",
        "image": "x",
        "livenessProbe": {"exec": {"command": PROBE}},
        "readinessProbe": {"httpGet": {"port": 80}},
    }]});
    let endpoint = PodEndpoint::start(move |_, _| {
        (
            200,
            pod_with_spec(vec![status("app", APP_ID)], spec.clone()),
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = http_kubeconfig(dir.path(), endpoint.port);
    let env = pod_mode_env(&kubeconfig);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut t = common::Tracer::start(extra, &[], Some(&tracer_cg), &env);
    t.wait_ready();

    // The app's main process: the first in its container.
    let mut main = Command::new("/bin/sleep");
    main.arg("30");
    in_cgroup(&mut main, &app);
    let _main = Proc::spawn(&mut main);
    std::thread::sleep(Duration::from_millis(200));
    // An exec probe, then someone's `kubectl exec` running a shell that
    // happens to type the probe's command too.
    run_in(&app, &PROBE);
    run_in(
        &app,
        &[
            "/bin/sh",
            "-c",
            "/bin/cat /proc/self/stat > /dev/null; exit 0",
        ],
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            metric(
                &t,
                "linnix_exec_probes_total{container=\"app\",probe=\"liveness\"}",
            ) == Some(1)
        }),
        "the probe was not counted"
    );
    let (_, metrics) = common::http_get(t.metrics(), "/metrics").expect("metrics");
    let r = t.stop();
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
    (r, metrics)
}

#[test]
fn entered_processes_and_exec_probes_are_marked() {
    let (r, metrics) = run_pod(&[]);

    let start = of_kind(&r.events, "container_start");
    assert_eq!(start.len(), 1, "{:?}", r.events);
    assert_eq!(start[0]["container"], "app");
    assert_eq!(start[0]["argv"], json!(["/bin/sleep", "30"]));
    let main_id = &start[0]["exec_id"];

    // The main process came first: not entered.
    for e in r.events.iter().filter(|e| &e["exec_id"] == main_id) {
        assert!(e.get("entered").is_none(), "{e}");
    }
    // The probe: entered, named after its container and kind, on its join
    // (held back until its exec showed what it is), exec and exit alike.
    let probe_exec = of_kind(&r.events, "exec")
        .into_iter()
        .find(|e| argv_is(e, &PROBE) && e["parent_exec_id"].is_null())
        .unwrap_or_else(|| panic!("no probe exec: {:?}", r.events));
    assert_eq!(probe_exec["entered"], true, "{probe_exec}");
    assert_eq!(probe_exec["exec_probe"], "app/liveness", "{probe_exec}");
    assert!(
        probe_exec["parent_exec_id"].is_null(),
        "its parent is outside the pod: {probe_exec}"
    );
    let probe_lines: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["exec_id"] == probe_exec["exec_id"])
        .collect();
    let kinds: Vec<&str> = probe_lines
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(kinds, ["cgroup_join", "exec", "exit"], "{probe_lines:?}");
    assert!(probe_lines
        .iter()
        .all(|e| e["exec_probe"] == "app/liveness" && e["entered"] == true));

    // The visitor: entered, its child too, and none of it a probe, though
    // the child ran the probe's command.
    let visitor = of_kind(&r.events, "exec")
        .into_iter()
        .find(|e| e["argv"][0] == "/bin/sh")
        .unwrap_or_else(|| panic!("no visitor: {:?}", r.events));
    assert_eq!(visitor["entered"], true);
    let child_cat = of_kind(&r.events, "exec")
        .into_iter()
        .find(|e| e["parent_exec_id"] == visitor["exec_id"])
        .unwrap_or_else(|| panic!("no child of the visitor: {:?}", r.events));
    assert_eq!(child_cat["entered"], true, "{child_cat}");
    assert!(child_cat.get("exec_probe").is_none(), "{child_cat}");

    for want in [
        "linnix_exec_probes_total{container=\"app\",probe=\"liveness\"} 1",
        "linnix_entered_total{container=\"app\"} 2",
        "linnix_events_total{kind=\"container_start\",container=\"app\"} 1",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }
}

#[test]
fn ignore_exec_probes_leaves_them_out_but_counts_them() {
    let (r, metrics) = run_pod(&["--ignore-exec-probes"]);
    // The probe is the exec of its command by a process from outside; the
    // visitor's child runs the same command inside.
    assert!(
        !r.events.iter().any(|e| e.get("exec_probe").is_some()
            || (argv_is(e, &PROBE) && e["parent_exec_id"].is_null())),
        "{:?}",
        r.events
    );
    // Not even the join the probe came in with; the main process's and the
    // visitor's are there.
    let joins = of_kind(&r.events, "cgroup_join");
    assert_eq!(joins.len(), 2, "{joins:?}");
    // Everything else is there: the visitor and its child's cat.
    assert!(of_kind(&r.events, "exec")
        .iter()
        .any(|e| e["argv"][0] == "/bin/sh" && e["entered"] == true));
    assert!(of_kind(&r.events, "exec")
        .iter()
        .any(|e| e["filename"] == "/bin/cat" && e["entered"] == true));
    for want in [
        "linnix_exec_probes_total{container=\"app\",probe=\"liveness\"} 1",
        // The probe's exec and the visitor's two.
        "linnix_events_total{kind=\"exec\",container=\"app\"} 4",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }
}
