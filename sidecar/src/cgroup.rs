//! cgroup v2 discovery: the mounts, a directory's position in the tree, and
//! killing and removing what a cgroup holds.
//!
//! Works on pure v2 hosts (`/sys/fs/cgroup`) and on hybrid ones (v2 at
//! `/sys/fs/cgroup/unified`, controllers on v1): wherever the memory
//! controller lives, the limit is set there.

use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use linnix_ebpf::CgroupPosition;

const MOUNTINFO: &str = "/proc/self/mountinfo";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// How long leftovers get to die after SIGKILL before rmdir is attempted.
const KILL_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 file system is mounted (no cgroup2 entry in {MOUNTINFO}); a cgroup v2 (unified or hybrid) host is required")]
    NoV2Mount,
    #[error("{} is not a directory of the cgroup v2 file system", shown(.0))]
    NotV2(PathBuf),
    #[error("{} does not exist", shown(.0))]
    Missing(PathBuf),
    #[error("{} is not below the cgroup v2 mount {}", shown(.path), shown(.mount))]
    OutsideMount { path: PathBuf, mount: PathBuf },
    #[error(
        "no memory controller: neither cgroup v2 ({}) nor a cgroup v1 memory hierarchy offers one", shown(.0)
    )]
    NoMemoryController(PathBuf),
    #[error("cannot {action} {}: {source}", shown(.path))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A path as the events show names: a path the user gave may hold an ESC
/// or other bytes a terminal acts on.
pub(crate) fn shown(path: &Path) -> String {
    linnix_ebpf::escape_bytes(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
}

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError {
    let path = path.to_owned();
    move |source| CgroupError::Io {
        action,
        path,
        source,
    }
}

/// One line of /proc/self/mountinfo, the fields this module needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub super_options: Vec<String>,
}

/// Undo the octal escapes (`\040` for a space, ...) the kernel applies to paths.
fn unescape_mount_path(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <type> <source> <super opts>"
            let (pre, post) = line.split_once(" - ")?;
            let mount_point = pre.split(' ').nth(4)?;
            let mut post = post.split(' ');
            let fs_type = post.next()?.to_owned();
            let _source = post.next()?;
            let super_options = post
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::to_owned)
                .collect();
            Some(MountEntry {
                mount_point: unescape_mount_path(mount_point),
                fs_type,
                super_options,
            })
        })
        .collect()
}

pub(crate) fn mounts() -> Result<Vec<MountEntry>, CgroupError> {
    let text = fs::read_to_string(MOUNTINFO).map_err(io_err("read", Path::new(MOUNTINFO)))?;
    Ok(parse_mountinfo(&text))
}

/// The cgroup v2 mount point (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`).
pub fn v2_mount() -> Result<PathBuf, CgroupError> {
    find_v2_mount(&mounts()?).ok_or(CgroupError::NoV2Mount)
}

pub fn find_v2_mount(mounts: &[MountEntry]) -> Option<PathBuf> {
    mounts
        .iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point.clone())
}

/// Mount point of the cgroup v1 hierarchy that carries `controller`.
pub fn find_v1_mount(mounts: &[MountEntry], controller: &str) -> Option<PathBuf> {
    mounts
        .iter()
        .find(|m| m.fs_type == "cgroup" && m.super_options.iter().any(|o| o == controller))
        .map(|m| m.mount_point.clone())
}

fn is_cgroup2_dir(path: &Path) -> Result<bool, CgroupError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| CgroupError::NotV2(path.to_owned()))?;
    // SAFETY: statfs only writes into the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io_err("statfs", path)(io::Error::last_os_error()));
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs
    Ok(st.f_type as i64 == CGROUP2_SUPER_MAGIC)
}

/// The id (inode) and level (depth below the v2 root) of a v2 directory.
pub fn position_of(dir: &Path, mount: &Path) -> Result<CgroupPosition, CgroupError> {
    let dir = dir.canonicalize().map_err(|e| match e.kind() {
        ErrorKind::NotFound => CgroupError::Missing(dir.to_owned()),
        _ => io_err("resolve", dir)(e),
    })?;
    let meta = fs::metadata(&dir).map_err(io_err("stat", &dir))?;
    if !meta.is_dir() || !is_cgroup2_dir(&dir)? {
        return Err(CgroupError::NotV2(dir));
    }
    let level = level_below(&dir, mount)?;
    Ok(CgroupPosition {
        id: meta.ino(),
        level,
    })
}

