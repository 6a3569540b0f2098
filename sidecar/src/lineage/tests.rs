//! Tests of the lineage state machine, without a kernel: each scenario is a
//! sequence of events as the programs would report them.
//!
//! Longer than 400 lines: each scenario spells out its events one by one, as
//! a specification should, and they share the event builders at the top.

use super::*;
use linnix_ebpf::{
    CgroupEvent, ExecEvent, ExitEvent, ForkEvent, MemcgUsage, OomKillEvent, Privileges,
};

const POD: u64 = 1;
const APP: u64 = 10;
const SIDE: u64 = 20;

/// A process `pid` started at `pid * 1000`, in `unit`, child of
/// `parent` (a pid in the pod) or of something outside.
fn task(pid: u32, unit: u64, parent: Option<u32>, ts: u64) -> Task {
    Task {
        ts_boot_ns: ts,
        host_pid: pid,
        host_tid: pid,
        pid,
        ppid: parent.unwrap_or(0),
        host_ppid: parent.unwrap_or(999),
        tid: pid,
        inner_pid: pid,
        comm: format!("p{pid}"),
        cgroup_id: unit,
        cgroup_name: format!("u{unit}"),
        start_ns: u64::from(pid) * 1000,
        parent_start_ns: parent.map_or(5, |p| u64::from(p) * 1000),
        parent_in_target: parent.is_some(),
        uid: 0,
        gid: 0,
    }
}

/// A fork by the child's parent.
fn fork(t: Task) -> Event {
    let creator = t.parent();
    fork_by(t, creator)
}

/// A fork by `creator`, whoever the parent is (a clone with CLONE_PARENT).
fn fork_by(t: Task, creator: Option<ProcessId>) -> Event {
    Event::Fork(ForkEvent {
        task: t,
        thread: false,
        creator,
    })
}

fn join(t: Task) -> Event {
    Event::Cgroup(CgroupEvent {
        task: t,
        change: CgroupChange::Join,
    })
}

fn exec(t: Task, argv: &[&str]) -> Event {
    Event::Exec(ExecEvent {
        task: t,
        filename: argv[0].to_owned(),
        filename_truncated: false,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        argv_truncated: false,
        argv_empty: false,
        privileges: Privileges::default(),
    })
}

fn exit(t: Task, status: u32) -> Event {
    Event::Exit(ExitEvent {
        task: t,
        status,
        lifetime_ns: 1,
    })
}

/// `cat /tmp/healthy` is app's liveness probe.
fn probes(unit: u64, argv: &[String]) -> Option<Arc<str>> {
    (unit == APP && argv == ["cat", "/tmp/healthy"]).then(|| Arc::from("app/liveness"))
}

fn run(l: &mut Lineage, e: Event) -> Observed {
    l.observe(&e, &probes)
}

#[test]
fn a_container_starts_with_its_entrypoint_and_ends_with_it() {
    let mut l = Lineage::new(POD);
    // The runtime's init joins the new cgroup, forks the process that
    // will exec the entrypoint, and goes.
    let seen = run(&mut l, join(task(100, APP, None, 1_000)));
    assert_eq!(
        seen,
        Observed::default(),
        "the first to arrive is no intruder"
    );
    run(&mut l, fork(task(101, APP, Some(100), 2_000)));
    run(&mut l, exit(task(100, APP, None, 3_000), 0));
    let seen = run(
        &mut l,
        exec(task(101, APP, Some(100), 5_000), &["/app", "serve"]),
    );
    assert_eq!(
        seen.lifecycle,
        Some(Lifecycle::Start {
            started_ns: 5_000,
            since_first_ns: 0,
            present: false
        })
    );
    // A second exec of the main process starts nothing.
    let seen = run(&mut l, exec(task(101, APP, Some(100), 6_000), &["/app2"]));
    assert_eq!(seen.lifecycle, None);
    // Its child's exit is no container exit, its own is.
    run(&mut l, fork(task(102, APP, Some(101), 7_000)));
    assert_eq!(
        run(&mut l, exit(task(102, APP, Some(101), 8_000), 0)).lifecycle,
        None
    );
    let seen = run(&mut l, exit(task(101, APP, Some(100), 65_000), 0x300));
    assert_eq!(
        seen.lifecycle,
        Some(Lifecycle::Exit {
            runtime_ns: 60_000,
            oom_killed: false,
            oom_kills: 0
        })
    );
    assert_eq!(l.tracked(), (0, 0), "nothing left behind");
    // The same cgroup used again (a restart in place) starts again.
    run(&mut l, join(task(200, APP, None, 70_000)));
    let seen = run(&mut l, exec(task(200, APP, None, 71_000), &["/app"]));
    assert!(matches!(
        seen.lifecycle,
        Some(Lifecycle::Start {
            since_first_ns: 66_000,
            ..
        })
    ));
}

