//! Containers and the moves of processes under `trace --cgroup`, whose child
//! cgroups are the containers; raised privileges; what a person reads
//! (`--output text`) and what an adversary may put in a file name. Real
//! BPF; needs root.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{of_kind, run_in, trace_command, trace_command_raw, Proc, Tracer};
use linnix_test_support::{in_cgroup, TestCgroup};
use serde_json::{json, Value};

fn trace_cgroup(cg: &TestCgroup) -> Tracer {
    let mut t = Tracer::trace_cgroup(&cg.path, &[]);
    t.wait_ready();
    t
}

fn in_container<'a>(events: &'a [Value], kind: &str, container: &str) -> Vec<&'a Value> {
    of_kind(events, kind)
        .into_iter()
        .filter(|e| e["container"] == container)
        .collect()
}

fn spawn_in(cgroup: &Path, argv: &[&str]) -> Proc {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]).stdout(Stdio::null());
    in_cgroup(&mut cmd, cgroup);
    Proc::spawn(&mut cmd)
}

#[test]
fn containers_start_and_exit_under_trace_cgroup() {
    let cg = TestCgroup::new();
    let old = cg.child("old");
    // Running before the tracer: a present container.
    let mut old_main = spawn_in(&old, &["/bin/sleep", "300"]);
    std::thread::sleep(Duration::from_millis(200));
    let t = trace_cgroup(&cg);

    // A new container: its first process runs the entrypoint, someone
    // enters it while it runs, and its exit ends it.
    let new = cg.child("new");
    let script = "/bin/echo started; sleep 0.5; exit 5";
    let mut main = spawn_in(&new, &["/bin/sh", "-c", script]);
    std::thread::sleep(Duration::from_millis(150));
    run_in(&new, &["/bin/echo", "visitor"]);
    main.wait_timeout(Duration::from_secs(10));
    old_main.signal(libc::SIGKILL);
    old_main.wait_timeout(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    let r = t.stop();
    assert!(r.status.success(), "{}", r.stderr);

    let old_start = in_container(&r.events, "container_start", "old");
    assert_eq!(old_start.len(), 1, "{:?}", r.events);
    assert_eq!(old_start[0]["present"], true);
    assert_eq!(old_start[0]["argv"], json!(["/bin/sleep", "300"]));
    assert!(old_start[0]["filename"]
        .as_str()
        .is_some_and(|f| f.ends_with("/sleep")));
    assert_eq!(old_start[0]["pid"], old_main.pid());
    let old_exit = in_container(&r.events, "container_exit", "old");
    assert_eq!(old_exit.len(), 1, "{:?}", r.events);
    assert_eq!(old_exit[0]["signal"], 9);
    assert_eq!(old_exit[0]["exec_id"], old_start[0]["exec_id"]);

    let start = in_container(&r.events, "container_start", "new");
    assert_eq!(start.len(), 1, "{:?}", r.events);
    let start = start[0];
    assert_eq!(start["argv"], json!(["/bin/sh", "-c", script]));
    assert_eq!(start["filename"], "/bin/sh");
    assert_eq!(start["pid"], main.pid());
    assert!(start.get("present").is_none(), "{start}");
    assert!(
        start.get("since_first_container_ms").is_none(),
        "pod mode only"
    );
    // It follows the entrypoint's exec, with its identity and time.
    let exec = of_kind(&r.events, "exec")
        .into_iter()
        .find(|e| e["exec_id"] == start["exec_id"])
        .expect("the entrypoint's exec");
    assert_eq!(exec["ts"], start["ts"]);
    assert!(exec.get("entered").is_none(), "the first to arrive: {exec}");

    let exit = in_container(&r.events, "container_exit", "new");
    assert_eq!(exit.len(), 1, "{:?}", r.events);
    let exit = exit[0];
    assert_eq!(exit["exit_code"], 5);
    assert!(exit["signal"].is_null());
    assert_eq!(exit["oom_killed"], false);
    assert_eq!(exit["oom_kills"], 0);
    assert_eq!(exit["exec_id"], start["exec_id"]);
    let runtime = exit["runtime_ms"].as_u64().expect("runtime");
    assert!((500..10_000).contains(&runtime), "{exit}");

    // The visitor entered; the entrypoint's child echo did not.
    let visitor = of_kind(&r.events, "exec")
        .into_iter()
        .find(|e| e["argv"] == json!(["/bin/echo", "visitor"]))
        .expect("the visitor's exec");
    assert_eq!(visitor["entered"], true);
    assert_eq!(visitor["container"], "new");
    let echo = of_kind(&r.events, "exec")
        .into_iter()
        .find(|e| e["argv"] == json!(["/bin/echo", "started"]))
        .expect("the entrypoint's child");
    assert!(echo.get("entered").is_none(), "{echo}");
    assert_eq!(echo["parent_exec_id"], start["exec_id"]);
    // Only the entrypoint's exit ends the container.
    assert_eq!(of_kind(&r.events, "container_exit").len(), 2);
}

#[test]
fn a_process_moved_into_and_out_of_the_traced_cgroup_is_reported() {
    let cg = TestCgroup::new();
    let ctr = cg.child("ctr");
    let home = {
        let text = fs::read_to_string("/proc/self/cgroup").expect("own cgroup");
        let path = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("v2")
            .to_owned();
        linnix_test_support::v2_mount().join(path.trim_start_matches('/'))
    };
    let mut outside = Proc::spawn(Command::new("/bin/sleep").arg("300"));
    let pid = outside.pid();
    let t = trace_cgroup(&cg);
    fs::write(ctr.join("cgroup.procs"), pid.to_string()).expect("move in");
    std::thread::sleep(Duration::from_millis(100));
    fs::write(home.join("cgroup.procs"), pid.to_string()).expect("move out");
    outside.signal(libc::SIGKILL);
    outside.wait_timeout(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(200));
    let r = t.stop();
    assert!(r.status.success(), "{}", r.stderr);

    let about: Vec<&Value> = r.events.iter().filter(|e| e["host_pid"] == pid).collect();
    let kinds: Vec<&str> = about.iter().filter_map(|e| e["event"].as_str()).collect();
    // In, out, and then nothing: its exit happened elsewhere.
    assert_eq!(kinds, ["cgroup_join", "cgroup_leave"], "{about:?}");
    assert_eq!(about[0]["container"], "ctr");
    assert_eq!(about[0]["comm"], "sleep");
    assert!(about[0].get("from_container").is_none());
    assert_eq!(about[1]["container"], "ctr", "the container it left");
    assert_eq!(about[0]["exec_id"], about[1]["exec_id"]);
}

#[test]
fn a_setuid_exec_says_how_it_raised_privileges() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let suid = dir.path().join("suid-id");
    fs::copy("/usr/bin/id", &suid).expect("copy");
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).expect("chmod");
    let suid = suid.to_str().expect("utf8");
    let r = trace_command(
        &[],
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            suid,
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}", r.stderr);
    let exec = of_kind(&r.events, "exec")
        .into_iter()
        .find(|e| e["filename"] == suid)
        .unwrap_or_else(|| panic!("no exec of the copy: {:?}", r.events));
    assert_eq!(exec["privileges_raised"], json!(["setuid"]), "{exec}");
    assert_eq!(
        (exec["uid"].as_u64(), exec["gid"].as_u64()),
        (Some(0), Some(65534))
    );
    let setpriv = of_kind(&r.events, "exec")[0];
    assert_eq!(setpriv["privileges_raised"], json!([]), "{setpriv}");
}

