//! Helpers for the end-to-end tests of the binary: real cgroups (from
//! `linnix-test-support`), real BPF, real HTTP. Everything a test creates is
//! removed on drop, also when the test fails.

#![allow(dead_code)] // each test binary uses its own subset

pub mod api;
mod log;

use log::collect_stderr;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use linnix_test_support::{in_cgroup, TestCgroup};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_linnix-sidecar");
pub const PYTHON: &str = "/usr/bin/python3";

/// A test cgroup named like a kubelet pod cgroup (`…-pod<uid>.slice`), as
/// the tracer expects its parent to be.
pub fn pod_cgroup(test: &str) -> TestCgroup {
    let tag = test
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let uid = format!(
        "{:08x}_0000_4000_8000_{:012x}",
        std::process::id(),
        tag & 0xffff_ffff_ffff
    );
    TestCgroup::named(&format!("{test}-pod{uid}.slice"))
}

/// A child process killed and reaped on drop.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Self {
        Proc {
            child: cmd.spawn().expect("spawn"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Wait at most `timeout`, else kill and fail.
    pub fn wait_timeout(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("process {} did not exit within {timeout:?}", self.pid());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The tracer as a running process whose stdout and stderr are collected
/// by threads, so that it never blocks on a full pipe.
pub struct Tracer {
    pub proc: Proc,
    stdout: Option<thread::JoinHandle<String>>,
    stderr: Option<thread::JoinHandle<String>>,
    /// The metrics address the tracer bound (port 0: the kernel's pick), as
    /// its log says; set by the stderr reader.
    metrics: Arc<Mutex<Option<SocketAddr>>>,
    stderr_closed: Arc<AtomicBool>,
}

pub struct Finished {
    pub status: ExitStatus,
    pub events: Vec<Value>,
    pub stderr: String,
}

fn collect(r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(r).read_to_string(&mut s);
        s
    })
}

impl Tracer {
    /// `trace --cgroup <dir>`, with the tracer's `options` before `trace`.
    pub fn trace_cgroup(dir: &Path, options: &[&str]) -> Self {
        let dir = dir.to_str().expect("utf8");
        let args: Vec<&str> = options
            .iter()
            .copied()
            .chain(["trace", "--cgroup", dir])
            .collect();
        Tracer::start(&args, &[], None, &[])
    }

    /// Start `linnix-sidecar <args>` with a metrics port, optionally inside
    /// a cgroup, optionally under a wrapper (setpriv ...).
    pub fn start(
        args: &[&str],
        wrapper: &[&str],
        cgroup: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        // Port 0: the kernel picks a free one and the tracer logs it. A port
        // picked here and released would race with every other test.
        cmd.arg("--metrics-addr")
            .arg("127.0.0.1:0")
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cg) = cgroup {
            in_cgroup(&mut cmd, cg);
        }
        let mut proc = Proc::spawn(&mut cmd);
        let stdout = collect(proc.child.stdout.take().expect("stdout"));
        let metrics = Arc::new(Mutex::new(None));
        let stderr_closed = Arc::new(AtomicBool::new(false));
        let stderr = collect_stderr(
            proc.child.stderr.take().expect("stderr"),
            Arc::clone(&metrics),
            Arc::clone(&stderr_closed),
        );
        Tracer {
            proc,
            stdout: Some(stdout),
            stderr: Some(stderr),
            metrics,
            stderr_closed,
        }
    }

    /// The address /metrics is served on, once the tracer has said it.
    pub fn metrics(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(addr) = *self.metrics.lock().expect("lock") {
                return addr;
            }
            assert!(
                !self.stderr_closed.load(Ordering::Acquire),
                "the tracer closed stderr without serving metrics"
            );
            assert!(
                Instant::now() < deadline,
                "the tracer did not serve metrics in time"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until /readyz answers 200: every program is attached.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.proc.child.try_wait().expect("try_wait") {
                let err = self.stderr.take().map(|h| h.join().unwrap_or_default());
                panic!("tracer exited early with {st}: {}", err.unwrap_or_default());
            }
            let addr = *self.metrics.lock().expect("lock");
            if let Some(Ok((200, _))) = addr.map(|a| http_get(a, "/readyz")) {
                return;
            }
            assert!(Instant::now() < deadline, "tracer not ready in time");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGINT, then collect everything it wrote.
    pub fn stop(mut self) -> Finished {
        self.proc.signal(libc::SIGINT);
        self.finish(Duration::from_secs(20))
    }

    /// Like `stop`, for a tracer started under `unshare --fork`: unshare
    /// ignores SIGINT and forwards nothing, so the tracer, its only child,
    /// gets the signal.
    pub fn stop_forked(mut self) -> Finished {
        let tracer = only_child(self.proc.pid());
        unsafe { libc::kill(tracer as i32, libc::SIGINT) };
        self.finish(Duration::from_secs(20))
    }

    pub fn finish(&mut self, timeout: Duration) -> Finished {
        let status = self.proc.wait_timeout(timeout);
        let stdout = self.stdout.take().expect("stdout").join().expect("join");
        let stderr = self.stderr.take().expect("stderr").join().expect("join");
        Finished {
            status,
            events: parse_events(&stdout),
            stderr,
        }
    }
}

/// Every stdout line is one JSON object with the contract's common fields
/// (a `lost` line has its own).
pub fn parse_events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            let keys: &[&str] = if v["event"] == "lost" {
                &["event", "ts", "lost", "rate_limited", "pod"]
            } else {
                &[
                    "event",
                    "ts",
                    "pid",
                    "host_pid",
                    "ppid",
                    "comm",
                    "container",
                    "pod",
                ]
            };
            for key in keys {
                assert!(v.get(key).is_some(), "{key} missing in {l}");
            }
            let ts = v["ts"].as_str().expect("ts is a string");
            assert!(is_rfc3339_ns(ts), "bad ts {ts}");
            v
        })
        .collect()
}

