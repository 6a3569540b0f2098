//! `linnix-sidecar trace --cgroup DIR`: an existing cgroup and its
//! descendants, isolation from neighbours, metrics, least privilege.
//! Real BPF; needs root.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{http_get, metric, of_kind, run_in, wait_until, Proc, Tracer, PYTHON};
use linnix_test_support::{charged_bytes, in_cgroup, MemoryLimit, TestCgroup};
use serde_json::Value;

fn argv_has(e: &Value, word: &str) -> bool {
    e["argv"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == word))
}

#[test]
fn nested_cgroups_are_traced() {
    let cg = TestCgroup::named("nested");
    let inner = cg.child("inner");
    let deeper = inner.join("deeper");
    std::fs::create_dir(&deeper).expect("mkdir");
    let mut sleep = Command::new("sleep");
    sleep.arg("300");
    in_cgroup(&mut sleep, &deeper);
    let sleeper = Proc::spawn(&mut sleep);
    let mut t = Tracer::trace_cgroup(&cg.path, &[]);
    t.wait_ready();
    run_in(&deeper, &["/bin/sh", "-c", "/bin/echo deep-marker; exit 5"]);
    run_in(&cg.path, &["/bin/echo", "top-marker"]);
    let r = t.stop();
    assert!(r.status.success(), "{}: {}", r.status, r.stderr);

    // Already running: reported once as present.
    let present = of_kind(&r.events, "present");
    assert_eq!(present.len(), 1, "{present:?}");
    assert_eq!(present[0]["pid"], sleeper.pid());
    assert_eq!(present[0]["comm"], "sleep");
    // Under trace, a child cgroup of the traced one is a container, named
    // after its directory.
    assert_eq!(present[0]["container"], "inner");

    let deep = of_kind(&r.events, "exec")
        .into_iter()
        .find(|e| argv_has(e, "deep-marker"))
        .unwrap_or_else(|| panic!("nested exec missing: {:?}", r.events));
    assert_eq!(deep["filename"], "/bin/echo");
    assert!(of_kind(&r.events, "exec")
        .iter()
        .any(|e| argv_has(e, "top-marker")));
    assert!(of_kind(&r.events, "exit")
        .iter()
        .any(|e| e["exit_code"] == 5 && e["comm"] == "sh"));
}

