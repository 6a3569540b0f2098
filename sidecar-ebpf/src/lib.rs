//! Kernel programs of the linnix tracer and their typed interface.
//!
//! The C programs in `bpf/` (CO-RE, built by `build.rs` with clang) report
//! the process lifecycle of one pod: fork, exec, exit, OOM kill and moves
//! between cgroups, plus the processes already running. This
//! crate embeds the objects, loads and attaches them with aya and decodes the
//! ring-buffer records into [`Event`]s.
//!
//! - [`Tracer::load`] attaches the five `tp_btf` programs, filtered in the
//!   kernel to the cgroup v2 subtree of [`TracerConfig::target`];
//!   [`Tracer::present`] lists what already runs there, numbered alike.
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
mod escape;
mod load;
mod memory;
mod poll_timer;
mod present;
mod reader;
mod self_cgroup;
mod tracer;

pub use decode::decode;
pub use escape::escape_bytes;
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
    /// When `memory_pressure` events are due.
    pub pressure: PressureConfig,
}

/// When the kernel reports memory pressure of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PressureConfig {
    /// At most one event per container per interval; the next one counts
    /// what happened in between.
    pub interval: std::time::Duration,
    /// A container whose usage reaches this share (percent) of its limit has
    /// crossed the threshold; 0 turns threshold events off.
    pub threshold_pct: u32,
}

impl Default for PressureConfig {
    fn default() -> Self {
        PressureConfig {
            interval: std::time::Duration::from_secs(10),
            threshold_pct: 90,
        }
    }
}

/// The task an event is about, as seen by the kernel.
///
/// Strings are escaped with [`escape_bytes`]: printable, and exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub ts_boot_ns: u64,
    /// Process id in the initial PID namespace.
    pub host_pid: u32,
    /// Thread id in the initial PID namespace.
    pub host_tid: u32,
    /// Process id in the loader's PID namespace (in a pod, the pod's); 0
    /// when the process has no number there.
    pub pid: u32,
    /// Parent process id in that namespace; 0 when the parent is outside it.
    pub ppid: u32,
    /// Parent process id in the initial PID namespace.
    pub host_ppid: u32,
    /// The thread's id in the loader's PID namespace (`pid` for the
    /// leader), 0 when it has none there.
    pub tid: u32,
    /// Process id in the task's innermost PID namespace.
    pub inner_pid: u32,
    pub comm: String,
    /// Container-level cgroup: the ancestor one level below the target, or
    /// the task's own cgroup when it sits directly in the target.
    pub cgroup_id: u64,
    /// kernfs name of that cgroup (carries the container id).
    pub cgroup_name: String,
    /// Boot-time start of the process (its group leader).
    pub start_ns: u64,
    /// The same for the parent process.
    pub parent_start_ns: u64,
    /// The parent process is inside the traced cgroup too.
    pub parent_in_target: bool,
    /// Effective uid and gid, as the initial user namespace numbers them.
    pub uid: u32,
    pub gid: u32,
}

/// A process, unique on the node for the boot: its host pid and start time.
/// The same from its fork (or the tracer's start) to its exit, across execs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessId {
    pub host_pid: u32,
    pub start_ns: u64,
}

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.host_pid, self.start_ns)
    }
}

impl Task {
    pub fn process(&self) -> ProcessId {
        ProcessId {
            host_pid: self.host_pid,
            start_ns: self.start_ns,
        }
    }

