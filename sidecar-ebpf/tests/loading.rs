//! Loading: what the loader finds out about its own cgroup (also inside a
//! private cgroup namespace), the privileges it needs (none missing goes
//! unnamed, `CAP_BPF` + `CAP_PERFMON` suffice, `perf_event_open()` is not
//! used) and the kernel links it holds. Real BPF (root needed).

mod common;

use std::process::Command;

use common::*;
use linnix_ebpf::{own_cgroup_ancestors, CgroupPosition, Tracer, TracerError};

/// The positions of `own_cgroup_ancestors`, root first.
fn own_cgroup_ancestry() -> Result<Vec<CgroupPosition>, TracerError> {
    Ok(own_cgroup_ancestors()?
        .into_iter()
        .map(|ancestor| ancestor.position)
        .collect())
}

/// Runs in a child process started by the tests below (in a chosen cgroup,
/// or with reduced privileges); prints what `own_cgroup_ancestry`,
/// `own_cgroup_ancestors` and `Tracer::load` return there, on one line each.
#[test]
#[ignore = "helper, started as a child process by other tests"]
fn probe() {
    match own_cgroup_ancestry() {
        Ok(found) => {
            let line: Vec<String> = found
                .iter()
                .map(|p| format!("{}:{}", p.level, p.id))
                .collect();
            println!("\nANCESTRY {}", line.join(" "));
        }
        Err(err) => println!("\nANCESTRY-ERR {err:?}"),
    }
    match own_cgroup_ancestors() {
        Ok(found) => {
            let line: Vec<String> = found
                .iter()
                .map(|a| format!("{}:{}:{}", a.position.level, a.position.id, a.name))
                .collect();
            println!("\nNAMES {}", line.join(" "));
        }
        Err(err) => println!("\nNAMES-ERR {err:?}"),
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let target = linnix_ebpf::CgroupPosition { id: 1, level: 0 };
    match runtime.block_on(async { Tracer::load(&config(target)).map(drop) }) {
        Ok(()) => println!("\nLOAD ok"),
        Err(err) => println!("\nLOAD-ERR {err:?}"),
    }
}

/// Start the probe through `wrapper` (a command that ends by exec-ing its
/// arguments) and return its lines.
fn run_probe(wrapper: &[&str]) -> Probe {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(exe)
        .args([
            "--exact",
            "probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("run the probe");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| {
                panic!(
                    "no {prefix} line in {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_owned()
    };
    Probe {
        ancestry: line("ANCESTRY"),
        names: line("NAMES"),
        load: line("LOAD"),
    }
}

/// The lines the probe printed, each with its prefix.
struct Probe {
    ancestry: String,
    names: String,
    load: String,
}

fn in_cgroup(dir: &std::path::Path) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("echo $$ > '{}'/cgroup.procs && exec \"$@\"", dir.display()),
        "sh".into(),
    ]
}

#[tokio::test]
async fn own_cgroup_ancestry_matches_directory_inodes() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    cg.child("a");
    let nested = cg.child("a/b");

    let wrapper = in_cgroup(&nested);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let probe = run_probe(&wrapper);
    let line = probe
        .ancestry
        .strip_prefix("ANCESTRY ")
        .unwrap_or_else(|| panic!("{}", probe.ancestry));

    let mut expected = vec![position_of(&nested)];
    let mut dir = nested.clone();
    while dir != v2_mount() {
        dir = dir.parent().expect("parent").to_path_buf();
        if dir != v2_mount() {
            expected.push(position_of(&dir));
        }
    }
    let root_id =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(v2_mount()).expect("root"));
    expected.push(linnix_ebpf::CgroupPosition {
        id: root_id,
        level: 0,
    });
    expected.reverse();
    let positions: Vec<String> = expected
        .iter()
        .map(|p| format!("{}:{}", p.level, p.id))
        .collect();
    assert_eq!(line, positions.join(" "));

    // The same cgroups with their directory names; the root's is empty.
    let names = ["".to_owned(), cg.name(), "a".into(), "b".into()];
    let named: Vec<String> = expected
        .iter()
        .zip(&names)
        .map(|(p, name)| format!("{}:{}:{name}", p.level, p.id))
        .collect();
    assert_eq!(probe.names, format!("NAMES {}", named.join(" ")));
}

#[tokio::test]
async fn own_cgroup_ancestors_are_named_inside_a_private_cgroup_namespace() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let container = cg.child("ctr");

    // As in a pod: the container's cgroup becomes the namespace root, so
    // neither the parent's path nor its name is visible in /proc or a mount.
    let mut wrapper = in_cgroup(&container);
    wrapper.extend(["/usr/bin/unshare".into(), "--cgroup".into()]);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let probe = run_probe(&wrapper);

    let (pod, own) = (cg.position(), position_of(&container));
    let tail = format!(
        " {}:{}:{} {}:{}:ctr",
        pod.level,
        pod.id,
        cg.name(),
        own.level,
        own.id
    );
    assert!(probe.names.ends_with(&tail), "{}", probe.names);
}

