//! Whether an exec raised privileges, checked against what the kernel says
//! about the process before and after the exec (`/proc/PID/status`): the
//! ids and permitted capabilities it ran with, and those the new program got.
//! Real BPF against real processes, set-ID files on a `nosuid` mount
//! included (root needed).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use linnix_ebpf::{ExecEvent, Tracer};

/// Writes its own status to argv[1], then execs argv[3] with stdout on
/// argv[2], reading its own status in turn: the before and the after of one
/// exec, under the same ids.
const BEFORE_AND_AFTER: &str = "import os, sys\n\
    open(sys.argv[1], 'w').write(open('/proc/self/status').read())\n\
    fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)\n\
    os.dup2(fd, 1)\n\
    os.execv(sys.argv[3], [sys.argv[3], '/proc/self/status'])\n";

/// A tmpfs mounted `nosuid` on a fresh directory, unmounted on drop.
struct NosuidMount {
    dir: tempfile::TempDir,
}

impl NosuidMount {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "nosuid,mode=0755", "linnix-test"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(status.success(), "mount tmpfs nosuid");
        NosuidMount { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NosuidMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A directory everyone may write to (a tempdir is 0700), for the status
/// files of processes that run as nobody.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// A copy of cat (owned by root) with `mode`.
fn cat_copy(dir: &Path, name: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::copy("/bin/cat", &path).expect("copy");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// What `/proc/PID/status` says about ids and capabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ids {
    ruid: u32,
    euid: u32,
    rgid: u32,
    egid: u32,
    cap_permitted: u64,
}

fn ids(status_file: &Path) -> Ids {
    let text = fs::read_to_string(status_file)
        .unwrap_or_else(|e| panic!("{}: {e}", status_file.display()));
    let field = |name: &str| -> Vec<&str> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .split_whitespace()
            .collect()
    };
    let num = |s: &str| s.parse::<u32>().expect("id");
    let (uid, gid) = (field("Uid:"), field("Gid:"));
    Ids {
        ruid: num(uid[0]),
        euid: num(uid[1]),
        rgid: num(gid[0]),
        egid: num(gid[1]),
        cap_permitted: u64::from_str_radix(field("CapPrm:")[0], 16).expect("hex"),
    }
}

struct Case {
    what: &'static str,
    setpriv: &'static [&'static str],
    target: PathBuf,
    raised: &'static [&'static str],
}

