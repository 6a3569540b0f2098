//! The processes already running in the traced cgroup, from the task
//! iterator `dump_task` (`bpf/lifecycle/present.c`).
//!
//! A task iterator walks the kernel's own task list, so a process is seen
//! with the numbers, identity and container the kernel events give it
//! (unlike /proc, which a pod's PID namespace renumbers and hides host pids
//! from), and the iterator marks it a member of the pod for the cgroup
//! program.

use std::io::Read;

use aya::programs::Iter;
use aya::{Btf, Ebpf};

use crate::bindings::linnix_present_event;
use crate::decode::decode;
use crate::error::classify;
use crate::load::missing;
use crate::{Event, TracerError};

const PROGRAM: &str = "dump_task";
const RECORD: usize = size_of::<linnix_present_event>();

/// Load the iterator program; it needs kernel BTF, which `scan` does not.
pub(crate) fn load(ebpf: &mut Ebpf, btf: &Btf) -> Result<(), TracerError> {
    program(ebpf)?
        .load("task", btf)
        .map_err(|e| classify("load the task iterator", &e))
}

/// Run the iterator once and hand each process to `sink`.
pub(crate) fn scan(ebpf: &mut Ebpf, sink: &mut dyn FnMut(Event)) -> Result<usize, TracerError> {
    let iter = program(ebpf)?;
    let link = iter
        .attach()
        .map_err(|e| classify("attach the task iterator", &e))?;
    let link = iter
        .take_link(link)
        .map_err(|e| classify("take the task iterator's link", &e))?;
    let mut file = link
        .into_file()
        .map_err(|e| classify("open the task iterator", &e))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| classify("read the task iterator", &e))?;
    Ok(split(&bytes, sink))
}

/// The iterator's output is whole records back to back; a record that does
/// not decode is skipped with a warning, like one from the ring.
fn split(bytes: &[u8], sink: &mut dyn FnMut(Event)) -> usize {
    let mut count = 0;
    for record in bytes.chunks(RECORD) {
        match decode(record) {
            Ok(event @ Event::Present(_)) => {
                sink(event);
                count += 1;
            }
            Ok(other) => tracing::warn!(?other, "unexpected record from the task iterator"),
            Err(e) => tracing::warn!(error = %e, "skipping an undecodable task iterator record"),
        }
    }
    count
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Iter, TracerError> {
    ebpf.program_mut(PROGRAM)
        .ok_or_else(|| missing(&format!("program {PROGRAM}")))?
        .try_into()
        .map_err(|e| classify(&format!("look up the BPF program {PROGRAM}"), &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::{linnix_event_header, LINNIX_EVENT_EXIT, LINNIX_EVENT_PRESENT};
    use zerocopy::IntoBytes;

    fn record(kind: u32, host_pid: u32) -> linnix_present_event {
        linnix_present_event {
            hdr: linnix_event_header {
                kind,
                host_pid,
                ..Default::default()
            },
        }
    }

    #[test]
    fn records_back_to_back_each_become_an_event() {
        let mut bytes = Vec::new();
        for pid in [10, 11, 12] {
            bytes.extend_from_slice(record(LINNIX_EVENT_PRESENT, pid).as_bytes());
        }
        // Not a present record, and a torn one at the end: both skipped.
        bytes.extend_from_slice(record(LINNIX_EVENT_EXIT, 13).as_bytes());
        bytes.extend_from_slice(&record(LINNIX_EVENT_PRESENT, 14).as_bytes()[..RECORD / 2]);
        let mut pids = Vec::new();
        let n = split(&bytes, &mut |e| pids.extend(e.task().map(|t| t.host_pid)));
        assert_eq!(n, 3);
        assert_eq!(pids, [10, 11, 12]);
    }
}
