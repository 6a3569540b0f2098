use super::*;
use serde_json::{json, Value};

pub(crate) fn line<'a>(detail: Detail<'a>, pod: Option<&'a PodIdentity>) -> Line<'a> {
    Line {
        event: detail.kind(),
        ts: Rfc3339(1_795_342_502_123_456_789),
        pid: Some(12),
        inner_pid: None,
        host_pid: 48211,
        ppid: 7,
        comm: "uname",
        container: Some("app"),
        pod,
        exec_id: ExecId(ProcessId {
            host_pid: 48211,
            start_ns: 5_000_000_123,
        }),
        parent_exec_id: Some(ExecId(ProcessId {
            host_pid: 48200,
            start_ns: 4_000_000_000,
        })),
        entered: false,
        exec_probe: None,
        detail,
    }
}

fn to_value(l: &Line<'_>) -> Value {
    let mut w = Writer::new(Vec::new(), Format::Json);
    w.write(l).expect("write");
    let text = String::from_utf8(w.into_bytes()).expect("utf8");
    assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
    serde_json::from_str(&text).expect("valid JSON")
}

const COMMON: [&str; 10] = [
    "event",
    "ts",
    "pid",
    "host_pid",
    "ppid",
    "comm",
    "container",
    "pod",
    "exec_id",
    "parent_exec_id",
];

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

fn expect_keys(v: &Value, extra: &[&str]) {
    let mut want: Vec<&str> = COMMON.iter().chain(extra).copied().collect();
    want.sort_unstable();
    assert_eq!(keys(v), want);
}

const ROOT: Creds = Creds { uid: 0, gid: 0 };

#[test]
fn exec_line() {
    let argv = vec!["uname".to_owned(), "-a".to_owned()];
    let pod = PodIdentity {
        name: Some("web".into()),
        namespace: Some("team-a".into()),
        uid: None,
        node: None,
    };
    let v = to_value(&line(
        Detail::Exec(ExecDetail {
            filename: "/bin/uname",
            argv: &argv,
            argv_truncated: false,
            filename_truncated: false,
            argv_empty: false,
            creds: ROOT,
            privileges_raised: Raised(Privileges::default()),
        }),
        Some(&pod),
    ));
    // filename_truncated appears only when true, as the README says.
    let cut = to_value(&line(
        Detail::Exec(ExecDetail {
            filename: "/very/long",
            argv: &argv,
            argv_truncated: false,
            filename_truncated: true,
            argv_empty: false,
            creds: ROOT,
            privileges_raised: Raised(Privileges::default()),
        }),
        None,
    ));
    expect_keys(
        &cut,
        &[
            "filename",
            "argv",
            "argv_truncated",
            "filename_truncated",
            "uid",
            "gid",
            "privileges_raised",
        ],
    );
    assert_eq!(cut["filename_truncated"], true);
    expect_keys(
        &v,
        &[
            "filename",
            "argv",
            "argv_truncated",
            "uid",
            "gid",
            "privileges_raised",
        ],
    );
    assert_eq!(v["event"], "exec");
    assert_eq!(v["ts"], "2026-11-22T10:15:02.123456789Z");
    assert_eq!(v["argv"], json!(["uname", "-a"]));
    assert_eq!(
        v["pod"],
        json!({"name": "web", "namespace": "team-a", "uid": null})
    );
    assert_eq!(v["host_pid"], 48211);
    assert_eq!(v["exec_id"], "48211-5000000123");
    assert_eq!(v["parent_exec_id"], "48200-4000000000");
    assert_eq!(v["privileges_raised"], json!([]));
}

#[test]
fn raised_privileges_and_marks() {
    let argv = vec![String::new()];
    let mut l = line(
        Detail::Exec(ExecDetail {
            filename: "/usr/bin/su",
            argv: &argv,
            argv_truncated: false,
            filename_truncated: true,
            argv_empty: true,
            creds: ROOT,
            privileges_raised: Raised(Privileges {
                setuid: true,
                secure_exec: true,
                ..Privileges::default()
            }),
        }),
        None,
    );
    l.entered = true;
    l.exec_probe = Some("app/liveness");
    l.inner_pid = Some(1);
    l.pid = None;
    l.parent_exec_id = None;
    let v = to_value(&l);
    assert_eq!(v["privileges_raised"], json!(["setuid"]));
    assert_eq!(v["argv_empty"], true);
    assert_eq!(v["filename_truncated"], true);
    assert_eq!(v["entered"], true);
    assert_eq!(v["exec_probe"], "app/liveness");
    assert_eq!(v["inner_pid"], 1);
    assert!(v["pid"].is_null() && v["parent_exec_id"].is_null());
    let lsm = Raised(Privileges {
        secure_exec: true,
        ..Privileges::default()
    });
    assert_eq!(lsm.names().collect::<Vec<_>>(), ["secure_exec"]);
}

#[test]
fn exit_line_by_code_and_by_signal() {
    let v = to_value(&line(
        Detail::Exit(ExitDetail {
            exit_code: Some(3),
            signal: None,
            core_dumped: false,
            lifetime_ms: 2,
        }),
        None,
    ));
    expect_keys(&v, &["exit_code", "signal", "core_dumped", "lifetime_ms"]);
    assert_eq!(v["event"], "exit");
    assert_eq!(v["exit_code"], 3);
    assert!(v["signal"].is_null() && v["pod"].is_null());
    let v = to_value(&line(
        Detail::Exit(ExitDetail {
            exit_code: None,
            signal: Some(9),
            core_dumped: true,
            lifetime_ms: 0,
        }),
        None,
    ));
    assert!(v["exit_code"].is_null());
    assert_eq!(v["signal"], 9);
    assert_eq!(v["core_dumped"], true);
}

