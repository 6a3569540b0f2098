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
    tracker.update_samples(&families, &[("app".into(), &a)]);
    let a = sample(1, 2000, [5, 0, 1], 1);
    let b = MemorySample {
        limit_bytes: None,
        events: None,
        ..sample(2, 30, [0; 3], 0)
    };
    tracker.update_samples(&families, &[("app".into(), &a), ("db".into(), &b)]);
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
fn a_gone_container_loses_its_gauges_and_a_reset_total_counts_again() {
    let mut registry = Registry::default();
    let families = MemoryFamilies::register(&mut registry);
    let mut tracker = MemoryTracker::default();
    let a = sample(1, 1000, [4, 0, 0], 0);
    let b = sample(2, 10, [0; 3], 0);
    tracker.update_samples(&families, &[("app".into(), &a), ("db".into(), &b)]);
    // The kernel dropped app's state and started over at 1.
    let a = sample(1, 1000, [1, 0, 0], 0);
    tracker.update_samples(&families, &[("app".into(), &a)]);
    let out = text(&registry);
    assert!(!out.contains("usage_bytes{container=\"db\"}"), "{out}");
    assert!(!out.contains("limit_bytes{container=\"db\"}"), "{out}");
    // Its counters stay.
    assert!(
        out.contains("linnix_container_memory_events_total{container=\"db\",event=\"max\"} 5"),
        "{out}"
    );
    assert!(
        out.contains(
            "linnix_container_memory_pressure_total{container=\"app\",reason=\"reclaim\"} 5"
        ),
        "{out}"
    );
}

#[test]
fn pressure_in_a_containers_last_moments_is_counted_after_it_is_gone() {
    let mut registry = Registry::default();
    let families = MemoryFamilies::register(&mut registry);
    let mut tracker = MemoryTracker::default();
    tracker.update_samples(&families, &[("app".into(), &sample(1, 1000, [1, 0, 0], 0))]);
    // Reclaimed 40 more times, then its last process died.
    tracker.update(&families, &[], &[(1, None, [41, 0, 0])]);
    // One never sampled, named by its events.
    tracker.update(
        &families,
        &[],
        &[(1, None, [41, 0, 0]), (2, Some("job".into()), [0, 0, 7])],
    );
    let out = text(&registry);
    assert!(
        out.contains(
            "linnix_container_memory_pressure_total{container=\"app\",reason=\"reclaim\"} 41"
        ),
        "{out}"
    );
    assert!(!out.contains("usage_bytes{container=\"app\"}"), "{out}");
    assert!(
        out.contains(
            "linnix_container_memory_pressure_total{container=\"job\",reason=\"threshold\"} 7"
        ),
        "{out}"
    );
    // Then the kernel drops them, and so does the tracker.
    tracker.update(&families, &[], &[]);
    assert!(tracker.by_cgroup.is_empty());
}

#[test]
fn a_restarted_container_keeps_its_series_under_its_name() {
    let mut registry = Registry::default();
    let families = MemoryFamilies::register(&mut registry);
    let mut tracker = MemoryTracker::default();
    tracker.update_samples(&families, &[("app".into(), &sample(1, 1000, [3, 0, 0], 1))]);
    // New cgroup, same container name; the old cgroup is gone.
    tracker.update_samples(&families, &[("app".into(), &sample(2, 50, [1, 0, 0], 0))]);
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
    tracker.update_samples(&families, &[("0123abcd".into(), &a)]);
    tracker.update_samples(&families, &[("app".into(), &a)]);
    let a = sample(1, 1000, [3, 0, 0], 0);
    tracker.update_samples(&families, &[("app".into(), &a)]);
    let out = text(&registry);
    assert!(
        !out.contains("usage_bytes{container=\"0123abcd\"}"),
        "{out}"
    );
    assert!(
        out.contains("linnix_container_memory_usage_bytes{container=\"app\"} 1000"),
        "{out}"
    );
    // Two before the name was known, one after: 3 in all, once.
    for want in [
        "linnix_container_memory_pressure_total{container=\"0123abcd\",reason=\"reclaim\"} 2",
        "linnix_container_memory_pressure_total{container=\"app\",reason=\"reclaim\"} 1",
    ] {
        assert!(out.contains(want), "{want} missing in\n{out}");
    }
}
