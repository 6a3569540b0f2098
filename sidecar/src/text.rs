//! `--output text`: aligned columns for a person, in the style of
//! libbpf-tools' execsnoop and exitsnoop.
//!
//! ```text
//! TIME(UTC)    EVENT           CONTAINER      PID     PPID    COMM             DETAIL
//! 10:15:02.123 exec            app            12      7       uname            uname -a
//! 10:15:02.125 exit            app            13      7       sh               exit 3 after 2 ms
//! ```
//!
//! Every string from the kernel is already escaped by the decoder (control
//! characters and invalid UTF-8 as `\xNN`), so nothing printed here can move
//! the cursor, recolour or erase what a terminal shows.

use std::io::{self, Write};

use crate::metrics::signal_name;
use crate::output::{Detail, Line, LostLine};

const HEADER: &str =
    "TIME(UTC)    EVENT           CONTAINER      PID     PPID    COMM             DETAIL";

pub fn write_header(out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{HEADER}")
}

pub fn write_line(out: &mut impl Write, line: &Line<'_>) -> io::Result<()> {
    let pid = line.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
    let detail = detail(line);
    let row = format!(
        "{} {:<15} {:<14} {:<7} {:<7} {:<16} {}",
        line.ts.time_of_day(),
        line.event.as_str(),
        container_column(line.container),
        pid,
        line.ppid,
        line.comm,
        detail
    );
    writeln!(out, "{}", row.trim_end())
}

/// A hole in the stream: no process, only how many events were dropped.
pub fn write_lost(out: &mut impl Write, line: &LostLine<'_>) -> io::Result<()> {
    let row = format!(
        "{} {:<15} {:<14} {:<7} {:<7} {:<16} {} lost, {} rate-limited",
        line.ts.time_of_day(),
        "lost",
        "-",
        "-",
        "-",
        "-",
        line.lost,
        line.rate_limited
    );
    writeln!(out, "{row}")
}

/// Names as they are; a 64-hex container id shortened as `docker ps` does.
fn container_column(container: Option<&str>) -> &str {
    match container {
        None => "-",
        Some(c) if c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()) => &c[..12],
        Some(c) => c,
    }
}

fn detail(line: &Line<'_>) -> String {
    let mut parts: Vec<String> = Vec::new();
    match &line.detail {
        Detail::Present(c) => parts.push(format!("uid={} gid={}", c.uid, c.gid)),
        Detail::Fork(f) => {
            if f.thread {
                parts.push(format!(
                    "thread tid={} host_tid={}",
                    opt(f.tid),
                    opt(f.host_tid)
                ));
            }
        }
        Detail::Exec(e) => {
            parts.push(command(e.argv, e.argv_truncated));
            if e.argv.first().map(String::as_str) != Some(e.filename) {
                parts.push(format!("[file {}]", e.filename));
            }
            parts.push(format!("uid={} gid={}", e.creds.uid, e.creds.gid));
            let raised: Vec<&str> = e.privileges_raised.names().collect();
            if !raised.is_empty() {
                parts.push(format!("[privileges raised: {}]", raised.join(",")));
            }
            if e.argv_empty {
                parts.push("[empty argv]".to_owned());
            }
        }
        Detail::Exit(x) => parts.push(ending(x.exit_code, x.signal, x.core_dumped, x.lifetime_ms)),
        Detail::OomKill(o) => {
            let mut s = format!("rss {} kB", o.rss_kb);
            if let (Some(usage), Some(limit)) = (o.memcg_usage_bytes, o.memcg_limit_bytes) {
                s.push_str(&format!(", memcg {} of {} bytes", usage, limit_text(limit)));
            }
            parts.push(s);
        }
        Detail::MemoryPressure(p) => {
            let mut s = format!(
                "{} x{}, memcg {} bytes",
                p.reason, p.count, p.memcg_usage_bytes
            );
            if let Some(limit) = p.memcg_limit_bytes {
                s.push_str(&format!(" of {}", limit_text(limit)));
            }
            parts.push(s);
        }
        Detail::CgroupJoin(j) => {
            parts.push(match j.from_container {
                Some(from) => format!("from container {from}"),
                None => "from outside the pod".to_owned(),
            });
            parts.push(format!("uid={} gid={}", j.creds.uid, j.creds.gid));
        }
        Detail::CgroupLeave {} => parts.push("left the pod".to_owned()),
        Detail::ContainerStart(s) => {
            match s.argv {
                Some(argv) => parts.push(command(argv, false)),
                None => parts.push("?".to_owned()),
            }
            if s.present {
                parts.push("[already running]".to_owned());
            }
            if let Some(ms) = s.since_first_container_ms {
                parts.push(format!("+{ms} ms after the first container"));
            }
        }
        Detail::ContainerExit(x) => {
            parts.push(ending(x.exit_code, x.signal, x.core_dumped, x.runtime_ms));
            if x.oom_killed {
                parts.push("[OOM-killed]".to_owned());
            } else if x.oom_kills > 0 {
                parts.push(format!("[{} OOM kills inside]", x.oom_kills));
            }
        }
    }
    if line.entered {
        parts.push("[entered]".to_owned());
    }
    if let Some(probe) = line.exec_probe {
        parts.push(format!("[probe {probe}]"));
    }
    if let Some(inner) = line.inner_pid {
        parts.push(format!("[inner pid {inner}]"));
    }
    parts.join(" ")
}