#[test]
fn fork_present_cgroup_and_container_lines() {
    let fork = |thread: bool| {
        Detail::Fork(ForkDetail {
            thread,
            tid: thread.then_some(13),
            host_tid: thread.then_some(48213),
        })
    };
    let v = to_value(&line(fork(false), None));
    expect_keys(&v, &[]);
    assert_eq!(v["event"], "fork");
    let v = to_value(&line(fork(true), None));
    expect_keys(&v, &["thread", "tid", "host_tid"]);
    assert_eq!(
        (v["tid"].as_u64(), v["host_tid"].as_u64()),
        (Some(13), Some(48213))
    );
    let v = to_value(&line(Detail::Present(ROOT), None));
    expect_keys(&v, &["uid", "gid"]);
    assert_eq!(v["event"], "present");

    let v = to_value(&line(
        Detail::CgroupJoin(JoinDetail {
            creds: ROOT,
            from_container: Some("sidecar"),
        }),
        None,
    ));
    expect_keys(&v, &["uid", "gid", "from_container"]);
    assert_eq!(v["event"], "cgroup_join");
    let v = to_value(&line(Detail::CgroupLeave {}, None));
    expect_keys(&v, &[]);
    assert_eq!(v["event"], "cgroup_leave");

    let argv = vec!["/app".to_owned()];
    let v = to_value(&line(
        Detail::ContainerStart(StartDetail {
            present: true,
            filename: None,
            argv: Some(&argv),
            creds: ROOT,
            since_first_container_ms: Some(1500),
        }),
        None,
    ));
    expect_keys(
        &v,
        &[
            "present",
            "filename",
            "argv",
            "uid",
            "gid",
            "since_first_container_ms",
        ],
    );
    assert_eq!(v["event"], "container_start");
    assert!(v["filename"].is_null());
    let v = to_value(&line(
        Detail::ContainerExit(ContainerExitDetail {
            exit_code: None,
            signal: Some(9),
            core_dumped: false,
            oom_killed: true,
            oom_kills: 2,
            runtime_ms: 61_000,
        }),
        None,
    ));
    expect_keys(
        &v,
        &[
            "exit_code",
            "signal",
            "core_dumped",
            "oom_killed",
            "oom_kills",
            "runtime_ms",
        ],
    );
    assert_eq!(v["event"], "container_exit");
}

#[test]
fn oom_line() {
    let oom = OomDetail {
        rss_kb: 65016,
        rss_anon_kb: 64980,
        rss_file_kb: 32,
        rss_shmem_kb: 4,
        memcg_usage_bytes: None,
        memcg_limit_bytes: None,
    };
    let v = to_value(&line(Detail::OomKill(oom), None));
    expect_keys(
        &v,
        &[
            "rss_kb",
            "rss_anon_kb",
            "rss_file_kb",
            "rss_shmem_kb",
            "memcg_usage_bytes",
            "memcg_limit_bytes",
        ],
    );
    assert_eq!(v["event"], "oom_kill");
    assert_eq!(v["rss_kb"], 65016);
    assert!(v["memcg_limit_bytes"].is_null());
}

#[test]
fn memory_pressure_line() {
    let pressure = MemoryPressureEvent {
        task: linnix_ebpf::Task {
            ts_boot_ns: 1,
            host_pid: 2,
            host_tid: 2,
            pid: 2,
            ppid: 1,
            host_ppid: 1,
            tid: 2,
            inner_pid: 2,
            comm: "python3".into(),
            cgroup_id: 9,
            cgroup_name: "x".into(),
            start_ns: 1,
            parent_start_ns: 0,
            parent_in_target: false,
            uid: 0,
            gid: 0,
        },
        reason: linnix_ebpf::PressureReason::Reclaim,
        count: 17,
        usage_bytes: 67_100_000,
        limit_bytes: Some(67_108_864),
        high_bytes: None,
    };
    let v = to_value(&line(Detail::MemoryPressure((&pressure).into()), None));
    expect_keys(
        &v,
        &[
            "reason",
            "count",
            "memcg_usage_bytes",
            "memcg_limit_bytes",
            "memcg_high_bytes",
        ],
    );
    assert_eq!(v["event"], "memory_pressure");
    assert_eq!(v["reason"], "reclaim");
    assert_eq!(v["count"], 17);
    assert_eq!(v["memcg_limit_bytes"], 67_108_864);
    assert!(v["memcg_high_bytes"].is_null());
}

#[test]
fn lost_line() {
    let pod = PodIdentity {
        name: Some("web".into()),
        namespace: None,
        uid: None,
        node: None,
    };
    let mut w = Writer::new(Vec::new(), Format::Json);
    w.write_lost(&LostLine {
        event: LostKind,
        ts: Rfc3339(5),
        lost: 313,
        rate_limited: 0,
        pod: Some(&pod),
    })
    .expect("write");
    let v: Value = serde_json::from_slice(&w.into_bytes()).expect("valid JSON");
    assert_eq!(
        v,
        json!({"event": "lost", "ts": "1970-01-01T00:00:00.000000005Z",
               "lost": 313, "rate_limited": 0, "pod": {"name": "web", "namespace": null, "uid": null}})
    );
}

#[test]
fn text_only_for_trace_at_a_terminal() {
    assert_eq!(Format::default_for(true, true), Format::Text);
    assert_eq!(Format::default_for(true, false), Format::Json);
    assert_eq!(Format::default_for(false, true), Format::Json);
    assert_eq!(Format::default_for(false, false), Format::Json);
}
