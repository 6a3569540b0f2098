//! Loading, attaching and reading the lifecycle programs (`bpf/linnix.bpf.c`).

use std::io;
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use aya::maps::{Array, Map, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::bindings::{
    linnix_fork_event, LINNIX_READER_ASLEEP, LINNIX_RING_BYTES, LINNIX_STAT_LOST,
    LINNIX_STAT_RATE_LIMITED,
};
use crate::decode::decode;
use crate::error::{classify, parse_btf, require_btf_file};
use crate::poll_timer::PollTimer;
use crate::present;
use crate::reader::{self, Effect, Found, Input, State, Wait};
use crate::{Event, KernelStats, TracerConfig, TracerError};

static LINNIX_BPF: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/linnix.bpf.o"));

/// BTF tracepoint → the programs in the object that can serve it, best
/// first: the first one this kernel's verifier accepts is attached.
const PROGRAMS: [(&str, &[&str]); 5] = [
    ("sched_process_fork", &["handle_fork"]),
    ("sched_process_exec", &["handle_exec"]),
    // The group_dead argument of the tracepoint is new; older kernels need
    // the live counter and a dedupe map.
    (
        "sched_process_exit",
        &["handle_exit_group_dead", "handle_exit"],
    ),
    ("mark_victim", &["handle_mark_victim"]),
    ("cgroup_attach_task", &["handle_cgroup_attach"]),
];

/// Most records one drain consumes: what a full ring holds of the smallest
/// record (a fork event plus the kernel's 8-byte record header). One call then
/// empties whatever was in the ring when it started, yet returns under a
/// sustained flood, where the ring never runs empty, so the caller's other
/// work (signals, stats, shutdown) is not starved. The next call continues.
const MAX_RECORDS_PER_DRAIN: usize =
    LINNIX_RING_BYTES as usize / (size_of::<linnix_fork_event>() + 8);

/// While events flow the reader looks at the ring this often (see
/// [`crate::reader`]). Bounds the kernel-to-stdout latency.
const POLL_INTERVAL: Duration = Duration::from_micros(500);

/// Loaded and attached programs plus the ring buffer they write to.
pub struct Tracer {
    ring: AsyncFd<RingBuf<MapData>>,
    reader_state: Array<MapData, u32>,
    timer: PollTimer,
    state: State,
    stats: PerCpuArray<MapData, u64>,
    attached: usize,
    // Owns the programs and their links: dropping it detaches everything.
    ebpf: Ebpf,
}

impl Tracer {
    /// Load the object, set the filter, attach every program.
    ///
    /// Must be called inside a Tokio runtime with I/O enabled: the ring
    /// buffer is registered with its reactor.
    pub fn load(config: &TracerConfig) -> Result<Tracer, TracerError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TracerError::Other(
                "Tracer::load must be called inside a Tokio runtime".into(),
            ));
        }
        // Kernel BTF costs tens of MiB parsed. The loader parses and drops its
        // own copy inside load_object(); the attach ids need a second parse,
        // done only after that, so at most one copy is alive at a time.
        require_btf_file()?;
        let mut ebpf = load_object(config)?;
        let btf = parse_btf()?;
        let mut attached = 0;
        for (tracepoint, candidates) in PROGRAMS {
            attach_first(&mut ebpf, &btf, candidates, tracepoint)?;
            attached += 1;
        }
        present::load(&mut ebpf, &btf)?;
        drop(btf);

        let ring: RingBuf<MapData> = take_map(&mut ebpf, "events")?;
        // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
        // for as long as the AsyncFd that owns the RingBuf.
        let ring =
            unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| {
                TracerError::Other(format!("cannot poll the events ring buffer: {}", e))
            })?;
        let reader_state = take_map(&mut ebpf, "reader_state")?;
        let timer = PollTimer::new()
            .and_then(|timer| timer.start(POLL_INTERVAL).map(|()| timer))
            .map_err(|e| TracerError::Other(format!("cannot create the poll timer: {e}")))?;
        let stats = take_map(&mut ebpf, "stats")?;

        tracing::debug!(
            target_id = config.target.id,
            target_level = config.target.level,
            trace_threads = config.trace_threads,
            max_events_per_sec = config.max_events_per_sec,
            "BPF programs attached"
        );
        Ok(Tracer {
            ring,
            reader_state,
            timer,
            state: State::Polling { empty: 0 },
            stats,
            attached,
            ebpf,
        })
    }

    /// Wait until the ring buffer has data, then hand its records to `sink`:
    /// at most one ring's worth per call (see [`MAX_RECORDS_PER_DRAIN`]); the
    /// next call continues at once with what is left. Returns once records
    /// went to the sink, so that the caller can write them out.
    ///
    /// Cancel-safe: every state change happens between two awaits.
    pub async fn next_batch(&mut self, sink: &mut dyn FnMut(Event)) -> io::Result<()> {
        loop {
            let input = match self.state.wait() {
                Wait::Tick => {
                    self.timer.tick().await?;
                    self.look(sink)
                }
                Wait::Nothing => self.look(sink),
                Wait::Wakeup => {
                    self.ring.readable_mut().await?.clear_ready();
                    Input::Woken
                }
            };
            if self.advance(input)? {
                return Ok(());
            }
        }
    }

    fn look(&mut self, sink: &mut dyn FnMut(Event)) -> Input {
        let consumed = drain_ring(self.ring.get_mut(), sink, MAX_RECORDS_PER_DRAIN).consumed;
        Input::Looked(Found::of(consumed, MAX_RECORDS_PER_DRAIN))
    }

    /// Take the transition for `input` and carry out its effect. True when
    /// the batch ends.
    fn advance(&mut self, input: Input) -> io::Result<bool> {
        let mut step = reader::step(self.state, input);
        match step.effect {
            Effect::None => {}
            Effect::Arm => {
                if self.set_asleep(true) {
                    // Orders the store above before the ring positions read
                    // by the next look, as the kernel side orders its commit
                    // before reading the flag.
                    fence(Ordering::SeqCst);
                } else {
                    step = reader::step(step.next, Input::FlagRefused);
                }
            }
            Effect::Disarm => {
                self.set_asleep(false);
            }
            Effect::Sleep => self.timer.stop()?,
            Effect::Wake => {
                self.set_asleep(false);
                self.timer.start(POLL_INTERVAL)?;
            }
        }
        self.state = step.next;
        Ok(step.end_batch)
    }

    /// Whether the flag could be written; if not, the reader keeps polling.
    fn set_asleep(&mut self, asleep: bool) -> bool {
        let value = if asleep { LINNIX_READER_ASLEEP } else { 0 };
        match self.reader_state.set(0, value, 0) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "cannot update the reader state");
                false
            }
        }
    }

    /// Hand the records already in the ring buffer to `sink` without waiting,
    /// at most one ring's worth (see [`MAX_RECORDS_PER_DRAIN`]). Returns the
    /// number of events delivered.
    pub fn drain(&mut self, sink: &mut dyn FnMut(Event)) -> usize {
        drain_ring(self.ring.get_mut(), sink, MAX_RECORDS_PER_DRAIN).delivered
    }

    /// Hand every process already in the traced cgroup to `sink`, as an
    /// [`Event::Present`] numbered like the kernel events (see
    /// `bpf/lifecycle/present.c`). Call it once, after [`Tracer::load`]: a
    /// process started in between may then show up twice (present, and its
    /// fork in the ring), never not at all. Returns how many there were.
    pub fn present(&mut self, sink: &mut dyn FnMut(Event)) -> Result<usize, TracerError> {
        present::scan(&mut self.ebpf, sink)
    }

    /// Number of kernel programs attached, for as long as the tracer lives
    /// (a load that cannot attach all of them fails instead).
    pub fn programs_attached(&self) -> usize {
        self.attached
    }

    pub fn kernel_stats(&self) -> Result<KernelStats, TracerError> {
        let sum = |index: u32| -> Result<u64, TracerError> {
            let values = self
                .stats
                .get(&index, 0)
                .map_err(|e| classify("read the stats map", &e))?;
            Ok(values.iter().fold(0u64, |acc, v| acc.wrapping_add(*v)))
        };
        Ok(KernelStats {
            lost: sum(LINNIX_STAT_LOST)?,
            rate_limited: sum(LINNIX_STAT_RATE_LIMITED)?,
        })
    }
}

