//! Test support: processes started inside throw-away cgroups
//! (`linnix-test-support`), and tracers reading them.

#![allow(dead_code, unused_imports)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use linnix_ebpf::{CgroupPosition, Event, ExecEvent, ExitEvent, ForkEvent, Tracer, TracerConfig};
pub use linnix_test_support::{charged_bytes, id_of, level_of, v2_mount, MemoryLimit, TestCgroup};

/// The interpreter of the Python workloads.
pub const PYTHON: &str = "/usr/bin/python3";

/// BPF tests run one at a time: each loads its own programs, and two cores
/// are shared with compilers.
pub static BPF_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where a test cgroup sits, as the programs' filter wants it.
pub trait Position {
    fn position(&self) -> CgroupPosition;
}

impl Position for TestCgroup {
    fn position(&self) -> CgroupPosition {
        position_of(&self.path)
    }
}

pub fn position_of(path: &Path) -> CgroupPosition {
    CgroupPosition {
        id: id_of(path),
        level: level_of(path),
    }
}

/// The directories a process joins to run in `cg` under `limit`.
pub fn limited_dirs(cg: &TestCgroup, limit: &MemoryLimit) -> Vec<PathBuf> {
    std::iter::once(cg.path.clone())
        .chain(limit.v1_dir().map(Path::to_path_buf))
        .collect()
}

/// `argv` started inside the cgroups `dirs`: a shell joins them and then
/// execs the program, so the fork that created it happened outside.
pub fn spawn_in(dirs: &[PathBuf], argv: &[&str]) -> Child {
    let joins: String = dirs
        .iter()
        .map(|d| format!("echo $$ > '{}'/cgroup.procs && ", d.display()))
        .collect();
    Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{joins}exec \"$@\""))
        .arg("sh")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn /bin/sh")
}

/// Run to completion inside `dir`, returning the pid.
pub fn run_in(dir: &Path, argv: &[&str]) -> u32 {
    let mut child = spawn_in(&[dir.to_path_buf()], argv);
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

/// Wait until `/proc/<pid>/comm` reads `comm` (the exec happened).
pub fn wait_for_comm(pid: u32, comm: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("pid {pid} did not become {comm}");
}

pub fn config(target: CgroupPosition) -> TracerConfig {
    TracerConfig {
        target,
        trace_threads: false,
        max_events_per_sec: 0,
        pressure: Default::default(),
    }
}

/// Everything the tracer has delivered so far. Ring-buffer records are
/// visible as soon as the traced process has been reaped, so one drain after
/// the workload is complete; a short second drain catches stragglers.
pub fn collect(tracer: &mut Tracer) -> Vec<Event> {
    let mut events = Vec::new();
    tracer.drain(&mut |e| events.push(e));
    std::thread::sleep(Duration::from_millis(50));
    tracer.drain(&mut |e| events.push(e));
    events
}

/// The events of one kind, for assertions.
pub fn execs(events: &[Event]) -> Vec<&ExecEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Exec(x) => Some(x),
            _ => None,
        })
        .collect()
}

pub fn exec_of<'a>(events: &'a [Event], filename: &str) -> &'a ExecEvent {
    execs(events)
        .into_iter()
        .find(|e| e.filename == filename)
        .unwrap_or_else(|| panic!("no exec of {filename}: {events:#?}"))
}

pub fn exits_of(events: &[Event], host_pid: u32) -> Vec<&ExitEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Exit(x) if x.task.host_pid == host_pid => Some(x),
            _ => None,
        })
        .collect()
}

pub fn forks(events: &[Event]) -> Vec<&ForkEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Fork(x) => Some(x),
            _ => None,
        })
        .collect()
}
