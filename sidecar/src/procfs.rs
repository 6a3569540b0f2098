//! What /proc adds about a process already running when the tracer starts:
//! the program and argv of a container's main process, which the kernel's
//! task list (see `Tracer::present`) does not carry.
//!
//! The pid is the one events carry, in the tracer's own PID namespace, which
//! is the namespace of its /proc. A process that ended meanwhile, or whose
//! number was reused, gives nothing: the start time must match.

use std::fs;
use std::path::Path;

use linnix_ebpf::escape_bytes;

/// The program and argv of `pid`, if it is still the process that started
/// at `start_ns` (boot time). Either may be unknown: `exe` needs ptrace
/// access to the process, which the tracer lacks for other users.
pub fn program_of(
    proc_root: &Path,
    pid: u32,
    start_ns: u64,
) -> (Option<String>, Option<Vec<String>>) {
    let dir = proc_root.join(pid.to_string());
    let same = fs::read_to_string(dir.join("stat"))
        .ok()
        .and_then(|s| start_ticks(&s))
        .is_some_and(|ticks| ticks == start_ns / (1_000_000_000 / clock_ticks()));
    if !same {
        return (None, None);
    }
    let exe = fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| escape_bytes(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())));
    let argv = fs::read(dir.join("cmdline"))
        .ok()
        .map(|raw| split_cmdline(&raw));
    (exe, argv)
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since
/// boot. Counted after comm, which sits between the first `(` and the last
/// `)` and may hold spaces and parentheses itself.
fn start_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // After comm come field 3 (state) onward: starttime is the 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        // Kernel threads, and processes that cleared their argv.
        return Vec::new();
    }
    raw.split(|&b| b == 0).map(escape_bytes).collect()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_after_an_awkward_comm() {
        let stat = "4242 (my (odd) proc) S 17 4242 4242 0 -1 4194560 100 0 0 0 3 1 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(start_ticks(stat), Some(98765));
        assert_eq!(start_ticks("1 (x) S 0"), None);
        assert_eq!(start_ticks("garbage"), None);
    }

    #[test]
    fn cmdline_split_and_escaped() {
        assert_eq!(split_cmdline(b"sleep\x0030\x00"), ["sleep", "30"]);
        assert_eq!(split_cmdline(b"a\x1bb\x00"), ["a\\x1bb"]);
        assert!(split_cmdline(b"").is_empty());
    }

    #[test]
    fn the_program_of_a_live_process_and_not_of_another() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        // Its start time, in ns since boot, from its own stat, once the exec
        // is complete (comm changes before argv is in place).
        let mut ticks = None;
        for _ in 0..100 {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if stat.contains("(sleep)") && cmdline == b"sleep\x0030\x00" {
                ticks = start_ticks(&stat);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let start_ns = ticks.expect("start") * (1_000_000_000 / clock_ticks());
        let (exe, argv) = program_of(Path::new("/proc"), pid, start_ns);
        let (_, other) = program_of(Path::new("/proc"), pid, start_ns + 10_000_000_000);
        let _ = child.kill();
        let _ = child.wait();
        assert!(exe.is_some_and(|e| e.ends_with("/sleep")));
        assert_eq!(
            argv.as_deref(),
            Some(&["sleep".to_owned(), "30".to_owned()][..])
        );
        assert_eq!(other, None, "another start time is another process");
    }
}
