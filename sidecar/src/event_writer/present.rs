//! The processes and containers already running when the tracer started.

use linnix_ebpf::{Event, Task, Tracer};
use tracing::warn;

use super::EventWriter;
use crate::run::RunError;

impl EventWriter {
    /// Processes running before the programs were attached, once, so that
    /// their exits later have context; and the containers they make up.
    /// Programs are attached first: a process may then appear twice
    /// (present and fork), never zero times.
    pub fn present_all(&mut self, tracer: &mut Tracer) -> Result<(), RunError> {
        let mut found = Vec::new();
        if let Err(e) = tracer.present(&mut |e| found.push(e)) {
            warn!(error = %e, "cannot list the running processes");
        }
        let own_pid = std::process::id();
        found.retain(|e| {
            e.task()
                .is_some_and(|t| self.settings.skip_cgroup != Some(t.cgroup_id) && t.pid != own_pid)
        });
        found.sort_by_key(|e| e.task().map(|t| (t.start_ns, t.host_pid)));
        // Every one has a task: the others were left out above.
        let tasks: Vec<&Task> = found.iter().filter_map(Event::task).collect();
        let observed = self.lineage.present(&tasks);
        for (event, seen) in found.iter().zip(observed) {
            // The container first, then its processes, in start order.
            if let (Some(lifecycle), Some(task)) = (&seen.lifecycle, event.task()) {
                let (label, _) = self.container_of(task);
                self.lifecycle(event, lifecycle, label.as_deref());
            }
            let mut seen = seen;
            seen.lifecycle = None;
            self.report(event, &seen);
        }
        self.flush()
    }
}
