//! Kernel programs of the linnix tracer and their typed interface.
//!
//! INTERFACE SKELETON: the public types and function signatures below are the
//! contract between this crate and `linnix-sidecar`. Bodies marked `todo!()`
//! are to be implemented; signatures change only by agreement.

use std::io;

/// Where a cgroup sits in the cgroup v2 tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupPosition {
    /// cgroup id: the inode number of the v2 directory.
    pub id: u64,
    /// Depth below the v2 root (the root is level 0).
    pub level: u32,
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

/// The task an event is about, as seen by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub ts_boot_ns: u64,
    pub host_pid: u32,
    pub host_tid: u32,
    /// Process id in the task's own (the pod's) PID namespace.
    pub pid: u32,
    /// Parent process id in that namespace; 0 when the parent is outside it.
    pub ppid: u32,
    pub host_ppid: u32,
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
        todo!()
    }
    /// Signal number when the process was killed by a signal.
    pub fn signal(&self) -> Option<i32> {
        todo!()
    }
    pub fn core_dumped(&self) -> bool {
        todo!()
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

impl Event {
    pub fn task(&self) -> &Task {
        todo!()
    }
}

/// Counters kept in the kernel, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Events lost because the ring buffer was full.
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
    #[error("not permitted to {action}: the tracer needs the capabilities CAP_BPF and CAP_PERFMON (and a seccomp profile that allows bpf() and perf_event_open())")]
    MissingCapability { action: String },
    #[error("this host does not use cgroup v2 for its processes (the tracer's cgroup is the v2 root); a cgroup v2 (unified or hybrid) host is required")]
    NoCgroupV2,
    #[error("{0}")]
    Other(String),
}

/// Parse one ring-buffer record.
pub fn decode(record: &[u8]) -> Result<Event, DecodeError> {
    let _ = record;
    todo!()
}

/// The cgroup v2 position of the calling thread, found through BPF so that it
/// works inside a private cgroup namespace where no parent is visible.
/// Returns the calling thread's own cgroup and all its ancestors, root first.
pub fn own_cgroup_ancestry() -> Result<Vec<CgroupPosition>, TracerError> {
    todo!()
}

/// Loaded and attached programs plus the ring buffer they write to.
pub struct Tracer {
    _private: (),
}

impl Tracer {
    /// Load the object, set the filter, attach every program.
    pub fn load(config: &TracerConfig) -> Result<Tracer, TracerError> {
        let _ = config;
        todo!()
    }

    /// Wait until the ring buffer has data, then hand every record to `sink`.
    pub async fn next_batch(&mut self, sink: &mut dyn FnMut(Event)) -> io::Result<()> {
        let _ = sink;
        todo!()
    }

    /// Hand every record already in the ring buffer to `sink` without waiting.
    pub fn drain(&mut self, sink: &mut dyn FnMut(Event)) -> usize {
        let _ = sink;
        todo!()
    }

    pub fn kernel_stats(&self) -> Result<KernelStats, TracerError> {
        todo!()
    }
}
