//! `linnix-sidecar trace --cgroup DIR`: an existing cgroup and its
//! descendants, isolation from neighbours, a path that is not a cgroup.
//! Real BPF; needs root.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{argv_has, of_kind, run_in, Proc, Tracer};
use linnix_test_support::{in_cgroup, TestCgroup};
use serde_json::Value;

#[test]
fn nested_cgroups_are_traced() {
    let cg = TestCgroup::named("nested");
    let inner = cg.child("inner");
    let deeper = inner.join("deeper");
    std::fs::create_dir(&deeper).expect("mkdir");
    let mut sleep = Command::new("sleep");
    sleep.arg("300");
    in_cgroup(&mut sleep, &deeper);
    let sleeper = Proc::spawn(&mut sleep);
    let mut t = Tracer::trace_cgroup(&cg.path, &[]);
    t.wait_ready();
    run_in(&deeper, &["/bin/sh", "-c", "/bin/echo deep-marker; exit 5"]);
    run_in(&cg.path, &["/bin/echo", "top-marker"]);
    let r = t.stop();
    assert!(r.status.success(), "{}: {}", r.status, r.stderr);

    // Already running: reported once as present.
    let present = of_kind(&r.events, "present");
    assert_eq!(present.len(), 1, "{present:?}");
    assert_eq!(present[0]["pid"], sleeper.pid());
    assert_eq!(present[0]["comm"], "sleep");
    // Under trace, a child cgroup of the traced one is a container, named
    // after its directory.
    assert_eq!(present[0]["container"], "inner");

    let deep = of_kind(&r.events, "exec")
        .into_iter()
        .find(|e| argv_has(e, "deep-marker"))
        .unwrap_or_else(|| panic!("nested exec missing: {:?}", r.events));
    assert_eq!(deep["filename"], "/bin/echo");
    assert!(of_kind(&r.events, "exec")
        .iter()
        .any(|e| argv_has(e, "top-marker")));
    assert!(of_kind(&r.events, "exit")
        .iter()
        .any(|e| e["exit_code"] == 5 && e["comm"] == "sh"));
}

#[test]
fn a_flooding_neighbour_is_invisible() {
    let quiet = TestCgroup::named("quiet");
    let noisy = TestCgroup::named("noisy");
    let dir = tempfile::tempdir().expect("tempdir");
    let flood_bin = dir.path().join("floodmarker");
    std::fs::copy("/bin/true", &flood_bin).expect("copy");
    std::fs::set_permissions(&flood_bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut flood_cmd = Command::new("/bin/sh");
    flood_cmd
        .arg("-c")
        .arg(format!("while :; do {}; done", flood_bin.display()));
    in_cgroup(&mut flood_cmd, &noisy.path);
    let flood = Proc::spawn(&mut flood_cmd);

    // A second tracer on the neighbour proves the flood is real.
    let mut witness = Tracer::trace_cgroup(&noisy.path, &[]);
    let mut t = Tracer::trace_cgroup(&quiet.path, &[]);
    witness.wait_ready();
    t.wait_ready();
    for i in 0..10 {
        run_in(&quiet.path, &["/bin/echo", "quiet-marker", &i.to_string()]);
        thread::sleep(Duration::from_millis(100));
    }
    let r = t.stop();
    let w = witness.stop();
    drop(flood);
    assert!(r.status.success(), "{}", r.stderr);

    let flood_pids: HashSet<&Value> = w.events.iter().map(|e| &e["pid"]).collect();
    let flood_execs = of_kind(&w.events, "exec")
        .iter()
        .filter(|e| e["comm"] == "floodmarker")
        .count();
    // The bound only has to tell a running flood from one that never got
    // going, while staying well above the quiet cgroup's 10 markers (5x).
    // The witness sees the flood for the ~1.5 s of markers plus start-up
    // and shutdown: 800-1500 execs measured on this 2-core machine with
    // the test suite running, but the window shrinks and the loop slows
    // when other builds share the cores, which is why it is not higher.
    assert!(
        flood_execs > 50,
        "the flood did not run: {flood_execs} execs"
    );

    let quiet_execs = of_kind(&r.events, "exec")
        .iter()
        .filter(|e| argv_has(e, "quiet-marker"))
        .count();
    assert_eq!(quiet_execs, 10, "{:?}", r.events);
    let leaked: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["comm"] == "floodmarker" || flood_pids.contains(&e["pid"]))
        .collect();
    assert!(leaked.is_empty(), "neighbour events leaked: {leaked:?}");
}

#[test]
fn a_path_outside_cgroup_v2_is_refused() {
    let mut t = Tracer::start(&["trace", "--cgroup", "/tmp"], &[], None, &[]);
    let r = t.finish(Duration::from_secs(20));
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("error: /tmp is not a directory of the cgroup v2 file system"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_tracer_stops_when_its_cgroup_is_removed() {
    let cg = TestCgroup::named("removed");
    let traced = cg.path.join("going");
    std::fs::create_dir(&traced).expect("mkdir");
    let mut t = Tracer::trace_cgroup(&traced, &[]);
    t.wait_ready();
    run_in(&traced, &["/bin/echo", "last-marker"]);
    std::fs::remove_dir(&traced).expect("rmdir the empty cgroup");
    // No signal: the tracer has to notice by itself.
    let r = t.finish(Duration::from_secs(10));
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("the traced cgroup was removed; stopping"),
        "{}",
        r.stderr
    );
    assert!(
        of_kind(&r.events, "exec")
            .iter()
            .any(|e| argv_has(e, "last-marker")),
        "{:?}",
        r.events
    );
}
