//! The per-container memory samples: the output of the `sample_memory` task
//! iterator (`bpf/lifecycle/memory.c`) and the pressure totals the kernel
//! keeps in the `memcg_pressure` map.
//!
//! An iterator runs only when read: each sample creates a fresh iterator
//! from the loaded program, reads it to the end (the kernel then runs the
//! end-of-pass step that checks the threshold) and drops it. Nothing runs in
//! the kernel between samples.

use std::fs::File;
use std::io::{self, Read};

use aya::maps::{HashMap, MapData};
use aya::programs::Iter;
use aya::Ebpf;
use zerocopy::FromBytes;

use crate::bindings::{
    linnix_memcg_pressure, linnix_memcg_sample, LINNIX_MEMCG_EVENT_HIGH, LINNIX_MEMCG_EVENT_MAX,
    LINNIX_MEMCG_EVENT_OOM, LINNIX_MEMCG_EVENT_OOM_KILL, LINNIX_SAMPLE_EVENTS_KNOWN,
};
use crate::decode::{c_string, limit};
use crate::error::classify;
use crate::load::missing;
use crate::{DecodeError, TracerError};

/// The counters behind a memory cgroup's `memory.events`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemcgEvents {
    /// Times usage was over `memory.high` and reclaim was forced.
    pub high: u64,
    /// Times usage was about to go over `memory.max` and reclaim ran.
    pub max: u64,
    /// Times the OOM killer was invoked for the memcg.
    pub oom: u64,
    /// Processes of the memcg the OOM killer killed.
    pub oom_kill: u64,
}

/// One container's memory, read by the kernel's sampling pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemorySample {
    /// Container-level cgroup, as [`crate::Task::cgroup_id`].
    pub cgroup_id: u64,
    /// Its kernfs name, as [`crate::Task::cgroup_name`].
    pub cgroup_name: String,
    /// The memory cgroup's id (the v1 one on hybrid hosts).
    pub memcg_id: u64,
    pub usage_bytes: u64,
    /// `memory.max` (v1: `memory.limit_in_bytes`); `None` without a limit.
    pub limit_bytes: Option<u64>,
    /// `memory.high`; `None` when unset.
    pub high_bytes: Option<u64>,
    /// `None` where the kernel does not keep them.
    pub events: Option<MemcgEvents>,
    /// Pressure occurrences since the tracer started, by reason (indexed
    /// like [`crate::PressureReason::ALL`]), events or not.
    pub pressure: [u64; 3],
}

/// One pass of the kernel's memory sampler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryPass {
    /// Every container of the target that has processes.
    pub samples: Vec<MemorySample>,
    /// Containers that had pressure and no longer have processes, as
    /// (cgroup id, [`MemorySample::pressure`]): what happened in their last
    /// moments is counted once more, after the pass that found them gone.
    pub gone: Vec<(u64, [u64; 3])>,
}

/// The iterator program in the lifecycle object.
pub(crate) const SAMPLE_PROGRAM: &str = "sample_memory";
/// Its kernel iterator type (`bpf_iter_task`).
pub(crate) const SAMPLE_ITER: &str = "task";
/// The map of per-container pressure state.
pub(crate) const PRESSURE_MAP: &str = "memcg_pressure";

// SAFETY: a plain C struct of integers (bindgen, see build.rs), with no
// padding: zerocopy's IntoBytes derive proves it.
unsafe impl aya::Pod for linnix_memcg_pressure {}

pub(crate) type PressureMap = HashMap<MapData, u64, linnix_memcg_pressure>;

/// Run one sampling pass: every container of the target with processes,
/// with its pressure totals, and the totals of those gone.
pub(crate) fn sample(ebpf: &mut Ebpf, pressure: &PressureMap) -> Result<MemoryPass, TracerError> {
    let program: &mut Iter = ebpf
        .program_mut(SAMPLE_PROGRAM)
        .ok_or_else(|| missing(&format!("program {SAMPLE_PROGRAM}")))?
        .try_into()
        .map_err(|e| classify("use the memory sampling program", &e))?;
    let link = program
        .attach()
        .and_then(|id| program.take_link(id))
        .map_err(|e| classify("start a memory sampling pass", &e))?;
    let mut file = link
        .into_file()
        .map_err(|e| classify("open a memory sampling pass", &e))?;
    let out = read_to_end(&mut file).map_err(TracerError::MemorySampleRead)?;
    let mut pass = MemoryPass {
        samples: parse_samples(&out).map_err(TracerError::MemorySampleFormat)?,
        gone: Vec::new(),
    };
    // A container without state had no pressure; one whose entry vanishes
    // between the iteration and here was pruned: nothing new to count.
    for (cgroup_id, state) in pressure.iter().flatten() {
        match pass.samples.iter_mut().find(|s| s.cgroup_id == cgroup_id) {
            Some(sample) => sample.pressure = state.total,
            None => pass.gone.push((cgroup_id, state.total)),
        }
    }
    Ok(pass)
}

