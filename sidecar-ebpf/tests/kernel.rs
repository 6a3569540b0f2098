//! The kernel programs against real processes in real cgroups (root needed).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use linnix_ebpf::{own_cgroup_ancestors, CgroupPosition, Event, Tracer, TracerError};

const PYTHON: &str = "/usr/bin/python3";

/// The positions of `own_cgroup_ancestors`, root first.
fn own_cgroup_ancestry() -> Result<Vec<CgroupPosition>, TracerError> {
    Ok(own_cgroup_ancestors()?
        .into_iter()
        .map(|ancestor| ancestor.position)
        .collect())
}

#[tokio::test]
async fn exec_reports_filename_argv_and_container_cgroup() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let pid = run_in(&cg.path, &["/bin/echo", "hello", "two words", ""]);
    let events = collect(&mut tracer);

    let exec = exec_of(&events, "/bin/echo");
    assert_eq!(exec.argv, ["/bin/echo", "hello", "two words", ""]);
    assert!(!exec.argv_truncated);
    assert!(!exec.filename_truncated);
    assert_eq!(exec.task.host_pid, pid);
    assert_eq!(exec.task.comm, "echo");
    // Same PID namespace as the test: the pod-side numbers are the host ones.
    assert_eq!(exec.task.pid, pid);
    assert_eq!(exec.task.ppid, std::process::id());
    assert_eq!(exec.task.ppid, std::process::id());
    // Directly in the target: the container cgroup is the target itself.
    assert_eq!(exec.task.cgroup_id, cg.position().id);
    assert_eq!(exec.task.cgroup_name, cg.name());
    assert!(exec.task.ts_boot_ns > 0);
}

#[tokio::test]
async fn exec_marks_long_argv_as_truncated() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let many: Vec<String> = (0..40).map(|i| format!("arg{i}")).collect();
    let mut argv = vec!["/bin/true"];
    argv.extend(many.iter().map(String::as_str));
    let long = "x".repeat(2000);
    run_in(&cg.path, &argv);
    run_in(&cg.path, &["/bin/true", &long]);
    let events = collect(&mut tracer);

    let trues: Vec<_> = execs(&events)
        .into_iter()
        .filter(|e| e.filename == "/bin/true")
        .collect();
    assert_eq!(trues.len(), 2, "{events:#?}");
    assert!(trues[0].argv_truncated);
    assert_eq!(trues[0].argv.len(), 32);
    assert_eq!(trues[0].argv[31], "arg30");
    assert!(trues[1].argv_truncated);
    assert_eq!(trues[1].argv[0], "/bin/true");
    assert!(trues[1].argv[1].starts_with("xxx") && trues[1].argv[1].len() < 2000);
}

#[tokio::test]
async fn exec_marks_a_long_filename_as_truncated() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let dir = tempfile::tempdir().expect("tempdir");
    // 300+ bytes of path to a symlink to /bin/true.
    let mut long = dir.path().to_path_buf();
    for _ in 0..3 {
        long.push("d".repeat(100));
    }
    std::fs::create_dir_all(&long).expect("mkdir");
    let link = long.join("t");
    std::os::unix::fs::symlink("/bin/true", &link).expect("symlink");
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let link = link.to_str().expect("utf-8 path");
    let pid = run_in(&cg.path, &[link]);
    let events = collect(&mut tracer);

    let exec = execs(&events)
        .into_iter()
        .find(|e| e.task.host_pid == pid && e.task.comm == "t")
        .unwrap_or_else(|| panic!("no exec of the long path: {events:#?}"));
    assert!(exec.filename_truncated);
    // The start and the end, so that the binary's own name survives.
    let (head, tail) = exec
        .filename
        .split_once('…')
        .expect("joined by an ellipsis");
    assert_eq!(head.len(), 64, "{}", exec.filename);
    assert_eq!(tail.len(), 255 - 64, "{}", exec.filename);
    assert!(link.starts_with(head), "{}", exec.filename);
    assert!(
        link.ends_with(tail) && tail.ends_with("/t"),
        "{}",
        exec.filename
    );
    assert_eq!(exec.argv, [link]);
}

