//! A tracer killed with SIGKILL leaves its scratch cgroup and its command
//! behind; `trace --cleanup` and the next `trace -- CMD` remove them, and
//! nothing else. Real cgroups; needs root.
//!
//! One test in its own binary: the sweeps of other `trace -- CMD` tests
//! running at the same time would blur what each step removed.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{trace_command, Proc, BIN};
use linnix_test_support::v2_mount;

/// `trace -- sleep 1000`, once its command runs in its scratch cgroup:
/// the tracer, the cgroup, and the command's pid.
fn tracer_with_a_sleeper() -> (Proc, PathBuf, i32) {
    let mut cmd = Command::new(BIN);
    cmd.args(["trace", "--", "sleep", "1000"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let tracer = Proc::spawn(&mut cmd);
    let dir = v2_mount().join(format!("linnix-trace-{}", tracer.pid()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(&pid) = pids(&dir).first() {
            return (tracer, dir, pid);
        }
        assert!(
            Instant::now() < deadline,
            "{} never ran a command",
            dir.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn pids(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

fn kill9(tracer: &mut Proc) {
    tracer.signal(libc::SIGKILL);
    tracer.wait_timeout(Duration::from_secs(10));
}

/// Alive, and not a zombie waiting for its (dead) parent's reaper.
fn running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn scratch_cgroups_of_killed_tracers_are_removed_and_only_those() {
    // A live tracer, and a directory with a scratch name that no tracer
    // made (no owner mark): neither may be touched. (Started first: each
    // start sweeps.)
    let (mut live, live_dir, live_sleeper) = tracer_with_a_sleeper();
    let foreign = v2_mount().join(format!("linnix-trace-{}-77", std::process::id()));
    fs::create_dir(&foreign).expect("mkdir");

    // A tracer killed with SIGKILL: its cgroup and its command stay.
    let (mut dead, dead_dir, dead_sleeper) = tracer_with_a_sleeper();
    kill9(&mut dead);
    thread::sleep(Duration::from_millis(200));
    assert!(
        dead_dir.exists() && running(dead_sleeper),
        "nothing was left behind"
    );

    let out = Command::new(BIN)
        .args(["trace", "--cleanup"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run --cleanup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "stdout carries events only");
    assert!(stderr.contains(&*dead_dir.to_string_lossy()), "{stderr}");
    assert!(!dead_dir.exists(), "{} left", dead_dir.display());
    eventually("the killed tracer's command still runs", || {
        !running(dead_sleeper)
    });
    assert!(
        live_dir.exists() && running(live_sleeper),
        "a live tracer's cgroup was touched"
    );
    assert!(
        foreign.exists(),
        "a directory that is not the tracer's was removed"
    );

    // The next start sweeps too: kill the live one, then trace anything.
    kill9(&mut live);
    assert!(live_dir.exists() && running(live_sleeper));
    let r = trace_command(&[], &["true"]);
    assert!(r.status.success(), "{}", r.stderr);
    assert!(
        r.stderr.contains(&*live_dir.to_string_lossy()),
        "{}",
        r.stderr
    );
    assert!(!live_dir.exists(), "{} left", live_dir.display());
    eventually("the second killed tracer's command still runs", || {
        !running(live_sleeper)
    });
    assert!(foreign.exists());
    fs::remove_dir(&foreign).expect("rmdir");
}