    /// The parent process, when it is inside the traced cgroup.
    pub fn parent(&self) -> Option<ProcessId> {
        self.parent_in_target.then_some(ProcessId {
            host_pid: self.host_ppid,
            start_ns: self.parent_start_ns,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkEvent {
    pub task: Task,
    pub thread: bool,
    /// The process that forked, when it is in the traced cgroup. Not always
    /// the parent: after a clone with `CLONE_PARENT` the child's parent is
    /// the forker's.
    pub creator: Option<ProcessId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEvent {
    pub task: Task,
    /// A name longer than the buffer keeps its start and its end, joined by
    /// `…`, with `filename_truncated` set.
    pub filename: String,
    pub filename_truncated: bool,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    /// Started with an empty argv (`argc == 0`). Since Linux 5.18 the kernel
    /// gives such a program the argv `[""]` before any tracepoint sees it, so
    /// an explicit `[""]` cannot be told from it and is flagged too.
    pub argv_empty: bool,
    pub privileges: Privileges,
}

/// How an exec raised privileges, if it did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Privileges {
    /// A set-user-ID file changed the effective uid.
    pub setuid: bool,
    /// A set-group-ID file changed the effective gid.
    pub setgid: bool,
    /// File capabilities raised the permitted set.
    pub file_caps: bool,
    /// The kernel marked the exec AT_SECURE (all of the above, or an LSM's
    /// domain transition).
    pub secure_exec: bool,
}

impl Privileges {
    pub fn raised(&self) -> bool {
        self.setuid || self.setgid || self.file_caps || self.secure_exec
    }
}

/// A process moved between cgroups across the traced subtree's boundary, or
/// between two of its container-level cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupEvent {
    /// `cgroup_id` / `cgroup_name`: the container joined, or (leave) the id
    /// of the one left, with an empty name.
    pub task: Task,
    pub change: CgroupChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupChange {
    /// Into the traced subtree from outside it.
    Join,
    /// Out of it.
    Leave,
    /// From the container-level cgroup with this id to another one.
    Move { from_cgroup_id: u64 },
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

/// Events the kernel dropped since the previous `LostEvent`: the hole in the
/// stream lies between that record and this one. The kernel writes one
/// before the first record that fits after a drop, at most one per 100 ms;
/// drops after the last record stay in [`KernelStats`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostEvent {
    pub ts_boot_ns: u64,
    /// The ring buffer was full (fork and exec: three quarters full).
    pub lost: u64,
    /// Dropped by the per-pod rate limit.
    pub rate_limited: u64,
}

/// A container-level cgroup of the target (one level below it) was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRemovedEvent {
    pub ts_boot_ns: u64,
    pub cgroup_id: u64,
    /// kernfs name of the cgroup (carries the container id).
    pub cgroup_name: String,
}

/// Why a container's memory cgroup is under pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PressureReason {
    /// Reclaim at `memory.max` (v1: `memory.limit_in_bytes`), or at an
    /// ancestor's limit.
    Reclaim,
    /// Reclaim at `memory.high` (cgroup v2).
    High,
    /// Usage reached the threshold share of the limit.
    Threshold,
}

impl PressureReason {
    /// Every reason, in the kernel's order (`reason as usize` indexes it).
    pub const ALL: [PressureReason; 3] = [
        PressureReason::Reclaim,
        PressureReason::High,
        PressureReason::Threshold,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PressureReason::Reclaim => "reclaim",
            PressureReason::High => "high",
            PressureReason::Threshold => "threshold",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPressureEvent {
    /// The allocating task (reclaim), or the container's largest process
    /// by RSS (threshold); `cgroup_id` names the container.
    pub task: Task,
    pub reason: PressureReason,
    /// Reclaims and crossings since the container's previous event, this
    /// one included.
    pub count: u32,
    pub usage_bytes: u64,
    /// `memory.max`; `None` without a limit.
    pub limit_bytes: Option<u64>,
    /// `memory.high`; `None` when unset (always on cgroup v1).
    pub high_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Fork(ForkEvent),
    Exec(ExecEvent),
    Exit(ExitEvent),
    OomKill(OomKillEvent),
    Lost(LostEvent),
    CgroupRemoved(CgroupRemovedEvent),
    MemoryPressure(MemoryPressureEvent),
    Cgroup(CgroupEvent),
    /// Already running when [`Tracer::present`] looked.
    Present(Task),
}

impl Event {
    /// The task the event is about; `None` for records about the stream
    /// (`Lost`) or about a cgroup (`CgroupRemoved`).
    pub fn task(&self) -> Option<&Task> {
        match self {
            Event::Fork(e) => Some(&e.task),
            Event::Exec(e) => Some(&e.task),
            Event::Exit(e) => Some(&e.task),
            Event::OomKill(e) => Some(&e.task),
            Event::Cgroup(e) => Some(&e.task),
            Event::Present(task) => Some(task),
            Event::MemoryPressure(e) => Some(&e.task),
            Event::Lost(_) | Event::CgroupRemoved(_) => None,
        }
    }
}

/// The counters behind a memory cgroup's `memory.events`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemcgEvents {
    /// Times usage was over `memory.high` and reclaim was forced.
    pub high: u64,
    /// Times usage was about to go over `memory.max` and reclaim ran.
    pub max: u64,
    /// Times the OOM killer was invoked for the memcg.
    pub oom: u64,
    /// Processes of the memcg the OOM killer killed.
    pub oom_kill: u64,
}

/// One container's memory, read by the kernel's sampling pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemorySample {
    /// Container-level cgroup, as [`Task::cgroup_id`].
    pub cgroup_id: u64,
    /// Its kernfs name, as [`Task::cgroup_name`].
    pub cgroup_name: String,
    /// The memory cgroup's id (the v1 one on hybrid hosts).
    pub memcg_id: u64,
    pub usage_bytes: u64,
    /// `memory.max` (v1: `memory.limit_in_bytes`); `None` without a limit.
    pub limit_bytes: Option<u64>,
    /// `memory.high`; `None` when unset.
    pub high_bytes: Option<u64>,
    /// `None` where the kernel does not keep them.
    pub events: Option<MemcgEvents>,
    /// Pressure occurrences since the tracer started, by reason (indexed
    /// like [`PressureReason::ALL`]), events or not.
    pub pressure: [u64; 3],
}

/// One pass of the kernel's memory sampler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryPass {
    /// Every container of the target that has processes.
    pub samples: Vec<MemorySample>,
    /// Containers that had pressure and no longer have processes, as
    /// (cgroup id, [`MemorySample::pressure`]): what happened in their last
    /// moments is counted once more, after the pass that found them gone.
    pub gone: Vec<(u64, [u64; 3])>,
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
    #[error("unknown memory pressure reason {0}")]
    UnknownPressureReason(u32),
    #[error("memory sample output of {0} bytes is not a whole number of samples")]
    PartialSample(usize),
    #[error("unknown kind of cgroup change {0}")]
    UnknownCgroupChange(u32),
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
    #[error("cannot read a memory sampling pass: {0}")]
    MemorySampleRead(#[source] std::io::Error),
    #[error("a memory sampling pass is malformed: {0}")]
    MemorySampleFormat(#[source] DecodeError),
}