#[test]
fn runc_starts_a_container_with_clone_parent_children() {
    // As measured with runc 1.1 under podman: `runc create` (outside)
    // moves its init into the new cgroup; the init clones two children with
    // CLONE_PARENT, so their parent is `runc create` too; the grandchild
    // execs the entrypoint.
    let mut l = Lineage::new(POD);
    let init = task(100, APP, None, 1_000);
    assert_eq!(run(&mut l, join(init.clone())), Observed::default());
    let seen = run(
        &mut l,
        fork_by(task(101, APP, None, 1_100), Some(init.process())),
    );
    assert!(
        !seen.marks.entered && !seen.entered_now,
        "the init's own child"
    );
    let child = task(101, APP, None, 1_100).process();
    let seen = run(&mut l, fork_by(task(102, APP, None, 1_200), Some(child)));
    assert!(!seen.marks.entered);
    run(&mut l, exit(task(100, APP, None, 1_300), 0));
    run(&mut l, exit(task(101, APP, None, 1_400), 0));
    let seen = run(
        &mut l,
        exec(task(102, APP, None, 1_500), &["/catatonit", "-P"]),
    );
    assert!(matches!(
        seen.lifecycle,
        Some(Lifecycle::Start {
            started_ns: 1_500,
            ..
        })
    ));
    // `runc exec`: only its last child is moved in; it entered.
    let seen = run(&mut l, join(task(200, APP, None, 2_000)));
    assert!(seen.entered_now && seen.hold.is_some());
    // A clone by a process outside the container (into its cgroup) enters.
    let seen = run(&mut l, fork_by(task(300, APP, Some(102), 3_000), None));
    assert!(
        seen.entered_now,
        "forked from outside, whoever its parent is"
    );
    let seen = run(&mut l, exit(task(102, APP, None, 9_500), 0));
    assert!(matches!(
        seen.lifecycle,
        Some(Lifecycle::Exit {
            runtime_ns: 8_000,
            ..
        })
    ));
}

#[test]
fn who_entered_a_running_container_and_the_probes_it_ran() {
    let mut l = Lineage::new(POD);
    run(&mut l, join(task(100, APP, None, 1_000)));
    run(&mut l, exec(task(100, APP, None, 2_000), &["/app"]));
    // kubectl exec: joins the live container; its child inherits.
    let seen = run(&mut l, join(task(300, APP, None, 3_000)));
    assert!(seen.entered_now && seen.marks.entered);
    let seen = run(&mut l, exec(task(300, APP, None, 3_500), &["sh"]));
    assert!(seen.marks.entered && !seen.entered_now && !seen.probe_now);
    let seen = run(&mut l, fork(task(301, APP, Some(300), 4_000)));
    assert!(seen.marks.entered && !seen.entered_now);
    // The shell running the probe's command is not the probe: it did not
    // enter with it. A probe enters and runs it.
    let seen = run(
        &mut l,
        exec(task(301, APP, Some(300), 4_500), &["cat", "/tmp/healthy"]),
    );
    assert!(!seen.probe_now && seen.marks.exec_probe.is_none());
    run(&mut l, join(task(400, APP, None, 5_000)));
    let seen = run(
        &mut l,
        exec(task(400, APP, None, 5_100), &["cat", "/tmp/healthy"]),
    );
    assert!(seen.probe_now);
    assert_eq!(seen.marks.exec_probe.as_deref(), Some("app/liveness"));
    let seen = run(&mut l, fork(task(401, APP, Some(400), 5_200)));
    assert_eq!(seen.marks.exec_probe.as_deref(), Some("app/liveness"));
    let seen = run(&mut l, exit(task(400, APP, None, 5_300), 0));
    assert_eq!(seen.marks.exec_probe.as_deref(), Some("app/liveness"));
    assert_eq!(seen.lifecycle, None);
    // A fork by a parent outside (clone into the cgroup) enters too.
    let seen = run(&mut l, fork(task(500, APP, None, 6_000)));
    assert!(seen.entered_now);
    // Threads carry their process's marks.
    let thread = Event::Fork(ForkEvent {
        task: task(300, APP, None, 7_000),
        thread: true,
        creator: None,
    });
    assert!(l.observe(&thread, &probes).marks.entered);
}

