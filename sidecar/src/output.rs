//! The output contract: what one line says, written as JSON (one object per
//! line) or as aligned text (see `text.rs`).

use std::io::{self, BufWriter, Write};

use linnix_ebpf::{ExecEvent, ExitEvent, MemoryPressureEvent, OomKillEvent, Privileges, ProcessId};
use serde::ser::SerializeSeq;
use serde::Serialize;

pub use crate::clock::{Clock, Rfc3339};
use crate::pod::PodIdentity;
use crate::text;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Present,
    Fork,
    Exec,
    Exit,
    OomKill,
    MemoryPressure,
    CgroupJoin,
    CgroupLeave,
    ContainerStart,
    ContainerExit,
}

impl Kind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [Kind; 10] = [
        Kind::Present,
        Kind::Fork,
        Kind::Exec,
        Kind::Exit,
        Kind::OomKill,
        Kind::MemoryPressure,
        Kind::CgroupJoin,
        Kind::CgroupLeave,
        Kind::ContainerStart,
        Kind::ContainerExit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Present => "present",
            Kind::Fork => "fork",
            Kind::Exec => "exec",
            Kind::Exit => "exit",
            Kind::OomKill => "oom_kill",
            Kind::MemoryPressure => "memory_pressure",
            Kind::CgroupJoin => "cgroup_join",
            Kind::CgroupLeave => "cgroup_leave",
            Kind::ContainerStart => "container_start",
            Kind::ContainerExit => "container_exit",
        }
    }
}

/// A process's identity as the output shows it: an opaque string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecId(pub ProcessId);

impl Serialize for ExecId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// One line of output.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    pub event: Kind,
    pub ts: Rfc3339,
    /// In the pod's (the tracer's) PID namespace; `None` when the process
    /// has no number there.
    pub pid: Option<u32>,
    /// The innermost number, where it differs from `pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner_pid: Option<u32>,
    pub host_pid: u32,
    pub ppid: u32,
    pub comm: &'a str,
    pub container: Option<&'a str>,
    pub pod: Option<&'a PodIdentity>,
    pub exec_id: ExecId,
    pub parent_exec_id: Option<ExecId>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub entered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec_probe: Option<&'a str>,
    #[serde(flatten)]
    pub detail: Detail<'a>,
}

/// The fields particular to each kind of event.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Detail<'a> {
    Present(Creds),
    Fork(ForkDetail),
    Exec(ExecDetail<'a>),
    Exit(ExitDetail),
    OomKill(OomDetail),
    MemoryPressure(PressureDetail),
    CgroupJoin(JoinDetail<'a>),
    CgroupLeave {},
    ContainerStart(StartDetail<'a>),
    ContainerExit(ContainerExitDetail),
}

impl Detail<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Detail::Present(_) => Kind::Present,
            Detail::Fork(_) => Kind::Fork,
            Detail::Exec(_) => Kind::Exec,
            Detail::Exit(_) => Kind::Exit,
            Detail::OomKill(_) => Kind::OomKill,
            Detail::MemoryPressure(_) => Kind::MemoryPressure,
            Detail::CgroupJoin(_) => Kind::CgroupJoin,
            Detail::CgroupLeave {} => Kind::CgroupLeave,
            Detail::ContainerStart(_) => Kind::ContainerStart,
            Detail::ContainerExit(_) => Kind::ContainerExit,
        }
    }
}

/// Effective ids, as the initial user namespace numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Serialize)]
pub struct ForkDetail {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub thread: bool,
    /// A thread's own id, in the pod's PID namespace and on the node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_tid: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct ExecDetail<'a> {
    pub filename: &'a str,
    pub argv: &'a [String],
    pub argv_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub filename_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub argv_empty: bool,
    #[serde(flatten)]
    pub creds: Creds,
    pub privileges_raised: Raised,
}

impl<'a> From<&'a ExecEvent> for ExecDetail<'a> {
    fn from(e: &'a ExecEvent) -> Self {
        ExecDetail {
            filename: &e.filename,
            argv: &e.argv,
            argv_truncated: e.argv_truncated,
            filename_truncated: e.filename_truncated,
            argv_empty: e.argv_empty,
            creds: Creds {
                uid: e.task.uid,
                gid: e.task.gid,
            },
            privileges_raised: Raised(e.privileges),
        }
    }
}

/// How an exec raised privileges, as a list: `setuid`, `setgid`,
/// `file_caps`, or `secure_exec` when the kernel marked it AT_SECURE for
/// another reason (an LSM's transition); empty when nothing was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised(pub Privileges);

impl Raised {
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        let p = self.0;
        let other = p.secure_exec && !(p.setuid || p.setgid || p.file_caps);
        [
            (p.setuid, "setuid"),
            (p.setgid, "setgid"),
            (p.file_caps, "file_caps"),
            (other, "secure_exec"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
    }
}

impl Serialize for Raised {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for name in self.names() {
            seq.serialize_element(name)?;
        }
        seq.end()
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

#[derive(Debug, Serialize)]
pub struct JoinDetail<'a> {
    #[serde(flatten)]
    pub creds: Creds,
    /// Moved from this container of the pod; absent when it came from
    /// outside the pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_container: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct StartDetail<'a> {
    /// Already running when the tracer started.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub present: bool,
    /// The entrypoint; for a present container, what its main process
    /// runs now (from /proc), `None` where /proc does not say.
    pub filename: Option<&'a str>,
    pub argv: Option<&'a [String]>,
    #[serde(flatten)]
    pub creds: Creds,
    /// In a pod: since the first container start the tracer knows of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_first_container_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ContainerExitDetail {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub core_dumped: bool,
    pub oom_killed: bool,
    pub oom_kills: u32,
    pub runtime_ms: u64,
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// Aligned columns for a person, like libbpf-tools' execsnoop.
    Text,
}

impl Format {
    /// Text for a person at a terminal running `trace`; JSON for programs,
    /// log collectors and every pod.
    pub fn default_for(trace: bool, stdout_is_terminal: bool) -> Format {
        if trace && stdout_is_terminal {
            Format::Text
        } else {
            Format::Json
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
    format: Format,
    header_written: bool,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, format: Format) -> Self {
        Writer {
            out: BufWriter::with_capacity(64 * 1024, out),
            format,
            header_written: false,
        }
    }

    pub fn write(&mut self, line: &Line<'_>) -> io::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, line)?;
                self.out.write_all(b"\n")
            }
            Format::Text => {
                self.text_header()?;
                text::write_line(&mut self.out, line)
            }
        }
    }

    pub fn write_lost(&mut self, line: &LostLine<'_>) -> io::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, line)?;
                self.out.write_all(b"\n")
            }
            Format::Text => {
                self.text_header()?;
                text::write_lost(&mut self.out, line)
            }
        }
    }

    fn text_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.header_written = true;
            text::write_header(&mut self.out)?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
impl Writer<Vec<u8>> {
    pub fn into_bytes(self) -> Vec<u8> {
        self.out.into_inner().expect("a Vec takes every write")
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
}
