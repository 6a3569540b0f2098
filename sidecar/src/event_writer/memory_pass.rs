//! The kernel's memory sampling passes, labelled like every other metric
//! of the container.

use linnix_ebpf::MemoryPass;

use super::EventWriter;

impl EventWriter {
    /// One memory sampling pass of the kernel: the per-container memory
    /// metrics.
    pub fn memory(&mut self, pass: &MemoryPass) {
        self.relabel_if_names_changed();
        let mut labelled = Vec::with_capacity(pass.samples.len());
        for sample in &pass.samples {
            if self.settings.skip_cgroup == Some(sample.cgroup_id) {
                continue;
            }
            let entry = self.entry(sample.cgroup_id, &sample.cgroup_name);
            let unnamed = entry.label.as_ref().is_some_and(|l| !l.named);
            let label = entry
                .label
                .as_ref()
                .map(|l| l.text.to_string())
                .unwrap_or_default();
            if unnamed {
                self.settings.names.request_refresh();
            }
            labelled.push((label, sample));
        }
        // A container gone before any pass saw it is known by its events.
        let gone: Vec<_> = pass
            .gone
            .iter()
            .map(|(id, totals)| {
                let label = self.containers.get(*id).map(|c| {
                    c.label
                        .as_ref()
                        .map(|l| l.text.to_string())
                        .unwrap_or_default()
                });
                (*id, label, *totals)
            })
            .collect();
        self.memory.update(&self.metrics.memory, &labelled, &gone);
    }
}
