//! `linnix-sidecar trace --cgroup DIR` holding only `CAP_BPF` and
//! `CAP_PERFMON`: enough for every program, also the memory ones; without
//! `CAP_BPF`, one clear error. Real BPF; needs root, which setpriv then drops.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{argv_has, metric, of_kind, run_in, wait_until, Proc, Tracer, PYTHON};
use linnix_test_support::{charged_bytes, in_cgroup, MemoryLimit, TestCgroup};

const CAP_BPF: u32 = 39;
const CAP_PERFMON: u32 = 38;

/// `trace --cgroup` on `cg`, run through setpriv holding only `caps`.
fn trace_with_only(cg: &TestCgroup, caps: &str) -> Tracer {
    let wrapper = setpriv(caps);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    Tracer::start(
        &["trace", "--cgroup", cg.path.to_str().expect("utf8")],
        &wrapper,
        None,
        &[],
    )
}

fn setpriv(caps: &str) -> Vec<String> {
    [
        "setpriv".to_owned(),
        format!("--inh-caps=-all,{caps}"),
        format!("--ambient-caps=-all,{caps}"),
        format!("--bounding-set=-all,{caps}"),
        "--reuid=0".to_owned(),
        "--regid=0".to_owned(),
        "--clear-groups".to_owned(),
        "--".to_owned(),
    ]
    .to_vec()
}

fn cap_eff(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapEff")
}

#[test]
fn bpf_and_perfmon_are_enough() {
    let cg = TestCgroup::named("leastpriv");
    let mut t = trace_with_only(&cg, "+bpf,+perfmon");
    t.wait_ready();
    assert_eq!(
        cap_eff(t.proc.pid()),
        (1 << CAP_BPF) | (1 << CAP_PERFMON),
        "the tracer holds more than CAP_BPF and CAP_PERFMON"
    );
    run_in(&cg.path, &["/bin/echo", "leastpriv-marker"]);
    let r = t.stop();
    assert!(r.status.success(), "{}", r.stderr);
    assert!(of_kind(&r.events, "exec")
        .iter()
        .any(|e| argv_has(e, "leastpriv-marker")));
}

/// The memory programs too: the reclaim hook, the sampling iterator (a
/// tracing program as well) and its maps need nothing beyond the two.
#[test]
fn memory_pressure_and_gauges_with_only_bpf_and_perfmon() {
    let cg = TestCgroup::named("leastpriv-memory");
    let app = cg.child("app");
    let limit = MemoryLimit::new(&app, 64 << 20);
    let mut t = trace_with_only(&cg, "+bpf,+perfmon");
    t.wait_ready();
    assert_eq!(cap_eff(t.proc.pid()), (1 << CAP_BPF) | (1 << CAP_PERFMON));
    // 24 MiB held for a while (sampled), then growth until the OOM kill.
    let script = "import time\n\
                  x = [b'\\x01' * (24 << 20)]\n\
                  time.sleep(5)\n\
                  while True:\n    \
                      x.append(b'\\x01' * (2 << 20))\n    \
                      time.sleep(0.05)\n";
    let mut cmd = Command::new(PYTHON);
    cmd.args(["-c", script]);
    in_cgroup(&mut cmd, &app);
    limit.apply(&mut cmd);
    let mut hog = Proc::spawn(&mut cmd);
    let addr = t.metrics();
    // Under `trace`, the traced cgroup's child `app` is a container.
    let usage = "linnix_container_memory_usage_bytes{container=\"app\"}";
    assert!(
        wait_until(Duration::from_secs(4), || metric(addr, usage)
            .is_some_and(|u| u > 24 << 20)),
        "no usage gauge"
    );
    let (gauge, kernel) = (metric(addr, usage).expect("gauge"), charged_bytes(&app));
    assert!(gauge.abs_diff(kernel) * 20 <= kernel, "{gauge} vs {kernel}");
    assert_eq!(
        metric(
            addr,
            "linnix_container_memory_limit_bytes{container=\"app\"}"
        ),
        Some(64 << 20)
    );
    hog.wait_timeout(Duration::from_secs(30));
    let r = t.stop();
    assert!(r.status.success(), "{}", r.stderr);
    let kinds: Vec<&str> = r
        .events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|k| *k == "memory_pressure" || *k == "oom_kill")
        .collect();
    assert_eq!(kinds.first(), Some(&"memory_pressure"), "{kinds:?}");
    assert!(kinds.contains(&"oom_kill"), "{kinds:?}");
}

#[test]
fn without_cap_bpf_it_fails_with_a_clear_message() {
    let cg = TestCgroup::named("nobpf");
    let mut t = trace_with_only(&cg, "+perfmon");
    let r = t.finish(Duration::from_secs(20));
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(errors[0].contains("CAP_BPF"), "{}", errors[0]);
    assert!(r.events.is_empty());
}
