//! The events the kernel reports, decoded: what a process did, and what
//! the kernel says about the stream itself (drops, removed cgroups).

/// The task an event is about, as seen by the kernel.
///
/// Strings are escaped with [`crate::escape_bytes`]: printable, and exact.
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
    /// Already running when [`crate::Tracer::present`] looked.
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

/// Counters kept in the kernel, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Events lost because the ring buffer was full (fork and exec events
    /// already when it is three quarters full, keeping room for exits).
    pub lost: u64,
    /// Events dropped by the per-pod rate limit.
    pub rate_limited: u64,
}
