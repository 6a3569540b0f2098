//! `linnix-sidecar trace --cgroup DIR` over HTTP: readiness, health and
//! metrics, the rate limit counted, the series of a removed container
//! dropped after their TTL. Real BPF; needs root.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{http_get, metric, of_kind, run_in, wait_until, Tracer};
use linnix_test_support::TestCgroup;

fn metric_line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

#[test]
fn readiness_health_and_metrics_over_http() {
    let cg = TestCgroup::named("metrics");
    let mut t = Tracer::trace_cgroup(&cg.path, &[]);
    let addr = t.metrics();
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
        "linnix_programs_attached 8",
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
    let addr = t.metrics();
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
    let addr = t.metrics();
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
