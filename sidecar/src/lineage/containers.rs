//! The life of each container: its main process, from the entrypoint's
//! exec to that process's exit, and the OOM kills in between.

use linnix_ebpf::{ProcessId, Task};

use super::{Lineage, Observed};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// The container's entrypoint ran (the event is its exec), or, from the
    /// scan at start, the container was already running (`present`).
    Start {
        /// Boot-time ns of the start: the exec, or the main process's start.
        started_ns: u64,
        /// Since the first container start the tracer knows of.
        since_first_ns: u64,
        present: bool,
    },
    /// The container's main process exited (the event is its exit).
    Exit {
        runtime_ns: u64,
        /// The main process itself was the OOM victim.
        oom_killed: bool,
        /// OOM kills in the container while it ran.
        oom_kills: u32,
    },
}

#[derive(Debug, Default)]
pub(super) struct Unit {
    /// Processes of the container the tracer knows to be alive.
    pub(super) live: u32,
    pub(super) main: Main,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Main {
    /// Nothing has arrived yet.
    #[default]
    None,
    /// The runtime's first process arrived; its tree has not exec'd yet.
    Starting,
    Running {
        process: ProcessId,
        started_ns: u64,
        oom_killed: bool,
        oom_kills: u32,
    },
    /// The main process is gone; others may still run.
    Ended,
}

impl Lineage {
    /// A container (not the traced cgroup itself) whose first process
    /// arrived and whose entrypoint has not run yet.
    pub(super) fn is_starting(&self, unit: u64) -> bool {
        unit != self.target
            && self
                .units
                .get(&unit)
                .is_some_and(|u| u.main == Main::Starting)
    }

    pub(super) fn start(
        &mut self,
        unit: u64,
        process: ProcessId,
        started_ns: u64,
        present: bool,
    ) -> Lifecycle {
        let first = *self.first_start_ns.get_or_insert(started_ns);
        self.first_start_ns = Some(first.min(started_ns));
        if let Some(u) = self.units.get_mut(&unit) {
            u.main = Main::Running {
                process,
                started_ns,
                oom_killed: false,
                oom_kills: 0,
            };
        }
        Lifecycle::Start {
            started_ns,
            since_first_ns: started_ns.saturating_sub(first),
            present,
        }
    }

    /// A process left the container `unit_id` (`counted`: as one of its
    /// live processes). When it was the main process the container ends,
    /// with a `container_exit` if it exited (`exited_ns`: when).
    pub(super) fn left_unit(
        &mut self,
        unit_id: u64,
        process_id: ProcessId,
        counted: bool,
        exited_ns: Option<u64>,
    ) -> Option<Lifecycle> {
        let unit = self.units.get_mut(&unit_id)?;
        if counted {
            unit.live = unit.live.saturating_sub(1);
        }
        let mut lifecycle = None;
        if let Main::Running {
            process,
            started_ns,
            oom_killed,
            oom_kills,
        } = unit.main
        {
            if process == process_id {
                unit.main = Main::Ended;
                lifecycle = exited_ns.map(|ts| Lifecycle::Exit {
                    runtime_ns: ts.saturating_sub(started_ns),
                    oom_killed,
                    oom_kills,
                });
            }
        }
        if unit.live == 0 {
            self.units.remove(&unit_id);
        }
        lifecycle
    }

    pub(super) fn oom_kill(&mut self, task: &Task) -> Observed {
        let seen = self.marks_of(task);
        let unit_id = self
            .procs
            .get(&task.process())
            .map_or(task.cgroup_id, |p| p.unit);
        if let Some(Unit {
            main:
                Main::Running {
                    process,
                    oom_killed,
                    oom_kills,
                    ..
                },
            ..
        }) = self.units.get_mut(&unit_id)
        {
            *oom_kills += 1;
            *oom_killed |= *process == task.process();
        }
        seen
    }
}
