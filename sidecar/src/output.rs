//! The output contract: one JSON object per line on stdout.

use std::io::{self, BufWriter, Write};

use linnix_ebpf::{Event, ExecEvent, ExitEvent, OomKillEvent, Task};
use serde::Serialize;

use crate::pod::PodIdentity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Present,
    Fork,
    Exec,
    Exit,
    OomKill,
}

impl Kind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [Kind; 5] = [
        Kind::Present,
        Kind::Fork,
        Kind::Exec,
        Kind::Exit,
        Kind::OomKill,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Present => "present",
            Kind::Fork => "fork",
            Kind::Exec => "exec",
            Kind::Exit => "exit",
            Kind::OomKill => "oom_kill",
        }
    }
}

/// One line of output.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    pub event: Kind,
    pub ts: Rfc3339,
    pub pid: u32,
    pub host_pid: Option<u32>,
    pub ppid: u32,
    pub comm: &'a str,
    pub container: Option<&'a str>,
    pub pod: Option<&'a PodIdentity>,
    #[serde(flatten)]
    pub detail: Detail<'a>,
}

/// The fields particular to each kind of event.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Detail<'a> {
    Present {},
    Fork(ForkDetail),
    Exec(ExecDetail<'a>),
    Exit(ExitDetail),
    OomKill(OomDetail),
}

impl Detail<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Detail::Present {} => Kind::Present,
            Detail::Fork(_) => Kind::Fork,
            Detail::Exec(_) => Kind::Exec,
            Detail::Exit(_) => Kind::Exit,
            Detail::OomKill(_) => Kind::OomKill,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ForkDetail {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub thread: bool,
}

#[derive(Debug, Serialize)]
pub struct ExecDetail<'a> {
    pub filename: &'a str,
    pub argv: &'a [String],
    pub argv_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub filename_truncated: bool,
}

