//! Where each process of the pod came from, and the life of its containers.
//!
//! The kernel says, for every event, which process it is about (its
//! identity), its parent when that is in the pod, and its container-level
//! cgroup. From that this module derives, without I/O:
//!
//! - `entered`: the process came into its container from outside it (a
//!   cgroup join, or a fork by a parent outside the container) while the
//!   container already had processes: `kubectl exec`, an exec probe,
//!   `crictl exec`, a runtime's `exec`. Its descendants inherit the mark.
//! - the container's main process: the first process to arrive in an
//!   empty container cgroup is the runtime's init; the first exec in its
//!   tree is the container's entrypoint (`container_start`), and the exit of
//!   the process that ran it ends the container (`container_exit`).
//! - exec probes: what entered is one tree of processes (a runtime's helpers
//!   fork before anything execs). Its first exec decides: when it runs one
//!   of the container's exec probes, the whole tree carries the probe's
//!   name. Later execs in an entered tree (`kubectl exec`, then typing the
//!   probe's command) decide nothing. Until the decision the tree's events
//!   are marked `hold`, so that a writer can keep them back and mark (or
//!   leave out) the runtime's set-up with the probe.
//!
//! The traced cgroup itself (processes outside any child cgroup) is treated
//! like a container for `entered`, but has no start or exit of its own.

mod containers;

use std::collections::HashMap;
use std::sync::Arc;

use linnix_ebpf::{CgroupChange, Event, ProcessId, Task};

pub use containers::Lifecycle;
use containers::{Main, Unit};

/// Processes remembered at most. Each is a few dozen bytes; past this many
/// (only if exits went missing, as when the ring overflows) new ones are no
/// longer tracked, and their marks are not inherited.
const MAX_PROCESSES: usize = 16_384;

/// The marks an event's process carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    pub entered: bool,
    /// `<container>/<liveness|readiness|startup>`.
    pub exec_probe: Option<Arc<str>>,
}

/// What one event told about its process and its container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub marks: Marks,
    /// The process entered its container with this event (count it once).
    pub entered_now: bool,
    /// This exec matched an exec probe.
    pub probe_now: bool,
    pub lifecycle: Option<Lifecycle>,
    /// The process belongs to the entered tree with this root, which has
    /// not decided yet whether it is an exec probe.
    pub hold: Option<ProcessId>,
    /// That tree decided with this event (its first exec, or its last
    /// process gone): what was held can go, with `marks.exec_probe`.
    pub release: Option<ProcessId>,
}

#[derive(Debug, Clone, Default)]
struct Proc {
    unit: u64,
    marks: Marks,
    /// The root of the entered tree it belongs to.
    entry: Option<ProcessId>,
}

/// One entered tree.
#[derive(Debug, Default)]
struct Entry {
    /// `None` until its first exec; then the probe it ran, if any.
    decided: Option<Option<Arc<str>>>,
    /// Its processes the tracer knows to be alive.
    members: u32,
}

/// Looks up the exec probe an argv is, in the container with this cgroup id.
pub type ProbeLookup<'a> = &'a dyn Fn(u64, &[String]) -> Option<Arc<str>>;

pub struct Lineage {
    /// The traced cgroup's own id: not a container.
    target: u64,
    procs: HashMap<ProcessId, Proc>,
    units: HashMap<u64, Unit>,
    entries: HashMap<ProcessId, Entry>,
    first_start_ns: Option<u64>,
    full_warned: bool,
}

impl Lineage {
    pub fn new(target: u64) -> Self {
        Lineage {
            target,
            procs: HashMap::new(),
            units: HashMap::new(),
            entries: HashMap::new(),
            first_start_ns: None,
            full_warned: false,
        }
    }

