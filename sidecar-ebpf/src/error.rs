//! The crate's errors, and the mapping of aya errors to [`TracerError`]: the
//! one case an operator can fix by configuration (missing capabilities) gets
//! its own variant.

use std::error::Error;
use std::io;
use std::path::Path;

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

pub(crate) const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// The programs are CO-RE: without kernel BTF nothing can be relocated.
///
/// Only checks that the file is there. `EbpfLoader::new()` always parses it
/// itself (aya 0.14 has no way to hand it one without that parse), so parsing
/// it here as well would cost a second copy of tens of MiB at the same time.
pub(crate) fn require_btf_file() -> Result<(), TracerError> {
    if Path::new(BTF_PATH).is_file() {
        Ok(())
    } else {
        Err(TracerError::NoBtf(BTF_PATH.to_owned()))
    }
}

/// Parsed kernel BTF, for what needs it beyond the loader's relocations
/// (the attach point ids of the `tp_btf` programs).
pub(crate) fn parse_btf() -> Result<aya::Btf, TracerError> {
    require_btf_file()?;
    aya::Btf::from_sys_fs().map_err(|err| {
        tracing::debug!(error = %err, "cannot parse kernel BTF");
        TracerError::NoBtf(format!("{BTF_PATH} ({err})"))
    })
}

/// Classify an error from creating maps, loading or attaching programs.
pub(crate) fn classify(action: &str, err: &(dyn Error + 'static)) -> TracerError {
    if is_permission_error(err) {
        return TracerError::MissingCapability {
            action: action.to_owned(),
        };
    }
    TracerError::Bpf {
        action: action.to_owned(),
        detail: chain(err),
    }
}

fn is_permission_error(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(io_err) = err.downcast_ref::<io::Error>() {
            if io_err.raw_os_error() == Some(libc::EPERM) {
                return true;
            }
        }
        next = err.source();
    }
    false
}

/// "outer: inner: innermost", skipping causes already part of the message.
fn chain(err: &(dyn Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        next = cause.source();
    }
    message
}
