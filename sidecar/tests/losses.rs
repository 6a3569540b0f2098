//! Nothing is lost silently: when the ring buffer fills (a reader of stdout
//! that stalls, a stopped tracer), the drops are counted in `lost` lines
//! where the hole is, warned about on stderr, and summed up at the end.
//! Real BPF; needs root.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::{of_kind, parse_events, Finished, Proc, BIN};
use serde_json::Value;

/// The shell's own events: its exec and its exit.
const SHELL: u64 = 2;

/// A loop of `spawns` × /bin/true <tag> and the events it makes: 3 each
/// (fork, exec, exit), and 3 for the `seq` that counts.
fn storm(spawns: u32, tag: &str) -> (String, u64) {
    (
        format!("for i in $(seq {spawns}); do /bin/true {tag}; done"),
        3 * u64::from(spawns) + 3,
    )
}

/// Events written plus events the `lost` lines say are missing.
fn accounted(events: &[Value]) -> (u64, u64) {
    let written = events.iter().filter(|e| e["event"] != "lost").count() as u64;
    let missing = of_kind(events, "lost")
        .iter()
        .map(|l| l["lost"].as_u64().expect("lost") + l["rate_limited"].as_u64().expect("rl"))
        .sum();
    (written, missing)
}

/// `trace -- sh -c script`, stdout read only after `reader_delay`.
fn trace_with_reader_delay(script: &str, reader_delay: Duration) -> Finished {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--max-events-per-sec",
        "0",
        "trace",
        "--",
        "/bin/sh",
        "-c",
        script,
    ])
    .env_remove("RUST_LOG")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut proc = Proc::spawn(&mut cmd);
    let mut stdout = proc.child.stdout.take().expect("stdout");
    let mut stderr = proc.child.stderr.take().expect("stderr");
    let out = thread::spawn(move || {
        thread::sleep(reader_delay);
        let mut s = String::new();
        stdout.read_to_string(&mut s).expect("read stdout");
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = proc.wait_timeout(Duration::from_secs(120));
    Finished {
        status,
        events: parse_events(&out.join().expect("join")),
        stderr: err.join().expect("join"),
    }
}

fn summary_counts(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("events written"))
        .unwrap_or_else(|| panic!("no summary on stderr:\n{stderr}"));
    let number_before = |what: &str| -> u64 {
        let (head, _) = line
            .split_once(what)
            .unwrap_or_else(|| panic!("{what} missing: {line}"));
        head.trim_end()
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count before {what}: {line}"))
    };
    (
        number_before("lost (ring buffer full)"),
        number_before("rate limited"),
    )
}

#[test]
fn a_slow_reader_of_stdout_gets_lost_lines_a_warning_and_a_summary() {
    let (script, expected) = storm(3000, "slow");
    let r = trace_with_reader_delay(&script, Duration::from_secs(4));
    assert!(r.status.success(), "stderr: {}", r.stderr);

    let (written, missing) = accounted(&r.events);
    assert!(
        missing > 0,
        "nothing lost with a stalled reader? {written} written"
    );
    // Every event is either in the output or counted as missing in it.
    assert_eq!(written + missing, expected + SHELL, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains("events dropped in the kernel")
            && r.stderr.contains("lost because the ring buffer was full"),
        "no warning on stderr:\n{}",
        r.stderr
    );
    let (lost, rate_limited) = summary_counts(&r.stderr);
    assert_eq!(lost + rate_limited, missing, "{}", r.stderr);
    assert_eq!(rate_limited, 0, "no rate limit was set");
}

#[test]
fn a_stopped_tracer_marks_the_hole_where_it_is() {
    // The command stops the tracer (its parent), storms, wakes it, storms
    // again: the hole lies in the first storm.
    let (first, first_events) = storm(3000, "first");
    let (second, second_events) = storm(50, "second");
    let script = format!("kill -STOP $PPID; {first}; kill -CONT $PPID; sleep 0.5; {second}");
    let r = trace_with_reader_delay(&script, Duration::ZERO);
    assert!(r.status.success(), "stderr: {}", r.stderr);

    let (written, missing) = accounted(&r.events);
    assert!(missing > 0, "nothing lost while the tracer was stopped");
    // The sleep in between: fork, exec, exit.
    let expected = first_events + 3 + second_events + SHELL;
    assert_eq!(written + missing, expected, "{}", r.stderr);

    let position = |pred: &dyn Fn(&Value) -> bool| r.events.iter().position(pred);
    let first_lost = position(&|e| e["event"] == "lost").expect("a lost line");
    let first_of_second = position(&|e| e["argv"][1] == "second").expect("second storm");
    let last_of_first = r
        .events
        .iter()
        .rposition(|e| e["argv"][1] == "first")
        .expect("first storm");
    assert!(
        last_of_first < first_lost && first_lost < first_of_second,
        "the lost line ({first_lost}) is not between the first storm's last exec \
         ({last_of_first}) and the second's first ({first_of_second})"
    );
    assert!(
        r.stderr.contains("events dropped in the kernel"),
        "{}",
        r.stderr
    );
    let (lost, _) = summary_counts(&r.stderr);
    assert_eq!(lost, missing);
}

#[test]
fn without_drops_there_is_no_lost_line_and_the_summary_says_none() {
    let (script, expected) = storm(20, "calm");
    let r = trace_with_reader_delay(&script, Duration::ZERO);
    assert!(r.status.success(), "stderr: {}", r.stderr);
    assert!(of_kind(&r.events, "lost").is_empty(), "{:?}", r.events);
    assert_eq!(accounted(&r.events), (expected + SHELL, 0));
    assert_eq!(summary_counts(&r.stderr), (0, 0));
    assert!(!r.stderr.contains("events dropped"), "{}", r.stderr);
}
