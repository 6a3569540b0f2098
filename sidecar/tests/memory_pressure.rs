//! memory_pressure events and the per-container memory metrics, under
//! `trace --memory-limit`: real BPF, real memory cgroups (the v1 memory
//! controller on a hybrid host, `memory.max` on a unified one). Needs root.

mod common;

use std::time::Duration;

use common::{metric, of_kind, trace_command, wait_until, Tracer, PYTHON};
use linnix_test_support::{charged_bytes, v2_mount};
use serde_json::Value;

const LIMIT: u64 = 64_000_000;

/// Grows by 2 MiB every 50 ms, each page written, until the limit kills it.
const GROWER: &str = "import time\n\
                      x = []\n\
                      while True:\n    \
                          x.append(b'\\x01' * (2 << 20))\n    \
                          time.sleep(0.05)\n";

fn index_of(events: &[Value], kind: &str) -> Option<usize> {
    events.iter().position(|e| e["event"] == kind)
}

/// Nanoseconds since the start of the month of "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ":
/// enough to order events a few seconds apart.
fn ts_ns(ts: &str) -> u128 {
    let num = |r: std::ops::Range<usize>| -> u128 { ts[r].parse().expect("digits") };
    (((num(8..10) * 24 + num(11..13)) * 60 + num(14..16)) * 60 + num(17..19)) * 1_000_000_000
        + num(20..29)
}

