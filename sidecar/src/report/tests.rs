use super::model::{self, Group};
use super::parse::{self, Kind};
use super::render;

const POD: &str = r#""pod":{"name":"web","namespace":"team-a","uid":"u","node":"n"}"#;

fn line(event: &str, ts: &str, rest: &str) -> String {
    let sep = if rest.is_empty() { "" } else { "," };
    format!(r#"{{"event":"{event}","ts":"2026-11-22T10:15:{ts}Z",{POD}{sep}{rest}}}"#)
}

fn task(pid: u32, parent: Option<u32>, comm: &str, container: &str) -> String {
    let parent = parent.map_or("null".to_owned(), |p| format!(r#""id{p}""#));
    format!(
        r#""pid":{pid},"ppid":1,"comm":"{comm}","container":"{container}","exec_id":"id{pid}","parent_exec_id":{parent}"#
    )
}

/// A pod with two containers, a failed child, an OOM kill, pressure, a
/// probe, a `kubectl exec` shell and a hole in the ring buffer.
fn sample() -> String {
    let t = |pid, parent, comm, c| task(pid, parent, comm, c);
    [
        line("exec", "01.000", &format!(r#"{},"filename":"/web","argv":["web"]"#, t(7, None, "web", "app"))),
        line("container_start", "01.001", &format!(r#"{},"argv":["web"]"#, t(7, None, "web", "app"))),
        line("exec", "01.100", &format!(r#"{},"filename":"/side","argv":["side"]"#, t(8, None, "side", "helper"))),
        line("container_start", "01.101", &format!(r#"{},"argv":["side"]"#, t(8, None, "side", "helper"))),
        line("fork", "02.000", &t(12, Some(7), "web", "app")),
        line("exec", "02.001", &format!(r#"{},"filename":"/bin/sh","argv":["sh","-c","exit 3"]"#, t(12, Some(7), "sh", "app"))),
        line("exit", "02.002", &format!(r#"{},"exit_code":3,"signal":null,"core_dumped":false"#, t(12, Some(7), "sh", "app"))),
        line("lost", "02.100", r#""lost":5,"rate_limited":2"#),
        line("fork", "02.200", &t(14, Some(7), "web", "app")),
        line("memory_pressure", "02.300", r#""pid":14,"comm":"dd","container":"app","reason":"reclaim","count":1,"memcg_usage_bytes":67092480,"memcg_limit_bytes":67108864"#),
        line("oom_kill", "02.311", &t(14, Some(7), "dd", "app")),
        line("exit", "02.312", &format!(r#"{},"exit_code":null,"signal":9"#, t(14, Some(7), "dd", "app"))),
        line("cgroup_join", "03.000", &format!(r#"{},"entered":true"#, t(21, None, "runc:[2:INIT]", "app"))),
        line("exec", "03.001", &format!(r#"{},"entered":true,"filename":"/bin/sh","argv":["sh"]"#, t(21, None, "sh", "app"))),
        line("exec", "03.500", &format!(r#"{},"entered":true,"exec_probe":"app/liveness","filename":"/bin/cat","argv":["cat","/tmp/ok"]"#, t(22, None, "cat", "app"))),
        line("exit", "03.501", &format!(r#"{},"entered":true,"exec_probe":"app/liveness","exit_code":0,"signal":null"#, t(22, None, "cat", "app"))),
        line("container_exit", "04.000", &format!(r#"{},"exit_code":null,"signal":9,"oom_killed":false"#, t(8, None, "side", "helper"))),
    ]
    .join("\n")
}

fn page_of(input: &str) -> (parse::Parsed, String) {
    let parsed = parse::read(input.as_bytes()).expect("reads from memory");
    let html = render(&parsed, "test");
    (parsed, html)
}

fn count(html: &str, needle: &str) -> usize {
    html.matches(needle).count()
}

#[test]
fn every_event_is_one_mark() {
    let (parsed, html) = page_of(&sample());
    assert_eq!(parsed.events.len(), 17);
    assert_eq!(parsed.bad.count, 0);
    assert_eq!(count(&html, r#"<g class="lane" "#), 2);
    assert_eq!(count(&html, r#"class="mark exit""#), 3);
    assert_eq!(count(&html, r#"class="mark oom""#), 1);
    assert_eq!(count(&html, r#"class="mark exec""#), 5);
    assert_eq!(count(&html, r#"class="mark fork""#), 2);
    assert_eq!(count(&html, r#"class="mark pressure lane-mark""#), 1);
    assert_eq!(count(&html, r#"class="mark container-start lane-mark""#), 2);
    assert_eq!(count(&html, r#"class="mark container-exit lane-mark""#), 1);
    assert_eq!(
        count(
            &html,
            r#"<g class="gap" data-lost="5" data-rate-limited="2">"#
        ),
        1
    );
    assert!(html.contains(r#"data-code="3" data-signal="" data-tone="failed""#));
    assert!(html.contains("SIGKILL"));
}

#[test]
fn entered_processes_and_probes_are_set_apart() {
    let parsed = parse::read(sample().as_bytes()).expect("reads");
    let t = model::build(&parsed.events);
    let app = t
        .lanes
        .iter()
        .find(|l| l.container.as_deref() == Some("app"))
        .expect("app lane");
    let groups: Vec<(Group, Option<i64>, usize)> = app
        .rows
        .iter()
        .map(|r| (r.group, t.procs[r.procs[0]].pid, r.depth))
        .collect();
    assert_eq!(
        groups,
        [
            (Group::Main, Some(7), 0),
            (Group::Main, Some(12), 1),
            (Group::Main, Some(14), 1),
            (Group::Entered, Some(21), 0),
            (Group::Probe, Some(22), 0),
        ]
    );
    // The probe's exit ends its row; the gap spans from the start.
    assert_eq!(t.procs.iter().filter(|p| p.end_ns.is_some()).count(), 3);
    assert_eq!(t.gaps[0].from_ns, t.t0);
}

#[test]
fn bad_lines_are_counted_with_the_first_one() {
    let input = format!(
        "{}\n2026-11-22T10:15:00Z INFO tracer ready\n\n{}\n{{\"event\":\"exec\"}}\n{}\n{}\n\u{0}\n",
        line("exec", "01.000", &task(1, None, "a", "app")),
        line("exec", "01.100", &task(2, None, "b", "app")),
        line("exec", "99.000", &task(3, None, "c", "app")),
        r#"{"event":"future_kind","ts":"2026-11-22T10:15:02Z"}"#,
    );
    let (parsed, html) = page_of(&input);
    assert_eq!(parsed.events.len(), 2);
    assert_eq!(parsed.bad.count, 4, "{:?}", parsed.bad);
    assert_eq!(parsed.bad.first_line, Some(2));
    assert_eq!(parsed.unknown.count, 1);
    assert_eq!(parsed.unknown.first_line, Some(7));
    assert!(
        html.contains(r#"data-count="4" data-first-line="2""#),
        "{html}"
    );
    let mut invalid_utf8 =
        b"{\"event\":\"exec\",\"ts\":\"2026-11-22T10:15:01Z\",\"comm\":\"".to_vec();
    invalid_utf8.extend_from_slice(b"\xff\"}\n");
    let p = parse::read(&invalid_utf8[..]).expect("reads");
    assert_eq!((p.bad.count, p.bad.first_reason.as_str()), (1, "not UTF-8"));
}

#[test]
fn kernel_strings_cannot_inject_markup() {
    let evil = r#"<script>alert(1)</script>\" onload=\"x"#;
    let input = line(
        "exec",
        "01.000",
        &format!(
            r#"{},"filename":"{evil}","argv":["{evil}"]"#,
            task(1, None, evil, evil)
        ),
    );
    let (parsed, html) = page_of(&input);
    assert_eq!(parsed.events.len(), 1);
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("onload=\""));
    assert!(html.contains("&lt;script&gt;"));
}

#[test]
fn parent_loops_and_missing_ids_still_get_rows() {
    let a = r#""pid":1,"comm":"a","container":"c","exec_id":"A","parent_exec_id":"B""#;
    let b = r#""pid":2,"comm":"b","container":"c","exec_id":"B","parent_exec_id":"A""#;
    let input = [
        line("fork", "01.000", a),
        line("fork", "01.001", b),
        line("exit", "01.002", r#""pid":3,"comm":"x","exit_code":1"#),
        line("exit", "01.003", r#""exit_code":1"#),
    ]
    .join("\n");
    let parsed = parse::read(input.as_bytes()).expect("reads");
    let t = model::build(&parsed.events);
    let rows: usize = t
        .lanes
        .iter()
        .flat_map(|l| &l.rows)
        .map(|r| r.procs.len())
        .sum();
    assert_eq!(rows, t.procs.len());
    assert_eq!(t.procs.len(), 4);
}

#[test]
fn a_log_of_one_instant_is_drawn() {
    let (_, html) = page_of(&line("exec", "01.000", &task(1, None, "a", "app")));
    assert!(html.contains("+0 µs"));
    assert!(!html.contains("NaN") && !html.contains("=\"inf"));
}

/// Garbage of every shape: random bytes, JSON of the wrong types, extreme
/// numbers and timestamps. The report must not panic on any of it.
#[test]
fn garbage_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let pieces = [
        r#"{"event":"exit","ts":"9999-12-31T23:59:59.999999999Z","exit_code":-99999999999,"signal":99999999999}"#,
        r#"{"event":"fork","ts":"0000-01-01T00:00:00Z","pid":-1,"exec_id":"x","parent_exec_id":"x"}"#,
        r#"{"event":"exec","ts":"2026-11-22T10:15:01+14:00","argv":[1,null,{"a":[]}],"container":7}"#,
        r#"{"event":"lost","ts":"2026-11-22T10:15:01Z","lost":-5,"rate_limited":1e300}"#,
        r#"{"event":"memory_pressure","ts":"2026-11-22T10:15:01Z","memcg_usage_bytes":18446744073709551615}"#,
        r#"{"event":"container_exit","ts":"2026-11-22T10:15:01.5Z","signal":-3,"core_dumped":"yes"}"#,
        r#"{"event":"oom_kill","ts":"2026-11-22T25:15:01Z"}"#,
        r#"{"event":["exec"],"ts":1}"#,
        "[]",
        "null",
        "{",
        "\"",
        "{\"event\":\"exec\",\"ts\":\"\"}",
    ];
    for round in 0..300 {
        let mut input = Vec::new();
        for _ in 0..(next() % 40) {
            match next() % 4 {
                0 => input.extend((0..next() % 60).map(|_| (next() % 256) as u8)),
                1 => input
                    .extend_from_slice(pieces[(next() % pieces.len() as u64) as usize].as_bytes()),
                2 => {
                    let pid = next() % 8;
                    let parent = next() % 8;
                    let kind = [
                        "fork",
                        "exec",
                        "exit",
                        "present",
                        "cgroup_join",
                        "cgroup_leave",
                        "oom_kill",
                        "container_start",
                        "container_exit",
                        "memory_pressure",
                        "lost",
                    ][(next() % 11) as usize];
                    input.extend_from_slice(
                        format!(
                            r#"{{"event":"{kind}","ts":"2026-11-22T10:{:02}:{:02}.{}Z","pid":{pid},"exec_id":"e{pid}","parent_exec_id":"e{parent}","container":"c{}","entered":{},"exec_probe":"p","exit_code":{},"signal":{}}}"#,
                            next() % 60, next() % 60, next() % 1_000_000_000, next() % 3, next() % 2 == 0, next() % 300, next() % 70
                        )
                        .as_bytes(),
                    );
                }
                _ => {
                    let p = pieces[(next() % pieces.len() as u64) as usize].as_bytes();
                    input.extend_from_slice(&p[..(next() as usize) % (p.len() + 1)]);
                }
            }
            input.push(b'\n');
        }
        let parsed = parse::read(&input[..]).expect("reads from memory");
        let html = render(&parsed, "fuzz");
        assert!(html.ends_with("</html>\n"), "round {round}");
        assert!(!html.contains("NaN"), "round {round}");
    }
}

#[test]
fn kinds_cover_the_schema() {
    // A new kind in the tracer's output must be drawn, or at least be
    // reported as unknown rather than as a bad line.
    for k in crate::output::Kind::ALL {
        let input = format!(
            r#"{{"event":"{}","ts":"2026-11-22T10:15:01Z"}}"#,
            k.as_str()
        );
        let p = parse::read(input.as_bytes()).expect("reads");
        assert_eq!(p.events.len(), 1, "{}", k.as_str());
        assert_ne!(p.events[0].kind, Kind::Lost);
    }
}

#[test]
fn runs_of_alike_siblings_share_a_row_but_keep_their_marks() {
    let mut lines = vec![line("exec", "01.000", &task(1, None, "loop", "w"))];
    for pid in 2..=4 {
        lines.push(line("fork", "01.100", &task(pid, Some(1), "true", "w")));
        lines.push(line(
            "exit",
            "01.200",
            &format!(r#"{},"exit_code":0"#, task(pid, Some(1), "true", "w")),
        ));
    }
    // Same name, another ending: a row of its own.
    lines.push(line(
        "exit",
        "01.300",
        &format!(r#"{},"exit_code":1"#, task(5, Some(1), "true", "w")),
    ));
    let (parsed, html) = page_of(&lines.join("\n"));
    let t = model::build(&parsed.events);
    let rows: Vec<usize> = t.lanes[0].rows.iter().map(|r| r.procs.len()).collect();
    assert_eq!(rows, [1, 3, 1]);
    assert_eq!(count(&html, r#"class="mark exit""#), 4);
    assert!(html.contains("true ×3"));
}

#[test]
fn tracer_options_are_refused_not_ignored() {
    use clap::Parser;
    let parse = |args: &[&str]| {
        crate::cli::Cli::try_parse_from(
            std::iter::once("linnix-sidecar").chain(args.iter().copied()),
        )
        .expect("parses")
    };
    let cli = parse(&["report", "log.jsonl"]);
    assert!(super::tracer_options(&cli.common).is_empty());
    let cli = parse(&["--log-level", "debug", "report", "-o", "x.html"]);
    assert!(super::tracer_options(&cli.common).is_empty());
    let cli = parse(&["report", "--threads", "--output", "json", "log.jsonl"]);
    assert_eq!(
        super::tracer_options(&cli.common),
        ["--threads", "--output"]
    );
}
