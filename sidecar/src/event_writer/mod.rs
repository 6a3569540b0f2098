//! Turns kernel events into lines on stdout, metrics and, in a pod with an
//! API server, Kubernetes events for OOM kills. What each process is
//! (entered, an exec probe) and the start and exit of containers come from
//! [`Lineage`]; what the lines say, from `lines.rs`. The other jobs are in
//! the submodules: the container cache, what the kernel dropped, removed
//! cgroups, the processes found at start and the memory passes.

mod containers;
mod drops;
mod memory_pass;
mod present;
mod removed;
mod sink;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use linnix_ebpf::{CgroupChange, Event, ProcessId, Task, Tracer};
use tokio::sync::oneshot;

use crate::held::{HeldEvent, HeldTrees};
use crate::lineage::{Lifecycle, Lineage, Observed};
use crate::lines::{self, Context};
use crate::losses::LossWatch;
use crate::memory_metrics::MemoryTracker;
use crate::metrics::{ContainerCounters, Metrics};
use crate::names::ContainerNames;
use crate::output::{Clock, Detail, Format, Kind};
use crate::pod::PodIdentity;
use crate::pod_events::{OomNotice, PodEvents};
use crate::procfs;
use crate::run::RunError;

use containers::{Container, Containers};
use drops::LOSS_WARNING_INTERVAL;
use sink::Sink;

/// What an [`EventWriter`] is told when it is built.
pub struct Settings {
    /// The traced cgroup: processes directly in it belong to no container.
    pub target_cgroup: u64,
    /// Added to every line; `None` outside a pod.
    pub pod: Option<PodIdentity>,
    /// In a pod: container starts say how long after the first one they came.
    pub pod_mode: bool,
    pub names: ContainerNames,
    /// The tracer's own container cgroup: what runs there is not the pod's
    /// business. Matched by cgroup id, not pid: a pod process in a nested
    /// PID namespace can carry the tracer's own number.
    pub skip_cgroup: Option<u64>,
    /// Pod mode with an API server: OOM kills also become Kubernetes events.
    pub pod_events: Option<PodEvents>,
    /// `trace -- CMD`: told when the command's own exit event is written.
    pub watch_exit: Option<WatchExit>,
    pub format: Format,
    /// Leave exec probes out of stdout (they are still counted).
    pub ignore_exec_probes: bool,
    /// How long the series of a removed container cgroup stay.
    pub removed_series_ttl: Duration,
}

impl Settings {
    pub fn new(target_cgroup: u64, format: Format) -> Self {
        Settings {
            target_cgroup,
            pod: None,
            pod_mode: false,
            names: ContainerNames::of_cgroups(),
            skip_cgroup: None,
            pod_events: None,
            watch_exit: None,
            format,
            ignore_exec_probes: false,
            removed_series_ttl: Duration::from_secs(300),
        }
    }
}

/// The process whose exit event someone waits for.
pub struct WatchExit {
    /// As the tracer's PID namespace numbers it: `task.pid`, the number
    /// events carry.
    pub pid: u32,
    /// Sent once, when that exit has been written.
    pub seen: oneshot::Sender<()>,
}

/// Turns kernel events into lines and metrics.
pub struct EventWriter {
    clock: Clock,
    settings: Settings,
    metrics: Arc<Metrics>,
    containers: Containers,
    lineage: Lineage,
    /// Events of entered trees held until they decide whether they are an
    /// exec probe (see [`Lineage`]).
    held: HeldTrees,
    out: Sink,
    losses: LossWatch,
    /// Container ids whose cgroup is gone, and when their series go too;
    /// in that order, since the delay is the same for all.
    retiring: VecDeque<(String, Instant)>,
    memory: MemoryTracker,
}

