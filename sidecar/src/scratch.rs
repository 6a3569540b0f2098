//! The scratch cgroup `trace -- CMD` runs its command in: made below the
//! cgroup v2 root, with the memory limit wherever the memory controller lives
//! (v2, or a v1 hierarchy on hybrid hosts), and removed with everything in it
//! when the trace ends.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use linnix_ebpf::CgroupPosition;
use tracing::{debug, warn};

use crate::cgroup::{
    find_v1_mount, find_v2_mount, io_err, kill_cgroup, mounts, position_of, remove_dir, write_file,
    CgroupError, MountEntry,
};
use crate::scratch_owner;

/// Where the memory limit of a scratch cgroup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MemoryHome {
    /// The v2 memory controller is usable: `memory.max` in the v2 directory.
    V2,
    /// Hybrid host: a v1 memory hierarchy mounted here.
    V1(PathBuf),
}

fn memory_home(v2: &Path, mounts: &[MountEntry]) -> Result<MemoryHome, CgroupError> {
    let controllers_path = v2.join("cgroup.controllers");
    let controllers = fs::read_to_string(&controllers_path).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory") {
        return Ok(MemoryHome::V2);
    }
    find_v1_mount(mounts, "memory")
        .map(MemoryHome::V1)
        .ok_or_else(|| CgroupError::NoMemoryController(v2.to_owned()))
}

/// A cgroup made for one traced command. `remove` kills its processes and
/// removes its directories off the runtime thread; dropping it without
/// `remove` (unwinding, or outside a runtime) does the same, blocking. A
/// tracer killed with SIGKILL does neither: its lock on the directory goes,
/// and the next `trace` removes what it left (see [`crate::scratch_owner`]).
#[derive(Debug)]
pub struct ScratchCgroup {
    dirs: ScratchDirs,
    position: CgroupPosition,
    removed: bool,
    /// Held until the directories are gone: it tells a live tracer's
    /// cgroup from a dead one's.
    _owner: Option<File>,
}

#[derive(Debug, Clone)]
struct ScratchDirs {
    v2_dir: PathBuf,
    /// v1 memory cgroup on hybrid hosts with a limit.
    v1_memory_dir: Option<PathBuf>,
}

impl ScratchDirs {
    /// Blocks until every process is gone (up to `KILL_TIMEOUT` each).
    fn kill_all(&self) -> Result<(), CgroupError> {
        kill_cgroup(&self.v2_dir)?;
        if let Some(d) = &self.v1_memory_dir {
            kill_cgroup(d)?;
        }
        Ok(())
    }

    /// Blocks while leftovers die and rmdir stops answering EBUSY.
    fn remove(&self) {
        if let Err(e) = self.kill_all() {
            warn!(error = %e, "cannot kill what is left in the traced cgroup");
        }
        for dir in self
            .v1_memory_dir
            .iter()
            .chain(std::iter::once(&self.v2_dir))
        {
            if let Err(e) = remove_dir(dir) {
                warn!(path = %dir.display(), error = %e, "cannot remove cgroup");
            }
        }
    }
}