#[test]
fn an_entered_tree_is_held_until_its_first_exec_decides() {
    let mut l = Lineage::new(POD);
    run(&mut l, join(task(100, APP, None, 1_000)));
    run(&mut l, exec(task(100, APP, None, 2_000), &["/app"]));
    // A runtime's exec: its init forks twice, the last one runs the
    // probe; the first two go before or after.
    let root = task(300, APP, None, 3_000).process();
    let seen = run(&mut l, fork(task(300, APP, None, 3_000)));
    assert_eq!(seen.hold, Some(root));
    assert_eq!(
        run(&mut l, fork(task(301, APP, Some(300), 3_100))).hold,
        Some(root)
    );
    assert_eq!(
        run(&mut l, fork(task(302, APP, Some(301), 3_200))).hold,
        Some(root)
    );
    assert_eq!(
        run(&mut l, exit(task(301, APP, Some(300), 3_300), 0)).hold,
        Some(root)
    );
    let seen = run(
        &mut l,
        exec(task(302, APP, Some(301), 3_400), &["cat", "/tmp/healthy"]),
    );
    assert_eq!((seen.hold, seen.release), (None, Some(root)));
    assert_eq!(seen.marks.exec_probe.as_deref(), Some("app/liveness"));
    // After the decision the rest of the tree carries the probe too.
    let seen = run(&mut l, exit(task(300, APP, None, 3_500), 0));
    assert_eq!((seen.hold, seen.release), (None, None));
    assert_eq!(seen.marks.exec_probe.as_deref(), Some("app/liveness"));
    let seen = run(&mut l, exit(task(302, APP, Some(301), 3_600), 0));
    assert_eq!(seen.marks.exec_probe.as_deref(), Some("app/liveness"));
    // A tree that goes without running anything is released as no probe.
    let other = task(400, APP, None, 4_000);
    assert_eq!(run(&mut l, join(other.clone())).hold, Some(other.process()));
    let seen = run(&mut l, exit(other.clone(), 0));
    assert_eq!((seen.hold, seen.release), (None, Some(other.process())));
    assert_eq!(seen.marks.exec_probe, None);
    // The main process and its children are never held.
    assert_eq!(
        run(&mut l, fork(task(101, APP, Some(100), 5_000))).hold,
        None
    );
}

#[test]
fn present_processes_make_up_running_containers() {
    let mut l = Lineage::new(POD);
    let init = task(100, APP, None, 0);
    let child = task(110, APP, Some(100), 0);
    let shell = task(120, APP, None, 0); // kubectl exec, still open
    let side = task(50, SIDE, None, 0);
    let direct = task(60, POD, None, 0);
    let seen = l.present(&[&shell, &child, &init, &side, &direct]);
    assert!(seen[0].marks.entered, "arrived after the init");
    assert!(seen[0].entered_now);
    assert!(!seen[1].marks.entered && seen[1].lifecycle.is_none());
    assert_eq!(
        seen[2].lifecycle,
        Some(Lifecycle::Start {
            started_ns: 100_000,
            since_first_ns: 50_000,
            present: true
        })
    );
    assert!(matches!(
        seen[3].lifecycle,
        Some(Lifecycle::Start {
            since_first_ns: 0,
            ..
        })
    ));
    assert_eq!(
        seen[4].lifecycle, None,
        "the traced cgroup itself is no container"
    );
    // The main process found running ends the container.
    let seen = run(&mut l, exit(task(100, APP, None, 300_000), 9));
    assert!(matches!(
        seen.lifecycle,
        Some(Lifecycle::Exit {
            runtime_ns: 200_000,
            ..
        })
    ));
}