fn bytes(e: &Value, key: &str) -> u64 {
    e[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing: {e}"))
}

#[test]
fn pressure_comes_before_the_oom_kill_of_a_growing_command() {
    let r = trace_command(&["--memory-limit", "64M"], &[PYTHON, "-c", GROWER]);
    assert_eq!(r.status.code(), Some(137), "stderr: {}", r.stderr);
    let pressure = index_of(&r.events, "memory_pressure")
        .unwrap_or_else(|| panic!("no memory_pressure event: {:?}", r.events));
    let oom = index_of(&r.events, "oom_kill").expect("the grower was OOM-killed");
    assert!(
        pressure < oom,
        "pressure after the kill: {:?}",
        &r.events[oom..]
    );

    let p = &r.events[pressure];
    let usage = bytes(p, "memcg_usage_bytes");
    assert_eq!(bytes(p, "memcg_limit_bytes"), LIMIT, "{p}");
    assert!(
        (LIMIT / 10 * 9..=LIMIT).contains(&usage),
        "usage {usage} is not near the limit: {p}"
    );
    assert!(
        p["reason"] == "reclaim" || p["reason"] == "threshold",
        "{p}"
    );
    assert!(p["count"].as_u64().is_some_and(|c| c >= 1), "{p}");
    // On a v1 memory cgroup there is no memory.high.
    assert!(p["memcg_high_bytes"].is_null(), "{p}");
    // The grower is what allocated, and what died.
    let victim = &r.events[oom];
    assert_eq!(p["pid"], victim["pid"], "{p} / {victim}");
    assert_eq!(p["comm"], "python3", "{p}");
    assert!(p["container"].is_null() && p["pod"].is_null(), "{p}");
    // One per interval (10 s by default): the grower lives about 2 s.
    assert_eq!(
        of_kind(&r.events, "memory_pressure").len(),
        1,
        "{:?}",
        r.events
    );
}

#[test]
fn half_the_limit_is_no_pressure_and_the_gauges_match_cgroupfs() {
    // About 32 MB of a 64 MB limit, for long enough to be sampled often.
    let holder = "import time\nx = b'\\x01' * (24 << 20)\ntime.sleep(8)\n";
    let mut t = Tracer::start(
        &["trace", "--memory-limit", "64M", "--", PYTHON, "-c", holder],
        &[],
        None,
        &[],
    );
    t.wait_ready();
    let addr = t.metrics();
    let usage_series = "linnix_container_memory_usage_bytes{container=\"\"}";
    assert!(
        wait_until(Duration::from_secs(6), || metric(addr, usage_series)
            .is_some_and(|u| u > 24 << 20)),
        "the usage gauge never showed the holder's 24 MiB"
    );
    // Several samples apart the holder does not change: compare a few.
    for _ in 0..3 {
        let scratch = v2_mount().join(format!("linnix-trace-{}", t.proc.pid()));
        let kernel = charged_bytes(&scratch);
        let gauge = metric(addr, usage_series).expect("usage gauge");
        let diff = kernel.abs_diff(gauge);
        assert!(
            diff * 20 <= kernel,
            "gauge {gauge} and cgroupfs {kernel} differ by more than 5 %"
        );
        assert!(
            (LIMIT * 35 / 100..=LIMIT * 65 / 100).contains(&gauge),
            "{gauge} is not about half of {LIMIT}"
        );
        std::thread::sleep(Duration::from_millis(1500));
    }
    assert_eq!(
        metric(addr, "linnix_container_memory_limit_bytes{container=\"\"}"),
        Some(LIMIT)
    );
    let r = t.finish(Duration::from_secs(30));
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
    assert!(
        of_kind(&r.events, "memory_pressure").is_empty(),
        "{:?}",
        of_kind(&r.events, "memory_pressure")
    );
}

#[test]
fn reclaim_without_a_kill_is_one_event_per_interval_carrying_the_count() {
    // A writer streams files through the page cache: its memcg reclaims at
    // the limit hundreds of times a second and nothing is ever killed.
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir on a disk file system");
    let file = dir.path().join("stream");
    let script = format!(
        "for i in 1 2 3 4 5 6; do dd if=/dev/zero of={} bs=1M count=300 2>/dev/null; sleep 0.3; done; sleep 6",
        file.display()
    );
    let mut t = Tracer::start(
        &[
            "--memory-pressure-interval",
            "1s",
            "trace",
            "--memory-limit",
            "64M",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
        &[],
        None,
        &[],
    );
    t.wait_ready();
    let addr = t.metrics();
    let reclaims = "linnix_container_memory_pressure_total{container=\"\",reason=\"reclaim\"}";
    let max_events = "linnix_container_memory_events_total{container=\"\",event=\"max\"}";
    // Once the writer is done (the shell sleeps), two samples agree: reads
    // further apart than the 2 s between the kernel's samples.
    let read = || {
        (
            metric(addr, reclaims).unwrap_or(0),
            metric(addr, max_events).unwrap_or(0),
        )
    };
    let mut last = read();
    let settled = (0..10).any(|_| {
        std::thread::sleep(Duration::from_millis(2500));
        let now = read();
        let same = now.0 > 0 && now == last;
        last = now;
        same
    });
    assert!(settled, "the reclaim counters never settled: {last:?}");
    let (reclaim_total, max_total) = last;
    let threshold_total = metric(
        addr,
        "linnix_container_memory_pressure_total{container=\"\",reason=\"threshold\"}",
    )
    .unwrap_or(0);
    let r = t.finish(Duration::from_secs(30));
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);

    // Each reclaim the hook saw is one the kernel counted in memory.events.
    assert_eq!(reclaim_total, max_total);
    let events = of_kind(&r.events, "memory_pressure");
    assert!(events.len() >= 3, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e["comm"] == "dd" || e["reason"] == "threshold"),
        "{events:?}"
    );
    let ts: Vec<u128> = events
        .iter()
        .map(|e| ts_ns(e["ts"].as_str().expect("ts")))
        .collect();
    for pair in ts.windows(2) {
        let gap_ms = (pair[1] - pair[0]) / 1_000_000;
        assert!(
            gap_ms >= 990,
            "two events {gap_ms} ms apart with an interval of 1 s: {events:?}"
        );
    }
    let counted: u64 = events
        .iter()
        .map(|e| e["count"].as_u64().expect("count"))
        .sum();
    assert!(
        counted <= reclaim_total + threshold_total && counted > events.len() as u64,
        "events carry {counted} occurrences of {reclaim_total} + {threshold_total}"
    );
}
