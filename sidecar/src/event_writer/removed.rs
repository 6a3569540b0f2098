//! A removed container cgroup, and the delayed removal of its metric series.

use std::time::Instant;

use linnix_ebpf::CgroupRemovedEvent;
use tracing::debug;

use super::EventWriter;
use crate::pod::container_id_from_cgroup;

impl EventWriter {
    /// A container cgroup is gone: forget it, and after
    /// `removed_series_ttl` drop the metric series labelled with its id (a
    /// scrape in between still sees their last values). Series labelled with
    /// a container name stay: the next container of that name counts on in
    /// them.
    pub(super) fn cgroup_removed(&mut self, removed: &CgroupRemovedEvent) {
        self.containers.remove(removed.cgroup_id);
        if let Some(id) = container_id_from_cgroup(&removed.cgroup_name) {
            let due = Instant::now() + self.settings.removed_series_ttl;
            self.retiring.push_back((id.to_owned(), due));
        }
    }

    /// Drop the series of removed containers that are due.
    pub(super) fn retire_series(&mut self, now: Instant) {
        while let Some((id, _)) = self.retiring.front().filter(|(_, due)| *due <= now) {
            if self.metrics.remove_container(id) {
                debug!(container = %id, "the series of a removed container are gone");
            }
            self.retiring.pop_front();
        }
    }
}
