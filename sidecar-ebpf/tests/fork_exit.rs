//! Forks (processes; threads when asked for) and exits (codes, signals, a
//! thread group whose threads die at once). Real BPF against real processes
//! (root needed).

mod common;

use common::*;
use linnix_ebpf::Tracer;

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
