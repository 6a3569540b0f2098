//! Handing back what start-up used and the event loop does not.
//!
//! Loading parses the kernel's whole BTF: tens of MiB of heap, freed again,
//! and the code of the ELF, BTF and argument parsers, run once. The kernel
//! maps a binary's pages 64 KiB around each one touched, so that code stays
//! in the resident set though the event loop never runs it again. Before the
//! loop starts the heap is trimmed and the executable's untouched read-only
//! mappings are dropped from the page tables (`MADV_DONTNEED`): the pages
//! stay in the page cache, shared by every tracer on the node, and what the
//! loop runs faults back in from there. Up to 0.8 MiB less RSS, most of it
//! while the tracer is idle (`scripts/bench-node.py`).
//!
//! The parse itself runs on a thread of its own ([`off_main_heap`]), so that
//! its holes are left in another heap than the one the event loop uses.

use std::fs;
use std::io;
use std::path::Path;

use tracing::debug;

/// A mapping whose pages can be dropped and faulted back in unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanMapping {
    pub start: usize,
    pub len: usize,
}

/// Trim the heap and drop the executable's clean read-only pages.
pub fn release_startup_memory() {
    trim_heap();
    match drop_clean_pages() {
        Ok(bytes) => debug!(kib = bytes / 1024, "start-up pages released"),
        Err(e) => debug!(error = %e, "cannot release the start-up pages"),
    }
}

/// Stack of the start-up thread: the size of a main thread's, so that the
/// work needs no more care there than on the main thread. Only the pages
/// used become memory, and they go when the thread ends.
const STARTUP_STACK: usize = 8 << 20;

/// Run `work` (loading the programs: the kernel's BTF parsed and dropped)
/// on a thread of its own and return its result; the calling thread waits.
///
/// glibc gives a new thread its own heap (arena). The tens of MiB the parse
/// takes and frees then come and go in that heap, and the event loop's
/// allocations stay packed in the main one instead of spreading into the
/// holes the parse left there, each hole it touches another resident page:
/// about 0.4 MiB less RSS once events and scrapes have flowed. What `work`
/// returns (maps, links, a few hundred KiB) stays where it was allocated.
///
/// The caller's tracing span goes along, so what `work` logs is labelled as
/// before. Where no thread can be started, `work` runs here.
pub fn off_main_heap<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let span = tracing::Span::current();
    let mut work = Some(work);
    let result = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("linnix-startup".into())
            .stack_size(STARTUP_STACK)
            .spawn_scoped(scope, || {
                let _span = span.enter();
                work.take().map(|work| work())
            });
        match spawned {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => {
                debug!(error = %e, "cannot start a thread for start-up; running it here");
                None
            }
        }
    });
    match (result, work) {
        (Some(done), _) => done,
        (None, Some(work)) => work(),
        // The thread took the work and returned it done, or panicked.
        (None, None) => unreachable!("the start-up thread returned nothing"),
    }
}

fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn drop_clean_pages() -> io::Result<usize> {
    let exe = fs::read_link("/proc/self/exe")?;
    let smaps = fs::read_to_string("/proc/self/smaps")?;
    let mut dropped = 0;
    for mapping in clean_mappings(&smaps, &exe) {
        // SAFETY: the range is a private, read-only mapping of the executable
        // file without a single anonymous (copied-on-write) page, as the
        // kernel just listed it: nothing in it differs from the file, so
        // dropping the pages loses nothing; the next access reads them from
        // the page cache again. Nothing can write to it meanwhile.
        let rc =
            unsafe { libc::madvise(mapping.start as *mut _, mapping.len, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        dropped += mapping.len;
    }
    Ok(dropped)
}

/// The mappings of `exe` in `/proc/self/smaps` text that are private and
/// read-only (code and constants) and hold no anonymous page. The writable
/// data, and the relocated read-only data (RELRO: written at start, then
/// made read-only, so its pages are anonymous copies), are left alone.
pub fn clean_mappings(smaps: &str, exe: &Path) -> Vec<CleanMapping> {
    let mut out = Vec::new();
    let mut current: Option<CleanMapping> = None;
    for line in smaps.lines() {
        if let Some(mapping) = parse_header(line, exe) {
            if let Some(done) = current.take() {
                out.push(done);
            }
            current = mapping;
            continue;
        }
        if let Some(kib) = line.strip_prefix("Anonymous:") {
            let has_anon = kib.trim().trim_end_matches("kB").trim() != "0";
            if has_anon {
                current = None;
            }
        }
    }
    out.extend(current);
    out
}

/// `Some(None)` for a header line of any other mapping, `Some(Some(_))` for
/// a candidate, `None` for a field line.
fn parse_header(line: &str, exe: &Path) -> Option<Option<CleanMapping>> {
    let (range, rest) = next_field(line)?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let (perms, mut rest) = next_field(rest)?;
    // offset, device, inode; the path is the rest of the line
    for _ in 0..3 {
        rest = next_field(rest).map_or("", |(_, r)| r);
    }
    let path = rest.trim();
    let candidate = matches!(perms, "r-xp" | "r--p") && Path::new(path) == exe && end > start;
    Some(candidate.then_some(CleanMapping {
        start,
        len: end - start,
    }))
}

/// The first space-separated field of `s` and what follows it.
fn next_field(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(' ');
    let end = s.find(' ').unwrap_or(s.len());
    (end > 0).then(|| (&s[..end], &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
7f0172a00000-7f0172bee000 r--p 00000000 fd:01 1234 /usr/bin/linnix-sidecar
Size:               1976 kB
Rss:                1216 kB
Anonymous:             0 kB
7f0172bef000-7f0173366000 r-xp 001ef000 fd:01 1234 /usr/bin/linnix-sidecar
Size:               7644 kB
Anonymous:             0 kB
7f0173366000-7f01733a9000 r--p 00966000 fd:01 1234 /usr/bin/linnix-sidecar
Size:                268 kB
Anonymous:           268 kB
7f01733a9000-7f01733ae000 rw-p 009a9000 fd:01 1234 /usr/bin/linnix-sidecar
Anonymous:            20 kB
7f01733ae000-7f01733b4000 rw-p 00000000 00:00 0
Anonymous:            24 kB
7f017341c000-7f017351d000 r--s 00000000 00:0f 1039 anon_inode:bpf-map
Anonymous:             0 kB
7f0173600000-7f0173700000 r-xp 00000000 fd:01 99 /usr/lib/other.so
Anonymous:             0 kB
7f0173800000-7f0173801000 r-xp 00000000 fd:01 1235 /usr/bin/linnix-sidecar (deleted)
Anonymous:             0 kB
";

    #[test]
    fn only_the_executables_untouched_read_only_mappings() {
        let found = clean_mappings(SMAPS, Path::new("/usr/bin/linnix-sidecar"));
        assert_eq!(
            found,
            [
                CleanMapping {
                    start: 0x7f0172a00000,
                    len: 0x1ee000
                },
                CleanMapping {
                    start: 0x7f0172bef000,
                    len: 0x777000
                },
            ]
        );
    }

    #[test]
    fn a_path_with_spaces_is_matched_whole() {
        let smaps =
            "1000-3000 r-xp 00000000 fd:01 7 /opt/my tools/linnix-sidecar\nAnonymous: 0 kB\n";
        let found = clean_mappings(smaps, Path::new("/opt/my tools/linnix-sidecar"));
        assert_eq!(
            found,
            [CleanMapping {
                start: 0x1000,
                len: 0x2000
            }]
        );
        assert!(clean_mappings(smaps, Path::new("/opt/my")).is_empty());
    }

    #[test]
    fn a_mapping_without_an_anonymous_line_is_kept_and_garbage_is_ignored() {
        let smaps = "garbage\n1000-2000 r--p 0 fd:01 7 /x\nRss: 4 kB\nzz-yy r--p 0 0 0 /x\n";
        let found = clean_mappings(smaps, Path::new("/x"));
        assert_eq!(
            found,
            [CleanMapping {
                start: 0x1000,
                len: 0x1000
            }]
        );
        assert!(clean_mappings("", Path::new("/x")).is_empty());
    }

    #[test]
    fn start_up_work_runs_on_its_own_thread_and_hands_back_its_result() {
        let caller = std::thread::current().id();
        let (name, id, data) = off_main_heap(|| {
            let me = std::thread::current();
            (me.name().map(str::to_owned), me.id(), vec![7u8; 1 << 20])
        });
        assert_eq!(name.as_deref(), Some("linnix-startup"));
        assert_ne!(id, caller);
        assert_eq!(data.len(), 1 << 20);
        assert!(data.iter().all(|&b| b == 7));
    }

    #[test]
    fn a_panic_in_start_up_work_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| off_main_heap(|| panic!("load failed")));
        let panic = caught.expect_err("the panic is passed on");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"load failed"));
    }

    /// Against this test process's own mappings: what is dropped reads back
    /// the same, and the process runs on.
    #[test]
    fn dropping_the_pages_of_the_running_test_binary_is_harmless() {
        let exe = fs::read_link("/proc/self/exe").expect("exe");
        let smaps = fs::read_to_string("/proc/self/smaps").expect("smaps");
        let found = clean_mappings(&smaps, &exe);
        assert!(!found.is_empty(), "the test binary has read-only mappings");
        let first = found[0];
        // SAFETY: reads within a mapping the kernel listed as readable.
        let before: Vec<u8> =
            unsafe { std::slice::from_raw_parts(first.start as *const u8, 4096) }.to_vec();
        assert!(drop_clean_pages().expect("madvise") >= first.len);
        // SAFETY: as above; the pages fault back in from the file.
        let after = unsafe { std::slice::from_raw_parts(first.start as *const u8, 4096) };
        assert_eq!(before, after);
    }
}
