//! Turns kernel events into lines on stdout, metrics and, in a pod with an
//! API server, Kubernetes events for OOM kills.

use std::collections::{HashMap, VecDeque};
use std::io::{self, StdoutLock};
use std::sync::Arc;
use std::time::{Duration, Instant};

use linnix_ebpf::{CgroupRemovedEvent, Event, KernelStats, LostEvent, MemoryPass, Task, Tracer};
use serde::Serialize;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::losses::{self, Drops, LossWatch};
use crate::memory_metrics::MemoryTracker;
use crate::metrics::{ContainerCounters, Metrics};
use crate::names::{ContainerNames, Label};
use crate::output::{Detail, Kind, Line, LostKind, LostLine, Writer};
use crate::pod::{container_id_from_cgroup, Placement, PodIdentity};
use crate::pod_events::{OomNotice, PodEvents};
use crate::procfs::PresentProcess;
use crate::run::RunError;
use crate::timestamp::Clock;

/// What an [`EventWriter`] is told when it is built.
pub struct Settings {
    /// Added to every line; `None` outside a pod.
    pub pod: Option<PodIdentity>,
    pub names: ContainerNames,
    /// The tracer's own container cgroup: what runs there is not the pod's
    /// business. Matched by cgroup id, not pid: a pod process in a nested
    /// PID namespace can carry the tracer's own number.
    pub skip_cgroup: Option<u64>,
    /// Pod mode with an API server: OOM kills also become Kubernetes events.
    pub pod_events: Option<PodEvents>,
    /// `trace -- CMD`: told when the command's own exit event is written.
    pub watch_exit: Option<WatchExit>,
    /// How long the series of a removed container cgroup stay.
    pub removed_series_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pod: None,
            names: ContainerNames::disabled(),
            skip_cgroup: None,
            pod_events: None,
            watch_exit: None,
            removed_series_ttl: Duration::from_secs(300),
        }
    }
}

/// The process whose exit event someone waits for.
pub struct WatchExit {
    /// As the tracer's PID namespace numbers it: `task.pid`, since the
    /// command shares that namespace, whereas `host_pid` differs whenever
    /// the tracer runs in a container.
    pub pid: u32,
    /// Sent once, when that exit has been written.
    pub seen: oneshot::Sender<()>,
}

/// Turns kernel events into lines and metrics.
pub struct EventWriter {
    clock: Clock,
    settings: Settings,
    metrics: Arc<Metrics>,
    /// Per container cgroup id: its label and counters, so that an event
    /// neither parses the cgroup name nor builds metric labels. Emptied
    /// whenever the container names change.
    containers: HashMap<u64, Container>,
    out: Writer<StdoutLock<'static>>,
    /// First write error; once stdout is gone nothing more is written.
    write_error: Option<io::Error>,
    /// Event lines written (`lost` lines aside), for the summary.
    written: u64,
    losses: LossWatch,
    /// Container ids whose cgroup is gone, and when their series go too;
    /// in that order, since the delay is the same for all.
    retiring: VecDeque<(String, Instant)>,
    memory: MemoryTracker,
}

/// What the writer remembers of one container cgroup.
struct Container {
    label: Option<Label>,
    counters: ContainerCounters,
}

/// Containers restart with new cgroups; past this many remembered ones the
/// cache starts over rather than grow without bound.
const MAX_CACHED_CONTAINERS: usize = 256;

/// How often at most stderr is told about events dropped in the kernel.
const LOSS_WARNING_INTERVAL: Duration = Duration::from_secs(10);

impl EventWriter {
    pub fn new(metrics: Arc<Metrics>, settings: Settings) -> Self {
        EventWriter {
            clock: Clock::new(),
            settings,
            metrics,
            containers: HashMap::new(),
            out: Writer::new(io::stdout().lock()),
            write_error: None,
            written: 0,
            losses: LossWatch::new(LOSS_WARNING_INTERVAL),
            retiring: VecDeque::new(),
            memory: MemoryTracker::default(),
        }
    }