fn load_object(config: &TracerConfig) -> Result<Ebpf, TracerError> {
    let trace_threads = u32::from(config.trace_threads);
    let pidns_inum = own_pid_namespace();
    let page_shift = page_shift(rustix::param::page_size())?;
    EbpfLoader::new()
        .override_global("target_cgroup_id", &config.target.id, true)
        .override_global("target_level", &config.target.level, true)
        .override_global("trace_threads", &trace_threads, true)
        .override_global("max_events_per_sec", &config.max_events_per_sec, true)
        .override_global("page_shift", &page_shift, true)
        .override_global("target_pidns_inum", &pidns_inum, true)
        // The members task storage is only used by the programs: aya has no
        // user-space type for it, and none is needed.
        .allow_unsupported_maps()
        .load(LINNIX_BPF)
        .map_err(|e| classify("create the tracer's BPF maps", &e))
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
fn attach_first(
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

/// The object's map `name`, typed (ring buffer, array, ...).
fn take_map<T>(ebpf: &mut Ebpf, name: &str) -> Result<T, TracerError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| missing(&format!("map {name}")))?;
    T::try_from(map).map_err(|e| classify(&format!("open the {name} map"), &e))
}

fn missing(what: &str) -> TracerError {
    TracerError::Other(format!("{what} is missing from the embedded BPF object"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Drained {
    /// Records taken from the ring.
    consumed: usize,
    /// Of those, records decoded and handed to the sink.
    delivered: usize,
}

/// Decode up to `max` records of the ring. Records that do not decode are
/// logged and skipped: one bad record must not stop the stream.
fn drain_ring(ring: &mut RingBuf<MapData>, sink: &mut dyn FnMut(Event), max: usize) -> Drained {
    let mut drained = Drained {
        consumed: 0,
        delivered: 0,
    };
    while drained.consumed < max {
        let Some(record) = ring.next() else { break };
        drained.consumed += 1;
        match decode(&record) {
            Ok(event) => {
                sink(event);
                drained.delivered += 1;
            }
            Err(err) => tracing::warn!(error = %err, "skipping an undecodable ring buffer record"),
        }
    }
    drained
}

// The tracer is driven from a Tokio task, possibly on a multi-thread runtime.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Tracer>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CgroupPosition;

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

    #[test]
    fn a_drain_covers_a_full_ring_of_the_smallest_records() {
        let record = size_of::<linnix_fork_event>() + 8;
        assert!(MAX_RECORDS_PER_DRAIN * record <= LINNIX_RING_BYTES as usize);
        assert!((MAX_RECORDS_PER_DRAIN + 1) * record > LINNIX_RING_BYTES as usize);
    }

    /// Real programs (root needed): a drain stops at its bound although the
    /// ring holds more, and the next one continues where it stopped.
    #[tokio::test]
    async fn drain_stops_at_its_bound_and_the_next_continues() {
        // The v2 root (kernfs id 1) at level 0: every task on the host, so the
        // workload below fills the ring without a cgroup of its own.
        let config = TracerConfig {
            target: CgroupPosition { id: 1, level: 0 },
            trace_threads: false,
            max_events_per_sec: 0,
        };
        let mut tracer = Tracer::load(&config).expect("load");
        // 100 × (fork, exec, exit) of /bin/true, plus the shell's own.
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "for i in $(seq 100); do /bin/true; done"])
            .status()
            .expect("run /bin/sh");
        assert!(status.success());

        let mut events = 0;
        let ring = tracer.ring.get_mut();
        let first = drain_ring(ring, &mut |_| events += 1, 50);
        assert_eq!(first.consumed, 50);
        assert_eq!(first.delivered, 50);
        let second = drain_ring(ring, &mut |_| events += 1, 50);
        assert_eq!(second.consumed, 50);
        let rest = drain_ring(ring, &mut |_| events += 1, usize::MAX);
        assert!(rest.consumed >= 200, "{rest:?}");
        assert_eq!(events, 100 + rest.delivered);
    }
}
