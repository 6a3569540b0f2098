//! Processes already running when the tracer starts, read from /proc, so that
//! their later exits have context.

use std::fs;
use std::path::Path;

use crate::pod::{placement, Placement};

/// Inode of the initial PID namespace (`PROC_PID_INIT_INO`): when /proc is
/// in it, a pid is also the host pid.
const PROC_PID_INIT_INO: &str = "pid:[4026531836]";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentProcess {
    pub pid: u32,
    pub ppid: u32,
    /// Known only when the tracer shares the host's PID namespace.
    pub host_pid: Option<u32>,
    pub comm: String,
    pub placement: Placement,
}

/// comm and ppid from `/proc/<pid>/stat`. comm sits between the first `(`
/// and the last `)`, since it may itself contain parentheses and spaces.
pub fn parse_stat(text: &str) -> Option<(String, u32)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let mut rest = text.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, ppid))
}

/// comm and ppid of a process from its `stat` file; `None` once it is gone.
fn read_stat(proc_pid_dir: &Path) -> Option<(String, u32)> {
    fs::read_to_string(proc_pid_dir.join("stat"))
        .ok()
        .as_deref()
        .and_then(parse_stat)
}

/// The cgroup v2 path from `/proc/<pid>/cgroup` (the `0::` line).
pub fn parse_v2_path(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

fn in_host_pid_namespace(proc_root: &Path) -> bool {
    fs::read_link(proc_root.join("self/ns/pid")).is_ok_and(|l| l.as_os_str() == PROC_PID_INIT_INO)
}

/// Every process of the pod visible in `proc_root` outside the tracer's own
/// container. The pod is judged from cgroup paths, so a tracer that shares
/// the host's PID namespace still lists only its pod; the own container is
/// skipped as a whole because the kernel-side filter does the same (by
/// cgroup id), so a process listed here never has its exit hidden.
pub fn pod_processes(proc_root: &Path) -> std::io::Result<Vec<PresentProcess>> {
    let own_text = fs::read_to_string(proc_root.join("self/cgroup"))?;
    let own_path = parse_v2_path(&own_text).unwrap_or("/");
    pod_processes_around(proc_root, own_path)
}

/// `pod_processes` for a tracer whose cgroup v2 path is `own_path`.
fn pod_processes_around(proc_root: &Path, own_path: &str) -> std::io::Result<Vec<PresentProcess>> {
    let host_ns = in_host_pid_namespace(proc_root);
    let mut out = Vec::new();
    for entry in fs::read_dir(proc_root)?.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes may exit while we read: skip whatever is gone.
        let dir = entry.path();
        let Ok(cgroup) = fs::read_to_string(dir.join("cgroup")) else {
            continue;
        };
        let placement = match parse_v2_path(&cgroup).and_then(|p| placement(own_path, p)) {
            None | Some(Placement::OwnContainer) => continue,
            Some(p) => p,
        };
        let Some((comm, ppid)) = read_stat(&dir) else {
            continue;
        };
        out.push(PresentProcess {
            pid,
            ppid,
            host_pid: host_ns.then_some(pid),
            comm,
            placement,
        });
    }
    out.sort_by_key(|p| p.pid);
    Ok(out)
}

/// Every process in the cgroup v2 directory `dir` and its descendants, as
/// `trace --cgroup` sees them; the container is the child directory of `dir`
/// a process sits in.
pub fn cgroup_processes(dir: &Path) -> std::io::Result<Vec<PresentProcess>> {
    let host_ns = in_host_pid_namespace(Path::new("/proc"));
    let own_pid = std::process::id();
    let mut out = Vec::new();
    collect_cgroup(dir, None, host_ns, own_pid, &mut out)?;
    out.sort_by_key(|p| p.pid);
    Ok(out)
}

fn collect_cgroup(
    dir: &Path,
    container: Option<&str>,
    host_ns: bool,
    own_pid: u32,
    out: &mut Vec<PresentProcess>,
) -> std::io::Result<()> {
    let procs = fs::read_to_string(dir.join("cgroup.procs"))?;
    for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        if pid == own_pid {
            continue;
        }
        let Some((comm, ppid)) = read_stat(&Path::new("/proc").join(pid.to_string())) else {
            continue;
        };
        out.push(PresentProcess {
            pid,
            ppid,
            host_pid: host_ns.then_some(pid),
            comm,
            placement: container
                .map_or(Placement::PodItself, |c| Placement::Container(c.to_owned())),
        });
    }
    for entry in fs::read_dir(dir)?.filter_map(Result::ok) {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let child_container = container.or(name.to_str());
        // A cgroup removed while we walk is simply gone.
        let _ = collect_cgroup(&entry.path(), child_container, host_ns, own_pid, out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_awkward_comm() {
        let text = "4242 (my (odd) proc) S 17 4242 4242 0 -1 4194560 100 0 0 0";
        assert_eq!(parse_stat(text), Some(("my (odd) proc".into(), 17)));
        assert_eq!(parse_stat("1 (init) S 0 1 1"), Some(("init".into(), 0)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
        assert_eq!(parse_stat(") 1 (x"), None);
    }

    #[test]
    fn v2_line_of_hybrid_and_pure_hosts() {
        let hybrid = "9:name=systemd:/\n4:memory:/a/b\n0::/../libpod-abc\n";
        assert_eq!(parse_v2_path(hybrid), Some("/../libpod-abc"));
        assert_eq!(parse_v2_path("0::/\n"), Some("/"));
        assert_eq!(parse_v2_path("4:memory:/a\n"), None);
    }

    #[test]
    fn lists_the_pod_but_not_the_own_container() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let proc_root = Path::new("/proc");
        let own_text = fs::read_to_string("/proc/self/cgroup").expect("own cgroup");
        let own = parse_v2_path(&own_text).expect("cgroup v2 line");
        // The test and its child share a cgroup: as the tracer's own
        // container, it is skipped.
        let as_own = pod_processes_around(proc_root, own).expect("scan");
        // Seen from a tracer container one level below, the same cgroup is
        // the pod itself, and the child is listed.
        let below = format!("{}/linnix-tracer", own.trim_end_matches('/'));
        let as_below = pod_processes_around(proc_root, &below).expect("scan");
        let _ = child.kill();
        let _ = child.wait();

        assert!(!as_own.iter().any(|p| p.pid == child.id()), "{as_own:?}");
        let sleep = as_below
            .iter()
            .find(|p| p.pid == child.id())
            .expect("child listed");
        assert_eq!(sleep.comm, "sleep");
        assert_eq!(sleep.ppid, std::process::id());
        assert_eq!(sleep.placement, Placement::PodItself);
    }
}