fn level_below(dir: &Path, mount: &Path) -> Result<u32, CgroupError> {
    let rel = dir
        .strip_prefix(mount)
        .map_err(|_| CgroupError::OutsideMount {
            path: dir.to_owned(),
            mount: mount.to_owned(),
        })?;
    let depth = rel
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    u32::try_from(depth).map_err(|_| CgroupError::NotV2(dir.to_owned()))
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err("write", path))
}

pub(crate) fn read_pids(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let p = dir.join("cgroup.procs");
    let text = fs::read_to_string(&p).map_err(io_err("read", &p))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Kill the processes of a cgroup and its descendants, then wait until the
/// cgroup is empty. `cgroup.kill` (v2, Linux 5.14+) is atomic against forks;
/// without it, SIGKILL is sent to every listed pid until none is left.
pub fn kill_cgroup(dir: &Path) -> Result<(), CgroupError> {
    if !dir.exists() {
        return Ok(());
    }
    let kill_file = dir.join("cgroup.kill");
    let has_kill = kill_file.exists() && write_file(&kill_file, "1").is_ok();
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        let pids = collect_pids_recursive(dir)?;
        if pids.is_empty() {
            return Ok(());
        }
        if !has_kill {
            // cgroup.procs lists a process of another PID namespace as 0,
            // and kill(0) would hit the tracer's own process group.
            for &pid in pids.iter().filter(|&&p| p > 0) {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if Instant::now() >= deadline {
            return Err(io_err("empty", dir)(io::Error::new(
                ErrorKind::TimedOut,
                format!("{} processes still alive", pids.len()),
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) fn collect_pids_recursive(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let mut pids = read_pids(dir)?;
    for child in subdirs(dir) {
        pids.extend(collect_pids_recursive(&child)?);
    }
    Ok(pids)
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// rmdir a cgroup, children first. A just-emptied cgroup can report EBUSY
/// for a moment while the last task is released, so retry briefly.
pub(crate) fn remove_dir(dir: &Path) -> Result<(), CgroupError> {
    for child in subdirs(dir) {
        remove_dir(&child)?;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(io_err("remove", dir)(e)),
        }
    }
}

/// How often `trace --cgroup` looks whether its cgroup is still there.
const CGROUP_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Completes once `dir` is no longer the cgroup `id` (removed, or another
/// directory made under its name). Nothing can happen in a removed cgroup,
/// so a tracer that stayed would report nothing, forever.
pub async fn removed(dir: &Path, id: u64) {
    let mut check = tokio::time::interval(CGROUP_CHECK_INTERVAL);
    loop {
        check.tick().await;
        match std::fs::metadata(dir) {
            Ok(meta) if meta.ino() == id => {}
            Ok(_) => return,
            Err(e) if e.kind() == ErrorKind::NotFound => return,
            Err(e) => tracing::debug!(error = %e, "cannot look at the traced cgroup"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PURE: &str = "\
25 30 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
26 30 0:23 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
";

    #[test]
    fn finds_v2_mount_on_hybrid_and_pure_hosts() {
        let hybrid = parse_mountinfo(HYBRID);
        assert_eq!(
            find_v2_mount(&hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            find_v1_mount(&hybrid, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        let pure = parse_mountinfo(PURE);
        assert_eq!(find_v2_mount(&pure), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(find_v1_mount(&pure, "memory"), None);
        assert_eq!(find_v2_mount(&parse_mountinfo("garbage\n\n- -")), None);
    }

    #[test]
    fn mount_paths_are_unescaped() {
        let m = parse_mountinfo("1 2 0:1 / /mnt/a\\040b rw - cgroup2 none rw\n");
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!(unescape_mount_path("x\\"), PathBuf::from("x\\"));
        assert_eq!(unescape_mount_path("x\\04"), PathBuf::from("x\\04"));
    }

    #[test]
    fn level_counts_components_below_the_mount() {
        let m = Path::new("/sys/fs/cgroup/unified");
        assert_eq!(level_below(m, m).ok(), Some(0));
        assert_eq!(level_below(&m.join("a/b"), m).ok(), Some(2));
        assert!(level_below(Path::new("/tmp"), m).is_err());
    }

    #[test]
    fn v2_root_position_is_level_zero() {
        let root = v2_mount().expect("this host has cgroup v2");
        let pos = position_of(&root, &root).expect("position");
        assert_eq!(pos.level, 0);
        assert!(matches!(
            position_of(Path::new("/proc"), &root),
            Err(CgroupError::NotV2(_))
        ));
    }
}
