//! Running the command of `trace -- CMD`: starting it inside the scratch
//! cgroup, passing signals on to it, and its exit status as a shell reports it.

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};

use tokio::process::Child;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{debug, info};

use crate::run::RunError;
use crate::scratch::ScratchCgroup;

/// The shell's convention: the exit code, or 128 + the signal that killed it.
pub fn exit_status_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        u8::try_from(code & 0xff).unwrap_or(1)
    } else if let Some(sig) = status.signal() {
        u8::try_from(128 + (sig & 0x7f)).unwrap_or(255)
    } else {
        1
    }
}

/// Start the command inside the scratch cgroup. The child joins the cgroups
/// between fork and exec (writing "0", i.e. itself, to their cgroup.procs),
/// so its exec is already traced. The files are opened beforehand: after
/// fork only async-signal-safe calls are allowed.
pub fn spawn_in_cgroup(
    program: &OsStr,
    args: &[OsString],
    scratch: &ScratchCgroup,
) -> Result<Child, RunError> {
    let spawn_err = |source| RunError::Spawn {
        // Shown on stderr: a name is escaped as in the events.
        command: linnix_ebpf::escape_bytes(std::os::unix::ffi::OsStrExt::as_bytes(program)),
        source,
    };
    let procs = scratch.open_procs_files()?;
    let fds: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
    // stdout carries only events: the command writes to our stderr instead.
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(spawn_err)?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).stdout(Stdio::from(stderr));
    // SAFETY: the closure only calls write(2) on descriptors opened above.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(spawn_err)?;
    drop(procs);
    Ok(child)
}

/// Wait for the command to exit. SIGINT and SIGTERM go on to it meanwhile:
/// the command decides how to end, and its exit ends the trace.
pub async fn wait_forwarding_signals(
    child: &mut Child,
    signals: &mut Signals,
) -> Result<ExitStatus, RunError> {
    let pid = child.id();
    loop {
        tokio::select! {
            status = child.wait() => return status.map_err(RunError::Wait),
            sig = signals.recv() => {
                // Never kill(0) or a negative pid: those mean process groups.
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|&p| p > 0) {
                    debug!(signal = sig, "forwarding signal to the command");
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
    }
}

/// Completes on the first SIGINT or SIGTERM.
pub fn shutdown_signal() -> Result<impl Future<Output = Result<(), RunError>>, RunError> {
    let mut signals = Signals::new()?;
    Ok(async move {
        let sig = signals.recv().await;
        info!(signal = sig, "stopping");
        Ok(())
    })
}

/// SIGINT and SIGTERM, handled from creation on instead of ending the process.
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub fn new() -> Result<Self, RunError> {
        Ok(Signals {
            int: signal(SignalKind::interrupt()).map_err(RunError::Signals)?,
            term: signal(SignalKind::terminate()).map_err(RunError::Signals)?,
        })
    }

    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_style_exit_status() {
        assert_eq!(exit_status_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_status_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_status_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_status_code(ExitStatus::from_raw(15 | 0x80)), 143);
    }
}