impl<'a> From<&'a ExecEvent> for ExecDetail<'a> {
    fn from(e: &'a ExecEvent) -> Self {
        ExecDetail {
            filename: &e.filename,
            argv: &e.argv,
            argv_truncated: e.argv_truncated,
            filename_truncated: e.filename_truncated,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExitDetail {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub core_dumped: bool,
    pub lifetime_ms: u64,
}

impl From<&ExitEvent> for ExitDetail {
    fn from(e: &ExitEvent) -> Self {
        ExitDetail {
            exit_code: e.exit_code(),
            signal: e.signal(),
            core_dumped: e.core_dumped(),
            lifetime_ms: e.lifetime_ns / 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OomDetail {
    pub rss_kb: u64,
    pub rss_anon_kb: u64,
    pub rss_file_kb: u64,
    pub rss_shmem_kb: u64,
    pub memcg_usage_bytes: Option<u64>,
    pub memcg_limit_bytes: Option<u64>,
}

impl From<&OomKillEvent> for OomDetail {
    fn from(e: &OomKillEvent) -> Self {
        OomDetail {
            rss_kb: e
                .rss_anon_kb
                .saturating_add(e.rss_file_kb)
                .saturating_add(e.rss_shmem_kb),
            rss_anon_kb: e.rss_anon_kb,
            rss_file_kb: e.rss_file_kb,
            rss_shmem_kb: e.rss_shmem_kb,
            memcg_usage_bytes: e.memcg.as_ref().map(|m| m.usage_bytes),
            memcg_limit_bytes: e.memcg.as_ref().map(|m| m.limit_bytes),
        }
    }
}

impl<'a> Detail<'a> {
    pub fn of(event: &'a Event) -> Option<(&'a Task, Detail<'a>)> {
        Some(match event {
            Event::Fork(f) => (&f.task, Detail::Fork(ForkDetail { thread: f.thread })),
            Event::Exec(e) => (&e.task, Detail::Exec(e.into())),
            Event::Exit(e) => (&e.task, Detail::Exit(e.into())),
            Event::OomKill(o) => (&o.task, Detail::OomKill(o.into())),
            Event::Cgroup(_) | Event::Present(_) => return None,
        })
    }
}

/// Kernel boot-time nanoseconds to wall-clock RFC 3339.
///
/// The offset between CLOCK_REALTIME and CLOCK_BOOTTIME is taken once at
/// start: events then keep their kernel order even if the wall clock is
/// stepped later.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_ns: i128,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into `ts`; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl Clock {
    pub fn new() -> Self {
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock {
            offset_ns: real - boot,
        }
    }

    #[cfg(test)]
    fn with_offset(offset_ns: i128) -> Self {
        Clock { offset_ns }
    }

    pub fn boot_ns(&self) -> u64 {
        u64::try_from(clock_ns(libc::CLOCK_BOOTTIME)).unwrap_or(0)
    }

    pub fn rfc3339(&self, boot_ns: u64) -> Rfc3339 {
        Rfc3339(i128::from(boot_ns) + self.offset_ns)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Unix nanoseconds, shown as RFC 3339 with always nine fraction digits,
/// UTC, `Z`; serialized straight into the output, without a String.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub i128);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match time::OffsetDateTime::from_unix_timestamp_nanos(self.0) {
            Ok(t) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.nanosecond()
            ),
            // Out of range only for a corrupt timestamp; keep the line valid.
            Err(_) => f.write_str("1970-01-01T00:00:00.000000000Z"),
        }
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Buffered stdout: a batch of lines goes out in one write.
pub struct Writer<W: Write> {
    out: BufWriter<W>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer {
            out: BufWriter::with_capacity(64 * 1024, out),
        }
    }

    pub fn write(&mut self, line: &Line<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn line<'a>(detail: Detail<'a>, pod: Option<&'a PodIdentity>) -> Line<'a> {
        Line {
            event: detail.kind(),
            ts: Rfc3339(1_795_342_502_123_456_789),
            pid: 12,
            host_pid: Some(48211),
            ppid: 7,
            comm: "uname",
            container: Some("app"),
            pod,
            detail,
        }
    }

    fn to_value(l: &Line<'_>) -> Value {
        let mut w = Writer::new(Vec::new());
        w.write(l).expect("write");
        w.flush().expect("flush");
        let bytes = w.out.into_inner().expect("into_inner");
        let text = String::from_utf8(bytes).expect("utf8");
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        serde_json::from_str(&text).expect("valid JSON")
    }

    const COMMON: [&str; 8] = [
        "event",
        "ts",
        "pid",
        "host_pid",
        "ppid",
        "comm",
        "container",
        "pod",
    ];

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        k.sort_unstable();
        k
    }

    fn expect_keys(v: &Value, extra: &[&str]) {
        let mut want: Vec<&str> = COMMON.iter().chain(extra).copied().collect();
        want.sort_unstable();
        assert_eq!(keys(v), want);
    }

    #[test]
    fn exec_line() {
        let argv = vec!["uname".to_owned(), "-a".to_owned()];
        let pod = PodIdentity {
            name: Some("web".into()),
            namespace: Some("team-a".into()),
            uid: None,
            node: None,
        };
        let v = to_value(&line(
            Detail::Exec(ExecDetail {
                filename: "/bin/uname",
                argv: &argv,
                argv_truncated: false,
                filename_truncated: false,
            }),
            Some(&pod),
        ));
        expect_keys(&v, &["filename", "argv", "argv_truncated"]);
        assert_eq!(v["event"], "exec");
        assert_eq!(v["ts"], "2026-11-22T10:15:02.123456789Z");
        assert_eq!(v["argv"], json!(["uname", "-a"]));
        assert_eq!(
            v["pod"],
            json!({"name": "web", "namespace": "team-a", "uid": null})
        );
        assert_eq!(v["host_pid"], 48211);
    }

    #[test]
    fn exit_line_by_code_and_by_signal() {
        let v = to_value(&line(
            Detail::Exit(ExitDetail {
                exit_code: Some(3),
                signal: None,
                core_dumped: false,
                lifetime_ms: 2,
            }),
            None,
        ));
        expect_keys(&v, &["exit_code", "signal", "core_dumped", "lifetime_ms"]);
        assert_eq!(v["event"], "exit");
        assert_eq!(v["exit_code"], 3);
        assert!(v["signal"].is_null() && v["pod"].is_null());
        let v = to_value(&line(
            Detail::Exit(ExitDetail {
                exit_code: None,
                signal: Some(9),
                core_dumped: true,
                lifetime_ms: 0,
            }),
            None,
        ));
        assert!(v["exit_code"].is_null());
        assert_eq!(v["signal"], 9);
        assert_eq!(v["core_dumped"], true);
    }

    #[test]
    fn fork_present_and_oom_lines() {
        let v = to_value(&line(Detail::Fork(ForkDetail { thread: false }), None));
        expect_keys(&v, &[]);
        assert_eq!(v["event"], "fork");
        let v = to_value(&line(Detail::Fork(ForkDetail { thread: true }), None));
        expect_keys(&v, &["thread"]);
        let v = to_value(&line(Detail::Present {}, None));
        expect_keys(&v, &[]);
        assert_eq!(v["event"], "present");

        let oom = OomKillEvent {
            task: Task {
                ts_boot_ns: 1,
                host_pid: 2,
                host_tid: 2,
                pid: 2,
                ppid: 1,
                host_ppid: 1,
                comm: "dd".into(),
                cgroup_id: 9,
                cgroup_name: "x".into(),
                tid: 2,
                inner_pid: 2,
                start_ns: 5,
                parent_start_ns: 4,
                parent_in_target: true,
                uid: 0,
                gid: 0,
            },
            rss_anon_kb: 64980,
            rss_file_kb: 32,
            rss_shmem_kb: 4,
            memcg: None,
        };
        let v = to_value(&line(Detail::OomKill((&oom).into()), None));
        expect_keys(
            &v,
            &[
                "rss_kb",
                "rss_anon_kb",
                "rss_file_kb",
                "rss_shmem_kb",
                "memcg_usage_bytes",
                "memcg_limit_bytes",
            ],
        );
        assert_eq!(v["event"], "oom_kill");
        assert_eq!(v["rss_kb"], 65016);
        assert!(v["memcg_limit_bytes"].is_null());
    }

    #[test]
    fn timestamps_have_nanoseconds() {
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            Rfc3339(1_795_342_502_123_456_789).to_string(),
            "2026-11-22T10:15:02.123456789Z"
        );
        assert_eq!(
            Rfc3339(i128::MAX).to_string(),
            "1970-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            Clock::with_offset(1_000_000_000).rfc3339(5).to_string(),
            "1970-01-01T00:00:01.000000005Z"
        );
        assert_eq!(
            serde_json::to_string(&Rfc3339(5)).expect("json"),
            "\"1970-01-01T00:00:00.000000005Z\""
        );
        // Now, via the real clocks, is within a minute of the system time.
        let c = Clock::new();
        let now = c.rfc3339(c.boot_ns()).to_string();
        let sys = time::OffsetDateTime::now_utc();
        assert!(now.starts_with(&format!("{:04}-", sys.year())), "{now}");
    }
}
