//! What the tracer is told: which cgroup to trace, and how to filter.

/// Where a cgroup sits in the cgroup v2 tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupPosition {
    /// cgroup id: the inode number of the v2 directory.
    pub id: u64,
    /// Depth below the v2 root (the root is level 0).
    pub level: u32,
}

/// One cgroup on the path from the v2 root to the caller, as found by
/// [`crate::own_cgroup_ancestors`].
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
