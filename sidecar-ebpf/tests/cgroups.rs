//! The target cgroup and its containers: what is inside is reported under
//! its container (one level below the target), a neighbour is not, moves
//! into, between and out of containers and the removal of a container
//! cgroup are. Real BPF against real processes (root needed).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use linnix_ebpf::{CgroupChange, Event, Tracer};

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
