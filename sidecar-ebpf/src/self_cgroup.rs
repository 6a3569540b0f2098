//! Own-cgroup discovery through BPF (see `bpf/linnix_self.bpf.c`).

use aya::maps::{Array, MapData};
use aya::programs::{RawTracePoint, RawTracePointRunOptions, TestRun};
use aya::EbpfLoader;
use zerocopy::FromBytes;

use crate::bindings::{linnix_self_cgroup, LINNIX_MAX_CGROUP_LEVELS};
use crate::error::{classify, require_btf_file};
use crate::{CgroupPosition, TracerError};

static SELF_BPF: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linnix_self.bpf.o"));

const SELF_SIZE: usize = size_of::<linnix_self_cgroup>();

/// The cgroup v2 position of the calling thread, found through BPF so that it
/// works inside a private cgroup namespace where no parent is visible.
/// Returns the calling thread's own cgroup and all its ancestors, root first.
pub fn own_cgroup_ancestry() -> Result<Vec<CgroupPosition>, TracerError> {
    require_btf_file()?;
    // The loader parses kernel BTF for the CO-RE relocations and drops it
    // with itself at the end of this statement; nothing else needs it here.
    let mut ebpf = EbpfLoader::new()
        .load(SELF_BPF)
        .map_err(|e| classify("create the cgroup discovery map", &e))?;

    let program: &mut RawTracePoint = ebpf
        .program_mut("record_self_cgroup")
        .ok_or_else(|| TracerError::Other("record_self_cgroup missing from the BPF object".into()))?
        .try_into()
        .map_err(|e| classify("look up the cgroup discovery program", &e))?;
    program
        .load()
        .map_err(|e| classify("load the cgroup discovery program", &e))?;
    // BPF_PROG_TEST_RUN runs the program synchronously on this thread.
    let run = program
        .test_run(RawTracePointRunOptions::new())
        .map_err(|e| classify("run the cgroup discovery program", &e))?;
    if run.return_value != 0 {
        return Err(TracerError::Other(
            "the cgroup discovery program could not read the calling task's cgroup".into(),
        ));
    }

    let map = ebpf
        .map("self_cgroup")
        .ok_or_else(|| TracerError::Other("self_cgroup map missing from the BPF object".into()))?;
    let array: Array<&MapData, [u8; SELF_SIZE]> =
        Array::try_from(map).map_err(|e| classify("open the self_cgroup map", &e))?;
    let raw = array
        .get(&0, 0)
        .map_err(|e| classify("read the self_cgroup map", &e))?;
    let found = linnix_self_cgroup::read_from_bytes(&raw[..])
        .map_err(|_| TracerError::Other("self_cgroup value has an unexpected size".into()))?;
    ancestry(&found)
}

fn ancestry(found: &linnix_self_cgroup) -> Result<Vec<CgroupPosition>, TracerError> {
    if found.valid != 1 {
        return Err(TracerError::Other(
            "the cgroup discovery program did not record anything".into(),
        ));
    }
    // Level 0 is the v2 root: processes on a v1-only host all sit there.
    if found.level == 0 {
        return Err(TracerError::NoCgroupV2);
    }
    if found.level >= LINNIX_MAX_CGROUP_LEVELS {
        return Err(TracerError::Other(format!(
            "the tracer's cgroup is nested {} levels deep; at most {} are supported",
            found.level,
            LINNIX_MAX_CGROUP_LEVELS - 1
        )));
    }
    Ok(found
        .ids
        .iter()
        .zip(0..=found.level)
        .map(|(&id, level)| CgroupPosition { id, level })
        .collect())
}
