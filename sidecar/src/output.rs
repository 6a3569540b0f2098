//! The output contract: one JSON object per line on stdout.

use std::io::{self, BufWriter, Write};

use linnix_ebpf::{Event, ExecEvent, ExitEvent, MemoryPressureEvent, OomKillEvent, Task};
use serde::Serialize;

use crate::pod::PodIdentity;
use crate::timestamp::Rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Present,
    Fork,
    Exec,
    Exit,
    OomKill,
    MemoryPressure,
}

impl Kind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [Kind; 6] = [
        Kind::Present,
        Kind::Fork,
        Kind::Exec,
        Kind::Exit,
        Kind::OomKill,
        Kind::MemoryPressure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Present => "present",
            Kind::Fork => "fork",
            Kind::Exec => "exec",
            Kind::Exit => "exit",
            Kind::OomKill => "oom_kill",
            Kind::MemoryPressure => "memory_pressure",
        }
    }
}

/// One line of output.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    pub event: Kind,
    pub ts: Rfc3339,
    pub pid: u32,
    pub host_pid: Option<u32>,
    pub ppid: u32,
    pub comm: &'a str,
    pub container: Option<&'a str>,
    pub pod: Option<&'a PodIdentity>,
    #[serde(flatten)]
    pub detail: Detail<'a>,
}

/// The fields particular to each kind of event.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Detail<'a> {
    Present {},
    Fork(ForkDetail),
    Exec(ExecDetail<'a>),
    Exit(ExitDetail),
    OomKill(OomDetail),
    MemoryPressure(PressureDetail),
}

impl Detail<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Detail::Present {} => Kind::Present,
            Detail::Fork(_) => Kind::Fork,
            Detail::Exec(_) => Kind::Exec,
            Detail::Exit(_) => Kind::Exit,
            Detail::OomKill(_) => Kind::OomKill,
            Detail::MemoryPressure(_) => Kind::MemoryPressure,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ForkDetail {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub thread: bool,
}

#[derive(Debug, Serialize)]
pub struct ExecDetail<'a> {
    pub filename: &'a str,
    pub argv: &'a [String],
    pub argv_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub filename_truncated: bool,
}

