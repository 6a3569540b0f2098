//! Whose scratch cgroup is it? A tracer killed with SIGKILL cannot remove
//! the cgroup `trace -- CMD` made, nor kill what runs in it. The next
//! `trace -- CMD`, or `trace --cleanup`, removes such leftovers, and only
//! those:
//!
//! - a directory named `linnix-trace-<pid>` or `linnix-trace-<pid>-<n>`
//!   right below the cgroup v2 root,
//! - that carries the owner mark (an extended attribute its creator sets
//!   once it holds the lock, so a directory made by anyone else, or one whose
//!   creator has not taken the lock yet, is never touched),
//! - and whose lock nobody holds. A live tracer holds an exclusive flock(2)
//!   on its directory for as long as the directory exists; the kernel drops
//!   the lock when the tracer dies, however it dies. The descriptor is
//!   close-on-exec, so the traced command does not inherit it.
//!
//! The memory limit's cgroup on a hybrid host (the same name in the v1
//! memory hierarchy) goes with its v2 directory.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::cgroup::{
    collect_pids_recursive, find_v1_mount, find_v2_mount, io_err, kill_cgroup, mounts, remove_dir,
    CgroupError,
};

const NAME_PREFIX: &str = "linnix-trace-";
const OWNER_XATTR: &str = "user.linnix.owner";
const OWNER_VALUE: &[u8] = b"linnix-sidecar trace";

/// Whether `name` is one `ScratchCgroup::create` gives: `linnix-trace-<pid>`
/// or `linnix-trace-<pid>-<n>`.
pub fn is_scratch_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match name.strip_prefix(NAME_PREFIX) {
        Some(rest) => match rest.split_once('-') {
            Some((pid, n)) => digits(pid) && digits(n),
            None => digits(rest),
        },
        None => false,
    }
}

/// Take the lock on a scratch directory just made, then mark it as the
/// tracer's. Keep the returned file open for as long as the directory lives.
pub fn own(dir: &Path) -> Result<File, CgroupError> {
    let lock = File::open(dir).map_err(io_err("open", dir))?;
    // Blocks only while a sweep looks at the new, still unmarked directory.
    flock(&lock, libc::LOCK_EX).map_err(io_err("lock", dir))?;
    set_mark(dir).map_err(io_err("mark", dir))?;
    Ok(lock)
}

/// A stale scratch cgroup that was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    pub path: PathBuf,
    /// Processes that were still running in it, killed.
    pub processes: usize,
}

/// Remove every stale scratch cgroup of this host (see the module's doc).
pub fn sweep() -> Result<Vec<Swept>, CgroupError> {
    let mounts = mounts()?;
    let v2 = find_v2_mount(&mounts).ok_or(CgroupError::NoV2Mount)?;
    let v1_memory = find_v1_mount(&mounts, "memory");
    Ok(sweep_in(&v2, v1_memory.as_deref()))
}

/// A line on stderr for each cgroup removed.
pub fn report(swept: &[Swept]) {
    for s in swept {
        info!(
            path = %s.path.display(),
            processes_killed = s.processes,
            "removed a scratch cgroup that a killed tracer left behind"
        );
    }
}

/// [`sweep`] and [`report`]; a failure is a warning, never the end of the
/// run that sweeps.
pub fn sweep_and_report() {
    match sweep() {
        Ok(swept) => report(&swept),
        Err(e) => {
            warn!(error = %e, "cannot look for scratch cgroups that killed tracers left behind")
        }
    }
}

fn sweep_in(v2: &Path, v1_memory: Option<&Path>) -> Vec<Swept> {
    let Ok(entries) = fs::read_dir(v2) else {
        return Vec::new();
    };
    let mut swept = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| is_scratch_name(n)) else {
            continue;
        };
        let dir = entry.path();
        match remove_if_stale(&dir, v1_memory.map(|m| m.join(name))) {
            Ok(Some(s)) => swept.push(s),
            Ok(None) => {}
            Err(e) => {
                warn!(path = %dir.display(), error = %e, "cannot remove a stale scratch cgroup")
            }
        }
    }
    swept
}

