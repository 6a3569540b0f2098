//! Per-container memory metrics, from the kernel's memory samples: usage
//! and limit gauges, pressure occurrences by reason and the memcg's own
//! event counters (`memory.events`).
//!
//! Series follow the containers the last sample found: a container that is
//! gone (no processes left) loses its series.

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
    /// label being what other metrics call the container.
    pub fn update(&mut self, families: &MemoryFamilies, samples: &[(String, &MemorySample)]) {
        let seen: HashSet<u64> = samples.iter().map(|(_, s)| s.cgroup_id).collect();
        let live_labels: HashSet<&str> = samples.iter().map(|(l, _)| l.as_str()).collect();
        // Gone first, so that a restarted container (new cgroup, same name)
        // keeps the series its new cgroup fills below.
        self.by_cgroup.retain(|id, tracked| {
            let keep = seen.contains(id);
            if !keep && !live_labels.contains(tracked.label.as_str()) {
                remove_series(families, &tracked.label);
            }
            keep
        });
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
                // The container's name became known: the id-labelled series go.
                remove_series(families, &tracked.label);
                tracked.label = label.clone();
                tracked.pressure = [0; 3];
                tracked.events = [0; 4];
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

fn remove_series(families: &MemoryFamilies, label: &str) {
    let container = ContainerLabels {
        container: label.to_owned(),
    };
    families.usage.remove(&container);
    families.limit.remove(&container);
    for reason in PressureReason::ALL {
        families.pressure.remove(&PressureLabels {
            container: label.to_owned(),
            reason: reason.as_str(),
        });
    }
    for event in MEMCG_EVENTS {
        families.events.remove(&EventLabels {
            container: label.to_owned(),
            event,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cgroup_id: u64, usage: u64, pressure: [u64; 3], oom_kill: u64) -> MemorySample {
        MemorySample {
            cgroup_id,
            cgroup_name: format!("c{cgroup_id}"),
            memcg_id: 100 + cgroup_id,
            usage_bytes: usage,
            limit_bytes: Some(64 << 20),
            high_bytes: None,
            events: Some(MemcgEvents {
                high: 0,
                max: 5,
                oom: oom_kill,
                oom_kill,
            }),
            pressure,
        }
    }

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
        out
    }

    #[test]
    fn gauges_and_counters_follow_the_samples() {
        let mut registry = Registry::default();
        let families = MemoryFamilies::register(&mut registry);
        let mut tracker = MemoryTracker::default();
        let a = sample(1, 1000, [2, 0, 1], 0);
        tracker.update(&families, &[("app".into(), &a)]);
        let a = sample(1, 2000, [5, 0, 1], 1);
        let b = MemorySample {
            limit_bytes: None,
            events: None,
            ..sample(2, 30, [0; 3], 0)
        };
        tracker.update(&families, &[("app".into(), &a), ("db".into(), &b)]);
        let out = text(&registry);
        for want in [
            "linnix_container_memory_usage_bytes{container=\"app\"} 2000",
            "linnix_container_memory_usage_bytes{container=\"db\"} 30",
            "linnix_container_memory_limit_bytes{container=\"app\"} 67108864",
            "linnix_container_memory_pressure_total{container=\"app\",reason=\"reclaim\"} 5",
            "linnix_container_memory_pressure_total{container=\"app\",reason=\"threshold\"} 1",
            "linnix_container_memory_pressure_total{container=\"db\",reason=\"high\"} 0",
            // The kernel's counters as they are, history included.
            "linnix_container_memory_events_total{container=\"app\",event=\"max\"} 5",
            "linnix_container_memory_events_total{container=\"app\",event=\"oom_kill\"} 1",
        ] {
            assert!(out.contains(want), "{want} missing in\n{out}");
        }
        assert!(!out.contains("limit_bytes{container=\"db\"}"), "{out}");
        assert!(!out.contains("events_total{container=\"db\""), "{out}");
    }

    #[test]
    fn a_gone_container_loses_its_series_and_a_reset_total_counts_again() {
        let mut registry = Registry::default();
        let families = MemoryFamilies::register(&mut registry);
        let mut tracker = MemoryTracker::default();
        let a = sample(1, 1000, [4, 0, 0], 0);
        let b = sample(2, 10, [0; 3], 0);
        tracker.update(&families, &[("app".into(), &a), ("db".into(), &b)]);
        // The kernel dropped app's state and started over at 1.
        let a = sample(1, 1000, [1, 0, 0], 0);
        tracker.update(&families, &[("app".into(), &a)]);
        let out = text(&registry);
        assert!(!out.contains("container=\"db\""), "{out}");
        assert!(
            out.contains(
                "linnix_container_memory_pressure_total{container=\"app\",reason=\"reclaim\"} 5"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_restarted_container_keeps_its_series_under_its_name() {
        let mut registry = Registry::default();
        let families = MemoryFamilies::register(&mut registry);
        let mut tracker = MemoryTracker::default();
        tracker.update(&families, &[("app".into(), &sample(1, 1000, [3, 0, 0], 1))]);
        // New cgroup, same container name; the old cgroup is gone.
        tracker.update(&families, &[("app".into(), &sample(2, 50, [1, 0, 0], 0))]);
        let out = text(&registry);
        assert!(
            out.contains("linnix_container_memory_usage_bytes{container=\"app\"} 50"),
            "{out}"
        );
        assert!(
            out.contains(
                "linnix_container_memory_pressure_total{container=\"app\",reason=\"reclaim\"} 4"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_name_that_becomes_known_replaces_the_id() {
        let mut registry = Registry::default();
        let families = MemoryFamilies::register(&mut registry);
        let mut tracker = MemoryTracker::default();
        let a = sample(1, 1000, [2, 0, 0], 0);
        tracker.update(&families, &[("0123abcd".into(), &a)]);
        tracker.update(&families, &[("app".into(), &a)]);
        let out = text(&registry);
        assert!(!out.contains("0123abcd"), "{out}");
        assert!(
            out.contains(
                "linnix_container_memory_pressure_total{container=\"app\",reason=\"reclaim\"} 2"
            ),
            "{out}"
        );
    }
}