/// A copy of /bin/true under a name with an ANSI escape (erase the line)
/// and a byte that is not UTF-8.
fn odd_binary(dir: &Path) -> std::path::PathBuf {
    let path = dir.join(std::ffi::OsStr::from_bytes(b"evil\x1b[2K\xffname"));
    fs::copy("/bin/true", &path).expect("copy");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

const ESCAPED: &str = "evil\\x1b[2K\\xffname";

#[test]
fn text_output_shows_an_ansi_escape_in_a_file_name_and_does_not_obey_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let odd = odd_binary(dir.path());
    // The path is not UTF-8: it goes to the shell as $0.
    let mut cmd = Command::new(common::BIN);
    cmd.args([
        "trace",
        "--output",
        "text",
        "--",
        "/bin/sh",
        "-c",
        "\"$0\"; exit 3",
    ])
    .arg(&odd)
    .env_remove("RUST_LOG")
    .stdin(Stdio::null());
    let out = cmd.output().expect("run the tracer");
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8(out.stdout).expect("text output is UTF-8");
    assert!(
        !stdout.contains('\x1b'),
        "a raw escape reached the terminal: {stdout:?}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("TIME(UTC)    EVENT"), "{stdout}");
    let exec = lines
        .iter()
        .find(|l| l.contains(" exec ") && l.contains(ESCAPED))
        .unwrap_or_else(|| panic!("no exec of the odd name:\n{stdout}"));
    assert!(
        exec.contains(&format!("{}/{ESCAPED}", dir.path().display())),
        "{exec}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" exit ") && l.contains(" exit 3 after ")),
        "{stdout}"
    );
    for line in &lines {
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }

    // JSON escapes it the same way, in the value itself.
    let mut cmd = Command::new(common::BIN);
    cmd.args(["trace", "--output", "json", "--", "/bin/sh", "-c", "\"$0\""])
        .arg(&odd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    let out = cmd.output().expect("run the tracer");
    let events = common::parse_events(&String::from_utf8(out.stdout).expect("utf8"));
    let exec = of_kind(&events, "exec")
        .into_iter()
        .find(|e| e["filename"].as_str().is_some_and(|f| f.ends_with(ESCAPED)))
        .unwrap_or_else(|| panic!("no exec of the odd name: {events:?}"));
    assert_eq!(exec["comm"], ESCAPED, "{exec}");
}

#[test]
fn text_is_the_default_at_a_terminal_and_json_elsewhere() {
    // script(1) gives the tracer a terminal for stdout.
    let command = format!("{} trace -- /bin/true", common::BIN);
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("TIME(UTC)    EVENT"), "{stdout}");
    assert!(!stdout.contains("{\"event\""), "{stdout}");
    let piped = trace_command_raw(&[], &[], &["/bin/true"]);
    assert!(piped.stdout.starts_with("{\"event\""), "{}", piped.stdout);
}