/// `None` when the directory is not a dead tracer's.
fn remove_if_stale(dir: &Path, v1_dir: Option<PathBuf>) -> Result<Option<Swept>, CgroupError> {
    let lock = match File::open(dir) {
        Ok(f) => f,
        // Removed meanwhile by its own tracer.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", dir)(e)),
    };
    match flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => {}
        // A live tracer's.
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => return Ok(None),
        Err(e) => return Err(io_err("lock", dir)(e)),
    }
    // The mark is read through the locked descriptor, and the path must
    // still lead to that directory: not to a new one made meanwhile.
    if !has_mark(&lock) || !same_directory(&lock, dir) {
        return Ok(None);
    }
    let processes = collect_pids_recursive(dir)?.len();
    kill_cgroup(dir)?;
    if let Some(v1) = v1_dir.filter(|d| d.is_dir()) {
        kill_cgroup(&v1)?;
        remove_dir(&v1)?;
    }
    remove_dir(dir)?;
    Ok(Some(Swept {
        path: dir.to_owned(),
        processes,
    }))
}

fn flock(file: &File, operation: libc::c_int) -> io::Result<()> {
    // SAFETY: flock(2) on a descriptor this File owns.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

fn set_mark(dir: &Path) -> io::Result<()> {
    let path = c_path(dir)?;
    let name = CString::new(OWNER_XATTR).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: both strings are NUL-terminated; the value is a live slice.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            OWNER_VALUE.as_ptr().cast(),
            OWNER_VALUE.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn has_mark(dir: &File) -> bool {
    let Ok(name) = CString::new(OWNER_XATTR) else {
        return false;
    };
    let mut value = [0u8; 64];
    // SAFETY: fgetxattr writes at most value.len() bytes into value.
    let len = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            name.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    usize::try_from(len).is_ok_and(|len| value.get(..len) == Some(OWNER_VALUE))
}

fn same_directory(open: &File, path: &Path) -> bool {
    match (open.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_names_scratch_cgroups_get() {
        for ours in ["linnix-trace-1", "linnix-trace-4242", "linnix-trace-4242-7"] {
            assert!(is_scratch_name(ours), "{ours}");
        }
        for other in [
            "linnix-trace-",
            "linnix-trace-x",
            "linnix-trace-12-",
            "linnix-trace-12-3-4",
            "linnix-trace-12.slice",
            "linnix-tracer-12",
            "system.slice",
            "",
        ] {
            assert!(!is_scratch_name(other), "{other}");
        }
    }

    /// Real cgroups (root needed): an owned directory is stale only once
    /// its lock is gone, and one without the mark is never taken.
    #[test]
    fn a_sweep_takes_only_unlocked_marked_directories() {
        let mounts = mounts().expect("mountinfo");
        let v2 = find_v2_mount(&mounts).expect("cgroup v2");
        let pid = std::process::id();
        let live = v2.join(format!("linnix-trace-{pid}-91"));
        let dead = v2.join(format!("linnix-trace-{pid}-92"));
        let foreign = v2.join(format!("linnix-trace-{pid}-93"));
        for d in [&live, &dead, &foreign] {
            fs::create_dir(d).expect("mkdir");
        }
        let _live_lock = own(&live).expect("own");
        drop(own(&dead).expect("own"));

        let swept = sweep_in(&v2, None);
        let ours: Vec<_> = swept
            .iter()
            .filter(|s| [&live, &dead, &foreign].contains(&&s.path))
            .collect();
        assert_eq!(
            ours,
            [&Swept {
                path: dead.clone(),
                processes: 0
            }]
        );
        assert!(!dead.exists());
        assert!(live.exists() && foreign.exists());
        for d in [&live, &foreign] {
            fs::remove_dir(d).expect("rmdir");
        }
    }
}
