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
mod config;
mod decode;
mod error;
mod escape;
mod event;
mod load;
mod memory;
mod poll_timer;
mod present;
mod reader;
mod self_cgroup;
mod tracer;

pub use config::{CgroupAncestor, CgroupPosition, PressureConfig, TracerConfig};
pub use decode::decode;
pub use error::{DecodeError, TracerError};
pub use escape::escape_bytes;
pub use event::{
    CgroupChange, CgroupEvent, CgroupRemovedEvent, Event, ExecEvent, ExitEvent, ForkEvent,
    KernelStats, LostEvent, MemcgUsage, MemoryPressureEvent, OomKillEvent, PressureReason,
    Privileges, ProcessId, Task,
};
pub use memory::{MemcgEvents, MemoryPass, MemorySample};
pub use self_cgroup::own_cgroup_ancestors;
pub use tracer::Tracer;
