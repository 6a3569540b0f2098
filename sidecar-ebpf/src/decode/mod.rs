//! Ring-buffer records → [`Event`]s. Records come from the kernel programs,
//! but are still checked: a short or unknown record is an error, never a panic.

use zerocopy::{FromBytes, Immutable, KnownLayout};

use crate::bindings::{
    linnix_cgroup_event, linnix_cgroup_rmdir_event, linnix_event_header, linnix_exec_event,
    linnix_exit_event, linnix_fork_event, linnix_lost_event, linnix_memory_pressure_event,
    linnix_oom_event, linnix_present_event, LINNIX_ARGS_LEN, LINNIX_CGROUP_JOIN,
    LINNIX_CGROUP_LEAVE, LINNIX_CGROUP_MOVE, LINNIX_EVENT_CGROUP, LINNIX_EVENT_CGROUP_RMDIR,
    LINNIX_EVENT_EXEC, LINNIX_EVENT_EXIT, LINNIX_EVENT_FORK, LINNIX_EVENT_LOST,
    LINNIX_EVENT_MEMORY_PRESSURE, LINNIX_EVENT_OOM_KILL, LINNIX_EVENT_PRESENT,
    LINNIX_FILENAME_HEAD, LINNIX_FILENAME_LEN, LINNIX_FLAG_ARGV_TRUNCATED,
    LINNIX_FLAG_CREATOR_IN_TARGET, LINNIX_FLAG_FILENAME_TRUNCATED, LINNIX_FLAG_FILE_CAPS,
    LINNIX_FLAG_MEMCG_KNOWN, LINNIX_FLAG_PARENT_IN_TARGET, LINNIX_FLAG_SECUREEXEC,
    LINNIX_FLAG_SETGID, LINNIX_FLAG_SETUID, LINNIX_FLAG_THREAD, LINNIX_MAX_ARGS,
};
use crate::escape::escape_bytes;
use crate::{
    CgroupChange, CgroupEvent, CgroupRemovedEvent, DecodeError, Event, ExecEvent, ExitEvent,
    ForkEvent, LostEvent, MemcgUsage, MemoryPressureEvent, OomKillEvent, PressureReason,
    Privileges, Task,
};

