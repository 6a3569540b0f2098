//! Per-container memory metrics, from the kernel's memory samples: usage
//! and limit gauges, pressure occurrences by reason and the memcg's own
//! event counters (`memory.events`).
//!
//! The gauges follow the containers the last sample found: a container that
//! is gone (no processes left) loses them. The counters stay, like the other
//! per-container counters: an OOM-killed container's pressure is what an
//! alert wants to see after the kill.

use std::collections::{HashMap, HashSet};

use linnix_ebpf::{MemcgEvents, MemorySample, PressureReason};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PressureLabels {
    container: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    container: String,
    event: &'static str,
}

/// The `memory.events` counters, named as the kernel names them.
const MEMCG_EVENTS: [&str; 4] = ["high", "max", "oom", "oom_kill"];

fn memcg_events(e: &MemcgEvents) -> [u64; 4] {
    [e.high, e.max, e.oom, e.oom_kill]
}

/// The metric families, registered once with the tracer's registry.
pub struct MemoryFamilies {
    usage: Family<ContainerLabels, Gauge>,
    limit: Family<ContainerLabels, Gauge>,
    pressure: Family<PressureLabels, Counter>,
    events: Family<EventLabels, Counter>,
}

impl MemoryFamilies {
    pub fn register(registry: &mut Registry) -> Self {
        let families = MemoryFamilies {
            usage: Family::default(),
            limit: Family::default(),
            pressure: Family::default(),
            events: Family::default(),
        };
        registry.register(
            "linnix_container_memory_usage_bytes",
            "Memory charged to the container's memory cgroup (memory.current, v1 memory.usage_in_bytes)",
            families.usage.clone(),
        );
        registry.register(
            "linnix_container_memory_limit_bytes",
            "The container's memory limit (memory.max, v1 memory.limit_in_bytes); absent without a limit",
            families.limit.clone(),
        );
        registry.register(
            "linnix_container_memory_pressure",
            "Reclaims at a limit and threshold crossings of the container, by reason, whether reported as events or not",
            families.pressure.clone(),
        );
        registry.register(
            "linnix_container_memory_events",
            "The kernel's memory.events counters of the container's memory cgroup",
            families.events.clone(),
        );
        families
    }
}

/// What was last seen of one container cgroup.
struct Tracked {
    label: String,
    memcg_id: u64,
    pressure: [u64; 3],
    events: [u64; 4],
}

/// Turns successive samples into metric updates.
#[derive(Default)]
pub struct MemoryTracker {
    by_cgroup: HashMap<u64, Tracked>,
}

/// A counter that follows a kernel total: it grows by the difference, and a
/// total that went down (its state was dropped and started over) counts
/// from zero again.
fn follow(counter: &Counter, last: &mut u64, now: u64) {
    let delta = if now >= *last { now - *last } else { now };
    if delta > 0 {
        counter.inc_by(delta);
    }
    *last = now;
}

fn gauge_value(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

impl MemoryTracker {
    /// One sampling pass: `(label, sample)` for every container found, the
    /// label being what other metrics call the container, and the pressure
    /// totals of containers found gone (`(cgroup id, label if known,
    /// totals)`: one that lived less than a pass was never sampled, but its
    /// events named it).
    pub fn update(
        &mut self,
        families: &MemoryFamilies,
        samples: &[(String, &MemorySample)],
        gone: &[(u64, Option<String>, [u64; 3])],
    ) {
        let seen: HashSet<u64> = samples.iter().map(|(_, s)| s.cgroup_id).collect();
        let live_labels: HashSet<&str> = samples.iter().map(|(l, _)| l.as_str()).collect();
        // Gone first, so that a restarted container (new cgroup, same name)
        // keeps the gauges its new cgroup fills below.
        self.by_cgroup.retain(|id, tracked| {
            let live = seen.contains(id);
            if !live && !live_labels.contains(tracked.label.as_str()) {
                remove_gauges(families, &tracked.label);
            }
            live || gone.iter().any(|(g, _, _)| g == id)
        });
        // The last moments of a container that is gone.
        for (cgroup_id, label, totals) in gone {
            if let Some(label) = label {
                self.by_cgroup.entry(*cgroup_id).or_insert_with(|| Tracked {
                    label: label.clone(),
                    memcg_id: 0,
                    pressure: [0; 3],
                    events: [0; 4],
                });
            }
            if let Some(tracked) = self.by_cgroup.get_mut(cgroup_id) {
                for (i, reason) in PressureReason::ALL.into_iter().enumerate() {
                    let counter = families.pressure.get_or_create(&PressureLabels {
                        container: tracked.label.clone(),
                        reason: reason.as_str(),
                    });
                    follow(&counter, &mut tracked.pressure[i], totals[i]);
                }
            }
        }
        for (label, sample) in samples {
            let tracked = self
                .by_cgroup
                .entry(sample.cgroup_id)
                .or_insert_with(|| Tracked {
                    label: label.clone(),
                    memcg_id: sample.memcg_id,
                    pressure: [0; 3],
                    events: [0; 4],
                });
            if tracked.label != *label {
                // The container's name became known: its gauges move to the
                // name; the id's counters keep what they counted, and the
                // name's count on from there, so that sums stay right.
                remove_gauges(families, &tracked.label);
                tracked.label = label.clone();
            }
            let container = ContainerLabels {
                container: label.clone(),
            };
            families
                .usage
                .get_or_create(&container)
                .set(gauge_value(sample.usage_bytes));
            match sample.limit_bytes {
                Some(limit) => {
                    families
                        .limit
                        .get_or_create(&container)
                        .set(gauge_value(limit));
                }
                None => {
                    families.limit.remove(&container);
                }
            }
            for (i, reason) in PressureReason::ALL.into_iter().enumerate() {
                let counter = families.pressure.get_or_create(&PressureLabels {
                    container: label.clone(),
                    reason: reason.as_str(),
                });
                follow(&counter, &mut tracked.pressure[i], sample.pressure[i]);
            }
            if let Some(events) = &sample.events {
                if tracked.memcg_id != sample.memcg_id {
                    // Another memory cgroup now stands for the container
                    // (a shallower one turned up): its counts are its own
                    // history, not new events.
                    tracked.memcg_id = sample.memcg_id;
                    tracked.events = memcg_events(events);
                }
                for (i, now) in memcg_events(events).into_iter().enumerate() {
                    let counter = families.events.get_or_create(&EventLabels {
                        container: label.clone(),
                        event: MEMCG_EVENTS[i],
                    });
                    follow(&counter, &mut tracked.events[i], now);
                }
            }
        }
    }
}

fn remove_gauges(families: &MemoryFamilies, label: &str) {
    let container = ContainerLabels {
        container: label.to_owned(),
    };
    families.usage.remove(&container);
    families.limit.remove(&container);
}

#[cfg(test)]
impl MemoryTracker {
    fn update_samples(&mut self, families: &MemoryFamilies, samples: &[(String, &MemorySample)]) {
        self.update(families, samples, &[]);
    }
}

#[cfg(test)]
mod tests;
