//! Loading the lifecycle object (`bpf/linnix.bpf.c`): its load-time globals,
//! the programs for each tracepoint, and its maps.

use aya::maps::{Map, MapError};
use aya::programs::{BtfTracePoint, Iter, RawTracePoint, RawTracePointRunOptions, TestRun};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::error::classify;
use crate::memory;
use crate::{TracerConfig, TracerError};

static LINNIX_BPF: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linnix.bpf.o"));

/// BTF tracepoint → the programs in the object that can serve it, best
/// first: the first one this kernel's verifier accepts is attached.
pub(crate) const PROGRAMS: [(&str, &[&str]); 7] = [
    ("sched_process_fork", &["handle_fork"]),
    ("sched_process_exec", &["handle_exec"]),
    // The group_dead argument of the tracepoint is new; older kernels need
    // the live counter and a dedupe map.
    (
        "sched_process_exit",
        &["handle_exit_group_dead", "handle_exit"],
    ),
    ("mark_victim", &["handle_mark_victim"]),
    ("cgroup_rmdir", &["handle_cgroup_rmdir"]),
    ("mm_vmscan_memcg_reclaim_begin", &["handle_memcg_reclaim"]),
    ("cgroup_attach_task", &["handle_cgroup_attach"]),
];

/// Compares the credentials before and after an exec (sched_prepare_exec,
/// Linux 6.10); optional, unlike [`PROGRAMS`].
pub(crate) const PREPARE_EXEC_PROGRAM: &str = "handle_prepare_exec";

/// The object, loaded with its globals set; the maps exist, no program is
/// attached yet.
pub(crate) fn load_object(config: &TracerConfig) -> Result<Ebpf, TracerError> {
    let trace_threads = u32::from(config.trace_threads);
    let page_shift = page_shift(rustix::param::page_size())?;
    let interval_ns = u64::try_from(config.pressure.interval.as_nanos()).unwrap_or(u64::MAX);
    let threshold_pct = config.pressure.threshold_pct.min(100);
    let pidns_inum = own_pid_namespace();
    let mut ebpf = EbpfLoader::new()
        .override_global("target_cgroup_id", &config.target.id, true)
        .override_global("target_level", &config.target.level, true)
        .override_global("trace_threads", &trace_threads, true)
        .override_global("max_events_per_sec", &config.max_events_per_sec, true)
        .override_global("page_shift", &page_shift, true)
        .override_global("pressure_interval_ns", &interval_ns, true)
        .override_global("pressure_threshold_pct", &threshold_pct, true)
        .override_global("target_pidns_inum", &pidns_inum, true)
        // The members task storage is only used by the programs: aya has no
        // user-space type for it, and none is needed.
        .allow_unsupported_maps()
        .load(LINNIX_BPF)
        .map_err(|e| classify("create the tracer's BPF maps", &e))?;
    if pidns_inum != 0 {
        record_pid_namespace(&mut ebpf)?;
    }
    Ok(ebpf)
}

/// Let the programs know the level of the loader's PID namespace, which only
/// the kernel can tell: `record_pidns` (`bpf/lifecycle/pidns.c`), run once
/// in this thread's context with BPF_PROG_TEST_RUN, stores it in a global.
fn record_pid_namespace(ebpf: &mut Ebpf) -> Result<(), TracerError> {
    let program: &mut RawTracePoint = ebpf
        .program_mut("record_pidns")
        .ok_or_else(|| missing("program record_pidns"))?
        .try_into()
        .map_err(|e| classify("look up the BPF program record_pidns", &e))?;
    program
        .load()
        .map_err(|e| classify("load the PID namespace program", &e))?;
    let run = program
        .test_run(RawTracePointRunOptions::new())
        .map_err(|e| classify("run the PID namespace program", &e))?;
    if run.return_value != 0 {
        return Err(TracerError::Bpf {
            action: "find the tracer's PID namespace".into(),
            detail: "the namespace /proc/self/ns/pid names is not the calling thread's".into(),
        });
    }
    Ok(())
}

/// Inode number of the caller's PID namespace, whose numbers the events
/// carry: the tracer's, which in a pod is the pod's. 0 (each task's own
/// innermost namespace) where /proc cannot say, with a warning.
fn own_pid_namespace() -> u32 {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self/ns/pid") {
        Ok(meta) => u32::try_from(meta.ino()).unwrap_or(0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the own PID namespace; pids are numbered in each process's innermost namespace");
            0
        }
    }
}

/// log2 of the kernel's page size, which the OOM program needs to turn page
/// counts into bytes: 4 KiB on x86-64, 4, 16 or 64 KiB on arm64.
fn page_shift(page_size: usize) -> Result<u32, TracerError> {
    // The program converts pages to KiB with a shift by page_shift - 10.
    if page_size.is_power_of_two() && page_size >= 1024 {
        Ok(page_size.trailing_zeros())
    } else {
        Err(TracerError::UnsupportedPageSize(page_size))
    }
}

/// Attach the first of `candidates` that loads; the error of the last one
/// otherwise.
pub(crate) fn attach_first(
    ebpf: &mut Ebpf,
    btf: &Btf,
    candidates: &[&str],
    tracepoint: &str,
) -> Result<(), TracerError> {
    let mut result = Err(missing(&format!("a program for {tracepoint}")));
    for name in candidates {
        result = attach(ebpf, btf, name, tracepoint);
        match &result {
            Ok(()) => break,
            Err(e) => tracing::debug!(program = name, error = %e, "trying the next program"),
        }
    }
    result
}

fn attach(ebpf: &mut Ebpf, btf: &Btf, name: &str, tracepoint: &str) -> Result<(), TracerError> {
    let program: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| missing(&format!("program {name}")))?
        .try_into()
        .map_err(|e| classify(&format!("look up the BPF program {name}"), &e))?;
    program
        .load(tracepoint, btf)
        .map_err(|e| classify(&format!("load the BPF program for {tracepoint}"), &e))?;
    program
        .attach()
        .map_err(|e| classify(&format!("attach the BPF program to {tracepoint}"), &e))?;
    Ok(())
}

/// The memory sampler is an iterator: loaded now, run by each sample.
pub(crate) fn load_sampler(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), TracerError> {
    let program: &mut Iter = ebpf
        .program_mut(memory::SAMPLE_PROGRAM)
        .ok_or_else(|| missing(&format!("program {}", memory::SAMPLE_PROGRAM)))?
        .try_into()
        .map_err(|e| classify("look up the memory sampling program", &e))?;
    program
        .load(memory::SAMPLE_ITER, btf)
        .map_err(|e| classify("load the memory sampling program", &e))
}

/// The object's map `name`, typed (ring buffer, array, ...).
pub(crate) fn take_map<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, TracerError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| missing(&format!("map {name}")))?;
    T::try_from(map).map_err(|e| classify(&format!("open the {name} map"), &e))
}

pub(crate) fn missing(what: &str) -> TracerError {
    TracerError::EmbeddedObject(format!("{what} is missing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_shift_follows_the_page_size() {
        assert_eq!(page_shift(4096).unwrap(), 12);
        assert_eq!(page_shift(16 * 1024).unwrap(), 14);
        assert_eq!(page_shift(64 * 1024).unwrap(), 16);
        let here = rustix::param::page_size();
        assert_eq!(1 << page_shift(here).unwrap(), here);
        for bad in [0, 512, 3000, 4097] {
            assert!(
                matches!(page_shift(bad), Err(TracerError::UnsupportedPageSize(n)) if n == bad),
                "{bad}"
            );
        }
    }
}
