//! Children cloned straight into another cgroup (clone3 with
//! `CLONE_INTO_CGROUP`): the one case where a fork's child does not share its
//! parent's cgroup, so the fork filter cannot judge it by the parent (root
//! needed).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::*;
use linnix_ebpf::{Event, Tracer};

/// `tests/helpers/clone_into.c`, built once per test run with the clang the
/// BPF programs are built with.
fn clone_into_helper() -> &'static Path {
    static HELPER: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = HELPER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let binary = dir.path().join("clone_into");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/clone_into.c");
        let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
        let status = Command::new(&clang)
            .args(["-Wall", "-Werror", "-O2", "-o"])
            .arg(&binary)
            .arg(&source)
            .status()
            .unwrap_or_else(|e| panic!("run {clang}: {e}"));
        assert!(
            status.success(),
            "{clang} could not build {}",
            source.display()
        );
        (dir, binary)
    });
    path
}

/// What one run of the helper did: its own pid, the pid of the child it
/// cloned into `into`, and the child's exit code.
struct Cloned {
    helper: u32,
    child: u32,
    code: i32,
}

/// The helper, started inside `from` (a shell joins it and execs the
/// helper), clones `argv` into `into`.
fn clone_from_into(from: &Path, into: &Path, argv: &[&str]) -> Cloned {
    let output = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > '{}'/cgroup.procs && exec \"$@\"",
            from.display()
        ))
        .arg("sh")
        .arg(clone_into_helper())
        .arg(into)
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|child| {
            let helper = child.id();
            child.wait_with_output().map(|out| (helper, out))
        })
        .expect("run the clone_into helper");
    let (helper, output) = output;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let child = stdout.trim().parse().unwrap_or_else(|_| {
        panic!(
            "the helper printed no pid: {stdout:?} ({:?})",
            output.status
        )
    });
    Cloned {
        helper,
        child,
        code: output.status.code().expect("the helper exits"),
    }
}

fn about(events: &[Event], host_pid: u32) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.task().is_some_and(|t| t.host_pid == host_pid))
        .collect()
}

#[tokio::test]
async fn a_child_cloned_into_the_pod_is_traced_from_its_fork() {
    let _lock = BPF_LOCK.lock().await;
    let pod = TestCgroup::new();
    let outside = TestCgroup::new();
    let mut tracer = Tracer::load(&config(pod.position())).expect("load");

    let run = clone_from_into(&outside.path, &pod.path, &["/bin/sh", "-c", "exit 9"]);
    let events = collect(&mut tracer);

    assert_eq!(run.code, 9);
    let child = about(&events, run.child);
    let fork = child
        .iter()
        .find_map(|e| match e {
            Event::Fork(f) => Some(f),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fork event for the cloned child: {events:#?}"));
    // The parent is outside the pod, the child inside it (one PID
    // namespace: the pod's numbers are the host's).
    assert_eq!(fork.task.ppid, run.helper);
    assert_eq!(fork.task.cgroup_id, pod.position().id);
    assert!(child
        .iter()
        .any(|e| matches!(e, Event::Exec(x) if x.filename == "/bin/sh")));
    assert!(child
        .iter()
        .any(|e| matches!(e, Event::Exit(x) if x.exit_code() == Some(9))));
    assert!(
        about(&events, run.helper).is_empty(),
        "the parent outside the pod is not traced: {events:#?}"
    );
}

#[tokio::test]
async fn a_child_cloned_out_of_the_pod_is_not_traced() {
    let _lock = BPF_LOCK.lock().await;
    let pod = TestCgroup::new();
    let outside = TestCgroup::new();
    let mut tracer = Tracer::load(&config(pod.position())).expect("load");

    let run = clone_from_into(&pod.path, &outside.path, &["/bin/sh", "-c", "exit 8"]);
    let events = collect(&mut tracer);

    assert_eq!(run.code, 8);
    assert!(
        about(&events, run.child).is_empty(),
        "the child cloned out of the pod is not traced: {events:#?}"
    );
    assert!(events
        .iter()
        .all(|e| e.task().is_some_and(|t| t.cgroup_id == pod.position().id)));
    // The parent, in the pod, is: the tracer saw the helper run and end.
    let helper = about(&events, run.helper);
    assert!(
        helper
            .iter()
            .any(|e| matches!(e, Event::Exec(x) if x.task.comm == "clone_into")),
        "{events:#?}"
    );
    assert!(helper
        .iter()
        .any(|e| matches!(e, Event::Exit(x) if x.exit_code() == Some(8))));
}