    /// The processes found running at start, in any order. Returns what was
    /// learnt about each, in the order given.
    pub fn present(&mut self, tasks: &[&Task]) -> Vec<Observed> {
        // Parents start before their children: in start order a parent in
        // the pod is always known when its child comes.
        let mut order: Vec<usize> = (0..tasks.len()).collect();
        order.sort_by_key(|&i| (tasks[i].start_ns, tasks[i].host_pid));
        let mut out = vec![Observed::default(); tasks.len()];
        for i in order {
            let task = tasks[i];
            let mut seen = self.born(task, task.parent());
            // The first of a container to be found running is its main
            // process (the runtime's init has long exec'd the entrypoint).
            if self.is_starting(task.cgroup_id) && !seen.marks.entered {
                seen.lifecycle =
                    Some(self.start(task.cgroup_id, task.process(), task.start_ns, true));
            }
            // What entered long ago is no probe being set up: decided.
            if let Some(entry) = self.entry_of(task).and_then(|e| self.entries.get_mut(&e)) {
                entry.decided.get_or_insert(None);
            }
            out[i] = seen;
        }
        out
    }

    pub fn observe(&mut self, event: &Event, probe_of: ProbeLookup<'_>) -> Observed {
        // A departing process's entered tree, read before it is forgotten.
        let departing = match event {
            Event::Exit(e) => self.entry_of(&e.task),
            Event::Cgroup(c) => self.entry_of(&c.task),
            _ => None,
        };
        let decided_before = departing
            .and_then(|root| self.entries.get(&root))
            .map(|e| e.decided.clone());
        let mut seen = match event {
            Event::Fork(f) if f.thread => self.marks_of(&f.task),
            // The forker, not the parent: a clone with CLONE_PARENT (as
            // runc's nsexec makes) leaves the child the forker's parent.
            Event::Fork(f) => self.born(&f.task, f.creator),
            Event::Present(task) => self.born(task, task.parent()),
            Event::Exec(e) => self.exec(&e.task, &e.argv, probe_of),
            Event::Exit(e) => self.gone(&e.task, true),
            Event::OomKill(o) => self.oom_kill(&o.task),
            Event::Cgroup(c) => match c.change {
                CgroupChange::Join => self.arrive(&c.task, Marks::default()),
                CgroupChange::Move { .. } => {
                    let marks = self.gone(&c.task, false).marks;
                    self.arrive(&c.task, marks)
                }
                CgroupChange::Leave => self.gone(&c.task, false),
            },
            // Says how the process is marked; changes nothing.
            Event::MemoryPressure(p) => self.marks_of(&p.task),
            // Not about a process.
            Event::Lost(_) | Event::CgroupRemoved(_) => return Observed::default(),
        };
        let Some(root) = event.task().and_then(|t| self.entry_of(t)).or(departing) else {
            return seen;
        };
        let decided = self.entries.get(&root).map(|e| e.decided.clone());
        let tree_alive = decided.is_some();
        match decided.or(decided_before) {
            Some(None) if tree_alive => seen.hold = Some(root),
            // The tree's last process left before anything ran: what was
            // held goes, as no probe.
            Some(None) => seen.release = seen.release.or(Some(root)),
            Some(Some(probe)) if seen.marks.exec_probe.is_none() => {
                seen.marks.exec_probe = probe;
            }
            Some(Some(_)) | None => {}
        }
        seen
    }

    fn entry_of(&self, task: &Task) -> Option<ProcessId> {
        self.procs.get(&task.process()).and_then(|p| p.entry)
    }

    fn marks_of(&self, task: &Task) -> Observed {
        Observed {
            marks: self
                .procs
                .get(&task.process())
                .map(|p| p.marks.clone())
                .unwrap_or_default(),
            ..Observed::default()
        }
    }

    /// A new process (a fork, or one found running): it inherits from the
    /// process it came from (`origin`: the one that forked it, or for one
    /// found running its parent) when that is in the same container, else
    /// it arrived from outside that container.
    fn born(&mut self, task: &Task, origin: Option<ProcessId>) -> Observed {
        let unit = task.cgroup_id;
        let parent = origin.map(|p| self.procs.get(&p).cloned());
        match parent {
            Some(Some(parent)) if parent.unit == unit => {
                let marks = parent.marks.clone();
                self.insert(task.process(), Proc { unit, ..parent });
                Observed {
                    marks,
                    ..Observed::default()
                }
            }
            Some(Some(parent)) => self.arrive(task, parent.marks),
            // A parent in the pod the tracer does not know (its events
            // were lost): born inside, marks unknown.
            Some(None) => {
                self.insert(
                    task.process(),
                    Proc {
                        unit,
                        ..Proc::default()
                    },
                );
                Observed::default()
            }
            None => self.arrive(task, Marks::default()),
        }
    }

