//! The output contract: what one line says, written as JSON (one object per
//! line) or as aligned text (see `text.rs`).

mod writer;

use linnix_ebpf::{ExecEvent, ExitEvent, MemoryPressureEvent, OomKillEvent, Privileges, ProcessId};
use serde::ser::SerializeSeq;
use serde::Serialize;

pub use crate::clock::{Clock, Rfc3339};
use crate::pod::PodIdentity;
pub use writer::{Format, Writer};

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

#[cfg(test)]
pub(crate) mod tests;
