//! Own-cgroup discovery through BPF (see `bpf/linnix_self.bpf.c`).

use aya::maps::{Array, MapData};
use aya::programs::{RawTracePoint, RawTracePointRunOptions, TestRun};
use aya::EbpfLoader;
use zerocopy::FromBytes;

use crate::bindings::{linnix_self_cgroup, LINNIX_MAX_CGROUP_LEVELS};
use crate::decode::c_string;
use crate::error::{classify, require_btf_file};
use crate::{CgroupAncestor, CgroupPosition, TracerError};

static SELF_BPF: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linnix_self.bpf.o"));

const SELF_SIZE: usize = size_of::<linnix_self_cgroup>();

/// The cgroup v2 position of the calling thread, found through BPF so that it
/// works inside a private cgroup namespace where no parent is visible: the
/// thread's own cgroup and all its ancestors, root first, each with its
/// kernfs name (directory name), so the caller can check what its parent is
/// (a pod cgroup, or a host slice it must not trace).
pub fn own_cgroup_ancestors() -> Result<Vec<CgroupAncestor>, TracerError> {
    require_btf_file()?;
    // The loader parses kernel BTF for the CO-RE relocations and drops it
    // with itself at the end of this statement; nothing else needs it here.
    let mut ebpf = EbpfLoader::new()
        .load(SELF_BPF)
        .map_err(|e| classify("create the cgroup discovery map", &e))?;

    let program: &mut RawTracePoint = ebpf
        .program_mut("record_self_cgroup")
        .ok_or_else(|| TracerError::EmbeddedObject("program record_self_cgroup is missing".into()))?
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
        return Err(TracerError::OwnCgroupNotRecorded(
            "could not read the calling task's cgroup",
        ));
    }

    let map = ebpf
        .map("self_cgroup")
        .ok_or_else(|| TracerError::EmbeddedObject("map self_cgroup is missing".into()))?;
    let array: Array<&MapData, [u8; SELF_SIZE]> =
        Array::try_from(map).map_err(|e| classify("open the self_cgroup map", &e))?;
    let raw = array
        .get(&0, 0)
        .map_err(|e| classify("read the self_cgroup map", &e))?;
    let found = linnix_self_cgroup::read_from_bytes(&raw[..]).map_err(|_| {
        TracerError::EmbeddedObject("the self_cgroup value has another size".into())
    })?;
    ancestry(&found)
}

fn ancestry(found: &linnix_self_cgroup) -> Result<Vec<CgroupAncestor>, TracerError> {
    if found.valid != 1 {
        return Err(TracerError::OwnCgroupNotRecorded("did not record anything"));
    }
    // Level 0 is the v2 root: processes on a v1-only host all sit there.
    if found.level == 0 {
        return Err(TracerError::NoCgroupV2);
    }
    if found.level >= LINNIX_MAX_CGROUP_LEVELS {
        return Err(TracerError::CgroupTooDeep {
            level: found.level,
            max: LINNIX_MAX_CGROUP_LEVELS - 1,
        });
    }
    Ok(found
        .ids
        .iter()
        .zip(&found.names)
        .zip(0..=found.level)
        .map(|((&id, name), level)| CgroupAncestor {
            position: CgroupPosition { id, level },
            name: c_string(name),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::LINNIX_KERNFS_NAME_LEN;

    fn recorded(level: u32, names: &[&[u8]]) -> Box<linnix_self_cgroup> {
        let mut found = Box::new(linnix_self_cgroup {
            level,
            valid: 1,
            ..Default::default()
        });
        for (i, name) in names.iter().enumerate() {
            found.ids[i] = 100 + i as u64;
            for (dst, src) in found.names[i].iter_mut().zip(*name) {
                *dst = *src as std::ffi::c_char;
            }
        }
        found
    }

    #[test]
    fn ancestors_pair_ids_with_names_root_first() {
        let found = recorded(2, &[b"", b"kubepods.slice", b"cri-containerd-ab.scope"]);
        let ancestors = ancestry(&found).expect("ancestry");
        let view: Vec<(u32, u64, &str)> = ancestors
            .iter()
            .map(|a| (a.position.level, a.position.id, a.name.as_str()))
            .collect();
        assert_eq!(
            view,
            [
                (0, 100, ""),
                (1, 101, "kubepods.slice"),
                (2, 102, "cri-containerd-ab.scope")
            ]
        );
    }

    #[test]
    fn a_name_filling_its_buffer_is_kept_whole() {
        let long = [b'x'; LINNIX_KERNFS_NAME_LEN as usize];
        let found = recorded(1, &[b"", &long]);
        let ancestors = ancestry(&found).expect("ancestry");
        assert_eq!(ancestors[1].name.len(), LINNIX_KERNFS_NAME_LEN as usize);
    }

    #[test]
    fn root_level_nothing_recorded_and_too_deep_are_errors() {
        assert!(matches!(
            ancestry(&recorded(0, &[b""])),
            Err(TracerError::NoCgroupV2)
        ));
        let mut found = recorded(1, &[b"", b"a"]);
        found.valid = 0;
        assert!(matches!(
            ancestry(&found),
            Err(TracerError::OwnCgroupNotRecorded(_))
        ));
        let deep = recorded(LINNIX_MAX_CGROUP_LEVELS, &[]);
        assert!(matches!(
            ancestry(&deep),
            Err(TracerError::CgroupTooDeep { level: 64, max: 63 })
        ));
    }
}
