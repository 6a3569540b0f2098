//! Prometheus metrics (OpenMetrics text) and the health endpoints.
//!
//! Longer than 400 lines because of its tests, which check the exposition
//! text series by series; the code itself is under 400.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use linnix_ebpf::KernelStats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::memory_metrics::MemoryFamilies;
use crate::output::{ExitDetail, Kind};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// Handles on the series of one container; the registry shares them, so
/// incrementing here is what /metrics shows.
pub struct ContainerCounters {
    container: Arc<str>,
    events: [Counter; Kind::ALL.len()],
    oom_kills: Counter,
    entered: Counter,
    /// Filled as exit codes and signals show up; bounded like the series.
    exits: HashMap<ExitKey, Counter>,
    /// By probe name (`app/liveness`), filled as probes run.
    probes: HashMap<std::sync::Arc<str>, Counter>,
}

impl ContainerCounters {
    pub fn event(&self, kind: Kind) {
        self.events[kind as usize].inc();
    }

    pub fn exit(&mut self, metrics: &Metrics, exit: &ExitDetail) {
        let key = (
            exit.exit_code.filter(|c| (0..=255).contains(c)),
            exit.signal,
        );
        self.exits
            .entry(key)
            .or_insert_with(|| metrics.exit_counter(&self.container, key))
            .inc();
    }

    pub fn oom_kill(&self) {
        self.oom_kills.inc();
    }

    /// A process entered the container from outside.
    pub fn entered(&self) {
        self.entered.inc();
    }

    /// An exec probe ran; `name` is `<container>/<kinds>`.
    pub fn exec_probe(&mut self, metrics: &Metrics, name: &std::sync::Arc<str>) {
        self.probes
            .entry(std::sync::Arc::clone(name))
            .or_insert_with(|| {
                let kinds = name.rsplit_once('/').map_or(&**name, |(_, k)| k);
                metrics
                    .exec_probes
                    .get_or_create(&ProbeLabels {
                        container: self.container.to_string(),
                        probe: kinds.to_owned(),
                    })
                    .clone()
            })
            .inc();
    }
}

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
            oom_kills: self
                .oom_kills
                .get_or_create(&ContainerLabels {
                    container: container.to_owned(),
                })
                .clone(),
            entered: self
                .entered
                .get_or_create(&ContainerLabels {
                    container: container.to_owned(),
                })
                .clone(),
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
        removed |= self.oom_kills.remove(&ContainerLabels {
            container: container.to_owned(),
        });
        removed |= self.entered.remove(&ContainerLabels {
            container: container.to_owned(),
        });
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

    /// Ready once the programs are attached: the gauge says so.
    pub fn is_ready(&self) -> bool {
        self.programs_attached.get() > 0
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

/// Names for the standard signals, numbers for the rest (real-time ones).
pub fn signal_name(sig: i32) -> String {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(sig)
        .ok()
        .and_then(|s| s.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| sig.clamp(0, 127).to_string(), |n| (*n).to_owned())
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz_handler))
        .with_state(metrics)
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.encode() {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn readyz_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "programs not attached yet\n",
        )
    }
}

/// Serve until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    if let Err(e) = axum::serve(listener, router(metrics)).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(1), "SIGHUP");
        assert_eq!(signal_name(31), "SIGSYS");
        assert_eq!(signal_name(34), "34");
        assert_eq!(signal_name(0), "0");
        assert_eq!(signal_name(-5), "0");
        assert_eq!(signal_name(1000), "127");
    }

    #[test]
    fn counters_in_openmetrics_text() {
        let m = Metrics::new();
        let mut app = m.container(Some("app"));
        app.event(Kind::Exec);
        // Handles resolved twice count into the same series.
        m.container(Some("app")).event(Kind::Exec);
        let killed = ExitDetail {
            exit_code: None,
            signal: Some(9),
            core_dumped: false,
            lifetime_ms: 1,
        };
        app.exit(&m, &killed);
        app.exit(&m, &killed);
        app.exit(
            &m,
            &ExitDetail {
                exit_code: Some(3),
                signal: None,
                ..killed
            },
        );
        m.container(None).oom_kill();
        app.event(Kind::ContainerStart);
        app.entered();
        let probe = std::sync::Arc::from("app/liveness,readiness");
        app.exec_probe(&m, &probe);
        app.exec_probe(&m, &probe);
        m.kube_event(Publish::Published);
        m.kube_event(Publish::Dropped);
        m.kube_event(Publish::Dropped);
        m.kernel_stats(KernelStats {
            lost: 5,
            rate_limited: 2,
        });
        m.kernel_stats(KernelStats {
            lost: 7,
            rate_limited: 2,
        });
        assert!(!m.is_ready());
        m.set_attached(4);
        assert!(m.is_ready());
        let text = m.encode().expect("encode");
        for want in [
            "linnix_events_total{kind=\"exec\",container=\"app\"} 2",
            "linnix_exits_total{container=\"app\",code=\"\",signal=\"SIGKILL\"} 2",
            "linnix_exits_total{container=\"app\",code=\"3\",signal=\"\"} 1",
            "linnix_events_total{kind=\"fork\",container=\"app\"} 0",
            "linnix_oom_kills_total{container=\"\"} 1",
            "linnix_events_total{kind=\"container_start\",container=\"app\"} 1",
            "linnix_events_total{kind=\"cgroup_join\",container=\"app\"} 0",
            "linnix_entered_total{container=\"app\"} 1",
            "linnix_exec_probes_total{container=\"app\",probe=\"liveness,readiness\"} 2",
            "linnix_kube_events_total{result=\"published\"} 1",
            "linnix_kube_events_total{result=\"failed\"} 0",
            "linnix_kube_events_total{result=\"dropped\"} 2",
            "linnix_events_lost_total 7",
            "linnix_events_rate_limited_total 2",
            "linnix_programs_attached 4",
            "# TYPE linnix_build info",
            concat!(
                "linnix_build_info{version=\"",
                env!("CARGO_PKG_VERSION"),
                "\"} 1"
            ),
            "# EOF",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
    }

    #[test]
    fn a_removed_container_takes_all_its_series_along() {
        let m = Metrics::new();
        let id = "f".repeat(64);
        let mut gone = m.container(Some(&id));
        gone.event(Kind::Fork);
        gone.oom_kill();
        let killed = ExitDetail {
            exit_code: None,
            signal: Some(9),
            core_dumped: false,
            lifetime_ms: 1,
        };
        gone.exit(&m, &killed);
        gone.exit(
            &m,
            &ExitDetail {
                exit_code: Some(0),
                signal: None,
                ..killed
            },
        );
        let mut stays = m.container(Some("app"));
        stays.exit(&m, &killed);
        assert!(m.encode().expect("encode").contains(&id));

        assert!(m.remove_container(&id));
        let text = m.encode().expect("encode");
        assert!(!text.contains(&id), "series of {id} left:\n{text}");
        assert!(
            text.contains("linnix_exits_total{container=\"app\",code=\"\",signal=\"SIGKILL\"} 1")
        );
        assert!(text.contains("linnix_events_total{kind=\"fork\",container=\"app\"} 0"));
        // Nothing left to remove the second time.
        assert!(!m.remove_container(&id));
    }
}
