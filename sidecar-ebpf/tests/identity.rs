//! Who a process is, and where it comes from: identity across fork, exec and
//! exit, the processes already running, moves between cgroups, raised
//! privileges, argv and file names as the kernel hands them over. Real BPF
//! against real processes (root needed).

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use linnix_ebpf::{CgroupChange, Event, ExecEvent, Task, Tracer};

const PYTHON: &str = "/usr/bin/python3";

fn exit_task(events: &[Event], host_pid: u32) -> &Task {
    exits_of(events, host_pid)
        .into_iter()
        .next()
        .map(|x| &x.task)
        .unwrap_or_else(|| panic!("no exit of {host_pid}: {events:#?}"))
}

/// A directory others may enter (a tempdir is 0700), for binaries run as
/// another user.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn copy_with_mode(from: &str, to: &Path, mode: u32) {
    fs::copy(from, to).expect("copy");
    fs::set_permissions(to, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The cgroup v2 directory this test process sits in.
fn own_cgroup() -> PathBuf {
    let text = fs::read_to_string("/proc/self/cgroup").expect("own cgroup");
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line");
    v2_mount().join(path.trim_start_matches('/'))
}

fn move_to(dir: &Path, pid: u32) {
    fs::write(dir.join("cgroup.procs"), pid.to_string())
        .unwrap_or_else(|e| panic!("move {pid} to {}: {e}", dir.display()));
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
async fn moves_into_out_of_and_between_containers_are_reported() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let a = cg.child("ctr-a");
    let a_inner = cg.child("ctr-a/inner");
    let b = cg.child("ctr-b");
    let home = own_cgroup();
    let mut sleeper = Command::new("/bin/sleep")
        .arg("30")
        .stdout(Stdio::null())
        .spawn()
        .expect("sleep");
    let pid = sleeper.id();
    wait_for_comm(pid, "sleep");
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    move_to(&a, pid); // in: join
    move_to(&a_inner, pid); // deeper in the same container: nothing
    move_to(&b, pid); // to another container: move
    move_to(&home, pid); // out: leave
    sleeper.kill().expect("kill");
    sleeper.wait().expect("wait");
    let events = collect(&mut tracer);

    let moves: Vec<(CgroupChange, u64, &str)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Cgroup(c) if c.task.host_pid == pid => {
                Some((c.change, c.task.cgroup_id, c.task.cgroup_name.as_str()))
            }
            _ => None,
        })
        .collect();
    let (a_id, b_id) = (position_of(&a).id, position_of(&b).id);
    assert_eq!(
        moves,
        [
            (CgroupChange::Join, a_id, "ctr-a"),
            (
                CgroupChange::Move {
                    from_cgroup_id: a_id
                },
                b_id,
                "ctr-b"
            ),
            (CgroupChange::Leave, b_id, ""),
        ],
        "{events:#?}"
    );
    // Gone from the cgroup before it died: no exit here.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Exit(x) if x.task.host_pid == pid)),
        "{events:#?}"
    );
    // The join carries the process's identity, as its exit would.
    let join = events
        .iter()
        .find_map(|e| match e {
            Event::Cgroup(c) if c.task.host_pid == pid => Some(&c.task),
            _ => None,
        })
        .expect("join");
    assert_eq!(join.comm, "sleep");
    assert_eq!(join.parent(), None);
}

#[tokio::test]
async fn a_process_moved_in_is_known_when_it_leaves_again() {
    let _lock = BPF_LOCK.lock().await;
    // Present at load (marked by the iterator), then moved out: a leave,
    // although no fork or join was ever seen for it.
    let cg = TestCgroup::new();
    let home = own_cgroup();
    let mut child = spawn_in(std::slice::from_ref(&cg.path), &["/bin/sleep", "30"]);
    wait_for_comm(child.id(), "sleep");
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");
    let mut present = 0;
    tracer.present(&mut |_| present += 1).expect("present");
    assert_eq!(present, 1);
    move_to(&home, child.id());
    child.kill().expect("kill");
    child.wait().expect("wait");
    let events = collect(&mut tracer);
    assert!(
        events.iter().any(|e| matches!(e, Event::Cgroup(c)
            if c.change == CgroupChange::Leave && c.task.host_pid == child.id()
                && c.task.cgroup_id == cg.position().id)),
        "{events:#?}"
    );
}

/// Run `path` in `cg` as `user` (uid = gid), through setpriv, which execs it.
fn run_as(cg: &Path, user: u32, extra: &[&str], path: &Path) -> u32 {
    let id = format!("--reuid={user}");
    let gid = format!("--regid={user}");
    let mut argv = vec!["/usr/bin/setpriv", &id, &gid, "--clear-groups"];
    argv.extend(extra);
    argv.push(path.to_str().expect("utf-8 path"));
    run_in(cg, &argv)
}

