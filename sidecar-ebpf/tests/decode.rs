//! decode() on records that did not come from the kernel programs.

use linnix_ebpf::{decode, DecodeError};

#[test]
fn empty_and_short_records_are_errors() {
    for len in [0usize, 1, 3, 8, 100, 191] {
        let record = vec![0xa5u8; len];
        assert!(
            matches!(decode(&record), Err(DecodeError::TooShort(n)) if n == len),
            "{len} bytes"
        );
    }
}

#[test]
fn header_sized_record_of_each_kind_is_checked_against_its_full_size() {
    // A header alone is complete for a fork event, too short for the others.
    let mut record = vec![0u8; 192];
    for kind in 1u32..=5 {
        record[..4].copy_from_slice(&kind.to_ne_bytes());
        let result = decode(&record);
        if kind == 1 {
            assert!(result.is_ok(), "{result:?}");
        } else {
            assert!(
                matches!(result, Err(DecodeError::TooShort(192))),
                "kind {kind}: {result:?}"
            );
        }
    }
}

#[test]
fn unknown_kinds_are_errors() {
    let mut record = vec![0u8; 4096];
    for kind in [0u32, 1000, 0xffff_ffff] {
        record[..4].copy_from_slice(&kind.to_ne_bytes());
        assert!(matches!(decode(&record), Err(DecodeError::UnknownKind(k)) if k == kind));
    }
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
    for kind in 1u32..=5 {
        let mut record = bytes.clone();
        record[..4].copy_from_slice(&kind.to_ne_bytes());
        for len in 0..record.len() {
            let _ = decode(&record[..len]);
        }
    }
}
