//! Bad arguments: refused with a clear error and exit code 2, before the
//! tracer takes anything (a port, a cgroup), and shown safely. Runs the
//! binary; needs root for the cases that get as far as a cgroup.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output, Stdio};

use common::BIN;

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run the tracer")
}

fn run_str(args: &[&str]) -> Output {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    run(&args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_memory_limit_too_small_to_start_the_command_is_refused() {
    for small in ["0", "1", "4096", "1000k"] {
        let out = run_str(&["trace", "--memory-limit", small, "--", "/bin/echo", "hi"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{small}: {err}");
        assert!(err.contains("is below 1Mi"), "{small}: {err}");
        assert!(out.stdout.is_empty(), "{small}: nothing ran");
    }
    // At the floor the command runs.
    let out = run_str(&["trace", "--memory-limit", "1Mi", "--", "/bin/echo", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_negative_number_gets_the_options_error_not_a_hint_to_run_it() {
    let out = run_str(&["--max-events-per-sec", "-1", "trace", "--", "/bin/true"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value '-1' for '--max-events-per-sec <N>'"),
        "{err}"
    );
    assert!(!err.contains("-- -1"), "{err}");
}

#[test]
fn a_pressure_interval_below_a_second_is_refused() {
    for short in ["1ns", "999ms"] {
        let out = run_str(&[
            "--memory-pressure-interval",
            short,
            "trace",
            "--",
            "/bin/true",
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{short}: {err}");
        assert!(err.contains("must be at least 1s"), "{short}: {err}");
    }
}

#[test]
fn a_path_in_an_error_is_escaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut path = dir.path().as_os_str().as_bytes().to_vec();
    path.extend_from_slice(b"/evil\x1b[2Kname");
    let path = std::ffi::OsStr::from_bytes(&path);
    for exists in [false, true] {
        if exists {
            std::fs::create_dir(path).expect("mkdir");
        }
        let out = run(&["trace".as_ref(), "--cgroup".as_ref(), path]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(!out.stderr.contains(&0x1b), "{:?}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("/evil\\x1b[2Kname"), "{err}");
    }
}

/// A bad `--cgroup` is refused before the metrics port is bound: with the
/// port taken, the error is still the one about the directory.
#[test]
fn a_bad_cgroup_is_refused_before_any_port_is_bound() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = run_str(&["--metrics-addr", &addr, "trace", "--cgroup", "/tmp"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: /tmp is not a directory of the cgroup v2 file system"),
        "{err}"
    );
    assert!(!err.contains("cannot serve metrics"), "{err}");
}
