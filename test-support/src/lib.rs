//! Cgroup fixtures for the tests of `linnix-ebpf` and `linnix-sidecar`:
//! throw-away cgroup v2 directories, memory limits for what runs in them,
//! and kill-and-remove on drop, also when the test fails.
//!
//! Works on pure v2 hosts (`/sys/fs/cgroup`) and on hybrid ones (v2 at
//! `/sys/fs/cgroup/unified`, the memory controller on v1). Deliberately
//! independent of `linnix-sidecar`'s own cgroup code, which some of these
//! tests exercise: a fixture that shared its bugs would hide them. Test code:
//! set-up failures panic with what went wrong.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a cgroup's processes get to die after SIGKILL, and its
/// directories to stop answering EBUSY.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The first mount of `fs_type` whose super options satisfy `options`, from
/// this process's mountinfo.
fn find_mount(fs_type: &str, options: impl Fn(&str) -> bool) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    text.lines().find_map(|l| {
        // "<id> <parent> <maj:min> <root> <mount point> ... - <type> <source> <super opts>"
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split(' ');
        let matches = post.next() == Some(fs_type) && post.nth(1).is_some_and(&options);
        let mount_point = pre.split(' ').nth(4)?;
        matches.then(|| PathBuf::from(mount_point))
    })
}

/// The cgroup v2 mount point: `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on a hybrid host.
pub fn v2_mount() -> PathBuf {
    find_mount("cgroup2", |_| true).expect("a cgroup2 mount")
}

/// The mount of the cgroup v1 hierarchy with the memory controller, if any.
fn v1_memory_mount() -> Option<PathBuf> {
    find_mount("cgroup", |o| o.split(',').any(|o| o == "memory"))
}

/// The inode number of a cgroup v2 directory: its cgroup id.
pub fn id_of(dir: &Path) -> u64 {
    fs::metadata(dir)
        .unwrap_or_else(|e| panic!("stat {}: {e}", dir.display()))
        .ino()
}

/// Depth of a cgroup v2 directory below the v2 root (the root is 0).
pub fn level_of(dir: &Path) -> u32 {
    let depth = dir
        .strip_prefix(v2_mount())
        .unwrap_or_else(|_| panic!("{} is not below the cgroup v2 mount", dir.display()))
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    u32::try_from(depth).expect("a sane depth")
}

/// A cgroup v2 directory owned by one test, directly below the v2 root.
/// Dropping it kills whatever runs in it or below it and removes the tree.
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    /// `linnix-test-<pid>-<n>`, unique within the test process.
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        Self::named(&NEXT.fetch_add(1, Ordering::Relaxed).to_string())
    }

    /// `linnix-test-<pid>-<tag>`; one left by an earlier run with the same
    /// pid is removed first.
    pub fn named(tag: &str) -> Self {
        let path = v2_mount().join(format!("linnix-test-{}-{tag}", std::process::id()));
        if path.exists() {
            kill_and_remove(&path);
        }
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TestCgroup { path }
    }

    /// A nested cgroup (`"a"`, or `"a/b"` once `"a"` exists), removed with
    /// this one.
    pub fn child(&self, relative: &str) -> PathBuf {
        let path = self.path.join(relative);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        path
    }

    pub fn id(&self) -> u64 {
        id_of(&self.path)
    }

    pub fn level(&self) -> u32 {
        level_of(&self.path)
    }

    /// The directory name, which is also the cgroup's kernfs name.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .expect("named")
            .to_string_lossy()
            .into_owned()
    }
}

impl Default for TestCgroup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        kill_and_remove(&self.path);
    }
}

/// A memory limit on a test's v2 cgroup: `memory.max` there when cgroup v2
/// has the memory controller, else (hybrid host) a v1 memory cgroup that the
/// processes must join as well ([`MemoryLimit::v1_dir`]). Removed on drop.
pub struct MemoryLimit {
    v1_dir: Option<PathBuf>,
}

