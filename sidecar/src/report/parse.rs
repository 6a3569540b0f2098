//! Reading a tracer's output back: one JSON object per line, as the README's
//! event schema describes it. Anything else is counted with the number of
//! its first line, so that a page never hides what it could not show.

use std::io::BufRead;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The event kinds the page draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Present,
    Fork,
    Exec,
    Exit,
    OomKill,
    MemoryPressure,
    CgroupJoin,
    CgroupLeave,
    ContainerStart,
    ContainerExit,
    Lost,
}

impl Kind {
    fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "present" => Kind::Present,
            "fork" => Kind::Fork,
            "exec" => Kind::Exec,
            "exit" => Kind::Exit,
            "oom_kill" => Kind::OomKill,
            "memory_pressure" => Kind::MemoryPressure,
            "cgroup_join" => Kind::CgroupJoin,
            "cgroup_leave" => Kind::CgroupLeave,
            "container_start" => Kind::ContainerStart,
            "container_exit" => Kind::ContainerExit,
            "lost" => Kind::Lost,
            _ => return None,
        })
    }
}

/// One event line, with the fields the page uses.
#[derive(Debug, Clone)]
pub struct Event {
    /// 1-based line number in the input.
    pub line: usize,
    pub kind: Kind,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i128,
    pub ts: String,
    pub pid: Option<i64>,
    pub comm: String,
    pub container: Option<String>,
    pub exec_id: Option<String>,
    pub parent_exec_id: Option<String>,
    pub entered: bool,
    pub exec_probe: Option<String>,
    pub filename: Option<String>,
    pub argv: Vec<String>,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub core_dumped: bool,
    pub oom_killed: bool,
    pub reason: Option<String>,
    pub count: Option<u64>,
    pub memcg_usage_bytes: Option<u64>,
    pub memcg_limit_bytes: Option<u64>,
    pub lost: u64,
    pub rate_limited: u64,
    pub pod: Option<String>,
}

/// Lines left out, by cause: how many and where the first one was.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub count: usize,
    pub first_line: Option<usize>,
    pub first_reason: String,
}

impl Skipped {
    fn add(&mut self, line: usize, reason: String) {
        self.count += 1;
        if self.first_line.is_none() {
            self.first_line = Some(line);
            self.first_reason = reason;
        }
    }
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub events: Vec<Event>,
    /// Lines that are not an event of the schema (not JSON, no `event` or
    /// `ts`, a bad timestamp, not UTF-8): diagnostics `kubectl logs` mixed
    /// in, a truncated last line, a different file.
    pub bad: Skipped,
    /// Well-formed lines of an event kind this version does not know (a
    /// newer tracer's).
    pub unknown: Skipped,
    pub lines: usize,
}

/// Reads every line; fails only when the input itself cannot be read.
pub fn read(input: impl BufRead) -> std::io::Result<Parsed> {
    let mut parsed = Parsed::default();
    for (i, raw) in input.split(b'\n').enumerate() {
        let raw = raw?;
        let line_no = i + 1;
        parsed.lines = line_no;
        let Ok(text) = std::str::from_utf8(&raw) else {
            parsed.bad.add(line_no, "not UTF-8".to_owned());
            continue;
        };
        let text = text.trim();
        // Blank lines carry nothing (a trailing newline, a copy-paste).
        if text.is_empty() {
            continue;
        }
        match parse_line(text, line_no) {
            Ok(Some(event)) => parsed.events.push(event),
            Ok(None) => {
                let name = serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|v| v.get("event").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                parsed.unknown.add(line_no, format!("event {name:?}"));
            }
            Err(reason) => parsed.bad.add(line_no, reason),
        }
    }
    Ok(parsed)
}

/// `Ok(None)`: a well-formed line of an unknown kind.
fn parse_line(text: &str, line: usize) -> Result<Option<Event>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    let name = obj
        .get("event")
        .and_then(Value::as_str)
        .ok_or("no \"event\" string")?;
    let ts = obj
        .get("ts")
        .and_then(Value::as_str)
        .ok_or("no \"ts\" string")?;
    let Some(kind) = Kind::from_name(name) else {
        return Ok(None);
    };
    let ts_ns = OffsetDateTime::parse(ts, &Rfc3339)
        .map_err(|e| format!("\"ts\" {ts:?} is not RFC 3339 ({e})"))?
        .unix_timestamp_nanos();
    let str_of = |key: &str| obj.get(key).and_then(Value::as_str).map(str::to_owned);
    let u64_of = |key: &str| obj.get(key).and_then(Value::as_u64);
    let pod = obj.get("pod").and_then(|p| {
        let ns = p.get("namespace").and_then(Value::as_str);
        let name = p.get("name").and_then(Value::as_str)?;
        Some(match ns {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_owned(),
        })
    });
    Ok(Some(Event {
        line,
        kind,
        ts_ns,
        ts: ts.to_owned(),
        pid: obj.get("pid").and_then(Value::as_i64),
        comm: str_of("comm").unwrap_or_default(),
        container: str_of("container"),
        exec_id: str_of("exec_id"),
        parent_exec_id: str_of("parent_exec_id"),
        entered: obj.get("entered").and_then(Value::as_bool) == Some(true),
        exec_probe: str_of("exec_probe"),
        filename: str_of("filename"),
        argv: obj
            .get("argv")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or("?").to_owned())
                    .collect()
            })
            .unwrap_or_default(),
        exit_code: obj.get("exit_code").and_then(Value::as_i64),
        signal: obj.get("signal").and_then(Value::as_i64),
        core_dumped: obj.get("core_dumped").and_then(Value::as_bool) == Some(true),
        oom_killed: obj.get("oom_killed").and_then(Value::as_bool) == Some(true),
        reason: str_of("reason"),
        count: u64_of("count"),
        memcg_usage_bytes: u64_of("memcg_usage_bytes"),
        memcg_limit_bytes: u64_of("memcg_limit_bytes"),
        lost: u64_of("lost").unwrap_or(0),
        rate_limited: u64_of("rate_limited").unwrap_or(0),
        pod,
    }))
}
