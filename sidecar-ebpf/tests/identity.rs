//! Who a process is and how it is numbered: the processes already running,
//! one identity from fork through exec to exit, the creator of a
//! `CLONE_PARENT` child, and pids and thread ids in the loader's PID
//! namespace. Real BPF against real processes (root needed).

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::*;
use linnix_ebpf::{Event, ExecEvent, Task, Tracer};

fn exit_task(events: &[Event], host_pid: u32) -> &Task {
    exits_of(events, host_pid)
        .into_iter()
        .next()
        .map(|x| &x.task)
        .unwrap_or_else(|| panic!("no exit of {host_pid}: {events:#?}"))
}

#[tokio::test]
async fn present_processes_are_numbered_like_their_exit() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let outside = Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .map(KillOnDrop)
        .expect("sleep outside");
    // One sleeper plainly in the cgroup, one below `unshare -p -f`, whose
    // innermost number is 1 and whose parent (unshare) is in the cgroup too.
    let mut plain = spawn_in(std::slice::from_ref(&cg.path), &["/bin/sleep", "30"]);
    let mut nested = spawn_in(
        std::slice::from_ref(&cg.path),
        &["/usr/bin/unshare", "--pid", "--fork", "/bin/sleep", "31"],
    );
    wait_for_comm(plain.id(), "sleep");
    wait_for_comm(nested.id(), "unshare");
    let nested_sleep = wait_for_child(nested.id());
    wait_for_comm(nested_sleep, "sleep");
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let mut present = Vec::new();
    let n = tracer
        .present(&mut |e| match e {
            Event::Present(task) => present.push(task),
            other => panic!("not a present event: {other:?}"),
        })
        .expect("present");
    assert_eq!(n, present.len());
    // unshare --fork leaves its child running when it is killed itself.
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(nested_sleep as i32, libc::SIGKILL) };
    for child in [&mut plain, &mut nested] {
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
    let events = collect(&mut tracer);

    let mut pids: Vec<u32> = present.iter().map(|t| t.host_pid).collect();
    pids.sort_unstable();
    let mut want = vec![plain.id(), nested.id(), nested_sleep];
    want.sort_unstable();
    assert_eq!(pids, want, "only the cgroup's processes: {present:#?}");
    assert!(!pids.contains(&outside.0.id()));

    for task in &present {
        // The exit carries the same numbers and the same identity.
        let exit = exit_task(&events, task.host_pid);
        assert_eq!(exit.process(), task.process());
        assert_eq!(exit.pid, task.pid);
        assert_eq!(exit.inner_pid, task.inner_pid);
        assert_eq!(exit.cgroup_id, task.cgroup_id);
        assert_eq!(
            task.pid, task.host_pid,
            "the loader's namespace is the host's"
        );
        assert_eq!(
            task.comm,
            if task.host_pid == nested.id() {
                "unshare"
            } else {
                "sleep"
            }
        );
    }
    let sleep = present
        .iter()
        .find(|t| t.host_pid == nested_sleep)
        .expect("nested sleep");
    let unshare = present
        .iter()
        .find(|t| t.host_pid == nested.id())
        .expect("unshare");
    assert_eq!(sleep.inner_pid, 1);
    assert_eq!(sleep.ppid, unshare.pid);
    assert_eq!(sleep.parent(), Some(unshare.process()));
    assert_eq!(unshare.parent(), None, "its parent is outside the cgroup");
    assert_eq!((sleep.uid, sleep.gid), (0, 0));
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The only child of `pid`, once it has one.
fn wait_for_child(pid: u32) -> u32 {
    let path = format!("/proc/{pid}/task/{pid}/children");
    for _ in 0..500 {
        if let Some(child) = fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.split_whitespace().next().and_then(|c| c.parse().ok()))
        {
            return child;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{pid} has no child");
}

#[tokio::test]
async fn one_identity_from_fork_through_two_execs_to_exit() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    // The outer shell forks a child that execs a shell, which execs true.
    let outer = run_in(
        &cg.path,
        &["/bin/sh", "-c", "/bin/sh -c 'exec /bin/true'; exit 0"],
    );
    let events = collect(&mut tracer);

    let fork = events
        .iter()
        .find_map(|e| match e {
            Event::Fork(f) if f.task.host_ppid == outer => Some(f),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fork of the child: {events:#?}"));
    let child = fork.task.process();
    let child_execs: Vec<&ExecEvent> = execs(&events)
        .into_iter()
        .filter(|e| e.task.host_pid == fork.task.host_pid)
        .collect();
    assert_eq!(child_execs.len(), 2, "{events:#?}");
    assert_eq!(child_execs[0].filename, "/bin/sh");
    assert_eq!(child_execs[1].filename, "/bin/true");
    for exec in &child_execs {
        assert_eq!(exec.task.process(), child, "exec keeps the identity");
    }
    assert_eq!(exit_task(&events, fork.task.host_pid).process(), child);

    // The parent is in the cgroup: the child names it, and it is the
    // process whose exec and exit carry that identity.
    let parent = execs(&events)
        .into_iter()
        .find(|e| e.task.host_pid == outer)
        .expect("exec of the outer shell")
        .task
        .process();
    assert_eq!(fork.task.parent(), Some(parent));
    assert_eq!(
        fork.creator,
        Some(parent),
        "a plain fork: the forker is the parent"
    );
    assert_eq!(exit_task(&events, outer).process(), parent);
    // The outer shell came from outside: no parent in the cgroup.
    assert_eq!(exit_task(&events, outer).parent(), None);
    assert_ne!(child.to_string(), parent.to_string());
}

#[tokio::test]
async fn a_clone_parent_child_names_who_forked_it() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    // runc's nsexec clones with CLONE_PARENT: the child's parent is the
    // forker's parent, here this test, outside the cgroup.
    let script = "import ctypes, os\n\
                  pid = ctypes.CDLL(None).syscall(56, 0x8000 | 17, 0, 0, 0, 0)\n\
                  if pid == 0:\n    os._exit(0)\n\
                  print(pid)\n";
    let python = run_in(&cg.path, &[PYTHON, "-c", script]);
    let events = collect(&mut tracer);

    let fork = events
        .iter()
        .find_map(|e| match e {
            Event::Fork(f) if f.task.host_ppid == std::process::id() => Some(f),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fork of the CLONE_PARENT child: {events:#?}"));
    assert_eq!(fork.task.parent(), None, "its parent is outside");
    let python_id = exit_task(&events, python).process();
    assert_eq!(fork.creator, Some(python_id), "but python forked it");
    // A fork from a parent that is the forker: both agree.
    let plain = events.iter().find_map(|e| match e {
        Event::Fork(f) if f.task.host_ppid == python => Some(f),
        _ => None,
    });
    assert!(plain.is_none(), "python forked nothing else: {events:#?}");
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

#[tokio::test]
async fn thread_ids_are_numbered_in_the_loaders_namespace() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut cfg = config(cg.position());
    cfg.trace_threads = true;
    let mut tracer = Tracer::load(&cfg).expect("load");

    let script = "import threading\n\
                  ts = [threading.Thread(target=lambda: None) for _ in range(2)]\n\
                  [t.start() for t in ts]\n\
                  [t.join() for t in ts]\n";
    // In a nested PID namespace, where the innermost numbers are small.
    run_in(
        &cg.path,
        &["/usr/bin/unshare", "--pid", "--fork", PYTHON, "-c", script],
    );
    let events = collect(&mut tracer);

    let threads: Vec<&Task> = events
        .iter()
        .filter_map(|e| match e {
            Event::Fork(f) if f.thread => Some(&f.task),
            _ => None,
        })
        .collect();
    assert_eq!(threads.len(), 2, "{events:#?}");
    for t in threads {
        assert_eq!(t.tid, t.host_tid, "{t:?}");
        assert_ne!(t.tid, t.pid, "{t:?}");
        assert_eq!(t.pid, t.host_pid);
        assert_eq!(t.inner_pid, 1, "python is the namespace's init");
    }
}