impl EventWriter {
    pub fn new(metrics: Arc<Metrics>, settings: Settings) -> Self {
        EventWriter {
            clock: Clock::new(),
            lineage: Lineage::new(settings.target_cgroup),
            held: HeldTrees::default(),
            out: Sink::stdout(settings.format),
            containers: Containers::new(settings.target_cgroup),
            settings,
            metrics,
            losses: LossWatch::new(LOSS_WARNING_INTERVAL),
            retiring: VecDeque::new(),
            memory: MemoryTracker::default(),
        }
    }

    /// The event loop reads the ring from now on: `/readyz` says ready.
    pub fn started_reading(&self) {
        self.metrics.set_reading();
    }

    pub fn event(&mut self, event: Event) {
        let task = match &event {
            Event::Lost(lost) => return self.lost(lost),
            Event::CgroupRemoved(removed) => return self.cgroup_removed(removed),
            _ => match event.task() {
                Some(task) => task,
                None => return,
            },
        };
        if self.settings.skip_cgroup == Some(task.cgroup_id) {
            return;
        }
        self.relabel_if_names_changed();
        // Known before the lineage looks up the container's exec probes.
        self.container_of(task);
        let EventWriter {
            settings,
            containers,
            lineage,
            ..
        } = self;
        let probe_of = |unit: u64, argv: &[String]| {
            let label = containers.label(unit)?;
            label
                .named
                .then(|| settings.names.exec_probe(&label.text, argv))
                .flatten()
        };
        let observed = lineage.observe(&event, &probe_of);
        if let Some(root) = observed.hold {
            // Only where there are probes to recognise: elsewhere nothing
            // would change once the tree decides.
            if self.held.holds(&root) || self.has_exec_probes(task.cgroup_id) {
                for events in self.held.hold(root, event, observed, Instant::now()) {
                    self.write_held(events, None);
                }
                return;
            }
        }
        if let Some(root) = observed.release {
            self.release(root, observed.marks.exec_probe.clone());
        }
        self.report(&event, &observed);
    }

    fn has_exec_probes(&self, cgroup_id: u64) -> bool {
        self.containers
            .label(cgroup_id)
            .is_some_and(|l| l.named && self.settings.names.has_exec_probes(&l.text))
    }

    /// Write what a tree held, marked with the probe it turned out to be.
    fn release(&mut self, root: ProcessId, probe: Option<Arc<str>>) {
        if let Some(events) = self.held.take(&root) {
            self.write_held(events, probe);
        }
    }

    fn write_held(&mut self, events: Vec<HeldEvent>, probe: Option<Arc<str>>) {
        for (event, mut observed) in events {
            if probe.is_some() {
                observed.marks.exec_probe = probe.clone();
            }
            self.report(&event, &observed);
        }
    }

    /// Write the trees held for too long; all of them with `all` (at the end).
    pub fn release_held(&mut self, all: bool) {
        for events in self.held.take_stale(Instant::now(), all) {
            self.write_held(events, None);
        }
    }