/// Iterator output, read in large chunks: each read runs the program over
/// as many tasks as fit.
fn read_to_end(file: &mut File) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Records of one pass, in the order containers were first found. The pass
/// writes a container again when it finds a shallower memory cgroup of it
/// (see the program); the last record of a container is the one to keep.
pub(crate) fn parse_samples(out: &[u8]) -> Result<Vec<MemorySample>, DecodeError> {
    let size = size_of::<linnix_memcg_sample>();
    if !out.len().is_multiple_of(size) {
        return Err(DecodeError::PartialSample(out.len()));
    }
    let mut samples: Vec<MemorySample> = Vec::new();
    for record in out.chunks_exact(size) {
        let raw = linnix_memcg_sample::read_from_bytes(record)
            .map_err(|_| DecodeError::PartialSample(out.len()))?;
        let sample = from_raw(&raw);
        match samples.iter_mut().find(|s| s.cgroup_id == sample.cgroup_id) {
            Some(known) => *known = sample,
            None => samples.push(sample),
        }
    }
    Ok(samples)
}

fn from_raw(raw: &linnix_memcg_sample) -> MemorySample {
    let event = |i: u32| raw.events[i as usize];
    MemorySample {
        cgroup_id: raw.cgroup_id,
        cgroup_name: c_string(&raw.cgroup_name),
        memcg_id: raw.memcg_id,
        usage_bytes: raw.usage_bytes,
        limit_bytes: limit(raw.limit_bytes),
        high_bytes: limit(raw.high_bytes),
        events: (raw.flags & LINNIX_SAMPLE_EVENTS_KNOWN != 0).then(|| MemcgEvents {
            high: event(LINNIX_MEMCG_EVENT_HIGH),
            max: event(LINNIX_MEMCG_EVENT_MAX),
            oom: event(LINNIX_MEMCG_EVENT_OOM),
            oom_kill: event(LINNIX_MEMCG_EVENT_OOM_KILL),
        }),
        pressure: [0; 3],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    fn raw(cgroup_id: u64, level: u32, usage: u64, name: &str) -> linnix_memcg_sample {
        let mut s = linnix_memcg_sample {
            cgroup_id,
            memcg_id: 1000 + u64::from(level),
            memcg_level: level,
            flags: LINNIX_SAMPLE_EVENTS_KNOWN,
            usage_bytes: usage,
            limit_bytes: 64 << 20,
            high_bytes: u64::MAX,
            ..Default::default()
        };
        s.events = [1, 2, 3, 4];
        for (dst, src) in s.cgroup_name.iter_mut().zip(name.bytes()) {
            *dst = src as std::ffi::c_char;
        }
        s
    }

    #[test]
    fn the_last_record_of_a_container_wins_and_order_is_kept() {
        let mut out = Vec::new();
        for r in [
            raw(7, 3, 100, "app"),
            raw(9, 2, 200, "db"),
            raw(7, 2, 300, "app"),
        ] {
            out.extend_from_slice(r.as_bytes());
        }
        let samples = parse_samples(&out).expect("parse");
        assert_eq!(samples.len(), 2);
        assert_eq!(
            (
                samples[0].cgroup_id,
                samples[0].usage_bytes,
                samples[0].memcg_id
            ),
            (7, 300, 1002)
        );
        assert_eq!(samples[0].cgroup_name, "app");
        assert_eq!(samples[1].cgroup_name, "db");
        assert_eq!(samples[0].limit_bytes, Some(64 << 20));
        assert_eq!(samples[0].high_bytes, None);
        assert_eq!(
            samples[0].events,
            Some(MemcgEvents {
                high: 1,
                max: 2,
                oom: 3,
                oom_kill: 4
            })
        );
    }

    #[test]
    fn events_are_unknown_without_the_flag_and_no_limit_is_none() {
        let mut r = raw(1, 1, 5, "x");
        r.flags = 0;
        r.limit_bytes = u64::MAX;
        let samples = parse_samples(r.as_bytes()).expect("parse");
        assert_eq!(samples[0].events, None);
        assert_eq!(samples[0].limit_bytes, None);
    }

    #[test]
    fn empty_output_is_no_container_and_a_cut_record_is_an_error() {
        assert!(parse_samples(&[]).expect("empty").is_empty());
        let r = raw(1, 1, 5, "x");
        let bytes = r.as_bytes();
        for len in [1, bytes.len() - 1, bytes.len() + 1] {
            let mut out = bytes.to_vec();
            out.resize(len, 0);
            assert!(
                matches!(parse_samples(&out), Err(DecodeError::PartialSample(n)) if n == len),
                "{len}"
            );
        }
    }
}