    /// The cached label and counters of a container cgroup. Takes the
    /// fields it needs, so that the caller keeps using the others.
    fn cached<'a>(
        containers: &'a mut HashMap<u64, Container>,
        names: &mut ContainerNames,
        metrics: &Metrics,
        cgroup_id: u64,
        cgroup_name: &str,
    ) -> &'a mut Container {
        if names.take_changed() || containers.len() >= MAX_CACHED_CONTAINERS {
            containers.clear();
        }
        let cached = containers.entry(cgroup_id).or_insert_with(|| {
            let label = names.label(cgroup_name);
            let counters = metrics.container(label.as_ref().map(|l| &*l.text));
            Container { label, counters }
        });
        if cached.label.as_ref().is_some_and(|l| !l.named) {
            names.request_refresh();
        }
        cached
    }

    /// One memory sampling pass of the kernel: the per-container memory
    /// metrics, labelled like every other metric of the container.
    pub fn memory(&mut self, pass: &MemoryPass) {
        let mut labelled = Vec::with_capacity(pass.samples.len());
        for sample in &pass.samples {
            if self.settings.skip_cgroup == Some(sample.cgroup_id) {
                continue;
            }
            let cached = Self::cached(
                &mut self.containers,
                &mut self.settings.names,
                &self.metrics,
                sample.cgroup_id,
                &sample.cgroup_name,
            );
            let label = cached
                .label
                .as_ref()
                .map(|l| l.text.to_string())
                .unwrap_or_default();
            labelled.push((label, sample));
        }
        // A container gone before any pass saw it is known by its events.
        let gone: Vec<_> = pass
            .gone
            .iter()
            .map(|(id, totals)| {
                let label = self.containers.get(id).map(|c| {
                    c.label
                        .as_ref()
                        .map(|l| l.text.to_string())
                        .unwrap_or_default()
                });
                (*id, label, *totals)
            })
            .collect();
        self.memory.update(&self.metrics.memory, &labelled, &gone);
    }

    pub fn event(&mut self, event: Event) {
        match &event {
            Event::Lost(lost) => self.lost(lost),
            Event::CgroupRemoved(removed) => self.cgroup_removed(removed),
            _ => {
                if let Some((task, detail)) = Detail::of(&event) {
                    self.task_event(task, detail);
                }
            }
        }
    }

    fn task_event(&mut self, task: &Task, detail: Detail<'_>) {
        if self.settings.skip_cgroup == Some(task.cgroup_id) {
            return;
        }
        let cached = Self::cached(
            &mut self.containers,
            &mut self.settings.names,
            &self.metrics,
            task.cgroup_id,
            &task.cgroup_name,
        );
        let container = cached.label.as_ref().map(|l| &*l.text);
        let kind = detail.kind();
        cached.counters.event(kind);
        let mut exit_of_watched = false;
        match &detail {
            Detail::Exit(exit) => {
                cached.counters.exit(&self.metrics, exit);
                exit_of_watched = self
                    .settings
                    .watch_exit
                    .as_ref()
                    .is_some_and(|w| w.pid == task.pid);
            }
            Detail::OomKill(oom) => {
                cached.counters.oom_kill();
                if let Some(pod_events) = &self.settings.pod_events {
                    pod_events.oom_killed(OomNotice {
                        pid: task.pid,
                        comm: task.comm.clone(),
                        container: container.map(str::to_owned),
                        detail: *oom,
                    });
                }
            }
            _ => {}
        }
        let line = Line {
            event: kind,
            ts: self.clock.rfc3339(task.ts_boot_ns),
            pid: task.pid,
            host_pid: Some(task.host_pid),
            ppid: task.ppid,
            comm: &task.comm,
            container,
            pod: self.settings.pod.as_ref(),
            detail,
        };
        if write_line(&mut self.out, &mut self.write_error, &line) {
            self.written += 1;
        }
        if exit_of_watched {
            if let Some(watch) = self.settings.watch_exit.take() {
                // The waiter may be gone already: nothing to tell then.
                let _ = watch.seen.send(());
            }
        }
    }

    /// Processes running before the programs were attached, once, so that
    /// their exits later have context. Programs are attached first: a
    /// process may then appear twice (present and fork), never zero times.
    pub fn present_all(&mut self, listed: io::Result<Vec<PresentProcess>>) -> Result<(), RunError> {
        match listed {
            Ok(present) => {
                for p in &present {
                    self.present(p);
                }
                self.flush()
            }
            Err(e) => {
                warn!(error = %e, "cannot list the running processes");
                Ok(())
            }
        }
    }

    fn present(&mut self, p: &PresentProcess) {
        // Once per process at start: no cache needed.
        let label = match &p.placement {
            Placement::Container(kernfs) => self.settings.names.label(kernfs),
            Placement::OwnContainer | Placement::PodItself => None,
        };
        let container = label.as_ref().map(|l| &*l.text);
        self.metrics.container(container).event(Kind::Present);
        let line = Line {
            event: Kind::Present,
            ts: self.clock.rfc3339(self.clock.boot_ns()),
            pid: p.pid,
            host_pid: p.host_pid,
            ppid: p.ppid,
            comm: &p.comm,
            container,
            pod: self.settings.pod.as_ref(),
            detail: Detail::Present {},
        };
        if write_line(&mut self.out, &mut self.write_error, &line) {
            self.written += 1;
        }
    }

    /// The kernel's lost record: a `lost` line where the hole is.
    fn lost(&mut self, lost: &LostEvent) {
        let drops = Drops {
            lost: lost.lost,
            rate_limited: lost.rate_limited,
        };
        self.write_lost(lost.ts_boot_ns, drops);
    }

    fn write_lost(&mut self, ts_boot_ns: u64, drops: Drops) {
        self.losses.reported_in_stream(drops);
        let line = LostLine {
            event: LostKind,
            ts: self.clock.rfc3339(ts_boot_ns),
            lost: drops.lost,
            rate_limited: drops.rate_limited,
            pod: self.settings.pod.as_ref(),
        };
        write_line(&mut self.out, &mut self.write_error, &line);
    }

    /// A container cgroup is gone: forget it, and after
    /// `removed_series_ttl` drop the metric series labelled with its id (a
    /// scrape in between still sees their last values). Series labelled with
    /// a container name stay: the next container of that name counts on in
    /// them.
    fn cgroup_removed(&mut self, removed: &CgroupRemovedEvent) {
        self.containers.remove(&removed.cgroup_id);
        if let Some(id) = container_id_from_cgroup(&removed.cgroup_name) {
            let due = Instant::now() + self.settings.removed_series_ttl;
            self.retiring.push_back((id.to_owned(), due));
        }
    }

    /// Drop the series of removed containers that are due.
    fn retire_series(&mut self, now: Instant) {
        while let Some((id, _)) = self.retiring.front().filter(|(_, due)| *due <= now) {
            if self.metrics.remove_container(id) {
                debug!(container = %id, "the series of a removed container are gone");
            }
            self.retiring.pop_front();
        }
    }

    /// Once per stats interval: the kernel's counters, and series that are
    /// due to go.
    pub fn tick(&mut self, tracer: &Tracer) {
        self.kernel_stats(tracer);
        self.retire_series(Instant::now());
    }

    pub fn flush(&mut self) -> Result<(), RunError> {
        if let Some(e) = self.write_error.take() {
            return Err(RunError::Output(e));
        }
        self.out.flush().map_err(RunError::Output)
    }

    /// The kernel's running totals: into the metrics, and onto stderr when
    /// it has dropped events (see [`crate::losses`]).
    fn kernel_stats(&mut self, tracer: &Tracer) -> Option<KernelStats> {
        match tracer.kernel_stats() {
            Ok(stats) => {
                self.metrics.kernel_stats(stats);
                if let Some(drops) = self.losses.observe(Instant::now(), stats) {
                    warn!(
                        lost = drops.lost,
                        rate_limited = drops.rate_limited,
                        "{}",
                        losses::warning(drops)
                    );
                }
                Some(stats)
            }
            Err(e) => {
                debug!(error = %e, "cannot read kernel stats");
                None
            }
        }
    }

    /// After the last drain: a `lost` line for drops that no lost record
    /// carried (they came after the last record), the summary on stderr,
    /// and a flush.
    pub fn finish(&mut self, tracer: &Tracer) -> Result<(), RunError> {
        if let Some(totals) = self.kernel_stats(tracer) {
            let unreported = self.losses.unreported_in_stream(totals);
            if unreported.any() {
                self.write_lost(self.clock.boot_ns(), unreported);
            }
            let totals = Drops::from(totals);
            let summary = losses::summary(self.written, totals);
            if totals.any() {
                warn!(
                    lost = totals.lost,
                    rate_limited = totals.rate_limited,
                    "{summary}"
                );
            } else {
                info!("{summary}");
            }
        }
        self.flush()
    }
}

/// Once stdout is gone nothing more is written; the error surfaces at flush.
/// Whether the line was written.
fn write_line(
    out: &mut Writer<StdoutLock<'static>>,
    error: &mut Option<io::Error>,
    line: &impl Serialize,
) -> bool {
    if error.is_none() {
        match out.write(line) {
            Ok(()) => return true,
            Err(e) => *error = Some(e),
        }
    }
    false
}
