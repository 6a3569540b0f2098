//! Turns kernel events into lines on stdout, metrics and, in a pod with an
//! API server, Kubernetes events for OOM kills.

use std::collections::HashMap;
use std::io::{self, StdoutLock};
use std::sync::Arc;

use linnix_ebpf::{Event, Tracer};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::metrics::{ContainerCounters, Metrics};
use crate::names::{ContainerNames, Label};
use crate::output::{Clock, Detail, Kind, Line, Writer};
use crate::pod::{Placement, PodIdentity};
use crate::pod_events::{OomNotice, PodEvents};
use crate::procfs::PresentProcess;
use crate::run::RunError;

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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            pod: None,
            names: ContainerNames::disabled(),
            skip_cgroup: None,
            pod_events: None,
            watch_exit: None,
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
}

/// What the writer remembers of one container cgroup.
struct Container {
    label: Option<Label>,
    counters: ContainerCounters,
}

/// Containers restart with new cgroups; past this many remembered ones the
/// cache starts over rather than grow without bound.
const MAX_CACHED_CONTAINERS: usize = 256;

impl EventWriter {
    pub fn new(metrics: Arc<Metrics>, settings: Settings) -> Self {
        EventWriter {
            clock: Clock::new(),
            settings,
            metrics,
            containers: HashMap::new(),
            out: Writer::new(io::stdout().lock()),
            write_error: None,
        }
    }

    pub fn event(&mut self, event: Event) {
        let Some((task, detail)) = Detail::of(&event) else {
            return;
        };
        if self.settings.skip_cgroup == Some(task.cgroup_id) {
            return;
        }
        let names = &mut self.settings.names;
        if names.take_changed() || self.containers.len() >= MAX_CACHED_CONTAINERS {
            self.containers.clear();
        }
        let metrics = &self.metrics;
        let cached = self.containers.entry(task.cgroup_id).or_insert_with(|| {
            let label = names.label(&task.cgroup_name);
            let counters = metrics.container(label.as_ref().map(|l| &*l.text));
            Container { label, counters }
        });
        if cached.label.as_ref().is_some_and(|l| !l.named) {
            names.request_refresh();
        }
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
        write_line(&mut self.out, &mut self.write_error, &line);
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
        write_line(&mut self.out, &mut self.write_error, &line);
    }

    pub fn flush(&mut self) -> Result<(), RunError> {
        if let Some(e) = self.write_error.take() {
            return Err(RunError::Output(e));
        }
        self.out.flush().map_err(RunError::Output)
    }

    pub fn kernel_stats(&self, tracer: &Tracer) {
        match tracer.kernel_stats() {
            Ok(stats) => {
                if stats.lost > 0 || stats.rate_limited > 0 {
                    debug!(
                        lost = stats.lost,
                        rate_limited = stats.rate_limited,
                        "kernel drops"
                    );
                }
                self.metrics.kernel_stats(stats);
            }
            Err(e) => debug!(error = %e, "cannot read kernel stats"),
        }
    }
}

/// Once stdout is gone nothing more is written; the error surfaces at flush.
fn write_line(
    out: &mut Writer<StdoutLock<'static>>,
    error: &mut Option<io::Error>,
    line: &Line<'_>,
) {
    if error.is_none() {
        if let Err(e) = out.write(line) {
            *error = Some(e);
        }
    }
}
