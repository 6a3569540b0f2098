//! decode() on records that did not come from the kernel programs.

use linnix_ebpf::{decode, DecodeError};

/// Size of the event header every record starts with.
const HEADER: usize = 224;

#[test]
fn empty_and_short_records_are_errors() {
    for len in [0usize, 1, 3, 8, 100, HEADER - 1] {
        let record = vec![0xa5u8; len];
        assert!(
            matches!(decode(&record), Err(DecodeError::TooShort(n)) if n == len),
            "{len} bytes"
        );
    }
}

#[test]
fn header_sized_record_of_each_kind_is_checked_against_its_full_size() {
    // A header alone is complete for a present and a cgroup removal
    // record, too short for the others.
    let mut record = vec![0u8; HEADER];
    for kind in (1u32..=7).chain([32, 33]) {
        record[..4].copy_from_slice(&kind.to_ne_bytes());
        let result = decode(&record);
        if kind == 7 || kind == 33 {
            assert!(result.is_ok(), "{result:?}");
        } else {
            assert!(
                matches!(result, Err(DecodeError::TooShort(HEADER))),
                "kind {kind}: {result:?}"
            );
        }
    }
}

#[test]
fn unknown_kinds_are_errors() {
    let mut record = vec![0u8; 4096];
    for kind in [0u32, 8, 31, 34, 1000, 0xffff_ffff] {
        record[..4].copy_from_slice(&kind.to_ne_bytes());
        assert!(matches!(decode(&record), Err(DecodeError::UnknownKind(k)) if k == kind));
    }
}

#[test]
fn a_cgroup_record_with_an_unknown_change_is_an_error() {
    // The change sits after the header and the 8-byte from_cgroup_id.
    let mut record = vec![0u8; HEADER + 16];
    record[..4].copy_from_slice(&6u32.to_ne_bytes());
    record[HEADER + 8..HEADER + 12].copy_from_slice(&9u32.to_ne_bytes());
    assert!(matches!(
        decode(&record),
        Err(DecodeError::UnknownCgroupChange(9))
    ));
}

#[test]
fn garbage_of_every_length_never_panics() {
    // A cheap deterministic byte stream (xorshift), cut at every length and
    // given each valid kind.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..2048)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    for kind in (1u32..=7).chain([32, 33]) {
        let mut record = bytes.clone();
        record[..4].copy_from_slice(&kind.to_ne_bytes());
        for len in 0..record.len() {
            let _ = decode(&record[..len]);
        }
    }
}
