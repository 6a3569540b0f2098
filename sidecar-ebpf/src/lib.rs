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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Fork(ForkEvent),
    Exec(ExecEvent),
    Exit(ExitEvent),
    OomKill(OomKillEvent),
    Cgroup(CgroupEvent),
    /// Already running when [`Tracer::present`] looked.
    Present(Task),
}

impl Event {
    pub fn task(&self) -> &Task {
        match self {
            Event::Fork(e) => &e.task,
            Event::Exec(e) => &e.task,
            Event::Exit(e) => &e.task,
            Event::OomKill(e) => &e.task,
            Event::Cgroup(e) => &e.task,
            Event::Present(task) => task,
        }
    }
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
}