#[test]
fn an_oom_kill_of_the_main_process_is_the_containers() {
    let mut l = Lineage::new(POD);
    run(&mut l, join(task(100, APP, None, 1_000)));
    run(&mut l, exec(task(100, APP, None, 2_000), &["/app"]));
    run(&mut l, fork(task(101, APP, Some(100), 3_000)));
    let oom = |t: Task| {
        Event::OomKill(OomKillEvent {
            task: t,
            rss_anon_kb: 1,
            rss_file_kb: 0,
            rss_shmem_kb: 0,
            memcg: Some(MemcgUsage {
                usage_bytes: 1,
                limit_bytes: 1,
            }),
        })
    };
    run(&mut l, oom(task(101, APP, Some(100), 4_000)));
    run(&mut l, exit(task(101, APP, Some(100), 4_100), 9));
    run(&mut l, oom(task(100, APP, None, 5_000)));
    let seen = run(&mut l, exit(task(100, APP, None, 5_100), 9));
    assert_eq!(
        seen.lifecycle,
        Some(Lifecycle::Exit {
            runtime_ns: 3_100,
            oom_killed: true,
            oom_kills: 2
        })
    );
}

#[test]
fn moves_between_containers_and_out() {
    let mut l = Lineage::new(POD);
    run(&mut l, join(task(100, APP, None, 1_000)));
    run(&mut l, exec(task(100, APP, None, 2_000), &["/app"]));
    run(&mut l, join(task(200, SIDE, None, 3_000)));
    run(&mut l, exec(task(200, SIDE, None, 3_100), &["/side"]));
    // Moved from the sidecar into app: entered app.
    let moved = Event::Cgroup(CgroupEvent {
        task: task(200, APP, None, 4_000),
        change: CgroupChange::Move {
            from_cgroup_id: SIDE,
        },
    });
    let seen = l.observe(&moved, &probes);
    assert!(seen.entered_now && seen.marks.entered);
    // ...which ended the sidecar's main process there (no exit line).
    assert_eq!(l.tracked(), (2, 1));
    let left = Event::Cgroup(CgroupEvent {
        task: task(200, APP, None, 5_000),
        change: CgroupChange::Leave,
    });
    let seen = l.observe(&left, &probes);
    assert!(seen.marks.entered && seen.lifecycle.is_none());
    assert_eq!(l.tracked(), (1, 1));
    // An exit of a process never seen changes nothing.
    assert_eq!(
        run(&mut l, exit(task(999, APP, None, 6_000), 0)),
        Observed::default()
    );
    assert_eq!(l.tracked(), (1, 1));
}

#[test]
fn the_traced_cgroup_itself_has_entries_but_no_container() {
    let mut l = Lineage::new(POD);
    // trace -- CMD: the command joins the scratch cgroup and runs.
    assert_eq!(
        run(&mut l, join(task(100, POD, None, 1_000))),
        Observed::default()
    );
    assert_eq!(
        run(&mut l, exec(task(100, POD, None, 2_000), &["make"])).lifecycle,
        None
    );
    assert!(run(&mut l, join(task(200, POD, None, 3_000))).entered_now);
    assert_eq!(
        run(&mut l, exit(task(100, POD, None, 4_000), 0)).lifecycle,
        None
    );
}

#[test]
fn tracking_is_bounded() {
    let mut l = Lineage::new(POD);
    run(&mut l, join(task(1, APP, None, 0)));
    for pid in 2..(MAX_PROCESSES as u32 + 100) {
        run(&mut l, fork(task(pid, APP, Some(1), 0)));
    }
    assert_eq!(l.tracked().0, MAX_PROCESSES);
    // Untracked processes still get an answer.
    let seen = run(
        &mut l,
        exec(task(MAX_PROCESSES as u32 + 50, APP, Some(1), 0), &["x"]),
    );
    assert!(!seen.marks.entered);
}