fn is_rfc3339_ns(ts: &str) -> bool {
    let b = ts.as_bytes();
    b.len() == 30
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[29] == b'Z'
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19, 20..29]
            .into_iter()
            .all(|r| b[r].iter().all(u8::is_ascii_digit))
}

/// The only child of `pid`.
pub fn only_child(pid: u32) -> u32 {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).expect("children");
    let children: Vec<u32> = text
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    assert_eq!(children.len(), 1, "children of {pid}: {children:?}");
    children[0]
}

/// Run `linnix-sidecar trace [opts] -- argv...` to completion.
pub fn trace_command(opts: &[&str], argv: &[&str]) -> Finished {
    trace_command_under(&[], opts, argv)
}

/// `trace_command` under a wrapper (`unshare ...`).
pub fn trace_command_under(wrapper: &[&str], opts: &[&str], argv: &[&str]) -> Finished {
    let raw = trace_command_raw(wrapper, opts, argv);
    Finished {
        status: raw.status,
        events: parse_events(&raw.stdout),
        stderr: raw.stderr,
    }
}

/// What `trace` wrote, as it wrote it (for `--output text`).
pub struct Raw {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Run `[wrapper] linnix-sidecar trace [opts] -- argv...` to completion.
pub fn trace_command_raw(wrapper: &[&str], opts: &[&str], argv: &[&str]) -> Raw {
    let mut cmd = match wrapper.split_first() {
        Some((w, rest)) => {
            let mut c = Command::new(w);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    cmd.arg("trace")
        .args(opts)
        .arg("--")
        .args(argv)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = Proc::spawn(&mut cmd);
    let stdout = collect(proc.child.stdout.take().expect("stdout"));
    let stderr = collect(proc.child.stderr.take().expect("stderr"));
    let status = proc.wait_timeout(Duration::from_secs(60));
    Raw {
        status,
        stdout: stdout.join().expect("join"),
        stderr: stderr.join().expect("join"),
    }
}

/// Whether `word` is one of the event's argv.
pub fn argv_has(e: &Value, word: &str) -> bool {
    e["argv"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == word))
}

pub fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// A plain HTTP/1.1 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut rest = String::new();
    reader.read_to_string(&mut rest)?;
    let body = rest
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Run `argv` inside `cgroup` and wait for it.
pub fn run_in(cgroup: &Path, argv: &[&str]) -> ExitStatus {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]).stdout(Stdio::null());
    in_cgroup(&mut cmd, cgroup);
    Proc::spawn(&mut cmd).wait_timeout(Duration::from_secs(30))
}

/// The value of the first /metrics line that starts with `series`.
pub fn metric(addr: SocketAddr, series: &str) -> Option<u64> {
    let (code, body) = http_get(addr, "/metrics").ok()?;
    assert_eq!(code, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Poll until `ok` holds, for at most `timeout`.
pub fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    ok()
}