#[tokio::test]
async fn exit_code_3_from_shell() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let pid = run_in(&cg.path, &["/bin/sh", "-c", "exit 3"]);
    let events = collect(&mut tracer);

    let exits = exits_of(&events, pid);
    assert_eq!(exits.len(), 1, "{events:#?}");
    let exit = exits[0];
    assert_eq!(exit.status, 0x300);
    assert_eq!(exit.exit_code(), Some(3));
    assert_eq!(exit.signal(), None);
    assert!(!exit.core_dumped());
    assert!(exit.lifetime_ns > 0 && exit.lifetime_ns < 60_000_000_000);
}

async fn killed_by(signal: i32, expected: i32) {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let mut child = spawn_in(std::slice::from_ref(&cg.path), &["/bin/sleep", "30"]);
    let pid = child.id();
    wait_for_comm(pid, "sleep");
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
    child.wait().expect("wait");
    let events = collect(&mut tracer);

    let exits = exits_of(&events, pid);
    assert_eq!(exits.len(), 1, "{events:#?}");
    assert_eq!(exits[0].status, expected as u32);
    assert_eq!(exits[0].signal(), Some(expected));
    assert_eq!(exits[0].exit_code(), None);
    assert_eq!(exits[0].task.comm, "sleep");
}

#[tokio::test]
async fn exit_by_sigterm() {
    killed_by(libc::SIGTERM, 15).await;
}

#[tokio::test]
async fn exit_by_sigkill() {
    killed_by(libc::SIGKILL, 9).await;
}

#[tokio::test]
async fn exit_of_non_leader_thread_exit_is_reported_once_with_its_code() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    // Busy threads make the group's threads exit at the same moment on
    // different CPUs, the case where more than one sees the group die.
    let script = "import os, threading, time\n\
                  def spin():\n    while True: pass\n\
                  for _ in range(4): threading.Thread(target=spin, daemon=True).start()\n\
                  threading.Thread(target=lambda: os._exit(7)).start()\n\
                  time.sleep(30)\n";
    let pids: Vec<u32> = (0..10)
        .map(|_| run_in(&cg.path, &[PYTHON, "-c", script]))
        .collect();
    let events = collect(&mut tracer);

    for pid in pids {
        let exits = exits_of(&events, pid);
        assert_eq!(exits.len(), 1, "one exit per process: {exits:#?}");
        assert_eq!(exits[0].status, 0x700);
        assert_eq!(exits[0].exit_code(), Some(7));
        assert_eq!(exits[0].task.pid, pid);
    }
}

#[tokio::test]
async fn nested_cgroups_are_included_and_named_by_container() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let container = cg.child("ctr-a");
    let deeper = cg.child("ctr-a/inner");
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let direct = run_in(&container, &["/bin/sh", "-c", "exit 4"]);
    let nested = run_in(&deeper, &["/bin/sh", "-c", "exit 5"]);
    let events = collect(&mut tracer);

    for (pid, code) in [(direct, 4), (nested, 5)] {
        let exits = exits_of(&events, pid);
        assert_eq!(exits.len(), 1, "{events:#?}");
        assert_eq!(exits[0].exit_code(), Some(code));
        // Both report the container level: one below the target.
        assert_eq!(exits[0].task.cgroup_id, position_of(&container).id);
        assert_eq!(exits[0].task.cgroup_name, "ctr-a");
    }
}

const THREADS_AND_A_CHILD: &str = "import subprocess, threading\n\
     ts = [threading.Thread(target=lambda: None) for _ in range(3)]\n\
     [t.start() for t in ts]\n\
     [t.join() for t in ts]\n\
     subprocess.run(['/bin/true'])\n";

#[tokio::test]
async fn fork_events_for_child_processes_only() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let pid = run_in(&cg.path, &[PYTHON, "-c", THREADS_AND_A_CHILD]);
    let events = collect(&mut tracer);

    let forks = forks(&events);
    assert_eq!(forks.len(), 1, "{events:#?}");
    assert!(!forks[0].thread);
    assert_eq!(forks[0].task.ppid, pid);
    assert_ne!(forks[0].task.host_pid, pid);
    // The forked child then runs /bin/true.
    assert!(execs(&events)
        .iter()
        .any(|e| e.filename == "/bin/true" && e.task.host_pid == forks[0].task.host_pid));
}

