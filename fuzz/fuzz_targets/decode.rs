//! Ring-buffer records through the tracer's decoder: any bytes give an event
//! or an error, never a panic. Records in the ring are 8-byte aligned, so the
//! bytes are copied into an aligned buffer to reach past the layout checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut aligned = vec![0u64; data.len().div_ceil(8)];
    let bytes: &mut [u8] = bytemuck_bytes(&mut aligned);
    bytes[..data.len()].copy_from_slice(data);
    let _ = linnix_ebpf::decode(&bytes[..data.len()]);
    // And unaligned, as a corrupt reader could pass it.
    let _ = linnix_ebpf::decode(data);
});

fn bytemuck_bytes(words: &mut [u64]) -> &mut [u8] {
    let len = std::mem::size_of_val(words);
    // SAFETY: u64 has no padding and any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), len) }
}
