//! `linnix-sidecar trace -- CMD`: a fresh cgroup, the whole process tree,
//! and the command's own exit status. Real BPF; needs root.

mod common;

use common::{of_kind, trace_command, PYTHON};
use serde_json::{json, Value};

/// The pid of the traced command: its first exec.
fn command_pid(events: &[Value]) -> u64 {
    of_kind(events, "exec")
        .first()
        .and_then(|e| e["pid"].as_u64())
        .expect("the command's exec was reported")
}

fn exits_of(events: &[Value], pid: u64) -> Vec<&Value> {
    of_kind(events, "exit")
        .into_iter()
        .filter(|e| e["pid"] == pid)
        .collect()
}

#[test]
fn exec_argv_and_exit_code_of_the_command_tree() {
    let r = trace_command(&[], &["sh", "-c", "/bin/true first second; exit 3"]);
    assert_eq!(r.status.code(), Some(3), "stderr: {}", r.stderr);

    let execs = of_kind(&r.events, "exec");
    assert_eq!(
        execs[0]["argv"],
        json!(["sh", "-c", "/bin/true first second; exit 3"])
    );
    let child = execs
        .iter()
        .find(|e| e["argv"] == json!(["/bin/true", "first", "second"]))
        .unwrap_or_else(|| panic!("exec of /bin/true missing: {execs:?}"));
    assert_eq!(child["filename"], "/bin/true");
    assert_eq!(child["argv_truncated"], false);
    assert_eq!(child["comm"], "true");

    let sh = command_pid(&r.events);
    // The child's fork names the shell as parent.
    assert!(of_kind(&r.events, "fork")
        .iter()
        .any(|f| f["pid"] == child["pid"] && f["ppid"] == sh));
    let exits = exits_of(&r.events, sh);
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0]["exit_code"], 3);
    assert!(exits[0]["signal"].is_null());
    assert_eq!(exits[0]["core_dumped"], false);
    assert!(exits[0]["lifetime_ms"].is_u64());
    let true_exit = exits_of(&r.events, child["pid"].as_u64().expect("pid"));
    assert_eq!(true_exit.len(), 1);
    assert_eq!(true_exit[0]["exit_code"], 0);
    for e in &r.events {
        assert!(e["pod"].is_null() && e["container"].is_null(), "{e}");
        assert_eq!(e["pid"], e["host_pid"], "same PID namespace: {e}");
    }
    // The tracer moving its child into the scratch cgroup is not reported,
    // and the command is the first there, not someone who entered.
    assert!(
        of_kind(&r.events, "cgroup_join").is_empty(),
        "{:?}",
        r.events
    );
    assert!(
        r.events.iter().all(|e| e.get("entered").is_none()),
        "{:?}",
        r.events
    );
    // The scratch cgroup is named after the tracer, the command's parent.
    let tracer = execs[0]["ppid"].as_u64().expect("ppid");
    let scratch = linnix_test_support::v2_mount().join(format!("linnix-trace-{tracer}"));
    assert!(!scratch.exists(), "{} left behind", scratch.display());
    // Events come out in kernel order.
    let ts: Vec<&str> = r.events.iter().filter_map(|e| e["ts"].as_str()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
}

#[test]
fn killed_command_reports_signal_nine_and_exits_137() {
    let r = trace_command(&[], &["sh", "-c", "kill -9 $$"]);
    assert_eq!(r.status.code(), Some(137), "stderr: {}", r.stderr);
    let exits = exits_of(&r.events, command_pid(&r.events));
    assert_eq!(exits.len(), 1, "{:?}", r.events);
    assert_eq!(exits[0]["signal"], 9);
    assert!(exits[0]["exit_code"].is_null());
}

#[test]
fn non_leader_thread_exit_is_reported_once_for_the_process() {
    let script = "import os, threading, time\n\
                  threading.Thread(target=lambda: os._exit(7)).start()\n\
                  time.sleep(30)\n";
    let r = trace_command(&["--threads"], &[PYTHON, "-c", script]);
    assert_eq!(r.status.code(), Some(7), "stderr: {}", r.stderr);
    let py = command_pid(&r.events);
    let exits = exits_of(&r.events, py);
    assert_eq!(
        exits.len(),
        1,
        "one exit per process, not per thread: {exits:?}"
    );
    assert_eq!(exits[0]["exit_code"], 7);
    assert!(exits[0]["signal"].is_null());
    // --threads: the thread's creation is a fork with "thread": true in the
    // same process.
    let threads: Vec<_> = of_kind(&r.events, "fork")
        .into_iter()
        .filter(|f| f["thread"] == true)
        .collect();
    assert!(threads.iter().any(|f| f["pid"] == py), "{threads:?}");
    // Each with the thread's own id, in the tracer's namespace and the host's.
    for t in &threads {
        assert!(t["tid"].is_u64() && t["tid"] != t["pid"], "{t}");
        assert!(
            t["host_tid"].is_u64() && t["host_tid"] != t["host_pid"],
            "{t}"
        );
        assert_eq!(
            t["exec_id"], threads[0]["exec_id"],
            "the process's identity"
        );
    }
}