#[tokio::test]
async fn thread_events_when_enabled() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut cfg = config(cg.position());
    cfg.trace_threads = true;
    let mut tracer = Tracer::load(&cfg).expect("load");

    let pid = run_in(&cg.path, &[PYTHON, "-c", THREADS_AND_A_CHILD]);
    let events = collect(&mut tracer);

    let forks = forks(&events);
    let threads: Vec<_> = forks.iter().filter(|f| f.thread).collect();
    assert_eq!(threads.len(), 3, "{events:#?}");
    for t in threads {
        assert_eq!(t.task.host_pid, pid);
    }
    assert_eq!(forks.iter().filter(|f| !f.thread).count(), 1);
}

#[tokio::test]
async fn neighbour_cgroup_flood_produces_no_events() {
    let _lock = BPF_LOCK.lock().await;
    let target = TestCgroup::new();
    let neighbour = TestCgroup::new();
    let mut tracer = Tracer::load(&config(target.position())).expect("load");

    let flood = run_in(
        &neighbour.path,
        &[
            "/bin/sh",
            "-c",
            "for i in $(seq 200); do /bin/true; (exit 1); done",
        ],
    );
    let marker = run_in(&target.path, &["/bin/sh", "-c", "exit 6"]);
    let events = collect(&mut tracer);

    assert!(
        events.iter().all(|e| e
            .task()
            .is_some_and(|t| t.cgroup_id == target.position().id)),
        "{events:#?}"
    );
    assert!(exits_of(&events, flood).is_empty());
    assert!(!execs(&events).iter().any(|e| e.filename == "/bin/true"));
    assert_eq!(
        exits_of(&events, marker).len(),
        1,
        "the tracer saw nothing at all"
    );
    assert_eq!(tracer.kernel_stats().expect("stats").lost, 0);
}

#[tokio::test]
async fn rate_limit_drops_forks_and_execs_but_not_exits() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut cfg = config(cg.position());
    cfg.max_events_per_sec = 10;
    let mut tracer = Tracer::load(&cfg).expect("load");

    // 50 subshells (test and arithmetic are shell built-ins): 50 forks and
    // 50 exits, well within one second.
    let pid = run_in(
        &cg.path,
        &[
            "/bin/sh",
            "-c",
            "i=0; while [ $i -lt 50 ]; do (exit 2); i=$((i+1)); done",
        ],
    );
    let events = collect(&mut tracer);

    let bulk = events
        .iter()
        .filter(|e| matches!(e, Event::Fork(_) | Event::Exec(_)))
        .count();
    let exits = events
        .iter()
        .filter(|e| matches!(e, Event::Exit(_)))
        .count();
    assert!(bulk <= 20, "{bulk} fork/exec events passed a limit of 10/s");
    assert_eq!(exits, 51, "every exit is reported");
    assert_eq!(exits_of(&events, pid).len(), 1);
    let stats = tracer.kernel_stats().expect("stats");
    assert!(stats.rate_limited >= 30, "{stats:?}");
    // The drops are in the stream too, as lost records before the exits that
    // passed: never more than the totals, and never nothing.
    let reported: u64 = events
        .iter()
        .filter_map(|e| match e {
            Event::Lost(l) => Some(l.rate_limited + l.lost),
            _ => None,
        })
        .sum();
    assert!(reported > 0, "no lost record: {events:#?}");
    assert!(
        reported <= stats.rate_limited + stats.lost,
        "{reported} > {stats:?}"
    );
    let first_lost = events.iter().position(|e| matches!(e, Event::Lost(_)));
    assert!(
        first_lost.is_some_and(|i| events[i + 1..].iter().any(|e| matches!(e, Event::Exit(_)))),
        "the lost record comes before the exits that passed"
    );
}