#[tokio::test]
async fn set_id_and_file_capability_execs_raise_privileges() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let dir = open_dir();
    let suid = dir.path().join("suid-id");
    let sgid = dir.path().join("sgid-id");
    let caps = dir.path().join("caps-id");
    copy_with_mode("/usr/bin/id", &suid, 0o4755);
    copy_with_mode("/usr/bin/id", &sgid, 0o2755);
    copy_with_mode("/usr/bin/id", &caps, 0o755);
    let status = Command::new("/usr/sbin/setcap")
        .args(["cap_net_raw+ep", caps.to_str().expect("utf-8")])
        .status()
        .expect("setcap");
    assert!(status.success());
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    const NOBODY: u32 = 65534;
    let runs = [
        (run_as(&cg.path, NOBODY, &[], &suid), "setuid by nobody"),
        (run_as(&cg.path, NOBODY, &[], &sgid), "setgid by nobody"),
        (run_as(&cg.path, NOBODY, &[], &caps), "file caps by nobody"),
        (
            run_in(&cg.path, &[suid.to_str().expect("utf-8")]),
            "setuid by root",
        ),
        (
            run_as(&cg.path, NOBODY, &["--no-new-privs"], &suid),
            "setuid under no_new_privs",
        ),
    ];
    let events = collect(&mut tracer);
    let exec_by = |pid: u32| {
        execs(&events)
            .into_iter()
            .find(|e| {
                e.task.host_pid == pid && e.filename.starts_with(dir.path().to_str().unwrap())
            })
            .unwrap_or_else(|| panic!("no exec of the copy by {pid}: {events:#?}"))
    };
    let view: Vec<(&str, bool, bool, bool, bool, u32, u32)> = runs
        .iter()
        .map(|&(pid, what)| {
            let e = exec_by(pid);
            let p = e.privileges;
            (
                what,
                p.setuid,
                p.setgid,
                p.file_caps,
                p.secure_exec,
                e.task.uid,
                e.task.gid,
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("setuid by nobody", true, false, false, true, 0, NOBODY),
            ("setgid by nobody", false, true, false, true, NOBODY, 0),
            (
                "file caps by nobody",
                false,
                false,
                true,
                true,
                NOBODY,
                NOBODY
            ),
            // Root gains nothing from a set-user-ID-root file.
            ("setuid by root", false, false, false, false, 0, 0),
            // The kernel ignores the bit under no_new_privs.
            (
                "setuid under no_new_privs",
                false,
                false,
                false,
                false,
                NOBODY,
                NOBODY
            ),
        ]
    );
    assert!(exec_by(runs[0].0).privileges.raised());
    assert!(!exec_by(runs[3].0).privileges.raised());
}

#[tokio::test]
async fn an_empty_argv_is_flagged_and_not_truncated() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    // execve(path, NULL, NULL), as the pkexec exploit (CVE-2021-4034) does.
    let script = "import ctypes\n\
                  ctypes.CDLL(None).execve(b'/bin/true', None, None)\n";
    run_in(&cg.path, &[PYTHON, "-c", script]);
    run_in(&cg.path, &["/bin/echo", "x"]);
    let events = collect(&mut tracer);

    let empty = exec_of(&events, "/bin/true");
    // Since 5.18 the kernel hands the program [""] instead of nothing.
    assert_eq!(empty.argv, [""]);
    assert!(empty.argv_empty);
    assert!(!empty.argv_truncated);
    let echo = exec_of(&events, "/bin/echo");
    assert!(!echo.argv_empty && !echo.argv_truncated);
}

#[tokio::test]
async fn a_script_runs_with_the_argv_the_kernel_rewrites() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("job.sh");
    fs::write(&script, "#!/bin/sh -e\nexit 0\n").expect("write");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let path = script.to_str().expect("utf-8");
    let pid = run_in(&cg.path, &[path, "first"]);
    let events = collect(&mut tracer);

    let exec = execs(&events)
        .into_iter()
        .find(|e| e.task.host_pid == pid && e.filename == path)
        .unwrap_or_else(|| panic!("no exec of the script: {events:#?}"));
    // The interpreter and its one argument from the #! line, then the
    // script as it was named, then the caller's arguments after argv[0].
    assert_eq!(exec.argv, ["/bin/sh", "-e", path, "first"]);
    assert_eq!(exec.task.comm, "job.sh");
}

#[tokio::test]
async fn control_bytes_and_invalid_utf8_in_a_file_name_are_escaped() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let dir = tempfile::tempdir().expect("tempdir");
    // ESC [2K erases the terminal line; 0xff is not UTF-8.
    let name = std::ffi::OsStr::from_bytes(b"evil\x1b[2K\xffname");
    let path = dir.path().join(name);
    copy_with_mode("/bin/true", &path, 0o755);
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > '{}'/cgroup.procs && exec \"$0\"",
            cg.path.display()
        ))
        .arg(&path)
        .spawn()
        .expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    let events = collect(&mut tracer);

    let exec = execs(&events)
        .into_iter()
        .find(|e| e.task.host_pid == pid && e.task.comm != "sh")
        .unwrap_or_else(|| panic!("no exec of the odd name: {events:#?}"));
    let want = format!("{}/evil\\x1b[2K\\xffname", dir.path().display());
    assert_eq!(exec.filename, want);
    assert_eq!(exec.argv, [want.as_str()]);
    assert_eq!(exec.task.comm, "evil\\x1b[2K\\xffname");
    for text in [&exec.filename, &exec.task.comm] {
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
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
