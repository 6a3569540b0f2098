//! What an exec reports: the file name and argv as the kernel hands them
//! over (long, empty, rewritten for a `#!` script, with control bytes and
//! invalid UTF-8). Real BPF against real processes (root needed); the
//! privileges an exec raises are in privileges.rs.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use linnix_ebpf::Tracer;

fn copy_with_mode(from: &str, to: &Path, mode: u32) {
    fs::copy(from, to).expect("copy");
    fs::set_permissions(to, fs::Permissions::from_mode(mode)).expect("chmod");
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
