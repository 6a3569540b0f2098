//! The loaded lifecycle programs (`bpf/linnix.bpf.c`) and their ring buffer:
//! `Tracer` owns them and drives the reader of [`crate::reader`].

use std::io;
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use aya::maps::{Array, MapData, PerCpuArray, RingBuf};
use aya::Ebpf;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::bindings::{
    linnix_fork_event, LINNIX_READER_ASLEEP, LINNIX_RING_BYTES, LINNIX_STAT_LOST,
    LINNIX_STAT_RATE_LIMITED,
};
use crate::decode::decode;
use crate::error::{classify, parse_btf, require_btf_file};
use crate::load::{
    attach_first, load_object, load_sampler, take_map, PREPARE_EXEC_PROGRAM, PROGRAMS,
};
use crate::memory::{self, PressureMap};
use crate::poll_timer::PollTimer;
use crate::present;
use crate::reader::{self, Effect, Found, Input, State, Wait};
use crate::{Event, KernelStats, MemoryPass, TracerConfig, TracerError};

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
    pressure: PressureMap,
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
            return Err(TracerError::NoRuntime);
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
        // Kernels before 6.10 lack the tracepoint: an exec's privileges are
        // then the kernel's AT_SECURE verdict (see bpf/lifecycle/exec.c).
        match attach_first(
            &mut ebpf,
            &btf,
            &[PREPARE_EXEC_PROGRAM],
            "sched_prepare_exec",
        ) {
            Ok(()) => attached += 1,
            Err(e) => tracing::warn!(
                error = %e,
                "privileges_raised falls back to the kernel's AT_SECURE verdict, which also marks execs that raised nothing"
            ),
        }
        load_sampler(&mut ebpf, &btf)?;
        present::load(&mut ebpf, &btf)?;
        drop(btf);

        let ring: RingBuf<MapData> = take_map(&mut ebpf, "events")?;
        // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
        // for as long as the AsyncFd that owns the RingBuf.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| TracerError::RingBufferPoll(e.into()))?;
        let reader_state = take_map(&mut ebpf, "reader_state")?;
        let timer = PollTimer::new()
            .and_then(|timer| timer.start(POLL_INTERVAL).map(|()| timer))
            .map_err(TracerError::PollTimer)?;
        let stats = take_map(&mut ebpf, "stats")?;
        let pressure = take_map(&mut ebpf, memory::PRESSURE_MAP)?;

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
            pressure,
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
    /// at most one ring's worth (see [`MAX_RECORDS_PER_DRAIN`]).
    pub fn drain(&mut self, sink: &mut dyn FnMut(Event)) {
        drain_ring(self.ring.get_mut(), sink, MAX_RECORDS_PER_DRAIN);
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

    /// Every container of the target that has processes, with its memory
    /// cgroup's figures: one pass of the kernel's memory sampler, which also
    /// reports threshold crossings (as `memory_pressure` events in the ring).
    ///
    /// Blocks while the kernel walks the tasks of the tracer's PID namespace:
    /// about 100 µs for a hundred tasks.
    pub fn sample_memory(&mut self) -> Result<MemoryPass, TracerError> {
        memory::sample(&mut self.ebpf, &self.pressure)
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
    fn a_drain_covers_a_full_ring_of_the_smallest_records() {
        let record = size_of::<linnix_fork_event>() + 8;
        assert!(MAX_RECORDS_PER_DRAIN * record <= LINNIX_RING_BYTES as usize);
        assert!((MAX_RECORDS_PER_DRAIN + 1) * record > LINNIX_RING_BYTES as usize);
    }

    /// Real programs (root needed): records that the last look before
    /// sleeping finds end the batch, so the caller can write them out,
    /// instead of waiting with them for a wakeup that a quiet pod never
    /// sends.
    #[tokio::test]
    async fn records_found_on_the_way_to_sleep_end_the_batch() {
        let cg = linnix_test_support::TestCgroup::new();
        let config = TracerConfig {
            target: CgroupPosition {
                id: cg.id(),
                level: cg.level(),
            },
            trace_threads: false,
            max_events_per_sec: 0,
            pressure: Default::default(),
        };
        let mut tracer = Tracer::load(&config).expect("load");
        // Nothing runs in the cgroup: the reader is idle and arms the
        // wakeup flag, as after its last empty poll.
        tracer.state = State::Behind;
        assert!(!tracer.advance(Input::Looked(Found::Empty)).expect("arm"));
        assert_eq!(tracer.state, State::Arming);
        // A record is committed before the reader's last look.
        let mut cmd = std::process::Command::new("/bin/true");
        linnix_test_support::in_cgroup(&mut cmd, &cg.path);
        assert!(cmd.status().expect("run /bin/true").success());

        let mut events = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(2),
            tracer.next_batch(&mut |e| events.push(e)),
        )
        .await
        .expect("the batch ends with what the last look found")
        .expect("next_batch");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Exec(x) if x.filename == "/bin/true")),
            "{events:#?}"
        );
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
            pressure: Default::default(),
        };
        let mut tracer = Tracer::load(&config).expect("load");
        // 40 × (fork, exec, exit) of /bin/true, plus the shell's own: 120
        // records, well inside the three quarters of the ring that fork and
        // exec may fill.
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "for i in $(seq 40); do /bin/true; done"])
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
        assert!(rest.consumed >= 20, "{rest:?}");
        assert_eq!(events, 100 + rest.delivered);
    }
}
