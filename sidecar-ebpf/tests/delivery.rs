//! How records reach the reader: the rate limit drops in the kernel and
//! leaves lost records in the stream, and the reader is woken for the next
//! record after a quiet spell. Real BPF against real processes (root
//! needed).

mod common;

use std::time::Duration;

use common::*;
use linnix_ebpf::{Event, Tracer};

#[tokio::test]
async fn rate_limit_drops_forks_and_execs_but_not_exits() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut cfg = config(cg.position());
    cfg.max_events_per_sec = 10;
    let mut tracer = Tracer::load(&cfg).expect("load");

    // 50 subshells (test and arithmetic are shell built-ins): 50 forks and
    // 50 exits, well within one second.
    let pid = run_in(
        &cg.path,
        &[
            "/bin/sh",
            "-c",
            "i=0; while [ $i -lt 50 ]; do (exit 2); i=$((i+1)); done",
        ],
    );
    let events = collect(&mut tracer);

    let bulk = events
        .iter()
        .filter(|e| matches!(e, Event::Fork(_) | Event::Exec(_)))
        .count();
    let exits = events
        .iter()
        .filter(|e| matches!(e, Event::Exit(_)))
        .count();
    assert!(bulk <= 20, "{bulk} fork/exec events passed a limit of 10/s");
    assert_eq!(exits, 51, "every exit is reported");
    assert_eq!(exits_of(&events, pid).len(), 1);
    let stats = tracer.kernel_stats().expect("stats");
    assert!(stats.rate_limited >= 30, "{stats:?}");
    // The drops are in the stream too, as lost records before the exits that
    // passed: never more than the totals, and never nothing.
    let reported: u64 = events
        .iter()
        .filter_map(|e| match e {
            Event::Lost(l) => Some(l.rate_limited + l.lost),
            _ => None,
        })
        .sum();
    assert!(reported > 0, "no lost record: {events:#?}");
    assert!(
        reported <= stats.rate_limited + stats.lost,
        "{reported} > {stats:?}"
    );
    let first_lost = events.iter().position(|e| matches!(e, Event::Lost(_)));
    assert!(
        first_lost.is_some_and(|i| events[i + 1..].iter().any(|e| matches!(e, Event::Exit(_)))),
        "the lost record comes before the exits that passed"
    );
}

/// The reader polls while records flow and blocks once the pod is quiet
/// (after well under 200 ms); the kernel must wake it for the next record,
/// every time it has gone back to sleep.
#[tokio::test]
async fn next_batch_wakes_up_for_new_events() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");

    for code in [9, 4] {
        let path = cg.path.clone();
        let worker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            run_in(&path, &["/bin/sh", "-c", &format!("exit {code}")])
        });
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !events.iter().any(|e| matches!(e, Event::Exit(_))) {
            tokio::time::timeout_at(deadline, tracer.next_batch(&mut |e| events.push(e)))
                .await
                .expect("no event within 10 s")
                .expect("next_batch");
        }
        let pid = worker.join().expect("worker");
        assert_eq!(exits_of(&events, pid)[0].exit_code(), Some(code));
    }
}