impl<'a> From<&'a ExecEvent> for ExecDetail<'a> {
    fn from(e: &'a ExecEvent) -> Self {
        ExecDetail {
            filename: &e.filename,
            argv: &e.argv,
            argv_truncated: e.argv_truncated,
            filename_truncated: e.filename_truncated,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExitDetail {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub core_dumped: bool,
    pub lifetime_ms: u64,
}

impl From<&ExitEvent> for ExitDetail {
    fn from(e: &ExitEvent) -> Self {
        ExitDetail {
            exit_code: e.exit_code(),
            signal: e.signal(),
            core_dumped: e.core_dumped(),
            lifetime_ms: e.lifetime_ns / 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OomDetail {
    pub rss_kb: u64,
    pub rss_anon_kb: u64,
    pub rss_file_kb: u64,
    pub rss_shmem_kb: u64,
    pub memcg_usage_bytes: Option<u64>,
    pub memcg_limit_bytes: Option<u64>,
}

impl From<&OomKillEvent> for OomDetail {
    fn from(e: &OomKillEvent) -> Self {
        OomDetail {
            rss_kb: e
                .rss_anon_kb
                .saturating_add(e.rss_file_kb)
                .saturating_add(e.rss_shmem_kb),
            rss_anon_kb: e.rss_anon_kb,
            rss_file_kb: e.rss_file_kb,
            rss_shmem_kb: e.rss_shmem_kb,
            memcg_usage_bytes: e.memcg.as_ref().map(|m| m.usage_bytes),
            memcg_limit_bytes: e.memcg.as_ref().map(|m| m.limit_bytes),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PressureDetail {
    /// `reclaim`, `high` or `threshold`.
    pub reason: &'static str,
    pub count: u32,
    pub memcg_usage_bytes: u64,
    pub memcg_limit_bytes: Option<u64>,
    pub memcg_high_bytes: Option<u64>,
}

impl From<&MemoryPressureEvent> for PressureDetail {
    fn from(e: &MemoryPressureEvent) -> Self {
        PressureDetail {
            reason: e.reason.as_str(),
            count: e.count,
            memcg_usage_bytes: e.usage_bytes,
            memcg_limit_bytes: e.limit_bytes,
            memcg_high_bytes: e.high_bytes,
        }
    }
}

impl<'a> Detail<'a> {
    /// The task and the line's own fields; `None` for records that are not
    /// about a task (lost events, removed cgroups).
    pub fn of(event: &'a Event) -> Option<(&'a Task, Detail<'a>)> {
        match event {
            Event::Fork(f) => Some((&f.task, Detail::Fork(ForkDetail { thread: f.thread }))),
            Event::Exec(e) => Some((&e.task, Detail::Exec(e.into()))),
            Event::Exit(e) => Some((&e.task, Detail::Exit(e.into()))),
            Event::OomKill(o) => Some((&o.task, Detail::OomKill(o.into()))),
            Event::Lost(_) | Event::CgroupRemoved(_) => None,
            Event::MemoryPressure(p) => Some((&p.task, Detail::MemoryPressure(p.into()))),
        }
    }
}

/// The line that marks a hole in the stream: how many events the kernel
/// dropped since the previous `lost` line (or the start).
#[derive(Debug, Serialize)]
pub struct LostLine<'a> {
    pub event: LostKind,
    pub ts: Rfc3339,
    /// The ring buffer was full (fork and exec: three quarters full).
    pub lost: u64,
    /// Dropped by the per-pod rate limit (`--max-events-per-sec`).
    pub rate_limited: u64,
    pub pod: Option<&'a PodIdentity>,
}

/// The `event` of a [`LostLine`]: always `"lost"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostKind;

impl Serialize for LostKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("lost")
    }
}

/// Buffered stdout: a batch of lines goes out in one write.
pub struct Writer<W: Write> {
    out: BufWriter<W>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer {
            out: BufWriter::with_capacity(64 * 1024, out),
        }
    }

    pub fn write(&mut self, line: &impl Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn line<'a>(detail: Detail<'a>, pod: Option<&'a PodIdentity>) -> Line<'a> {
        Line {
            event: detail.kind(),
            ts: Rfc3339(1_795_342_502_123_456_789),
            pid: 12,
            host_pid: Some(48211),
            ppid: 7,
            comm: "uname",
            container: Some("app"),
            pod,
            detail,
        }
    }

    fn to_value(l: &impl Serialize) -> Value {
        let mut w = Writer::new(Vec::new());
        w.write(l).expect("write");
        w.flush().expect("flush");
        let bytes = w.out.into_inner().expect("into_inner");
        let text = String::from_utf8(bytes).expect("utf8");
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        serde_json::from_str(&text).expect("valid JSON")
    }

    const COMMON: [&str; 8] = [
        "event",
        "ts",
        "pid",
        "host_pid",
        "ppid",
        "comm",
        "container",
        "pod",
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
            }),
            Some(&pod),
        ));
        expect_keys(&v, &["filename", "argv", "argv_truncated"]);
        // filename_truncated appears only when true, as the README says.
        let cut = to_value(&line(
            Detail::Exec(ExecDetail {
                filename: "/very/long",
                argv: &argv,
                argv_truncated: false,
                filename_truncated: true,
            }),
            None,
        ));
        expect_keys(
            &cut,
            &["filename", "argv", "argv_truncated", "filename_truncated"],
        );
        assert_eq!(cut["filename_truncated"], true);
        assert_eq!(v["event"], "exec");
        assert_eq!(v["ts"], "2026-11-22T10:15:02.123456789Z");
        assert_eq!(v["argv"], json!(["uname", "-a"]));
        assert_eq!(
            v["pod"],
            json!({"name": "web", "namespace": "team-a", "uid": null})
        );
        assert_eq!(v["host_pid"], 48211);
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
    fn fork_present_and_oom_lines() {
        let v = to_value(&line(Detail::Fork(ForkDetail { thread: false }), None));
        expect_keys(&v, &[]);
        assert_eq!(v["event"], "fork");
        let v = to_value(&line(Detail::Fork(ForkDetail { thread: true }), None));
        expect_keys(&v, &["thread"]);
        let v = to_value(&line(Detail::Present {}, None));
        expect_keys(&v, &[]);
        assert_eq!(v["event"], "present");

        let oom = OomKillEvent {
            task: Task {
                ts_boot_ns: 1,
                host_pid: 2,
                pid: 2,
                ppid: 1,
                comm: "dd".into(),
                cgroup_id: 9,
                cgroup_name: "x".into(),
            },
            rss_anon_kb: 64980,
            rss_file_kb: 32,
            rss_shmem_kb: 4,
            memcg: None,
        };
        let v = to_value(&line(Detail::OomKill((&oom).into()), None));
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
            task: Task {
                ts_boot_ns: 1,
                host_pid: 2,
                pid: 2,
                ppid: 1,
                comm: "python3".into(),
                cgroup_id: 9,
                cgroup_name: "x".into(),
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
        let v = to_value(&LostLine {
            event: LostKind,
            ts: Rfc3339(5),
            lost: 313,
            rate_limited: 0,
            pod: Some(&pod),
        });
        assert_eq!(
            v,
            json!({"event": "lost", "ts": "1970-01-01T00:00:00.000000005Z",
                   "lost": 313, "rate_limited": 0, "pod": {"name": "web", "namespace": null, "uid": null}})
        );
    }
}
