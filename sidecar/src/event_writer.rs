//! Turns kernel events into lines on stdout, metrics and, in a pod with an
//! API server, Kubernetes events for OOM kills. What each process is
//! (entered, an exec probe) and the start and exit of containers come from
//! [`Lineage`]; what the lines say, from `lines.rs`.

use std::collections::{HashMap, VecDeque};
use std::io::{self, StdoutLock};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use linnix_ebpf::{
    CgroupChange, CgroupRemovedEvent, Event, KernelStats, LostEvent, MemoryPass, ProcessId, Task,
    Tracer,
};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::held::{HeldEvent, HeldTrees};
use crate::lineage::{Lifecycle, Lineage, Observed};
use crate::lines::{self, Context};
use crate::losses::{self, Drops, LossWatch};
use crate::memory_metrics::MemoryTracker;
use crate::metrics::{ContainerCounters, Metrics};
use crate::names::{ContainerNames, Label};
use crate::output::{Clock, Detail, Format, Kind, Line, LostKind, LostLine, Writer};
use crate::pod::{container_id_from_cgroup, PodIdentity};
use crate::pod_events::{OomNotice, PodEvents};
use crate::procfs;
use crate::run::RunError;

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
    /// Per container cgroup id: its label and counters, so that an event
    /// neither parses the cgroup name nor builds metric labels. Labelled
    /// again whenever the container names change.
    containers: HashMap<u64, Container>,
    lineage: Lineage,
    /// Events of entered trees held until they decide whether they are an
    /// exec probe (see [`Lineage`]).
    held: HeldTrees,
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
    kernfs: String,
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
            lineage: Lineage::new(settings.target_cgroup),
            held: HeldTrees::default(),
            out: Writer::new(io::stdout().lock(), settings.format),
            settings,
            metrics,
            containers: HashMap::new(),
            write_error: None,
            written: 0,
            losses: LossWatch::new(LOSS_WARNING_INTERVAL),
            retiring: VecDeque::new(),
            memory: MemoryTracker::default(),
        }
    }

    /// One memory sampling pass of the kernel: the per-container memory
    /// metrics, labelled like every other metric of the container.
    pub fn memory(&mut self, pass: &MemoryPass) {
        self.relabel_if_names_changed();
        let mut labelled = Vec::with_capacity(pass.samples.len());
        for sample in &pass.samples {
            if self.settings.skip_cgroup == Some(sample.cgroup_id) {
                continue;
            }
            let entry = self.entry(sample.cgroup_id, &sample.cgroup_name);
            let unnamed = entry.label.as_ref().is_some_and(|l| !l.named);
            let label = entry
                .label
                .as_ref()
                .map(|l| l.text.to_string())
                .unwrap_or_default();
            if unnamed {
                self.settings.names.request_refresh();
            }
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
            let label = containers.get(&unit)?.label.as_ref()?;
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
            .get(&cgroup_id)
            .and_then(|c| c.label.as_ref())
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
                    .get(&from_cgroup_id)
                    .and_then(|c| c.label.as_ref())
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
            if write_line(&mut self.out, &mut self.write_error, &line) {
                self.written += 1;
            }
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
        if write_line(&mut self.out, &mut self.write_error, &line) {
            self.written += 1;
        }
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
        if self.containers.len() >= MAX_CACHED_CONTAINERS
            && !self.containers.contains_key(&cgroup_id)
        {
            self.containers.clear();
        }
        let (names, metrics, target) = (
            &self.settings.names,
            &self.metrics,
            self.settings.target_cgroup,
        );
        let entry = self
            .containers
            .entry(cgroup_id)
            .or_insert_with(|| new_container(names, metrics, target, cgroup_id, kernfs.to_owned()));
        // A leave names the cgroup only by id: learn the name later.
        if entry.kernfs.is_empty() && !kernfs.is_empty() {
            *entry = new_container(names, metrics, target, cgroup_id, kernfs.to_owned());
        }
        entry
    }

    fn relabel_if_names_changed(&mut self) {
        if !self.settings.names.take_changed() {
            return;
        }
        let (names, metrics, target) = (
            &self.settings.names,
            &self.metrics,
            self.settings.target_cgroup,
        );
        for (&id, entry) in self.containers.iter_mut() {
            let kernfs = std::mem::take(&mut entry.kernfs);
            *entry = new_container(names, metrics, target, id, kernfs);
        }
    }

    /// Processes running before the programs were attached, once, so that
    /// their exits later have context; and the containers they make up.
    /// Programs are attached first: a process may then appear twice
    /// (present and fork), never zero times.
    pub fn present_all(&mut self, tracer: &mut Tracer) -> Result<(), RunError> {
        let mut found = Vec::new();
        if let Err(e) = tracer.present(&mut |e| found.push(e)) {
            warn!(error = %e, "cannot list the running processes");
        }
        let own_pid = std::process::id();
        found.retain(|e| {
            e.task()
                .is_some_and(|t| self.settings.skip_cgroup != Some(t.cgroup_id) && t.pid != own_pid)
        });
        found.sort_by_key(|e| e.task().map(|t| (t.start_ns, t.host_pid)));
        // Every one has a task: the others were left out above.
        let tasks: Vec<&Task> = found.iter().filter_map(Event::task).collect();
        let observed = self.lineage.present(&tasks);
        for (event, seen) in found.iter().zip(observed) {
            // The container first, then its processes, in start order.
            if let (Some(lifecycle), Some(task)) = (&seen.lifecycle, event.task()) {
                let (label, _) = self.container_of(task);
                self.lifecycle(event, lifecycle, label.as_deref());
            }
            let mut seen = seen;
            seen.lifecycle = None;
            self.report(event, &seen);
        }
        self.flush()
    }

    pub fn flush(&mut self) -> Result<(), RunError> {
        if let Some(e) = self.write_error.take() {
            return Err(RunError::Output(e));
        }
        self.out.flush().map_err(RunError::Output)
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
        if self.write_error.is_none() {
            if let Err(e) = self.out.write_lost(&line) {
                self.write_error = Some(e);
            }
        }
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

fn new_container(
    names: &ContainerNames,
    metrics: &Metrics,
    target: u64,
    cgroup_id: u64,
    kernfs: String,
) -> Container {
    // Directly in the traced cgroup: no container.
    let label = (cgroup_id != target)
        .then(|| names.label(&kernfs))
        .flatten();
    let counters = metrics.container(label.as_ref().map(|l| &*l.text));
    Container {
        kernfs,
        label,
        counters,
    }
}

/// Once stdout is gone nothing more is written; the error surfaces at flush.
/// Whether the line was written.
fn write_line(
    out: &mut Writer<StdoutLock<'static>>,
    error: &mut Option<io::Error>,
    line: &Line<'_>,
) -> bool {
    if error.is_none() {
        match out.write(line) {
            Ok(()) => return true,
            Err(e) => *error = Some(e),
        }
    }
    false
}