fn raised_names(e: &ExecEvent) -> Vec<&'static str> {
    let p = e.privileges;
    [
        (p.setuid, "setuid"),
        (p.setgid, "setgid"),
        (p.file_caps, "file_caps"),
        (p.secure_exec, "secure_exec"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect()
}

#[tokio::test]
async fn privileges_are_raised_only_by_what_the_exec_changed() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let nosuid = NosuidMount::new();
    let files = shared_dir();
    let bins = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(bins.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let plain = cat_copy(bins.path(), "plain-cat", 0o755);
    let suid = cat_copy(bins.path(), "suid-cat", 0o4755);
    let sgid = cat_copy(bins.path(), "sgid-cat", 0o2755);
    let caps = cat_copy(bins.path(), "caps-cat", 0o755);
    let ignored_suid = cat_copy(nosuid.path(), "suid-cat", 0o4755);
    let ignored_sgid = cat_copy(nosuid.path(), "sgid-cat", 0o2755);
    let status = Command::new("/usr/sbin/setcap")
        .args(["cap_net_raw+ep", caps.to_str().expect("utf-8")])
        .status()
        .expect("setcap");
    assert!(status.success());
    let nobody = &["--reuid=65534", "--regid=65534", "--clear-groups"];
    let cases = [
        // Ids that differed before the exec, and still do: nothing raised.
        Case {
            what: "real uid nobody, effective root, plain file",
            setpriv: &["--ruid=65534", "--clear-groups"],
            target: plain.clone(),
            raised: &[],
        },
        Case {
            what: "set-user-ID root file on nosuid, real uid nobody",
            setpriv: &["--ruid=65534", "--clear-groups"],
            target: ignored_suid.clone(),
            raised: &[],
        },
        Case {
            what: "set-group-ID file on nosuid, real gid nogroup, effective gid 0",
            setpriv: &["--rgid=65534", "--clear-groups"],
            target: ignored_sgid.clone(),
            raised: &[],
        },
        Case {
            what: "real uid root, effective nobody, plain file",
            setpriv: &["--euid=65534", "--clear-groups"],
            target: plain.clone(),
            raised: &[],
        },
        Case {
            what: "set-user-ID root file, already effective root",
            setpriv: &["--ruid=65534", "--clear-groups"],
            target: suid.clone(),
            raised: &[],
        },
        Case {
            what: "set-user-ID root file on nosuid, by nobody",
            setpriv: nobody,
            target: ignored_suid.clone(),
            raised: &[],
        },
        Case {
            what: "set-user-ID root file under no_new_privs, by nobody",
            setpriv: &[
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--no-new-privs",
            ],
            target: suid.clone(),
            raised: &[],
        },
        Case {
            what: "set-user-ID root file, by root",
            setpriv: &[],
            target: suid.clone(),
            raised: &[],
        },
        // True raises.
        Case {
            what: "set-user-ID root file, by nobody",
            setpriv: nobody,
            target: suid.clone(),
            raised: &["setuid", "secure_exec"],
        },
        Case {
            what: "set-group-ID root file, by nobody",
            setpriv: nobody,
            target: sgid.clone(),
            raised: &["setgid", "secure_exec"],
        },
        Case {
            what: "file capabilities, by nobody",
            setpriv: nobody,
            target: caps.clone(),
            raised: &["file_caps", "secure_exec"],
        },
    ];
    let mut tracer = Tracer::load(&config(cg.position())).expect("load");
    let runs: Vec<(u32, PathBuf, PathBuf)> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let before = files.path().join(format!("{i}.before"));
            let after = files.path().join(format!("{i}.after"));
            let mut argv = vec!["/usr/bin/setpriv"];
            argv.extend(case.setpriv);
            argv.extend([
                PYTHON,
                "-c",
                BEFORE_AND_AFTER,
                before.to_str().expect("utf-8"),
                after.to_str().expect("utf-8"),
                case.target.to_str().expect("utf-8"),
            ]);
            (run_in(&cg.path, &argv), before, after)
        })
        .collect();
    let events = collect(&mut tracer);

    for (case, (pid, before, after)) in cases.iter().zip(&runs) {
        let (before, after) = (ids(before), ids(after));
        let target = case.target.to_str().expect("utf-8");
        let exec = execs(&events)
            .into_iter()
            .find(|e| e.task.host_pid == *pid && e.filename == target)
            .unwrap_or_else(|| panic!("{}: no exec of {target}: {events:#?}", case.what));
        let raised = raised_names(exec);
        assert_eq!(
            raised, case.raised,
            "{}: {before:?} -> {after:?}",
            case.what
        );
        // The same verdict from what the kernel shows.
        let gained_caps = after.cap_permitted & !before.cap_permitted != 0;
        let shown = (
            before.euid != after.euid,
            before.egid != after.egid,
            gained_caps && after.ruid != 0 && after.euid != 0,
        );
        let p = exec.privileges;
        assert_eq!(
            (p.setuid, p.setgid, p.file_caps),
            shown,
            "{}: {before:?} -> {after:?}",
            case.what
        );
        assert_eq!((exec.task.uid, exec.task.gid), (after.euid, after.egid));
        assert_eq!(before.ruid, after.ruid, "{}", case.what);
        assert_eq!(before.rgid, after.rgid, "{}", case.what);
    }
    // The set-ID bits the kernel ignored are there.
    for file in [&ignored_suid, &ignored_sgid] {
        let mode = fs::metadata(file).expect("stat").permissions().mode();
        assert_ne!(mode & 0o6000, 0, "{}", file.display());
    }
}