impl ScratchCgroup {
    /// Create `linnix-trace-<pid>` below the v2 root (and below the v1
    /// memory root when the limit has to live there).
    pub fn create(memory_limit: Option<u64>) -> Result<Self, CgroupError> {
        let mounts = mounts()?;
        let v2 = find_v2_mount(&mounts).ok_or(CgroupError::NoV2Mount)?;
        let home = memory_limit
            .map(|_| memory_home(&v2, &mounts))
            .transpose()?;

        let (v2_dir, name) = make_unique_dir(&v2)?;
        // From here on, Drop cleans up whatever was made.
        let mut cg = ScratchCgroup {
            position: CgroupPosition { id: 0, level: 0 },
            dirs: ScratchDirs {
                v2_dir,
                v1_memory_dir: None,
            },
            removed: false,
            _owner: None,
        };
        cg._owner = Some(scratch_owner::own(&cg.dirs.v2_dir)?);
        cg.position = position_of(&cg.dirs.v2_dir, &v2)?;

        if let (Some(limit), Some(home)) = (memory_limit, home) {
            match home {
                MemoryHome::V2 => {
                    enable_memory_controller(&v2)?;
                    write_file(&cg.dirs.v2_dir.join("memory.max"), &limit.to_string())?;
                    // Kubernetes semantics: the limit is on RAM, no swapping around it.
                    let swap = cg.dirs.v2_dir.join("memory.swap.max");
                    if swap.exists() {
                        if let Err(e) = write_file(&swap, "0") {
                            warn!(error = %e, "cannot disable swap for the traced command");
                        }
                    }
                }
                MemoryHome::V1(root) => {
                    let dir = root.join(&name);
                    fs::create_dir(&dir).map_err(io_err("create", &dir))?;
                    cg.dirs.v1_memory_dir = Some(dir.clone());
                    write_file(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                }
            }
        }
        debug!(path = %cg.dirs.v2_dir.display(), id = cg.position.id, level = cg.position.level, "scratch cgroup created");
        Ok(cg)
    }

    pub fn position(&self) -> CgroupPosition {
        self.position
    }

    pub fn path(&self) -> &Path {
        &self.dirs.v2_dir
    }

    /// `cgroup.procs` of every directory the command must join, opened now so
    /// that the child only has to write(2) to them between fork and exec.
    pub fn open_procs_files(&self) -> Result<Vec<File>, CgroupError> {
        std::iter::once(&self.dirs.v2_dir)
            .chain(self.dirs.v1_memory_dir.iter())
            .map(|d| {
                let p = d.join("cgroup.procs");
                OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map_err(io_err("open", &p))
            })
            .collect()
    }

    /// Kill every process still in the cgroup and wait until it is empty,
    /// on the blocking pool: waiting takes up to `KILL_TIMEOUT`.
    pub async fn kill_all(&self) -> Result<(), CgroupError> {
        let dirs = self.dirs.clone();
        tokio::task::spawn_blocking(move || dirs.kill_all())
            .await
            .unwrap_or_else(|e| Err(io_err("empty", &self.dirs.v2_dir)(io::Error::other(e))))
    }

    /// Kill what is left and remove the directories, on the blocking pool.
    pub async fn remove(mut self) {
        self.removed = true;
        let dirs = self.dirs.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || dirs.remove()).await {
            warn!(error = %e, "cannot clean up the traced cgroup");
        }
    }
}

impl Drop for ScratchCgroup {
    fn drop(&mut self) {
        if !self.removed {
            self.dirs.remove();
        }
    }
}

fn make_unique_dir(parent: &Path) -> Result<(PathBuf, String), CgroupError> {
    let pid = std::process::id();
    for n in 0..100u32 {
        let name = if n == 0 {
            format!("linnix-trace-{pid}")
        } else {
            format!("linnix-trace-{pid}-{n}")
        };
        let dir = parent.join(&name);
        match fs::create_dir(&dir) {
            Ok(()) => return Ok((dir, name)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create", &dir)(e)),
        }
    }
    Err(io_err("create a cgroup in", parent)(io::Error::from(
        ErrorKind::AlreadyExists,
    )))
}

fn enable_memory_controller(v2: &Path) -> Result<(), CgroupError> {
    let control = v2.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&control).map_err(io_err("read", &control))?;
    if enabled.split_whitespace().any(|c| c == "memory") {
        return Ok(());
    }
    write_file(&control, "+memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::read_pids;

    impl ScratchCgroup {
        /// True while any process is left in the v2 cgroup.
        fn is_populated(&self) -> bool {
            read_pids(&self.dirs.v2_dir).is_ok_and(|p| !p.is_empty())
        }
    }

    fn sleeper_in(cg: &ScratchCgroup) -> std::process::Child {
        let child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawn sleep");
        fs::write(cg.path().join("cgroup.procs"), child.id().to_string()).expect("move");
        assert!(cg.is_populated());
        child
    }

    #[tokio::test]
    async fn scratch_cgroup_is_removed_off_the_runtime_thread() {
        use std::os::unix::process::ExitStatusExt;
        let cg = ScratchCgroup::create(None).expect("create");
        let path = cg.path().to_owned();
        let mut child = sleeper_in(&cg);
        cg.kill_all().await.expect("kill");
        assert!(!cg.is_populated());
        cg.remove().await;
        assert!(!path.exists(), "cgroup left behind");
        assert_eq!(child.wait().expect("wait").signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn scratch_cgroup_is_removed_with_its_processes() {
        let cg = ScratchCgroup::create(Some(64 << 20)).expect("create");
        let path = cg.path().to_owned();
        assert_eq!(cg.position().level, 1);
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawn sleep");
        fs::write(path.join("cgroup.procs"), child.id().to_string()).expect("move");
        assert!(cg.is_populated());
        drop(cg);
        assert!(!path.exists(), "cgroup left behind");
        let status = child.wait().expect("wait");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