impl MemoryLimit {
    pub fn new(v2_dir: &Path, bytes: u64) -> Self {
        let mount = v2_mount();
        let controllers = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            // Every ancestor from the root down must hand the controller on.
            let parent = v2_dir.parent().expect("parent cgroup");
            let mut chain: Vec<&Path> = parent
                .ancestors()
                .take_while(|p| p.starts_with(&mount))
                .collect();
            chain.reverse();
            for dir in chain {
                write(&dir.join("cgroup.subtree_control"), "+memory");
            }
            write(&v2_dir.join("memory.max"), &bytes.to_string());
            // Kubernetes semantics: the limit is on RAM, nothing swaps around it.
            let swap = v2_dir.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0");
            }
            return MemoryLimit { v1_dir: None };
        }
        let v1_root = v1_memory_mount().expect("a memory controller, v2 or v1");
        let name = v2_dir
            .strip_prefix(&mount)
            .expect("below the v2 mount")
            .to_string_lossy()
            .replace('/', "-");
        let dir = v1_root.join(name);
        if dir.exists() {
            kill_and_remove(&dir);
        }
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let limit = MemoryLimit {
            v1_dir: Some(dir.clone()),
        };
        write(&dir.join("memory.limit_in_bytes"), &bytes.to_string());
        // Without swap the limit is reached at once; with swap this keeps
        // the memory from going there instead.
        let _ = fs::write(dir.join("memory.swappiness"), "0");
        limit
    }

    /// The v1 memory cgroup a process must join too, on a hybrid host.
    pub fn v1_dir(&self) -> Option<&Path> {
        self.v1_dir.as_deref()
    }

    /// Make `cmd` (placed in the v2 cgroup with [`in_cgroup`]) subject to
    /// the limit.
    pub fn apply(&self, cmd: &mut Command) {
        if let Some(dir) = &self.v1_dir {
            in_cgroup(cmd, dir);
        }
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        if let Some(dir) = &self.v1_dir {
            kill_and_remove(dir);
        }
    }
}

/// Make `cmd` join `cgroup` between fork and exec, so that its exec already
/// happens inside.
pub fn in_cgroup(cmd: &mut Command, cgroup: &Path) {
    let procs = fs::OpenOptions::new()
        .write(true)
        .open(cgroup.join("cgroup.procs"))
        .unwrap_or_else(|e| panic!("open {}/cgroup.procs: {e}", cgroup.display()));
    // The closure owns the file, so it stays open until exec; after fork
    // only write(2), which is async-signal-safe.
    // SAFETY: the closure only calls write(2) on a descriptor it owns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Every pid in `dir` and the cgroups below it.
fn pids_in(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        // A process of another PID namespace is listed as 0, and kill(0)
        // would hit the test's own process group.
        .filter(|&pid| pid > 0)
        .collect();
    for child in subdirs(dir) {
        pids.extend(pids_in(&child));
    }
    pids
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// SIGKILL everything in the cgroup tree at `dir`, wait until it is empty,
/// then remove the directories, deepest first. Gives up (with a message on
/// stderr) after a few seconds rather than hang a test run.
pub fn kill_and_remove(dir: &Path) {
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    loop {
        let pids = pids_in(dir);
        if pids.is_empty() || Instant::now() > deadline {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(10));
    }
    remove_tree(dir, deadline);
}

/// rmdir children first. A just-emptied cgroup can answer EBUSY for a
/// moment while its last task is released, so retry until `deadline`.
fn remove_tree(dir: &Path, deadline: Instant) {
    for child in subdirs(dir) {
        remove_tree(&child, deadline);
    }
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if Instant::now() > deadline => {
                eprintln!("cannot remove {}: {e}", dir.display());
                return;
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn write(path: &Path, value: &str) {
    fs::write(path, value).unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_test_cgroup_is_a_v2_directory_one_level_below_the_root() {
        let cg = TestCgroup::new();
        assert!(cg.path.join("cgroup.procs").exists());
        assert_eq!(cg.level(), 1);
        assert_eq!(cg.id(), id_of(&cg.path));
        let inner = cg.child("a");
        cg.child("a/b");
        assert_eq!(level_of(&inner.join("b")), 3);
        assert_ne!(TestCgroup::new().path, cg.path);
    }

    #[test]
    fn dropping_kills_the_tree_and_removes_it() {
        let cg = TestCgroup::named("drop");
        let inner = cg.child("inner");
        let mut sleeper = Command::new("sleep");
        sleeper.arg("1000");
        in_cgroup(&mut sleeper, &inner);
        let mut sleeper = sleeper.spawn().expect("spawn sleep");
        assert_eq!(pids_in(&cg.path), [sleeper.id() as i32]);
        let path = cg.path.clone();
        drop(cg);
        assert!(!path.exists(), "{} left behind", path.display());
        assert_eq!(sleeper.wait().expect("wait").signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn a_stale_cgroup_of_the_same_name_is_replaced() {
        let first = TestCgroup::named("stale");
        first.child("leftover");
        let path = first.path.clone();
        std::mem::forget(first);
        let second = TestCgroup::named("stale");
        assert_eq!(second.path, path);
        assert!(!path.join("leftover").exists());
    }

    #[test]
    fn a_memory_limit_kills_what_exceeds_it() {
        let cg = TestCgroup::new();
        let limit = MemoryLimit::new(&cg.path, 32 << 20);
        let mut hog = Command::new("/usr/bin/python3");
        hog.args(["-c", "b = b'x' * (128 << 20)"]);
        in_cgroup(&mut hog, &cg.path);
        limit.apply(&mut hog);
        let status = hog.status().expect("run python3");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        let v1 = limit.v1_dir().map(Path::to_path_buf);
        drop(limit);
        assert!(v1.is_none_or(|d| !d.exists()));
    }
}
