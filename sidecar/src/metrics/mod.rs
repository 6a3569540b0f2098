//! Prometheus metrics (OpenMetrics text): the registry and its series.
//! The handles of one container are in `counters`, the endpoints in `http`.

mod counters;
mod http;
mod signals;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use linnix_ebpf::KernelStats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use counters::ContainerCounters;
pub use http::serve;
pub use signals::signal_name;

use crate::memory_metrics::MemoryFamilies;
use crate::output::Kind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    kind: &'static str,
    container: String,
}

/// `code` is "0".."255" or empty, `signal` a name ("SIGKILL") or empty:
/// both bounded, so the series count stays small.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExitLabels {
    container: String,
    code: String,
    signal: String,
}

/// What became of an event meant for the Kubernetes API.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Publish {
    Published,
    Failed,
    /// The queue to the API server was full.
    Dropped,
}

impl Publish {
    const ALL: [Publish; 3] = [Publish::Published, Publish::Failed, Publish::Dropped];

    fn as_str(self) -> &'static str {
        match self {
            Publish::Published => "published",
            Publish::Failed => "failed",
            Publish::Dropped => "dropped",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublishLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    container: String,
}

/// `probe` is the probe's kind (`liveness`, `readiness`, `startup`, or
/// several joined by commas when they run one command): bounded by the
/// pod's spec.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    container: String,
    probe: String,
}

/// Exit code (when 0..=255) and signal: the exit series' own labels.
type ExitKey = (Option<i32>, Option<i32>);

pub struct Metrics {
    registry: Registry,
    events: Family<EventLabels, Counter>,
    exits: Family<ExitLabels, Counter>,
    oom_kills: Family<ContainerLabels, Counter>,
    entered: Family<ContainerLabels, Counter>,
    exec_probes: Family<ProbeLabels, Counter>,
    kube_events: Family<PublishLabels, Counter>,
    lost: Counter,
    rate_limited: Counter,
    programs_attached: Gauge,
    /// Set once the event loop reads the ring (see [`Metrics::set_reading`]).
    reading: AtomicBool,
    /// Per-container memory, filled from the kernel's samples.
    pub memory: MemoryFamilies,
    last_lost: AtomicU64,
    last_rate_limited: AtomicU64,
    /// Per container label: the exit series created for it, so that
    /// [`Metrics::remove_container`] finds them (a `Family` cannot be
    /// listed).
    exit_series: Mutex<HashMap<String, HashSet<ExitKey>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let events = Family::<EventLabels, Counter>::default();
        let exits = Family::<ExitLabels, Counter>::default();
        let oom_kills = Family::<ContainerLabels, Counter>::default();
        let entered = Family::<ContainerLabels, Counter>::default();
        let exec_probes = Family::<ProbeLabels, Counter>::default();
        let kube_events = Family::<PublishLabels, Counter>::default();
        // All three series from the start, so that rates and alerts work
        // before the first event.
        for result in Publish::ALL {
            let _ = kube_events.get_or_create(&PublishLabels {
                result: result.as_str(),
            });
        }
        let lost = Counter::default();
        let rate_limited = Counter::default();
        let programs_attached = Gauge::default();
        // Counter names get their `_total` suffix from the encoder.
        registry.register(
            "linnix_events",
            "Events reported, by kind and container",
            events.clone(),
        );
        registry.register(
            "linnix_exits",
            "Process exits, by container, exit code and signal",
            exits.clone(),
        );
        registry.register(
            "linnix_oom_kills",
            "Processes killed by the OOM killer, by container",
            oom_kills.clone(),
        );
        registry.register(
            "linnix_entered",
            "Processes that entered a container from outside (kubectl exec, exec probes), by container",
            entered.clone(),
        );
        registry.register(
            "linnix_exec_probes",
            "Exec probe runs, by container and probe",
            exec_probes.clone(),
        );
        registry.register(
            "linnix_kube_events",
            "Kubernetes events on the pod (OOM kills), by result",
            kube_events.clone(),
        );
        registry.register(
            "linnix_events_lost",
            "Events lost in the kernel because the ring buffer was full",
            lost.clone(),
        );
        registry.register(
            "linnix_events_rate_limited",
            "Events dropped in the kernel by the per-pod rate limit",
            rate_limited.clone(),
        );
        registry.register(
            "linnix_programs_attached",
            "eBPF programs attached",
            programs_attached.clone(),
        );
        // After an upgrade, `linnix_build_info{version!="..."}` finds the
        // pods still running an older tracer. The encoder adds `_info`.
        registry.register(
            "linnix_build",
            "Version of the running tracer",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let memory = MemoryFamilies::register(&mut registry);
        Metrics {
            registry,
            events,
            exits,
            oom_kills,
            entered,
            exec_probes,
            kube_events,
            lost,
            rate_limited,
            programs_attached,
            reading: AtomicBool::new(false),
            memory,
            last_lost: AtomicU64::new(0),
            last_rate_limited: AtomicU64::new(0),
            exit_series: Mutex::new(HashMap::new()),
        }
    }