#[test]
fn threads_are_not_reported_without_the_flag() {
    let script =
        "import threading\nt = threading.Thread(target=lambda: None)\nt.start()\nt.join()\n";
    let r = trace_command(&[], &[PYTHON, "-c", script]);
    assert_eq!(r.status.code(), Some(0), "stderr: {}", r.stderr);
    assert!(of_kind(&r.events, "fork")
        .iter()
        .all(|f| f.get("thread").is_none()));
    assert_eq!(exits_of(&r.events, command_pid(&r.events)).len(), 1);
}

#[test]
fn oom_victim_under_a_memory_limit() {
    let hog = "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n";
    let r = trace_command(&["--memory-limit", "64M"], &[PYTHON, "-c", hog]);
    assert_eq!(r.status.code(), Some(137), "stderr: {}", r.stderr);
    let py = command_pid(&r.events);
    let ooms = of_kind(&r.events, "oom_kill");
    assert_eq!(ooms.len(), 1, "{ooms:?}");
    let oom = ooms[0];
    assert_eq!(oom["pid"], py);
    assert_eq!(oom["comm"], "python3");
    let parts: u64 = ["rss_anon_kb", "rss_file_kb", "rss_shmem_kb"]
        .iter()
        .map(|k| oom[k].as_u64().expect(k))
        .sum();
    assert_eq!(oom["rss_kb"].as_u64(), Some(parts));
    // The hog held most of the 64 MB limit when it was chosen.
    assert!(oom["rss_anon_kb"].as_u64().expect("anon") > 40_000, "{oom}");
    let exits = exits_of(&r.events, py);
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0]["signal"], 9);
}

#[test]
fn leftover_processes_are_killed_and_reported() {
    // The command exits at once but leaves a sleeper behind in its cgroup.
    let r = trace_command(&[], &["sh", "-c", "sleep 300 & exit 0"]);
    assert_eq!(r.status.code(), Some(0), "stderr: {}", r.stderr);
    // Killed with the cgroup, maybe even before it could exec sleep.
    let sh = command_pid(&r.events);
    let sleeper = of_kind(&r.events, "fork")
        .into_iter()
        .find(|e| e["ppid"] == sh)
        .and_then(|e| e["pid"].as_u64())
        .unwrap_or_else(|| panic!("fork of the sleeper missing: {:?}", r.events));
    let exits = exits_of(&r.events, sleeper);
    assert_eq!(exits.len(), 1, "{:?}", r.events);
    assert_eq!(exits[0]["signal"], 9);
    // Gone, or a zombie waiting for whichever process adopted it.
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{sleeper}/stat")) {
        let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
        assert_eq!(state, Some("Z"), "sleeper still alive: {stat}");
    }
}

#[test]
fn missing_command_exits_127_with_a_clear_error() {
    let r = trace_command(&[], &["/nonexistent/linnix-test-command"]);
    assert_eq!(r.status.code(), Some(127));
    assert!(
        r.stderr
            .contains("error: cannot run /nonexistent/linnix-test-command"),
        "{}",
        r.stderr
    );
    assert!(r.events.is_empty());
}

#[test]
fn bad_memory_limit_is_a_usage_error() {
    let r = trace_command(&["--memory-limit", "lots"], &["true"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(r.stderr.contains("lots"), "{}", r.stderr);
}

#[test]
fn sigterm_is_forwarded_to_the_command() {
    let mut t = common::Tracer::start(&["trace", "--", "sleep", "300"], &[], None, &[]);
    t.wait_ready();
    t.proc.signal(libc::SIGTERM);
    let r = t.finish(std::time::Duration::from_secs(20));
    assert_eq!(r.status.code(), Some(128 + libc::SIGTERM), "{}", r.stderr);
    let sleep = command_pid(&r.events);
    let exits = exits_of(&r.events, sleep);
    assert_eq!(exits.len(), 1, "{:?}", r.events);
    assert_eq!(exits[0]["signal"], libc::SIGTERM);
}
