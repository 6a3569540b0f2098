//! What the writer remembers of each container cgroup: its label and its
//! counters, so that an event neither parses the cgroup name nor builds
//! metric labels.

use std::collections::HashMap;

use crate::metrics::{ContainerCounters, Metrics};
use crate::names::{ContainerNames, Label};

/// Containers restart with new cgroups; past this many remembered ones the
/// cache starts over rather than grow without bound.
const MAX_CACHED_CONTAINERS: usize = 256;

pub(super) struct Container {
    kernfs: String,
    pub(super) label: Option<Label>,
    pub(super) counters: ContainerCounters,
}

/// Per container cgroup id; labelled again whenever the container names
/// change.
pub(super) struct Containers {
    /// The traced cgroup: processes directly in it belong to no container.
    target: u64,
    by_id: HashMap<u64, Container>,
}

impl Containers {
    pub(super) fn new(target: u64) -> Self {
        Containers {
            target,
            by_id: HashMap::new(),
        }
    }

    pub(super) fn get(&self, cgroup_id: u64) -> Option<&Container> {
        self.by_id.get(&cgroup_id)
    }

    pub(super) fn label(&self, cgroup_id: u64) -> Option<&Label> {
        self.get(cgroup_id).and_then(|c| c.label.as_ref())
    }

    pub(super) fn remove(&mut self, cgroup_id: u64) {
        self.by_id.remove(&cgroup_id);
    }

    /// `kernfs` may be empty where the event names the cgroup only by id.
    pub(super) fn entry(
        &mut self,
        names: &ContainerNames,
        metrics: &Metrics,
        cgroup_id: u64,
        kernfs: &str,
    ) -> &mut Container {
        if self.by_id.len() >= MAX_CACHED_CONTAINERS && !self.by_id.contains_key(&cgroup_id) {
            self.by_id.clear();
        }
        let target = self.target;
        let entry = self
            .by_id
            .entry(cgroup_id)
            .or_insert_with(|| new_container(names, metrics, target, cgroup_id, kernfs.to_owned()));
        // A leave names the cgroup only by id: learn the name later.
        if entry.kernfs.is_empty() && !kernfs.is_empty() {
            *entry = new_container(names, metrics, target, cgroup_id, kernfs.to_owned());
        }
        entry
    }

    pub(super) fn relabel(&mut self, names: &ContainerNames, metrics: &Metrics) {
        for (&id, entry) in self.by_id.iter_mut() {
            let kernfs = std::mem::take(&mut entry.kernfs);
            *entry = new_container(names, metrics, self.target, id, kernfs);
        }
    }
}

fn new_container(
    names: &ContainerNames,
    metrics: &Metrics,
    target: u64,
    cgroup_id: u64,
    kernfs: String,
) -> Container {
    // Directly in the traced cgroup: no container.
    let label = (cgroup_id != target)
        .then(|| names.label(&kernfs))
        .flatten();
    let counters = metrics.container(label.as_ref().map(|l| &*l.text));
    Container {
        kernfs,
        label,
        counters,
    }
}