    /// The counters of one container (`None`: processes directly in the
    /// pod cgroup), resolved once so that counting an event builds no labels.
    pub fn container(&self, container: Option<&str>) -> ContainerCounters {
        let container = container.unwrap_or_default();
        let labels = ContainerLabels {
            container: container.to_owned(),
        };
        let event = |kind: Kind| {
            self.events
                .get_or_create(&EventLabels {
                    kind: kind.as_str(),
                    container: container.to_owned(),
                })
                .clone()
        };
        ContainerCounters {
            container: Arc::from(container),
            events: Kind::ALL.map(event),
            oom_kills: self.oom_kills.get_or_create(&labels).clone(),
            entered: self.entered.get_or_create(&labels).clone(),
            exits: HashMap::new(),
            probes: HashMap::new(),
        }
    }

    fn exit_counter(&self, container: &str, key: ExitKey) -> Counter {
        if let Ok(mut series) = self.exit_series.lock() {
            series.entry(container.to_owned()).or_default().insert(key);
        }
        self.exits
            .get_or_create(&exit_labels(container, key))
            .clone()
    }

    /// Drop every series of one container label: its cgroup is gone, and a
    /// label that is a container id never comes back. Returns whether there
    /// were any. Handles still held count on unseen, which is harmless: the
    /// container runs no more processes.
    pub fn remove_container(&self, container: &str) -> bool {
        let mut removed = false;
        for kind in Kind::ALL {
            removed |= self.events.remove(&EventLabels {
                kind: kind.as_str(),
                container: container.to_owned(),
            });
        }
        let labels = ContainerLabels {
            container: container.to_owned(),
        };
        removed |= self.oom_kills.remove(&labels);
        removed |= self.entered.remove(&labels);
        // No exec probe series to remove: probes are recognised only in
        // containers known by name, whose series stay.
        let exits = self
            .exit_series
            .lock()
            .ok()
            .and_then(|mut series| series.remove(container))
            .unwrap_or_default();
        for key in exits {
            removed |= self.exits.remove(&exit_labels(container, key));
        }
        removed
    }

    pub fn kube_event(&self, result: Publish) {
        self.kube_events
            .get_or_create(&PublishLabels {
                result: result.as_str(),
            })
            .inc();
    }

    /// The kernel keeps running totals; the counters follow them.
    pub fn kernel_stats(&self, stats: KernelStats) {
        let follow = |counter: &Counter, last: &AtomicU64, now: u64| {
            let before = last.swap(now, Ordering::Relaxed);
            counter.inc_by(now.saturating_sub(before));
        };
        follow(&self.lost, &self.last_lost, stats.lost);
        follow(
            &self.rate_limited,
            &self.last_rate_limited,
            stats.rate_limited,
        );
    }

    pub fn set_attached(&self, programs: usize) {
        self.programs_attached
            .set(i64::try_from(programs).unwrap_or(i64::MAX));
    }

    /// The event loop has started reading the ring: start-up (loading,
    /// the scan of what already runs, handing back start-up memory) is
    /// over. A pod's app containers start once the tracer is ready; a
    /// tracer still busy with start-up under its CPU limit could not drain
    /// what they do first.
    pub fn set_reading(&self) {
        self.reading.store(true, Ordering::Release);
    }

    /// Ready: the programs are attached and the event loop reads the ring.
    pub fn is_ready(&self) -> bool {
        self.programs_attached.get() > 0 && self.reading.load(Ordering::Acquire)
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn exit_labels(container: &str, key: ExitKey) -> ExitLabels {
    ExitLabels {
        container: container.to_owned(),
        code: key.0.map(|c| c.to_string()).unwrap_or_default(),
        signal: key.1.map(signal_name).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