#[tokio::test]
async fn own_cgroup_ancestry_at_the_v2_root_means_no_cgroup_v2() {
    let _lock = BPF_LOCK.lock().await;
    let wrapper = in_cgroup(&v2_mount());
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let probe = run_probe(&wrapper);
    assert_eq!(probe.ancestry, "ANCESTRY-ERR NoCgroupV2");
    assert_eq!(probe.names, "NAMES-ERR NoCgroupV2");
}

const NOBODY: [&str; 5] = [
    "/usr/bin/setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--no-new-privs",
];

#[tokio::test]
async fn without_capabilities_loading_names_the_missing_capability() {
    let _lock = BPF_LOCK.lock().await;
    let mut wrapper = NOBODY.to_vec();
    wrapper.extend(["--inh-caps=-all", "--bounding-set=-all"]);
    let Probe {
        ancestry,
        names,
        load,
    } = run_probe(&wrapper);
    assert!(
        ancestry.starts_with("ANCESTRY-ERR MissingCapability"),
        "{ancestry}"
    );
    assert!(names.starts_with("NAMES-ERR MissingCapability"), "{names}");
    assert!(load.starts_with("LOAD-ERR MissingCapability"), "{load}");
}

#[tokio::test]
async fn cap_bpf_and_cap_perfmon_are_enough() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    // Joining the cgroup needs root; the probe then drops to nobody.
    let join = in_cgroup(&cg.path);
    let mut wrapper: Vec<&str> = join.iter().map(String::as_str).collect();
    wrapper.extend(NOBODY);
    wrapper.extend([
        "--inh-caps=-all,+bpf,+perfmon",
        "--ambient-caps=+bpf,+perfmon",
        "--bounding-set=-all,+bpf,+perfmon",
    ]);
    let Probe {
        ancestry,
        names,
        load,
    } = run_probe(&wrapper);
    assert_eq!(load, "LOAD ok");
    let own = cg.position();
    assert!(
        ancestry.ends_with(&format!(" {}:{}", own.level, own.id)),
        "{ancestry}"
    );
    assert!(
        names.ends_with(&format!(" {}:{}:{}", own.level, own.id, cg.name())),
        "{names}"
    );
}

/// Make perf_event_open(2) fail with EPERM on the calling thread, as a
/// container runtime's default seccomp profile does without CAP_SYS_ADMIN.
fn deny_perf_event_open_on_this_thread() {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let mut filter = [
        // Load the syscall number (offset 0 of struct seccomp_data).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_perf_event_open as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `program` points to a valid filter that outlives the call; the
    // kernel copies it. Without TSYNC it applies to this thread only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &program as *const libc::sock_fprog,
        )
    };
    assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
    // The filter is in force: a direct call is refused.
    // SAFETY: perf_event_open with a null attr only returns an error.
    let rc = unsafe { libc::syscall(libc::SYS_perf_event_open, 0usize, 0, -1, -1, 0) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EPERM)
    );
}

#[tokio::test]
async fn perf_event_open_is_not_needed() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let target = cg.position();
    let path = cg.path.clone();
    // A thread of its own: the filter stays with it and spares other tests.
    let (ancestry, exits) = std::thread::spawn(move || {
        deny_perf_event_open_on_this_thread();
        let ancestry = own_cgroup_ancestry();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let exits = runtime.block_on(async {
            let mut tracer = Tracer::load(&config(target)).expect("load under the filter");
            let pid = run_in(&path, &["/bin/sh", "-c", "exit 8"]);
            let events = collect(&mut tracer);
            exits_of(&events, pid)
                .iter()
                .map(|e| e.exit_code())
                .collect::<Vec<_>>()
        });
        (ancestry, exits)
    })
    .join()
    .expect("probe thread");
    // The test process may sit at the v2 root (NoCgroupV2); it must not have
    // been refused anything.
    assert!(
        !matches!(ancestry, Err(TracerError::MissingCapability { .. })),
        "{ancestry:?}"
    );
    assert_eq!(exits, [Some(8)]);
}

/// BPF links this process holds open (their fdinfo has a link_id).
fn open_bpf_links() -> usize {
    std::fs::read_dir("/proc/self/fdinfo")
        .expect("fdinfo")
        .filter_map(Result::ok)
        .filter(|fd| {
            std::fs::read_to_string(fd.path()).is_ok_and(|info| info.contains("\nlink_id:"))
        })
        .count()
}

#[tokio::test]
async fn programs_attached_counts_the_kernel_links() {
    let _lock = BPF_LOCK.lock().await;
    let cg = TestCgroup::new();
    let before = open_bpf_links();
    let tracer = Tracer::load(&config(cg.position())).expect("load");
    // fork, exec, exit, mark_victim, cgroup_rmdir, mm_vmscan_memcg_reclaim_begin,
    // cgroup_attach_task, and sched_prepare_exec, which this kernel has
    assert_eq!(tracer.programs_attached(), 8);
    assert_eq!(open_bpf_links() - before, tracer.programs_attached());
    drop(tracer);
    assert_eq!(open_bpf_links(), before, "dropping detaches");
}
