//! Test support: throw-away cgroups and processes started inside them.
//!
//! Every test gets its own cgroup v2 directory (and, where asked, a v1 memory
//! cgroup), removed on drop even when the test fails: leftover processes are
//! killed first, then the directories are removed deepest first.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use linnix_ebpf::{CgroupPosition, Event, Tracer, TracerConfig};

/// BPF tests run one at a time: each loads its own programs, and two cores
/// are shared with compilers.
pub static BPF_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The cgroup v2 mount: `/sys/fs/cgroup` on a unified host, its `unified`
/// directory on a hybrid one.
pub fn v2_root() -> PathBuf {
    let unified = Path::new("/sys/fs/cgroup");
    if unified.join("cgroup.controllers").exists() {
        unified.to_path_buf()
    } else {
        unified.join("unified")
    }
}

pub fn is_hybrid() -> bool {
    v2_root() != Path::new("/sys/fs/cgroup")
}

fn unique_name() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "linnix-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A cgroup v2 directory created for one test; nested ones are created with
/// [`TestCgroup::child`] and removed together with it.
pub struct TestCgroup {
    pub path: PathBuf,
    /// Extra directories to clean up (children, the v1 memory cgroup),
    /// in creation order.
    extra: Vec<PathBuf>,
}

impl TestCgroup {
    pub fn new() -> TestCgroup {
        let path = v2_root().join(unique_name());
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TestCgroup {
            path,
            extra: Vec::new(),
        }
    }

    /// A nested cgroup below `parent` (relative path, e.g. "a" or "a/b").
    pub fn child(&mut self, relative: &str) -> PathBuf {
        let path = self.path.join(relative);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        self.extra.push(path.clone());
        path
    }

    /// A v1 memory cgroup with a limit (hybrid hosts), or the limit on the v2
    /// directory itself (unified hosts). Returns the directories a process
    /// must join for the limit to apply.
    pub fn limit_memory(&mut self, bytes: u64) -> Vec<PathBuf> {
        if is_hybrid() {
            let v1 = Path::new("/sys/fs/cgroup/memory").join(self.path.file_name().expect("named"));
            fs::create_dir(&v1).unwrap_or_else(|e| panic!("mkdir {}: {e}", v1.display()));
            self.extra.push(v1.clone());
            write(&v1.join("memory.limit_in_bytes"), &bytes.to_string());
            // Without swap the limit is reached at once; with swap this keeps
            // the memory from going there instead.
            let _ = fs::write(v1.join("memory.swappiness"), "0");
            vec![self.path.clone(), v1]
        } else {
            let control = v2_root().join("cgroup.subtree_control");
            let _ = fs::write(control, "+memory");
            write(&self.path.join("memory.max"), &bytes.to_string());
            let _ = fs::write(self.path.join("memory.swap.max"), "0");
            vec![self.path.clone()]
        }
    }

    pub fn position(&self) -> CgroupPosition {
        position_of(&self.path)
    }

    pub fn name(&self) -> String {
        name_of(&self.path)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let mut dirs = vec![self.path.clone()];
        dirs.extend(self.extra.iter().cloned());
        for dir in &dirs {
            kill_all(dir);
        }
        // Deepest first: children were created after their parents.
        for dir in dirs.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(err) = fs::remove_dir(dir) {
                if err.kind() == std::io::ErrorKind::NotFound || Instant::now() > deadline {
                    if err.kind() != std::io::ErrorKind::NotFound {
                        eprintln!("cannot remove {}: {err}", dir.display());
                    }
                    break;
                }
                kill_all(dir);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn kill_all(dir: &Path) {
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

pub fn position_of(path: &Path) -> CgroupPosition {
    let id = fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino();
    let level = path
        .strip_prefix(v2_root())
        .expect("below the v2 root")
        .components()
        .count() as u32;
    CgroupPosition { id, level }
}

pub fn name_of(path: &Path) -> String {
    path.file_name()
        .expect("named")
        .to_string_lossy()
        .into_owned()
}

fn write(path: &Path, value: &str) {
    fs::write(path, value).unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
}

/// `argv` started inside the cgroups `dirs`: a shell joins them and then
/// execs the program, so the fork that created it happened outside.
pub fn spawn_in(dirs: &[PathBuf], argv: &[&str]) -> Child {
    let joins: String = dirs
        .iter()
        .map(|d| format!("echo $$ > '{}'/cgroup.procs && ", d.display()))
        .collect();
    Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{joins}exec \"$@\""))
        .arg("sh")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn /bin/sh")
}

/// Run to completion inside `dir`, returning the pid.
pub fn run_in(dir: &Path, argv: &[&str]) -> u32 {
    let mut child = spawn_in(&[dir.to_path_buf()], argv);
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

/// Wait until `/proc/<pid>/comm` reads `comm` (the exec happened).
pub fn wait_for_comm(pid: u32, comm: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("pid {pid} did not become {comm}");
}

pub fn config(target: CgroupPosition) -> TracerConfig {
    TracerConfig {
        target,
        trace_threads: false,
        max_events_per_sec: 0,
        pressure: Default::default(),
    }
}

/// Everything the tracer has delivered so far. Ring-buffer records are
/// visible as soon as the traced process has been reaped, so one drain after
/// the workload is complete; a short second drain catches stragglers.
pub fn collect(tracer: &mut Tracer) -> Vec<Event> {
    let mut events = Vec::new();
    tracer.drain(&mut |e| events.push(e));
    std::thread::sleep(Duration::from_millis(50));
    tracer.drain(&mut |e| events.push(e));
    events
}