#[tokio::test]
async fn removing_a_container_cgroup_of_the_target_is_reported() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let container = cg.child("ctr-gone");
    cg.child("ctr-stays");
    let deeper = cg.child("ctr-stays/inner");
    let outside = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let id = position_of(&container).id;
    std::fs::remove_dir(&container).expect("rmdir container cgroup");
    // Neither a deeper cgroup nor one outside the target is reported.
    std::fs::remove_dir(&deeper).expect("rmdir deeper cgroup");
    drop(outside);
    let events = collect(&mut tracer);

    let removed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::CgroupRemoved(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(removed.len(), 1, "{events:#?}");
    assert_eq!(removed[0].cgroup_id, id);
    assert_eq!(removed[0].cgroup_name, "ctr-gone");
    assert!(removed[0].ts_boot_ns > 0);
}

/// The reader polls while records flow and blocks once the pod is quiet
/// (after well under 200 ms); the kernel must wake it for the next record,
/// every time it has gone back to sleep.
#[tokio::test]
async fn next_batch_wakes_up_for_new_events() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    for code in [9, 4] {
        let path = cg.path.clone();
        let worker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            run_in(&path, &["/bin/sh", "-c", &format!("exit {code}")])
        });
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !events.iter().any(|e| matches!(e, Event::Exit(_))) {
            tokio::time::timeout_at(deadline, tracer.next_batch(&mut |e| events.push(e)))
                .await
                .expect("no event within 10 s")
                .expect("next_batch");
        }
        let pid = worker.join().expect("worker");
        assert_eq!(exits_of(&events, pid)[0].exit_code(), Some(code));
    }
}

#[tokio::test]
async fn oom_kill_reports_the_victim() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let limit = 64 << 20;
    let memory = MemoryLimit::new(&cg.path, limit);
    let dirs = limited_dirs(&cg, &memory);
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let mut child = spawn_in(&dirs, &[PYTHON, "-c", "b = b'x' * (256 << 20)"]);
    let pid = child.id();
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the allocation should have been killed");
    let events = collect(&mut tracer);

    let oom = events
        .iter()
        .find_map(|e| match e {
            Event::OomKill(o) => Some(o),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no OOM kill event: {events:#?}"));
    assert_eq!(oom.task.host_pid, pid);
    assert_eq!(oom.task.comm, "python3");
    assert!(oom.rss_anon_kb > 32 << 10, "{oom:?}");
    let memcg = oom.memcg.as_ref().expect("memcg read");
    assert_eq!(memcg.limit_bytes, limit);
    assert!(
        memcg.usage_bytes > limit / 2 && memcg.usage_bytes <= limit,
        "{memcg:?}"
    );
    let exits = exits_of(&events, pid);
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0].signal(), Some(9));
}

