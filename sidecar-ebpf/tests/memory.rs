//! Memory: the OOM kill and its victim, and the sampler's per-container
//! figures against the kernel's own. Real BPF against real processes under
//! real memory limits (root needed).

mod common;

use std::time::Duration;

use common::*;
use linnix_ebpf::{Event, Tracer};

#[tokio::test]
async fn oom_kill_reports_the_victim() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let limit = 64 << 20;
    let memory = MemoryLimit::new(&cg.path, limit);
    let dirs = limited_dirs(&cg, &memory);
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    let mut child = spawn_in(&dirs, &[PYTHON, "-c", "b = b'x' * (256 << 20)"]);
    let pid = child.id();
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the allocation should have been killed");
    let events = collect(&mut tracer);

    let oom = events
        .iter()
        .find_map(|e| match e {
            Event::OomKill(o) => Some(o),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no OOM kill event: {events:#?}"));
    assert_eq!(oom.task.host_pid, pid);
    assert_eq!(oom.task.comm, "python3");
    assert!(oom.rss_anon_kb > 32 << 10, "{oom:?}");
    let memcg = oom.memcg.as_ref().expect("memcg read");
    assert_eq!(memcg.limit_bytes, limit);
    assert!(
        memcg.usage_bytes > limit / 2 && memcg.usage_bytes <= limit,
        "{memcg:?}"
    );
    let exits = exits_of(&events, pid);
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0].signal(), Some(9));
}

/// The sampler: one sample per container with processes, from the memcg
/// the processes are charged to (the v1 one here), with the kernel's own
/// figures; none for a container without processes, nothing from outside.
#[tokio::test]
async fn memory_samples_are_the_kernels_figures_of_each_container() {
    let _lock = BPF_LOCK.lock().await;
    let pod = TestCgroup::new();
    let app = pod.child("app");
    let idle = pod.child("idle");
    let outside = TestCgroup::new();
    let limit = 48 << 20;
    let memory = MemoryLimit::new(&app, limit);
    let dirs: Vec<std::path::PathBuf> = std::iter::once(app.clone())
        .chain(memory.v1_dir().map(std::path::Path::to_path_buf))
        .collect();
    let mut tracer = Tracer::load(&config(pod.position())).expect("load");
    let hold = "import time\nx = b'x' * (16 << 20)\nprint(flush=True)\ntime.sleep(30)\n";
    let mut holder = spawn_in(&dirs, &[PYTHON, "-c", hold]);
    let mut stranger = spawn_in(std::slice::from_ref(&outside.path), &["sleep", "30"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (sample, kernel) = loop {
        let pass = tracer.sample_memory().expect("sample");
        assert!(pass.samples.len() <= 1, "{pass:?}");
        if let Some(s) = pass.samples.first().filter(|s| s.usage_bytes > 16 << 20) {
            break (s.clone(), charged_bytes(&app));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never sampled: {pass:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    holder.kill().expect("kill");
    holder.wait().expect("wait");
    stranger.kill().expect("kill");
    stranger.wait().expect("wait");
    assert_eq!(sample.cgroup_id, id_of(&app));
    assert_eq!(sample.cgroup_name, "app");
    assert_eq!(sample.limit_bytes, Some(limit));
    assert!(
        sample.usage_bytes.abs_diff(kernel) * 20 <= kernel,
        "{sample:?} vs {kernel}"
    );
    // The memcg is the v1 cgroup on a hybrid host, the v2 one on a unified one.
    let memcg_dir = memory
        .v1_dir()
        .map_or(app.clone(), std::path::Path::to_path_buf);
    assert_eq!(sample.memcg_id, id_of(&memcg_dir));
    let events = sample.events.expect("the kernel keeps memory events");
    assert_eq!((events.oom, events.oom_kill), (0, 0));
    assert_eq!(sample.pressure, [0; 3]);
    drop(idle);
    // Nothing of the pod is left.
    assert!(tracer.sample_memory().expect("sample").samples.is_empty());
}

/// More containers than one read of the iterator holds (its kernel buffer is
/// 32 KiB, 157 samples): the kernel runs the task that did not fit again at
/// the next read, and its sample must come then.
#[tokio::test]
async fn a_pass_over_more_containers_than_one_read_holds_misses_none() {
    let _lock = BPF_LOCK.lock().await;
    let pod = TestCgroup::new();
    let containers: Vec<std::path::PathBuf> =
        (0..200).map(|i| pod.child(&format!("c{i}"))).collect();
    let mut sleepers: Vec<std::process::Child> = containers
        .iter()
        .map(|c| spawn_in(std::slice::from_ref(c), &["sleep", "60"]))
        .collect();
    let mut tracer = Tracer::load(&config(pod.position())).expect("load");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = 0;
    while std::time::Instant::now() < deadline {
        let pass = tracer.sample_memory().expect("sample");
        seen = pass.samples.len();
        if seen == containers.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for s in &mut sleepers {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert_eq!(seen, containers.len());
}
