//! Where the events go when stdout goes away: closed before the start
//! (`>&-`), or broken while the tracer writes (`| head -1`). Nothing is lost
//! without a word. Real BPF; needs root.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, BIN};

#[test]
fn a_closed_stdout_is_refused() {
    // The shell closes fd 1 for the tracer only.
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("\"$0\" trace -- /bin/true >&-")
        .arg(BIN)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: stdout is closed, so every event would be lost"),
        "{err}"
    );
    assert!(!err.contains("events written"), "{err}");
}

#[test]
fn a_broken_stdout_still_gets_the_summary() {
    // A command that keeps exec'ing, so that the tracer writes after the
    // reader has gone.
    let mut cmd = Command::new(BIN);
    cmd.args([
        "trace",
        "--",
        "/bin/sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); sleep 0.01; done",
    ])
    .env_remove("RUST_LOG")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut tracer = Proc::spawn(&mut cmd);
    let stderr = tracer.child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    // `head -1`: one line, then the pipe's reading end is closed.
    let mut first = String::new();
    BufReader::new(tracer.child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read a line");
    assert!(first.contains("\"event\""), "{first}");
    let status = tracer.wait_timeout(Duration::from_secs(30));
    let err = stderr.join().expect("join");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write events to stdout"), "{err}");
    let summary = err
        .lines()
        .find(|l| l.contains("events written"))
        .unwrap_or_else(|| panic!("no summary: {err}"));
    assert!(
        summary.contains("not written (stdout was closed)"),
        "{summary}"
    );
}