fn opt(v: Option<u32>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn limit_text(limit: u64) -> String {
    if limit == u64::MAX {
        "unlimited".to_owned()
    } else {
        limit.to_string()
    }
}

fn ending(code: Option<i32>, signal: Option<i32>, core: bool, ms: u64) -> String {
    let how = match (code, signal) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("killed by {}", signal_name(sig)),
        (None, None) => "ended".to_owned(),
    };
    let core = if core { " (core dumped)" } else { "" };
    format!("{how}{core} after {ms} ms")
}

/// argv as a shell would need it typed: words with spaces or quotes, and
/// empty ones, in single quotes.
fn command(argv: &[String], truncated: bool) -> String {
    let mut words: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    if truncated {
        words.push("…".to_owned());
    }
    words.join(" ")
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@%^".contains(&b) || b >= 0x80);
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::line;
    use crate::output::{ContainerExitDetail, Creds, ExecDetail, ExitDetail, Raised};
    use linnix_ebpf::{escape_bytes, Privileges};

    fn render(l: &Line<'_>) -> String {
        let mut out = Vec::new();
        write_line(&mut out, l).expect("write");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn memory_pressure_and_lost_lines() {
        use crate::output::{LostKind, LostLine, PressureDetail};
        let row = render(&line(
            Detail::MemoryPressure(PressureDetail {
                reason: "reclaim",
                count: 17,
                memcg_usage_bytes: 67_100_000,
                memcg_limit_bytes: Some(67_108_864),
                memcg_high_bytes: None,
            }),
            None,
        ));
        assert!(
            row.trim_end()
                .ends_with("reclaim x17, memcg 67100000 bytes of 67108864"),
            "{row}"
        );
        let mut out = Vec::new();
        write_lost(
            &mut out,
            &LostLine {
                event: LostKind,
                ts: crate::output::Rfc3339(1_795_342_502_123_456_789),
                lost: 192,
                rate_limited: 3,
                pod: None,
            },
        )
        .expect("write");
        let row = String::from_utf8(out).expect("utf8");
        assert!(row.starts_with("10:15:02.123 lost "), "{row}");
        assert!(row.ends_with(" 192 lost, 3 rate-limited\n"), "{row}");
        // The columns stay where the header puts them.
        let at = HEADER.find("DETAIL").expect("DETAIL");
        assert_ne!(row.as_bytes()[at], b' ', "{row}");
    }

    #[test]
    fn columns_line_up_under_the_header() {
        let argv = vec!["uname".to_owned(), "-a".to_owned()];
        let row = render(&line(
            Detail::Exec(ExecDetail {
                filename: "uname",
                argv: &argv,
                argv_truncated: false,
                filename_truncated: false,
                argv_empty: false,
                creds: Creds { uid: 0, gid: 0 },
                privileges_raised: Raised(Privileges::default()),
            }),
            None,
        ));
        assert_eq!(
            row,
            "10:15:02.123 exec            app            12      7       uname            uname -a uid=0 gid=0\n"
        );
        for column in ["EVENT", "CONTAINER", "PID", "PPID", "COMM", "DETAIL"] {
            let at = HEADER.find(column).expect(column);
            assert_ne!(
                row.as_bytes()[at],
                b' ',
                "{column} misaligned:\n{HEADER}\n{row}"
            );
            assert_eq!(
                row.as_bytes()[at - 1],
                b' ',
                "{column} misaligned:\n{HEADER}\n{row}"
            );
        }
    }

    #[test]
    fn exits_show_code_or_signal_and_lifetime() {
        let exit = |code, signal, core| {
            render(&line(
                Detail::Exit(ExitDetail {
                    exit_code: code,
                    signal,
                    core_dumped: core,
                    lifetime_ms: 15,
                }),
                None,
            ))
        };
        assert!(exit(Some(3), None, false).ends_with(" exit 3 after 15 ms\n"));
        assert!(
            exit(None, Some(11), true).ends_with(" killed by SIGSEGV (core dumped) after 15 ms\n")
        );
        let mut l = line(
            Detail::ContainerExit(ContainerExitDetail {
                exit_code: None,
                signal: Some(9),
                core_dumped: false,
                oom_killed: true,
                oom_kills: 1,
                runtime_ms: 60_000,
            }),
            None,
        );
        l.container = Some("0123456789ab0123456789ab0123456789ab0123456789ab0123456789abcdef");
        let row = render(&l);
        assert!(row.contains(" 0123456789ab   "), "{row}");
        assert!(
            row.ends_with("killed by SIGKILL after 60000 ms [OOM-killed]\n"),
            "{row}"
        );
    }

    #[test]
    fn an_ansi_escape_in_a_name_is_shown_not_obeyed() {
        // As the decoder hands it over: escaped.
        let name = escape_bytes(b"/tmp/x\x1b[2K\x1b]0;owned\x07");
        let argv = vec![name.clone(), "it's".to_owned(), String::new()];
        let mut l = line(
            Detail::Exec(ExecDetail {
                filename: &name,
                argv: &argv,
                argv_truncated: true,
                filename_truncated: false,
                argv_empty: false,
                creds: Creds {
                    uid: 1000,
                    gid: 1000,
                },
                privileges_raised: Raised(Privileges {
                    setuid: true,
                    secure_exec: true,
                    ..Privileges::default()
                }),
            }),
            None,
        );
        l.entered = true;
        l.exec_probe = Some("app/liveness");
        let row = render(&l);
        assert!(!row.trim_end().chars().any(char::is_control), "{row:?}");
        assert!(
            row.contains(r"'/tmp/x\x1b[2K\x1b]0;owned\x07' 'it'\''s' '' …"),
            "{row}"
        );
        assert!(
            row.ends_with("[privileges raised: setuid] [entered] [probe app/liveness]\n"),
            "{row}"
        );
    }
}
