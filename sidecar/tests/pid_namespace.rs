//! The tracer in a PID namespace of its own, as in a pod: every pid it
//! reports is its namespace's number, for kernel events and for the
//! processes it finds running alike, also for processes in namespaces
//! nested below it (`unshare -p -f` in a pod). Real BPF; needs root.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{of_kind, pod_cgroup, run_in, trace_command_under, Proc, Tracer};
use serde_json::{json, Value};

/// A PID namespace of its own with a /proc to match, as a container has;
/// `--kill-child` takes the tracer down if a test fails before stopping it.
const OWN_PID_NS: &[&str] = &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];

const APP_ID: &str = "9e5d0000a11ce0000000000000000000000000000000000000000000000000bb";

/// A PID namespace kept alive by a sleeping init, with its own /proc in its
/// own mount namespace: the pod's, which the tracer and the app share.
struct PodNamespace {
    _holder: Proc,
    /// The init's host pid: `nsenter -t` it to run inside.
    init: u32,
}

impl PodNamespace {
    fn new() -> Self {
        let mut cmd = Command::new("unshare");
        cmd.args(OWN_PID_NS).args(["sleep", "300"]);
        let holder = Proc::spawn(&mut cmd);
        let init = wait_for(|| child_of(holder.pid()));
        PodNamespace {
            _holder: holder,
            init,
        }
    }

    /// nsenter into the namespace (and its /proc, with `mount`).
    fn enter(&self, mount: bool) -> Vec<String> {
        let mut argv = vec![
            "nsenter".to_owned(),
            "-t".to_owned(),
            self.init.to_string(),
            "-p".to_owned(),
        ];
        if mount {
            argv.push("-m".to_owned());
        }
        argv
    }

    /// Run `script` with sh inside the namespace, in `cgroup`: nsenter's
    /// child joins it, as a runtime's exec would.
    fn spawn_in(&self, cgroup: &std::path::Path, script: &str) -> Proc {
        let argv = self.enter(false);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).args([
            "/bin/sh",
            "-c",
            &format!("echo $$ > '{}'/cgroup.procs && {script}", cgroup.display()),
        ]);
        Proc::spawn(&mut cmd)
    }
}

fn child_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn of_host_pid<'a>(events: &'a [Value], kind: &str, host_pid: u32) -> Vec<&'a Value> {
    of_kind(events, kind)
        .into_iter()
        .filter(|e| e["host_pid"] == host_pid)
        .collect()
}

#[test]
fn pids_are_the_pods_for_present_and_kernel_events_alike() {
    let pod = pod_cgroup("pidns");
    let tracer_cg = pod.child("tracer");
    let app = pod.child(&format!("libpod-{APP_ID}"));
    let ns = PodNamespace::new();

    // Running before the tracer: unshare, and below it a sleep in a
    // nested namespace whose innermost number is 1.
    let sleeper = ns.spawn_in(&app, "exec unshare --pid --fork sleep 300");
    let unshare = wait_for(|| child_of(sleeper.pid()));
    let nested_sleep = wait_for(|| child_of(unshare));

    let enter = ns.enter(true);
    let enter: Vec<&str> = enter.iter().map(String::as_str).collect();
    let mut t = Tracer::start(&[], &enter, Some(&tracer_cg), &[]);
    t.wait_ready();
    // Two nested namespaces side by side: both shells are pid 1 inside.
    let script = "exec unshare --pid --fork /bin/sh -c '/bin/echo nested-marker; exit 4'";
    let mut first = ns.spawn_in(&app, script);
    let mut second = ns.spawn_in(&app, script);
    for p in [&mut first, &mut second] {
        p.wait_timeout(Duration::from_secs(20));
    }
    // Another process of the tracer's own container is not the pod's app.
    run_in(&tracer_cg, &["/bin/echo", "own-container-marker"]);
    unsafe { libc::kill(nested_sleep as i32, libc::SIGKILL) };
    wait_for(|| exited(nested_sleep));
    sleeper.signal(libc::SIGKILL);
    let r = t.stop_forked();
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);

    // The process found running and its exit: one pid, one identity.
    let present = of_host_pid(&r.events, "present", nested_sleep);
    let exit = of_host_pid(&r.events, "exit", nested_sleep);
    assert_eq!((present.len(), exit.len()), (1, 1), "{:?}", r.events);
    let (present, exit) = (present[0], exit[0]);
    for key in [
        "pid",
        "inner_pid",
        "ppid",
        "exec_id",
        "parent_exec_id",
        "container",
    ] {
        assert_eq!(present[key], exit[key], "{key}: {present} vs {exit}");
    }
    assert_eq!(present["inner_pid"], 1, "{present}");
    let pid = present["pid"]
        .as_u64()
        .expect("a pid in the pod's namespace");
    assert!(pid > 1, "the pod's number, not the nested one: {present}");
    // Its parent, unshare, is in the pod's namespace too, and named.
    let unshare_present = of_host_pid(&r.events, "present", unshare);
    assert_eq!(unshare_present.len(), 1, "{:?}", r.events);
    assert_eq!(present["ppid"], unshare_present[0]["pid"]);
    assert_eq!(present["parent_exec_id"], unshare_present[0]["exec_id"]);
    assert!(
        unshare_present[0].get("inner_pid").is_none(),
        "only where it differs"
    );

    // The two nested shells: inner pid 1 both, pod pids apart.
    let shells: Vec<&Value> = of_kind(&r.events, "exit")
        .into_iter()
        .filter(|e| e["exit_code"] == 4 && e["comm"] == "sh")
        .collect();
    assert_eq!(shells.len(), 2, "{:?}", r.events);
    assert!(shells
        .iter()
        .all(|e| e["inner_pid"] == 1 && e["container"] == APP_ID));
    assert_ne!(shells[0]["pid"], shells[1]["pid"], "{shells:?}");
    assert!(shells.iter().all(|e| e["pid"].as_u64() > Some(1)));
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

fn exited(pid: u32) -> Option<()> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    match stat {
        None => Some(()),
        Some(s)
            if s.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')) =>
        {
            Some(())
        }
        Some(_) => None,
    }
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
    // The command is the tracer's child in the tracer's namespace: numbered
    // there (after the tracer, 1, and whatever threads it started first),
    // not on the host.
    let sh = of_kind(&r.events, "exec")[0];
    assert!(sh["pid"].as_u64().is_some_and(|p| p > 1), "{sh}");
    assert_ne!(sh["pid"], sh["host_pid"], "{sh}");
    assert_eq!(sh["ppid"], 1, "{sh}");
}