    /// The process came into its container from outside it. Into an empty
    /// container it is the runtime's first process; into a live one it
    /// entered, as the root of a new entered tree.
    fn arrive(&mut self, task: &Task, inherited: Marks) -> Observed {
        let id = task.process();
        let unit = self.units.entry(task.cgroup_id).or_default();
        let mut marks = inherited;
        let entered_now = unit.live > 0 && !marks.entered;
        if unit.live == 0 {
            unit.main = Main::Starting;
        } else {
            marks.entered = true;
        }
        let entry = entered_now.then(|| {
            self.entries.entry(id).or_default();
            id
        });
        self.insert(
            id,
            Proc {
                unit: task.cgroup_id,
                marks: marks.clone(),
                entry,
            },
        );
        Observed {
            marks,
            entered_now,
            ..Observed::default()
        }
    }

    fn exec(&mut self, task: &Task, argv: &[String], probe_of: ProbeLookup<'_>) -> Observed {
        let id = task.process();
        if !self.procs.contains_key(&id) {
            // Its fork was not seen: judge it by its parent.
            self.born(task, task.parent());
        }
        let mut seen = Observed::default();
        let mut unit = task.cgroup_id;
        if let Some(proc) = self.procs.get_mut(&id) {
            // The first exec of an entered tree decides whether it is a probe.
            let entry = proc
                .entry
                .and_then(|root| Some((root, self.entries.get_mut(&root)?)));
            if let Some((root, entry @ Entry { decided: None, .. })) = entry {
                let probe = probe_of(proc.unit, argv);
                seen.probe_now = probe.is_some();
                entry.decided = Some(probe.clone());
                proc.marks.exec_probe = probe;
                seen.release = Some(root);
            }
            seen.marks = proc.marks.clone();
            unit = proc.unit;
        }
        if self.is_starting(unit) && !seen.marks.entered {
            seen.lifecycle = Some(self.start(unit, id, task.ts_boot_ns, false));
        }
        seen
    }

    /// The process left its container: it exited (`exited`), or moved out.
    fn gone(&mut self, task: &Task, exited: bool) -> Observed {
        let id = task.process();
        let proc = self.procs.remove(&id);
        let unit_id = proc.as_ref().map_or(task.cgroup_id, |p| p.unit);
        if let Some(root) = proc.as_ref().and_then(|p| p.entry) {
            if let Some(entry) = self.entries.get_mut(&root) {
                entry.members = entry.members.saturating_sub(1);
                if entry.members == 0 {
                    self.entries.remove(&root);
                }
            }
        }
        let exited_ns = exited.then_some(task.ts_boot_ns);
        let lifecycle = self.left_unit(unit_id, id, proc.is_some(), exited_ns);
        Observed {
            marks: proc.map(|p| p.marks).unwrap_or_default(),
            lifecycle,
            ..Observed::default()
        }
    }

    fn insert(&mut self, id: ProcessId, proc: Proc) {
        if self.procs.len() >= MAX_PROCESSES && !self.procs.contains_key(&id) {
            if !self.full_warned {
                self.full_warned = true;
                tracing::warn!(
                    limit = MAX_PROCESSES,
                    "too many live processes to track; new ones are reported without their lineage (entered, exec probe)"
                );
            }
            return;
        }
        let (unit, entry) = (proc.unit, proc.entry);
        if self.procs.insert(id, proc).is_none() {
            self.units.entry(unit).or_default().live += 1;
            if let Some(entry) = entry.and_then(|root| self.entries.get_mut(&root)) {
                entry.members += 1;
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        (self.procs.len(), self.units.len())
    }
}

#[cfg(test)]
mod tests;
