//! Kernel programs of the linnix tracer and their typed interface.
//!
//! The C programs in `bpf/` (CO-RE, built by `build.rs` with clang) report
//! the process lifecycle of one pod: fork, exec, exit and OOM kill. This
//! crate embeds the objects, loads and attaches them with aya and decodes the
//! ring-buffer records into [`Event`]s.
//!
//! - [`Tracer::load`] attaches the four `tp_btf` programs, filtered in the
//!   kernel to the cgroup v2 subtree of [`TracerConfig::target`].
//! - [`own_cgroup_ancestors`] finds the caller's cgroup v2 position, and each
//!   ancestor's kernfs name, from inside a private cgroup namespace, so the
//!   pod cgroup can be chosen.
//! - [`decode`] turns one ring-buffer record into an [`Event`].
//!
//! The event layout is defined once, in `bpf/include/linnix_events.h`; the
//! Rust view is generated from it (module `bindings`).

mod bindings;
mod decode;
mod error;
mod load;
mod poll_timer;
mod reader;
mod self_cgroup;
mod tracer;

pub use decode::decode;
pub use self_cgroup::own_cgroup_ancestors;
pub use tracer::Tracer;

/// Where a cgroup sits in the cgroup v2 tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupPosition {
    /// cgroup id: the inode number of the v2 directory.
    pub id: u64,
    /// Depth below the v2 root (the root is level 0).
    pub level: u32,
}

/// One cgroup on the path from the v2 root to the caller, as found by
/// [`own_cgroup_ancestors`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupAncestor {
    pub position: CgroupPosition,
    /// kernfs name: the cgroup's directory name, empty for the v2 root. It
    /// tells a pod cgroup (`kubepods-…-pod<uid>.slice`, `pod<uid>`, podman's
    /// pod id) from a host slice even where the tree is not mounted.
    pub name: String,
}

/// What to load and how to filter.
#[derive(Debug, Clone)]
pub struct TracerConfig {
    /// The cgroup whose subtree is traced (the pod cgroup). Everything else is
    /// dropped in the kernel.
    pub target: CgroupPosition,
    /// Report thread creation as fork events with `thread = true`.
    pub trace_threads: bool,
    /// In-kernel cap on events per second for the target; 0 means no cap.
    pub max_events_per_sec: u32,
}

/// The task an event is about, as seen by the kernel. (The record also
/// carries the host thread and parent ids, which nothing reports yet.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub ts_boot_ns: u64,
    /// Process id in the initial PID namespace.
    pub host_pid: u32,
    /// Process id in the task's own (the pod's) PID namespace.
    pub pid: u32,
    /// Parent process id in that namespace; 0 when the parent is outside it.
    pub ppid: u32,
    pub comm: String,
    /// Container-level cgroup: the ancestor one level below the target, or
    /// the task's own cgroup when it sits directly in the target.
    pub cgroup_id: u64,
    /// kernfs name of that cgroup (carries the container id).
    pub cgroup_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkEvent {
    pub task: Task,
    pub thread: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEvent {
    pub task: Task,
    pub filename: String,
    pub filename_truncated: bool,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitEvent {
    pub task: Task,
    /// Raw wait status of the thread group.
    pub status: u32,
    pub lifetime_ns: u64,
}

impl ExitEvent {
    /// Exit code when the process exited normally.
    pub fn exit_code(&self) -> Option<i32> {
        (self.status & 0x7f == 0).then_some(((self.status >> 8) & 0xff) as i32)
    }
    /// Signal number when the process was killed by a signal.
    pub fn signal(&self) -> Option<i32> {
        let signal = (self.status & 0x7f) as i32;
        (signal != 0).then_some(signal)
    }
    pub fn core_dumped(&self) -> bool {
        self.status & 0x80 != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcgUsage {
    pub usage_bytes: u64,
    pub limit_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomKillEvent {
    /// The victim.
    pub task: Task,
    pub rss_anon_kb: u64,
    pub rss_file_kb: u64,
    pub rss_shmem_kb: u64,
    pub memcg: Option<MemcgUsage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Fork(ForkEvent),
    Exec(ExecEvent),
    Exit(ExitEvent),
    OomKill(OomKillEvent),
}

/// Counters kept in the kernel, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Events lost because the ring buffer was full (fork and exec events
    /// already when it is three quarters full, keeping room for exits).
    pub lost: u64,
    /// Events dropped by the per-pod rate limit.
    pub rate_limited: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event record of {0} bytes is too short")]
    TooShort(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
}

/// Why the tracer cannot run here. Each variant names what is missing.
#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    #[error("kernel BTF is missing: {0} is not readable; a kernel built with CONFIG_DEBUG_INFO_BTF=y is required")]
    NoBtf(String),
    #[error("not permitted to {action}: the tracer needs the capabilities CAP_BPF and CAP_PERFMON (and a seccomp profile that allows bpf())")]
    MissingCapability { action: String },
    #[error("this host does not use cgroup v2 for its processes (the tracer's cgroup is the v2 root); a cgroup v2 (unified or hybrid) host is required")]
    NoCgroupV2,
    #[error("the kernel's page size of {0} bytes is not a power of two of at least 1 KiB")]
    UnsupportedPageSize(usize),
    #[error("the tracer's cgroup is nested {level} levels deep; at most {max} are supported")]
    CgroupTooDeep { level: u32, max: u32 },
    #[error("the cgroup discovery program {0}")]
    OwnCgroupNotRecorded(&'static str),
    #[error("failed to {action}: {detail}")]
    Bpf { action: String, detail: String },
    #[error("the embedded BPF object does not match this build: {0}")]
    EmbeddedObject(String),
    #[error("Tracer::load must be called inside a Tokio runtime with I/O enabled")]
    NoRuntime,
    #[error("cannot poll the events ring buffer: {0}")]
    RingBufferPoll(#[source] std::io::Error),
    #[error("cannot create the poll timer: {0}")]
    PollTimer(#[source] std::io::Error),
}