/// Parse one ring-buffer record.
///
/// The record is read in place (ring records are 8-byte aligned), not copied
/// out: an exec record is 1.5 KiB, and only its strings are kept.
pub fn decode(record: &[u8]) -> Result<Event, DecodeError> {
    if record.len() < size_of::<linnix_event_header>() {
        return Err(DecodeError::TooShort(record.len()));
    }
    // `kind` is the header's first field.
    let (kind, _) =
        u32::read_from_prefix(record).map_err(|_| DecodeError::TooShort(record.len()))?;
    match kind {
        LINNIX_EVENT_FORK => with(record, |e: &linnix_fork_event| {
            Event::Fork(ForkEvent {
                task: task(&e.hdr),
                thread: e.hdr.flags & LINNIX_FLAG_THREAD != 0,
                creator: (e.hdr.flags & LINNIX_FLAG_CREATOR_IN_TARGET != 0).then_some(
                    crate::ProcessId {
                        host_pid: e.creator_host_pid,
                        start_ns: e.creator_start_ns,
                    },
                ),
            })
        }),
        LINNIX_EVENT_EXEC => with(record, |e: &linnix_exec_event| Event::Exec(exec_event(e))),
        LINNIX_EVENT_EXIT => with(record, |e: &linnix_exit_event| {
            Event::Exit(ExitEvent {
                task: task(&e.hdr),
                status: e.status,
                lifetime_ns: e.lifetime_ns,
            })
        }),
        LINNIX_EVENT_OOM_KILL => with(record, |e: &linnix_oom_event| {
            let memcg = (e.hdr.flags & LINNIX_FLAG_MEMCG_KNOWN != 0).then_some(MemcgUsage {
                usage_bytes: e.memcg_usage_bytes,
                limit_bytes: e.memcg_limit_bytes,
            });
            Event::OomKill(OomKillEvent {
                task: task(&e.hdr),
                rss_anon_kb: e.rss_anon_kb,
                rss_file_kb: e.rss_file_kb,
                rss_shmem_kb: e.rss_shmem_kb,
                memcg,
            })
        }),
        LINNIX_EVENT_LOST => with(record, |e: &linnix_lost_event| {
            Event::Lost(LostEvent {
                ts_boot_ns: e.hdr.ts_boot_ns,
                lost: e.lost,
                rate_limited: e.rate_limited,
            })
        }),
        LINNIX_EVENT_CGROUP_RMDIR => with(record, |e: &linnix_cgroup_rmdir_event| {
            Event::CgroupRemoved(CgroupRemovedEvent {
                ts_boot_ns: e.hdr.ts_boot_ns,
                cgroup_id: e.hdr.cgroup_id,
                cgroup_name: c_string(&e.hdr.cgroup_name),
            })
        }),
        LINNIX_EVENT_MEMORY_PRESSURE => with(record, |e: &linnix_memory_pressure_event| {
            let reason = usize::try_from(e.reason)
                .ok()
                .and_then(|i| PressureReason::ALL.get(i).copied())
                .ok_or(DecodeError::UnknownPressureReason(e.reason))?;
            Ok(Event::MemoryPressure(MemoryPressureEvent {
                task: task(&e.hdr),
                reason,
                count: e.count,
                usage_bytes: e.memcg_usage_bytes,
                limit_bytes: limit(e.memcg_limit_bytes),
                high_bytes: limit(e.memcg_high_bytes),
            }))
        })?,
        LINNIX_EVENT_CGROUP => with(record, |e: &linnix_cgroup_event| {
            let change = match e.change {
                LINNIX_CGROUP_JOIN => CgroupChange::Join,
                LINNIX_CGROUP_LEAVE => CgroupChange::Leave,
                LINNIX_CGROUP_MOVE => CgroupChange::Move {
                    from_cgroup_id: e.from_cgroup_id,
                },
                other => return Err(DecodeError::UnknownCgroupChange(other)),
            };
            Ok(Event::Cgroup(CgroupEvent {
                task: task(&e.hdr),
                change,
            }))
        })?,
        LINNIX_EVENT_PRESENT => with(record, |e: &linnix_present_event| {
            Event::Present(task(&e.hdr))
        }),
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// The kernel's "no limit" (~0) as `None`.
pub(crate) fn limit(bytes: u64) -> Option<u64> {
    (bytes != u64::MAX).then_some(bytes)
}

/// `f` applied to the record viewed as a `T`: in place when the bytes are
/// aligned for `T`, else (a copy made elsewhere) on a copy.
fn with<T, R>(record: &[u8], f: impl FnOnce(&T) -> R) -> Result<R, DecodeError>
where
    T: FromBytes + KnownLayout + Immutable,
{
    if let Ok((value, _)) = T::ref_from_prefix(record) {
        return Ok(f(value));
    }
    let (value, _) =
        T::read_from_prefix(record).map_err(|_| DecodeError::TooShort(record.len()))?;
    Ok(f(&value))
}

fn task(hdr: &linnix_event_header) -> Task {
    Task {
        ts_boot_ns: hdr.ts_boot_ns,
        host_pid: hdr.host_pid,
        host_tid: hdr.host_tid,
        pid: hdr.pid,
        ppid: hdr.ppid,
        host_ppid: hdr.host_ppid,
        tid: hdr.tid,
        inner_pid: hdr.inner_pid,
        comm: escape_bytes(c_bytes(&hdr.comm)),
        cgroup_id: hdr.cgroup_id,
        cgroup_name: escape_bytes(c_bytes(&hdr.cgroup_name)),
        start_ns: hdr.start_ns,
        parent_start_ns: hdr.parent_start_ns,
        parent_in_target: hdr.flags & LINNIX_FLAG_PARENT_IN_TARGET != 0,
        uid: hdr.uid,
        gid: hdr.gid,
    }
}

fn exec_event(e: &linnix_exec_event) -> ExecEvent {
    // args_len comes from the kernel, but a garbled record must not index
    // past the buffer.
    let len = usize::try_from(e.args_len)
        .unwrap_or(usize::MAX)
        .min(LINNIX_ARGS_LEN as usize);
    let argc = usize::try_from(e.argc).unwrap_or(usize::MAX);
    let (argv, cut) = split_argv(as_bytes(&e.args[..len]), LINNIX_MAX_ARGS as usize, argc);
    let flags = e.hdr.flags;
    let filename_truncated = flags & LINNIX_FLAG_FILENAME_TRUNCATED != 0;
    ExecEvent {
        task: task(&e.hdr),
        filename: filename(&e.filename, e.filename_len, filename_truncated),
        filename_truncated,
        argv_truncated: flags & LINNIX_FLAG_ARGV_TRUNCATED != 0 || cut || argv.len() < argc,
        argv_empty: argc == 0 || (argc == 1 && argv == [""]),
        argv,
        privileges: Privileges {
            setuid: flags & LINNIX_FLAG_SETUID != 0,
            setgid: flags & LINNIX_FLAG_SETGID != 0,
            file_caps: flags & LINNIX_FLAG_FILE_CAPS != 0,
            secure_exec: flags & LINNIX_FLAG_SECUREEXEC != 0,
        },
    }
}

/// The executed file's name. One longer than the buffer arrives as its first
/// `LINNIX_FILENAME_HEAD` bytes and its last ones (see `read_filename()` in
/// `bpf/lifecycle/exec.c`), shown joined by `…`.
fn filename(buf: &[std::ffi::c_char], full_len: u32, truncated: bool) -> String {
    let bytes = as_bytes(buf);
    let kept = LINNIX_FILENAME_LEN as usize - 1;
    if !truncated || (full_len as usize) <= kept {
        return escape_bytes(c_bytes(buf));
    }
    let (head, tail) = bytes[..kept].split_at(LINNIX_FILENAME_HEAD as usize);
    format!("{}…{}", escape_bytes(head), escape_bytes(tail))
}

/// Split the NUL-separated argv area into at most `max` strings; `argc` (the
/// kernel's count) sizes the vector once. Returns whether strings were left
/// out.
fn split_argv(area: &[u8], max: usize, argc: usize) -> (Vec<String>, bool) {
    // Nothing at all: no arguments. Otherwise the area ends in the middle of
    // a string or right after a NUL, and only that final NUL's empty tail is
    // not an argument: "\0" is one empty argument.
    if area.is_empty() {
        return (Vec::new(), false);
    }
    let area = area.strip_suffix(&[0]).unwrap_or(area);
    let mut parts = area.split(|&b| b == 0);
    let mut argv = Vec::with_capacity(argc.min(max));
    argv.extend(parts.by_ref().take(max).map(escape_bytes));
    (argv, parts.next().is_some())
}

/// A C string from a fixed buffer: up to the first NUL, or the whole buffer.
pub(crate) fn c_bytes(buf: &[std::ffi::c_char]) -> &[u8] {
    let bytes = as_bytes(buf);
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// [`c_bytes`] as text, escaped.
pub(crate) fn c_string(buf: &[std::ffi::c_char]) -> String {
    escape_bytes(c_bytes(buf))
}

fn as_bytes(buf: &[std::ffi::c_char]) -> &[u8] {
    zerocopy::IntoBytes::as_bytes(buf)
}

#[cfg(test)]
mod tests;
