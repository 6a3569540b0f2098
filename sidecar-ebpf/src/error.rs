//! Mapping of aya errors to [`TracerError`]: the one case an operator can
//! fix by configuration (missing capabilities) gets its own variant.

use std::error::Error;
use std::io;
use std::path::Path;

use crate::TracerError;

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