/// The sampler: one sample per container with processes, from the memcg
/// the processes are charged to (the v1 one here), with the kernel's own
/// figures; none for a container without processes, nothing from outside.
#[tokio::test]
async fn memory_samples_are_the_kernels_figures_of_each_container() {
    let _lock = BPF_LOCK.lock().await;
    let pod = TestCgroup::new();
    let app = pod.child("app");
    let idle = pod.child("idle");
    let outside = TestCgroup::new();
    let limit = 48 << 20;
    let memory = MemoryLimit::new(&app, limit);
    let dirs: Vec<std::path::PathBuf> = std::iter::once(app.clone())
        .chain(memory.v1_dir().map(std::path::Path::to_path_buf))
        .collect();
    let mut tracer = Tracer::load(&config(pod.position())).expect("load");
    let hold = "import time\nx = b'x' * (16 << 20)\nprint(flush=True)\ntime.sleep(30)\n";
    let mut holder = spawn_in(&dirs, &[PYTHON, "-c", hold]);
    let mut stranger = spawn_in(std::slice::from_ref(&outside.path), &["sleep", "30"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (sample, kernel) = loop {
        let pass = tracer.sample_memory().expect("sample");
        assert!(pass.samples.len() <= 1, "{pass:?}");
        if let Some(s) = pass.samples.first().filter(|s| s.usage_bytes > 16 << 20) {
            break (s.clone(), charged_bytes(&app));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never sampled: {pass:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    holder.kill().expect("kill");
    holder.wait().expect("wait");
    stranger.kill().expect("kill");
    stranger.wait().expect("wait");
    assert_eq!(sample.cgroup_id, id_of(&app));
    assert_eq!(sample.cgroup_name, "app");
    assert_eq!(sample.limit_bytes, Some(limit));
    assert!(
        sample.usage_bytes.abs_diff(kernel) * 20 <= kernel,
        "{sample:?} vs {kernel}"
    );
    // The memcg is the v1 cgroup on a hybrid host, the v2 one on a unified one.
    let memcg_dir = memory
        .v1_dir()
        .map_or(app.clone(), std::path::Path::to_path_buf);
    assert_eq!(sample.memcg_id, id_of(&memcg_dir));
    let events = sample.events.expect("the kernel keeps memory events");
    assert_eq!((events.oom, events.oom_kill), (0, 0));
    assert_eq!(sample.pressure, [0; 3]);
    drop(idle);
    // Nothing of the pod is left.
    assert!(tracer.sample_memory().expect("sample").samples.is_empty());
}

/// More containers than one read of the iterator holds (its kernel buffer is
/// 32 KiB, 157 samples): the kernel runs the task that did not fit again at
/// the next read, and its sample must come then.
#[tokio::test]
async fn a_pass_over_more_containers_than_one_read_holds_misses_none() {
    let _lock = BPF_LOCK.lock().await;
    let pod = TestCgroup::new();
    let containers: Vec<std::path::PathBuf> =
        (0..200).map(|i| pod.child(&format!("c{i}"))).collect();
    let mut sleepers: Vec<std::process::Child> = containers
        .iter()
        .map(|c| spawn_in(std::slice::from_ref(c), &["sleep", "60"]))
        .collect();
    let mut tracer = Tracer::load(&config(pod.position())).expect("load");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    while std::time::Instant::now() < deadline {
        let pass = tracer.sample_memory().expect("sample");
        seen = pass.samples.len();
        if seen == containers.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for s in &mut sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert_eq!(seen, containers.len());
}

/// Runs in a child process started by the tests below (in a chosen cgroup,
/// or with reduced privileges); prints what `own_cgroup_ancestry`,
/// `own_cgroup_ancestors` and `Tracer::load` return there, on one line each.
#[test]
#[ignore = "helper, started as a child process by other tests"]
fn probe() {
    match own_cgroup_ancestry() {
        Ok(found) => {
            let line: Vec<String> = found
                .iter()
                .map(|p| format!("{}:{}", p.level, p.id))
                .collect();
            println!("\nANCESTRY {}", line.join(" "));
        }
        Err(err) => println!("\nANCESTRY-ERR {err:?}"),
    }
    match own_cgroup_ancestors() {
        Ok(found) => {
            let line: Vec<String> = found
                .iter()
                .map(|a| format!("{}:{}:{}", a.position.level, a.position.id, a.name))
                .collect();
            println!("\nNAMES {}", line.join(" "));
        }
        Err(err) => println!("\nNAMES-ERR {err:?}"),
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let target = linnix_ebpf::CgroupPosition { id: 1, level: 0 };
    match runtime.block_on(async { Tracer::load(&config(target)).map(drop) }) {
        Ok(()) => println!("\nLOAD ok"),
        Err(err) => println!("\nLOAD-ERR {err:?}"),
    }
}

/// Start the probe through `wrapper` (a command that ends by exec-ing its
/// arguments) and return its lines.
fn run_probe(wrapper: &[&str]) -> Probe {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(exe)
        .args([
            "--exact",
            "probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("run the probe");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| {
                panic!(
                    "no {prefix} line in {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_owned()
    };
    Probe {
        ancestry: line("ANCESTRY"),
        names: line("NAMES"),
        load: line("LOAD"),
    }
}

/// The lines the probe printed, each with its prefix.
struct Probe {
    ancestry: String,
    names: String,
    load: String,
}

fn in_cgroup(dir: &std::path::Path) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("echo $$ > '{}'/cgroup.procs && exec \"$@\"", dir.display()),
        "sh".into(),
    ]
}

#[tokio::test]
async fn own_cgroup_ancestry_matches_directory_inodes() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    cg.child("a");
    let nested = cg.child("a/b");

    let wrapper = in_cgroup(&nested);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let probe = run_probe(&wrapper);
    let line = probe
        .ancestry
        .strip_prefix("ANCESTRY ")
        .unwrap_or_else(|| panic!("{}", probe.ancestry));

    let mut expected = vec![position_of(&nested)];
    let mut dir = nested.clone();
    while dir != v2_mount() {
        dir = dir.parent().expect("parent").to_path_buf();
        if dir != v2_mount() {
            expected.push(position_of(&dir));
        }
    }
    let root_id =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(v2_mount()).expect("root"));
    expected.push(linnix_ebpf::CgroupPosition {
        id: root_id,
        level: 0,
    });
    expected.reverse();
    let positions: Vec<String> = expected
        .iter()
        .map(|p| format!("{}:{}", p.level, p.id))
        .collect();
    assert_eq!(line, positions.join(" "));

    // The same cgroups with their directory names; the root's is empty.
    let names = ["".to_owned(), cg.name(), "a".into(), "b".into()];
    let named: Vec<String> = expected
        .iter()
        .zip(&names)
        .map(|(p, name)| format!("{}:{}:{name}", p.level, p.id))
        .collect();
    assert_eq!(probe.names, format!("NAMES {}", named.join(" ")));
}

#[tokio::test]
async fn own_cgroup_ancestors_are_named_inside_a_private_cgroup_namespace() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let container = cg.child("ctr");

    // As in a pod: the container's cgroup becomes the namespace root, so
    // neither the parent's path nor its name is visible in /proc or a mount.
    let mut wrapper = in_cgroup(&container);
    wrapper.extend(["/usr/bin/unshare".into(), "--cgroup".into()]);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let probe = run_probe(&wrapper);

    let (pod, own) = (cg.position(), position_of(&container));
    let tail = format!(
        " {}:{}:{} {}:{}:ctr",
        pod.level,
        pod.id,
        cg.name(),
        own.level,
        own.id
    );
    assert!(probe.names.ends_with(&tail), "{}", probe.names);
}

#[tokio::test]
async fn own_cgroup_ancestry_at_the_v2_root_means_no_cgroup_v2() {
    let _lock = BPF_LOCK.lock().await;
    let wrapper = in_cgroup(&v2_mount());
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let probe = run_probe(&wrapper);
    assert_eq!(probe.ancestry, "ANCESTRY-ERR NoCgroupV2");
    assert_eq!(probe.names, "NAMES-ERR NoCgroupV2");
}

const NOBODY: [&str; 5] = [
    "/usr/bin/setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--no-new-privs",
];

#[tokio::test]
async fn without_capabilities_loading_names_the_missing_capability() {
    let _lock = BPF_LOCK.lock().await;
    let mut wrapper = NOBODY.to_vec();
    wrapper.extend(["--inh-caps=-all", "--bounding-set=-all"]);
    let Probe {
        ancestry,
        names,
        load,
    } = run_probe(&wrapper);
    assert!(
        ancestry.starts_with("ANCESTRY-ERR MissingCapability"),
        "{ancestry}"
    );
    assert!(names.starts_with("NAMES-ERR MissingCapability"), "{names}");
    assert!(load.starts_with("LOAD-ERR MissingCapability"), "{load}");
}

#[tokio::test]
async fn cap_bpf_and_cap_perfmon_are_enough() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    // Joining the cgroup needs root; the probe then drops to nobody.
    let join = in_cgroup(&cg.path);
    let mut wrapper: Vec<&str> = join.iter().map(String::as_str).collect();
    wrapper.extend(NOBODY);
    wrapper.extend([
        "--inh-caps=-all,+bpf,+perfmon",
        "--ambient-caps=+bpf,+perfmon",
        "--bounding-set=-all,+bpf,+perfmon",
    ]);
    let Probe {
        ancestry,
        names,
        load,
    } = run_probe(&wrapper);
    assert_eq!(load, "LOAD ok");
    let own = cg.position();
    assert!(
        ancestry.ends_with(&format!(" {}:{}", own.level, own.id)),
        "{ancestry}"
    );
    assert!(
        names.ends_with(&format!(" {}:{}:{}", own.level, own.id, cg.name())),
        "{names}"
    );
}

#[tokio::test]
async fn pids_are_numbered_in_the_loaders_pid_namespace() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    // Two nested PID namespaces side by side, as `unshare -p -f` in a pod
    // makes them: each shell is pid 1 of its own, its child pid 2.
    let nested = |code: i32| {
        run_in(
            &cg.path,
            &[
                "/usr/bin/unshare",
                "--pid",
                "--fork",
                "/bin/sh",
                "-c",
                &format!("/bin/sh -c 'exit {}'; exit {code}", code + 1),
            ],
        )
    };
    let unshares = [nested(4), nested(6)];
    let events = collect(&mut tracer);

    let exit_with = |code| {
        events
            .iter()
            .find_map(|e| match e {
                Event::Exit(x) if x.exit_code() == Some(code) => Some(x),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no exit {code}: {events:#?}"))
    };
    // The loader (this test) is in the initial PID namespace: the numbers
    // are the host's, the parent is named, and the innermost numbers go
    // along.
    for (init_code, unshare) in [(4, unshares[0]), (6, unshares[1])] {
        let init = exit_with(init_code);
        let child = exit_with(init_code + 1);
        assert_eq!(init.task.pid, init.task.host_pid);
        assert_eq!(init.task.inner_pid, 1);
        assert_eq!(init.task.ppid, unshare, "the parent is visible here");
        assert_eq!(child.task.pid, child.task.host_pid);
        assert_eq!(child.task.inner_pid, 2);
        assert_eq!(child.task.ppid, init.task.pid);
    }
    assert_ne!(exit_with(4).task.pid, exit_with(6).task.pid, "no collision");
}

/// Make perf_event_open(2) fail with EPERM on the calling thread, as a
/// container runtime's default seccomp profile does without CAP_SYS_ADMIN.
fn deny_perf_event_open_on_this_thread() {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let mut filter = [
        // Load the syscall number (offset 0 of struct seccomp_data).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_perf_event_open as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `program` points to a valid filter that outlives the call; the
    // kernel copies it. Without TSYNC it applies to this thread only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &program as *const libc::sock_fprog,
        )
    };
    assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
    // The filter is in force: a direct call is refused.
    // SAFETY: perf_event_open with a null attr only returns an error.
    let rc = unsafe { libc::syscall(libc::SYS_perf_event_open, 0usize, 0, -1, -1, 0) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EPERM)
    );
}

#[tokio::test]
async fn perf_event_open_is_not_needed() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let target = cg.position();
    let path = cg.path.clone();
    // A thread of its own: the filter stays with it and spares other tests.
    let (ancestry, exits) = std::thread::spawn(move || {
        deny_perf_event_open_on_this_thread();
        let ancestry = own_cgroup_ancestry();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let exits = runtime.block_on(async {
            let mut tracer = Tracer::load(&config(target)).expect("load under the filter");
            let pid = run_in(&path, &["/bin/sh", "-c", "exit 8"]);
            let events = collect(&mut tracer);
            exits_of(&events, pid)
                .iter()
                .map(|e| e.exit_code())
                .collect::<Vec<_>>()
        });
        (ancestry, exits)
    })
    .join()
    .expect("probe thread");
    // The test process may sit at the v2 root (NoCgroupV2); it must not have
    // been refused anything.
    assert!(
        !matches!(ancestry, Err(TracerError::MissingCapability { .. })),
        "{ancestry:?}"
    );
    assert_eq!(exits, [Some(8)]);
}

/// BPF links this process holds open (their fdinfo has a link_id).
fn open_bpf_links() -> usize {
    std::fs::read_dir("/proc/self/fdinfo")
        .expect("fdinfo")
        .filter_map(Result::ok)
        .filter(|fd| {
            std::fs::read_to_string(fd.path()).is_ok_and(|info| info.contains("\nlink_id:"))
        })
        .count()
}

#[tokio::test]
async fn programs_attached_counts_the_kernel_links() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let before = open_bpf_links();
    let tracer = Tracer::load(&config(cg.position())).expect("load");
    // fork, exec, exit, mark_victim, cgroup_rmdir, mm_vmscan_memcg_reclaim_begin,
    // cgroup_attach_task
    assert_eq!(tracer.programs_attached(), 7);
    assert_eq!(open_bpf_links() - before, tracer.programs_attached());
    drop(tracer);
    assert_eq!(open_bpf_links(), before, "dropping detaches");
}