#[test]
fn a_flooding_neighbour_is_invisible() {
    let quiet = TestCgroup::named("quiet");
    let noisy = TestCgroup::named("noisy");
    let dir = tempfile::tempdir().expect("tempdir");
    let flood_bin = dir.path().join("floodmarker");
    std::fs::copy("/bin/true", &flood_bin).expect("copy");
    std::fs::set_permissions(&flood_bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut flood_cmd = Command::new("/bin/sh");
    flood_cmd
        .arg("-c")
        .arg(format!("while :; do {}; done", flood_bin.display()));
    in_cgroup(&mut flood_cmd, &noisy.path);
    let flood = Proc::spawn(&mut flood_cmd);

    // A second tracer on the neighbour proves the flood is real.
    let mut witness = Tracer::trace_cgroup(&noisy.path, &[]);
    let mut t = Tracer::trace_cgroup(&quiet.path, &[]);
    witness.wait_ready();
    t.wait_ready();
    for i in 0..10 {
        run_in(&quiet.path, &["/bin/echo", "quiet-marker", &i.to_string()]);
        thread::sleep(Duration::from_millis(100));
    }
    let r = t.stop();
    let w = witness.stop();
    drop(flood);
    assert!(r.status.success(), "{}", r.stderr);

    let flood_pids: HashSet<&Value> = w.events.iter().map(|e| &e["pid"]).collect();
    let flood_execs = of_kind(&w.events, "exec")
        .iter()
        .filter(|e| e["comm"] == "floodmarker")
        .count();
    // The bound only has to tell a running flood from one that never got
    // going, while staying well above the quiet cgroup's 10 markers (5x).
    // The witness sees the flood for the ~1.5 s of markers plus start-up
    // and shutdown: 800-1500 execs measured on this 2-core machine with
    // the test suite running, but the window shrinks and the loop slows
    // when other builds share the cores, which is why it is not higher.
    assert!(
        flood_execs > 50,
        "the flood did not run: {flood_execs} execs"
    );

    let quiet_execs = of_kind(&r.events, "exec")
        .iter()
        .filter(|e| argv_has(e, "quiet-marker"))
        .count();
    assert_eq!(quiet_execs, 10, "{:?}", r.events);
    let leaked: Vec<&Value> = r
        .events
        .iter()
        .filter(|e| e["comm"] == "floodmarker" || flood_pids.contains(&e["pid"]))
        .collect();
    assert!(leaked.is_empty(), "neighbour events leaked: {leaked:?}");
}

fn metric_line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

#[test]
fn readiness_health_and_metrics_over_http() {
    let cg = TestCgroup::named("metrics");
    let mut t = Tracer::trace_cgroup(&cg.path, &[]);
    let addr = t.metrics.expect("addr");
    t.wait_ready();
    assert_eq!(http_get(addr, "/healthz").expect("healthz").0, 200);
    assert_eq!(http_get(addr, "/nope").expect("404").0, 404);

    run_in(&cg.path, &["/bin/sh", "-c", "exit 4"]);
    run_in(&cg.path, &["/bin/sh", "-c", "kill -9 $$"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = http_get(addr, "/metrics").expect("metrics");
        assert_eq!(status, 200);
        if body.contains("signal=\"SIGKILL\"") || Instant::now() > deadline {
            break body;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let r = t.stop();
    assert!(r.status.success(), "{}", r.stderr);

    for want in [
        "linnix_exits_total{container=\"\",code=\"4\",signal=\"\"} 1",
        "linnix_exits_total{container=\"\",code=\"\",signal=\"SIGKILL\"} 1",
        "linnix_programs_attached 7",
        "linnix_events_lost_total 0",
        "linnix_events_rate_limited_total 0",
        "# EOF",
    ] {
        assert!(body.contains(want), "{want:?} missing:\n{body}");
    }
    // The exec counter matches what was printed up to the scrape (at least
    // the two shells).
    let execs: u64 = metric_line(&body, "linnix_events_total{kind=\"exec\",container=\"\"}")
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("exec counter");
    assert_eq!(execs, of_kind(&r.events, "exec").len() as u64, "{body}");
}

#[test]
fn rate_limit_drops_in_the_kernel_and_is_counted() {
    let cg = TestCgroup::named("ratelimit");
    let mut t = Tracer::trace_cgroup(&cg.path, &["--max-events-per-sec", "5"]);
    let addr = t.metrics.expect("addr");
    t.wait_ready();
    run_in(
        &cg.path,
        &[
            "/bin/sh",
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; done",
        ],
    );
    let mut limited = 0;
    wait_until(Duration::from_secs(5), || {
        limited = metric(addr, "linnix_events_rate_limited_total ").unwrap_or(0);
        limited > 0
    });
    let r = t.stop();
    assert!(limited > 0, "nothing counted as rate limited");
    // 10 × (fork, exec, exit) plus the shell's own would be over 30.
    let passed = r.events.iter().filter(|e| e["event"] != "lost").count();
    assert!(passed < 30, "{passed} events passed a cap of 5/s");
    // The stream says so, and so does stderr.
    let in_stream: u64 = of_kind(&r.events, "lost")
        .iter()
        .map(|l| l["rate_limited"].as_u64().expect("rate_limited"))
        .sum();
    assert!(
        in_stream >= limited,
        "{in_stream} < {limited}: {:?}",
        of_kind(&r.events, "lost")
    );
    assert!(
        r.stderr.contains("dropped by the rate limit"),
        "{}",
        r.stderr
    );
}

/// Without pod-read permission containers are labelled by id, and every
/// restart is a new id: the series of a container whose cgroup is removed
/// go too, once `--removed-series-ttl` has passed (scrapes until then see
/// the last values); those of the others stay.
#[test]
fn series_of_a_removed_container_cgroup_are_dropped_after_their_ttl() {
    let cg = TestCgroup::named("rmdir");
    let (gone_id, stays_id) = ("ab".repeat(32), "cd".repeat(32));
    let gone = cg.child(&format!("cri-containerd-{gone_id}.scope"));
    let stays = cg.child(&format!("cri-containerd-{stays_id}.scope"));
    let ttl = Duration::from_secs(3);
    let mut t = Tracer::trace_cgroup(
        &cg.path,
        &["--removed-series-ttl", &ttl.as_secs().to_string()],
    );
    let addr = t.metrics.expect("addr");
    t.wait_ready();
    run_in(&gone, &["/bin/sh", "-c", "exit 5"]);
    run_in(&stays, &["/bin/sh", "-c", "kill -9 $$"]);
    let scrape = || http_get(addr, "/metrics").expect("metrics").1;
    let wait_for = |what: &str, cond: &dyn Fn(&str) -> bool| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body = scrape();
            if cond(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{what}:\n{body}");
            thread::sleep(Duration::from_millis(100));
        }
    };
    let before = wait_for("exits of both containers", &|b| {
        b.contains(&format!("container=\"{gone_id}\",code=\"5\""))
            && b.contains(&format!(
                "container=\"{stays_id}\",code=\"\",signal=\"SIGKILL\""
            ))
    });
    assert!(before.contains(&format!(
        "linnix_oom_kills_total{{container=\"{gone_id}\"}} 0"
    )));

    std::fs::remove_dir(&gone).expect("rmdir the container cgroup");
    let removed = Instant::now();
    thread::sleep(Duration::from_millis(300));
    let within_ttl = scrape();
    assert!(
        removed.elapsed() < ttl
            && within_ttl.contains(&format!("container=\"{gone_id}\",code=\"5\"")),
        "gone before its TTL:\n{within_ttl}"
    );
    let after = wait_for("the removed container's series", &|b| !b.contains(&gone_id));
    assert!(
        removed.elapsed() >= ttl,
        "gone after {:?}",
        removed.elapsed()
    );
    for series in [
        format!("linnix_exits_total{{container=\"{stays_id}\",code=\"\",signal=\"SIGKILL\"}} 1"),
        format!("linnix_events_total{{kind=\"exec\",container=\"{stays_id}\"}} 1"),
        format!("linnix_oom_kills_total{{container=\"{stays_id}\"}} 0"),
    ] {
        assert!(after.contains(&series), "{series} missing:\n{after}");
    }
    let r = t.stop();
    assert!(r.status.success(), "{}", r.stderr);
}

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
    let addr = t.metrics.expect("metrics address");
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

#[test]
fn a_path_outside_cgroup_v2_is_refused() {
    let mut t = Tracer::start(&["trace", "--cgroup", "/tmp"], &[], None, &[]);
    let r = t.finish(Duration::from_secs(20));
    assert_eq!(r.status.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("error: /tmp is not a directory of the cgroup v2 file system"),
        "{}",
        r.stderr
    );
}