    fn report(&mut self, event: &Event, observed: &Observed) {
        let Some(task) = event.task() else {
            return;
        };
        let (label, unnamed) = self.container_of(task);
        if unnamed {
            self.settings.names.request_refresh();
        }
        let from = match event {
            Event::Cgroup(c) => match c.change {
                CgroupChange::Move { from_cgroup_id } => self
                    .containers
                    .label(from_cgroup_id)
                    .map(|l| Arc::clone(&l.text)),
                _ => None,
            },
            _ => None,
        };
        let Some(detail) = lines::detail(event, from.as_deref()) else {
            return;
        };
        let kind = detail.kind();
        let counters = self.counters(task.cgroup_id);
        counters.event(kind);
        if observed.entered_now {
            counters.entered();
        }
        if let (true, Some(probe)) = (observed.probe_now, &observed.marks.exec_probe) {
            let metrics = Arc::clone(&self.metrics);
            self.counters(task.cgroup_id).exec_probe(&metrics, probe);
        }
        let own_join = kind == Kind::CgroupJoin && self.is_watched(task);
        let mut exit_of_watched = false;
        match &detail {
            Detail::Exit(exit) => {
                let metrics = Arc::clone(&self.metrics);
                self.counters(task.cgroup_id).exit(&metrics, exit);
                exit_of_watched = self.is_watched(task);
            }
            Detail::OomKill(oom) => {
                self.counters(task.cgroup_id).oom_kill();
                if let Some(pod_events) = &self.settings.pod_events {
                    pod_events.oom_killed(OomNotice {
                        pid: task.pid,
                        comm: task.comm.clone(),
                        container: label.as_deref().map(str::to_owned),
                        detail: *oom,
                    });
                }
            }
            _ => {}
        }
        let ctx = Context {
            clock: &self.clock,
            container: label.as_deref(),
            pod: self.settings.pod.as_ref(),
        };
        // The tracer's own way of starting `trace -- CMD` is not news.
        let hidden =
            own_join || (self.settings.ignore_exec_probes && observed.marks.exec_probe.is_some());
        if !hidden {
            let line = lines::line(&ctx, task, &observed.marks, detail);
            self.out.line(&line);
        }
        if let Some(lifecycle) = &observed.lifecycle {
            self.lifecycle(event, lifecycle, label.as_deref());
        }
        if exit_of_watched {
            if let Some(watch) = self.settings.watch_exit.take() {
                // The waiter may be gone already: nothing to tell then.
                let _ = watch.seen.send(());
            }
        }
    }

    fn lifecycle(&mut self, event: &Event, lifecycle: &Lifecycle, container: Option<&str>) {
        let Some(task) = event.task() else {
            return;
        };
        let since_first = self.settings.pod_mode;
        let from_proc;
        let (filename, argv) = match event {
            Event::Exec(e) => (Some(e.filename.as_str()), Some(e.argv.as_slice())),
            _ => {
                from_proc = procfs::program_of(Path::new("/proc"), task.pid, task.start_ns);
                (from_proc.0.as_deref(), from_proc.1.as_deref())
            }
        };
        let detail = match (lifecycle, event) {
            (Lifecycle::Start { .. }, _) => {
                lines::container_start(task, lifecycle, filename, argv, since_first)
            }
            (Lifecycle::Exit { .. }, Event::Exit(exit)) => lines::container_exit(exit, lifecycle),
            _ => return,
        };
        let kind = detail.kind();
        self.counters(task.cgroup_id).event(kind);
        let ctx = Context {
            clock: &self.clock,
            container,
            pod: self.settings.pod.as_ref(),
        };
        let line = lines::lifecycle_line(&ctx, task, lifecycle, detail);
        self.out.line(&line);
    }

    fn is_watched(&self, task: &Task) -> bool {
        self.settings
            .watch_exit
            .as_ref()
            .is_some_and(|w| w.pid == task.pid)
    }

    /// The container label of the task's cgroup (none for the traced
    /// cgroup itself), and whether it is only an id so far.
    fn container_of(&mut self, task: &Task) -> (Option<Arc<str>>, bool) {
        let entry = self.entry(task.cgroup_id, &task.cgroup_name);
        let label = entry.label.as_ref();
        (
            label.map(|l| Arc::clone(&l.text)),
            label.is_some_and(|l| !l.named),
        )
    }

    fn counters(&mut self, cgroup_id: u64) -> &mut ContainerCounters {
        &mut self.entry(cgroup_id, "").counters
    }

    fn entry(&mut self, cgroup_id: u64, kernfs: &str) -> &mut Container {
        self.containers
            .entry(&self.settings.names, &self.metrics, cgroup_id, kernfs)
    }

    fn relabel_if_names_changed(&mut self) {
        if self.settings.names.take_changed() {
            self.containers.relabel(&self.settings.names, &self.metrics);
        }
    }

    pub fn flush(&mut self) -> Result<(), RunError> {
        self.out.flush()
    }

    /// Once per stats interval: the kernel's counters, and series that are
    /// due to go.
    pub fn tick(&mut self, tracer: &Tracer) {
        self.kernel_stats(tracer);
        self.retire_series(Instant::now());
    }
}
